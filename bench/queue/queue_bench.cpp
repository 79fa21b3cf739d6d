// tilekit_queue_bench: throughput and pickup latency of the durable job queue with no-op jobs,
// the tilekit side of bench/queue.sh (the other side is bench/queue/graphile/bench.js, which
// measures graphile-worker the same way).
//
//   tilekit_queue_bench throughput STORE --jobs N --workers W [--timeout-s S]
//   tilekit_queue_bench latency    STORE --jobs N --workers W --interval-ms I [--timeout-s S]
//   tilekit_queue_bench --stores   the store kinds this build supports (bench/queue.sh asks)
//
// STORE: postgresql://... or postgres://... (a PostgreSQL server; needs a build with
// tilekit::postgresql, and every run gets a fresh schema bench_<pid>_<n>, dropped afterwards
// unless --keep), `memory` (jobs::memory_job_store: the worker pool's own cost, no storage), or
// the path of a SQLite file, which must not exist yet (a fresh store; removed afterwards unless
// --keep).
//
// throughput: N no-op jobs are enqueued before the clock starts; then a worker_pool with W threads
//   starts and the clock stops when the Nth job has been recorded as completed by the store (the
//   pool's on_job_end runs after store.complete returned). Prints one JSON line:
//   {"tool":"tilekit","mode":"throughput","store":..,"jobs":N,"workers":W,"seconds":..,"jobs_per_s":..}
// latency: the pool starts with W idle threads; after a settle time one job is enqueued every I ms
//   (on an absolute schedule); each job's latency is the steady-clock time at which its handler
//   started minus the time just before its enqueue() call (same process, same clock). Prints
//   median, p90, p99, max and mean in ms (nearest-rank percentiles).
//
// The pool keeps the default poll_interval (1 s): a missed wake-up shows as a ~1 s latency instead
// of being hidden by fast polling.

#include <tilekit/jobs.hpp>
#if defined(TILEKIT_HAS_SQLITE)
#include <tilekit/sqlite.hpp>
#endif
#if defined(TILEKIT_HAS_POSTGRESQL)
#include <tilekit/postgresql.hpp>
#include <libpq-fe.h>
#endif

#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

namespace {

namespace jobs = tilekit::jobs;
using steady = std::chrono::steady_clock;

constexpr const char* noop_job = "bench_noop";

struct bench_args {
    std::string mode;
    std::string store;
    std::size_t jobs = 0;
    unsigned workers = 1;
    int interval_ms = 20;
    int timeout_s = 600;
    int pool_size = 0;  // PostgreSQL connections; 0: one per worker plus two
    bool keep = false;
};

[[noreturn]] void usage(const std::string& why) {
    std::fprintf(stderr,
                 "tilekit_queue_bench: %s\n"
                 "usage: tilekit_queue_bench throughput STORE --jobs N --workers W [--timeout-s S] [--pool-size C] [--keep]\n"
                 "       tilekit_queue_bench latency STORE --jobs N --workers W --interval-ms I [--timeout-s S] [--keep]\n"
                 "STORE: postgresql://... | memory | a SQLite file path that does not exist yet\n",
                 why.c_str());
    std::exit(2);
}

long positive_number(const std::string& flag, const char* text) {
    char* end = nullptr;
    const long value = std::strtol(text, &end, 10);
    if (end == text || *end != '\0' || value <= 0) usage(flag + " expects a positive number, got '" + text + "'");
    return value;
}

bench_args parse_args(int argc, char** argv) {
    if (argc < 3) usage("missing MODE or STORE");
    bench_args a;
    a.mode = argv[1];
    a.store = argv[2];
    if (a.mode != "throughput" && a.mode != "latency") usage("unknown mode '" + a.mode + "'");
    for (int i = 3; i < argc; ++i) {
        const std::string flag = argv[i];
        if (flag == "--keep") {
            a.keep = true;
            continue;
        }
        if (i + 1 >= argc) usage(flag + " needs a value");
        const char* value = argv[++i];
        if (flag == "--jobs") a.jobs = static_cast<std::size_t>(positive_number(flag, value));
        else if (flag == "--workers") a.workers = static_cast<unsigned>(positive_number(flag, value));
        else if (flag == "--interval-ms") a.interval_ms = static_cast<int>(positive_number(flag, value));
        else if (flag == "--timeout-s") a.timeout_s = static_cast<int>(positive_number(flag, value));
        else if (flag == "--pool-size") a.pool_size = static_cast<int>(positive_number(flag, value));
        else usage("unknown option '" + flag + "'");
    }
    if (a.jobs == 0) usage("--jobs is required");
    return a;
}

bool is_postgresql_url(const std::string& s) {
    return s.rfind("postgresql://", 0) == 0 || s.rfind("postgres://", 0) == 0;
}

// Opens the store named on the command line, fresh, and undoes it when destroyed (unless kept).
class bench_store {
public:
    bench_store(const std::string& spec, unsigned workers, int pool_size, bool keep) : keep_(keep) {
        if (spec == "memory") {
            kind_ = "memory";
            store_ = std::make_unique<jobs::memory_job_store>();
        } else if (is_postgresql_url(spec)) {
            kind_ = "postgresql";
#if defined(TILEKIT_HAS_POSTGRESQL)
            conninfo_ = spec;
            // Unique per run, so that no run sees another's jobs or NOTIFY channel.
            schema_ = "bench_" + std::to_string(::getpid()) + "_" +
                      std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                         std::chrono::system_clock::now().time_since_epoch()).count() % 100000000);
            jobs::postgresql_store_options options;
            options.schema = schema_;
            // One connection per worker thread plus the enqueuing thread and the rescuer, so
            // that the pool is never what the workers wait for.
            options.pool_size = pool_size > 0 ? pool_size : static_cast<decltype(options.pool_size)>(workers + 2);
            options.listen = true;
            store_ = std::make_unique<jobs::postgresql_job_store>(spec, options);
#else
            (void)workers;
            (void)pool_size;
            usage("this build has no PostgreSQL store (configure with tilekit::postgresql available)");
#endif
        } else {
            kind_ = "sqlite";
#if defined(TILEKIT_HAS_SQLITE)
            if (std::filesystem::exists(spec)) usage("SQLite store '" + spec + "' exists; the benchmark needs a fresh file");
            sqlite_path_ = spec;
            store_ = std::make_unique<jobs::sqlite_job_store>(spec);
#else
            usage("this build has no SQLite store");
#endif
        }
    }
    bench_store(const bench_store&) = delete;
    bench_store& operator=(const bench_store&) = delete;

    ~bench_store() {
        store_.reset();  // close connections before removing what they used
        if (keep_) return;
        if (!sqlite_path_.empty()) {
            std::error_code ignored;
            for (const char* suffix : {"", "-wal", "-shm", "-journal"})
                std::filesystem::remove(sqlite_path_ + suffix, ignored);
        }
#if defined(TILEKIT_HAS_POSTGRESQL)
        if (!schema_.empty()) drop_schema();
#endif
    }

    jobs::job_store& get() { return *store_; }
    const std::string& kind() const { return kind_; }

