#pragma once
// The PostgreSQL job store: the queue for many worker processes on many hosts, over libpq. Link
// `tilekit::postgresql` (CMake), `tilekit_postgresql_dep` (meson) or `pkg-config
// tilekit-postgresql`; the core never includes libpq.
//
// How it is built, and why:
// - One table, <schema>.jobs, in a schema of its own (options.schema, default "tilekit"), so a
//   service can keep it in its own database or beside its tables. The constructor creates the
//   schema (CREATE SCHEMA IF NOT EXISTS, under an advisory lock so that processes starting
//   together take turns) unless options.create_schema is false; then a DBA applies
//   postgresql_job_store::schema_sql() by hand (the SQL is below).
// - The server's clock, never the host's: run_at, lease expiry, rescue and every time in a record
//   come from now() on the server, so workers on hosts with skewed clocks agree. Stored times are
//   truncated to milliseconds (timestamptz keeps microseconds) so what is stored is what the
//   record shows, formatted like jobs::format_utc.
// - claim is one statement (the shape River, Oban, graphile-worker and pg-boss use):
//     UPDATE jobs SET status = 'running', attempt = attempt + 1, lease_token = gen_random_uuid(),
//            worker = $1, started_at = <now ms>, lease_expires_at = <now ms> + $3 ms, progress = 0,
//            message = 'Starting (attempt ' || attempt + 1 || ' of ' || max_attempts || ')'
//     WHERE id = (SELECT id FROM jobs WHERE status = 'queued' AND run_at <= now()
//                 AND job_type = ANY($2) ORDER BY run_at, seq LIMIT 1 FOR UPDATE SKIP LOCKED)
//     RETURNING ...
//   SKIP LOCKED lets concurrent claimers pass over each other's rows instead of queueing on them;
//   seq (a bigserial) orders jobs created in the same millisecond.
// - renew, report_progress (0..100) and complete are one fenced statement each:
//     UPDATE jobs SET ... WHERE id = $1 AND status = 'running' AND lease_token::text = $2 RETURNING ...
//   When no row comes back, the row is read and detail::check_lease says why (job_cancelled,
//   lease_lost with the same text as the other stores, or job_not_found).
// - Everything else (fail, release, cancel, progress out of range) reads the row with the server's
//   now() and its xmin, applies the shared detail::apply_* helper in C++, and writes it back with
//   UPDATE ... WHERE id = $1 AND xmin = <the xmin read>: optimistic, two round trips and no lock
//   held across them; when another write came in between, no row matches and the change is
//   computed again from the new row. So the semantics are the memory and SQLite stores' by
//   construction, and tests/job_store_conformance.hpp checks the single-statement forms against
//   them. (xmin, the id of the transaction that wrote the row version, changes with every UPDATE.)
// - rescue_expired, in one transaction, locks expired rows FOR UPDATE SKIP LOCKED (many processes
//   may run it at once) and applies detail::apply_rescue to each. It finds them through
//   jobs_by_status (the running rows, a few per worker), not an index on lease_expires_at: that
//   column changes with every renewal, and an index on it would make every renewal a non-HOT
//   update (new entries in every index, a dead tuple each time).
// - Timeouts on every session (statement_timeout, lock_timeout,
//   idle_in_transaction_session_timeout; TCP keepalives and tcp_user_timeout on the socket): a
//   call blocked by another session's lock or a dead connection fails with store_unavailable in
//   bounded time instead of stalling the lease keeper of a whole worker pool.
// - A server that refuses this client for good (a wrong password, no such database or role, no
//   privilege: SQLSTATE 28P01, 28000, 3D000, 42501) gives errc::store_refused, which nothing
//   retries; the service and `tilekit jobs` exit with the server's message.
// - One active job per (job_type, project, version): a partial unique index; its violation
//   (SQLSTATE 23505) becomes job_state_error(errc::duplicate_job) naming the active job.
// - Wake-ups: a trigger NOTIFYs channel "<schema>_jobs" (payload: the job type) in the same
//   transaction whenever a row becomes queued (enqueue, retry, release, rescue). With
//   options.listen a background thread holds its own connection, LISTENs, and calls
//   wakeup().notify() per notification; when that connection drops it reconnects with backoff and
//   notifies once (work may have arrived meanwhile). Workers' polling is the fallback. (NOTIFY
//   does not pass through PgBouncer in transaction mode: point the listener at the server.)
// - Connections: libpq connections are not thread-safe, so a small mutex-guarded pool
//   (options.pool_size). A connection that fails (CONNECTION_BAD, SQLSTATE class 08, 57P01..03)
//   is dropped and a fresh one is opened on next use; an idle pooled connection with anything to
//   read (a server that shut down sends a FATAL and closes) is dropped before use. A server that
//   cannot be reached gives tilekit::error(errc::store_unavailable), which the worker runtime
//   retries. A connection is never pooled inside a transaction.
// - Parameters travel separately from SQL (PQexecParams); the schema name is validated
//   ([a-z_][a-z0-9_]{0,57}: "<schema>_jobs" must fit PostgreSQL's 63-byte names) and quoted.
//   Messages name the server by host, port, database and user only: never the password.
// - JSONB for payload and result: values round-trip exactly, except that PostgreSQL refuses the
//   character U+0000 in JSONB (errc::invalid_argument).
//
// The schema, as postgresql_job_store::schema_sql("tilekit") returns it (a service may apply it
// by hand and set create_schema = false). Each version is one step recorded in schema_migrations;
// the constructor (create_schema on) applies the steps a database lacks, under the advisory lock,
// and migration_sql(schema, from) prints them for a DBA. Version 1:
//
//   CREATE SCHEMA IF NOT EXISTS "tilekit";
//   CREATE TABLE IF NOT EXISTS "tilekit".schema_migrations (
//       version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now());
//   CREATE TABLE "tilekit".jobs (
//       id uuid PRIMARY KEY,
//       seq bigserial NOT NULL,  -- creation order: breaks ties between equal timestamps
//       job_type text NOT NULL,
//       status text NOT NULL CHECK (status IN ('queued','running','completed','failed','cancelled')),
//       progress integer NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
//       message text NOT NULL DEFAULT '',
//       result jsonb,  -- NULL until completed
//       error text NOT NULL DEFAULT '',
//       project_id text NOT NULL,
//       version_id text NOT NULL,
//       created_by text NOT NULL DEFAULT '',
//       created_at timestamptz NOT NULL,
//       started_at timestamptz,
//       completed_at timestamptz,
//       payload jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(payload) = 'object'),
//       attempt integer NOT NULL DEFAULT 0 CHECK (attempt >= 0),
//       max_attempts integer NOT NULL CHECK (max_attempts >= 1),
//       run_at timestamptz NOT NULL,
//       worker text,
//       lease_token uuid,  -- the fencing token: set exactly while running
//       lease_expires_at timestamptz,
//       CHECK ((status = 'running') = (lease_token IS NOT NULL)));
//   CREATE UNIQUE INDEX jobs_one_active ON "tilekit".jobs (job_type, project_id, version_id)
//       WHERE status IN ('queued','running');
//   CREATE INDEX jobs_claim ON "tilekit".jobs (run_at, seq) WHERE status = 'queued';
//   CREATE INDEX jobs_leases ON "tilekit".jobs (lease_expires_at) WHERE status = 'running';
//   CREATE INDEX jobs_by_project ON "tilekit".jobs (project_id, created_at, seq);
//   CREATE INDEX jobs_by_status ON "tilekit".jobs (status, created_at, seq);
//   CREATE FUNCTION "tilekit".notify_job_runnable() RETURNS trigger LANGUAGE plpgsql AS
//       $$BEGIN PERFORM pg_notify(TG_TABLE_SCHEMA || '_jobs', NEW.job_type); RETURN NULL; END$$;
//   CREATE TRIGGER jobs_notify AFTER INSERT OR UPDATE OF status, run_at ON "tilekit".jobs
//       FOR EACH ROW WHEN (NEW.status = 'queued') EXECUTE FUNCTION "tilekit".notify_job_runnable();
//   INSERT INTO "tilekit".schema_migrations (version) VALUES (1);
//
// Version 2: lease renewals and progress reports are HOT updates (no index holds a column they
// change; rescue_expired walks jobs_by_status over the running rows instead):
//
//   DROP INDEX IF EXISTS "tilekit".jobs_leases;
//   ALTER TABLE "tilekit".jobs SET (fillfactor = 90);
//   INSERT INTO "tilekit".schema_migrations (version) VALUES (2);
//
// Version 3 (hand-backs in a row, the per-job run-time limit, the newest-first listing's index):
//
//   ALTER TABLE "tilekit".jobs ADD COLUMN releases integer NOT NULL DEFAULT 0 CHECK (releases >= 0),
//       ADD COLUMN timeout_ms bigint NOT NULL DEFAULT 0 CHECK (timeout_ms >= 0);
//   CREATE INDEX jobs_by_created ON "tilekit".jobs (created_at, id);
//   INSERT INTO "tilekit".schema_migrations (version) VALUES (3);
//
// Operators' calls (list_jobs, count_jobs, stats, retention's prune_finished) are built per call
// from the filter, so each WHERE names only what is set and an index serves it; pages and
// batches are bounded with LIMIT.

