#include "catalog.hpp"

#include "request_parsing.hpp"  // max_version_number

#include <tilekit/jobs/job.hpp>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <sqlite3.h>

#include <functional>

namespace tilekit_service {

std::string new_uuid() { return tilekit::jobs::new_job_id(); }
std::string now_iso8601() { return tilekit::jobs::utc_now_iso8601(); }
std::string sha256_hex(const std::string& text) {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int size = 0;
    if (EVP_Digest(text.data(), text.size(), digest, &size, EVP_sha256(), nullptr) != 1)
        throw tilekit::error(tilekit::errc::crypto_error, "SHA-256 failed (OpenSSL)");
    return to_hex(digest, size);
}

std::string to_hex(const unsigned char* bytes, std::size_t size) {
    static const char digits[] = "0123456789abcdef";
    std::string hex;
    for (std::size_t i = 0; i < size; ++i) {
        hex += digits[bytes[i] >> 4];
        hex += digits[bytes[i] & 15];
    }
    return hex;
}

void to_json(nlohmann::json& j, const project& p) {
    j = {{"id", p.id}, {"slug", p.slug}, {"name", p.name}, {"owner_id", p.owner_id}, {"created_at", p.created_at}};
}
void to_json(nlohmann::json& j, const version& v) {
    j = {{"id", v.id},         {"project_id", v.project_id}, {"number", v.number},
         {"status", v.status}, {"created_at", v.created_at},
         {"published_at", v.published_at.empty() ? nlohmann::json() : nlohmann::json(v.published_at)}};
}
void to_json(nlohmann::json& j, const asset& a) {
    j = {{"id", a.id},           {"project_id", a.project_id},     {"type", a.type},
         {"storage_key", a.storage_key}, {"content_type", a.content_type}, {"filename", a.filename},
         {"size", a.size},       {"created_at", a.created_at}};
}

namespace {

// A prepared statement, finalized on scope exit; binds text and integers by position.
class statement {
public:
    statement(sqlite3* db, const char* sql) : db_(db) {
        if (sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr) != SQLITE_OK)
            throw std::runtime_error(std::string("catalog: prepare failed: ") + sqlite3_errmsg(db));
    }
    ~statement() { sqlite3_finalize(stmt_); }
    statement& bind(int i, const std::string& v) {
        sqlite3_bind_text(stmt_, i, v.c_str(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
        return *this;
    }
    statement& bind(int i, long long v) {
        sqlite3_bind_int64(stmt_, i, v);
        return *this;
    }
    bool row() {
        const int rc = sqlite3_step(stmt_);
        if (rc == SQLITE_ROW) return true;
        if (rc == SQLITE_DONE) return false;
        if ((rc & 0xff) == SQLITE_CONSTRAINT) throw catalog_conflict(sqlite3_errmsg(db_));
        throw std::runtime_error(std::string("catalog: ") + sqlite3_errmsg(db_));
    }
    std::string text(int c) const {
        const auto* p = sqlite3_column_text(stmt_, c);
        return p ? std::string(reinterpret_cast<const char*>(p), static_cast<std::size_t>(sqlite3_column_bytes(stmt_, c)))
                 : std::string();
    }
    long long integer(int c) const { return sqlite3_column_int64(stmt_, c); }

private:
    sqlite3* db_;
    sqlite3_stmt* stmt_ = nullptr;
};

const char* const project_columns = "id, slug, name, owner_id, created_at";
project read_project(const statement& s) { return {s.text(0), s.text(1), s.text(2), s.text(3), s.text(4)}; }

// The projects WHERE `condition` (one ?, bound to `value`); the caller holds the lock.
std::vector<project> select_projects(sqlite3* db, const char* condition, const std::string& value) {
    statement s(db, (std::string("SELECT ") + project_columns + " FROM projects WHERE " + condition).c_str());
    s.bind(1, value);
    std::vector<project> out;
    while (s.row()) out.push_back(read_project(s));
    return out;
}

std::optional<project> first(std::vector<project> rows) {
    if (rows.empty()) return std::nullopt;
    return std::move(rows.front());
}

const char* const version_columns = "id, project_id, number, status, created_at, published_at";
version read_version(const statement& s) {
    return {s.text(0), s.text(1), static_cast<int>(s.integer(2)), s.text(3), s.text(4), s.text(5)};
}

// One number from a query with one ? bound to `value`; the caller holds the lock.
std::uint64_t count_where(sqlite3* db, const char* sql, const std::string& value) {
    statement s(db, sql);
    s.bind(1, value);
    s.row();
    return static_cast<std::uint64_t>(s.integer(0));
}

// Runs `body` in one write transaction (BEGIN IMMEDIATE: the write lock from the first read, so
// another process sharing the catalog cannot read the same counts meanwhile); rolled back if it
// throws. The caller holds the lock.
template <class Body>
void write_transaction(sqlite3* db, Body body) {
    char* message = nullptr;
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, &message) != SQLITE_OK) {
        const std::string text = message ? message : "unknown error";
        sqlite3_free(message);
        throw std::runtime_error("catalog: " + text);
    }
    try {
        body();
        if (sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK)
            throw std::runtime_error(std::string("catalog: ") + sqlite3_errmsg(db));
    } catch (...) {
        sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
        throw;
    }
}

std::uint64_t projects_owned(sqlite3* db, const std::string& owner_id) {
    return count_where(db, "SELECT count(*) FROM projects WHERE owner_id = ?", owner_id);
}
std::uint64_t versions_in(sqlite3* db, const std::string& project_id) {
    return count_where(db, "SELECT count(*) FROM versions WHERE project_id = ?", project_id);
}
// A running total per user (kept with each insert), not a SUM over the user's assets: that would
// make every upload cost as much as all the uploads before it.
std::uint64_t bytes_owned(sqlite3* db, const std::string& owner_id) {
    return count_where(db, "SELECT COALESCE((SELECT stored_bytes FROM usage WHERE user_id = ?), 0)", owner_id);
}

}  // namespace

