// The PostgreSQL job store against a real server: the job_store conformance suite, then what only
// this store has: its schema (creation, version, refusal of a newer one), JSONB, the one-active-job
// index and claims across separate store objects (separate pools, as separate processes would
// have), LISTEN/NOTIFY wake-ups between store objects, and surviving a server restart.
//
// Hidden ([.postgresql]): they need a server. `ctest -R postgresql_live` starts a private one
// (scripts/postgres-server.sh run DIR ...), which sets TILEKIT_TEST_POSTGRES_URL and
// TILEKIT_TEST_POSTGRES_DIR. Without TILEKIT_TEST_POSTGRES_URL every case FAILS: a test that cannot
// find its server has tested nothing. Each store gets a fresh schema, dropped afterwards.

#include <tilekit/postgresql.hpp>

#include "job_store_conformance.hpp"

#include <catch2/catch.hpp>
#include <libpq-fe.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace {

using namespace tilekit::jobs;
using std::chrono::milliseconds;

std::string server_url() {
    const char* url = std::getenv("TILEKIT_TEST_POSTGRES_URL");
    if (!url || !*url)
        FAIL("TILEKIT_TEST_POSTGRES_URL is not set: run these cases with "
             "`bash scripts/postgres-server.sh run DIR tilekit_tests \"[.postgresql]\"` (ctest -R postgresql_live)");
    return url;
}

// A schema name no other store in this run uses: "<prefix>_<n>_<8 random hex digits>".
std::string fresh_schema(const std::string& prefix) {
    static std::atomic<int> counter{0};
    return prefix + "_" + std::to_string(++counter) + "_" + new_job_id().substr(0, 8);
}

// SQL on a connection of its own (as another program would); returns the first value, if any.
std::string admin_sql(const std::string& sql) {
    PGconn* conn = PQconnectdb(server_url().c_str());
    PQsetNoticeProcessor(conn, [](void*, const char*) {}, nullptr);  // no "drop cascades to ..." chatter
    const bool connected = PQstatus(conn) == CONNECTION_OK;
    std::string value, message = PQerrorMessage(conn);
    bool ok = false;
    if (connected) {
        PGresult* r = PQexec(conn, sql.c_str());
        const ExecStatusType status = PQresultStatus(r);
        ok = status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK;
        if (status == PGRES_TUPLES_OK && PQntuples(r) > 0 && PQnfields(r) > 0) value = PQgetvalue(r, 0, 0);
        message = PQresultErrorMessage(r);
        PQclear(r);
    }
    PQfinish(conn);
    INFO(sql << ": " << message);
    REQUIRE(ok);
    return value;
}

// Deletes the store, then drops its schema (best effort: no assertions inside a deleter).
struct drop_schema_after {
    void operator()(postgresql_job_store* store) const {
        const std::string schema = store->schema();
        delete store;
        if (const char* url = std::getenv("TILEKIT_TEST_POSTGRES_URL")) {
            PGconn* conn = PQconnectdb(url);
            PQsetNoticeProcessor(conn, [](void*, const char*) {}, nullptr);
            if (PQstatus(conn) == CONNECTION_OK) PQclear(PQexec(conn, ("DROP SCHEMA IF EXISTS \"" + schema + "\" CASCADE").c_str()));
            PQfinish(conn);
        }
    }
};
using store_ptr = std::unique_ptr<postgresql_job_store, drop_schema_after>;

postgresql_store_options options_for(const std::string& schema) {
    postgresql_store_options options;
    options.schema = schema;
    options.connect_timeout = std::chrono::seconds(2);
    return options;
}

store_ptr make_store(const std::string& prefix, postgresql_store_options options = {}) {
    if (options.schema == postgresql_store_options().schema) options = options_for(fresh_schema(prefix));
    return store_ptr(new postgresql_job_store(server_url(), options));
}

// A second store object on the same schema (its own pool and listener), not dropping the schema.
std::unique_ptr<postgresql_job_store> same_schema(const postgresql_job_store& store, bool listen = true) {
    postgresql_store_options options = options_for(store.schema());
    options.listen = listen;
    return std::make_unique<postgresql_job_store>(server_url(), options);
}

new_job job_for(const std::string& project, const std::string& version) {
    new_job job;
    job.project_id = project;
    job.version_id = version;
    job.created_by = "tester";
    return job;
}

const std::vector<std::string> tile_jobs{tile_generation_job};

