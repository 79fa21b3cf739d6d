#pragma once
// The tile-generation job: "generate tiles for version N of project X", as a handler for the
// worker runtime (worker.hpp). It checks again that the version is still a draft (through the
// service's version_lookup), fetches the source image, tiles it straight into the destination
// while uploading, and publishes the result with the protocol of jobs/run_pointer.hpp. Failures
// are thrown as tilekit::error, so the worker retries what may pass next time (storage errors)
// and fails the rest at once (a corrupt image, a published version, a bad slug), with a message
// that names the storage key, never a local path.
//
// Publishing. Every attempt writes under a run prefix of its own,
// {version prefix}runs/{job_id}.{attempt}/, and never writes or deletes anything outside it, so
// no other run (a cancelled one still stopping, one whose lease was lost, a rerun) can touch its
// objects or be touched by it. It reads the version's pointer (and its version tag) before it
// starts; when its pyramid is stored it commits: it checks that it is not cancelled, that the
// version is still a draft, and renews its lease (a fenced write: it fails when the job was
// cancelled or taken over), and then, with most of the lease still ahead, makes the pointer name
// its run with one conditional write against the tag it read at the start. If the pointer moved
// meanwhile (another run committed), the write fails and the job fails for good. If the job is
// cancelled or loses its lease between the commit and the completion, the worker puts the
// previous pointer back (conditionally again), so the job's status and the pointer agree. A run
// that fails, is cancelled or is stopped deletes its own prefix: nothing can commit it any more
// (a retry is a new attempt with a new prefix). Replaced runs are deleted later by collect_runs(),
// after a grace period, by the next commit and by `tilekit jobs gc`.
//
// The image is decoded and tiled by tile_file(): with the streaming decoders and fast encoders
// whenever <tilekit/fast_codecs.hpp> is part of the program (or the codec set given as Codecs).