catalog::catalog(const std::string& path) {
    if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, nullptr) !=
        SQLITE_OK) {
        const std::string message = db_ ? sqlite3_errmsg(db_) : "out of memory";
        sqlite3_close(db_);
        throw std::runtime_error("cannot open catalog '" + path + "': " + message);
    }
    sqlite3_busy_timeout(db_, 5000);
    exec("PRAGMA journal_mode=WAL");
    exec("PRAGMA foreign_keys=ON");
    exec("CREATE TABLE IF NOT EXISTS users (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, "
         "token_sha256 TEXT NOT NULL UNIQUE, created_at TEXT NOT NULL)");
    exec("CREATE TABLE IF NOT EXISTS projects (id TEXT PRIMARY KEY, slug TEXT NOT NULL UNIQUE, name TEXT NOT NULL, "
         "owner_id TEXT NOT NULL REFERENCES users(id), created_at TEXT NOT NULL)");
    exec("CREATE TABLE IF NOT EXISTS versions (id TEXT PRIMARY KEY, project_id TEXT NOT NULL REFERENCES projects(id), "
         "number INTEGER NOT NULL, status TEXT NOT NULL, created_at TEXT NOT NULL, published_at TEXT, "
         "UNIQUE(project_id, number))");
    exec("CREATE TABLE IF NOT EXISTS assets (id TEXT PRIMARY KEY, project_id TEXT NOT NULL REFERENCES projects(id), "
         "type TEXT NOT NULL, storage_key TEXT NOT NULL, content_type TEXT NOT NULL, filename TEXT NOT NULL, "
         "size INTEGER NOT NULL, created_at TEXT NOT NULL)");
    // What the quotas count, by indexes (a count per owner or project is not a table scan), and
    // each user's stored bytes as a running total; a catalog from before the total gets it once.
    exec("CREATE INDEX IF NOT EXISTS projects_by_owner ON projects(owner_id)");
    exec("CREATE INDEX IF NOT EXISTS assets_by_project ON assets(project_id)");
    exec("CREATE TABLE IF NOT EXISTS usage (user_id TEXT PRIMARY KEY REFERENCES users(id), stored_bytes INTEGER NOT NULL)");
    exec("INSERT OR IGNORE INTO usage (user_id, stored_bytes) SELECT p.owner_id, SUM(a.size) FROM assets a "
         "JOIN projects p ON p.id = a.project_id GROUP BY p.owner_id");
    // Viewer links' one-time codes and the sessions they open, by the SHA-256 of the secret;
    // expiry in Unix seconds (several processes, maybe several hosts, read them).
    exec("CREATE TABLE IF NOT EXISTS viewer_codes (code_sha256 TEXT PRIMARY KEY, user_id TEXT NOT NULL REFERENCES users(id), "
         "path TEXT NOT NULL, expires_at INTEGER NOT NULL)");
    exec("CREATE TABLE IF NOT EXISTS sessions (id_sha256 TEXT PRIMARY KEY, user_id TEXT NOT NULL REFERENCES users(id), "
         "expires_at INTEGER NOT NULL)");
    exec("CREATE INDEX IF NOT EXISTS sessions_by_expiry ON sessions(expires_at)");
    // The bytes of each version's committed pyramid (a new run replaces the last one's count).
    exec("CREATE TABLE IF NOT EXISTS version_tiles (version_id TEXT PRIMARY KEY REFERENCES versions(id), "
         "bytes INTEGER NOT NULL)");
}