// scripts/postgres-server.sh ACTION on the test's server; true when it succeeded.
bool server_script(const std::string& action) {
    const char* dir = std::getenv("TILEKIT_TEST_POSTGRES_DIR");
    REQUIRE(dir);
    const std::string command = "bash '" + std::string(TILEKIT_SOURCE_DIR) + "/scripts/postgres-server.sh' " + action + " '" +
                                dir + "' >/dev/null";
    return std::system(command.c_str()) == 0;
}

long long elapsed_ms(std::chrono::steady_clock::time_point since) {
    return std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - since).count();
}

}  // namespace

TEST_CASE("postgresql_job_store conforms to the job_store contract", "[.postgresql]") {
    server_url();
    // The defaults a service runs with: durable commits.
    check_job_store_conformance([] { return make_store("conf", options_for(fresh_schema("conf"))); });
}

TEST_CASE("postgresql_job_store creates its schema, records its version and refuses a newer one", "[.postgresql]") {
    const store_ptr store = make_store("schema");
    const std::string s = "\"" + store->schema() + "\"";
    CHECK(admin_sql("SELECT string_agg(version::text, ',' ORDER BY version) FROM " + s + ".schema_migrations") == "1,2,3");
    // Version 2 dropped jobs_leases (renewals are HOT updates) and set fillfactor 90; version 3 added jobs_by_created.
    CHECK(admin_sql("SELECT string_agg(indexname, ',' ORDER BY indexname) FROM pg_indexes WHERE schemaname = '" + store->schema() +
                    "'") == "jobs_by_created,jobs_by_project,jobs_by_status,jobs_claim,jobs_one_active,jobs_pkey,schema_migrations_pkey");
    CHECK(admin_sql("SELECT array_to_string(reloptions, ',') FROM pg_class WHERE oid = '" + s + ".jobs'::regclass") == "fillfactor=90");
    CHECK(admin_sql("SELECT count(*) FROM pg_trigger WHERE tgname = 'jobs_notify' AND tgrelid = '" + s + ".jobs'::regclass") == "1");
    CHECK(store->channel() == store->schema() + "_jobs");

    // Stored times are whole milliseconds: what is stored is what a record shows.
    const job_record queued = store->enqueue(job_for("p", "v1"));
    const auto claimed = store->claim("w", tile_jobs, milliseconds(30000));
    REQUIRE(claimed);
    CHECK(admin_sql("SELECT count(*) FROM " + s + ".jobs WHERE created_at <> date_trunc('milliseconds', created_at) OR "
                    "started_at <> date_trunc('milliseconds', started_at) OR "
                    "lease_expires_at <> date_trunc('milliseconds', lease_expires_at)") == "0");
    CHECK(admin_sql("SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') FROM " + s +
                    ".jobs WHERE id = '" + queued.id + "'") == queued.created_at);

    // Reopening the same schema (another process starting) changes nothing.
    CHECK(same_schema(*store)->get(queued.id)->status == job_status::running);

    // create_schema = false: a schema that holds the store opens; a missing one is refused.
    postgresql_store_options existing = options_for(store->schema());
    existing.create_schema = false;
    CHECK(postgresql_job_store(server_url(), existing).get(queued.id));
    postgresql_store_options missing = options_for(fresh_schema("missing"));
    missing.create_schema = false;
    try {
        postgresql_job_store refused(server_url(), missing);
        FAIL("opened a schema that does not exist with create_schema = false");
    } catch (const tilekit::error& e) {
        CHECK(e.code() == tilekit::errc::invalid_argument);
        CHECK(std::string(e.what()).find("schema_sql") != std::string::npos);
    }

    // A schema a newer tilekit wrote is refused, whether or not the store may create schemas.
    admin_sql("INSERT INTO " + s + ".schema_migrations (version) VALUES (" + std::to_string(postgresql_job_store::schema_version + 1) + ")");
    for (bool create : {true, false}) {
        postgresql_store_options newer = options_for(store->schema());
        newer.create_schema = create;
        try {
            postgresql_job_store refused(server_url(), newer);
            FAIL("opened a newer schema");
        } catch (const tilekit::error& e) {
            INFO(e.what());
            CHECK(e.code() == tilekit::errc::invalid_argument);
            CHECK(std::string(e.what()).find("newer") != std::string::npos);
        }
    }

    // Bad schema names never reach SQL.
    for (const char* bad : {"", "Upper", "1starts_with_digit", "with space", "quote\"d", "semi;colon",
                            "a_name_that_is_far_too_long_for_the_channel_name_to_fit_in_63_bytes"}) {
        INFO("schema '" << bad << "'");
        postgresql_store_options options;
        options.schema = bad;
        CHECK_THROWS_AS(postgresql_job_store(server_url(), options), postgresql_store_error);
    }
}

