#pragma once
// The catalog: users (with the SHA-256 of their bearer token, never the token), projects with
// an owner, versions (draft / published) and assets, in one SQLite file (WAL). Thread-safe:
// one connection behind a mutex.

#include <nlohmann/json.hpp>

#include <cstdint>
#include <chrono>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

struct sqlite3;

namespace tilekit_service {

struct user {
    std::string id, name;
};

struct project {
    std::string id, slug, name, owner_id, created_at;
};

struct version {
    std::string id, project_id;
    int number = 0;
    std::string status;  // draft | published
    std::string created_at;
    std::string published_at;
};

struct asset {
    std::string id, project_id, type, storage_key, content_type, filename, created_at;
    std::uint64_t size = 0;
};

// A uniqueness conflict (slug taken, version number exists): HTTP 409.
struct catalog_conflict : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// A request the catalog cannot satisfy within its limits (no version number left).
struct catalog_limit : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// A quota the request would pass (projects per user, versions per project, stored bytes): HTTP
// 403. The message names the limit, its value and the flag that sets it.
struct catalog_quota : std::runtime_error {
    using std::runtime_error::runtime_error;
};

void to_json(nlohmann::json& j, const project& p);
void to_json(nlohmann::json& j, const version& v);
void to_json(nlohmann::json& j, const asset& a);

class catalog {
public:
    explicit catalog(const std::string& path);
    ~catalog();
    catalog(const catalog&) = delete;
    catalog& operator=(const catalog&) = delete;

    // Creates a user for `token` (stored as its SHA-256).
    user add_user(const std::string& name, const std::string& token);
    // The user whose token this is; the stored hash is compared in constant time.
    std::optional<user> authenticate(const std::string& token) const;
    // The user of that name (names are unique).
    std::optional<user> find_user(const std::string& name) const;

    // The quota arguments: 0 is no limit. Counted and inserted under one lock, so concurrent
    // requests cannot all pass the count (catalog_quota).
    project create_project(const std::string& slug, const std::string& name, const std::string& owner_id,
                           unsigned max_projects = 0);
    std::optional<project> find_project(const std::string& slug) const;
    std::vector<project> projects_of(const std::string& owner_id) const;
    std::vector<project> all_projects() const;  // for maintenance (tilekit jobs gc)

    // number 0: the next free number.
    version create_version(const std::string& project_id, int number, const std::string& status, unsigned max_versions = 0);
    std::optional<version> find_version(const std::string& project_id, int number) const;
    std::vector<version> versions_of(const std::string& project_id) const;
    version publish(const version& v);

    // max_stored_bytes: the owner's assets, this one included, may not pass it (0: no limit).
    asset add_asset(const asset& a, std::uint64_t max_stored_bytes = 0);
    std::optional<asset> find_asset(const std::string& id) const;

    std::optional<project> project_by_id(const std::string& id) const;

    // Viewer links and the sessions they open (auth.hpp), here so that every process sharing the
    // catalog knows them and a restart signs nobody out. Secrets are kept as their SHA-256.
    // Stores a one-time code for `who` at `path`; false when `max_outstanding` unexpired codes exist.
    bool add_viewer_code(const std::string& code, const user& who, const std::string& path, std::chrono::seconds lifetime,
                         std::size_t max_outstanding);
    // The code's user if it exists, is unexpired and was minted for `path`; spent either way.
    std::optional<user> take_viewer_code(const std::string& code, const std::string& path);
    void add_session(const std::string& id, const user& who, std::chrono::seconds lifetime);
    // The session's user while it lasts.
    std::optional<user> session_user(const std::string& id) const;

    // What the quotas count.
    std::uint64_t count_projects(const std::string& owner_id) const;
    std::uint64_t count_versions(const std::string& project_id) const;
    // What the owner stores: the sizes of their assets and of each version's committed pyramid.
    std::uint64_t stored_bytes(const std::string& owner_id) const;
    // A job committed a pyramid of `bytes` for the version: it replaces the version's last one.
    void record_tiles(const std::string& version_id, std::uint64_t bytes);

private:
    void exec(const char* sql);
    sqlite3* db_ = nullptr;
    mutable std::mutex mutex_;
};

// The 403 detail of the stored-bytes quota: `stored` bytes so far, `adding` more (0: none yet
// known, the limit is reached), against `limit` (--max-stored-bytes).
std::string stored_bytes_detail(std::uint64_t stored, std::uint64_t adding, std::uint64_t limit);

std::string new_uuid();
std::string now_iso8601();
std::string sha256_hex(const std::string& text);
std::string to_hex(const unsigned char* bytes, std::size_t size);  // lower-case

}  // namespace tilekit_service