private:
#if defined(TILEKIT_HAS_POSTGRESQL)
    void drop_schema() {
        PGconn* conn = PQconnectdb(conninfo_.c_str());
        if (PQstatus(conn) == CONNECTION_OK) {
            PQclear(PQexec(conn, "SET client_min_messages TO warning"));  // no "drop cascades to" notices
            const std::string sql = "DROP SCHEMA IF EXISTS \"" + schema_ + "\" CASCADE";
            PGresult* result = PQexec(conn, sql.c_str());
            if (PQresultStatus(result) != PGRES_COMMAND_OK)
                std::fprintf(stderr, "tilekit_queue_bench: could not drop schema %s: %s", schema_.c_str(), PQerrorMessage(conn));
            PQclear(result);
        }
        PQfinish(conn);
    }
    std::string conninfo_;
    std::string schema_;
#endif
    std::unique_ptr<jobs::job_store> store_;
    std::string kind_;
    std::string sqlite_path_;
    bool keep_ = false;
};

jobs::new_job noop(std::size_t index) {
    jobs::new_job job;
    job.job_type = noop_job;
    job.project_id = "bench";
    job.version_id = "v" + std::to_string(index);  // distinct: one active job per (project, version)
    job.payload = {{"i", index}};
    job.max_attempts = 1;
    job.message = "Queued";
    return job;
}

// Counts jobs the store has recorded as completed (or ended otherwise) and wakes the timer once,
// when the last one ends: a wake-up per job would cost the pool a context switch per job.
struct end_counter {
    explicit end_counter(std::size_t target_jobs) : target(target_jobs) {}

    const std::size_t target;
    std::mutex mutex;
    std::condition_variable changed;
    std::size_t completed = 0;
    std::size_t other = 0;  // failed, retried, released: must stay 0

    void record(const jobs::job_record& job) {
        bool last = false;
        {
            std::lock_guard<std::mutex> lock(mutex);
            if (job.status == jobs::job_status::completed) ++completed;
            else ++other;
            last = completed + other == target;
        }
        if (last) changed.notify_all();
    }
    // True when all `target` jobs completed before `deadline`.
    bool wait_until(steady::time_point deadline) {
        std::unique_lock<std::mutex> lock(mutex);
        return changed.wait_until(lock, deadline, [&] { return completed + other >= target; }) && other == 0;
    }
};

jobs::worker_options pool_options(unsigned workers, end_counter& ends) {
    jobs::worker_options options;
    options.threads = workers;
    options.name = "bench/" + std::to_string(::getpid());
    // poll_interval, heartbeat, lease and rescue_interval stay at their defaults on purpose.
    options.on_job_end = [&ends](const jobs::job_record& job) { ends.record(job); };
    return options;
}

double seconds_between(steady::time_point a, steady::time_point b) {
    return std::chrono::duration<double>(b - a).count();
}