#if !__has_include(<libpq-fe.h>)
#error "<tilekit/postgresql/postgresql_store.hpp> needs libpq (<libpq-fe.h>; Debian: libpq-dev). Link tilekit::postgresql (CMake), tilekit_postgresql_dep (meson) or pkg-config tilekit-postgresql."
#endif

#include <tilekit/jobs/job_store.hpp>

#include <libpq-fe.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

TILEKIT_NAMESPACE_BEGIN
namespace jobs {

struct postgresql_store_options {
    // The schema holding the tables; [a-z_][a-z0-9_]{0,57}.
    std::string schema = "tilekit";
    // Connections for the store's calls (the listener has one more of its own).
    int pool_size = 4;
    // LISTEN for other processes' new work and wake this store's waiting workers.
    bool listen = true;
    // How long opening a connection may take (libpq's connect_timeout; at least 2 s).
    std::chrono::seconds connect_timeout{5};
    // Limits on each of the store's sessions, so that no call hangs (0: no limit). A statement
    // running longer than statement_timeout, or waiting longer than lock_timeout for a row lock
    // (another session's transaction holding the row), fails with errc::store_unavailable; a
    // transaction of this store left idle longer than idle_in_transaction_timeout is ended by the
    // server. tcp_user_timeout: data sent and not acknowledged for this long (a half-open TCP
    // connection after a failover) closes the connection; TCP keepalives probe an idle one after
    // keepalives_idle, so a dead peer is noticed within about keepalives_idle + 15 s.
    std::chrono::milliseconds statement_timeout{30000};
    std::chrono::milliseconds lock_timeout{10000};
    std::chrono::milliseconds idle_in_transaction_timeout{60000};
    std::chrono::milliseconds tcp_user_timeout{30000};
    std::chrono::seconds keepalives_idle{10};
    // Create the schema and tables when missing; false: they must exist (see schema_sql()).
    bool create_schema = true;
    // false: SET synchronous_commit = off on the store's connections. A commit then returns before
    // its WAL is flushed (~0.1 ms instead of an fsync, ~1-2 ms here); a server crash (not a
    // clean restart) may lose the last few hundred milliseconds of changes, never corrupting
    // anything: a lost claim or progress report is fenced off or redone, but a lost enqueue or
    // completion is lost. The default keeps every commit durable.
    bool synchronous_commit = true;
    std::string application_name = "tilekit";
    // Prepare the store's statements once per connection (false for a pooler that cannot keep
    // them, such as PgBouncer in transaction mode).
    bool prepared_statements = true;
};

// A database error, or a database that is not a job store this tilekit can use (a newer schema).
// sqlstate() is PostgreSQL's five-character code when the server sent one.
class postgresql_store_error : public error {
public:
    postgresql_store_error(errc code, const std::string& message, std::string sqlstate = {})
        : error(code, message), sqlstate_(std::move(sqlstate)) {}
    const std::string& sqlstate() const noexcept { return sqlstate_; }

private:
    std::string sqlstate_;
};

}  // namespace jobs
namespace detail {

struct pg_result_free {
    void operator()(PGresult* r) const noexcept { PQclear(r); }
};
using pg_result = std::unique_ptr<PGresult, pg_result_free>;

struct pg_conn_finish {
    void operator()(PGconn* c) const noexcept { PQfinish(c); }
};
using pg_conn = std::unique_ptr<PGconn, pg_conn_finish>;

inline bool is_valid_pg_schema_name(const std::string& name) {
    if (name.empty() || name.size() > 58) return false;
    for (std::size_t i = 0; i < name.size(); ++i) {
        const char c = name[i];
        const bool ok = (c >= 'a' && c <= 'z') || c == '_' || (i > 0 && c >= '0' && c <= '9');
        if (!ok) return false;
    }
    return true;
}

// The server a conninfo names, without its password: "host=/run/pg port=5432 dbname=x user=y".
inline std::string describe_pg_conninfo(const std::string& conninfo) {
    char* message = nullptr;
    PQconninfoOption* options = PQconninfoParse(conninfo.c_str(), &message);
    if (message) PQfreemem(message);  // may quote the string, password included: never shown
    if (!options) return "an unparseable connection string";
    std::string out;
    for (const PQconninfoOption* o = options; o->keyword; ++o) {
        const std::string key = o->keyword;
        if (!o->val || !*o->val) continue;
        if (key == "host" || key == "hostaddr" || key == "port" || key == "dbname" || key == "user")
            out += (out.empty() ? "" : " ") + key + "=" + o->val;
    }
    PQconninfoFree(options);
    return out.empty() ? "the default server" : out;
}

// A connection failure rather than a statement's: the store is (for now) unavailable.
inline bool is_pg_connection_failure(PGconn* conn, const std::string& sqlstate) {
    if (!conn || PQstatus(conn) != CONNECTION_OK) return true;
    return sqlstate.rfind("08", 0) == 0 ||                      // connection exception
           sqlstate == "57P01" || sqlstate == "57P02" ||        // admin / crash shutdown
           sqlstate == "57P03" || sqlstate == "53300" ||        // cannot connect now, too many connections
           sqlstate == "25P03";                                 // idle-in-transaction timeout (session ended)
}

// A statement the session's limits stopped (the connection stays usable): try again later.
inline bool is_pg_timeout(const std::string& sqlstate) {
    return sqlstate == "57014" ||  // statement_timeout (or a cancel request)
           sqlstate == "55P03" ||  // lock_timeout
           sqlstate == "40P01";    // deadlock detected
}

// A refusal that no retry can change: the credentials, the database or the role's privileges.
inline bool is_pg_refusal(const std::string& sqlstate) {
    return sqlstate == "28P01" ||  // invalid password
           sqlstate == "28000" ||  // invalid authorization (no such role, no pg_hba.conf entry)
           sqlstate == "3D000" ||  // no such database
           sqlstate == "42501";    // insufficient privilege (CONNECT, CREATE, a table's grants)
}

// The SQLSTATE a verbose libpq error message names ("FATAL:  28P01: password ..."), if any.
inline std::string pg_sqlstate_in(const std::string& message) {
    for (std::size_t at = message.find(":  "); at != std::string::npos; at = message.find(":  ", at + 1)) {
        const std::size_t code = at + 3;
        if (code + 6 > message.size() || message[code + 5] != ':') continue;
        bool ok = true;
        for (std::size_t i = code; i < code + 5; ++i)
            ok = ok && ((message[i] >= '0' && message[i] <= '9') || (message[i] >= 'A' && message[i] <= 'Z'));
        if (ok) return message.substr(code, 5);
    }
    return {};
}

// libpq's own refusals before the server answers (no SQLSTATE): the conninfo lacks a password
// the server asks for, or asks for something the server cannot do.
inline bool is_pg_client_refusal(const std::string& message) {
    return message.find("no password supplied") != std::string::npos ||
           message.find("password authentication failed") != std::string::npos ||
           message.find("server does not support SSL, but SSL was required") != std::string::npos;
}

inline std::string trimmed(std::string text) {
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
    return text;
}

// {"a","b\"c"}: a text[] parameter in PostgreSQL's array syntax.
inline std::string pg_text_array(const std::vector<std::string>& items) {
    std::string out = "{";
    for (std::size_t i = 0; i < items.size(); ++i) {
        out += i ? ",\"" : "\"";
        for (char c : items[i]) {
            if (c == '"' || c == '\\') out += '\\';
            out += c;
        }
        out += '"';
    }
    return out + "}";
}

inline std::chrono::system_clock::time_point from_epoch_millis(std::int64_t ms) {
    return std::chrono::system_clock::time_point(
        std::chrono::duration_cast<std::chrono::system_clock::duration>(std::chrono::milliseconds(ms)));
}

// Text parameters for PQexecParams; nullopt is SQL NULL.
class pg_params {
public:
    pg_params& add(std::string value) {
        values_.emplace_back(std::move(value));
        return *this;
    }
    pg_params& add(std::optional<std::string> value) {
        values_.push_back(std::move(value));
        return *this;
    }
    pg_params& add(std::int64_t value) { return add(std::to_string(value)); }
    pg_params& add(int value) { return add(std::to_string(value)); }

    std::vector<const char*> pointers() const {
        std::vector<const char*> out;
        for (const auto& v : values_) out.push_back(v ? v->c_str() : nullptr);
        return out;
    }
    int size() const noexcept { return static_cast<int>(values_.size()); }

private:
    std::vector<std::optional<std::string>> values_;
};

// A fixed number of connections shared by threads; each is used by one thread at a time.
class pg_pool {
public:
    pg_pool(std::function<pg_conn()> connect, int size) : connect_(std::move(connect)), size_(std::max(1, size)) {}

    pg_conn acquire() {
        std::unique_lock<std::mutex> lock(mutex_);
        for (;;) {
            available_.wait(lock, [&] { return !idle_.empty() || open_ < size_; });
            if (!idle_.empty()) {
                pg_conn conn = std::move(idle_.back());
                idle_.pop_back();
                if (still_usable(conn.get())) return conn;
                conn.reset();  // its server went away while it was idle
                --open_;
                continue;
            }
            ++open_;
            lock.unlock();
            try {
                return connect_();
            } catch (...) {
                lock.lock();
                --open_;
                available_.notify_one();
                throw;
            }
        }
    }

