// The SQLite job store: the job_store conformance suite, its own behaviour (persistence, schema,
// JSON results), many threads and several processes on one file, and recovery of jobs whose
// process was killed (SIGKILL) mid-job. Processes are made with fork(); the parent never holds an
// open connection across a fork (SQLite forbids using one in the child).

#include <tilekit/sqlite.hpp>

#include "job_store_conformance.hpp"
#include "test_helpers.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <sqlite3.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

namespace {

using namespace tilekit::jobs;
namespace fs = std::filesystem;

// A temporary directory for database files.
class scratch_dir : public tkt::temp_dir {
public:
    scratch_dir() : tkt::temp_dir("tilekit-jobs-sqlite") {}
    std::string file(const std::string& name) const { return (path() / name).string(); }
};

// Raw SQL on the file, through a connection of its own (as another program would).
void raw_sql(const std::string& path, const std::string& sql) {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    char* error = nullptr;
    const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &error);
    const std::string message = error ? error : "";
    sqlite3_free(error);
    sqlite3_close(db);
    INFO(sql << ": " << message);
    REQUIRE(rc == SQLITE_OK);
}

// The first column of the first row, as text ("" if none); rc is SQLite's result.
std::string raw_query(const std::string& path, const std::string& sql, int* rc_out = nullptr) {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
    sqlite3_extended_result_codes(db, 1);
    sqlite3_stmt* stmt = nullptr;
    std::string value;
    int rc = sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(stmt);
        if (rc == SQLITE_ROW && sqlite3_column_text(stmt, 0))
            value = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
    }
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    if (rc_out) *rc_out = rc;
    return value;
}

new_job job_for(const std::string& project, const std::string& version) {
    new_job j;
    j.project_id = project;
    j.version_id = version;
    j.created_by = "tester";
    return j;
}

nlohmann::json as_json(const job_record& r) { return nlohmann::json(r); }

double seconds_since(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// The workload for the concurrency tests: `threads` threads each take `jobs` jobs of their own
// through create, start, `reports` progress reports and complete, and between jobs also report
// progress on one shared "hot" job. Errors are collected, never asserted (worker threads must
// not call Catch2). `store_for(t)` gives thread t its store.
struct workload_result {
    int errors = 0;
    int locked = 0;  // errors that mention "locked" or "busy"
    std::string first_error;
};

template <class StoreFor>
workload_result run_workload(StoreFor store_for, const std::string& tag, int threads, int jobs, int reports,
                             const std::string& hot_id) {
    std::mutex mutex;
    workload_result out;
    std::vector<std::thread> workers;
    for (int t = 0; t < threads; ++t)
        workers.emplace_back([&, t] {
            job_store& store = store_for(t);
            for (int i = 0; i < jobs; ++i) {
                try {
                    const job_record job = store.create(job_for(tag + "-t" + std::to_string(t), "v" + std::to_string(i)));
                    store.start(job.id, "Starting");
                    for (int k = 1; k <= reports; ++k) {
                        const int value = 90 * k / reports;
                        store.report_progress(job.id, value, "at " + std::to_string(value));
                    }
                    store.complete(job.id, nlohmann::json{{"tag", tag}, {"thread", t}, {"job", i}}, "Completed");
                    if (!hot_id.empty()) {
                        // Rising per thread, interleaved across threads: the highest must stick.
                        const int value = 1 + (i * 90) / jobs;
                        store.report_progress(hot_id, value, "hot " + std::to_string(value));
                    }
                } catch (const std::exception& e) {
                    std::lock_guard<std::mutex> lock(mutex);
                    ++out.errors;
                    const std::string what = e.what();
                    if (what.find("locked") != std::string::npos || what.find("busy") != std::string::npos)
                        ++out.locked;
                    if (out.first_error.empty()) out.first_error = what;
                }
            }
        });
    for (auto& w : workers) w.join();
    return out;
}

// Checks every job of run_workload(tag) completed with its own result.
void check_workload(const job_store& store, const std::string& tag, int threads, int jobs) {
    for (int t = 0; t < threads; ++t) {
        const auto list = store.list_by_project(tag + "-t" + std::to_string(t));
        INFO(tag << " thread " << t);
        REQUIRE(static_cast<int>(list.size()) == jobs);
        std::set<int> seen;
        for (const job_record& r : list) {
            CHECK(r.status == job_status::completed);
            CHECK(r.progress == 100);
            CHECK(r.result.at("tag") == tag);
            CHECK(r.result.at("thread") == t);
            seen.insert(r.result.at("job").get<int>());
        }
        CHECK(static_cast<int>(seen.size()) == jobs);
    }
}

// Reads exactly `size` bytes from a pipe (or fewer at EOF).
std::string read_exactly(int fd, std::size_t size) {
    std::string out;
    char buffer[64];
    while (out.size() < size) {
        const ssize_t n = ::read(fd, buffer, std::min(sizeof buffer, size - out.size()));
        if (n <= 0) break;
        out.append(buffer, static_cast<std::size_t>(n));
    }
    return out;
}

// A child process that opens the store, creates and starts a job, sends its id down a pipe and
// then reports progress in a tight loop (so a SIGKILL likely lands inside a transaction) until
// it is killed. Returns the child's pid and the job id.
std::pair<pid_t, std::string> spawn_doomed_worker(const std::string& path, const std::string& project,
                                                  recovery_policy recovery) {
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        ::close(fds[0]);
        try {
            sqlite_store_options options;
            options.recovery = recovery;
            sqlite_job_store store(path, options);
            const job_record job = store.create(job_for(project, "v1"));
            store.start(job.id, "Starting");
            store.report_progress(job.id, 10, "Downloading source image...");
            if (::write(fds[1], job.id.data(), job.id.size()) != static_cast<ssize_t>(job.id.size())) ::_exit(3);
            for (int i = 11;; ++i) store.report_progress(job.id, std::min(i / 100, 79) + 11, "Generating tiles...");
        } catch (...) {
        }
        ::_exit(2);  // never reached unless something failed
    }
    ::close(fds[1]);
    const std::string id = read_exactly(fds[0], 36);
    ::close(fds[0]);
    REQUIRE(id.size() == 36);
    return {pid, id};
}

}  // namespace