catalog::~catalog() { sqlite3_close(db_); }

void catalog::exec(const char* sql) {
    char* message = nullptr;
    if (sqlite3_exec(db_, sql, nullptr, nullptr, &message) != SQLITE_OK) {
        const std::string text = message ? message : "unknown error";
        sqlite3_free(message);
        throw std::runtime_error(std::string("catalog: ") + text);
    }
}

user catalog::add_user(const std::string& name, const std::string& token) {
    if (token.size() < 16) throw std::runtime_error("a token needs at least 16 characters");
    std::lock_guard<std::mutex> lock(mutex_);
    user u{new_uuid(), name};
    statement(db_, "INSERT INTO users (id, name, token_sha256, created_at) VALUES (?, ?, ?, ?)")
        .bind(1, u.id).bind(2, name).bind(3, sha256_hex(token)).bind(4, now_iso8601()).row();
    return u;
}

std::optional<user> catalog::authenticate(const std::string& token) const {
    if (token.empty()) return std::nullopt;
    const std::string hash = sha256_hex(token);
    std::lock_guard<std::mutex> lock(mutex_);
    // The lookup is by the hash of a random token (what leaks through its timing is useless);
    // the stored hash is then compared in constant time all the same.
    statement s(db_, "SELECT id, name, token_sha256 FROM users WHERE token_sha256 = ?");
    s.bind(1, hash);
    if (!s.row()) return std::nullopt;
    const std::string stored = s.text(2);
    if (stored.size() != hash.size() || CRYPTO_memcmp(stored.data(), hash.data(), hash.size()) != 0) return std::nullopt;
    return user{s.text(0), s.text(1)};
}

std::optional<user> catalog::find_user(const std::string& name) const {
    std::lock_guard<std::mutex> lock(mutex_);
    statement s(db_, "SELECT id, name FROM users WHERE name = ?");
    s.bind(1, name);
    if (!s.row()) return std::nullopt;
    return user{s.text(0), s.text(1)};
}

project catalog::create_project(const std::string& slug, const std::string& name, const std::string& owner_id,
                                unsigned max_projects) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (max_projects) {
        const std::uint64_t have = projects_owned(db_, owner_id);
        if (have >= max_projects)
            throw catalog_quota("You have " + std::to_string(have) + " projects, the limit of this service (--max-projects " +
                                std::to_string(max_projects) + ")");
    }
    project p{new_uuid(), slug, name, owner_id, now_iso8601()};
    statement(db_, "INSERT INTO projects (id, slug, name, owner_id, created_at) VALUES (?, ?, ?, ?, ?)")
        .bind(1, p.id).bind(2, p.slug).bind(3, p.name).bind(4, p.owner_id).bind(5, p.created_at).row();
    return p;
}

std::optional<project> catalog::find_project(const std::string& slug) const {
    std::lock_guard<std::mutex> lock(mutex_);
    return first(select_projects(db_, "slug = ?", slug));  // slug is UNIQUE
}

std::optional<project> catalog::project_by_id(const std::string& id) const {
    std::lock_guard<std::mutex> lock(mutex_);
    return first(select_projects(db_, "id = ?", id));
}

std::vector<project> catalog::projects_of(const std::string& owner_id) const {
    std::lock_guard<std::mutex> lock(mutex_);
    return select_projects(db_, "owner_id = ? ORDER BY slug", owner_id);
}

std::vector<project> catalog::all_projects() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return select_projects(db_, "slug <> ? ORDER BY slug", "");
}