TEST_CASE("postgresql_job_store: schema_sql() applied by hand makes a working store", "[.postgresql]") {
    const std::string schema = fresh_schema("by_hand");
    admin_sql(postgresql_job_store::schema_sql(schema));
    postgresql_store_options options = options_for(schema);
    options.create_schema = false;
    store_ptr store(new postgresql_job_store(server_url(), options));
    const std::string id = store->enqueue(job_for("p", "v")).id;
    auto claimed = store->claim("w", tile_jobs, milliseconds(30000));
    REQUIRE(claimed);
    CHECK(claimed->job.id == id);
    CHECK(store->complete(claimed->lease, {{"ok", true}}, "Completed").status == job_status::completed);
}

TEST_CASE("postgresql_job_store stores payloads and results as JSONB that round-trips exactly", "[.postgresql]") {
    const store_ptr store = make_store("jsonb");
    const nlohmann::json value = {
        {"text", "quotes \" and \\ backslashes, tabs\t, newlines\n, unicode \xc3\xa9\xe2\x82\xac\xf0\x9f\x97\xba"},
        {"integers", {0, -1, 2147483648LL, -9223372036854775807LL - 1, 18446744073709551615ULL}},
        {"doubles", {0.1, 1.5e300, -2.5e-300, 3.141592653589793}},
        {"nested", {{"empty_object", nlohmann::json::object()}, {"empty_array", nlohmann::json::array()}, {"null", nullptr}}},
        {"booleans", {true, false}},
        {"b", 1}, {"a", 2}, {"aa", 3}};  // JSONB reorders keys; the values must not change
    new_job job = job_for("p", "v");
    job.payload = value;
    const job_record queued = store->enqueue(job);
    CHECK(queued.payload == value);
    CHECK(queued.payload.dump() == value.dump());
    auto claimed = store->claim("w", tile_jobs, milliseconds(30000));
    REQUIRE(claimed);
    CHECK(claimed->job.payload == value);
    const job_record done = store->complete(claimed->lease, value, "Completed");
    CHECK(done.result == value);
    CHECK(store->get(queued.id)->result.dump() == value.dump());
    CHECK(admin_sql("SELECT jsonb_typeof(result) FROM \"" + store->schema() + "\".jobs WHERE id = '" + queued.id + "'") == "object");

    // A result that is JSON null is stored as SQL NULL and reads back as null.
    const std::string second = store->enqueue(job_for("p", "v2")).id;
    auto c2 = store->claim("w", tile_jobs, milliseconds(30000));
    REQUIRE(c2);
    CHECK(store->complete(c2->lease, nullptr, "Completed").result.is_null());
    CHECK(store->get(second)->result.is_null());

    // PostgreSQL's JSONB cannot hold U+0000: refused as invalid_argument, nothing stored.
    new_job nul = job_for("p", "nul");
    nul.payload = {{"text", std::string("a\0b", 3)}};
    try {
        store->enqueue(nul);
        FAIL("stored U+0000 in JSONB");
    } catch (const tilekit::error& e) {
        INFO(e.what());
        CHECK(e.code() == tilekit::errc::invalid_argument);
    }
    CHECK(store->list_by_project("p").size() == 2);
}

TEST_CASE("postgresql_job_store: one active job per version across store objects", "[.postgresql]") {
    const store_ptr a = make_store("unique");
    const auto b = same_schema(*a, false);
    const std::string first = a->enqueue(job_for("proj", "ver")).id;
    try {
        b->enqueue(job_for("proj", "ver"));
        FAIL("a second active job was created");
    } catch (const job_state_error& e) {
        INFO(e.what());
        CHECK(e.code() == tilekit::errc::duplicate_job);
        CHECK(std::string(e.what()).find(first) != std::string::npos);  // names the active job
        CHECK(std::string(e.what()).find("queued") != std::string::npos);
    }
    auto claimed = b->claim("w", tile_jobs, milliseconds(30000));
    REQUIRE(claimed);
    CHECK_THROWS_AS(a->enqueue(job_for("proj", "ver")), job_state_error);
    b->complete(claimed->lease, nlohmann::json::object(), "Completed");
    CHECK_NOTHROW(a->enqueue(job_for("proj", "ver")));
}