TEST_CASE("sqlite_job_store conforms to the job_store contract", "[jobs][sqlite]") {
    auto dir = std::make_shared<scratch_dir>();
    auto counter = std::make_shared<int>(0);
    check_job_store_conformance([dir, counter] {
        return std::make_unique<sqlite_job_store>(dir->file("conformance-" + std::to_string(++*counter) + ".db"));
    });
}

TEST_CASE("sqlite_job_store keeps every job and field across reopening", "[jobs][sqlite]") {
    scratch_dir dir;
    const std::string path = dir.file("jobs.db");
    std::vector<nlohmann::json> before;
    std::string queued, running, completed, failed, cancelled;
    {
        sqlite_job_store store(path);
        CHECK(store.path() == path);
        CHECK(store.recovered_on_open().empty());
        queued = store.create(job_for("p1", "v1")).id;
        running = store.create(job_for("p1", "v2")).id;
        completed = store.create(job_for("p1", "v3")).id;
        failed = store.create(job_for("p2", "v1")).id;
        cancelled = store.create(job_for("p2", "v2")).id;
        store.start(running, "Downloading source image...");
        store.report_progress(running, 42, "Generating tiles... 42%");
        store.start(completed, "go");
        store.complete(completed, nlohmann::json{{"tiles_path", "mp/x/uploads/tiles/"}, {"levels", 14}}, "Done");
        store.fail(failed, "source image is not a PNG or JPEG");
        store.start(cancelled, "go");
        store.cancel(cancelled, "cancelled by the user");
        for (const auto& id : {queued, running, completed, failed, cancelled}) before.push_back(as_json(*store.get(id)));
    }
    sqlite_job_store store(path);
    CHECK(store.recovered_on_open().empty());  // the running job's owner (this process) is alive
    std::vector<nlohmann::json> after;
    for (const auto& id : {queued, running, completed, failed, cancelled}) after.push_back(as_json(*store.get(id)));
    CHECK(after == before);

    const job_record r = *store.get(running);
    CHECK(r.status == job_status::running);
    CHECK(r.progress == 42);
    CHECK(r.message == "Generating tiles... 42%");
    CHECK(r.created_by == "tester");
    CHECK(r.started_at);
    CHECK_FALSE(r.completed_at);

    // Newest first by project, oldest first by status.
    const auto p1 = store.list_by_project("p1");
    REQUIRE(p1.size() == 3);
    CHECK(p1[0].id == completed);
    CHECK(p1[2].id == queued);
    CHECK(store.list_by_status(job_status::failed).at(0).error == "source image is not a PNG or JPEG");
    CHECK(store.list_by_status(job_status::cancelled).at(0).status == job_status::cancelled);
    CHECK(store.list_by_project("nobody").empty());

    // The owner recorded by start().
    const auto owner = store.owner(running);
    REQUIRE(owner);
    CHECK(owner->pid == static_cast<std::int64_t>(::getpid()));
    CHECK(owner->host == tilekit::detail::host_name());
    CHECK(owner->start_time == tilekit::detail::read_proc_stat(0)->start_time);
    CHECK_FALSE(store.owner(queued));
    CHECK_FALSE(store.owner("no-such-job"));
}

