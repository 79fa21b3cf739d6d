#pragma once
// The service's configuration: defaults, then environment variables, then command-line flags.
// describe() prints it without secrets.

#include <cstdint>
#include <string>
#include <thread>
#include <vector>

namespace tilekit_service {

// Every core but one, so that the HTTP threads stay responsive while a job encodes tiles.
inline unsigned default_tiler_threads() {
    const unsigned cores = std::thread::hardware_concurrency();
    return cores > 1 ? cores - 1 : 1;
}

struct service_config {
    std::string host = "127.0.0.1";
    int port = 8080;
    std::string data_dir = "tilekit-data";   // catalog.db, jobs.db, storage/, scratch/
    std::string catalog_db;                 // default: <data_dir>/catalog.db
    std::string jobs_db;                    // a SQLite file (default <data_dir>/jobs.db) or postgresql://...
    // The PostgreSQL job store's settings (README "Jobs"); unused with a SQLite file.
    std::string jobs_schema = "tilekit";    // the schema holding its tables
    bool jobs_create_schema = true;         // false: the tables must exist (`tilekit jobs schema-sql`)
    int jobs_pool_size = 4;                 // connections per process (the listener has one more)
    int jobs_connect_timeout = 5;           // seconds to open a connection
    int jobs_statement_timeout = 30;        // seconds a statement may run; 0: no limit
    int jobs_lock_timeout = 10;             // seconds a statement may wait for a row lock; 0: no limit
    int jobs_idle_in_transaction_timeout = 60;  // seconds; 0: no limit
    std::string role = "all";               // all (API and workers) | serve (API only) | work (workers only)
    std::string storage_root;               // filesystem storage; default: <data_dir>/storage
    std::string viewer_dir;                 // default: the source tree's examples/http_service/viewer
    std::string s3_bucket;                  // non-empty: S3 / R2 storage (credentials from AWS_*)
    unsigned workers = 2;                   // concurrent tile-generation jobs in this process
    unsigned queue_capacity = 64;           // queued jobs in the store; beyond that: 503
    int lease_seconds = 30;                 // a worker that stops renewing loses its job after this
    int job_retention_days = 14;            // finished jobs are deleted this long after they ended (0: never)
    int job_keep_per_version = 0;           // and beyond this many per version (0: no cap)
    int job_timeout_seconds = 0;            // run-time limit of an attempt (0: none)
    int gc_grace_seconds = 600;             // replaced tile runs are kept this long (viewers that loaded them)
    int max_attempts = 3;                   // per job: the first run and the retries of retryable errors
    unsigned tiler_threads = default_tiler_threads();  // encoder threads per job; 0 = one per core
    unsigned max_connections = 1024;        // open at once; beyond: 503 (http/server.hpp). An idle
                                            // or slow connection costs a few KiB, not a thread
    unsigned max_connections_per_address = 64;  // the same from one client address
    unsigned http_threads = 0;              // I/O threads; 0: one per core, at least 2
    int handler_threads = -1;               // 0: handlers on the I/O threads; N: a pool of N; -1: 8 with
                                            // S3 storage (handlers wait on the network), else 0
    int client_timeout_seconds = 5;         // the longest wait for a client (headers, body, keep-alive)
    std::uint64_t max_upload_bytes = std::uint64_t{256} << 20;
    std::uint64_t max_json_bytes = 64 << 10;
    std::uint64_t max_pixels = std::uint64_t{1} << 28;  // an upload's width x height (268 Mpx); beyond: 422
    // Per-user quotas (0: no limit). Hard ones answer 403, the job ones 429 (README "Limits").
    unsigned max_projects = 100;            // projects per user
    unsigned max_versions = 100;            // versions per project
    std::uint64_t max_stored_bytes = std::uint64_t{10} << 30;  // a user's uploaded assets, summed
    unsigned max_queued_jobs = 8;           // a user's queued jobs
    unsigned max_running_jobs = 2;          // a user's running jobs (queued + running <= both limits)
    // Per-job output caps (0: no limit): a job whose tiles pass either fails, nothing committed.
    std::uint64_t max_job_tiles = 200000;   // objects written (tiles and manifests)
    std::uint64_t max_job_bytes = std::uint64_t{4} << 30;
    int shutdown_grace_seconds = 20;
    std::string prefix_template = "mp/{slug}/uploads/tiles/{version}/";  // checked: {slug}, {version}, '/' at the end, no ".."
    int viewer_code_seconds = 60;           // a viewer link's one-time code (auth.hpp)
    int session_hours = 12;                 // the viewer session it opens
    bool cookie_secure = false;             // the session cookie is Secure (browsers reach us over https)
    bool cookie_secure_chosen = false;      // set by --cookie-secure; else Secure follows an https public URL
    std::string layout = "dz";              // dz | xyz | iiif
    std::string iiif_base_url;              // IIIF: info.json's id is this + "/" + the tile prefix
    std::string public_base_url;            // where the store's keys are served (the stable manifests'
                                            // URLs); empty: the IIIF base URL, or "/{key}"
    std::string format = "png";             // png | jpg | webp | webp-lossless
};

// Thrown for a bad flag or variable; main prints it with the usage text and exits 2.
struct config_error {
    std::string message;
};

extern const char* const usage_text;

// `args` excludes the program name. Fills the derived paths.
service_config load_config(const std::vector<std::string>& args);
std::string describe(const service_config& config);

bool is_postgresql_url(const std::string& text);
// The URL with any password replaced by ***, for logs.
std::string redact_url(const std::string& text);

}  // namespace tilekit_service
