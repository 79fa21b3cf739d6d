#include "config.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <thread>

#ifndef TILEKIT_SERVICE_VIEWER_DIR
#define TILEKIT_SERVICE_VIEWER_DIR "examples/http_service/viewer"
#endif

namespace tilekit_service {

const char* const usage_text =
    "usage: tilekit-service [serve] [options]        run the HTTP service and/or its workers\n"
    "       tilekit-service add-user NAME [--token T] [options]  create a user, print its bearer token\n"
    "options (environment variable in brackets):\n"
    "  --host H                 listen address (TILEKIT_HOST, default 127.0.0.1)\n"
    "  --port N                 listen port (TILEKIT_PORT, default 8080)\n"
    "  --data-dir DIR           catalog.db, jobs.db, storage/, scratch/ (TILEKIT_DATA_DIR, default ./tilekit-data)\n"
    "  --catalog-db FILE        (TILEKIT_CATALOG_DB)\n"
    "  --jobs-db FILE|URL       the job queue: a SQLite file (default <data-dir>/jobs.db) or a\n"
    "                           postgresql://user@host/db URL (TILEKIT_JOBS_DB)\n"
    "  --jobs-schema S          PostgreSQL: the job store's schema (TILEKIT_JOBS_SCHEMA, default tilekit)\n"
    "  --jobs-create-schema 0|1 PostgreSQL: create or migrate the schema at start (TILEKIT_JOBS_CREATE_SCHEMA,\n"
    "                           default 1); 0 for a role without DDL rights: a DBA applies `tilekit jobs\n"
    "                           schema-sql` first, and the role needs USAGE on the schema and\n"
    "                           SELECT, INSERT, UPDATE, DELETE on its tables (and the sequence)\n"
    "  --jobs-pool-size N       PostgreSQL connections per process (TILEKIT_JOBS_POOL_SIZE, default 4)\n"
    "  --jobs-connect-timeout S, --jobs-statement-timeout S, --jobs-lock-timeout S,\n"
    "  --jobs-idle-in-transaction-timeout S   PostgreSQL session limits in seconds, 0 = none\n"
    "                           (TILEKIT_JOBS_CONNECT_TIMEOUT 5, TILEKIT_JOBS_STATEMENT_TIMEOUT 30,\n"
    "                           TILEKIT_JOBS_LOCK_TIMEOUT 10, TILEKIT_JOBS_IDLE_IN_TRANSACTION_TIMEOUT 60)\n"
    "  --role all|serve|work    API and workers (default), the API only, or workers only (TILEKIT_ROLE)\n"
    "  --storage-root DIR       filesystem storage (TILEKIT_STORAGE_ROOT)\n"
    "  --viewer-dir DIR         viewer page and static files (TILEKIT_VIEWER_DIR)\n"
    "  --s3-bucket B            store in S3/R2 instead (TILEKIT_S3_BUCKET; AWS_ACCESS_KEY_ID,\n"
    "                           AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL_S3)\n"
    "  --workers N              concurrent jobs in this process (TILEKIT_WORKERS, default 2)\n"
    "  --queue N                queued jobs before 503 (TILEKIT_QUEUE, default 64)\n"
    "  --lease-seconds N        a silent worker loses its job after N s (TILEKIT_LEASE_SECONDS, default 30)\n"
    "  --max-attempts N         attempts per job, retryable errors only (TILEKIT_MAX_ATTEMPTS, default 3)\n"
    "  --tiler-threads N        encoder threads per job (TILEKIT_TILER_THREADS, default: the cores but one,\n"
    "                           at least 1, so the HTTP side stays responsive; 0 = every core)\n"
    "  --max-connections N      connections open at once; beyond them 503 (TILEKIT_MAX_CONNECTIONS, default 1024)\n"
    "  --max-connections-per-address N\n"
    "                           the same from one client address (TILEKIT_MAX_CONNECTIONS_PER_ADDRESS, default 64)\n"
    "  --http-threads N         I/O threads (TILEKIT_HTTP_THREADS, default one per core, at least 2)\n"
    "  --handler-threads N      0: handlers run on the I/O threads; N: on a pool of N (TILEKIT_HANDLER_THREADS,\n"
    "                           default 8 with --s3-bucket, where handlers wait on the network, else 0)\n"
    "  --client-timeout N       seconds a client may stay silent while sending headers or a body,\n"
    "                           or between requests; then 408 (TILEKIT_CLIENT_TIMEOUT, default 5)\n"
    "  --max-upload-bytes N     larger uploads are 413, refused unread (TILEKIT_MAX_UPLOAD_BYTES, default 256 MiB)\n"
    "  --max-pixels N           uploads with more pixels (from the header) are 422, and a job whose image\n"
    "                           has more fails (TILEKIT_MAX_PIXELS, default 268435456)\n"
    "per-user quotas and per-job caps (0 = no limit; README \"Limits\"):\n"
    "  --max-projects N         projects a user may create; beyond: 403 (TILEKIT_MAX_PROJECTS, default 100)\n"
    "  --max-versions N         versions per project; beyond: 403 (TILEKIT_MAX_VERSIONS, default 100)\n"
    "  --max-stored-bytes N     the sum of a user's uploaded assets; an upload past it is 403\n"
    "                           (TILEKIT_MAX_STORED_BYTES, default 10 GiB; tiles are not counted)\n"
    "  --max-queued-jobs N      a user's queued jobs; beyond: 429 (TILEKIT_MAX_QUEUED_JOBS, default 8)\n"
    "  --max-running-jobs N     a user's running share: a job is refused (429) while the user's queued\n"
    "                           and running jobs reach both limits together (TILEKIT_MAX_RUNNING_JOBS, default 2)\n"
    "  --max-job-tiles N        objects one job may write; past it the job fails, nothing committed\n"
    "                           (TILEKIT_MAX_JOB_TILES, default 200000)\n"
    "  --max-job-bytes N        bytes one job may write, likewise (TILEKIT_MAX_JOB_BYTES, default 4 GiB)\n"
    "  --grace-seconds N        SIGTERM grace for running jobs (TILEKIT_GRACE_SECONDS, default 20)\n"
    "  --job-retention-days N   finished jobs are deleted N days after they ended (default 14; 0 never)\n"
    "  --job-keep-per-version N and beyond the newest N finished jobs per version (default 0: no cap)\n"
    "  --job-timeout-seconds N  an attempt running longer is cancelled and fails (default 0: no limit)\n"
    "  --gc-grace-seconds N     a replaced or abandoned tile run is deleted N s after it ended\n"
    "                           (TILEKIT_GC_GRACE_SECONDS, default 600)\n"
    "  --prefix-template T      (TILEKIT_PREFIX_TEMPLATE, default mp/{slug}/uploads/tiles/{version}/)\n"
    "                           must contain {slug} and {version}, end in '/', and have no '..'\n"
    "  --viewer-code-seconds N  a viewer link's one-time code expires after N s (TILEKIT_VIEWER_CODE_SECONDS, default 60)\n"
    "  --session-hours N        a viewer session (cookie) lasts N hours (TILEKIT_SESSION_HOURS, default 12)\n"
    "  --cookie-secure 0|1      mark the session cookie Secure (TILEKIT_COOKIE_SECURE; default 1 when\n"
    "                           --public-base-url is https://, else 0); set 1\n"
    "                           when browsers reach the service over https (a TLS proxy in front of it:\n"
    "                           the service speaks plain HTTP and trusts no X-Forwarded-Proto)\n"
    "  --layout dz|xyz|iiif     (TILEKIT_LAYOUT)   --format png|jpg|webp|webp-lossless (TILEKIT_FORMAT)\n"
    "  --iiif-base-url URL      IIIF: info.json's id is URL/<tile prefix> (TILEKIT_IIIF_BASE_URL;\n"
    "                           default: the relative id \".\")\n"
    "  --public-base-url URL    where the store's keys are served, for the stable manifests a commit\n"
    "                           writes beside current.json (TILEKIT_PUBLIC_BASE_URL; default: the\n"
    "                           IIIF base URL, else \"/<key>\": a bucket served at a domain's root)\n";

namespace {

long number(const std::string& name, const std::string& text, long low, long high) {
    char* end = nullptr;
    errno = 0;
    const long value = std::strtol(text.c_str(), &end, 10);
    if (text.empty() || *end != '\0' || errno != 0 || value < low || value > high)
        throw config_error{name + " expects a number in " + std::to_string(low) + ".." + std::to_string(high) +
                           ", got '" + text + "'"};
    return value;
}

// One setting: its flag and its environment variable.
struct setting {
    const char* flag;
    const char* env;
    void (*apply)(service_config&, const std::string& name, const std::string& value);
};

const setting settings[] = {
    {"--host", "TILEKIT_HOST", [](service_config& c, const std::string&, const std::string& v) { c.host = v; }},
    {"--port", "TILEKIT_PORT",
     [](service_config& c, const std::string& n, const std::string& v) { c.port = static_cast<int>(number(n, v, 0, 65535)); }},
    {"--data-dir", "TILEKIT_DATA_DIR", [](service_config& c, const std::string&, const std::string& v) { c.data_dir = v; }},
    {"--catalog-db", "TILEKIT_CATALOG_DB", [](service_config& c, const std::string&, const std::string& v) { c.catalog_db = v; }},
    {"--jobs-db", "TILEKIT_JOBS_DB", [](service_config& c, const std::string&, const std::string& v) { c.jobs_db = v; }},
    {"--jobs-schema", "TILEKIT_JOBS_SCHEMA", [](service_config& c, const std::string&, const std::string& v) { c.jobs_schema = v; }},
    {"--jobs-create-schema", "TILEKIT_JOBS_CREATE_SCHEMA",
     [](service_config& c, const std::string& n, const std::string& v) {
         if (v != "0" && v != "1") throw config_error{n + " must be 0 or 1, got '" + v + "'"};
         c.jobs_create_schema = v == "1";
     }},
    {"--jobs-pool-size", "TILEKIT_JOBS_POOL_SIZE",
     [](service_config& c, const std::string& n, const std::string& v) { c.jobs_pool_size = static_cast<int>(number(n, v, 1, 256)); }},
    {"--jobs-connect-timeout", "TILEKIT_JOBS_CONNECT_TIMEOUT",
     [](service_config& c, const std::string& n, const std::string& v) {
         c.jobs_connect_timeout = static_cast<int>(number(n, v, 2, 3600));
     }},
    {"--jobs-statement-timeout", "TILEKIT_JOBS_STATEMENT_TIMEOUT",
     [](service_config& c, const std::string& n, const std::string& v) {
         c.jobs_statement_timeout = static_cast<int>(number(n, v, 0, 86400));
     }},
    {"--jobs-lock-timeout", "TILEKIT_JOBS_LOCK_TIMEOUT",
     [](service_config& c, const std::string& n, const std::string& v) { c.jobs_lock_timeout = static_cast<int>(number(n, v, 0, 86400)); }},
    {"--jobs-idle-in-transaction-timeout", "TILEKIT_JOBS_IDLE_IN_TRANSACTION_TIMEOUT",
     [](service_config& c, const std::string& n, const std::string& v) {
         c.jobs_idle_in_transaction_timeout = static_cast<int>(number(n, v, 0, 86400));
     }},
    {"--role", "TILEKIT_ROLE",
     [](service_config& c, const std::string& n, const std::string& v) {
         if (v != "all" && v != "serve" && v != "work") throw config_error{n + " must be all, serve or work, got '" + v + "'"};
         c.role = v;
     }},
    {"--lease-seconds", "TILEKIT_LEASE_SECONDS",
     [](service_config& c, const std::string& n, const std::string& v) { c.lease_seconds = static_cast<int>(number(n, v, 2, 3600)); }},
    {"--gc-grace-seconds", "TILEKIT_GC_GRACE_SECONDS",
     [](service_config& c, const std::string& n, const std::string& v) { c.gc_grace_seconds = static_cast<int>(number(n, v, 0, 30 * 86400)); }},
    {"--max-attempts", "TILEKIT_MAX_ATTEMPTS",
     [](service_config& c, const std::string& n, const std::string& v) { c.max_attempts = static_cast<int>(number(n, v, 1, 100)); }},
    {"--storage-root", "TILEKIT_STORAGE_ROOT",
     [](service_config& c, const std::string&, const std::string& v) { c.storage_root = v; }},
    {"--viewer-dir", "TILEKIT_VIEWER_DIR", [](service_config& c, const std::string&, const std::string& v) { c.viewer_dir = v; }},
    {"--s3-bucket", "TILEKIT_S3_BUCKET", [](service_config& c, const std::string&, const std::string& v) { c.s3_bucket = v; }},
    {"--workers", "TILEKIT_WORKERS",
     [](service_config& c, const std::string& n, const std::string& v) { c.workers = static_cast<unsigned>(number(n, v, 1, 256)); }},
    {"--job-retention-days", "TILEKIT_JOB_RETENTION_DAYS",
     [](service_config& c, const std::string& n, const std::string& v) { c.job_retention_days = static_cast<int>(number(n, v, 0, 36500)); }},
    {"--job-keep-per-version", "TILEKIT_JOB_KEEP_PER_VERSION",
     [](service_config& c, const std::string& n, const std::string& v) { c.job_keep_per_version = static_cast<int>(number(n, v, 0, 1000000)); }},
    {"--job-timeout-seconds", "TILEKIT_JOB_TIMEOUT_SECONDS",
     [](service_config& c, const std::string& n, const std::string& v) { c.job_timeout_seconds = static_cast<int>(number(n, v, 0, 30 * 86400)); }},
    {"--queue", "TILEKIT_QUEUE",
     [](service_config& c, const std::string& n, const std::string& v) {
         c.queue_capacity = static_cast<unsigned>(number(n, v, 0, 100000));
     }},
    {"--tiler-threads", "TILEKIT_TILER_THREADS",
     [](service_config& c, const std::string& n, const std::string& v) {
         c.tiler_threads = static_cast<unsigned>(number(n, v, 0, 1024));
     }},
    {"--max-connections", "TILEKIT_MAX_CONNECTIONS",
     [](service_config& c, const std::string& n, const std::string& v) {
         c.max_connections = static_cast<unsigned>(number(n, v, 1, 65536));
     }},
    {"--max-connections-per-address", "TILEKIT_MAX_CONNECTIONS_PER_ADDRESS",
     [](service_config& c, const std::string& n, const std::string& v) {
         c.max_connections_per_address = static_cast<unsigned>(number(n, v, 1, 65536));
     }},
    {"--http-threads", "TILEKIT_HTTP_THREADS",
     [](service_config& c, const std::string& n, const std::string& v) { c.http_threads = static_cast<unsigned>(number(n, v, 1, 256)); }},
    {"--handler-threads", "TILEKIT_HANDLER_THREADS",
     [](service_config& c, const std::string& n, const std::string& v) { c.handler_threads = static_cast<int>(number(n, v, 0, 1024)); }},
    {"--client-timeout", "TILEKIT_CLIENT_TIMEOUT",
     [](service_config& c, const std::string& n, const std::string& v) {
         c.client_timeout_seconds = static_cast<int>(number(n, v, 1, 3600));
     }},
    {"--max-upload-bytes", "TILEKIT_MAX_UPLOAD_BYTES",
     [](service_config& c, const std::string& n, const std::string& v) {
         c.max_upload_bytes = static_cast<std::uint64_t>(number(n, v, 1024, 1L << 40));
     }},
    {"--max-pixels", "TILEKIT_MAX_PIXELS",
     [](service_config& c, const std::string& n, const std::string& v) {
         c.max_pixels = static_cast<std::uint64_t>(number(n, v, 1, 1L << 40));
     }},
    {"--max-projects", "TILEKIT_MAX_PROJECTS",
     [](service_config& c, const std::string& n, const std::string& v) { c.max_projects = static_cast<unsigned>(number(n, v, 0, 1000000)); }},
    {"--max-versions", "TILEKIT_MAX_VERSIONS",
     [](service_config& c, const std::string& n, const std::string& v) { c.max_versions = static_cast<unsigned>(number(n, v, 0, 1000000)); }},
    {"--max-stored-bytes", "TILEKIT_MAX_STORED_BYTES",
     [](service_config& c, const std::string& n, const std::string& v) {
         c.max_stored_bytes = static_cast<std::uint64_t>(number(n, v, 0, 1L << 50));
     }},
    {"--max-queued-jobs", "TILEKIT_MAX_QUEUED_JOBS",
     [](service_config& c, const std::string& n, const std::string& v) { c.max_queued_jobs = static_cast<unsigned>(number(n, v, 0, 100000)); }},
    {"--max-running-jobs", "TILEKIT_MAX_RUNNING_JOBS",
     [](service_config& c, const std::string& n, const std::string& v) { c.max_running_jobs = static_cast<unsigned>(number(n, v, 0, 100000)); }},
    {"--max-job-tiles", "TILEKIT_MAX_JOB_TILES",
     [](service_config& c, const std::string& n, const std::string& v) {
         c.max_job_tiles = static_cast<std::uint64_t>(number(n, v, 0, 1L << 40));
     }},
    {"--max-job-bytes", "TILEKIT_MAX_JOB_BYTES",
     [](service_config& c, const std::string& n, const std::string& v) {
         c.max_job_bytes = static_cast<std::uint64_t>(number(n, v, 0, 1L << 50));
     }},
    {"--grace-seconds", "TILEKIT_GRACE_SECONDS",
     [](service_config& c, const std::string& n, const std::string& v) {
         c.shutdown_grace_seconds = static_cast<int>(number(n, v, 0, 3600));
     }},
    {"--prefix-template", "TILEKIT_PREFIX_TEMPLATE",
     [](service_config& c, const std::string& n, const std::string& v) {
         // Each version's tiles must have a prefix of their own: a job sweeps its prefix (old
         // runs, a failed run's leftovers), so with "tiles/{version}/" one user's job deleted
         // another user's pyramid of the same version number.
         if (v.find("{slug}") == std::string::npos || v.find("{version}") == std::string::npos)
             throw config_error{n + " must contain {slug} and {version} (each version's tiles need a prefix of their own), got '" + v + "'"};
         if (v.back() != '/') throw config_error{n + " must end in '/', got '" + v + "'"};
         if (v.front() == '/' || v.find("//") != std::string::npos || v.find('\\') != std::string::npos ||
             ("/" + v).find("/../") != std::string::npos || ("/" + v).find("/./") != std::string::npos)
             throw config_error{n + " must be a relative key prefix without '.', '..' or empty segments, got '" + v + "'"};
         c.prefix_template = v;
     }},
    {"--viewer-code-seconds", "TILEKIT_VIEWER_CODE_SECONDS",
     [](service_config& c, const std::string& n, const std::string& v) {
         c.viewer_code_seconds = static_cast<int>(number(n, v, 1, 3600));
     }},
    {"--session-hours", "TILEKIT_SESSION_HOURS",
     [](service_config& c, const std::string& n, const std::string& v) { c.session_hours = static_cast<int>(number(n, v, 1, 24 * 30)); }},
    {"--cookie-secure", "TILEKIT_COOKIE_SECURE",
     [](service_config& c, const std::string& n, const std::string& v) {
         if (v != "0" && v != "1") throw config_error{n + " must be 0 or 1, got '" + v + "'"};
         c.cookie_secure = v == "1";
         c.cookie_secure_chosen = true;
     }},
    {"--layout", "TILEKIT_LAYOUT",
     [](service_config& c, const std::string& n, const std::string& v) {
         if (v != "dz" && v != "xyz" && v != "iiif") throw config_error{n + " must be dz, xyz or iiif, got '" + v + "'"};
         c.layout = v;
     }},
    {"--iiif-base-url", "TILEKIT_IIIF_BASE_URL",
     [](service_config& c, const std::string&, const std::string& v) { c.iiif_base_url = v; }},
    {"--public-base-url", "TILEKIT_PUBLIC_BASE_URL",
     [](service_config& c, const std::string&, const std::string& v) { c.public_base_url = v; }},
    {"--format", "TILEKIT_FORMAT",
     [](service_config& c, const std::string& n, const std::string& v) {
         if (v != "png" && v != "jpg" && v != "webp" && v != "webp-lossless")
             throw config_error{n + " must be png, jpg, webp or webp-lossless, got '" + v + "'"};
         c.format = v;
     }},
};

// A limit as describe() shows it: "100 projects", or "no limit on projects" for 0.
std::string limit_text(std::uint64_t value, const std::string& what) {
    return value ? std::to_string(value) + what : "no limit on" + what;
}

}  // namespace

bool is_postgresql_url(const std::string& text) {
    return text.rfind("postgresql://", 0) == 0 || text.rfind("postgres://", 0) == 0;
}

std::string redact_url(const std::string& text) {
    if (!is_postgresql_url(text)) return text;
    // postgresql://user:secret@host/db -> postgresql://user:***@host/db
    const std::size_t scheme = text.find("://") + 3;
    const std::size_t at = text.find('@', scheme);
    const std::size_t colon = text.find(':', scheme);
    if (at == std::string::npos || colon == std::string::npos || colon > at) return text;
    return text.substr(0, colon + 1) + "***" + text.substr(at);
}

service_config load_config(const std::vector<std::string>& args) {
    service_config c;
    for (const setting& s : settings)
        if (const char* value = std::getenv(s.env)) s.apply(c, s.env, value);
    for (std::size_t i = 0; i < args.size(); ++i) {
        // --flag VALUE or --flag=VALUE
        const std::size_t equals = args[i].rfind("--", 0) == 0 ? args[i].find('=') : std::string::npos;
        const std::string flag = args[i].substr(0, equals);
        const setting* found = nullptr;
        for (const setting& s : settings)
            if (flag == s.flag) found = &s;
        if (!found) throw config_error{"unknown option '" + flag + "'"};
        if (equals != std::string::npos) {
            found->apply(c, flag, args[i].substr(equals + 1));
            continue;
        }
        if (i + 1 >= args.size()) throw config_error{args[i] + " needs a value"};
        found->apply(c, args[i], args[i + 1]);
        ++i;
    }
    const std::filesystem::path data(c.data_dir);
    if (c.catalog_db.empty()) c.catalog_db = (data / "catalog.db").string();
    if (c.jobs_db.empty()) c.jobs_db = (data / "jobs.db").string();
    if (c.storage_root.empty()) c.storage_root = (data / "storage").string();
    if (c.viewer_dir.empty()) c.viewer_dir = TILEKIT_SERVICE_VIEWER_DIR;
    if (c.http_threads == 0) c.http_threads = std::max(2u, std::thread::hardware_concurrency());
    if (c.handler_threads < 0) c.handler_threads = c.s3_bucket.empty() ? 0 : 8;
    // Served at an https address (behind a TLS proxy): the cookie is Secure unless told otherwise.
    if (!c.cookie_secure_chosen && c.public_base_url.rfind("https://", 0) == 0) c.cookie_secure = true;
    return c;
}

std::string describe(const service_config& c) {
    std::ostringstream out;
    out << "tilekit-service configuration:\n"
        << "  listen           " << c.host << ":" << c.port << "\n"
        << "  data dir         " << c.data_dir << "\n"
        << "  catalog db       " << c.catalog_db << "\n"
        << "  jobs db          " << redact_url(c.jobs_db) << "\n";
    if (is_postgresql_url(c.jobs_db))
        out << "  jobs schema      " << c.jobs_schema << (c.jobs_create_schema ? " (created or migrated at start)" : " (must exist)")
            << ", pool " << c.jobs_pool_size << ", timeouts: connect " << c.jobs_connect_timeout << " s, statement "
            << c.jobs_statement_timeout << " s, lock " << c.jobs_lock_timeout << " s, idle in transaction "
            << c.jobs_idle_in_transaction_timeout << " s\n";
    out << "  role             " << c.role << "\n";
    if (c.s3_bucket.empty()) {
        out << "  storage          filesystem " << c.storage_root << "\n";
    } else {
        const char* endpoint = std::getenv("AWS_ENDPOINT_URL_S3");
        if (!endpoint) endpoint = std::getenv("AWS_ENDPOINT_URL");
        const char* key = std::getenv("AWS_ACCESS_KEY_ID");
        out << "  storage          s3 bucket " << c.s3_bucket << " endpoint " << (endpoint ? endpoint : "(AWS default)")
            << " access key " << (key && *key ? std::string(key).substr(0, 4) + "..." : "(unset)")
            << " (secret not shown)\n";
    }
    out << "  viewer dir       " << c.viewer_dir << "\n"
        << "  workers / queue  " << c.workers << " / " << c.queue_capacity << "\n"
        << "  lease / attempts " << c.lease_seconds << " s / " << c.max_attempts << "\n"
        << "  tiler threads    " << c.tiler_threads << (c.tiler_threads ? "" : " (one per core)") << "\n"
        << "  per user         " << limit_text(c.max_projects, " projects") << ", " << limit_text(c.max_versions, " versions")
        << " per project, " << limit_text(c.max_stored_bytes, " bytes stored") << ", "
        << limit_text(c.max_queued_jobs, " queued") << " + " << limit_text(c.max_running_jobs, " running jobs") << "\n"
        << "  per job          " << limit_text(c.max_job_tiles, " tiles") << ", " << limit_text(c.max_job_bytes, " bytes")
        << ", " << c.max_pixels << " pixels\n"
        << "  connections      " << c.max_connections << " at once (" << c.max_connections_per_address
      << " per address), " << c.http_threads << " I/O threads, handlers "
      << (c.handler_threads ? "on a pool of " + std::to_string(c.handler_threads) : std::string("on the I/O threads"))
      << ", client timeout " << c.client_timeout_seconds << " s\n"
        << "  max upload       " << c.max_upload_bytes << " bytes\n"
        << "  shutdown grace   " << c.shutdown_grace_seconds << " s\n"
        << "  tile prefix      " << c.prefix_template << "\n"
        << "  viewer sessions  codes " << c.viewer_code_seconds << " s, sessions " << c.session_hours << " h, cookie "
        << (c.cookie_secure ? "Secure" : "not Secure (--cookie-secure 0)") << "\n"
        << "  layout / format  " << c.layout << " / " << c.format << "\n";
    if (c.layout == "iiif") out << "  IIIF base URL    " << (c.iiif_base_url.empty() ? "(none: id \".\")" : c.iiif_base_url) << "\n";
    return out.str();
}

}  // namespace tilekit_service