TEST_CASE("sqlite_job_store refuses illegal transitions without touching the row", "[jobs][sqlite]") {
    scratch_dir dir;
    const std::string path = dir.file("jobs.db");
    sqlite_job_store store(path);
    const job_record job = store.create(job_for("p", "v"));
    CHECK_THROWS_AS(store.report_progress(job.id, 5, "x"), job_state_error);
    CHECK_THROWS_AS(store.complete(job.id, nullptr, "x"), job_state_error);
    store.start(job.id, "go");
    CHECK_THROWS_AS(store.start(job.id, "again"), job_state_error);
    CHECK_THROWS_AS(store.report_progress(job.id, 101, "x"), job_state_error);
    CHECK_THROWS_AS(store.report_progress(job.id, -1, "x"), job_state_error);
    store.report_progress(job.id, 60, "sixty");
    CHECK(store.report_progress(job.id, 30, "thirty").progress == 60);  // ignored, not an error
    store.complete(job.id, nlohmann::json{{"ok", true}}, "Done");
    const std::string row = raw_query(path, "SELECT status || progress || message || result FROM jobs");
    CHECK_THROWS_AS(store.fail(job.id, "late"), job_state_error);
    CHECK_THROWS_AS(store.cancel(job.id, "late"), job_state_error);
    CHECK_THROWS_AS(store.complete(job.id, nullptr, "again"), job_state_error);
    CHECK(raw_query(path, "SELECT status || progress || message || result FROM jobs") == row);
    CHECK(row == "completed100Done{\"ok\":true}");

    CHECK_THROWS_AS(store.start("missing", "x"), job_not_found);
    CHECK_THROWS_AS(store.fail("missing", "x"), job_not_found);
    try {
        store.start("missing", "x");
    } catch (const tilekit::error& e) {
        CHECK(e.code() == tilekit::errc::not_found);
    }
}

TEST_CASE("sqlite_job_store stores results as JSON text that round-trips exactly", "[jobs][sqlite]") {
    scratch_dir dir;
    const std::string path = dir.file("jobs.db");
    const nlohmann::json result = {
        {"tiles_path", "mp/mon-projet/uploads/tiles/"},
        {"width", 123457},
        {"height", 98765},
        {"levels", 18},
        {"tile_count", 4611686018427387904LL},
        {"tile_size", 254},
        {"format", "png"},
        {"layout", "deep_zoom"},
        {"overlap", 1},
        {"total_bytes", 18446744073709551615ULL},
        {"ratio", 0.1},
        {"unicode", "Zoë – 東京 \U0001F5FA"},
        {"quote", "a \"quoted\" 'word' and a ; DROP TABLE jobs; --"},
        {"nested", {{"list", {1, "two", nullptr, false, {{"deep", nlohmann::json::array()}}}}, {"empty", nlohmann::json::object()}}},
    };
    std::string id;
    {
        sqlite_job_store store(path);
        id = store.create(job_for("p", "v")).id;
        store.start(id, "go");
        CHECK(store.complete(id, result, "Done").result == result);
    }
    sqlite_job_store store(path);
    CHECK(store.get(id)->result == result);
    CHECK(raw_query(path, "SELECT typeof(result) FROM jobs") == "text");
    CHECK(nlohmann::json::parse(raw_query(path, "SELECT result FROM jobs")) == result);
    CHECK(raw_query(path, "SELECT json_extract(result, '$.levels') FROM jobs") == "18");

    // A result that is not representable as JSON text (invalid UTF-8) is refused; the job stays running.
    const std::string other = store.create(job_for("p", "v2")).id;
    store.start(other, "go");
    CHECK_THROWS_AS(store.complete(other, nlohmann::json{{"bad", std::string("\xff\xfe")}}, "Done"), job_state_error);
    CHECK(store.get(other)->status == job_status::running);
    CHECK(store.get(other)->result.is_null());
}