version catalog::create_version(const std::string& project_id, int number, const std::string& status,
                                unsigned max_versions) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (max_versions) {
        const std::uint64_t have = versions_in(db_, project_id);
        if (have >= max_versions)
            throw catalog_quota("This project has " + std::to_string(have) +
                                " versions, the limit of this service (--max-versions " + std::to_string(max_versions) + ")");
    }
    if (number == 0) {
        statement s(db_, "SELECT COALESCE(MAX(number), 0) + 1 FROM versions WHERE project_id = ?");
        s.bind(1, project_id);
        s.row();
        const long long next = s.integer(0);
        // The next number must stay addressable: URLs take at most max_version_number.
        if (next > max_version_number)
            throw catalog_limit("No version number left: the highest, " + std::to_string(max_version_number) +
                                ", is taken; give 'number' explicitly");
        number = static_cast<int>(next);
    }
    version v{new_uuid(), project_id, number, status, now_iso8601(), status == "published" ? now_iso8601() : ""};
    statement s(db_, "INSERT INTO versions (id, project_id, number, status, created_at, published_at) "
                     "VALUES (?, ?, ?, ?, ?, NULLIF(?, ''))");
    s.bind(1, v.id).bind(2, v.project_id).bind(3, static_cast<long long>(v.number)).bind(4, v.status).bind(5, v.created_at)
        .bind(6, v.published_at);
    s.row();
    return v;
}

std::optional<version> catalog::find_version(const std::string& project_id, int number) const {
    std::lock_guard<std::mutex> lock(mutex_);
    statement s(db_, (std::string("SELECT ") + version_columns + " FROM versions WHERE project_id = ? AND number = ?").c_str());
    s.bind(1, project_id).bind(2, static_cast<long long>(number));
    if (!s.row()) return std::nullopt;
    return read_version(s);
}

std::vector<version> catalog::versions_of(const std::string& project_id) const {
    std::lock_guard<std::mutex> lock(mutex_);
    statement s(db_, (std::string("SELECT ") + version_columns + " FROM versions WHERE project_id = ? ORDER BY number").c_str());
    s.bind(1, project_id);
    std::vector<version> out;
    while (s.row()) out.push_back(read_version(s));
    return out;
}

version catalog::publish(const version& v) {
    std::lock_guard<std::mutex> lock(mutex_);
    version out = v;
    out.status = "published";
    out.published_at = now_iso8601();
    statement(db_, "UPDATE versions SET status = 'published', published_at = ? WHERE id = ?")
        .bind(1, out.published_at).bind(2, v.id).row();
    return out;
}