TEST_CASE("postgresql_job_store: store objects with separate pools never claim the same job", "[.postgresql]") {
    const store_ptr a = make_store("race");
    const auto b = same_schema(*a, false);
    constexpr std::size_t job_count = 300;
    constexpr int threads_per_store = 4;
    for (std::size_t j = 0; j < job_count; ++j) (j % 2 ? *a : *b).enqueue(job_for("race", "v" + std::to_string(j)));
    std::vector<std::vector<claimed_job>> got(2 * threads_per_store);
    std::atomic<int> errors{0};
    std::vector<std::thread> workers;
    const auto start = std::chrono::steady_clock::now();
    for (int t = 0; t < 2 * threads_per_store; ++t)
        workers.emplace_back([&, t] {
            postgresql_job_store& store = t % 2 ? *a : *b;
            try {
                while (auto c = store.claim("worker-" + std::to_string(t), tile_jobs, milliseconds(60000))) {
                    store.complete(c->lease, {{"by", t}}, "Completed");
                    got[static_cast<std::size_t>(t)].push_back(std::move(*c));
                }
            } catch (...) {
                ++errors;
            }
        });
    for (auto& w : workers) w.join();
    const long long took = elapsed_ms(start);
    CHECK(errors == 0);
    std::set<std::string> ids, tokens;
    std::size_t total = 0;
    for (const auto& list : got)
        for (const claimed_job& c : list) {
            ++total;
            ids.insert(c.job.id);
            tokens.insert(c.lease.token);
        }
    CHECK(total == job_count);
    CHECK(ids.size() == job_count);
    CHECK(tokens.size() == job_count);
    CHECK(a->list_by_status(job_status::completed).size() == job_count);
    std::printf("postgresql: %zu jobs claimed and completed by %d threads on 2 store objects in %lld ms (%.0f jobs/s)\n",
                job_count, 2 * threads_per_store, took,
                took > 0 ? static_cast<double>(job_count) * 1000.0 / static_cast<double>(took) : 0.0);
}

TEST_CASE("postgresql_job_store: a claim reads a bounded number of index entries however long the queue", "[.postgresql]") {
    // Left to itself the planner chose, for a new table with more than a few thousand jobs, a
    // bitmap scan of every queued row and a sort for the claim: each claim read the whole queue. Counted through the server's own statistics, which
    // a backend flushes when it exits (so the store is closed before they are read).
    constexpr std::size_t queued = 4000, claims = queued;  // the bad plan came above ~2500
    const std::string schema = fresh_schema("scan");
    auto store = std::make_unique<postgresql_job_store>(server_url(), options_for(schema));
    for (std::size_t j = 0; j < queued; ++j) store->enqueue(job_for("scan", "v" + std::to_string(j)));
    {
        worker_options options;
        options.threads = 4;
        worker_pool pool(*store, options);
        pool.handle(tile_generation_job, [](job_context&) { return nlohmann::json::object(); });
        pool.start();
        for (int wait = 0; wait < 1200 && pool.snapshot().completed < queued; ++wait) std::this_thread::sleep_for(milliseconds(50));
        pool.stop();
        REQUIRE(pool.snapshot().completed == queued);
    }
    store.reset();  // its backends exit and flush their statistics
    const std::string read_sql = "SELECT coalesce(sum(idx_scan), 0) || ' ' || coalesce(sum(idx_tup_read), 0)"
                                 " FROM pg_stat_user_indexes WHERE schemaname = '" + schema + "'";
    long long scans = 0, entries = 0;
    for (int wait = 0; wait < 100 && scans < static_cast<long long>(claims); ++wait) {
        std::sscanf(admin_sql(read_sql).c_str(), "%lld %lld", &scans, &entries);
        if (scans < static_cast<long long>(claims)) std::this_thread::sleep_for(milliseconds(100));
    }
    admin_sql("DROP SCHEMA \"" + schema + "\" CASCADE");
    INFO(scans << " index scans read " << entries << " entries for " << claims << " claims with " << queued << " jobs queued");
    REQUIRE(scans >= static_cast<long long>(claims));
    CHECK(entries < static_cast<long long>(claims) * 20);  // the whole-queue plan read about claims * queued
}