TEST_CASE("sqlite_job_store schema: WAL, user_version, application id and the active-job index", "[jobs][sqlite]") {
    scratch_dir dir;
    const std::string path = dir.file("jobs.db");
    { sqlite_job_store store(path); }
    CHECK(raw_query(path, "PRAGMA journal_mode") == "wal");
    CHECK(raw_query(path, "PRAGMA user_version") == std::to_string(sqlite_job_store::schema_version));
    CHECK(raw_query(path, "PRAGMA application_id") == std::to_string(sqlite_job_store::application_id));
    const std::string index = raw_query(path, "SELECT sql FROM sqlite_master WHERE name = 'jobs_one_active'");
    CHECK(index.find("UNIQUE") != std::string::npos);
    CHECK(index.find("WHERE status IN ('queued','running')") != std::string::npos);

    // The index holds even for a writer that bypasses the store.
    {
        sqlite_job_store store(path);
        const job_record a = store.create(job_for("p", "v"));
        int rc = 0;
        raw_query(path,
                  "INSERT INTO jobs (id, job_type, status, progress, message, error, project_id, version_id, created_by,"
                  " created_at) VALUES ('x', 'tile_generation', 'queued', 0, '', '', 'p', 'v', '', '')",
                  &rc);
        CHECK(rc == SQLITE_CONSTRAINT_UNIQUE);
        CHECK_THROWS_AS(store.create(job_for("p", "v")), job_state_error);
        new_job other_type = job_for("p", "v");
        other_type.job_type = "thumbnail";
        CHECK_NOTHROW(store.create(other_type));
        store.fail(a.id, "gave up");
        CHECK_NOTHROW(store.create(job_for("p", "v")));  // a finished job does not block a new one
    }
}

TEST_CASE("sqlite_job_store refuses newer schemas and files that are not job stores", "[jobs][sqlite]") {
    scratch_dir dir;
    SECTION("a newer schema version") {
        const std::string path = dir.file("newer.db");
        { sqlite_job_store store(path); }
        raw_sql(path, "PRAGMA user_version = 7");
        CHECK_THROWS_WITH(sqlite_job_store(path), Catch::Contains("has schema version 7, newer than the 1 this tilekit "
                                                                  "understands: open it with a newer tilekit"));
        CHECK_THROWS_AS(sqlite_job_store(path), sqlite_store_error);
        CHECK(raw_query(path, "PRAGMA user_version") == "7");  // untouched
    }
    SECTION("another application's database") {
        const std::string path = dir.file("other.db");
        raw_sql(path, "CREATE TABLE customers (id INTEGER PRIMARY KEY)");
        CHECK_THROWS_WITH(sqlite_job_store(path), Catch::Contains("with other tables, not a tilekit job store"));
        CHECK(raw_query(path, "PRAGMA journal_mode") == "delete");  // not switched to WAL
        const std::string tagged = dir.file("tagged.db");
        raw_sql(tagged, "PRAGMA application_id = 42");
        CHECK_THROWS_WITH(sqlite_job_store(tagged), Catch::Contains("of another application"));
    }
    SECTION("not an SQLite file") {
        const std::string path = dir.file("text.db");
        std::ofstream(path) << "this is not a database, just some text that is long enough to have a header\n";
        CHECK_THROWS_AS(sqlite_job_store(path), sqlite_store_error);
        CHECK_THROWS_WITH(sqlite_job_store(path), Catch::Contains("not a database"));
    }
    SECTION("a directory that does not exist") {
        CHECK_THROWS_WITH(sqlite_job_store(dir.file("missing/jobs.db")), Catch::Contains("cannot open"));
    }
}