asset catalog::add_asset(const asset& a, std::uint64_t max_stored_bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    // One write transaction from the count to the inserts: another process sharing the catalog
    // cannot pass the same count either.
    write_transaction(db_, [&] {
        const std::string owner_id = [&] {
            statement owner(db_, "SELECT owner_id FROM projects WHERE id = ?");
            owner.bind(1, a.project_id);
            if (!owner.row()) throw std::runtime_error("catalog: no project " + a.project_id);
            return owner.text(0);
        }();
        const std::uint64_t have = bytes_owned(db_, owner_id);
        if (max_stored_bytes && have + a.size > max_stored_bytes)
            throw catalog_quota(stored_bytes_detail(have, a.size, max_stored_bytes));
        statement(db_, "INSERT INTO assets (id, project_id, type, storage_key, content_type, filename, size, created_at) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
            .bind(1, a.id).bind(2, a.project_id).bind(3, a.type).bind(4, a.storage_key).bind(5, a.content_type)
            .bind(6, a.filename).bind(7, static_cast<long long>(a.size)).bind(8, a.created_at).row();
        statement(db_, "INSERT INTO usage (user_id, stored_bytes) VALUES (?, ?) "
                       "ON CONFLICT(user_id) DO UPDATE SET stored_bytes = stored_bytes + excluded.stored_bytes")
            .bind(1, owner_id).bind(2, static_cast<long long>(a.size)).row();
    });
    return a;
}

namespace {
long long unix_now() {
    return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}
std::optional<user> user_by_id(sqlite3* db, const std::string& id) {
    statement s(db, "SELECT id, name FROM users WHERE id = ?");
    s.bind(1, id);
    if (!s.row()) return std::nullopt;
    return user{s.text(0), s.text(1)};
}
}  // namespace

bool catalog::add_viewer_code(const std::string& code, const user& who, const std::string& path,
                              std::chrono::seconds lifetime, std::size_t max_outstanding) {
    std::lock_guard<std::mutex> lock(mutex_);
    const long long now = unix_now();
    statement(db_, "DELETE FROM viewer_codes WHERE expires_at <= ?").bind(1, now).row();
    {
        statement outstanding(db_, "SELECT count(*) FROM viewer_codes");
        outstanding.row();
        if (static_cast<std::size_t>(outstanding.integer(0)) >= max_outstanding) return false;
    }
    statement(db_, "INSERT INTO viewer_codes (code_sha256, user_id, path, expires_at) VALUES (?, ?, ?, ?)")
        .bind(1, sha256_hex(code)).bind(2, who.id).bind(3, path).bind(4, now + lifetime.count()).row();
    return true;
}

std::optional<user> catalog::take_viewer_code(const std::string& code, const std::string& path) {
    std::lock_guard<std::mutex> lock(mutex_);
    std::string user_id, minted_for;
    long long expires_at = 0;
    {
        // One statement: of two processes redeeming the same code, one gets the row.
        statement s(db_, "DELETE FROM viewer_codes WHERE code_sha256 = ? RETURNING user_id, path, expires_at");
        s.bind(1, sha256_hex(code));
        if (!s.row()) return std::nullopt;
        user_id = s.text(0);
        minted_for = s.text(1);
        expires_at = s.integer(2);
        while (s.row()) {
        }
    }
    if (minted_for != path || expires_at <= unix_now()) return std::nullopt;
    return user_by_id(db_, user_id);
}

void catalog::add_session(const std::string& id, const user& who, std::chrono::seconds lifetime) {
    std::lock_guard<std::mutex> lock(mutex_);
    const long long now = unix_now();
    statement(db_, "DELETE FROM sessions WHERE expires_at <= ?").bind(1, now).row();
    statement(db_, "INSERT INTO sessions (id_sha256, user_id, expires_at) VALUES (?, ?, ?)")
        .bind(1, sha256_hex(id)).bind(2, who.id).bind(3, now + lifetime.count()).row();
}

std::optional<user> catalog::session_user(const std::string& id) const {
    if (id.empty()) return std::nullopt;
    std::lock_guard<std::mutex> lock(mutex_);
    statement s(db_, "SELECT user_id FROM sessions WHERE id_sha256 = ? AND expires_at > ?");
    s.bind(1, sha256_hex(id)).bind(2, unix_now());
    if (!s.row()) return std::nullopt;
    return user_by_id(db_, s.text(0));
}

void catalog::record_tiles(const std::string& version_id, std::uint64_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    // The version's count and the owner's total together, read and written in one transaction.
    write_transaction(db_, [&] {
        const std::string owner_id = [&] {
            statement owner(db_, "SELECT p.owner_id FROM versions v JOIN projects p ON p.id = v.project_id WHERE v.id = ?");
            owner.bind(1, version_id);
            return owner.row() ? owner.text(0) : std::string();
        }();
        if (owner_id.empty()) return;  // the version is gone
        const std::uint64_t before =
            count_where(db_, "SELECT COALESCE((SELECT bytes FROM version_tiles WHERE version_id = ?), 0)", version_id);
        statement(db_, "INSERT INTO version_tiles (version_id, bytes) VALUES (?, ?) "
                       "ON CONFLICT(version_id) DO UPDATE SET bytes = excluded.bytes")
            .bind(1, version_id).bind(2, static_cast<long long>(bytes)).row();
        statement(db_, "INSERT INTO usage (user_id, stored_bytes) VALUES (?, ?) "
                       "ON CONFLICT(user_id) DO UPDATE SET stored_bytes = MAX(0, stored_bytes + excluded.stored_bytes)")
            .bind(1, owner_id).bind(2, static_cast<long long>(bytes) - static_cast<long long>(before)).row();
    });
}

std::uint64_t catalog::count_projects(const std::string& owner_id) const {
    std::lock_guard<std::mutex> lock(mutex_);
    return projects_owned(db_, owner_id);
}

std::uint64_t catalog::count_versions(const std::string& project_id) const {
    std::lock_guard<std::mutex> lock(mutex_);
    return versions_in(db_, project_id);
}

std::uint64_t catalog::stored_bytes(const std::string& owner_id) const {
    std::lock_guard<std::mutex> lock(mutex_);
    return bytes_owned(db_, owner_id);
}

std::string stored_bytes_detail(std::uint64_t stored, std::uint64_t adding, std::uint64_t limit) {
    return "You store " + std::to_string(stored) + " bytes of uploads and pyramids; " +
           (adding ? "this upload's " + std::to_string(adding) + " bytes would pass" : std::string("that reaches")) +
           " the limit of this service (--max-stored-bytes " + std::to_string(limit) + ")";
}

std::optional<asset> catalog::find_asset(const std::string& id) const {
    std::lock_guard<std::mutex> lock(mutex_);
    statement s(db_, "SELECT id, project_id, type, storage_key, content_type, filename, size, created_at FROM assets WHERE id = ?");
    s.bind(1, id);
    if (!s.row()) return std::nullopt;
    asset a{s.text(0), s.text(1), s.text(2), s.text(3), s.text(4), s.text(5), s.text(7)};
    a.size = static_cast<std::uint64_t>(s.integer(6));
    return a;
}

}  // namespace tilekit_service