TEST_CASE("postgresql_job_store: LISTEN/NOTIFY wakes another store object's workers", "[.postgresql]") {
    const store_ptr listener = make_store("notify");
    const auto producer = same_schema(*listener, false);
    long long slowest = 0;
    for (int i = 0; i < 5; ++i) {
        const std::uint64_t ticket = listener->wakeup().ticket();
        std::chrono::steady_clock::time_point sent;
        std::thread enqueue([&] {
            std::this_thread::sleep_for(milliseconds(50));
            sent = std::chrono::steady_clock::now();
            producer->enqueue(job_for("wake", "v" + std::to_string(i)));
        });
        listener->wakeup().wait(ticket, milliseconds(5000));
        const auto woken = std::chrono::steady_clock::now();
        enqueue.join();
        CHECK(listener->wakeup().ticket() != ticket);
        const long long latency = std::chrono::duration_cast<milliseconds>(woken - sent).count();
        INFO("woken " << latency << " ms after the enqueue began");
        CHECK(latency < 100);
        slowest = std::max(slowest, latency);
    }
    // A retry (queued again) from the other store wakes it too.
    retry_policy no_wait;
    no_wait.base = milliseconds(1);
    no_wait.jitter = false;
    producer->set_retry_policy(no_wait);
    auto claimed = producer->claim("w", tile_jobs, milliseconds(30000));
    REQUIRE(claimed);
    const std::uint64_t ticket = listener->wakeup().ticket();
    const auto failed_at = std::chrono::steady_clock::now();
    CHECK(producer->fail(claimed->lease, "503", failure_kind::retryable).status == job_status::queued);
    listener->wakeup().wait(ticket, milliseconds(5000));
    CHECK(listener->wakeup().ticket() != ticket);
    CHECK(elapsed_ms(failed_at) < 100);
    std::printf("postgresql: LISTEN/NOTIFY wake-up across store objects: at most %lld ms after the enqueue\n", slowest);
}

TEST_CASE("postgresql_job_store survives a server restart and reports store_unavailable while it is down", "[.postgresql]") {
    const store_ptr store = make_store("restart");
    const auto producer = same_schema(*store, false);
    const std::string before = store->enqueue(job_for("restart", "before")).id;
    auto claimed = store->claim("w", tile_jobs, milliseconds(60000));
    REQUIRE(claimed);
    store->report_progress(claimed->lease, 10, "ten");

    // A restart: the pooled connections die; the next calls open fresh ones.
    REQUIRE(server_script("restart"));
    CHECK(store->get(before)->progress == 10);
    CHECK(store->report_progress(claimed->lease, 20, "twenty").progress == 20);  // the lease survived
    const std::string after = store->enqueue(job_for("restart", "after")).id;
    CHECK(store->get(after)->status == job_status::queued);

    // The listener reconnects by itself (with backoff) and hears the other store again.
    const bool heard = job_store_conformance::eventually([&] {
        const std::uint64_t ticket = store->wakeup().ticket();
        producer->enqueue(job_for("restart", "probe-" + new_job_id()));
        store->wakeup().wait(ticket, milliseconds(300));
        return store->wakeup().ticket() != ticket;
    }, milliseconds(15000));
    CHECK(heard);

    // Down: every call throws store_unavailable, within the connect timeout, and nothing crashes.
    REQUIRE(server_script("stop"));
    for (int i = 0; i < 3; ++i) {
        const auto start = std::chrono::steady_clock::now();
        try {
            store->enqueue(job_for("restart", "down-" + std::to_string(i)));
            FAIL("enqueued while the server was down");
        } catch (const tilekit::error& e) {
            INFO(e.what());
            CHECK(e.code() == tilekit::errc::store_unavailable);
            CHECK(std::string(e.what()).find("password") == std::string::npos);
        }
        CHECK_THROWS_AS(store->get(before), tilekit::error);
        try {
            store->renew(claimed->lease);
        } catch (const tilekit::error& e) {
            CHECK(e.code() == tilekit::errc::store_unavailable);
        }
        CHECK(elapsed_ms(start) < 3 * 3000);
    }

    // Back up: the same store object carries on.
    REQUIRE(server_script("start"));
    CHECK(store->complete(claimed->lease, {{"levels", 1}}, "Completed").status == job_status::completed);
    CHECK(store->get(before)->status == job_status::completed);
    auto next = store->claim("w", tile_jobs, milliseconds(60000));
    REQUIRE(next);
    CHECK(next->job.id == after);
}

