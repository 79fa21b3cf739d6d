// queue_tool: one process of the multi-process queue tests (tests/queue/test_queue_processes.py).
//
//   queue_tool enqueue STORE --type T --count N [--payload JSON] [--max-attempts K]
//   queue_tool work STORE --threads N --name NAME --log FILE [--lease-ms L] [--heartbeat-ms H]
//                   [--backoff-base-ms B] [--backoff-cap-ms C] [--no-jitter] [--rescue-ms R]
//                   [--poll-ms P] [--grace-ms G] [--tiles-root DIR] [--tiler-threads T]
//   queue_tool show STORE ID | list STORE [--status S] | cancel STORE ID | rescue STORE
//   queue_tool rescue-dead STORE     (SQLite: rescue_dead_owners(), what opening the store does)
//
// STORE is a SQLite file or a postgresql:// URL; every command also takes --schema NAME (the
// PostgreSQL schema). `work` runs a worker_pool until SIGTERM or SIGINT, then stops it
// gracefully (pool.stop(): running jobs get the grace period, then are handed back).

#include "queue_store.hpp"
#include "side_effect_log.hpp"
#include "test_handlers.hpp"

#include <cstdio>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include <pthread.h>
#include <signal.h>

namespace {

namespace jobs = tilekit::jobs;
using queue_tool::side_effect_log;

// Positional arguments, then --name value options and --flag switches in any order.
struct command_line {
    std::vector<std::string> positional;
    std::map<std::string, std::string> options;
    std::set<std::string> switches;

    std::string text(const std::string& name, const std::string& fallback) const {
        const auto found = options.find(name);
        return found == options.end() ? fallback : found->second;
    }
    std::string required(const std::string& name) const {
        const auto found = options.find(name);
        if (found == options.end()) throw std::invalid_argument("--" + name + " is required");
        return found->second;
    }
    long number(const std::string& name, long fallback) const {
        const auto found = options.find(name);
        if (found == options.end()) return fallback;
        std::size_t used = 0;
        const long value = std::stol(found->second, &used);
        if (used != found->second.size() || value < 0)
            throw std::invalid_argument("--" + name + " must be a non-negative integer, got '" + found->second + "'");
        return value;
    }
    std::chrono::milliseconds millis(const std::string& name, long fallback) const {
        return std::chrono::milliseconds(number(name, fallback));
    }
};

const std::set<std::string> known_switches = {"no-jitter"};

command_line parse(int argc, char** argv) {
    command_line line;
    for (int i = 2; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg.rfind("--", 0) != 0) {
            line.positional.push_back(arg);
        } else if (known_switches.count(arg.substr(2))) {
            line.switches.insert(arg.substr(2));
        } else {
            if (i + 1 >= argc) throw std::invalid_argument(arg + " needs a value");
            line.options[arg.substr(2)] = argv[++i];
        }
    }
    return line;
}

const std::string& positional(const command_line& line, std::size_t index, const char* what) {
    if (line.positional.size() <= index) throw std::invalid_argument(std::string("missing ") + what);
    return line.positional[index];
}

std::unique_ptr<jobs::job_store> observer_store(const command_line& line) {
    return queue_tool::open_store(positional(line, 0, "STORE"), line.text("schema", ""));
}

// Each job gets a project version of its own, so the one-active-job-per-version rule never refuses one.
int enqueue(const command_line& line) {
    const auto store = observer_store(line);
    jobs::new_job job;
    job.job_type = line.required("type");
    job.project_id = "queue-tool-" + job.job_type;
    job.created_by = "queue_tool";
    job.payload = nlohmann::json::parse(line.text("payload", "{}"));
    job.max_attempts = static_cast<int>(line.number("max-attempts", jobs::default_max_attempts));
    const long count = line.number("count", 1);
    for (long i = 0; i < count; ++i) {
        job.version_id = jobs::new_job_id();
        std::printf("%s\n", store->enqueue(job).id.c_str());
    }
    return 0;
}

int show(const command_line& line) {
    const auto store = observer_store(line);
    const std::string& id = positional(line, 1, "job ID");
    const auto job = store->get(id);
    if (!job) {
        std::fprintf(stderr, "queue_tool: job %s not found\n", id.c_str());
        return 1;
    }
    std::printf("%s\n", nlohmann::json(*job).dump().c_str());
    return 0;
}

int list(const command_line& line) {
    const auto store = observer_store(line);
    nlohmann::json all = nlohmann::json::array();
    const std::string only = line.text("status", "");
    for (jobs::job_status status : {jobs::job_status::queued, jobs::job_status::running, jobs::job_status::completed,
                                    jobs::job_status::failed, jobs::job_status::cancelled}) {
        if (!only.empty() && jobs::parse_job_status(only) != status) continue;
        for (const jobs::job_record& job : store->list_by_status(status)) all.push_back(job);
    }
    std::printf("%s\n", all.dump().c_str());
    return 0;
}