int run_throughput(const bench_args& args) {
    bench_store store(args.store, args.workers, args.pool_size, args.keep);
    for (std::size_t i = 0; i < args.jobs; ++i) store.get().enqueue(noop(i));

    end_counter ends(args.jobs);
    jobs::worker_pool pool(store.get(), pool_options(args.workers, ends));
    pool.handle(noop_job, [](jobs::job_context&) { return nlohmann::json::object(); });

    const steady::time_point start = steady::now();
    pool.start();
    const bool done = ends.wait_until(start + std::chrono::seconds(args.timeout_s));
    const steady::time_point end = steady::now();
    pool.stop();

    if (!done) {
        std::fprintf(stderr, "tilekit_queue_bench: %zu of %zu jobs completed (%zu ended otherwise) within %d s\n",
                     ends.completed, args.jobs, ends.other, args.timeout_s);
        return 1;
    }
    // The store must agree with the pool's count (outside the timed region).
    const std::size_t in_store = store.get().list_by_status(jobs::job_status::completed).size();
    if (in_store != args.jobs) {
        std::fprintf(stderr, "tilekit_queue_bench: the store holds %zu completed jobs, expected %zu\n", in_store, args.jobs);
        return 1;
    }
    const double seconds = seconds_between(start, end);
    nlohmann::json out = {{"tool", "tilekit"},         {"mode", "throughput"},   {"store", store.kind()},
                          {"jobs", args.jobs},         {"workers", args.workers}, {"seconds", seconds},
                          {"jobs_per_s", static_cast<double>(args.jobs) / seconds}};
    std::printf("%s\n", out.dump().c_str());
    return 0;
}

// Nearest-rank percentile of sorted values (the same definition as the graphile script).
double percentile(const std::vector<double>& sorted, double p) {
    const std::size_t rank = static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(sorted.size())));
    return sorted[std::max<std::size_t>(rank, 1) - 1];
}

int run_latency(const bench_args& args) {
    bench_store store(args.store, args.workers, args.pool_size, args.keep);

    std::vector<steady::time_point> enqueued(args.jobs), started(args.jobs);
    std::vector<char> seen(args.jobs, 0);
    std::mutex starts_mutex;
    end_counter ends(args.jobs);
    jobs::worker_pool pool(store.get(), pool_options(args.workers, ends));
    pool.handle(noop_job, [&](jobs::job_context& context) {
        const steady::time_point now = steady::now();  // first thing: the pickup time
        const std::size_t i = context.payload().at("i").get<std::size_t>();
        std::lock_guard<std::mutex> lock(starts_mutex);
        if (i < started.size() && !seen[i]) {
            started[i] = now;
            seen[i] = 1;
        }
        return nlohmann::json::object();
    });
    pool.start();
    // Let every thread find the queue empty and go to sleep on the wake-up (and LISTEN be set up).
    std::this_thread::sleep_for(std::chrono::milliseconds(500));

    const steady::time_point first = steady::now();
    for (std::size_t i = 0; i < args.jobs; ++i) {
        std::this_thread::sleep_until(first + std::chrono::milliseconds(args.interval_ms) * static_cast<long>(i));
        const jobs::new_job job = noop(i);  // built before the clock: only enqueue() is measured
        enqueued[i] = steady::now();
        store.get().enqueue(job);
    }
    const bool done = ends.wait_until(steady::now() + std::chrono::seconds(args.timeout_s));
    pool.stop();
    if (!done) {
        std::fprintf(stderr, "tilekit_queue_bench: %zu of %zu jobs completed (%zu ended otherwise) within %d s\n",
                     ends.completed, args.jobs, ends.other, args.timeout_s);
        return 1;
    }

    std::vector<double> ms;
    ms.reserve(args.jobs);
    for (std::size_t i = 0; i < args.jobs; ++i) {
        if (!seen[i]) {
            std::fprintf(stderr, "tilekit_queue_bench: job %zu completed but its handler start was not recorded\n", i);
            return 1;
        }
        ms.push_back(std::chrono::duration<double, std::milli>(started[i] - enqueued[i]).count());
    }
    std::sort(ms.begin(), ms.end());
    double sum = 0;
    for (double v : ms) sum += v;
    nlohmann::json out = {{"tool", "tilekit"},
                          {"mode", "latency"},
                          {"store", store.kind()},
                          {"jobs", args.jobs},
                          {"workers", args.workers},
                          {"interval_ms", args.interval_ms},
                          {"median_ms", percentile(ms, 50)},
                          {"p90_ms", percentile(ms, 90)},
                          {"p99_ms", percentile(ms, 99)},
                          {"max_ms", ms.back()},
                          {"mean_ms", sum / static_cast<double>(ms.size())}};
    std::printf("%s\n", out.dump().c_str());
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc == 2 && std::string(argv[1]) == "--stores") {
        std::string stores = "memory";
#if defined(TILEKIT_HAS_SQLITE)
        stores += " sqlite";
#endif
#if defined(TILEKIT_HAS_POSTGRESQL)
        stores += " postgresql";
#endif
        std::printf("%s\n", stores.c_str());
        return 0;
    }
    const bench_args args = parse_args(argc, argv);
    try {
        return args.mode == "throughput" ? run_throughput(args) : run_latency(args);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "tilekit_queue_bench: %s\n", e.what());
        return 1;
    }
}