TEST_CASE("sqlite_job_store: many threads on one file lose no update and never see 'database is locked'",
          "[jobs][sqlite][concurrency]") {
    scratch_dir dir;
    const int threads = 8, jobs = 50, reports = 10;

    SECTION("one store shared by every thread (one mutex-guarded connection)") {
        const std::string path = dir.file("shared.db");
        sqlite_job_store store(path);
        const std::string hot = store.create(job_for("hot", "v")).id;
        store.start(hot, "go");
        const auto t0 = std::chrono::steady_clock::now();
        const workload_result result =
            run_workload([&](int) -> job_store& { return store; }, "shared", threads, jobs, reports, hot);
        const double elapsed = seconds_since(t0);
        std::printf("[timing] sqlite, %d threads x %d jobs x %d transactions, one shared store: %.2f s (%.0f tx/s)\n",
                    threads, jobs, reports + 4, elapsed, threads * jobs * (reports + 4) / elapsed);
        INFO(result.first_error);
        CHECK(result.errors == 0);
        CHECK(result.locked == 0);
        check_workload(store, "shared", threads, jobs);
        CHECK(store.get(hot)->progress == 1 + ((jobs - 1) * 90) / jobs);
    }
    SECTION("one store (connection) per thread") {
        const std::string path = dir.file("per-thread.db");
        std::vector<std::unique_ptr<sqlite_job_store>> stores;
        for (int t = 0; t < threads; ++t) stores.push_back(std::make_unique<sqlite_job_store>(path));
        const std::string hot = stores[0]->create(job_for("hot", "v")).id;
        stores[0]->start(hot, "go");
        const auto t0 = std::chrono::steady_clock::now();
        const workload_result result = run_workload([&](int t) -> job_store& { return *stores[static_cast<std::size_t>(t)]; },
                                                    "per-thread", threads, jobs, reports, hot);
        const double elapsed = seconds_since(t0);
        std::printf("[timing] sqlite, %d threads x %d jobs x %d transactions, one store per thread: %.2f s (%.0f tx/s)\n",
                    threads, jobs, reports + 4, elapsed, threads * jobs * (reports + 4) / elapsed);
        INFO(result.first_error);
        CHECK(result.errors == 0);
        CHECK(result.locked == 0);
        check_workload(*stores[3], "per-thread", threads, jobs);
        CHECK(stores[5]->get(hot)->progress == 1 + ((jobs - 1) * 90) / jobs);
    }
}