int cancel(const command_line& line) {
    const auto store = observer_store(line);
    const jobs::job_record job = store->cancel(positional(line, 1, "job ID"), line.text("reason", "cancelled by queue_tool"));
    std::printf("%s\n", nlohmann::json(job).dump().c_str());
    return 0;
}

int rescue(const command_line& line) {
    const auto store = observer_store(line);
    std::printf("%s\n", nlohmann::json(store->rescue_expired()).dump().c_str());
    return 0;
}

int rescue_dead(const command_line& line) {
    const auto store = observer_store(line);
    std::printf("%s\n", nlohmann::json(queue_tool::rescue_dead_owners(*store)).dump().c_str());
    return 0;
}

// Blocks SIGTERM and SIGINT in this thread, and so in every thread started after it; the main
// thread then takes them with sigwait(), where any code may run (no async-signal handler).
sigset_t block_stop_signals() {
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
    return stop_signals;
}

int work(const command_line& line) {
    const sigset_t stop_signals = block_stop_signals();
    const std::string store_name = positional(line, 0, "STORE");
    const auto store = queue_tool::open_store(store_name, line.text("schema", ""));

    jobs::retry_policy retries = store->retries();
    retries.base = line.millis("backoff-base-ms", retries.base.count());
    retries.cap = line.millis("backoff-cap-ms", retries.cap.count());
    retries.jitter = line.switches.count("no-jitter") == 0;
    store->set_retry_policy(retries);

    const side_effect_log log(line.required("log"));
    for (const jobs::job_record& job : queue_tool::rescue_dead_owners(*store))
        log.write("recovered", {{"job", job.id}, {"status", jobs::to_string(job.status)}, {"error", job.error}});
    jobs::worker_options options;
    options.threads = static_cast<unsigned>(line.number("threads", 2));
    options.name = line.required("name");
    options.lease = line.millis("lease-ms", 30000);
    options.heartbeat = line.millis("heartbeat-ms", std::min<long>(500, static_cast<long>(options.lease.count() / 4)));
    options.rescue_interval = line.millis("rescue-ms", 5000);
    options.poll_interval = line.millis("poll-ms", 200);
    options.shutdown_grace = line.millis("grace-ms", 20000);
    // What the store says happened, for diagnostics only: the driver's proof is the handlers' lines.
    options.on_job_end = [&log](const jobs::job_record& job) {
        log.write("outcome", {{"job", job.id}, {"status", jobs::to_string(job.status)}, {"attempt", job.attempt}});
    };

    const std::filesystem::path tiles_root = line.text("tiles-root", "");
    std::unique_ptr<queue_tool::tile_generation_setup> tiles;
    jobs::worker_pool pool(*store, options);
    pool.handle("noop", queue_tool::logged(log, queue_tool::run_noop));
    pool.handle("sleep", queue_tool::logged(log, queue_tool::run_sleep));
    pool.handle("retryable_fail", queue_tool::logged(log, queue_tool::run_retryable_fail));
    pool.handle("permanent_fail", queue_tool::logged(log, queue_tool::run_permanent_fail));
    if (!tiles_root.empty()) {
        tiles = std::make_unique<queue_tool::tile_generation_setup>(tiles_root,
                                                                    static_cast<unsigned>(line.number("tiler-threads", 1)));
        pool.handle(jobs::tile_generation_job, queue_tool::logged(log, tiles->handler()));
    }
    pool.start();
    log.write("ready", {{"worker", options.name}});

    int signal_number = 0;
    sigwait(&stop_signals, &signal_number);
    log.write("stopping", {{"worker", options.name}, {"signal", signal_number}});
    pool.stop();
    const auto counts = pool.snapshot();
    log.write("pool_stopped", {{"worker", options.name},
                               {"claimed", counts.claimed},
                               {"completed", counts.completed},
                               {"failed", counts.failed},
                               {"retried", counts.retried},
                               {"released", counts.released},
                               {"lost", counts.lost}});
    return 0;
}

int usage() {
    std::fprintf(stderr,
                 "usage: queue_tool enqueue|work|show|list|cancel|rescue|rescue-dead STORE [ARGS]\n"
                 "  (see the top of tests/queue/queue_tool.cpp)\n");
    return 2;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 3) return usage();
    const std::string command = argv[1];
    try {
        const command_line line = parse(argc, argv);
        if (command == "enqueue") return enqueue(line);
        if (command == "work") return work(line);
        if (command == "show") return show(line);
        if (command == "list") return list(line);
        if (command == "cancel") return cancel(line);
        if (command == "rescue") return rescue(line);
        if (command == "rescue-dead") return rescue_dead(line);
        return usage();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "queue_tool %s: %s\n", command.c_str(), e.what());
        return 1;
    }
}
