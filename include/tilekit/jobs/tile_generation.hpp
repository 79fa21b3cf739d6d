#pragma once
// The tile-generation job: "generate tiles for version N of project X", as a handler for the
// worker runtime (worker.hpp). It checks again that the version is still a draft (through the
// service's version_lookup), fetches the source image, tiles it straight into the destination
// under the project's prefix while uploading, writes the manifests last, and returns the
// pyramid's metadata as the job's result. Failures are thrown as tilekit::error, so the worker
// retries what may pass next time (storage errors) and fails the rest at once (a corrupt image,
// a published version, a bad slug), with a message that names the storage key, never a local path.
//
// Reruns and retries. A run first retracts the manifests of the pyramid at its prefix (so a
// half-replaced pyramid is never taken for a finished one), then overwrites the tiles. When it
// completes, and the sink can list, every other object under the prefix is deleted: a rerun of a
// version leaves no stale tile of the previous pyramid (a larger image had more levels), and the
// partial tiles of a failed attempt are either overwritten by the next attempt or deleted by this
// sweep. A cancelled run, or one that fails for good, deletes the tiles it wrote itself.
//
// The image is decoded and tiled by tile_file(): with the streaming decoders and fast encoders
// whenever <tilekit/fast_codecs.hpp> is part of the program (or the codec set given as Codecs).

#include <tilekit/jobs/job_store.hpp>
#include <tilekit/jobs/progress.hpp>
#include <tilekit/jobs/version_guard.hpp>
#include <tilekit/jobs/worker.hpp>
#include <tilekit/key.hpp>
#include <tilekit/metadata.hpp>
#include <tilekit/sink.hpp>
#include <tilekit/source.hpp>
#include <tilekit/tile_file.hpp>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <utility>
#include <vector>

TILEKIT_NAMESPACE_BEGIN
namespace jobs {

// What a tile-generation job needs, carried in its payload (to_payload / request_from_payload).
struct tile_generation_request {
    std::string source_key;    // the base map's storage key
    std::string project_slug;  // [a-z0-9-], 1..64 characters
    int version = 0;           // the version number; it must still be a draft when the job starts
    // Where the pyramid goes; {slug}, {version} and {job_id} are replaced. With the default, a
    // project has one pyramid and a new job replaces it; add {version} to keep one per version.
    std::string prefix_template = "mp/{slug}/uploads/tiles/";
    // Layout, format, tile size, overlap, quality, skip_blank_tiles, basename: the per-job choices.
    // Machine settings (threads, limits) come from tile_generation_settings.
    pyramid_options tiling;
};

// Where a worker runs tile-generation jobs: set by the embedding service, the same for every job.
struct tile_generation_settings {
    std::uint64_t max_source_bytes = std::uint64_t{2} << 30;
    std::filesystem::path scratch_root = std::filesystem::temp_directory_path();
    unsigned threads = 0;  // encoder threads per job; 0 = one per core
    decode_limits limits;
    progress_callback on_progress;  // also called with the tiler's progress (for observers)
};

// The draft guard's source of truth: the service's catalog. Returns the version's current number
// and status for a job (its project_id and payload say which); throws tilekit::error when the
// version is gone (not_found: the job fails, permanently).
using version_lookup = std::function<version_info(const job_record& job)>;

}  // namespace jobs
namespace detail {

inline void check_slug(const std::string& slug) {
    const bool ok = !slug.empty() && slug.size() <= 64 &&
                    slug.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-") == std::string::npos;
    if (!ok) throw error(errc::invalid_argument, "project slug must be 1..64 of [a-z0-9-], got '" + slug + "'");
}

inline std::string expand_prefix(const jobs::tile_generation_request& request, const std::string& job_id) {
    check_slug(request.project_slug);
    std::string prefix = request.prefix_template;
    const auto replace_all = [&](const std::string& name, const std::string& value) {
        for (std::size_t at = prefix.find(name); at != std::string::npos; at = prefix.find(name, at + value.size()))
            prefix.replace(at, name.size(), value);
    };
    replace_all("{slug}", request.project_slug);
    replace_all("{version}", std::to_string(request.version));
    replace_all("{job_id}", job_id);
    if (!prefix.empty() && prefix.back() != '/') prefix += '/';
    if (!prefix.empty()) validate_key(prefix.substr(0, prefix.size() - 1));
    return prefix;
}

// Forwards to the destination, remembers every key it stored (for the sweep and the clean-up),
// and moves the bar from "Uploading" to "Finalizing" when the tiler's first flush (every tile
// stored) returns; the manifests follow after that.
class staged_sink final : public storage_sink {
public:
    staged_sink(storage_sink& inner, jobs::job_context& context) : inner_(inner), context_(context) {}
    void put(storage_object object) override {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            written_.insert(object.key);
        }
        inner_.put(std::move(object));
    }
    bool remove(const std::string& key) override { return inner_.remove(key); }
    void flush() override {
        if (!tiles_stored_) context_.progress(jobs::stages::upload.begin, "Uploading tiles to storage...", true);
        inner_.flush();
        if (!tiles_stored_) context_.progress(jobs::stages::finalize.begin, "Finalizing...", true);
        tiles_stored_ = true;
    }
    bool can_list() const override { return inner_.can_list(); }
    void list(const std::string& prefix, const std::function<void(const std::string&)>& on_key) override {
        inner_.list(prefix, on_key);
    }

