#include "job_queue.hpp"

#include "catalog.hpp"
#include "config.hpp"
#include "storage.hpp"

#if TILEKIT_HAS_TIFF
#include <tilekit/tiff.hpp>  // registers the TIFF reader: the workers tile TIFF uploads
#endif
#include <tilekit/fast_codecs.hpp>
#include <tilekit/sqlite.hpp>
#include <tilekit/webp.hpp>
#ifdef TILEKIT_HAS_POSTGRESQL
#include <tilekit/postgresql.hpp>
#endif

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <filesystem>

namespace tilekit_service {

namespace jobs = tilekit::jobs;

#ifdef TILEKIT_HAS_POSTGRESQL
namespace {

jobs::postgresql_store_options postgresql_options(const service_config& config) {
    jobs::postgresql_store_options options;
    options.schema = config.jobs_schema;
    options.create_schema = config.jobs_create_schema;
    options.pool_size = config.jobs_pool_size;
    options.connect_timeout = std::chrono::seconds(config.jobs_connect_timeout);
    options.statement_timeout = std::chrono::seconds(config.jobs_statement_timeout);
    options.lock_timeout = std::chrono::seconds(config.jobs_lock_timeout);
    options.idle_in_transaction_timeout = std::chrono::seconds(config.jobs_idle_in_transaction_timeout);
    return options;
}

}  // namespace
#endif

namespace {

// One job's sink, counting what the job writes: past --max-job-tiles objects or --max-job-bytes
// bytes every put() fails, so the job fails for good (image_too_large is not retried) and its
// run is discarded before anything commits it. A job cannot know its output before it tiles:
// a small file can decode to a huge image, or to tiles that compress far worse than it did.
class capped_sink final : public tilekit::storage_sink {
public:
    capped_sink(std::unique_ptr<tilekit::storage_sink> inner, std::uint64_t max_objects, std::uint64_t max_bytes)
        : inner_(std::move(inner)), max_objects_(max_objects), max_bytes_(max_bytes) {}

    void put(tilekit::storage_object object) override {
        const std::uint64_t objects = ++objects_;
        const std::uint64_t bytes = bytes_ += object.body.size();
        if (max_objects_ && objects > max_objects_)
            throw over_cap(std::to_string(max_objects_) + " tiles (--max-job-tiles)");
        if (max_bytes_ && bytes > max_bytes_) throw over_cap(std::to_string(max_bytes_) + " bytes (--max-job-bytes)");
        inner_->put(std::move(object));
    }
    void flush() override { inner_->flush(); }
    bool remove(const std::string& key) override { return inner_->remove(key); }
    bool can_list() const override { return inner_->can_list(); }
    void list(const std::string& prefix, const std::function<void(const std::string&)>& on_key) override {
        inner_->list(prefix, on_key);
    }
    // The pointer and the manifests' conditional writes are the commit, not the output.
    bool can_compare_and_put() const override { return inner_->can_compare_and_put(); }
    std::optional<tilekit::versioned_object> read(const std::string& key) override { return inner_->read(key); }
    tilekit::conditional_put_result put_if(tilekit::storage_object object, const std::string& expected_version) override {
        return inner_->put_if(std::move(object), expected_version);
    }

private:
    static tilekit::error over_cap(const std::string& limit) {
        return tilekit::error(tilekit::errc::image_too_large, "the job's output passed this service's limit of " + limit);
    }