    // Keeps the connection for the next caller only when it is healthy and outside a transaction.
    void give_back(pg_conn conn, bool broken) {
        const bool keep = conn && !broken && PQstatus(conn.get()) == CONNECTION_OK &&
                          PQtransactionStatus(conn.get()) == PQTRANS_IDLE;
        if (!keep) conn.reset();
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (keep)
                idle_.push_back(std::move(conn));
            else
                --open_;
        }
        available_.notify_one();
    }

private:
    // An idle connection has nothing to say: readable data or a hang-up means the server closed it.
    static bool still_usable(PGconn* conn) {
        if (PQstatus(conn) != CONNECTION_OK) return false;
        pollfd fd{PQsocket(conn), POLLIN, 0};
        return fd.fd >= 0 && poll(&fd, 1, 0) == 0;
    }

    std::function<pg_conn()> connect_;
    const int size_;
    std::mutex mutex_;
    std::condition_variable available_;
    std::vector<pg_conn> idle_;
    int open_ = 0;
};

// A connection borrowed from the pool for one call; given back (or dropped) at scope exit.
class pg_session {
public:
    explicit pg_session(pg_pool& pool) : pool_(pool), conn_(pool.acquire()) {}
    ~pg_session() { pool_.give_back(std::move(conn_), broken_); }
    pg_session(const pg_session&) = delete;
    pg_session& operator=(const pg_session&) = delete;

    PGconn* get() const noexcept { return conn_.get(); }
    void mark_broken() noexcept { broken_ = true; }

private:
    pg_pool& pool_;
    pg_conn conn_;
    bool broken_ = false;
};

}  // namespace detail
namespace jobs {

class postgresql_job_store final : public job_store {
public:
    static constexpr int schema_version = 3;

    explicit postgresql_job_store(std::string conninfo, postgresql_store_options options = {})
        : conninfo_(std::move(conninfo)), options_(std::move(options)), server_(detail::describe_pg_conninfo(conninfo_)) {
        if (!detail::is_valid_pg_schema_name(options_.schema))
            throw postgresql_store_error(errc::invalid_argument, "postgresql job store: schema name '" + options_.schema +
                                                                     "' is not [a-z_][a-z0-9_]{0,57}");
        if (options_.pool_size < 1) throw postgresql_store_error(errc::invalid_argument, "postgresql job store: pool_size must be >= 1");
        table_ = quoted(options_.schema) + ".jobs";
        pool_ = std::make_unique<detail::pg_pool>([this] { return open_connection(); }, options_.pool_size);
        prepare_sql();
        {
            detail::pg_session session(*pool_);
            if (options_.create_schema)
                create_schema(session);
            else
                check_schema(session);
        }
        if (options_.listen) start_listener();
    }

    postgresql_job_store(const postgresql_job_store&) = delete;
    postgresql_job_store& operator=(const postgresql_job_store&) = delete;
    ~postgresql_job_store() override { stop_listener(); }

    const std::string& schema() const noexcept { return options_.schema; }
    // "<schema>_jobs": the channel the store NOTIFYs and LISTENs on.
    std::string channel() const { return options_.schema + "_jobs"; }

    // The SQL that creates the store in `schema`, up to `version` (default: the current one), as
    // the constructor does: for a DBA to apply when the service's role may not run DDL
    // (create_schema = false; `tilekit jobs schema-sql`).
    static std::string schema_sql(const std::string& schema, int version = schema_version) {
        const std::string s = checked_schema(schema);
        return "CREATE SCHEMA IF NOT EXISTS " + s + ";\n" + migrations_table_sql(s) + ";\n" + migration_sql(schema, 0, version);
    }

    // The SQL that takes a store in `schema` from version `from` (0: nothing) to `to`, one step
    // per version, each recording itself in schema_migrations.
    static std::string migration_sql(const std::string& schema, int from, int to = schema_version) {
        const std::string s = checked_schema(schema);
        if (from < 0 || to > schema_version || from > to)
            throw postgresql_store_error(errc::invalid_argument, "schema versions " + std::to_string(from) + " to " +
                                                                     std::to_string(to) + ": this tilekit knows 0.." +
                                                                     std::to_string(schema_version));
        std::string out;
        for (int v = from + 1; v <= to; ++v) out += v == 1 ? version_1_sql(s) : v == 2 ? version_2_sql(s) : version_3_sql(s);
        return out;
    }

    job_record enqueue(const new_job& job) override {
        detail::job_queue_state unused;
        const job_record made = detail::make_job(job, unused, detail::job_clock::now());  // validates; gives the id
        detail::pg_params params;
        params.add(made.id).add(made.job_type).add(made.message).add(made.project_id).add(made.version_id);
        params.add(made.created_by).add(json_text(made, made.payload, "payload")).add(made.max_attempts);
        params.add(static_cast<std::int64_t>(job.delay.count())).add(static_cast<std::int64_t>(job.timeout.count()));
        job_record created;
        {
            detail::pg_session session(*pool_);
            try {
                created = read_record(run(session, sql_.insert, params, "enqueue a job").get(), 0);
            } catch (const postgresql_store_error& e) {
                if (e.sqlstate() != "23505") throw;
                throw duplicate(session, made);
            }
        }
        wakeup().notify();
        return created;
    }

    std::optional<job_record> get(const std::string& id) const override {
        if (!is_uuid(id)) return std::nullopt;
        detail::pg_session session(*pool_);
        const auto rows = run(session, sql_.get, detail::pg_params().add(id), "read a job");
        if (PQntuples(rows.get()) == 0) return std::nullopt;
        return read_record(rows.get(), 0);
    }

    std::vector<job_record> list_by_project(const std::string& project_id) const override {
        return read_all(sql_.by_project, project_id, "list jobs by project");
    }

    std::vector<job_record> list_by_status(job_status status) const override {
        return read_all(sql_.by_status, to_string(status), "list jobs by status");
    }

    std::optional<claimed_job> claim(const std::string& worker_id, const std::vector<std::string>& job_types,
                                     std::chrono::milliseconds lease_duration) override {
        if (worker_id.empty()) throw error(errc::invalid_argument, "claim: a worker needs an id");
        if (lease_duration.count() <= 0) throw error(errc::invalid_argument, "claim: the lease duration must be positive");
        if (job_types.empty()) return std::nullopt;
        const auto sent = std::chrono::steady_clock::now();
        detail::pg_params params;
        params.add(worker_id).add(detail::pg_text_array(job_types)).add(static_cast<std::int64_t>(lease_duration.count()));
        detail::pg_session session(*pool_);
        const auto rows = run(session, sql_.claim, params, "claim a job");
        if (PQntuples(rows.get()) == 0) return std::nullopt;
        return claimed_from_row(rows.get(), 0, worker_id, lease_duration, sent);
    }

    job_record renew(job_lease& lease) override {
        return fenced_statement(lease, sql_.renew, detail::pg_params().add(duration_ms(lease)), "renew a lease");
    }

    job_record report_progress(job_lease& lease, int progress, const std::string& message) override {
        if (progress < 0 || progress > 100)  // the helper's order of checks (fence, status, range)
            return fenced(lease, [&](job_record& r, detail::job_queue_state& s, detail::job_clock::time_point now) {
                detail::apply_progress(r, progress, message);
                detail::extend_lease(r, s, lease, now);
            });
        return fenced_statement(lease, sql_.progress, detail::pg_params().add(duration_ms(lease)).add(progress).add(message),
                                "report progress");
    }

    job_record complete(job_lease& lease, const nlohmann::json& result, const std::string& message) override {
        job_record named;
        named.id = lease.job_id;
        const std::optional<std::string> result_text =
            result.is_null() ? std::nullopt : std::optional<std::string>(json_text(named, result, "result"));
        return fenced_statement(lease, sql_.complete, detail::pg_params().add(message).add(result_text), "complete a job");
    }

    // One statement, so one round trip and one commit: the completion (fenced, as complete()) and,
    // only if it happened, the claim of the next runnable job (as claim()).
    completion_and_next complete_and_claim(job_lease& lease, const nlohmann::json& result, const std::string& message,
                                           const std::string& worker_id, const std::vector<std::string>& job_types,
                                           std::chrono::milliseconds lease_duration) override {
        if (worker_id.empty()) throw error(errc::invalid_argument, "claim: a worker needs an id");
        if (lease_duration.count() <= 0) throw error(errc::invalid_argument, "claim: the lease duration must be positive");
        if (job_types.empty()) return {complete(lease, result, message), std::nullopt};
        job_record named;
        named.id = lease.job_id;
        const std::optional<std::string> result_text =
            result.is_null() ? std::nullopt : std::optional<std::string>(json_text(named, result, "result"));
        if (!is_uuid(lease.job_id)) throw job_not_found(lease.job_id);
        const auto sent = std::chrono::steady_clock::now();
        detail::pg_params params;
        params.add(lease.job_id).add(lease.token).add(message).add(result_text).add(worker_id).add(detail::pg_text_array(job_types))
            .add(static_cast<std::int64_t>(lease_duration.count()));
        detail::pg_session session(*pool_);
        const auto rows = run(session, sql_.complete_and_claim, params, "complete a job and claim the next");
        completion_and_next out;
        bool completed = false;
        for (int row = 0; row < PQntuples(rows.get()); ++row) {
            if (std::string(PQgetvalue(rows.get(), row, which_column)) == "0") {
                out.completed = read_record(rows.get(), row);
                completed = true;
                continue;
            }
            out.next = claimed_from_row(rows.get(), row, worker_id, lease_duration, sent);
        }
        if (!completed) throw_fenced_off(session, lease);
        return out;
    }