#include <tilekit/jobs/job_store.hpp>
#include <tilekit/jobs/progress.hpp>
#include <tilekit/jobs/run_pointer.hpp>
#include <tilekit/jobs/version_guard.hpp>
#include <tilekit/jobs/worker.hpp>
#include <tilekit/key.hpp>
#include <tilekit/metadata.hpp>
#include <tilekit/sink.hpp>
#include <tilekit/source.hpp>
#include <tilekit/tile_file.hpp>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
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
    int version = 0;           // the version number; it must be a draft at the start and at the commit
    // The version's prefix; {slug}, {version} and {job_id} are replaced. Its pointer and its runs
    // live below it (see the top of this file); each version has its own.
    std::string prefix_template = "mp/{slug}/uploads/tiles/{version}/";
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
    // Garbage collection after a commit (jobs/run_pointer.hpp): how long a replaced run is kept,
    // and when a run that was never committed ended (run_ended_from_store() answers it from the
    // job store); without it, the commit collects only replaced runs.
    std::chrono::seconds gc_grace{600};
    std::function<std::optional<std::int64_t>(const std::string& job_id, int attempt)> run_ended_at;
    // Whether a job ended without completing (job_gave_up_from_store() answers it): a commit that
    // finds the pointer naming such a job's run (a cancelled run that committed in its last
    // moment) replaces it instead of losing to it. Without it, such a commit fails.
    std::function<bool(const std::string& job_id)> job_gave_up;
    // Where the destination's keys are served, for the stable manifests a commit writes at the
    // version prefix (sync_stable_manifests in jobs/run_pointer.hpp); empty: "/{key}", a bucket
    // served at a domain's root.
    std::string public_base_url;
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
    bool can_compare_and_put() const override { return inner_.can_compare_and_put(); }
    std::optional<versioned_object> read(const std::string& key) override { return inner_.read(key); }
    conditional_put_result put_if(storage_object object, const std::string& expected) override {
        return inner_.put_if(std::move(object), expected);
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

// A scratch directory of the attempt's own, removed with everything in it. Per attempt, not per
// job: an earlier attempt still stopping on this host (its lease lost) must not remove the
// directory of the attempt that took over when it cleans up.
class scratch_directory {
public:
    scratch_directory(const std::filesystem::path& root, const std::string& job_id, int attempt)
        : path_(root / ("tilekit-job-" + job_id + "." + std::to_string(attempt))) {
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

// The pointer a commit writes: this run, replacing `base` (which is kept as `previous`, and
// whose run joins the retired ones: listed for the grace period, a week and 100 runs at most).
inline jobs::run_pointer next_pointer(const jobs::pointer_state& base, const std::string& run, const std::string& job_id, int attempt,
                                      const pyramid_metadata& metadata, const std::string& metadata_key, std::int64_t now) {
    jobs::run_pointer next;
    next.run = run;
    next.job_id = job_id;
    next.attempt = attempt;
    next.layout = metadata.layout;
    next.manifest = metadata.manifest.empty() ? std::string() : run + metadata.manifest;
    next.metadata = run + metadata_key;
    next.committed_at = now;
    if (base.pointer) {
        for (const jobs::retired_run& r : base.pointer->retired)
            if (now - r.since < 7 * 86400 && next.retired.size() < 99 && r.run != run) next.retired.push_back(r);
        if (!base.pointer->run.empty()) {
            next.retired.push_back({base.pointer->run, now});
            jobs::run_pointer previous = *base.pointer;
            previous.retired.clear();
            previous.previous.reset();
            next.previous = std::make_shared<const jobs::run_pointer>(std::move(previous));
        }
    }
    return next;
}

// The keys are the ones the run wrote: the layout's manifest and options.metadata_key.
inline nlohmann::json job_result(const pyramid_metadata& m, const std::string& prefix, const std::string& metadata_key,
                                 const std::string& version_prefix, const std::string& run) {
    return nlohmann::json{{"tiles_path", prefix},
                          {"version_prefix", version_prefix},
                          {"pointer", version_prefix + jobs::pointer_name},
                          {"run", run},
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

    if (!destination.can_compare_and_put())
        throw error(errc::invalid_argument, "tile generation publishes through a pointer: its storage sink must support put_if");
    const std::string version_prefix = detail::expand_prefix(request, job.id);
    const std::string run = run_name(job.id, context.attempt());
    const std::string prefix = version_prefix + run;
    const cancel_token cancel = context.cancel();
    std::string local_path;  // never shown to users: errors name the storage key instead
    const auto user_message = [&](std::string message) {
        if (!local_path.empty())
            for (std::size_t at = message.find(local_path); at != std::string::npos; at = message.find(local_path, at))
                message.replace(at, local_path.size(), request.source_key);
        return message;
    };
    detail::staged_sink staged(destination, context);
    // Set once the pointer write was sent: from then on the run may be the version's pyramid (a
    // write whose answer was lost may have landed), so it is never deleted here.
    bool commit_sent = false;
    // This run's objects, when nothing can commit it any more. Only under its own prefix.
    const auto discard_run = [&] {
        if (commit_sent) return;
        std::set<std::string> keys;
        for (const std::string& key : staged.written()) keys.insert(key);
        try {
            if (destination.can_list()) destination.list(prefix, [&](const std::string& key) { keys.insert(key); });
        } catch (const std::exception&) {
        }
        for (const std::string& key : keys) {
            try {
                destination.remove(key);
            } catch (const std::exception&) {  // best effort: collect_runs() removes what is left
            }
        }
    };
    try {
        // The version tag the commit is conditional on: the pointer as it is before this run.
        const pointer_state before = read_pointer(destination, version_prefix);
        const detail::scratch_directory scratch(settings.scratch_root, job.id, context.attempt());
        context.progress(5, "Downloading source image...", true);
        // Through the cancel token: a cancel stops the download (where the source can) rather
        // than waiting for the whole source to arrive.
        const std::string path = source.fetch_cancellable(request.source_key, scratch.path(), settings.max_source_bytes, cancel);
        local_path = path;
        if (cancel.is_cancelled()) throw cancelled_error();
        context.progress(stages::download.end, "Generating tiles... 0%", true);

        pyramid_options options = request.tiling;
        options.prefix = prefix;
        options.cancel = cancel;
        options.threads = settings.threads;
        options.limits = settings.limits;
        // Nothing under a run prefix ever changes.
        options.tile_cache_control = immutable_cache_control;
        options.manifest_cache_control = immutable_cache_control;
        options.on_progress = [&context, &settings](const tile_progress& p) {
            const double fraction = p.tiles_total ? double(p.tiles_done) / double(p.tiles_total) : 1.0;
            context.progress(stage_percent(stages::tiling, fraction),
                             "Generating tiles... " + std::to_string(static_cast<int>(fraction * 100)) + "%");
            if (settings.on_progress) settings.on_progress(p);
        };
        const pyramid_metadata metadata = tile_file<Codecs>(path, staged, options);
        // Every object of the run is stored before anything can point at it. A cancel that came
        // while the last tiles were written is not left waiting for every upload to drain, and
        // one that came during the flush stops the run before the commit's renewal.
        if (cancel.is_cancelled()) throw cancelled_error();
        destination.flush();
        if (cancel.is_cancelled()) throw cancelled_error();

        // The commit, fenced: not cancelled, still a draft, and the lease renewed just now with
        // most of it ahead, so no other attempt can have been started (the store hands a job to
        // another worker only after its lease expired). Then one conditional write against the
        // tag the pointer had when this run started.
        pointer_state base = before;  // the pointer this commit replaces, as last read
        conditional_put_result committed;
        std::int64_t now = 0;
        for (int round = 0;; ++round) {
            if (cancel.is_cancelled()) throw cancelled_error();
            require_draft(current_version(job));
            const auto valid_until = context.confirm_lease();
            if (valid_until != std::chrono::steady_clock::time_point::max() &&
                valid_until - std::chrono::steady_clock::now() < context.lease_duration() / 2)
                throw error(errc::lease_lost, "the lease was renewed too late to commit safely");
            if (cancel.is_cancelled()) throw cancelled_error();
            now = unix_now();
            const run_pointer next = detail::next_pointer(base, run, job.id, context.attempt(), metadata, options.metadata_key, now);
            commit_sent = true;
            try {
                committed = write_pointer(destination, version_prefix, next, base.version);
            } catch (const std::exception&) {
                // The write may have landed with its answer lost: the pointer says which. Unknown
                // (storage still unreachable): the run is kept, and the error goes on.
                const pointer_state after = read_pointer(destination, version_prefix);
                if (!after.pointer || after.pointer->run != run) {
                    commit_sent = false;
                    throw;
                }
                committed = {true, after.version};
            }
            if (committed.stored) break;
            commit_sent = false;
            // The pointer moved while this run worked. This run may still commit when the
            // pointer came back to the run it started from (a cancelled run's undo), or names a
            // run whose job gave up (cancelled or failed: its undo or `tilekit jobs gc` would
            // withdraw it); the next round checks the fences again and writes against the tag as
            // it is now. Any other run may rightly be current: this one loses, changing nothing.
            const pointer_state moved = read_pointer(destination, version_prefix);
            const std::string moved_run = moved.pointer ? moved.pointer->run : std::string();
            const std::string start_run = before.pointer ? before.pointer->run : std::string();
            const bool came_back = moved_run == start_run;
            const bool abandoned = !came_back && moved.pointer && settings.job_gave_up && settings.job_gave_up(moved.pointer->job_id);
            if (round >= 4 || !(came_back || abandoned))
                throw error(errc::duplicate_job, "another run of version " + std::to_string(request.version) +
                                                     " was published while this one ran (its pointer '" + version_prefix +
                                                     pointer_name + "' names " + (moved_run.empty() ? "no run" : moved_run) +
                                                     "); this run is discarded");
            base = moved;
            if (abandoned && base.pointer) {  // what the abandoned commit replaced is what this one replaces
                run_pointer replaced = base.pointer->previous ? *base.pointer->previous : run_pointer{};
                replaced.retired = base.pointer->retired;
                replaced.retired.push_back({moved_run, now});
                base.pointer = replaced;
            }
        }
        // If the completion is refused (cancelled or taken over since the commit), the previous
        // pointer comes back, unless someone has committed since.
        run_pointer undo = base.pointer ? *base.pointer : run_pointer{};
        if (!base.pointer) undo.committed_at = now;
        undo.retired.push_back({run, now});
        std::vector<std::string> stable_names;  // what the stable manifests of this run are called
        if (!metadata.manifest.empty()) stable_names.push_back(metadata.manifest);
        stable_names.push_back(options.metadata_key);
        context.on_completion_refused([&destination, version_prefix, undo, committed, stable_names, base = settings.public_base_url] {
            if (write_pointer(destination, version_prefix, undo, committed.version).stored)
                sync_stable_manifests(destination, version_prefix, base, stable_names);
        });
        // The stable manifests follow the pointer. Best effort: the pointer is the truth, and
        // `tilekit jobs gc` writes them again.
        try {
            sync_stable_manifests(destination, version_prefix, settings.public_base_url);
        } catch (const std::exception& e) {
            std::fprintf(stderr, "tilekit: job %s: the stable manifests of %s were not written: %s\n", job.id.c_str(),
                         version_prefix.c_str(), e.what());
        }
        try {
            collect_options gc;
            gc.grace = settings.gc_grace;
            gc.run_ended_at = settings.run_ended_at;
            gc.keep = run;
            collect_runs(destination, version_prefix, gc);
        } catch (const std::exception&) {  // best effort: `tilekit jobs gc` collects them later
        }
        context.set_completion_message("Tile generation completed");
        return detail::job_result(metadata, prefix, options.metadata_key, version_prefix, run);
    } catch (const error& e) {
        discard_run();
        throw error(e.code(), user_message(e.what()));
    } catch (const std::exception& e) {
        discard_run();
        throw error(errc::invalid_argument, "unexpected error while generating tiles: " + user_message(e.what()));
    }
}

// When a run that was never committed can no longer commit, from the job store: its job ended
// (failed, cancelled, completed: the job's completed_at), as unix seconds. Nothing while the job
// is queued or running (a later attempt's run of a running job may still commit; an earlier
// attempt's run is collected once the job ends). A job the store does not know is long gone.
inline std::function<std::optional<std::int64_t>(const std::string&, int)> run_ended_from_store(job_store& store) {
    return [&store](const std::string& job_id, int attempt) -> std::optional<std::int64_t> {
        static_cast<void>(attempt);
        const std::optional<job_record> job = store.get(job_id);
        if (!job) return std::int64_t{0};
        if (job->status == job_status::queued || job->status == job_status::running) return std::nullopt;
        if (!job->completed_at) return std::int64_t{0};
        std::tm utc{};
        if (!strptime(job->completed_at->c_str(), "%Y-%m-%dT%H:%M:%S", &utc)) return std::int64_t{0};
        return static_cast<std::int64_t>(timegm(&utc));
    };
}

// For withdraw_abandoned_commit(), from the job store: the job ended without completing (failed
// or cancelled). A job the store does not know (deleted by retention) is not judged.
inline std::function<bool(const std::string&)> job_gave_up_from_store(job_store& store) {
    return [&store](const std::string& job_id) {
        const std::optional<job_record> job = store.get(job_id);
        return job && (job->status == job_status::failed || job->status == job_status::cancelled);
    };
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
        const std::shared_ptr<storage_sink> sink = make_sink();
        nlohmann::json result = generate_tiles<Codecs>(context, source, *sink, current_version, settings);
        // The undo of the commit (run by the worker after this returns) writes through the sink:
        // it must outlive this call.
        if (std::function<void()> undo = context.take_completion_refused())
            context.on_completion_refused([sink, undo = std::move(undo)] { undo(); });
        return result;
    };
}

}  // namespace jobs
TILEKIT_NAMESPACE_END
