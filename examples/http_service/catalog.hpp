#pragma once
// The catalog: users (with the SHA-256 of their bearer token, never the token), projects with
// an owner, versions (draft / published) and assets, in one SQLite file (WAL). Thread-safe:
// one connection behind a mutex.

#include <nlohmann/json.hpp>

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

    project create_project(const std::string& slug, const std::string& name, const std::string& owner_id);
    std::optional<project> find_project(const std::string& slug) const;
    std::vector<project> projects_of(const std::string& owner_id) const;
    std::vector<project> all_projects() const;  // for maintenance (tilekit jobs gc)

    // number 0: the next free number.
    version create_version(const std::string& project_id, int number, const std::string& status);
    std::optional<version> find_version(const std::string& project_id, int number) const;
    std::vector<version> versions_of(const std::string& project_id) const;
    version publish(const version& v);

    asset add_asset(const asset& a);
    std::optional<asset> find_asset(const std::string& id) const;

    std::optional<project> project_by_id(const std::string& id) const;

private:
    void exec(const char* sql);
    sqlite3* db_ = nullptr;
    mutable std::mutex mutex_;
};

std::string new_uuid();
std::string now_iso8601();
std::string sha256_hex(const std::string& text);
std::string to_hex(const unsigned char* bytes, std::size_t size);  // lower-case

}  // namespace tilekit_service