    job_record fail(job_lease& lease, const std::string& error, failure_kind kind) override {
        return fenced(lease, [&](job_record& r, detail::job_queue_state& s, detail::job_clock::time_point now) {
            detail::apply_fail(r, s, error, kind, retries(), now);
        });
    }

    job_record release(job_lease& lease, const std::string& reason) override {
        return fenced(lease, [&](job_record& r, detail::job_queue_state& s, detail::job_clock::time_point now) {
            detail::apply_release(r, s, reason, retries(), now);
        });
    }

    job_record cancel(const std::string& id, const std::string& reason) override {
        return update(id, [&](job_record& r, detail::job_queue_state& s, detail::job_clock::time_point now) {
            detail::apply_end(r, s, job_status::cancelled, reason, now);
        });
    }

    std::vector<job_record> rescue_expired() override {
        std::vector<job_record> rescued;
        {
            detail::pg_session session(*pool_);
            transaction tx(*this, session);
            const auto rows = run(session, sql_.expired, detail::pg_params(), "find expired leases");
            for (int row = 0; row < PQntuples(rows.get()); ++row) {
                stored_job job = read_stored(rows.get(), row);
                const auto now = server_now(rows.get(), row);
                if (!detail::lease_expired(job.record, job.state, now)) continue;
                detail::apply_rescue(job.record, job.state, retries(), now);
                if (!write_back(session, job))  // cannot happen: the row is locked
                    throw postgresql_store_error(errc::io_error, where() + ": job '" + job.record.id +
                                                                     "' changed while locked for rescue");
                rescued.push_back(std::move(job.record));
            }
            tx.commit();
        }
        if (!rescued.empty()) wakeup().notify();
        return rescued;
    }

    job_page list_jobs(const job_filter& filter, std::size_t limit,
                       const std::optional<job_page_key>& after = std::nullopt) const override {
        detail::check_page_limit(limit);
        detail::pg_params params;
        std::string where = filter_sql(filter, params);
        if (after) {
            if (!is_uuid(after->id)) throw error(errc::invalid_argument, "a page key needs a job id");
            params.add(after->created_at).add(after->id);
            where += std::string(where.empty() ? " WHERE" : " AND") + " (created_at, id) < ($" +
                     std::to_string(params.size() - 1) + "::timestamptz, $" + std::to_string(params.size()) + "::uuid)";
        }
        const std::string sql = "SELECT " + columns_ + " FROM " + table_ + where + " ORDER BY created_at DESC, id DESC LIMIT " +
                                std::to_string(limit + 1);
        detail::pg_session session(*pool_);
        const auto rows = run(session, sql, params, "list jobs");
        job_page page;
        for (int row = 0; row < PQntuples(rows.get()) && page.jobs.size() < limit; ++row) page.jobs.push_back(read_record(rows.get(), row));
        if (static_cast<std::size_t>(PQntuples(rows.get())) > limit)
            page.next = job_page_key{page.jobs.back().created_at, page.jobs.back().id};
        return page;
    }

    std::int64_t count_jobs(const job_filter& filter) const override {
        detail::pg_params params;
        const std::string sql = "SELECT count(*) FROM " + table_ + filter_sql(filter, params);
        detail::pg_session session(*pool_);
        return integer(run(session, sql, params, "count jobs").get(), 0, 0);
    }

    job_record retry(const std::string& id, const std::string& reason) override {
        try {
            return update(id, [&](job_record& r, detail::job_queue_state& s, detail::job_clock::time_point now) {
                detail::apply_retry(r, s, reason, now);
            });
        } catch (const postgresql_store_error& e) {
            if (e.sqlstate() != "23505") throw;  // jobs_one_active: the version has another active job
            const std::optional<job_record> job = get(id);
            if (!job) throw job_not_found(id);
            detail::pg_session session(*pool_);
            throw duplicate(session, *job);
        }
    }

    queue_stats stats(std::chrono::milliseconds window) const override {
        const std::string since = "now() - $1::bigint * interval '1 millisecond'";
        const std::string started = "status <> 'queued' AND started_at >= " + since;
        const std::string latency = "extract(epoch from greatest(started_at - run_at, interval '0')) * 1000";
        const std::string sql =
            "SELECT count(*) FILTER (WHERE status = 'queued'), count(*) FILTER (WHERE status = 'running'),"
            " count(*) FILTER (WHERE status = 'completed'), count(*) FILTER (WHERE status = 'failed'),"
            " count(*) FILTER (WHERE status = 'cancelled'), count(*) FILTER (WHERE status = 'queued' AND run_at <= now()),"
            " (extract(epoch from now() - min(run_at) FILTER (WHERE status = 'queued' AND run_at <= now())) * 1000)::bigint,"
            " count(*) FILTER (WHERE status = 'completed' AND completed_at >= " + since + "),"
            " count(*) FILTER (WHERE status = 'failed' AND completed_at >= " + since + "),"
            " count(*) FILTER (WHERE " + started + "),"
            " (avg(" + latency + ") FILTER (WHERE " + started + "))::bigint,"
            " (max(" + latency + ") FILTER (WHERE " + started + "))::bigint FROM " + table_;
        detail::pg_session session(*pool_);
        const auto rows = run(session, sql, detail::pg_params().add(static_cast<std::int64_t>(window.count())), "read the queue's statistics");
        const PGresult* r = rows.get();
        queue_stats out;
        out.window = window;
        out.queued = integer(r, 0, 0);
        out.running = integer(r, 0, 1);
        out.completed = integer(r, 0, 2);
        out.failed = integer(r, 0, 3);
        out.cancelled = integer(r, 0, 4);
        out.runnable = integer(r, 0, 5);
        if (!PQgetisnull(r, 0, 6)) out.oldest_runnable_age = std::chrono::milliseconds(std::max<std::int64_t>(0, integer(r, 0, 6)));
        out.completed_in_window = integer(r, 0, 7);
        out.failed_in_window = integer(r, 0, 8);
        out.started_in_window = integer(r, 0, 9);
        if (!PQgetisnull(r, 0, 10)) out.pickup_latency_avg = std::chrono::milliseconds(integer(r, 0, 10));
        if (!PQgetisnull(r, 0, 11)) out.pickup_latency_max = std::chrono::milliseconds(integer(r, 0, 11));
        return out;
    }

protected:
    std::int64_t prune_finished(std::chrono::milliseconds max_age, std::int64_t keep_per_version, std::int64_t limit) override {
        const std::string doomed =
            "SELECT id FROM (SELECT id, coalesce(completed_at, created_at) AS ended, row_number() OVER (PARTITION BY"
            " project_id, version_id ORDER BY coalesce(completed_at, created_at) DESC, id DESC) AS rank FROM " + table_ +
            " WHERE status IN ('completed','failed','cancelled')) f"
            " WHERE ended < now() - $1::bigint * interval '1 millisecond' OR rank > $2::bigint";
        detail::pg_params params;
        params.add(static_cast<std::int64_t>(max_age.count())).add(keep_per_version);
        detail::pg_session session(*pool_);
        if (limit == 0)
            return integer(run(session, "SELECT count(*) FROM (" + doomed + ") d", params, "count the jobs retention would delete").get(), 0, 0);
        params.add(limit);
        const auto result = run(session, "DELETE FROM " + table_ + " WHERE id IN (" + doomed + " LIMIT $3::bigint)"
                                         " AND status IN ('completed','failed','cancelled')", params, "delete finished jobs");
        return std::strtoll(PQcmdTuples(result.get()), nullptr, 10);
    }

private:
    // " WHERE ..." for a filter (empty when it matches everything); its values appended to params.
    static std::string filter_sql(const job_filter& filter, detail::pg_params& params) {
        std::string where;
        const auto add = [&](const char* column, const std::string& value) {
            params.add(value);
            where += std::string(where.empty() ? " WHERE " : " AND ") + column + " = $" + std::to_string(params.size());
        };
        if (filter.project_id) add("project_id", *filter.project_id);
        if (filter.version_id) add("version_id", *filter.version_id);
        if (filter.status) add("status", to_string(*filter.status));
        return where;
    }

    // Column order of every job SELECT / RETURNING (read_record and read_stored rely on it).
    static constexpr int token_column = 19, run_at_ms_column = 20, lease_expires_ms_column = 21, releases_column = 22,
                         timeout_column = 23, now_ms_column = 24, row_version_column = 25;
    static constexpr int which_column = 24;  // complete_and_claim: 0 the completed job, 1 the claimed one

    // A claimed row and the lease on it; `sent` is when the claim left this process.
    claimed_job claimed_from_row(const PGresult* rows, int row, const std::string& worker_id,
                                 std::chrono::milliseconds lease_duration, std::chrono::steady_clock::time_point sent) const {
        claimed_job claimed;
        claimed.job = read_record(rows, row);
        claimed.lease.job_id = claimed.job.id;
        claimed.lease.worker_id = worker_id;
        claimed.lease.token = PQgetvalue(rows, row, token_column);
        claimed.lease.attempt = claimed.job.attempt;
        claimed.lease.duration = lease_duration;
        claimed.lease.valid_until = sent + lease_duration;
        return claimed;
    }

