#pragma once
// tilekit 0.1.0, single header <tilekit/jobs.hpp>: the jobs part.
// "Generate tiles for version N of project X" as a tracked job: the job record and its
// state machine, the job_store interface and an in-memory store, progress stages, the
// draft-version guard and the tile-generation job.
//
// Needs tilekit.hpp beside it (it includes it).
// Link (Debian: libstb-dev nlohmann-json3-dev (nothing beyond the core)):
//   c++ -std=c++17 -I single_include app.cpp $(pkg-config --cflags --libs stb) -pthread
// An installed tilekit: `pkg-config tilekit-jobs`, or CMake `tilekit::jobs`.
//
//   #include <tilekit/jobs.hpp>
//   tilekit::jobs::memory_job_store store;  tilekit::jobs::tile_generation_request request;
//   request.job_id = store.create({tilekit::jobs::tile_generation_job, "demo", "v1", "alice"}).id;
//   request.source_key = "map.png";  request.project_slug = "demo";  request.version = {1, "draft"};
//   tilekit::filesystem_source source("uploads");  tilekit::filesystem_sink sink("tiles");
//   tilekit::jobs::job_record done = tilekit::jobs::run_tile_generation_job(store, source, sink, request);
//
// Generated from include/tilekit/jobs.hpp by tools/amalgamate.py. Do not edit: change include/tilekit/
// and rerun the script.

#include "tilekit.hpp"

// tilekit's jobs part: "generate tiles for version N of project X" as a tracked job. The job
// record (UUID, status, progress, result; JSON both ways) and its state machine, the job_store
// interface with an in-memory store, progress written per stage, the draft-version guard, and the
// tile-generation job itself. Standard library and nlohmann_json only; link `tilekit::jobs`
// (CMake), `tilekit_jobs_dep` (meson) or `pkg-config tilekit-jobs`. The durable SQLite store is
// <tilekit/sqlite.hpp>. The core never includes this.

// #include <tilekit/tilekit.hpp>
// #include <tilekit/jobs/job.hpp>
// The job record: what a service shows its users about a background job (queued, running with
// a percentage and a message, completed with a result, failed with the reason), and its JSON.

// #include <tilekit/error.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <optional>
#include <string>

#if __has_include(<sys/random.h>)
#include <sys/random.h>
#include <sys/types.h>
#endif

