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

namespace queue_tool {

inline bool is_postgresql_url(const std::string& store) {
    return store.rfind("postgresql://", 0) == 0 || store.rfind("postgres://", 0) == 0;
}

// How the command uses the store.
enum class store_role {
    worker,    // a worker process: SQLite rescues the jobs of dead local processes when opened
    observer,  // enqueue, show, list, cancel, rescue: must not change running jobs by opening the
               // store, or the driver could not tell a lease-based rescue from an open-time one
};

// `schema`: the PostgreSQL schema holding the queue (empty: the store's default); the driver
// gives each scenario its own, as it gives each its own SQLite file.
inline std::unique_ptr<tilekit::jobs::job_store> open_store(const std::string& store, store_role role,
                                                           const std::string& schema = {}) {
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
    tilekit::jobs::sqlite_store_options options;
    if (role == store_role::observer) options.recovery = tilekit::jobs::recovery_policy::none;
    return std::make_unique<tilekit::jobs::sqlite_job_store>(store, options);
}

}  // namespace queue_tool