    struct stored_job {
        job_record record;
        detail::job_queue_state state;
        std::string row_version;  // xmin as read: the write-back applies only to this version
    };

    struct statements {
        std::string insert, active, get, get_for_change, by_project, by_status, claim, renew, progress, complete,
            complete_and_claim, write_back, expired;
    };

    // BEGIN ... COMMIT on a session; rolled back unless committed. A connection whose ROLLBACK
    // fails is not in PQTRANS_IDLE and so never returns to the pool.
    class transaction {
    public:
        transaction(const postgresql_job_store& store, detail::pg_session& session) : store_(store), session_(session) {
            store_.run(session_, "BEGIN", detail::pg_params(), "begin a transaction");
        }
        void commit() {
            committed_ = true;  // a failed COMMIT ends the transaction too
            store_.run(session_, "COMMIT", detail::pg_params(), "commit");
        }
        ~transaction() {
            if (committed_ || PQtransactionStatus(session_.get()) == PQTRANS_IDLE) return;
            detail::pg_result r(PQexec(session_.get(), "ROLLBACK"));
            if (!r || PQresultStatus(r.get()) != PGRES_COMMAND_OK) session_.mark_broken();
        }
        transaction(const transaction&) = delete;
        transaction& operator=(const transaction&) = delete;

    private:
        const postgresql_job_store& store_;
        detail::pg_session& session_;
        bool committed_ = false;
    };

    static std::string quoted(const std::string& identifier) { return "\"" + identifier + "\""; }

    static std::int64_t duration_ms(const job_lease& lease) { return static_cast<std::int64_t>(lease.duration.count()); }

    static std::string migrations_table_sql(const std::string& s) {
        return "CREATE TABLE IF NOT EXISTS " + s +
               ".schema_migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())";
    }

    static std::string checked_schema(const std::string& schema) {
        if (!detail::is_valid_pg_schema_name(schema))
            throw postgresql_store_error(errc::invalid_argument, "schema name '" + schema + "' is not [a-z_][a-z0-9_]{0,57}");
        return quoted(schema);
    }

    // Version 2: lease renewals and progress reports become HOT updates (the new row version on
    // the same page, no new index entries). jobs_leases indexed lease_expires_at, which each of
    // them changes, so every one wrote an entry into every index (2000 writes on one job: 46
    // HOT). rescue_expired now walks jobs_by_status over the running rows, which renewals do not
    // change. fillfactor 90 leaves room on each page for those new row versions.
    static std::string version_2_sql(const std::string& s) {
        return "DROP INDEX IF EXISTS " + s + ".jobs_leases;\n"
               "ALTER TABLE " + s + ".jobs SET (fillfactor = 90);\n"
               "INSERT INTO " + s + ".schema_migrations (version) VALUES (2);\n";
    }

    static std::string version_1_sql(const std::string& s) {
        const std::string jobs = s + ".jobs";
        return "CREATE TABLE " + jobs + " (\n"
               "    id uuid PRIMARY KEY,\n"
               "    seq bigserial NOT NULL,\n"
               "    job_type text NOT NULL,\n"
               "    status text NOT NULL CHECK (status IN ('queued','running','completed','failed','cancelled')),\n"
               "    progress integer NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),\n"
               "    message text NOT NULL DEFAULT '',\n"
               "    result jsonb,\n"
               "    error text NOT NULL DEFAULT '',\n"
               "    project_id text NOT NULL,\n"
               "    version_id text NOT NULL,\n"
               "    created_by text NOT NULL DEFAULT '',\n"
               "    created_at timestamptz NOT NULL,\n"
               "    started_at timestamptz,\n"
               "    completed_at timestamptz,\n"
               "    payload jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(payload) = 'object'),\n"
               "    attempt integer NOT NULL DEFAULT 0 CHECK (attempt >= 0),\n"
               "    max_attempts integer NOT NULL CHECK (max_attempts >= 1),\n"
               "    run_at timestamptz NOT NULL,\n"
               "    worker text,\n"
               "    lease_token uuid,\n"
               "    lease_expires_at timestamptz,\n"
               "    CHECK ((status = 'running') = (lease_token IS NOT NULL)));\n"
               "CREATE UNIQUE INDEX jobs_one_active ON " + jobs + " (job_type, project_id, version_id)"
               " WHERE status IN ('queued','running');\n"
               "CREATE INDEX jobs_claim ON " + jobs + " (run_at, seq) WHERE status = 'queued';\n"
               "CREATE INDEX jobs_leases ON " + jobs + " (lease_expires_at) WHERE status = 'running';\n"
               "CREATE INDEX jobs_by_project ON " + jobs + " (project_id, created_at, seq);\n"
               "CREATE INDEX jobs_by_status ON " + jobs + " (status, created_at, seq);\n"
               "CREATE FUNCTION " + s + ".notify_job_runnable() RETURNS trigger LANGUAGE plpgsql AS\n"
               "    $$BEGIN PERFORM pg_notify(TG_TABLE_SCHEMA || '_jobs', NEW.job_type); RETURN NULL; END$$;\n"
               "CREATE TRIGGER jobs_notify AFTER INSERT OR UPDATE OF status, run_at ON " + jobs + "\n"
               "    FOR EACH ROW WHEN (NEW.status = 'queued') EXECUTE FUNCTION " + s + ".notify_job_runnable();\n"
               "INSERT INTO " + s + ".schema_migrations (version) VALUES (1);\n";
    }

    // Version 3: hand-backs in a row, the per-job run-time limit, the newest-first listing's index.
    static std::string version_3_sql(const std::string& s) {
        const std::string jobs = s + ".jobs";
        return "ALTER TABLE " + jobs + " ADD COLUMN releases integer NOT NULL DEFAULT 0 CHECK (releases >= 0),\n"
               "    ADD COLUMN timeout_ms bigint NOT NULL DEFAULT 0 CHECK (timeout_ms >= 0);\n"
               "CREATE INDEX jobs_by_created ON " + jobs + " (created_at, id);\n"
               "INSERT INTO " + s + ".schema_migrations (version) VALUES (3);\n";
    }