    bool wrote(const std::string& key) const {
        std::lock_guard<std::mutex> lock(mutex_);
        return written_.count(key) != 0;
    }
    std::vector<std::string> written() const {
        std::lock_guard<std::mutex> lock(mutex_);
        return {written_.begin(), written_.end()};
    }

private:
    storage_sink& inner_;
    jobs::job_context& context_;
    mutable std::mutex mutex_;
    std::set<std::string> written_;
    bool tiles_stored_ = false;
};

// A scratch directory of its own, removed with everything in it.
class scratch_directory {
public:
    explicit scratch_directory(const std::filesystem::path& root, const std::string& job_id)
        : path_(root / ("tilekit-job-" + job_id)) {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
        std::filesystem::create_directories(path_, ec);
        if (ec) throw error(errc::io_error, "cannot create scratch directory '" + path_.string() + "': " + ec.message());
    }
    ~scratch_directory() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    scratch_directory(const scratch_directory&) = delete;
    scratch_directory& operator=(const scratch_directory&) = delete;
    const std::filesystem::path& path() const noexcept { return path_; }

private:
    std::filesystem::path path_;
};

// The keys are the ones the run wrote: the layout's manifest and options.metadata_key.
inline nlohmann::json job_result(const pyramid_metadata& m, const std::string& prefix, const std::string& metadata_key) {
    return nlohmann::json{{"tiles_path", prefix},
                          {"width", m.width},
                          {"height", m.height},
                          {"levels", m.levels},
                          {"tile_count", m.tile_count},
                          {"tile_size", m.tile_size},
                          {"format", m.format},
                          {"encoding", m.encoding},
                          {"source_format", m.source_format},
                          {"layout", m.layout},
                          {"overlap", m.overlap},
                          {"total_bytes", m.total_bytes},
                          {"skipped_tiles", m.skipped_tiles},
                          {"manifest", m.manifest.empty() ? "" : prefix + m.manifest},
                          {"metadata", prefix + metadata_key}};
}

}  // namespace detail
namespace jobs {

// The job's payload, and back. request_from_payload refuses (errc::invalid_argument) anything a
// worker could not run, so a bad job fails at once instead of being retried.
inline nlohmann::json to_payload(const tile_generation_request& request) {
    const pyramid_options& t = request.tiling;
    nlohmann::json tiling{{"layout", to_string(t.layout)},
                          {"format", to_string(t.format)},
                          {"tile_size", t.tile_size},
                          {"overlap", t.overlap},
                          {"quality", t.quality},
                          {"lossless", t.lossless},
                          {"webp_method", t.webp_method},
                          {"skip_blank_tiles", t.skip_blank_tiles},
                          {"basename", t.basename},
                          {"metadata_key", t.metadata_key}};
    if (!t.iiif_base_url.empty()) tiling["iiif_base_url"] = t.iiif_base_url;
    return nlohmann::json{{"source_key", request.source_key},
                          {"project_slug", request.project_slug},
                          {"version", request.version},
                          {"prefix_template", request.prefix_template},
                          {"tiling", tiling}};
}

inline tile_generation_request request_from_payload(const nlohmann::json& payload) {
    const auto refuse = [](const std::string& what) -> void {
        throw error(errc::invalid_argument, "tile-generation job payload: " + what);
    };
    if (!payload.is_object()) refuse("not a JSON object");
    const auto text = [&](const nlohmann::json& object, const char* name, bool required) -> std::optional<std::string> {
        if (!object.contains(name)) {
            if (required) refuse(std::string("'") + name + "' is missing");
            return std::nullopt;
        }
        if (!object.at(name).is_string()) refuse(std::string("'") + name + "' must be a string");
        return object.at(name).get<std::string>();
    };
    const auto integer = [&](const nlohmann::json& object, const char* name, int low, int high, bool required) -> std::optional<int> {
        if (!object.contains(name)) {
            if (required) refuse(std::string("'") + name + "' is missing");
            return std::nullopt;
        }
        const nlohmann::json& v = object.at(name);
        if (!v.is_number_integer() || v.get<std::int64_t>() < low || v.get<std::int64_t>() > high)
            refuse(std::string("'") + name + "' must be an integer " + std::to_string(low) + ".." + std::to_string(high));
        return static_cast<int>(v.get<std::int64_t>());
    };
    tile_generation_request r;
    r.source_key = *text(payload, "source_key", true);
    r.project_slug = *text(payload, "project_slug", true);
    r.version = *integer(payload, "version", 1, 999999999, true);
    if (auto prefix = text(payload, "prefix_template", false)) r.prefix_template = *prefix;
    try {
        validate_key(r.source_key);
        detail::check_slug(r.project_slug);
    } catch (const error& e) {
        refuse(e.what());
    }
    if (payload.contains("tiling")) {
        const nlohmann::json& t = payload.at("tiling");
        if (!t.is_object()) refuse("'tiling' must be an object");
        if (auto layout = text(t, "layout", false)) {
            if (*layout == "dz" || *layout == "deep_zoom") r.tiling.layout = layout_type::deep_zoom;
            else if (*layout == "xyz") r.tiling.layout = layout_type::xyz;
            else if (*layout == "iiif") r.tiling.layout = layout_type::iiif;
            else refuse("tiling.layout must be 'dz', 'xyz' or 'iiif', got '" + *layout + "'");
        }
        if (auto format = text(t, "format", false)) {
            if (*format == "png") r.tiling.format = tile_format::png;
            else if (*format == "jpg" || *format == "jpeg") r.tiling.format = tile_format::jpeg;
            else if (*format == "webp") r.tiling.format = tile_format::webp;
            else refuse("tiling.format must be 'png', 'jpg' or 'webp', got '" + *format + "'");
        }
        if (auto size = integer(t, "tile_size", 0, 8192, false)) r.tiling.tile_size = *size;
        if (auto overlap = integer(t, "overlap", -1, 64, false)) r.tiling.overlap = *overlap;
        if (auto quality = integer(t, "quality", 1, 100, false)) r.tiling.quality = *quality;
        if (auto method = integer(t, "webp_method", 0, 6, false)) r.tiling.webp_method = *method;
        if (t.contains("lossless")) {
            if (!t.at("lossless").is_boolean()) refuse("tiling.lossless must be true or false");
            r.tiling.lossless = t.at("lossless").get<bool>();
        }
        if (t.contains("skip_blank_tiles")) {
            if (!t.at("skip_blank_tiles").is_boolean()) refuse("tiling.skip_blank_tiles must be true or false");
            r.tiling.skip_blank_tiles = t.at("skip_blank_tiles").get<bool>();
        }
        if (auto basename = text(t, "basename", false)) {
            try {
                validate_key(*basename);
            } catch (const error& e) {
                refuse(std::string("tiling.basename: ") + e.what());
            }
            if (basename->find('/') != std::string::npos) refuse("tiling.basename cannot contain '/'");
            r.tiling.basename = *basename;
        }
        if (auto base = text(t, "iiif_base_url", false)) r.tiling.iiif_base_url = *base;  // checked below
        if (auto metadata = text(t, "metadata_key", false)) {
            try {
                validate_key(*metadata);
            } catch (const error& e) {
                refuse(std::string("tiling.metadata_key: ") + e.what());
            }
            r.tiling.metadata_key = *metadata;
        }
        try {
            (void)manifest_key(r.tiling);  // the layout's own checks (XYZ has no overlap, ...)
        } catch (const error& e) {
            refuse(e.what());
        }
    }
    return r;
}

// Runs one tile-generation job for the worker runtime and returns its result; see the top of
// this file. `destination` may be shared by concurrent jobs only if the sink is thread-safe and
// its flush() waits for everything put (memory, filesystem: yes; an S3 sink: use one per job,
// which the make_sink form below does).
template <class Codecs = automatic_codecs>
nlohmann::json generate_tiles(job_context& context, image_source& source, storage_sink& destination,
                              const version_lookup& current_version, const tile_generation_settings& settings) {
    const job_record& job = context.job();
    const tile_generation_request request = request_from_payload(job.payload);
    // The guard again at start: a version published since the job was queued must not be overwritten.
    if (!current_version) throw error(errc::invalid_argument, "tile generation needs a version lookup (the draft guard)");
    require_draft(current_version(job));

    const std::string prefix = detail::expand_prefix(request, job.id);
    const cancel_token cancel = context.cancel();
    std::string local_path;  // never shown to users: errors name the storage key instead
    const auto user_message = [&](std::string message) {
        if (!local_path.empty())
            for (std::size_t at = message.find(local_path); at != std::string::npos; at = message.find(local_path, at))
                message.replace(at, local_path.size(), request.source_key);
        return message;
    };
    detail::staged_sink staged(destination, context);
    // The tiles of a run that will not be completed: deleted when the job is cancelled or fails
    // for good; kept for the next attempt (which overwrites them) when it may be retried.
    const auto discard_written = [&] {
        for (const std::string& key : staged.written()) {
            try {
                destination.remove(key);
            } catch (const std::exception&) {  // best effort: the next run's sweep removes what is left
            }
        }
    };
    try {
        const detail::scratch_directory scratch(settings.scratch_root, job.id);
        context.progress(5, "Downloading source image...", true);
        const std::string path = source.fetch(request.source_key, scratch.path(), settings.max_source_bytes);
        local_path = path;
        if (cancel.is_cancelled()) throw cancelled_error();
        context.progress(stages::download.end, "Generating tiles... 0%", true);

        // A previous pyramid at this prefix stops being "complete" before any of its tiles is
        // overwritten. (A sink that cannot delete keeps them: see storage_sink::remove.)
        pyramid_options options = request.tiling;
        destination.remove(prefix + options.metadata_key);
        const std::string manifest = manifest_key(options);
        if (!manifest.empty()) destination.remove(prefix + manifest);

        options.prefix = prefix;
        options.cancel = cancel;
        options.threads = settings.threads;
        options.limits = settings.limits;
        options.on_progress = [&context, &settings](const tile_progress& p) {
            const double fraction = p.tiles_total ? double(p.tiles_done) / double(p.tiles_total) : 1.0;
            context.progress(stage_percent(stages::tiling, fraction),
                             "Generating tiles... " + std::to_string(static_cast<int>(fraction * 100)) + "%");
            if (settings.on_progress) settings.on_progress(p);
        };
        const pyramid_metadata metadata = tile_file<Codecs>(path, staged, options);

        // The sweep: what is under the prefix and not part of this pyramid is stale.
        if (destination.can_list()) {
            std::vector<std::string> stale;
            destination.list(prefix, [&](const std::string& key) {
                if (!staged.wrote(key)) stale.push_back(key);
            });
            for (const std::string& key : stale) destination.remove(key);
        }
        context.set_completion_message("Tile generation completed");
        return detail::job_result(metadata, prefix, options.metadata_key);
    } catch (const error& e) {
        if (e.code() == errc::cancelled || classify_failure(e.code()) == failure_kind::permanent) discard_written();
        throw error(e.code(), user_message(e.what()));
    } catch (const std::exception& e) {
        discard_written();
        throw error(errc::invalid_argument, "unexpected error while generating tiles: " + user_message(e.what()));
    }
}

// The handler to register for tile_generation_job, with one destination for every job.
template <class Codecs = automatic_codecs>
job_handler tile_generation_handler(image_source& source, storage_sink& destination, version_lookup current_version,
                                    tile_generation_settings settings = {}) {
    return [&source, &destination, current_version = std::move(current_version), settings](job_context& context) {
        return generate_tiles<Codecs>(context, source, destination, current_version, settings);
    };
}

// The same with a fresh sink for every job (an S3 sink, say), made by `make_sink`.
template <class Codecs = automatic_codecs>
job_handler tile_generation_handler(image_source& source, std::function<std::unique_ptr<storage_sink>()> make_sink,
                                    version_lookup current_version, tile_generation_settings settings = {}) {
    return [&source, make_sink = std::move(make_sink), current_version = std::move(current_version), settings](job_context& context) {
        const std::unique_ptr<storage_sink> sink = make_sink();
        return generate_tiles<Codecs>(context, source, *sink, current_version, settings);
    };
}

}  // namespace jobs
TILEKIT_NAMESPACE_END