TILEKIT_NAMESPACE_BEGIN
namespace jobs {

enum class job_status { queued, running, completed, failed, cancelled };

inline const char* to_string(job_status status) noexcept {
    switch (status) {
        case job_status::queued: return "queued";
        case job_status::running: return "running";
        case job_status::completed: return "completed";
        case job_status::failed: return "failed";
        case job_status::cancelled: return "cancelled";
    }
    return "unknown";
}

inline job_status parse_job_status(const std::string& text) {
    for (job_status s : {job_status::queued, job_status::running, job_status::completed, job_status::failed,
                         job_status::cancelled})
        if (text == to_string(s)) return s;
    throw error(errc::invalid_argument, "unknown job status '" + text + "'");
}

inline bool is_terminal(job_status status) noexcept {
    return status == job_status::completed || status == job_status::failed || status == job_status::cancelled;
}

inline const char* const tile_generation_job = "tile_generation";

struct job_record {
    std::string id;                    // random UUID v4
    std::string job_type = tile_generation_job;
    job_status status = job_status::queued;
    int progress = 0;                  // 0..100, never decreases
    std::string message;
    nlohmann::json result;             // null until completed
    std::string error;                 // set when failed or cancelled
    std::string project_id;
    std::string version_id;
    std::string created_by;
    std::string created_at;            // UTC, ISO 8601 ("2026-11-28T23:07:16.123Z")
    std::optional<std::string> started_at;
    std::optional<std::string> completed_at;
};

// Thrown for a state change the state machine forbids (completing a failed job, progress over
// 100, ...): errc::illegal_transition; and for a second active job of a project version:
// errc::duplicate_job.
class job_state_error : public error {
public:
    explicit job_state_error(const std::string& message, errc code = errc::illegal_transition) : error(code, message) {}
};

// Thrown when a job id does not exist.
class job_not_found : public error {
public:
    explicit job_not_found(const std::string& id) : error(errc::not_found, "job '" + id + "' not found") {}
};

}  // namespace jobs
namespace detail {

// 16 bytes from the kernel's CSPRNG (getrandom, else /dev/urandom).
inline void random_bytes(unsigned char* out, std::size_t size) {
#if __has_include(<sys/random.h>)
    std::size_t got = 0;
    while (got < size) {
        const ssize_t n = getrandom(out + got, size - got, 0);
        if (n <= 0) break;
        got += static_cast<std::size_t>(n);
    }
    if (got == size) return;
#endif
    std::ifstream urandom("/dev/urandom", std::ios::binary);
    if (!urandom.read(reinterpret_cast<char*>(out), static_cast<std::streamsize>(size)))
        throw error(errc::io_error, "no cryptographic random source (getrandom, /dev/urandom)");
}

}  // namespace detail
namespace jobs {

// A random (version 4) UUID from a cryptographic source.
inline std::string new_job_id() {
    unsigned char b[16];
    detail::random_bytes(b, sizeof b);
    b[6] = static_cast<unsigned char>((b[6] & 0x0f) | 0x40);
    b[8] = static_cast<unsigned char>((b[8] & 0x3f) | 0x80);
    char text[37];
    std::snprintf(text, sizeof text, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
                  b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
    return text;
}

inline bool is_uuid(const std::string& text) {
    if (text.size() != 36) return false;
    for (std::size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? c != '-' : !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
            return false;
    }
    return true;
}

// Now, UTC, ISO 8601 with milliseconds.
inline std::string utc_now_iso8601() {
    const auto now = std::chrono::system_clock::now();
    const std::time_t seconds = std::chrono::system_clock::to_time_t(now);
    const auto millis =
        std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
    std::tm utc{};
    gmtime_r(&seconds, &utc);
    char text[32];
    std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &utc);
    char out[40];
    std::snprintf(out, sizeof out, "%s.%03dZ", text, static_cast<int>(millis));
    return out;
}

inline void to_json(nlohmann::json& j, const job_record& r) {
    const auto optional_text = [](const std::optional<std::string>& v) { return v ? nlohmann::json(*v) : nlohmann::json(); };
    j = nlohmann::json{{"id", r.id},
                       {"job_type", r.job_type},
                       {"status", to_string(r.status)},
                       {"progress", r.progress},
                       {"message", r.message},
                       {"result", r.result},
                       {"error", r.error.empty() ? nlohmann::json() : nlohmann::json(r.error)},
                       {"project_id", r.project_id},
                       {"version_id", r.version_id},
                       {"created_by", r.created_by},
                       {"created_at", r.created_at},
                       {"started_at", optional_text(r.started_at)},
                       {"completed_at", optional_text(r.completed_at)}};
}

inline void from_json(const nlohmann::json& j, job_record& r) {
    const auto optional_text = [&](const char* name) -> std::optional<std::string> {
        if (!j.contains(name) || j.at(name).is_null()) return std::nullopt;
        return j.at(name).get<std::string>();
    };
    j.at("id").get_to(r.id);
    j.at("job_type").get_to(r.job_type);
    r.status = parse_job_status(j.at("status").get<std::string>());
    j.at("progress").get_to(r.progress);
    if (r.progress < 0 || r.progress > 100) throw error(errc::invalid_argument, "job progress out of range in JSON");
    r.message = j.value("message", std::string());
    r.result = j.contains("result") ? j.at("result") : nlohmann::json();
    r.error = j.contains("error") && !j.at("error").is_null() ? j.at("error").get<std::string>() : std::string();
    r.project_id = j.value("project_id", std::string());
    r.version_id = j.value("version_id", std::string());
    r.created_by = j.value("created_by", std::string());
    r.created_at = j.value("created_at", std::string());
    r.started_at = optional_text("started_at");
    r.completed_at = optional_text("completed_at");
}

}  // namespace jobs
TILEKIT_NAMESPACE_END
// #include <tilekit/jobs/job_store.hpp>
// The job-store interface, and the state machine every store enforces:
//   queued -> running -> completed | failed | cancelled;   queued -> failed | cancelled
// Progress never goes down, terminal states stay terminal, and an illegal change throws
// job_state_error instead of corrupting the record. All methods are thread-safe.