    void prepare_sql() {
        const auto utc = [](const char* column) {
            return std::string("to_char(") + column + " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')";
        };
        const auto millis = [](const char* value) { return std::string("(extract(epoch from ") + value + ") * 1000)::bigint"; };
        const std::string now_ms = "date_trunc('milliseconds', now())";
        const std::string columns =
            "id::text, job_type, status, progress, message, result::text, error, project_id, version_id, created_by, " +
            utc("created_at") + ", " + utc("started_at") + ", " + utc("completed_at") +
            ", payload::text, attempt, max_attempts, " + utc("run_at") + ", worker, " + utc("lease_expires_at") +
            ", lease_token::text, " + millis("run_at") + ", " + millis("lease_expires_at") + ", releases, timeout_ms";
        const std::string with_now = columns + ", " + millis(now_ms.c_str()) + ", xmin::text";
        columns_ = columns;
        const std::string lease_end = now_ms + " + $3::bigint * interval '1 millisecond'";
        const std::string& t = table_;

        sql_.insert = "INSERT INTO " + t +
                      " (id, job_type, status, message, project_id, version_id, created_by, payload, max_attempts,"
                      " created_at, run_at, timeout_ms) VALUES ($1::uuid, $2, 'queued', $3, $4, $5, $6, $7::jsonb, $8::integer, " +
                      now_ms + ", " + now_ms + " + $9::bigint * interval '1 millisecond', $10::bigint) RETURNING " + columns;
        sql_.active = "SELECT id::text, status FROM " + t +
                      " WHERE job_type = $1 AND project_id = $2 AND version_id = $3 AND status IN ('queued','running') LIMIT 1";
        sql_.get = "SELECT " + columns + " FROM " + t + " WHERE id = $1::uuid";
        sql_.get_for_change = "SELECT " + with_now + " FROM " + t + " WHERE id = $1::uuid";
        sql_.by_project = "SELECT " + columns + " FROM " + t + " WHERE project_id = $1 ORDER BY created_at DESC, seq DESC";
        sql_.by_status = "SELECT " + columns + " FROM " + t + " WHERE status = $1 ORDER BY created_at, seq";
        sql_.claim = "UPDATE " + t + " SET status = 'running', attempt = attempt + 1, lease_token = gen_random_uuid(),"
                     " worker = $1, started_at = " + now_ms + ", lease_expires_at = " + lease_end + ", progress = 0,"
                     " message = 'Starting (attempt ' || (attempt + 1) || ' of ' || max_attempts || ')'"
                     " WHERE id = (SELECT id FROM " + t + " WHERE status = 'queued' AND run_at <= now()"
                     " AND job_type = ANY($2::text[]) ORDER BY run_at, seq LIMIT 1 FOR UPDATE SKIP LOCKED)"
                     " RETURNING " + columns;
        // The fenced statements: $1 job id, $2 lease token, then their own ($3 the lease's duration in ms).
        const std::string fence = " WHERE id = $1::uuid AND status = 'running' AND lease_token::text = $2 RETURNING " + columns;
        sql_.renew = "UPDATE " + t + " SET lease_expires_at = " + lease_end + fence;
        // In SET, `progress` is the old value: a lower report keeps progress and message.
        sql_.progress = "UPDATE " + t + " SET progress = GREATEST(progress, $4::integer),"
                        " message = CASE WHEN $4::integer >= progress THEN $5 ELSE message END,"
                        " lease_expires_at = " + lease_end + fence;
        sql_.complete = "UPDATE " + t + " SET status = 'completed', progress = 100, message = $3, result = $4::jsonb,"
                        " error = '', completed_at = " + now_ms + ", worker = NULL, lease_expires_at = NULL,"
                        " lease_token = NULL" + fence;
        // Both changes in one statement (one snapshot, one commit). The claim's sub-select sees the
        // completed row still as running, so it can never pick it; EXISTS (done) claims nothing
        // when the completion was fenced off. $1 job, $2 token, $3 message, $4 result, $5 worker,
        // $6 types, $7 the new lease in ms.
        sql_.complete_and_claim =
            "WITH done AS (UPDATE " + t + " SET status = 'completed', progress = 100, message = $3, result = $4::jsonb,"
            " error = '', completed_at = " + now_ms + ", worker = NULL, lease_expires_at = NULL, lease_token = NULL"
            " WHERE id = $1::uuid AND status = 'running' AND lease_token::text = $2 RETURNING " + columns + "),"
            " next AS (UPDATE " + t + " SET status = 'running', attempt = attempt + 1, lease_token = gen_random_uuid(),"
            " worker = $5, started_at = " + now_ms + ", lease_expires_at = " + now_ms + " + $7::bigint * interval '1 millisecond',"
            " progress = 0, message = 'Starting (attempt ' || (attempt + 1) || ' of ' || max_attempts || ')'"
            " WHERE id = (SELECT id FROM " + t + " WHERE status = 'queued' AND run_at <= now()"
            " AND job_type = ANY($6::text[]) AND EXISTS (SELECT 1 FROM done) ORDER BY run_at, seq LIMIT 1"
            " FOR UPDATE SKIP LOCKED) RETURNING " + columns + ")"
            " SELECT *, 0 FROM done UNION ALL SELECT *, 1 FROM next";
        sql_.write_back = "UPDATE " + t + " SET status = $2, progress = $3::integer, message = $4, result = $5::jsonb,"
                          " error = $6, started_at = $7::timestamptz, completed_at = $8::timestamptz, attempt = $9::integer,"
                          " run_at = $10::timestamptz, worker = $11, lease_token = $12::uuid,"
                          " lease_expires_at = $13::timestamptz, releases = $15::integer, max_attempts = $16::integer"
                          " WHERE id = $1::uuid AND xmin = $14::xid";
        sql_.expired = "SELECT " + with_now + " FROM " + t + " WHERE status = 'running' AND lease_expires_at < " + now_ms +
                       " ORDER BY created_at, seq FOR UPDATE SKIP LOCKED";
    }

    // ---- connections and errors

    std::string where() const { return "postgresql job store (" + server_ + ", schema " + options_.schema + ")"; }

    detail::pg_conn open_connection() const {
        const std::string timeout = std::to_string(std::max<long long>(2, options_.connect_timeout.count()));
        const std::string user_timeout = std::to_string(std::max<long long>(0, options_.tcp_user_timeout.count()));
        const std::string idle = std::to_string(std::max<long long>(1, options_.keepalives_idle.count()));
        // Keywords before dbname are defaults the conninfo may override; those after it always
        // apply (our timeout and encoding). TCP keepalives let a dead server's connections (the
        // listener's above all, which only waits) fail within about idle + 3 x 5 s instead of
        // hours; tcp_user_timeout does the same for a connection with a request in flight.
        const char* keys[] = {"application_name", "keepalives_idle", "keepalives_interval", "keepalives_count",
                              "tcp_user_timeout", "dbname", "connect_timeout", "client_encoding", nullptr};
        const char* values[] = {options_.application_name.c_str(), idle.c_str(), "5", "3", user_timeout.c_str(),
                                conninfo_.c_str(), timeout.c_str(), "UTF8", nullptr};
        detail::pg_conn conn(PQconnectStartParams(keys, values, 1));
        if (!conn) throw postgresql_store_error(errc::store_unavailable, where() + ": cannot connect: out of memory");
        // Verbose errors while connecting, so that the server's refusal carries its SQLSTATE
        // ("FATAL:  28P01: password authentication failed ..."): a wrong password, a missing
        // database or role is errc::store_refused, which nobody retries.
        PQsetErrorVerbosity(conn.get(), PQERRORS_VERBOSE);
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(std::stoll(timeout));
        PostgresPollingStatusType polling = PGRES_POLLING_WRITING;
        while (PQstatus(conn.get()) != CONNECTION_BAD && polling != PGRES_POLLING_OK && polling != PGRES_POLLING_FAILED) {
            // libpq enforces connect_timeout only in PQconnectdb: here it bounds the whole attempt.
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
            if (left.count() <= 0)
                throw postgresql_store_error(errc::store_unavailable, where() + ": cannot connect: timeout expired");
            pollfd fd{PQsocket(conn.get()), static_cast<short>(polling == PGRES_POLLING_READING ? POLLIN : POLLOUT), 0};
            if (fd.fd >= 0) {
                const int ready = poll(&fd, 1, static_cast<int>(std::min<long long>(left.count(), 1000)));
                if (ready == 0) continue;
                if (ready < 0 && errno != EINTR) break;
            }
            polling = PQconnectPoll(conn.get());
        }
        if (PQstatus(conn.get()) != CONNECTION_OK) {
            std::string message = detail::trimmed(PQerrorMessage(conn.get()));
            if (message.empty()) message = "the connection failed";
            const std::string sqlstate = detail::pg_sqlstate_in(message);
            const bool refused = detail::is_pg_refusal(sqlstate) || (sqlstate.empty() && detail::is_pg_client_refusal(message));
            throw postgresql_store_error(refused ? errc::store_refused : errc::store_unavailable,
                                         where() + (refused ? ": the server refused the connection: " : ": cannot connect: ") +
                                             message,
                                         sqlstate);
        }
        PQsetErrorVerbosity(conn.get(), PQERRORS_DEFAULT);
        // libpq prints NOTICEs and a shutting-down server's FATAL to stderr by default; a library
        // must not. Errors that matter reach the caller as exceptions.
        PQsetNoticeProcessor(conn.get(), [](void*, const char*) {}, nullptr);
        // The claim must walk jobs_claim in (run_at, seq) order and stop at the first row it can
        // lock. Left to itself the planner, without statistics (a new table, a burst of jobs
        // before autovacuum analyzes), chose a bitmap scan of every queued row and a sort: a
        // claim then read the whole queue (3000 index entries per claim with 3000 queued, and
        // 2.3x fewer jobs/s). Generic plans without bitmap scans keep every statement of the
        // store on its index whatever the statistics say; they apply to these connections only.
        const auto ms = [](std::chrono::milliseconds limit) { return std::to_string(std::max<long long>(0, limit.count())); };
        std::string session = "SET enable_bitmapscan = off; SET plan_cache_mode = force_generic_plan"
                              "; SET statement_timeout = " + ms(options_.statement_timeout) +
                              "; SET lock_timeout = " + ms(options_.lock_timeout) +
                              "; SET idle_in_transaction_session_timeout = " + ms(options_.idle_in_transaction_timeout);
        if (!options_.synchronous_commit) session += "; SET synchronous_commit = off";
        detail::pg_result r(PQexec(conn.get(), session.c_str()));
        if (!r || PQresultStatus(r.get()) != PGRES_COMMAND_OK)
            throw postgresql_store_error(errc::store_unavailable, where() + ": cannot set up the session: " +
                                                                      detail::trimmed(PQerrorMessage(conn.get())));
        return conn;
    }