    std::unique_ptr<tilekit::storage_sink> inner_;
    const std::uint64_t max_objects_, max_bytes_;
    std::atomic<std::uint64_t> objects_{0}, bytes_{0};
};

}  // namespace

std::string job_store_schema_sql(const service_config& config, int from_version) {
#ifdef TILEKIT_HAS_POSTGRESQL
    if (from_version == 0) return jobs::postgresql_job_store::schema_sql(config.jobs_schema);
    return jobs::postgresql_job_store::migration_sql(config.jobs_schema, from_version);
#else
    (void)config;
    (void)from_version;
    throw std::runtime_error("this program was built without PostgreSQL support (libpq-dev)");
#endif
}

std::unique_ptr<jobs::job_store> open_job_store(const service_config& config) {
    std::unique_ptr<jobs::job_store> store;
    if (is_postgresql_url(config.jobs_db)) {
#ifdef TILEKIT_HAS_POSTGRESQL
        store = std::make_unique<jobs::postgresql_job_store>(config.jobs_db, postgresql_options(config));
#else
        throw std::runtime_error("--jobs-db " + redact_url(config.jobs_db) +
                                 ": this tilekit-service was built without PostgreSQL support (libpq-dev)");
#endif
    } else {
        // Opening the file rescues the jobs of processes on this host that were killed mid-job.
        auto sqlite = std::make_unique<jobs::sqlite_job_store>(config.jobs_db);
        for (const auto& job : sqlite->recovered_on_open())
            std::fprintf(stderr, "tilekit-service: job %s rescued: %s\n", job.id.c_str(), job.error.c_str());
        store = std::move(sqlite);
    }
    return store;
}

std::string describe_job_store(const service_config& config) {
    if (!is_postgresql_url(config.jobs_db)) return "sqlite";
    return "postgresql";
}

nlohmann::json tile_job_payload(const service_config& config, const std::string& source_key, const std::string& slug,
                                int version_number) {
    jobs::tile_generation_request request;
    request.source_key = source_key;
    request.project_slug = slug;
    request.version = version_number;
    request.prefix_template = config.prefix_template;
    request.tiling.layout = config.layout == "xyz"    ? tilekit::layout_type::xyz
                            : config.layout == "iiif" ? tilekit::layout_type::iiif
                                                      : tilekit::layout_type::deep_zoom;
    request.tiling.iiif_base_url = config.iiif_base_url;
    request.tiling.format = config.format == "jpg" ? tilekit::tile_format::jpeg : tilekit::tile_format::png;
    if (config.format.rfind("webp", 0) == 0) request.tiling.format = tilekit::tile_format::webp;
    request.tiling.lossless = config.format == "webp-lossless";
    return jobs::to_payload(request);
}

void sweep_scratch(const service_config& config, jobs::job_store& queue) {
    const std::filesystem::path root = std::filesystem::path(config.data_dir) / "scratch";
    const std::string prefix = "tilekit-job-";  // as tilekit's tile_generation_handler names them
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(root, ec)) {
        const std::string name = entry.path().filename().string();
        // "tilekit-job-<id>.<attempt>" (one per attempt), or "tilekit-job-<id>" from before.
        if (name.compare(0, prefix.size(), prefix) != 0 || name.size() < prefix.size() + 36) continue;
        const std::string id = name.substr(prefix.size(), 36);
        const std::string suffix = name.substr(prefix.size() + 36);
        if (!jobs::is_uuid(id)) continue;
        int attempt = -1;
        if (!suffix.empty()) {
            if (suffix.size() < 2 || suffix.size() > 10 || suffix[0] != '.' ||
                suffix.find_first_not_of("0123456789", 1) != std::string::npos)
                continue;
            attempt = std::stoi(suffix.substr(1));
        }
        // Kept only while its own attempt runs (another process on this host may be running it);
        // an earlier attempt's directory is left over whatever the job does now.
        const std::optional<jobs::job_record> job = queue.get(id);
        if (job && job->status == jobs::job_status::running && (attempt < 0 || attempt == job->attempt)) continue;
        std::filesystem::remove_all(entry.path(), ec);
        std::fprintf(stderr, "tilekit: removed %s, left by a run that did not end%s\n", entry.path().c_str(),
                     ec ? (": " + ec.message()).c_str() : "");
    }
}

std::unique_ptr<jobs::worker_pool> start_workers(const service_config& config, jobs::job_store& queue, catalog& db,
                                                 storage& store, const std::string& log_name) {
    jobs::worker_options options;
    options.threads = config.workers;
    options.lease = std::chrono::seconds(config.lease_seconds);
    options.heartbeat = std::min(std::chrono::milliseconds(500), options.lease / 4);
    options.shutdown_grace = std::chrono::seconds(config.shutdown_grace_seconds);
    options.job_timeout = std::chrono::seconds(config.job_timeout_seconds);
    options.retention.max_age = std::chrono::hours(24) * config.job_retention_days;
    if (config.job_keep_per_version > 0) options.retention.keep_per_version = config.job_keep_per_version;
    if (config.job_retention_days == 0) options.maintenance_interval = std::chrono::milliseconds(0);  // keep everything
    if (!log_name.empty())
        options.on_job_end = [log_name](const jobs::job_record& job) {
            std::fprintf(stderr, "%s: job %s %s (attempt %d of %d)%s%s\n", log_name.c_str(), job.id.c_str(),
                         jobs::to_string(job.status), job.attempt, job.max_attempts, job.error.empty() ? "" : ": ",
                         job.error.c_str());
        };
    jobs::tile_generation_settings settings;
    settings.max_source_bytes = config.max_upload_bytes;
    settings.scratch_root = std::filesystem::path(config.data_dir) / "scratch";
    settings.threads = config.tiler_threads;
    // The upload's header was checked against --max-pixels; the decoder checks the image it
    // really opens (a file whose header lied, a TIFF, a WebP), before decoding it.
    settings.limits.max_pixels = config.max_pixels;
    // Replaced and abandoned runs are collected at each commit, a grace period after they ended.
    settings.gc_grace = std::chrono::seconds(config.gc_grace_seconds);
    settings.run_ended_at = jobs::run_ended_from_store(queue);
    settings.job_gave_up = jobs::job_gave_up_from_store(queue);
    settings.public_base_url = config.public_base_url.empty() ? config.iiif_base_url : config.public_base_url;
    std::filesystem::create_directories(settings.scratch_root);
    // The catalog is the service's: the version as it is now, not as it was when the job was queued.
    const jobs::version_lookup current_version = [&db](const jobs::job_record& job) {
        const int number = job.payload.value("version", 0);
        const std::optional<version> v = db.find_version(job.project_id, number);
        if (!v) throw tilekit::error(tilekit::errc::not_found, "version " + std::to_string(number) + " no longer exists");
        return jobs::version_info{v->number, v->status};
    };
    auto pool = std::make_unique<jobs::worker_pool>(queue, options);
    const auto make_sink = [&store, max_tiles = config.max_job_tiles, max_bytes = config.max_job_bytes] {
        return std::unique_ptr<tilekit::storage_sink>(std::make_unique<capped_sink>(store.make_sink(), max_tiles, max_bytes));
    };
    // A committed pyramid counts toward its owner's --max-stored-bytes, as the uploads do.
    pool->handle(jobs::tile_generation_job, [&db, generate = jobs::tile_generation_handler(store.source(), make_sink,
                                                                                          current_version, settings)](
                                                jobs::job_context& context) {
        nlohmann::json result = generate(context);
        if (result.is_object() && result.contains("total_bytes") && result["total_bytes"].is_number_unsigned())
            db.record_tiles(context.job().version_id, result["total_bytes"].get<std::uint64_t>());
        return result;
    });
    pool->start();
    return pool;
}