// #include <tilekit/jobs/job.hpp>

#include <initializer_list>
#include <optional>
#include <string>
#include <vector>

TILEKIT_NAMESPACE_BEGIN
namespace jobs {

struct new_job {
    std::string job_type = tile_generation_job;
    std::string project_id;
    std::string version_id;
    std::string created_by;
    std::string message = "Queued";
};

class job_store {
public:
    virtual ~job_store() = default;

    // Creates a queued job with a fresh id. At most one queued or running job of a type exists
    // per (project, version): a second one is refused with job_state_error (errc::invalid_argument).
    virtual job_record create(const new_job& job) = 0;
    virtual std::optional<job_record> get(const std::string& id) const = 0;
    virtual std::vector<job_record> list_by_project(const std::string& project_id) const = 0;  // newest first
    virtual std::vector<job_record> list_by_status(job_status status) const = 0;               // oldest first

    virtual job_record start(const std::string& id, const std::string& message) = 0;  // queued -> running
    // running only; the same value updates the message; `progress` below the current value is ignored (never an error: progress
    // from several streams may arrive out of order), above 100 is an error.
    virtual job_record report_progress(const std::string& id, int progress, const std::string& message) = 0;
    virtual job_record complete(const std::string& id, const nlohmann::json& result, const std::string& message) = 0;
    virtual job_record fail(const std::string& id, const std::string& error) = 0;    // queued/running -> failed
    virtual job_record cancel(const std::string& id, const std::string& reason) = 0;  // queued/running -> cancelled
};

}  // namespace jobs
namespace detail {

inline void require_status(const jobs::job_record& job, std::initializer_list<jobs::job_status> allowed, const char* action) {
    for (jobs::job_status s : allowed)
        if (job.status == s) return;
    throw jobs::job_state_error(std::string("cannot ") + action + " job '" + job.id + "': it is " + to_string(job.status));
}

// Applies one transition to a record in memory; every store uses these so they agree exactly.
inline void apply_start(jobs::job_record& job, const std::string& message) {
    require_status(job, {jobs::job_status::queued}, "start");
    job.status = jobs::job_status::running;
    job.message = message;
    job.started_at = jobs::utc_now_iso8601();
}

inline void apply_progress(jobs::job_record& job, int progress, const std::string& message) {
    require_status(job, {jobs::job_status::running}, "report progress of");
    if (progress < 0 || progress > 100)
        throw jobs::job_state_error("progress must be 0..100, got " + std::to_string(progress));
    if (progress >= job.progress) {
        job.progress = progress;
        job.message = message;
    }
}

inline void apply_complete(jobs::job_record& job, const nlohmann::json& result, const std::string& message) {
    require_status(job, {jobs::job_status::running}, "complete");
    job.status = jobs::job_status::completed;
    job.progress = 100;
    job.message = message;
    job.result = result;
    job.completed_at = jobs::utc_now_iso8601();
}

inline void apply_end(jobs::job_record& job, jobs::job_status status, const std::string& reason) {
    if (status != jobs::job_status::failed && status != jobs::job_status::cancelled)
        throw error(errc::invalid_argument, "apply_end: status must be failed or cancelled");
    require_status(job, {jobs::job_status::queued, jobs::job_status::running}, status == jobs::job_status::failed ? "fail" : "cancel");
    job.status = status;
    job.error = reason;
    job.message = status == jobs::job_status::failed ? "Failed" : "Cancelled";
    job.completed_at = jobs::utc_now_iso8601();
}

inline jobs::job_record make_job(const jobs::new_job& job) {
    if (job.job_type.empty() || job.project_id.empty() || job.version_id.empty())
        throw error(errc::invalid_argument, "a job needs a job_type, a project_id and a version_id");
    jobs::job_record r;
    r.id = jobs::new_job_id();
    r.job_type = job.job_type;
    r.project_id = job.project_id;
    r.version_id = job.version_id;
    r.created_by = job.created_by;
    r.message = job.message;
    r.created_at = jobs::utc_now_iso8601();
    return r;
}

}  // namespace detail
namespace jobs {
}  // namespace jobs
TILEKIT_NAMESPACE_END
// #include <tilekit/jobs/memory_store.hpp>
// An in-memory job store: for tests and small embeddings that need no durability. One mutex
// guards everything, so every method is atomic with respect to every other; transitions go
// through the shared detail::apply_* helpers so this store and the SQLite one agree exactly.
// Jobs are never evicted: a long-lived embedding that creates many jobs should use a durable store.