    // Runs one statement; throws postgresql_store_error (store_unavailable when the connection
    // failed, which also drops the connection) unless it succeeded.
    // The store's own statements (the members of sql_) are prepared once per connection and then
    // only executed: the server skips parsing and planning, which costs more than the execution
    // of a claim or a completion.
    detail::pg_result run(detail::pg_session& session, const std::string& sql, const detail::pg_params& params,
                          const char* what) const {
        const std::vector<const char*> values = params.pointers();
        const char* const* value_data = values.empty() ? nullptr : values.data();
        const std::less<const void*> before;
        // Outside transactions only: a failed execution inside one would abort it.
        const bool own = options_.prepared_statements && !before(&sql, &sql_) && before(&sql, &sql_ + 1) &&
                         PQtransactionStatus(session.get()) == PQTRANS_IDLE;
        detail::pg_result result;
        for (int round = 0; round < 2; ++round) {
            if (!own) {
                result = detail::pg_result(PQexecParams(session.get(), sql.c_str(), params.size(), nullptr, value_data, nullptr, nullptr, 0));
                break;
            }
            const std::string name = "tilekit_" + std::to_string(reinterpret_cast<const char*>(&sql) - reinterpret_cast<const char*>(&sql_));
            const std::pair<PGconn*, const std::string*> key{session.get(), &sql};
            bool prepared;
            {
                std::lock_guard<std::mutex> lock(prepared_mutex_);
                prepared = prepared_.count(key) != 0;
            }
            if (!prepared) {
                result = detail::pg_result(PQprepare(session.get(), name.c_str(), sql.c_str(), params.size(), nullptr));
                if (!result || PQresultStatus(result.get()) != PGRES_COMMAND_OK) break;
                std::lock_guard<std::mutex> lock(prepared_mutex_);
                prepared_.insert(key);
            }
            result = detail::pg_result(PQexecPrepared(session.get(), name.c_str(), params.size(), value_data, nullptr, nullptr, 0));
            const char* state = result ? PQresultErrorField(result.get(), PG_DIAG_SQLSTATE) : nullptr;
            if (!(state && std::string(state) == "26000")) break;
            // "Prepared statement does not exist": a new connection at a finished one's address.
            std::lock_guard<std::mutex> lock(prepared_mutex_);
            prepared_.erase(key);
        }
        const ExecStatusType status = result ? PQresultStatus(result.get()) : PGRES_FATAL_ERROR;
        if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) return result;
        const char* state = result ? PQresultErrorField(result.get(), PG_DIAG_SQLSTATE) : nullptr;
        const std::string sqlstate = state ? state : "";
        std::string message = detail::trimmed(result ? PQresultErrorMessage(result.get()) : PQerrorMessage(session.get()));
        if (message.empty()) message = detail::trimmed(PQerrorMessage(session.get()));
        errc code = errc::io_error;
        if (detail::is_pg_connection_failure(session.get(), sqlstate)) {
            session.mark_broken();
            code = errc::store_unavailable;
        } else if (detail::is_pg_timeout(sqlstate)) {
            code = errc::store_unavailable;  // a statement or lock timeout: the connection is fine
        } else if (detail::is_pg_refusal(sqlstate)) {
            code = errc::store_refused;  // e.g. no privilege on the schema or its tables
        } else if (sqlstate == "22P05" || sqlstate == "22021") {
            code = errc::invalid_argument;  // text JSONB or the database encoding cannot hold
        }
        throw postgresql_store_error(code, where() + ": cannot " + what + ": " + message, sqlstate);
    }

    std::vector<job_record> read_all(const std::string& sql, const std::string& key, const char* what) const {
        detail::pg_session session(*pool_);
        const auto rows = run(session, sql, detail::pg_params().add(key), what);
        std::vector<job_record> out;
        for (int row = 0; row < PQntuples(rows.get()); ++row) out.push_back(read_record(rows.get(), row));
        return out;
    }

    // ---- schema

    void create_schema(detail::pg_session& session) {
        transaction tx(*this, session);
        // Processes opening the same schema at once take turns (released at COMMIT).
        run(session, "SELECT pg_advisory_xact_lock(1414220371, hashtext($1))", detail::pg_params().add(options_.schema),
            "lock the schema for creation");
        try {
            run(session, "CREATE SCHEMA IF NOT EXISTS " + quoted(options_.schema), detail::pg_params(), "create the schema");
            run(session, migrations_table_sql(quoted(options_.schema)), detail::pg_params(), "create the version table");
        } catch (const postgresql_store_error& e) {
            if (e.code() != errc::store_refused) throw;
            throw postgresql_store_error(errc::store_refused,
                                         std::string(e.what()) + " (this role may not create the schema: have its owner "
                                                                 "apply postgresql_job_store::schema_sql(\"" +
                                             options_.schema + "\") (`tilekit jobs schema-sql`) and open the store "
                                                               "with create_schema off (--jobs-create-schema 0))",
                                         e.sqlstate());
        }
        const int version = stored_version(session);
        if (version == 0) {
            const auto existing = run(session, "SELECT to_regclass($1) IS NOT NULL", detail::pg_params().add(table_),
                                      "look for a jobs table");
            if (std::string(PQgetvalue(existing.get(), 0, 0)) == "t")
                throw postgresql_store_error(errc::invalid_argument, where() + ": a jobs table exists without a tilekit "
                                                                               "schema version: not a tilekit job store");
        }
        if (version < schema_version) {
            // No parameters, several statements: PQexec (the simple protocol) runs them in order.
            detail::pg_result r(PQexec(session.get(), migration_sql(options_.schema, version).c_str()));
            if (!r || PQresultStatus(r.get()) != PGRES_COMMAND_OK) {
                const bool lost = detail::is_pg_connection_failure(session.get(), "");
                if (lost) session.mark_broken();
                const char* state = r ? PQresultErrorField(r.get(), PG_DIAG_SQLSTATE) : nullptr;
                const std::string sqlstate = state ? state : "";
                throw postgresql_store_error(lost ? errc::store_unavailable
                                                  : detail::is_pg_refusal(sqlstate) ? errc::store_refused : errc::io_error,
                                             where() + ": cannot " + (version ? "migrate schema version " + std::to_string(version) + " to "
                                                                              : std::string("create schema version ")) +
                                                 std::to_string(schema_version) + ": " +
                                                 detail::trimmed(PQerrorMessage(session.get())),
                                             sqlstate);
            }
        }
        tx.commit();
    }

    void check_schema(detail::pg_session& session) {
        try {
            if (stored_version(session) < schema_version)
                throw postgresql_store_error(errc::invalid_argument,
                                             where() + ": the schema is older than version " + std::to_string(schema_version) +
                                                 " (create_schema is off): apply the missing part of "
                                                 "postgresql_job_store::schema_sql(\"" + options_.schema + "\") first");
        } catch (const postgresql_store_error& e) {
            if (e.sqlstate() != "42P01" && e.sqlstate() != "3F000") throw;  // undefined table / schema
            throw postgresql_store_error(errc::invalid_argument,
                                         where() + ": no tilekit job store here (create_schema is off): apply "
                                                   "postgresql_job_store::schema_sql(\"" + options_.schema + "\") first");
        }
    }

    // The schema version in the database; throws for a newer one, or none where one is required.
    int stored_version(detail::pg_session& session) {
        const auto rows = run(session, "SELECT coalesce(max(version), 0) FROM " + quoted(options_.schema) + ".schema_migrations",
                              detail::pg_params(), "read the schema version");
        const int version = std::atoi(PQgetvalue(rows.get(), 0, 0));
        if (version > schema_version)
            throw postgresql_store_error(errc::invalid_argument,
                                         where() + " has schema version " + std::to_string(version) + ", newer than the " +
                                             std::to_string(schema_version) +
                                             " this tilekit understands: use a newer tilekit");
        if (version == 0 && !options_.create_schema)
            throw postgresql_store_error(errc::invalid_argument, where() + ": the schema has no version row: apply "
                                                                           "postgresql_job_store::schema_sql() first");
        return version;
    }

    // ---- rows

    static std::optional<std::string> optional_text(const PGresult* rows, int row, int column) {
        if (PQgetisnull(rows, row, column)) return std::nullopt;
        return std::string(PQgetvalue(rows, row, column));
    }
    static std::string text(const PGresult* rows, int row, int column) { return PQgetvalue(rows, row, column); }
    static std::int64_t integer(const PGresult* rows, int row, int column) {
        return PQgetisnull(rows, row, column) ? 0 : std::strtoll(PQgetvalue(rows, row, column), nullptr, 10);
    }

    job_record read_record(const PGresult* rows, int row) const {
        job_record r;
        r.id = text(rows, row, 0);
        r.job_type = text(rows, row, 1);
        r.status = parse_job_status(text(rows, row, 2));
        r.progress = static_cast<int>(integer(rows, row, 3));
        r.message = text(rows, row, 4);
        if (const auto result = optional_text(rows, row, 5)) r.result = parse_json(r.id, "result", *result);
        r.error = text(rows, row, 6);
        r.project_id = text(rows, row, 7);
        r.version_id = text(rows, row, 8);
        r.created_by = text(rows, row, 9);
        r.created_at = text(rows, row, 10);
        r.started_at = optional_text(rows, row, 11);
        r.completed_at = optional_text(rows, row, 12);
        r.payload = parse_json(r.id, "payload", text(rows, row, 13));
        r.attempt = static_cast<int>(integer(rows, row, 14));
        r.max_attempts = static_cast<int>(integer(rows, row, 15));
        r.run_at = text(rows, row, 16);
        r.worker = optional_text(rows, row, 17);
        r.lease_expires_at = optional_text(rows, row, 18);
        r.releases = static_cast<int>(integer(rows, row, releases_column));
        r.timeout = std::chrono::milliseconds(integer(rows, row, timeout_column));
        return r;
    }

    stored_job read_stored(const PGresult* rows, int row) const {
        stored_job job;
        job.record = read_record(rows, row);
        job.state.token = text(rows, row, token_column);
        job.state.run_at = detail::from_epoch_millis(integer(rows, row, run_at_ms_column));
        job.state.lease_expires = detail::from_epoch_millis(integer(rows, row, lease_expires_ms_column));
        if (PQnfields(rows) > row_version_column) job.row_version = text(rows, row, row_version_column);
        return job;
    }

    static detail::job_clock::time_point server_now(const PGresult* rows, int row) {
        return detail::from_epoch_millis(integer(rows, row, now_ms_column));
    }

