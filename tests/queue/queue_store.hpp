#pragma once
// Opens the job store a queue_tool command works on, from one string: a postgresql:// or
// postgres:// URL opens the PostgreSQL store (when tilekit::postgresql is linked), anything else
// is a SQLite file.

#include <tilekit/sqlite.hpp>
#ifdef TILEKIT_HAS_POSTGRESQL
#include <tilekit/postgresql.hpp>
#endif

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace queue_tool {

inline bool is_postgresql_url(const std::string& store) {
    return store.rfind("postgresql://", 0) == 0 || store.rfind("postgres://", 0) == 0;
}

// `schema`: the PostgreSQL schema holding the queue (empty: the store's default); the driver
// gives each scenario its own, as it gives each its own SQLite file.
inline std::unique_ptr<tilekit::jobs::job_store> open_store(const std::string& store, const std::string& schema = {}) {
    if (is_postgresql_url(store)) {
#ifdef TILEKIT_HAS_POSTGRESQL
        tilekit::jobs::postgresql_store_options options;
        if (!schema.empty()) options.schema = schema;
        return std::make_unique<tilekit::jobs::postgresql_job_store>(store, options);
#else
        throw std::runtime_error("this queue_tool was built without PostgreSQL support (tilekit::postgresql)");
#endif
    }
    if (!schema.empty()) throw std::runtime_error("--schema applies to a PostgreSQL store only");
    // Opening never rescues: in an observer (enqueue, show, ...) that would hide whether a job was
    // rescued by its lease; in a worker, the constructor would use the default retry policy (a
    // random delay of up to 5 s), not the one the worker sets right after opening. Workers call
    // rescue_dead_owners() below instead.
    tilekit::jobs::sqlite_store_options options;
    options.recovery = tilekit::jobs::recovery_policy::none;
    return std::make_unique<tilekit::jobs::sqlite_job_store>(store, options);
}

// What a SQLite store's constructor does under recovery_policy::rescue_dead_owners, with the
// store's current retry policy. Returns the rescued jobs (none for other stores).
inline std::vector<tilekit::jobs::job_record> rescue_dead_owners(tilekit::jobs::job_store& store) {
    if (auto* sqlite = dynamic_cast<tilekit::jobs::sqlite_job_store*>(&store)) return sqlite->rescue_dead_owners();
    return {};
}

}  // namespace queue_tool
