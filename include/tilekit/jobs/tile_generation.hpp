#pragma once
// The tile-generation job: "generate tiles for version N of project X" as one call that a
// service runs on a worker thread. It marks the job running (after checking again that the
// version is still a draft), fetches the source image, tiles it straight into the destination
// under the project's prefix while uploading, writes the manifests last, and completes the job
// with the pyramid's metadata. Every failure - bad source, missing key, storage errors after
// retries, cancellation, an exception from user code - ends the job failed or cancelled with a
// message a user can act on; the job is never left running and scratch files are removed.
//
// The image is decoded and tiled by tile_file(): with the streaming decoders and fast encoders
// whenever <tilekit/fast_codecs.hpp> is part of the program (or the codec set given as Codecs).

#include <tilekit/jobs/job_store.hpp>
#include <tilekit/jobs/progress.hpp>
#include <tilekit/jobs/version_guard.hpp>
#include <tilekit/key.hpp>
#include <tilekit/metadata.hpp>
#include <tilekit/sink.hpp>
#include <tilekit/source.hpp>
#include <tilekit/tile_file.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>

TILEKIT_NAMESPACE_BEGIN
namespace jobs {

struct tile_generation_request {
    std::string job_id;
    std::string source_key;         // the base map's storage key
    std::string project_slug;       // [a-z0-9-], 1..64 characters
    version_info version;           // must be a draft, checked again when the job starts
    // Where the pyramid goes; {slug}, {version} and {job_id} are replaced. With the default, a
    // project has one pyramid and a new job replaces it; add {version} to keep one per version.
    std::string prefix_template = "mp/{slug}/uploads/tiles/";
    // Layout, format, tile size, threads, limits, ...: one level deep (request.tiling.threads).
    // The job sets prefix, cancel and on_progress (a callback set here is still called).
    pyramid_options tiling;
    std::uint64_t max_source_bytes = std::uint64_t{2} << 30;
    std::filesystem::path scratch_root = std::filesystem::temp_directory_path();
    std::chrono::milliseconds progress_interval{250};
};

}  // namespace jobs
namespace detail {

inline void check_slug(const std::string& slug) {
    const bool ok = !slug.empty() && slug.size() <= 64 &&
                    slug.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-") == std::string::npos;
    if (!ok) throw error(errc::invalid_argument, "project slug must be 1..64 of [a-z0-9-], got '" + slug + "'");
}

inline std::string expand_prefix(const jobs::tile_generation_request& request) {
    check_slug(request.project_slug);
    std::string prefix = request.prefix_template;
    const auto replace_all = [&](const std::string& name, const std::string& value) {
        for (std::size_t at = prefix.find(name); at != std::string::npos; at = prefix.find(name, at + value.size()))
            prefix.replace(at, name.size(), value);
    };
    replace_all("{slug}", request.project_slug);
    replace_all("{version}", std::to_string(request.version.number));
    replace_all("{job_id}", request.job_id);
    if (!prefix.empty() && prefix.back() != '/') prefix += '/';
    if (!prefix.empty()) validate_key(prefix.substr(0, prefix.size() - 1));
    return prefix;
}

// Forwards to the destination and moves the bar from "Uploading" to "Finalizing" when the
// tiler's first flush (every tile stored) returns; the manifests follow after that.
class staged_sink final : public storage_sink {
public:
    staged_sink(storage_sink& inner, jobs::progress_writer& progress) : inner_(inner), progress_(progress) {}
    void put(storage_object object) override { inner_.put(std::move(object)); }
    bool remove(const std::string& key) override { return inner_.remove(key); }
    void flush() override {
        if (!tiles_stored_) progress_.set(jobs::stages::upload.begin, "Uploading tiles to storage...", true);
        inner_.flush();
        if (!tiles_stored_) progress_.set(jobs::stages::finalize.begin, "Finalizing...", true);
        tiles_stored_ = true;
    }

private:
    storage_sink& inner_;
    jobs::progress_writer& progress_;
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
                          {"layout", m.layout},
                          {"overlap", m.overlap},
                          {"total_bytes", m.total_bytes},
                          {"skipped_tiles", m.skipped_tiles},
                          {"manifest", m.manifest.empty() ? "" : prefix + m.manifest},
                          {"metadata", prefix + metadata_key}};
}

}  // namespace detail
namespace jobs {

// Runs the job to its end and returns the final record (completed, failed or cancelled).
// Throws only when the store itself cannot record the outcome. `cancel` stops the run
// cooperatively; cancelling the job in the store from elsewhere stops it too.
template <class Codecs = automatic_codecs>
job_record run_tile_generation_job(job_store& store, image_source& source, storage_sink& destination,
                                   const tile_generation_request& request, cancel_token cancel = {}) {
    // The guard again at start: a version published since the job was queued must not be overwritten.
    try {
        require_draft(request.version);
    } catch (const error& e) {
        return store.fail(request.job_id, e.what());
    }
    try {
        store.start(request.job_id, "Starting...");
    } catch (const job_state_error&) {
        const auto current = store.get(request.job_id);  // cancelled before it could start
        if (current && is_terminal(current->status)) return *current;
        throw;
    }
    progress_writer progress(store, request.job_id, request.progress_interval, [cancel]() mutable { cancel.cancel(); });
    std::string local_path;  // never shown to users: errors name the storage key instead
    const auto user_message = [&](std::string message) {
        if (!local_path.empty())
            for (std::size_t at = message.find(local_path); at != std::string::npos; at = message.find(local_path, at))
                message.replace(at, local_path.size(), request.source_key);
        return message;
    };
    try {
        const std::string prefix = detail::expand_prefix(request);
        const detail::scratch_directory scratch(request.scratch_root, request.job_id);

        progress.set(5, "Downloading source image...", true);
        const std::string path = source.fetch(request.source_key, scratch.path(), request.max_source_bytes);
        local_path = path;
        if (cancel.is_cancelled()) throw cancelled_error();
        progress.set(stages::download.end, "Generating tiles... 0%", true);

        // A previous pyramid at this prefix stops being "complete" before any of its tiles is
        // overwritten, so a viewer never takes a half-replaced pyramid for a finished one.
        // (A sink that cannot delete keeps them: see storage_sink::remove.)
        pyramid_options options = request.tiling;
        destination.remove(prefix + options.metadata_key);
        const std::string manifest = manifest_key(options);
        if (!manifest.empty()) destination.remove(prefix + manifest);

        options.prefix = prefix;
        options.cancel = cancel;
        const progress_callback user_callback = options.on_progress;
        options.on_progress = [&progress, user_callback](const tile_progress& p) {
            const double fraction = p.tiles_total ? double(p.tiles_done) / double(p.tiles_total) : 1.0;
            progress.set(stage_percent(stages::tiling, fraction),
                         "Generating tiles... " + std::to_string(static_cast<int>(fraction * 100)) + "%");
            if (user_callback) user_callback(p);
        };
        detail::staged_sink staged(destination, progress);
        const pyramid_metadata metadata = tile_file<Codecs>(path, staged, options);
        progress.stop();
        return store.complete(request.job_id, detail::job_result(metadata, prefix, options.metadata_key),
                              "Tile generation completed");
    } catch (const cancelled_error&) {
        progress.stop();
        const auto current = store.get(request.job_id);
        if (current && is_terminal(current->status)) return *current;  // cancelled or failed elsewhere
        return store.cancel(request.job_id, "cancelled while generating tiles; no pyramid was published");
    } catch (const std::exception& e) {
        progress.stop();
        const auto current = store.get(request.job_id);
        if (current && is_terminal(current->status)) return *current;
        return store.fail(request.job_id, user_message(e.what()));
    } catch (...) {
        progress.stop();
        return store.fail(request.job_id, "unknown error while generating tiles");
    }
}

}  // namespace jobs
TILEKIT_NAMESPACE_END
