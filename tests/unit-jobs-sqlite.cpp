// The SQLite job store: the job_store conformance suite, its own behaviour (persistence, schema
// and its migration, JSON results), many threads and several processes on one file, and the
// rescue of jobs whose process was killed (SIGKILL) mid-job. Processes are made with fork(); the parent never holds an
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
#include <optional>
#include <stdexcept>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
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

// Column `column` of the first row, as text ("" if none); rc is SQLite's result.
std::string raw_query(const std::string& path, const std::string& sql, int* rc_out = nullptr, int column = 0) {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
    sqlite3_extended_result_codes(db, 1);
    sqlite3_stmt* stmt = nullptr;
    std::string value;
    int rc = sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(stmt);
        if (rc == SQLITE_ROW && sqlite3_column_text(stmt, column))
            value = reinterpret_cast<const char*>(sqlite3_column_text(stmt, column));
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

// The workload for the concurrency tests: `threads` threads each enqueue `jobs` jobs of type
// `tag`, claim the next one of that type (any thread's), report progress `reports` times and
// complete it with a result naming the job; between jobs they also report progress on one shared
// "hot" job (each with its own copy of its lease). Errors are collected, never asserted (worker
// threads must not call Catch2). `store_for(t)` gives thread t its store.
struct workload_result {
    int errors = 0;
    int locked = 0;  // errors that mention "locked" or "busy"
    std::string first_error;
};

template <class StoreFor>
workload_result run_workload(StoreFor store_for, const std::string& tag, int threads, int jobs, int reports,
                             const std::optional<job_lease>& hot) {
    std::mutex mutex;
    workload_result out;
    std::vector<std::thread> workers;
    for (int t = 0; t < threads; ++t)
        workers.emplace_back([&, t] {
            job_store& store = store_for(t);
            std::optional<job_lease> hot_lease = hot;
            for (int i = 0; i < jobs; ++i) {
                try {
                    new_job job = job_for(tag + "-t" + std::to_string(t), "v" + std::to_string(i));
                    job.job_type = tag;
                    store.enqueue(job);
                    auto claimed = store.claim("worker-" + std::to_string(t), {tag}, std::chrono::seconds(60));
                    if (!claimed) throw std::runtime_error("nothing to claim right after an enqueue");
                    for (int k = 1; k <= reports; ++k) {
                        const int value = 90 * k / reports;
                        store.report_progress(claimed->lease, value, "at " + std::to_string(value));
                    }
                    store.complete(claimed->lease,
                                   nlohmann::json{{"tag", tag}, {"project", claimed->job.project_id}, {"version", claimed->job.version_id}},
                                   "Completed");
                    if (hot_lease) {
                        // Rising per thread, interleaved across threads: the highest must stick.
                        const int value = 1 + (i * 90) / jobs;
                        store.report_progress(*hot_lease, value, "hot " + std::to_string(value));
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

// Checks every job of run_workload(tag) completed, once, with its own result.
void check_workload(const job_store& store, const std::string& tag, int threads, int jobs) {
    for (int t = 0; t < threads; ++t) {
        const std::string project = tag + "-t" + std::to_string(t);
        const auto list = store.list_by_project(project);
        INFO(tag << " thread " << t);
        REQUIRE(static_cast<int>(list.size()) == jobs);
        std::set<std::string> seen;
        for (const job_record& r : list) {
            CHECK(r.status == job_status::completed);
            CHECK(r.progress == 100);
            CHECK(r.attempt == 1);
            CHECK(r.result.at("tag") == tag);
            CHECK(r.result.at("project") == project);
            CHECK(r.result.at("version") == r.version_id);
            seen.insert(r.version_id);
        }
        CHECK(static_cast<int>(seen.size()) == jobs);
    }
}

// Enqueues a job and claims it (the store holds no other runnable job of its type).
claimed_job enqueue_and_claim(job_store& store, const std::string& project, const std::string& version,
                              std::chrono::milliseconds lease = std::chrono::seconds(60)) {
    new_job job = job_for(project, version);
    job.job_type = "solo-" + project + "-" + version;
    const std::string id = store.enqueue(job).id;
    auto claimed = store.claim("worker", {job.job_type}, lease);
    REQUIRE(claimed);
    REQUIRE(claimed->job.id == id);
    return std::move(*claimed);
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

// A child process that opens the store, enqueues and claims a job, sends its id down a pipe and
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
            claimed_job job = enqueue_and_claim(store, project, "v1");
            store.report_progress(job.lease, 10, "Downloading source image...");
            if (::write(fds[1], job.job.id.data(), job.job.id.size()) != static_cast<ssize_t>(job.job.id.size())) ::_exit(3);
            for (int i = 11;; ++i) store.report_progress(job.lease, std::min(i / 100, 79) + 11, "Generating tiles...");
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
    std::string queued, running, completed, failed, cancelled, retrying;
    std::string running_token;
    {
        sqlite_job_store store(path);
        CHECK(store.path() == path);
        CHECK(store.recovered_on_open().empty());
        new_job with_payload = job_for("p1", "v1");
        with_payload.payload = {{"source_key", "mp/p1/base.png"}, {"tiling", {{"format", "jpg"}}}};
        with_payload.max_attempts = 7;
        with_payload.delay = std::chrono::hours(1);
        queued = store.enqueue(with_payload).id;
        claimed_job r = enqueue_and_claim(store, "p1", "v2");
        running = r.job.id;
        running_token = r.lease.token;
        store.report_progress(r.lease, 42, "Generating tiles... 42%");
        claimed_job c = enqueue_and_claim(store, "p1", "v3");
        completed = c.job.id;
        store.complete(c.lease, nlohmann::json{{"tiles_path", "mp/x/uploads/tiles/"}, {"levels", 14}}, "Done");
        claimed_job f = enqueue_and_claim(store, "p2", "v1");
        failed = f.job.id;
        store.fail(f.lease, "source image is not a PNG or JPEG", failure_kind::permanent);
        claimed_job x = enqueue_and_claim(store, "p2", "v2");
        cancelled = x.job.id;
        store.cancel(cancelled, "cancelled by the user");
        claimed_job again = enqueue_and_claim(store, "p2", "v3");
        retrying = again.job.id;
        store.fail(again.lease, "storage answered 503", failure_kind::retryable);
        for (const auto& id : {queued, running, completed, failed, cancelled, retrying}) before.push_back(as_json(*store.get(id)));
    }
    sqlite_job_store store(path);
    CHECK(store.recovered_on_open().empty());  // the running job's owner (this process) is alive
    std::vector<nlohmann::json> after;
    for (const auto& id : {queued, running, completed, failed, cancelled, retrying}) after.push_back(as_json(*store.get(id)));
    CHECK(after == before);

    const job_record q = *store.get(queued);
    CHECK(q.payload == nlohmann::json{{"source_key", "mp/p1/base.png"}, {"tiling", {{"format", "jpg"}}}});
    CHECK(q.max_attempts == 7);
    CHECK(q.run_at > q.created_at);
    const job_record r = *store.get(running);
    CHECK(r.status == job_status::running);
    CHECK(r.progress == 42);
    CHECK(r.message == "Generating tiles... 42%");
    CHECK(r.created_by == "tester");
    CHECK(r.attempt == 1);
    CHECK(r.worker == std::optional<std::string>("worker"));
    CHECK(r.lease_expires_at);
    CHECK(r.started_at);
    CHECK_FALSE(r.completed_at);
    const job_record retry = *store.get(retrying);
    CHECK(retry.status == job_status::queued);
    CHECK(retry.error == "storage answered 503");
    CHECK(retry.attempt == 1);
    // The lease survives too: the token in the file is the one the worker holds.
    CHECK(raw_query(path, "SELECT lease_token FROM jobs WHERE id = '" + running + "'") == running_token);
    CHECK(raw_query(path, "SELECT count(*) FROM jobs WHERE lease_token IS NOT NULL") == "1");

    // Newest first by project, oldest first by status.
    const auto p1 = store.list_by_project("p1");
    REQUIRE(p1.size() == 3);
    CHECK(p1[0].id == completed);
    CHECK(p1[2].id == queued);
    CHECK(store.list_by_status(job_status::failed).at(0).error == "source image is not a PNG or JPEG");
    CHECK(store.list_by_status(job_status::cancelled).at(0).status == job_status::cancelled);
    CHECK(store.list_by_project("nobody").empty());

    // The owner recorded by claim().
    const auto owner = store.owner(running);
    REQUIRE(owner);
    CHECK(owner->pid == static_cast<std::int64_t>(::getpid()));
    CHECK(owner->host == tilekit::detail::host_name());
    CHECK(owner->start_time == tilekit::detail::read_proc_stat(0)->start_time);
    // The proof of life: this process's lock file beside the database, locked by this process.
    CHECK(tilekit::detail::is_owner_lock_name(owner->lock));
    CHECK(store.owner_lock_directory() == std::filesystem::canonical(path).string() + "-owners");
    CHECK(tilekit::detail::probe_owner_lock(store.owner_lock_directory() + "/" + owner->lock) ==
          tilekit::detail::owner_lock_state::held);
    CHECK_FALSE(store.owner(queued));
    CHECK_FALSE(store.owner("no-such-job"));
}

TEST_CASE("sqlite_job_store refuses illegal changes without touching the row", "[jobs][sqlite]") {
    scratch_dir dir;
    const std::string path = dir.file("jobs.db");
    sqlite_job_store store(path);
    claimed_job job = enqueue_and_claim(store, "p", "v");
    CHECK_THROWS_AS(store.report_progress(job.lease, 101, "x"), job_state_error);
    CHECK_THROWS_AS(store.report_progress(job.lease, -1, "x"), job_state_error);
    store.report_progress(job.lease, 60, "sixty");
    CHECK(store.report_progress(job.lease, 30, "thirty").progress == 60);  // ignored, not an error
    store.complete(job.lease, nlohmann::json{{"ok", true}}, "Done");
    const std::string row = raw_query(path, "SELECT status || progress || message || result FROM jobs");
    CHECK_THROWS_AS(store.fail(job.lease, "late", failure_kind::permanent), lease_lost);
    CHECK_THROWS_AS(store.cancel(job.job.id, "late"), job_state_error);
    CHECK_THROWS_AS(store.complete(job.lease, nullptr, "again"), lease_lost);
    CHECK(raw_query(path, "SELECT status || progress || message || result FROM jobs") == row);
    CHECK(row == "completed100Done{\"ok\":true}");

    CHECK_THROWS_AS(store.cancel("missing", "x"), job_not_found);
    job_lease missing = job.lease;
    missing.job_id = "missing";
    CHECK_THROWS_AS(store.renew(missing), job_not_found);
    try {
        store.cancel("missing", "x");
    } catch (const tilekit::error& e) {
        CHECK(e.code() == tilekit::errc::not_found);
    }
}

TEST_CASE("sqlite_job_store stores results and payloads as JSON text that round-trips exactly", "[jobs][sqlite]") {
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
        new_job job = job_for("p", "v");
        job.job_type = "solo-p-v";
        job.payload = result;
        id = store.enqueue(job).id;
        auto claimed = store.claim("w", {"solo-p-v"}, std::chrono::seconds(60));
        REQUIRE(claimed);
        CHECK(claimed->job.payload == result);
        CHECK(store.complete(claimed->lease, result, "Done").result == result);
    }
    sqlite_job_store store(path);
    CHECK(store.get(id)->result == result);
    CHECK(store.get(id)->payload == result);
    CHECK(raw_query(path, "SELECT typeof(result) FROM jobs") == "text");
    CHECK(nlohmann::json::parse(raw_query(path, "SELECT result FROM jobs")) == result);
    CHECK(raw_query(path, "SELECT json_extract(result, '$.levels') FROM jobs") == "18");
    CHECK(raw_query(path, "SELECT json_extract(payload, '$.tile_size') FROM jobs") == "254");

    // A result that is not representable as JSON text (invalid UTF-8) is refused; the job stays running.
    claimed_job other = enqueue_and_claim(store, "p", "v2");
    CHECK_THROWS_AS(store.complete(other.lease, nlohmann::json{{"bad", std::string("\xff\xfe")}}, "Done"), job_state_error);
    CHECK(store.get(other.job.id)->status == job_status::running);
    CHECK(store.get(other.job.id)->result.is_null());
    new_job bad_payload = job_for("p", "v3");
    bad_payload.payload = {{"bad", std::string("\xff")}};
    CHECK_THROWS_AS(store.enqueue(bad_payload), job_state_error);
    CHECK(store.list_by_project("p").size() == 2);
}

TEST_CASE("sqlite_job_store schema: WAL, user_version, application id and the queue's indexes", "[jobs][sqlite]") {
    scratch_dir dir;
    const std::string path = dir.file("jobs.db");
    { sqlite_job_store store(path); }
    CHECK(raw_query(path, "PRAGMA journal_mode") == "wal");
    CHECK(raw_query(path, "PRAGMA user_version") == std::to_string(sqlite_job_store::schema_version));
    CHECK(raw_query(path, "PRAGMA application_id") == std::to_string(sqlite_job_store::application_id));
    const std::string index = raw_query(path, "SELECT sql FROM sqlite_master WHERE name = 'jobs_one_active'");
    CHECK(index.find("UNIQUE") != std::string::npos);
    CHECK(index.find("WHERE status IN ('queued','running')") != std::string::npos);
    CHECK(raw_query(path, "SELECT sql FROM sqlite_master WHERE name = 'jobs_runnable'").find("WHERE status = 'queued'") !=
          std::string::npos);
    // The claim's index serves its query in claim order (INDEXED BY fails where it cannot), with no sort.
    const std::string plan = raw_query(path,
                                       "EXPLAIN QUERY PLAN SELECT id FROM jobs INDEXED BY jobs_runnable WHERE status = 'queued'"
                                       " AND run_at_ms <= 5"
                                       " ORDER BY run_at_ms, rowid LIMIT 1",
                                       nullptr, 3);  // the plan's "detail" column
    INFO(plan);
    CHECK(plan.find("jobs_runnable") != std::string::npos);
    CHECK(plan.find("TEMP B-TREE") == std::string::npos);

    // The index holds even for a writer that bypasses the store.
    {
        sqlite_job_store store(path);
        const job_record a = store.enqueue(job_for("p", "v"));
        int rc = 0;
        raw_query(path,
                  "INSERT INTO jobs (id, job_type, status, progress, message, error, project_id, version_id, created_by,"
                  " created_at) VALUES ('x', 'tile_generation', 'queued', 0, '', '', 'p', 'v', '', '')",
                  &rc);
        CHECK(rc == SQLITE_CONSTRAINT_UNIQUE);
        CHECK_THROWS_AS(store.enqueue(job_for("p", "v")), job_state_error);
        new_job other_type = job_for("p", "v");
        other_type.job_type = "thumbnail";
        CHECK_NOTHROW(store.enqueue(other_type));
        store.cancel(a.id, "gave up");
        CHECK_NOTHROW(store.enqueue(job_for("p", "v")));  // a finished job does not block a new one
    }
}

TEST_CASE("sqlite_job_store migrates a version-1 file in place; its running jobs are rescued", "[jobs][sqlite]") {
    scratch_dir dir;
    const std::string path = dir.file("v1.db");
    // The schema tilekit 0.1 wrote, with one job in each state that matters.
    raw_sql(path,
            "PRAGMA journal_mode=WAL;"
            "CREATE TABLE jobs (id TEXT PRIMARY KEY NOT NULL, job_type TEXT NOT NULL, status TEXT NOT NULL CHECK (status IN"
            " ('queued','running','completed','failed','cancelled')), progress INTEGER NOT NULL CHECK (progress BETWEEN 0 AND"
            " 100), message TEXT NOT NULL, result TEXT, error TEXT NOT NULL, project_id TEXT NOT NULL, version_id TEXT NOT"
            " NULL, created_by TEXT NOT NULL, created_at TEXT NOT NULL, started_at TEXT, completed_at TEXT, owner_host TEXT,"
            " owner_pid INTEGER, owner_start_time INTEGER, owner_boot_id TEXT);"
            "CREATE UNIQUE INDEX jobs_one_active ON jobs (project_id, version_id, job_type) WHERE status IN ('queued','running');"
            "CREATE INDEX jobs_by_project ON jobs (project_id, created_at);"
            "CREATE INDEX jobs_by_status ON jobs (status, created_at);"
            "PRAGMA application_id = 1414220371; PRAGMA user_version = 1;"
            "INSERT INTO jobs VALUES ('11111111-1111-4111-8111-111111111111', 'tile_generation', 'queued', 0, 'Queued', NULL,"
            " '', 'p', 'v1', 'u', '2026-11-01T10:00:00.000Z', NULL, NULL, NULL, NULL, NULL, NULL);"
            "INSERT INTO jobs VALUES ('22222222-2222-4222-8222-222222222222', 'tile_generation', 'running', 40, 'Tiling', NULL,"
            " '', 'p', 'v2', 'u', '2026-11-01T10:00:01.000Z', '2026-11-01T10:00:02.000Z', NULL, 'elsewhere', 1, 1, 'b');"
            "INSERT INTO jobs VALUES ('33333333-3333-4333-8333-333333333333', 'tile_generation', 'completed', 100, 'Done',"
            " '{\"levels\":3}', '', 'p', 'v3', 'u', '2026-11-01T10:00:03.000Z', '2026-11-01T10:00:04.000Z',"
            " '2026-11-01T10:00:05.000Z', 'h', 1, 1, 'b');");
    {
        sqlite_job_store store(path);
        CHECK(raw_query(path, "PRAGMA user_version") == "4");  // 1 -> 2 -> 3 -> 4 in one open
        CHECK(raw_query(path, "SELECT count(*) FROM pragma_table_info('jobs') WHERE name = 'owner_lock'") == "1");
        const job_record queued = *store.get("11111111-1111-4111-8111-111111111111");
        CHECK(queued.status == job_status::queued);
        CHECK(queued.run_at == "2026-11-01T10:00:00.000Z");
        CHECK(queued.attempt == 0);
        CHECK(queued.payload == nlohmann::json::object());
        CHECK(store.get("33333333-3333-4333-8333-333333333333")->result == nlohmann::json{{"levels", 3}});
        // The version-1 running job has no lease: the first sweep rescues it.
        const auto rescued = store.rescue_expired();
        REQUIRE(rescued.size() == 1);
        CHECK(rescued[0].id == "22222222-2222-4222-8222-222222222222");
        CHECK(rescued[0].status == job_status::queued);
        CHECK(rescued[0].error.find("interrupted") != std::string::npos);
        // The migrated queue works: the old queued job is claimed first (its run_at is oldest).
        auto claimed = store.claim("w", {tile_generation_job}, std::chrono::seconds(60));
        REQUIRE(claimed);
        CHECK(claimed->job.id == "11111111-1111-4111-8111-111111111111");
        CHECK(claimed->job.attempt == 1);
    }
    sqlite_job_store again(path);  // opening a current (version-4) file changes nothing
    CHECK(raw_query(path, "PRAGMA user_version") == "4");
    CHECK(again.get("11111111-1111-4111-8111-111111111111")->releases == 0);
    CHECK(raw_query(path, "SELECT count(*) FROM sqlite_master WHERE name = 'jobs_by_created'") == "1");
    CHECK(again.get("11111111-1111-4111-8111-111111111111")->status == job_status::running);
}

TEST_CASE("sqlite_job_store migrates version-2 and version-3 files step by step", "[jobs][sqlite]") {
    // Version 3 added owner_lock; version 4 added releases, timeout_ms and jobs_by_created. A file
    // of either older version is made from a current one by undoing the later steps.
    for (const int from : {2, 3}) {
        INFO("from version " << from);
        scratch_dir dir;
        const std::string path = dir.file("old.db");
        std::string queued_id;
        {
            sqlite_job_store store(path);
            queued_id = store.enqueue(job_for("p", "v")).id;
        }
        raw_sql(path, std::string("DROP INDEX jobs_by_created; ALTER TABLE jobs DROP COLUMN releases;"
                                  " ALTER TABLE jobs DROP COLUMN timeout_ms; DROP TABLE lease_clock;") +
                          (from == 2 ? " ALTER TABLE jobs DROP COLUMN owner_lock;" : "") +
                          " PRAGMA user_version = " + std::to_string(from) + ";");
        CHECK(raw_query(path, "SELECT count(*) FROM pragma_table_info('jobs') WHERE name IN ('releases', 'timeout_ms')") == "0");
        sqlite_job_store store(path);
        CHECK(raw_query(path, "PRAGMA user_version") == "4");
        CHECK(raw_query(path, "SELECT count(*) FROM pragma_table_info('jobs') WHERE name IN"
                              " ('owner_lock', 'releases', 'timeout_ms')") == "3");
        CHECK(raw_query(path, "SELECT count(*) FROM sqlite_master WHERE name = 'jobs_by_created'") == "1");
        CHECK(raw_query(path, "SELECT count(*) FROM sqlite_master WHERE name = 'lease_clock'") == "1");
        CHECK(store.get(queued_id)->status == job_status::queued);
        CHECK(store.get(queued_id)->releases == 0);
        auto claimed = store.claim("w", {tile_generation_job}, std::chrono::seconds(60));
        REQUIRE(claimed);
        CHECK(claimed->job.id == queued_id);
        CHECK(store.owner(queued_id).has_value());
    }
}

TEST_CASE("sqlite_job_store refuses newer schemas and files that are not job stores", "[jobs][sqlite]") {
    scratch_dir dir;
    SECTION("a newer schema version") {
        const std::string path = dir.file("newer.db");
        { sqlite_job_store store(path); }
        raw_sql(path, "PRAGMA user_version = 7");
        CHECK_THROWS_WITH(sqlite_job_store(path), Catch::Contains("has schema version 7, newer than the 4 this tilekit "
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
        const claimed_job hot = enqueue_and_claim(store, "hot", "v");
        const auto t0 = std::chrono::steady_clock::now();
        const workload_result result =
            run_workload([&](int) -> job_store& { return store; }, "shared", threads, jobs, reports, hot.lease);
        const double elapsed = seconds_since(t0);
        std::printf("[timing] sqlite, %d threads x %d jobs x %d transactions, one shared store: %.2f s (%.0f tx/s)\n",
                    threads, jobs, reports + 4, elapsed, threads * jobs * (reports + 4) / elapsed);
        INFO(result.first_error);
        CHECK(result.errors == 0);
        CHECK(result.locked == 0);
        check_workload(store, "shared", threads, jobs);
        CHECK(store.get(hot.job.id)->progress == 1 + ((jobs - 1) * 90) / jobs);
    }
    SECTION("one store (connection) per thread") {
        const std::string path = dir.file("per-thread.db");
        std::vector<std::unique_ptr<sqlite_job_store>> stores;
        for (int t = 0; t < threads; ++t) stores.push_back(std::make_unique<sqlite_job_store>(path));
        const claimed_job hot = enqueue_and_claim(*stores[0], "hot", "v");
        const auto t0 = std::chrono::steady_clock::now();
        const workload_result result = run_workload([&](int t) -> job_store& { return *stores[static_cast<std::size_t>(t)]; },
                                                    "per-thread", threads, jobs, reports, hot.lease);
        const double elapsed = seconds_since(t0);
        std::printf("[timing] sqlite, %d threads x %d jobs x %d transactions, one store per thread: %.2f s (%.0f tx/s)\n",
                    threads, jobs, reports + 4, elapsed, threads * jobs * (reports + 4) / elapsed);
        INFO(result.first_error);
        CHECK(result.errors == 0);
        CHECK(result.locked == 0);
        check_workload(*stores[3], "per-thread", threads, jobs);
        CHECK(stores[5]->get(hot.job.id)->progress == 1 + ((jobs - 1) * 90) / jobs);
    }
}

TEST_CASE("sqlite_job_store: several processes on one file lose no update and never see 'database is locked'",
          "[jobs][sqlite][concurrency]") {
    scratch_dir dir;
    const std::string path = dir.file("shared.db");
    const int processes = 3, threads = 4, jobs = 25, reports = 10;
    job_lease hot;
    {
        sqlite_job_store store(path);
        hot = enqueue_and_claim(store, "hot", "v").lease;
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
            const int now = store.get(hot.job_id)->progress;
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
    CHECK(store.get(hot.job_id)->progress == 1 + ((jobs - 1) * 90) / jobs);
    CHECK(store.get(hot.job_id)->message == "hot " + std::to_string(1 + ((jobs - 1) * 90) / jobs));
    CHECK(regressions == 0);
    CHECK(reads > 0);
}

TEST_CASE("sqlite_job_store: a job whose process was killed is rescued on open, live ones are not",
          "[jobs][sqlite][recovery]") {
    scratch_dir dir;
    const std::string path = dir.file("jobs.db");
    const std::string host = tilekit::detail::host_name();
    std::string mine;
    job_lease mine_lease;
    {
        sqlite_job_store store(path);
        claimed_job c = enqueue_and_claim(store, "parent", "v1");
        mine = c.job.id;
        mine_lease = c.lease;
        store.report_progress(mine_lease, 40, "Generating tiles... 40%");
    }

    // Worker 1: opening the store while it is alive leaves its job alone.
    const auto [pid1, job1] = spawn_doomed_worker(path, "child1", recovery_policy::rescue_dead_owners);
    {
        sqlite_job_store store(path);
        CHECK(store.recovered_on_open().empty());
        CHECK(store.get(job1)->status == job_status::running);
        CHECK(store.owner(job1)->pid == pid1);
        CHECK(store.rescue_dead_owners().empty());
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
        CHECK(r.status == job_status::queued);  // for another attempt, after the backoff
        CHECK(r.attempt == 1);
        CHECK(r.error == "interrupted: the process running this job stopped (pid " + std::to_string(pid) + " on host " +
                             host + ")");
        CHECK_FALSE(r.completed_at);
        CHECK_FALSE(r.worker);
        CHECK(r.run_at > *r.started_at);
    }
    // The live parent's own job stays running, and can still finish.
    CHECK(store.get(mine)->status == job_status::running);
    CHECK(store.get(mine)->progress == 40);
    CHECK(store.list_by_status(job_status::running).size() == 1);
    store.complete(mine_lease, nlohmann::json{{"ok", true}}, "Done");

    // Recovery is idempotent, and the rescued job is still the version's one active job.
    CHECK(sqlite_job_store(path).recovered_on_open().empty());
    new_job same_version = job_for("child1", "v1");
    same_version.job_type = "solo-child1-v1";
    CHECK_THROWS_AS(store.enqueue(same_version), job_state_error);
}

TEST_CASE("sqlite_job_store judges owners by their lock, never by host name or pid", "[jobs][sqlite][recovery]") {
    using tilekit::detail::owner_lock_state;
    scratch_dir dir;
    const std::string path = dir.file("jobs.db");

    // A pid that certainly belonged to a process that is gone now.
    const pid_t dead = ::fork();
    REQUIRE(dead >= 0);
    if (dead == 0) ::_exit(0);
    REQUIRE(::waitpid(dead, nullptr, 0) == dead);

    std::vector<std::string> ids;
    std::string locks;
    {
        sqlite_job_store store(path);
        for (int i = 0; i < 6; ++i) ids.push_back(enqueue_and_claim(store, "p", "v" + std::to_string(i)).job.id);
        locks = store.owner_lock_directory();
    }
    const auto set = [&](int i, const std::string& assignments) {
        raw_sql(path, "UPDATE jobs SET " + assignments + " WHERE id = '" + ids[static_cast<std::size_t>(i)] + "'");
    };
    // A lock file left by a killed process: nobody holds its lock.
    const std::string gone_name = tilekit::jobs::new_job_id();
    std::ofstream(locks + "/" + gone_name).put('x');
    // A live process's lock (another PID namespace, another container): held through another open
    // file description, which an OFD lock query sees as held even from this process.
    const std::string live_name = tilekit::jobs::new_job_id();
    const int live_fd = ::open((locks + "/" + live_name).c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    REQUIRE(live_fd >= 0);
    struct flock whole {};
    whole.l_type = F_WRLCK;
    whole.l_whence = SEEK_SET;
    REQUIRE(::fcntl(live_fd, F_OFD_SETLK, &whole) == 0);

    // 0: this process, recorded with a dead pid, another boot and another host: alive all the same.
    set(0, "owner_pid = " + std::to_string(dead) + ", owner_boot_id = 'not-this-boot', owner_start_time = 1");
    // 1: a free lock: gone, whatever its pid (here this very pid and start time).
    set(1, "owner_lock = '" + gone_name + "'");
    // 2: a held lock with a dead pid on this host (what two PID namespaces look like): alive.
    set(2, "owner_lock = '" + live_name + "', owner_pid = " + std::to_string(dead));
    // 3: a lock file that is missing: cannot tell, so alive (its lease still expires).
    set(3, "owner_lock = '" + tilekit::jobs::new_job_id() + "'");
    // 4: no lock recorded (claimed by an older tilekit): left to its lease.
    set(4, "owner_lock = NULL, owner_pid = " + std::to_string(dead));
    // 5: a name that is not one of ours is never turned into a path.
    set(5, "owner_lock = '../jobs.db'");

    CHECK(tilekit::detail::probe_owner_lock(locks + "/" + gone_name) == owner_lock_state::free);
    CHECK(tilekit::detail::probe_owner_lock(locks + "/" + live_name) == owner_lock_state::held);
    CHECK(tilekit::detail::probe_owner_lock(locks + "/no-such-file") == owner_lock_state::unknown);

    sqlite_job_store store(path);
    std::set<std::string> recovered;
    for (const job_record& r : store.recovered_on_open()) recovered.insert(r.id);
    CHECK(recovered == std::set<std::string>{ids[1]});
    for (int i : {0, 2, 3, 4, 5}) CHECK(store.get(ids[static_cast<std::size_t>(i)])->status == job_status::running);
    CHECK(store.get(ids[1])->error == "interrupted: the process running this job stopped (pid " +
                                          std::to_string(::getpid()) + " on host " + tilekit::detail::host_name() + ")");
    // The free lock's file is gone with its jobs; the live ones stay.
    CHECK_FALSE(std::filesystem::exists(locks + "/" + gone_name));
    CHECK(std::filesystem::exists(locks + "/" + live_name));
    CHECK(store.rescue_dead_owners().empty());

    // The live process dies: its lock goes with it, and so does its job.
    ::close(live_fd);
    const auto rescued = store.rescue_dead_owners();
    REQUIRE(rescued.size() == 1);
    CHECK(rescued[0].id == ids[2]);
    CHECK_FALSE(std::filesystem::exists(locks + "/" + live_name));
}

TEST_CASE("sqlite_job_store: leases run on the host's boot clock, its origin kept in the file per boot", "[jobs][sqlite]") {
    scratch_dir dir;
    const std::string path = dir.file("clock.db");
    const std::string boot_id = [] {
        std::ifstream in("/proc/sys/kernel/random/boot_id");
        std::string line;
        std::getline(in, line);
        return line;
    }();
    REQUIRE_FALSE(boot_id.empty());  // Linux: the test machine has one
    const auto wall_ms = [] {
        return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    };
    std::string origin;
    {
        sqlite_job_store store(path);
        CHECK(raw_query(path, "SELECT count(*) FROM lease_clock") == "1");
        CHECK(raw_query(path, "SELECT boot_id FROM lease_clock") == boot_id);
        origin = raw_query(path, "SELECT origin_ms FROM lease_clock");
        store.enqueue(job_for("p", "v1"));
        auto claimed = store.claim("w", {tile_generation_job}, std::chrono::seconds(60));
        REQUIRE(claimed);
        // Near wall milliseconds (the clocks agree until the wall clock steps).
        const std::int64_t lease_end = std::stoll(raw_query(path, "SELECT lease_expires_ms FROM jobs"));
        CHECK(std::llabs(lease_end - (wall_ms() + 60000)) < 5000);
    }
    {
        sqlite_job_store again(path);  // the same boot: the same origin, so every process reads one clock
        CHECK(raw_query(path, "SELECT origin_ms FROM lease_clock") == origin);
    }
    // A lease written on the lease clock is judged by it, not by the wall clock: move the origin
    // 2 h back (as if the wall clock had stepped 2 h ahead since the boot's first open). The
    // job's lease, 60 s on that clock, is not over for a store that reads the file's clock.
    raw_sql(path, "UPDATE lease_clock SET origin_ms = origin_ms - 7200000;");
    {
        sqlite_job_store shifted(path);
        shifted.enqueue(job_for("p", "v2"));
        auto claimed = shifted.claim("w", {tile_generation_job}, std::chrono::seconds(60));
        REQUIRE(claimed);
        const std::int64_t lease_end =
            std::stoll(raw_query(path, "SELECT lease_expires_ms FROM jobs WHERE id = '" + claimed->job.id + "'"));
        CHECK(lease_end < wall_ms() - 7000000);  // by the wall clock, long over
        CHECK(shifted.rescue_expired().empty());  // by the lease clock, 60 s ahead
        CHECK(shifted.get(claimed->job.id)->status == job_status::running);
    }
    // Another boot's origin is replaced by the first open of this boot.
    raw_sql(path, "UPDATE lease_clock SET boot_id = 'another-boot', origin_ms = 0;");
    sqlite_job_store after_reboot(path);
    CHECK(raw_query(path, "SELECT boot_id FROM lease_clock") == boot_id);
    CHECK(std::llabs(std::stoll(raw_query(path, "SELECT origin_ms FROM lease_clock")) - std::stoll(origin)) < 5000);
}