std::string jobs_metrics_text(const jobs::queue_stats& s, const jobs::worker_pool* pool) {
    std::string out;
    const auto metric = [&](const char* name, const char* type, const char* help) {
        out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
    };
    const auto value = [&](const std::string& series, double v) {
        char text[64];
        std::snprintf(text, sizeof text, "%.17g", v);
        out += series + " " + text + "\n";
    };
    const double window = static_cast<double>(s.window.count()) / 1000.0;
    metric("tilekit_jobs", "gauge", "Jobs in the store by status.");
    value("tilekit_jobs{status=\"queued\"}", static_cast<double>(s.queued));
    value("tilekit_jobs{status=\"running\"}", static_cast<double>(s.running));
    value("tilekit_jobs{status=\"completed\"}", static_cast<double>(s.completed));
    value("tilekit_jobs{status=\"failed\"}", static_cast<double>(s.failed));
    value("tilekit_jobs{status=\"cancelled\"}", static_cast<double>(s.cancelled));
    metric("tilekit_jobs_runnable", "gauge", "Queued jobs whose run_at has come.");
    value("tilekit_jobs_runnable", static_cast<double>(s.runnable));
    metric("tilekit_jobs_oldest_runnable_age_seconds", "gauge", "How long the oldest runnable job has waited (0: none).");
    value("tilekit_jobs_oldest_runnable_age_seconds", s.oldest_runnable_age ? static_cast<double>(s.oldest_runnable_age->count()) / 1000.0 : 0.0);
    metric("tilekit_jobs_window_seconds", "gauge", "The window of the *_in_window metrics.");
    value("tilekit_jobs_window_seconds", window);
    metric("tilekit_jobs_ended_in_window", "gauge", "Jobs completed or failed within the window.");
    value("tilekit_jobs_ended_in_window{status=\"completed\"}", static_cast<double>(s.completed_in_window));
    value("tilekit_jobs_ended_in_window{status=\"failed\"}", static_cast<double>(s.failed_in_window));
    metric("tilekit_jobs_failure_ratio", "gauge", "failed / (completed + failed) within the window (NaN: none ended).");
    value("tilekit_jobs_failure_ratio", s.failure_rate() ? *s.failure_rate() : std::nan(""));
    metric("tilekit_jobs_started_in_window", "gauge", "Attempts started within the window.");
    value("tilekit_jobs_started_in_window", static_cast<double>(s.started_in_window));
    metric("tilekit_jobs_pickup_latency_seconds", "gauge", "started_at - run_at of the attempts started within the window.");
    value("tilekit_jobs_pickup_latency_seconds{stat=\"avg\"}", s.pickup_latency_avg ? static_cast<double>(s.pickup_latency_avg->count()) / 1000.0 : 0.0);
    value("tilekit_jobs_pickup_latency_seconds{stat=\"max\"}", s.pickup_latency_max ? static_cast<double>(s.pickup_latency_max->count()) / 1000.0 : 0.0);
    if (pool) {
        const jobs::worker_pool::stats w = pool->snapshot();
        metric("tilekit_worker_threads", "gauge", "Worker threads of this process.");
        value("tilekit_worker_threads", w.threads);
        metric("tilekit_worker_running", "gauge", "Jobs running in this process.");
        value("tilekit_worker_running", w.running);
        metric("tilekit_worker_jobs_total", "counter", "Job outcomes in this process since it started.");
        value("tilekit_worker_jobs_total{outcome=\"completed\"}", static_cast<double>(w.completed));
        value("tilekit_worker_jobs_total{outcome=\"failed\"}", static_cast<double>(w.failed));
        value("tilekit_worker_jobs_total{outcome=\"retried\"}", static_cast<double>(w.retried));
        value("tilekit_worker_jobs_total{outcome=\"handed_back\"}", static_cast<double>(w.released));
        metric("tilekit_worker_pruned_total", "counter", "Finished jobs deleted by this process's retention.");
        value("tilekit_worker_pruned_total", static_cast<double>(w.pruned));
    }
    return out;
}

}  // namespace tilekit_service