// #include <tilekit/jobs/job_store.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

TILEKIT_NAMESPACE_BEGIN
namespace jobs {

class memory_job_store final : public job_store {
public:
    memory_job_store() = default;
    memory_job_store(const memory_job_store&) = delete;
    memory_job_store& operator=(const memory_job_store&) = delete;

    job_record create(const new_job& job) override {
        job_record record = detail::make_job(job);  // the random id is drawn outside the lock
        std::lock_guard<std::mutex> lock(mutex_);
        const version_key key = active_key(record);
        const auto active = active_.find(key);
        if (active != active_.end()) {
            const job_record& other = jobs_.at(active->second).record;
            throw job_state_error("a " + other.job_type + " job is already " + to_string(other.status) +
                                  " for project '" + other.project_id + "' version '" + other.version_id +
                                  "' (job '" + other.id + "')",
                                  errc::duplicate_job);
        }
        // A UUID v4 collision is astronomically unlikely, but overwriting a job would lose it silently.
        if (jobs_.count(record.id)) throw job_state_error("job id '" + record.id + "' already exists");
        jobs_.emplace(record.id, entry{record, next_sequence_++});
        active_.emplace(key, record.id);
        return record;
    }

    std::optional<job_record> get(const std::string& id) const override {
        std::lock_guard<std::mutex> lock(mutex_);
        const auto it = jobs_.find(id);
        if (it == jobs_.end()) return std::nullopt;
        return it->second.record;
    }

    std::vector<job_record> list_by_project(const std::string& project_id) const override {
        return list([&](const job_record& r) { return r.project_id == project_id; }, /*newest_first=*/true);
    }

    std::vector<job_record> list_by_status(job_status status) const override {
        return list([&](const job_record& r) { return r.status == status; }, /*newest_first=*/false);
    }

    job_record start(const std::string& id, const std::string& message) override {
        return update(id, [&](job_record& r) { detail::apply_start(r, message); });
    }

    job_record report_progress(const std::string& id, int progress, const std::string& message) override {
        return update(id, [&](job_record& r) { detail::apply_progress(r, progress, message); });
    }

    job_record complete(const std::string& id, const nlohmann::json& result, const std::string& message) override {
        return update(id, [&](job_record& r) { detail::apply_complete(r, result, message); });
    }

    job_record fail(const std::string& id, const std::string& error) override {
        return update(id, [&](job_record& r) { detail::apply_end(r, job_status::failed, error); });
    }

    job_record cancel(const std::string& id, const std::string& reason) override {
        return update(id, [&](job_record& r) { detail::apply_end(r, job_status::cancelled, reason); });
    }

private:
    struct entry {
        job_record record;
        std::uint64_t sequence;  // insertion order: breaks created_at ties (timestamps are per millisecond)
    };

    // The one-active-job rule is per (type, project, version).
    using version_key = std::tuple<std::string, std::string, std::string>;
    static version_key active_key(const job_record& r) { return {r.job_type, r.project_id, r.version_id}; }