TEST_CASE("sqlite_job_store: several processes on one file lose no update and never see 'database is locked'",
          "[jobs][sqlite][concurrency]") {
    scratch_dir dir;
    const std::string path = dir.file("shared.db");
    const int processes = 3, threads = 4, jobs = 25, reports = 10;
    std::string hot;
    {
        sqlite_job_store store(path);
        hot = store.create(job_for("hot", "v")).id;
        store.start(hot, "go");
    }  // closed: no connection crosses the fork

    const auto t0 = std::chrono::steady_clock::now();
    std::vector<pid_t> children;
    for (int p = 1; p < processes; ++p) {
        const pid_t pid = ::fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            int status = 1;
            try {
                sqlite_job_store store(path);
                const workload_result r = run_workload([&](int) -> job_store& { return store; },
                                                       "proc" + std::to_string(p), threads, jobs, reports, hot);
                if (r.errors) std::fprintf(stderr, "child %d: %d errors, first: %s\n", p, r.errors, r.first_error.c_str());
                status = r.errors == 0 ? 0 : 1;
            } catch (const std::exception& e) {
                std::fprintf(stderr, "child %d: %s\n", p, e.what());
            }
            ::_exit(status);
        }
        children.push_back(pid);
    }

    // This process is the third writer, and also watches the hot job: its progress never goes down.
    sqlite_job_store store(path);
    std::atomic<bool> done{false};
    std::atomic<int> regressions{0}, reads{0};
    std::thread reader([&] {
        int last = 0;
        while (!done) {
            const int now = store.get(hot)->progress;
            if (now < last) ++regressions;
            last = now;
            ++reads;
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
    });
    const workload_result mine = run_workload([&](int) -> job_store& { return store; }, "proc0", threads, jobs, reports, hot);
    for (const pid_t pid : children) {
        int status = 0;
        REQUIRE(::waitpid(pid, &status, 0) == pid);
        CHECK(WIFEXITED(status));
        CHECK(WEXITSTATUS(status) == 0);
    }
    done = true;
    reader.join();
    const double elapsed = seconds_since(t0);
    std::printf("[timing] sqlite, %d processes x %d threads x %d jobs x %d transactions on one file: %.2f s (%.0f tx/s)\n",
                processes, threads, jobs, reports + 4, elapsed, processes * threads * jobs * (reports + 4) / elapsed);

    INFO(mine.first_error);
    CHECK(mine.errors == 0);
    CHECK(mine.locked == 0);
    for (int p = 0; p < processes; ++p) check_workload(store, "proc" + std::to_string(p), threads, jobs);
    CHECK(static_cast<int>(store.list_by_status(job_status::completed).size()) == processes * threads * jobs);
    CHECK(store.get(hot)->progress == 1 + ((jobs - 1) * 90) / jobs);
    CHECK(store.get(hot)->message == "hot " + std::to_string(1 + ((jobs - 1) * 90) / jobs));
    CHECK(regressions == 0);
    CHECK(reads > 0);
}

TEST_CASE("sqlite_job_store: a job whose process was killed is failed as interrupted on open, live ones are not",
          "[jobs][sqlite][recovery]") {
    scratch_dir dir;
    const std::string path = dir.file("jobs.db");
    const std::string host = tilekit::detail::host_name();
    std::string mine;
    {
        sqlite_job_store store(path);
        mine = store.create(job_for("parent", "v1")).id;
        store.start(mine, "Generating tiles...");
        store.report_progress(mine, 40, "Generating tiles... 40%");
    }

    // Worker 1: opening the store while it is alive leaves its job alone.
    const auto [pid1, job1] = spawn_doomed_worker(path, "child1", recovery_policy::fail_interrupted);
    {
        sqlite_job_store store(path);
        CHECK(store.recovered_on_open().empty());
        CHECK(store.get(job1)->status == job_status::running);
        CHECK(store.owner(job1)->pid == pid1);
        CHECK(store.recover_interrupted().empty());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(30));  // let it get into its write loop
    REQUIRE(::kill(pid1, SIGKILL) == 0);
    int status = 0;
    REQUIRE(::waitpid(pid1, &status, 0) == pid1);
    CHECK(WIFSIGNALED(status));
    CHECK(WTERMSIG(status) == SIGKILL);

    // Worker 2: killed, but left a zombie (not yet reaped) when the store is opened. It opens the
    // store without recovery, or it would itself fail worker 1's job (as any other process would).
    const auto [pid2, job2] = spawn_doomed_worker(path, "child2", recovery_policy::none);
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    REQUIRE(::kill(pid2, SIGKILL) == 0);
    siginfo_t info{};
    REQUIRE(::waitid(P_PID, static_cast<id_t>(pid2), &info, WEXITED | WNOWAIT) == 0);

    {
        sqlite_store_options leave;
        leave.recovery = recovery_policy::none;
        sqlite_job_store store(path, leave);
        CHECK(store.recovered_on_open().empty());
        CHECK(store.get(job1)->status == job_status::running);
        CHECK(store.get(job2)->status == job_status::running);
        CHECK(store.get(job2)->progress >= 10);
    }

    const auto t0 = std::chrono::steady_clock::now();
    sqlite_job_store store(path);
    const double open_seconds = seconds_since(t0);
    std::printf("[timing] sqlite, open with recovery after SIGKILL: %.1f ms\n", open_seconds * 1000);
    REQUIRE(::waitpid(pid2, &status, 0) == pid2);

    const auto& recovered = store.recovered_on_open();
    REQUIRE(recovered.size() == 2);
    std::set<std::string> recovered_ids;
    for (const job_record& r : recovered) recovered_ids.insert(r.id);
    CHECK(recovered_ids == std::set<std::string>{job1, job2});
    for (const auto& [pid, id] : {std::make_pair(pid1, job1), std::make_pair(pid2, job2)}) {
        const job_record r = *store.get(id);
        INFO("job " << id);
        CHECK(r.status == job_status::failed);
        CHECK(r.error == "interrupted: the process running this job stopped (pid " + std::to_string(pid) + " on host " +
                             host + ")");
        CHECK(r.completed_at);
        CHECK(r.progress >= 10);  // what it had reached is kept
    }
    // The live parent's own job stays running, and can still finish.
    CHECK(store.get(mine)->status == job_status::running);
    CHECK(store.get(mine)->progress == 40);
    CHECK(store.list_by_status(job_status::running).size() == 1);
    store.complete(mine, nlohmann::json{{"ok", true}}, "Done");

    // Recovery is idempotent, and a new job for the interrupted version can be created.
    CHECK(sqlite_job_store(path).recovered_on_open().empty());
    CHECK_NOTHROW(store.create(job_for("child1", "v1")));
}