TEST_CASE("postgresql_job_store: a server crash (SIGKILL) loses no committed change", "[.postgresql]") {
    const store_ptr store = make_store("crash");
    const std::string done_id = store->enqueue(job_for("crash", "done")).id;
    auto claimed = store->claim("w", tile_jobs, milliseconds(60000));
    REQUIRE(claimed);
    store->complete(claimed->lease, {{"levels", 4}}, "Completed");
    const std::string queued_id = store->enqueue(job_for("crash", "queued")).id;

    REQUIRE(server_script("kill"));
    try {
        store->get(done_id);
        FAIL("read from a killed server");
    } catch (const tilekit::error& e) {
        CHECK(e.code() == tilekit::errc::store_unavailable);
    }
    REQUIRE(server_script("start"));  // crash recovery replays the WAL
    const auto done = store->get(done_id);
    REQUIRE(done);
    CHECK(done->status == job_status::completed);
    CHECK(done->result == nlohmann::json{{"levels", 4}});
    auto next = store->claim("w", tile_jobs, milliseconds(60000));
    REQUIRE(next);
    CHECK(next->job.id == queued_id);
}

TEST_CASE("postgresql_job_store: messages never show the password", "[.postgresql]") {
    const std::string url = "postgresql://someone:s3cret-pass@127.0.0.1:1/nowhere";
    postgresql_store_options options;
    options.connect_timeout = std::chrono::seconds(2);
    try {
        postgresql_job_store store(url, options);
        FAIL("connected to a port nothing listens on");
    } catch (const tilekit::error& e) {
        INFO(e.what());
        CHECK(e.code() == tilekit::errc::store_unavailable);
        CHECK(std::string(e.what()).find("s3cret-pass") == std::string::npos);
        CHECK(std::string(e.what()).find("127.0.0.1") != std::string::npos);
    }
    try {
        postgresql_job_store store("host=127.0.0.1 port=1 password=s3cret-pass dbname=x connect_timeout=2", options);
        FAIL("connected to a port nothing listens on");
    } catch (const tilekit::error& e) {
        CHECK(std::string(e.what()).find("s3cret-pass") == std::string::npos);
    }
    server_url();  // like every case here, fails without the test server
}

namespace {

// n_tup_upd and n_tup_hot_upd of <schema>.jobs from the server's statistics, once they count at
// least `updates` (a backend flushes its counts when it exits: close the store first).
std::pair<long long, long long> table_updates(const std::string& schema, long long updates) {
    const std::string sql = "SELECT coalesce(sum(n_tup_upd), 0) || ' ' || coalesce(sum(n_tup_hot_upd), 0) FROM "
                            "pg_stat_user_tables WHERE schemaname = '" + schema + "' AND relname = 'jobs'";
    long long upd = 0, hot = 0;
    for (int wait = 0; wait < 150; ++wait) {
        std::sscanf(admin_sql(sql).c_str(), "%lld %lld", &upd, &hot);
        if (upd >= updates) break;
        std::this_thread::sleep_for(milliseconds(100));
    }
    return {upd, hot};
}

// 100 queued jobs (full pages), then one claimed job's `writes` renewals and `writes` progress
// reports, as a running job's lease keeper and handler make them. Each write waits a little over
// a millisecond first: lease_expires_at is whole milliseconds, and two writes in one millisecond
// leave it unchanged, which makes the second HOT even with an index on it (on a fast machine most
// writes were, and the version-1 arm measured no defect).
void renew_and_report(postgresql_job_store& store, int writes) {
    for (int j = 0; j < 100; ++j) store.enqueue(job_for("hot", "v" + std::to_string(j)));
    auto claimed = store.claim("w", tile_jobs, milliseconds(60000));
    REQUIRE(claimed);
    const auto pause = [] { std::this_thread::sleep_for(std::chrono::microseconds(1100)); };
    for (int i = 0; i < writes; ++i) {
        pause();
        store.renew(claimed->lease);
        pause();
        store.report_progress(claimed->lease, i * 100 / writes, "tiles " + std::to_string(i));
    }
}

}  // namespace