    // Applies a transition to a copy and stores it only if the helper did not throw, so an illegal
    // change never leaves a half-updated record behind.
    template <class Apply>
    job_record update(const std::string& id, Apply&& apply) {
        std::lock_guard<std::mutex> lock(mutex_);
        const auto it = jobs_.find(id);
        if (it == jobs_.end()) throw job_not_found(id);
        job_record changed = it->second.record;
        apply(changed);
        if (is_terminal(changed.status) && !is_terminal(it->second.record.status)) {
            const auto active = active_.find(active_key(changed));
            if (active != active_.end() && active->second == id) active_.erase(active);
        }
        it->second.record = changed;
        return changed;
    }

    template <class Match>
    std::vector<job_record> list(Match&& match, bool newest_first) const {
        std::lock_guard<std::mutex> lock(mutex_);
        std::vector<const entry*> found;
        for (const auto& item : jobs_)
            if (match(item.second.record)) found.push_back(&item.second);
        // ISO 8601 UTC timestamps of one fixed width sort as text.
        std::sort(found.begin(), found.end(), [&](const entry* a, const entry* b) {
            const int order = a->record.created_at.compare(b->record.created_at);
            if (order != 0) return newest_first ? order > 0 : order < 0;
            return newest_first ? a->sequence > b->sequence : a->sequence < b->sequence;
        });
        std::vector<job_record> out;
        out.reserve(found.size());
        for (const entry* e : found) out.push_back(e->record);
        return out;
    }

    mutable std::mutex mutex_;
    std::unordered_map<std::string, entry> jobs_;
    std::map<version_key, std::string> active_;  // -> id of the queued or running job
    std::uint64_t next_sequence_ = 0;
};

}  // namespace jobs
TILEKIT_NAMESPACE_END
// #include <tilekit/jobs/version_guard.hpp>
// The draft-version guard: only a draft version may (re)generate its tiles, so a published or
// archived pyramid is never overwritten. Apply it before a job is created and again when the
// job starts, because the version may have been published in between.

// #include <tilekit/error.hpp>

#include <string>
#include <utility>

TILEKIT_NAMESPACE_BEGIN
namespace jobs {

inline const char* const draft_version_status = "draft";

// What the service knows about the version a request is for.
struct version_info {
    int number = 0;
    std::string status;  // "draft", "published", "archived", ... (compared exactly, case-sensitive)
};

// A distinct type so a service can map it to its own response (for example HTTP 409), while
// what() keeps the sentence the service this replaces showed its users.
class version_not_draft : public error {
public:
    explicit version_not_draft(const version_info& version)
        : error(errc::not_a_draft, "Can only generate tiles for draft versions: version " +
                                            std::to_string(version.number) + " is " +
                                            (version.status.empty() ? "of unknown status" : "'" + version.status + "'")),
          version_(version) {}

    const version_info& version() const noexcept { return version_; }

private:
    version_info version_;
};

inline bool is_draft(const version_info& version) noexcept { return version.status == draft_version_status; }

inline void require_draft(const version_info& version) {
    if (!is_draft(version)) throw version_not_draft(version);
}

}  // namespace jobs
TILEKIT_NAMESPACE_END
// #include <tilekit/jobs/progress.hpp>
// Job progress as the service this replaces showed it: each stage owns a share of the bar
//   download 0-10, generating tiles 10-80, uploading 80-95, finalising 95-100
// and the store is written from a background thread at most every `interval` (and only when
// the whole percent or the message changed), never per tile, so a slow store cannot slow the
// tiler. Because tilekit uploads while it tiles, "Generating tiles" counts tiles handed to the
// sink, whose queue is bounded: the bar follows the slower of the two streams, and the
// "Uploading" share covers only the uploads still in flight when the last tile is made.

// #include <tilekit/jobs/job_store.hpp>
// #include <tilekit/progress.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

