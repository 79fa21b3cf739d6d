#pragma once
// The service's job queue: the store (a SQLite file, or PostgreSQL for several instances) and
// the tile-generation workers that run on it. The store is the queue: a job enqueued by any
// instance is run by any instance's workers, and survives restarts.

#include <tilekit/jobs.hpp>

#include <memory>
#include <string>

namespace tilekit_service {

struct service_config;
class catalog;
class storage;

// The SQLite store for a path, the PostgreSQL store for a postgresql:// URL (when the service
// was built with tilekit's PostgreSQL part; otherwise a clear error).
std::unique_ptr<tilekit::jobs::job_store> open_job_store(const service_config& config);
// The PostgreSQL job store's schema SQL for config.jobs_schema: all of it (from_version 0), or the
// migration from that version to the current one; for a DBA to apply (`tilekit jobs schema-sql`).
std::string job_store_schema_sql(const service_config& config, int from_version = 0);
// What kind of store it is, without secrets: "sqlite <path>" or "postgresql <host/db>".
std::string describe_job_store(const service_config& config);

// The payload of a tile-generation job for a version's base map, with the service's tiling
// settings.
nlohmann::json tile_job_payload(const service_config& config, const std::string& source_key, const std::string& slug,
                                int version_number);

// Removes what killed runs left in <data-dir>/scratch: each job's run works in
// scratch/tilekit-job-<id>, which it removes when it ends; a process killed mid-job cannot. At
// start, before any worker runs, every tilekit-job-<id> entry whose job is not running (ended,
// queued again, or unknown) is removed; a running job's may belong to another live process
// sharing the data directory and is kept. Other entries are not the service's and stay.
void sweep_scratch(const service_config& config, tilekit::jobs::job_store& jobs);

// Workers for the tile-generation jobs: the draft guard reads the version from the catalog
// again when a job starts. Each job's end is logged on stderr, prefixed with `log_name` (empty:
// not logged).
std::unique_ptr<tilekit::jobs::worker_pool> start_workers(const service_config& config, tilekit::jobs::job_store& jobs,
                                                          catalog& db, storage& store,
                                                          const std::string& log_name = "tilekit-service");

// The queue's statistics (and this process's pool, if any) as Prometheus text exposition 0.0.4.
std::string jobs_metrics_text(const tilekit::jobs::queue_stats& stats, const tilekit::jobs::worker_pool* pool);

}  // namespace tilekit_service