TEST_CASE("sqlite_job_store judges owners by pid, start time, boot id and host", "[jobs][sqlite][recovery]") {
    scratch_dir dir;
    const std::string path = dir.file("jobs.db");

    // A pid that certainly belonged to a process that is gone now.
    const pid_t dead = ::fork();
    REQUIRE(dead >= 0);
    if (dead == 0) ::_exit(0);
    REQUIRE(::waitpid(dead, nullptr, 0) == dead);

    std::vector<std::string> ids;
    {
        sqlite_job_store store(path);
        for (int i = 0; i < 6; ++i) {
            ids.push_back(store.create(job_for("p", "v" + std::to_string(i))).id);
            store.start(ids.back(), "go");
        }
    }
    const auto set = [&](int i, const std::string& assignments) {
        raw_sql(path, "UPDATE jobs SET " + assignments + " WHERE id = '" + ids[static_cast<std::size_t>(i)] + "'");
    };
    // 0: this process, as recorded: alive.
    // 1: this pid but another start time (the pid was reused): gone.
    set(1, "owner_start_time = owner_start_time + 1");
    // 2: a dead pid on another host: not ours to judge, left alone.
    set(2, "owner_host = 'some-other-host', owner_pid = " + std::to_string(dead));
    // 3: a dead pid on this host: gone.
    set(3, "owner_pid = " + std::to_string(dead));
    // 4: recorded before a reboot of this host: gone.
    set(4, "owner_boot_id = 'not-this-boot'");
    // 5: this pid, start time unknown (0): cannot tell, so alive.
    set(5, "owner_start_time = 0");

    sqlite_job_store store(path);
    std::set<std::string> recovered;
    for (const job_record& r : store.recovered_on_open()) recovered.insert(r.id);
    CHECK(recovered == std::set<std::string>{ids[1], ids[3], ids[4]});
    for (int i : {0, 2, 5}) CHECK(store.get(ids[static_cast<std::size_t>(i)])->status == job_status::running);
    CHECK(store.get(ids[3])->error.find("(pid " + std::to_string(dead) + " on host ") != std::string::npos);

    // Another live process with a different start time than recorded: its pid was reused.
    if (const auto init = tilekit::detail::read_proc_stat(1)) {
        tilekit::jobs::job_owner owner{tilekit::detail::host_name(), 1, init->start_time, ""};
        const tilekit::jobs::job_owner self = tilekit::detail::this_process();
        CHECK_FALSE(tilekit::detail::owner_is_gone(owner, self));
        owner.start_time += 1;
        CHECK(tilekit::detail::owner_is_gone(owner, self));
    }
}