TILEKIT_NAMESPACE_BEGIN
namespace jobs {

struct stage {
    int begin;
    int end;
};

namespace stages {
constexpr stage download{0, 10};
constexpr stage tiling{10, 80};
constexpr stage upload{80, 95};
constexpr stage finalize{95, 100};
}  // namespace stages

// The bar position of `fraction` (0..1) of a stage.
inline int stage_percent(const stage& s, double fraction) {
    fraction = std::clamp(fraction, 0.0, 1.0);
    return s.begin + static_cast<int>((s.end - s.begin) * fraction);
}

// Holds the latest percent and message and writes them to the store from its own thread.
// If the store refuses (the job was cancelled or failed by someone else), `on_refused` runs once
// so the caller can stop its work.
class progress_writer {
public:
    progress_writer(job_store& store, std::string job_id, std::chrono::milliseconds interval,
                    std::function<void()> on_refused = {})
        : store_(store), job_id_(std::move(job_id)), interval_(interval), on_refused_(std::move(on_refused)) {
        thread_ = std::thread([this] { run(); });
    }

    progress_writer(const progress_writer&) = delete;
    progress_writer& operator=(const progress_writer&) = delete;

    ~progress_writer() { stop(); }

    // Cheap and thread-safe; a lower percent than already set is ignored (monotonic bar).
    // A milestone (the start of a stage) is always written, in order, even when later values
    // arrive before the writer wakes; other values are coalesced into the latest.
    void set(int percent, const std::string& message, bool milestone = false) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (percent < percent_) return;
        if (percent == percent_ && message == message_) return;
        percent_ = percent;
        message_ = message;
        dirty_ = true;
        if (milestone) milestones_.emplace_back(percent, message);
    }

    // Writes what is pending now and stops the thread.
    void stop() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (stopping_) return;
            stopping_ = true;
        }
        wake_.notify_all();
        thread_.join();
        write_pending();
    }

    std::size_t writes() const noexcept { return writes_.load(); }

private:
    void run() {
        std::unique_lock<std::mutex> lock(mutex_);
        while (!stopping_) {
            wake_.wait_for(lock, interval_, [this] { return stopping_; });
            if (stopping_) break;
            lock.unlock();
            write_pending();
            lock.lock();
        }
    }

    void write_pending() {
        std::vector<std::pair<int, std::string>> batch;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (!dirty_ || refused_) return;
            dirty_ = false;
            batch.assign(milestones_.begin(), milestones_.end());
            milestones_.clear();
            if (batch.empty() || batch.back().first != percent_ || batch.back().second != message_)
                batch.emplace_back(percent_, message_);
        }
        try {
            for (const auto& [percent, message] : batch) {
                store_.report_progress(job_id_, percent, message);
                ++writes_;
            }
        } catch (const error&) {
            bool first = false;
            {
                std::lock_guard<std::mutex> lock(mutex_);
                first = !refused_;
                refused_ = true;
            }
            if (first && on_refused_) on_refused_();
        }
    }

    job_store& store_;
    const std::string job_id_;
    const std::chrono::milliseconds interval_;
    std::function<void()> on_refused_;
    std::mutex mutex_;
    std::condition_variable wake_;
    int percent_ = -1;
    std::string message_;
    std::vector<std::pair<int, std::string>> milestones_;
    bool dirty_ = false;
    bool refused_ = false;
    bool stopping_ = false;
    std::atomic<std::size_t> writes_{0};
    std::thread thread_;
};

}  // namespace jobs
TILEKIT_NAMESPACE_END
// #include <tilekit/jobs/tile_generation.hpp>
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

// #include <tilekit/jobs/job_store.hpp>
// #include <tilekit/jobs/progress.hpp>
// #include <tilekit/jobs/version_guard.hpp>
// #include <tilekit/key.hpp>
// #include <tilekit/metadata.hpp>
// #include <tilekit/sink.hpp>
// #include <tilekit/source.hpp>
// #include <tilekit/tile_file.hpp>

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