TEST_CASE("postgresql_job_store: lease renewals and progress reports are HOT updates, also after migrating from version 1",
          "[.postgresql]") {
    // Version 1 indexed lease_expires_at, which every renewal and progress report changes: each
    // write added entries to every index and left a dead tuple (2000 writes on one job: 46 HOT).
    constexpr int writes = 500;
    struct run {
        const char* name;
        bool from_version_1, migrate;
    };
    for (const run r : {run{"fresh", false, true}, run{"migrated from 1", true, true}, run{"version 1 as it was", true, false}}) {
        INFO(r.name);
        const std::string schema = fresh_schema("hot");
        const std::string s = "\"" + schema + "\"";
        if (r.from_version_1) {
            admin_sql(postgresql_job_store::schema_sql(schema, 1));
            CHECK(admin_sql("SELECT count(*) FROM pg_indexes WHERE schemaname = '" + schema + "' AND indexname = 'jobs_leases'") == "1");
            // As it was: version 1's table and indexes, plus only the columns this store reads
            // (version 3's step without version 2's), so that it opens with create_schema off.
            if (!r.migrate) admin_sql(postgresql_job_store::migration_sql(schema, 2, 3));
        }
        {
            postgresql_store_options options = options_for(schema);
            options.create_schema = r.migrate;  // off: a version-1 store is used as it is
            postgresql_job_store store(server_url(), options);
            renew_and_report(store, writes);
        }  // its backends exit and flush their statistics
        const std::string version = admin_sql("SELECT max(version) FROM " + s + ".schema_migrations");
        const std::string leases = admin_sql("SELECT count(*) FROM pg_indexes WHERE schemaname = '" + schema + "' AND indexname = 'jobs_leases'");
        const std::pair<long long, long long> counts = table_updates(schema, 2 * writes + 1);
        const long long upd = counts.first, hot = counts.second;
        admin_sql("DROP SCHEMA " + s + " CASCADE");
        INFO(hot << " of " << upd << " updates HOT (" << 2 * writes << " renewals and progress reports, 1 claim)");
        REQUIRE(upd >= 2 * writes + 1);
        if (r.migrate) {
            CHECK(version == "3");
            CHECK(leases == "0");
            CHECK(hot * 10 >= upd * 9);  // >= 90 %; the claim is the one that must not be HOT
        } else {
            CHECK(version == "3");
            CHECK(leases == "1");
            CHECK(hot * 2 < upd);  // the defect this guards against, measured on the old schema
        }
    }
}

TEST_CASE("postgresql_job_store: a row lock held by an idle transaction fails a renewal within lock_timeout", "[.postgresql]") {
    postgresql_store_options options = options_for(fresh_schema("locked"));
    options.lock_timeout = milliseconds(1000);
    options.statement_timeout = milliseconds(5000);
    const store_ptr store(new postgresql_job_store(server_url(), options));
    store->enqueue(job_for("p", "v"));
    auto claimed = store->claim("w", tile_jobs, milliseconds(60000));
    REQUIRE(claimed);

    // Another program's session locks the row and goes idle inside its transaction (it ends
    // itself after 8 s, so that a store without timeouts fails this test instead of hanging it).
    PGconn* blocker = PQconnectdb(server_url().c_str());
    REQUIRE(PQstatus(blocker) == CONNECTION_OK);
    const std::string lock_sql = "SET idle_in_transaction_session_timeout = 8000; BEGIN; SELECT 1 FROM \"" + store->schema() +
                                 "\".jobs WHERE id = '" + claimed->job.id + "' FOR UPDATE";
    PGresult* locked = PQexec(blocker, lock_sql.c_str());
    REQUIRE(PQresultStatus(locked) == PGRES_TUPLES_OK);
    PQclear(locked);

    for (int call = 0; call < 2; ++call) {
        const auto began = std::chrono::steady_clock::now();
        try {
            if (call == 0)
                store->renew(claimed->lease);
            else
                store->report_progress(claimed->lease, 10, "blocked");
            FAIL("a write went through a row lock another session holds");
        } catch (const tilekit::error& e) {
            INFO(e.what());
            CHECK(e.code() == tilekit::errc::store_unavailable);
            CHECK(std::string(e.what()).find("lock") != std::string::npos);
        }
        const auto took = std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - began);
        INFO("call " << call << " took " << took.count() << " ms");
        CHECK(took >= milliseconds(900));
        CHECK(took < milliseconds(4000));
    }
    PQclear(PQexec(blocker, "ROLLBACK"));
    PQfinish(blocker);
    CHECK(store->renew(claimed->lease).status == job_status::running);  // the same connections, fine again
}