    nlohmann::json parse_json(const std::string& id, const char* column, const std::string& json) const {
        try {
            return nlohmann::json::parse(json);
        } catch (const nlohmann::json::exception& e) {
            throw postgresql_store_error(errc::io_error, where() + ": job '" + id + "' has a " + column + " that is not JSON: " + e.what());
        }
    }

    static std::string json_text(const job_record& r, const nlohmann::json& value, const char* what) {
        try {
            return value.dump();
        } catch (const nlohmann::json::exception& e) {  // e.g. a string that is not UTF-8
            throw job_state_error("job '" + r.id + "': the " + std::string(what) + " cannot be stored as JSON: " + e.what());
        }
    }

    // ---- changes

    // The enqueue refused by jobs_one_active, as the other stores word it.
    job_state_error duplicate(detail::pg_session& session, const job_record& made) const {
        const auto rows = run(session, sql_.active, detail::pg_params().add(made.job_type).add(made.project_id).add(made.version_id),
                              "look for the active job");
        std::string which = "queued or running";
        if (PQntuples(rows.get()) > 0)
            which = text(rows.get(), 0, 1) + " (job '" + text(rows.get(), 0, 0) + "')";
        return job_state_error("a " + made.job_type + " job is already " + which + " for project '" + made.project_id +
                                   "' version '" + made.version_id + "'",
                               errc::duplicate_job);
    }

    // One fenced UPDATE ($1 id, $2 token, then `extra`). No row: find out why and throw it.
    job_record fenced_statement(job_lease& lease, const std::string& sql, const detail::pg_params& extra, const char* what) {
        if (!is_uuid(lease.job_id)) throw job_not_found(lease.job_id);
        const auto sent = std::chrono::steady_clock::now();
        detail::pg_params params;
        params.add(lease.job_id).add(lease.token);
        for (const char* value : extra.pointers()) params.add(value ? std::optional<std::string>(value) : std::nullopt);
        detail::pg_session session(*pool_);
        const auto rows = run(session, sql, params, what);
        if (PQntuples(rows.get()) == 0) throw_fenced_off(session, lease);
        job_record changed = read_record(rows.get(), 0);
        if (changed.status == job_status::running) lease.valid_until = sent + lease.duration;
        return changed;
    }

    [[noreturn]] void throw_fenced_off(detail::pg_session& session, const job_lease& lease) const {
        const auto rows = run(session, sql_.get, detail::pg_params().add(lease.job_id), "read a job");
        if (PQntuples(rows.get()) == 0) throw job_not_found(lease.job_id);
        const stored_job job = read_stored(rows.get(), 0);
        detail::check_lease(job.record, job.state, lease);
        // The row changed between the UPDATE and this read; it was not ours at the UPDATE.
        throw lease_lost("job '" + lease.job_id + "': the lease of worker " + lease.worker_id + " on attempt " +
                         std::to_string(lease.attempt) + " is no longer valid");
    }

    // One change: read the row (with the server's now() and its xmin), apply a detail::apply_*
    // helper, write it back only if the row is still that version; else start again from the new
    // one. An exception from `apply` (an illegal change, a fenced-off lease) writes nothing.
    template <class Apply>
    job_record update(const std::string& id, Apply&& apply) {
        if (!is_uuid(id)) throw job_not_found(id);
        constexpr int attempts = 50;  // each lost race means another write succeeded meanwhile
        std::optional<job_record> changed;
        {
            detail::pg_session session(*pool_);
            for (int attempt = 0; attempt < attempts && !changed; ++attempt) {
                const auto rows = run(session, sql_.get_for_change, detail::pg_params().add(id), "read a job");
                if (PQntuples(rows.get()) == 0) throw job_not_found(id);
                stored_job job = read_stored(rows.get(), 0);
                apply(job.record, job.state, server_now(rows.get(), 0));
                if (write_back(session, job)) changed = std::move(job.record);
            }
        }
        if (!changed)
            throw postgresql_store_error(errc::io_error, where() + ": job '" + id + "' changed under every one of " +
                                                             std::to_string(attempts) + " attempts to update it");
        if (changed->status == job_status::queued) wakeup().notify();
        return std::move(*changed);
    }

    template <class Apply>
    job_record fenced(job_lease& lease, Apply&& apply) {
        const auto sent = std::chrono::steady_clock::now();
        job_record changed = update(lease.job_id, [&](job_record& r, detail::job_queue_state& s, detail::job_clock::time_point now) {
            detail::check_lease(r, s, lease);
            apply(r, s, now);
        });
        if (changed.status == job_status::running) lease.valid_until = sent + lease.duration;
        return changed;
    }

    // False when the row is no longer the version that was read.
    bool write_back(detail::pg_session& session, const stored_job& job) const {
        const job_record& r = job.record;
        const bool leased = !job.state.token.empty();
        detail::pg_params params;
        params.add(r.id).add(std::string(to_string(r.status))).add(r.progress).add(r.message);
        params.add(r.result.is_null() ? std::nullopt : std::optional<std::string>(json_text(r, r.result, "result")));
        params.add(r.error).add(r.started_at).add(r.completed_at).add(r.attempt).add(r.run_at).add(r.worker);
        params.add(leased ? std::optional<std::string>(job.state.token) : std::nullopt);
        params.add(leased ? r.lease_expires_at : std::nullopt);
        params.add(job.row_version).add(r.releases).add(r.max_attempts);  // a hand-back or a retry grows the budget
        const auto result = run(session, sql_.write_back, params, "update a job");
        return std::string(PQcmdTuples(result.get())) == "1";
    }

    // ---- LISTEN

    void start_listener() {
        int fds[2];
        if (pipe(fds) != 0) throw postgresql_store_error(errc::io_error, where() + ": cannot create the listener's pipe");
        for (int fd : fds) fcntl(fd, F_SETFD, FD_CLOEXEC);
        stop_read_ = fds[0];
        stop_write_ = fds[1];
        // The first LISTEN happens here, so notifications sent once the constructor returns arrive.
        detail::pg_conn first;
        try {
            first = listening_connection();
        } catch (...) {
            close_pipe();
            throw;
        }
        listener_ = std::thread([this, conn = std::move(first)]() mutable { listen_loop(std::move(conn)); });
    }

    void stop_listener() noexcept {
        if (!listener_.joinable()) return;
        const char byte = 1;
        while (write(stop_write_, &byte, 1) < 0 && errno == EINTR) {
        }
        listener_.join();
        close_pipe();
    }

    void close_pipe() noexcept {
        if (stop_read_ >= 0) close(stop_read_);
        if (stop_write_ >= 0) close(stop_write_);
        stop_read_ = stop_write_ = -1;
    }

    detail::pg_conn listening_connection() const {
        detail::pg_conn conn = open_connection();
        detail::pg_result r(PQexec(conn.get(), ("LISTEN " + quoted(channel())).c_str()));
        if (!r || PQresultStatus(r.get()) != PGRES_COMMAND_OK)
            throw postgresql_store_error(errc::store_unavailable,
                                         where() + ": cannot LISTEN: " + detail::trimmed(PQerrorMessage(conn.get())));
        return conn;
    }

    // Waits up to `timeout` for the stop byte; true when asked to stop.
    bool stop_requested(std::chrono::milliseconds timeout) const {
        pollfd fd{stop_read_, POLLIN, 0};
        return poll(&fd, 1, static_cast<int>(timeout.count())) > 0;
    }

    void listen_loop(detail::pg_conn conn) noexcept {
        std::chrono::milliseconds backoff{100};
        for (;;) {
            if (!conn) {
                try {
                    conn = listening_connection();
                    backoff = std::chrono::milliseconds(100);
                    wakeup().notify();  // work may have arrived while nobody listened
                } catch (...) {
                    if (stop_requested(backoff)) return;
                    backoff = std::min(backoff * 2, std::chrono::milliseconds(5000));
                    continue;
                }
            }
            pollfd fds[2] = {{PQsocket(conn.get()), POLLIN, 0}, {stop_read_, POLLIN, 0}};
            const int ready = poll(fds, 2, 1000);
            if (ready < 0 && errno != EINTR) conn.reset();
            if (fds[1].revents) return;
            if (ready <= 0 || !conn) continue;
            bool notified = false;
            if (PQconsumeInput(conn.get()) == 0 || PQstatus(conn.get()) != CONNECTION_OK) {
                conn.reset();  // reconnect (and notify) at the top
                continue;
            }
            while (PGnotify* n = PQnotifies(conn.get())) {
                PQfreemem(n);
                notified = true;
            }
            if (notified) wakeup().notify();
        }
    }

    std::string conninfo_;
    postgresql_store_options options_;
    std::string server_;  // the conninfo without its password, for messages
    std::string table_;
    std::string columns_;  // the job columns of every SELECT, for the statements built per call
    statements sql_;
    // Which connection has which of sql_'s statements prepared.
    mutable std::mutex prepared_mutex_;
    mutable std::set<std::pair<PGconn*, const std::string*>> prepared_;
    std::unique_ptr<detail::pg_pool> pool_;
    std::thread listener_;
    int stop_read_ = -1, stop_write_ = -1;
};

}  // namespace jobs
TILEKIT_NAMESPACE_END