TEST_CASE("postgresql_job_store: a session the server terminates is replaced on the next call", "[.postgresql]") {
    postgresql_store_options options = options_for(fresh_schema("terminated"));
    options.application_name = "tk_" + options.schema;
    const store_ptr store(new postgresql_job_store(server_url(), options));
    store->enqueue(job_for("p", "v"));
    auto claimed = store->claim("w", tile_jobs, milliseconds(60000));
    REQUIRE(claimed);
    const std::string killed = admin_sql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = '" +
                                         options.application_name + "'");
    CHECK(killed != "0");
    std::this_thread::sleep_for(milliseconds(200));  // the FATAL reaches the idle sockets
    int failures = 0;
    bool renewed = false;
    for (int call = 0; call < 3 && !renewed; ++call) {
        try {
            renewed = store->renew(claimed->lease).status == job_status::running;
        } catch (const tilekit::error& e) {
            INFO(e.what());
            CHECK(e.code() == tilekit::errc::store_unavailable);
            ++failures;
        }
    }
    CHECK(renewed);
    CHECK(failures <= 1);
}

TEST_CASE("postgresql_job_store: a missing database or role is store_refused at once, with the server's message", "[.postgresql]") {
    const std::string url = server_url();
    const std::size_t query = url.find('?');
    REQUIRE(query != std::string::npos);
    std::string host_and_user = url.substr(query);  // ?host=DIR/socket&user=NAME
    struct refusal {
        std::string url, words, sqlstate;
    };
    std::string other_user = host_and_user;
    const std::size_t user = other_user.find("user=");
    REQUIRE(user != std::string::npos);
    other_user = other_user.substr(0, user) + "user=tk_no_such_role";
    for (const refusal& r : {refusal{"postgresql:///tk_no_such_database" + host_and_user, "does not exist", "3D000"},
                             refusal{"postgresql:///tilekit" + other_user, "does not exist", "28000"}}) {
        INFO(r.url);
        const auto began = std::chrono::steady_clock::now();
        try {
            postgresql_job_store store(r.url, options_for(fresh_schema("refused")));
            FAIL("opened a store the server refuses");
        } catch (const postgresql_store_error& e) {
            INFO(e.what());
            CHECK(e.code() == tilekit::errc::store_refused);
            CHECK(e.sqlstate() == r.sqlstate);
            CHECK(std::string(e.what()).find(r.words) != std::string::npos);
        }
        CHECK(std::chrono::steady_clock::now() - began < std::chrono::seconds(2));
    }
    CHECK(tilekit::jobs::classify_failure(tilekit::errc::store_refused) == failure_kind::permanent);
}

TEST_CASE("postgresql_job_store: a role with only USAGE and DML grants opens the store with create_schema off", "[.postgresql]") {
    const std::string schema = fresh_schema("restricted");
    const std::string s = "\"" + schema + "\"";
    admin_sql(postgresql_job_store::schema_sql(schema));
    admin_sql("DO $$BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tk_dml_only') THEN CREATE ROLE tk_dml_only LOGIN; "
              "END IF; END$$");
    admin_sql("GRANT USAGE ON SCHEMA " + s + " TO tk_dml_only; GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA " + s +
              " TO tk_dml_only; GRANT USAGE ON ALL SEQUENCES IN SCHEMA " + s + " TO tk_dml_only");
    std::string url = server_url();
    url = url.substr(0, url.find("user=")) + "user=tk_dml_only";
    postgresql_store_options options = options_for(schema);
    options.create_schema = false;
    {
        postgresql_job_store store(url, options);
        store.enqueue(job_for("p", "v"));
        auto claimed = store.claim("w", tile_jobs, milliseconds(60000));
        REQUIRE(claimed);
        CHECK(store.complete(claimed->lease, {{"ok", true}}, "Completed").status == job_status::completed);
        CHECK(store.rescue_expired().empty());
    }
    options.create_schema = true;
    try {
        postgresql_job_store store(url, options);
        FAIL("a role without CREATE on the database created or migrated a schema");
    } catch (const postgresql_store_error& e) {
        INFO(e.what());
        CHECK(e.code() == tilekit::errc::store_refused);
        CHECK(std::string(e.what()).find("permission denied") != std::string::npos);
        CHECK(std::string(e.what()).find("create_schema off") != std::string::npos);
    }
    admin_sql("DROP SCHEMA " + s + " CASCADE");
    admin_sql("DROP OWNED BY tk_dml_only");
}
