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
//   request.source_key = "map.png";  request.project_slug = "demo";  request.version = 1;
//   tilekit::jobs::new_job job;  job.project_id = "demo";  job.version_id = "v1";  job.payload = tilekit::jobs::to_payload(request);
//   store.enqueue(job);  tilekit::filesystem_source source("uploads");  tilekit::filesystem_sink sink("tiles");
//   auto draft = [](const tilekit::jobs::job_record&) { return tilekit::jobs::version_info{1, "draft"}; };
//   auto done = tilekit::jobs::run_next_job(store, {{tilekit::jobs::tile_generation_job, tilekit::jobs::tile_generation_handler(source, sink, draft)}});
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
// a percentage and a message, completed with a result, failed with the reason), what a worker
// needs to run it (its payload), its attempts and, while it runs, the lease a worker holds on it;
// and its JSON. The lease's fencing token is not part of the record: only the worker holding the
// lease knows it (see job_lease in job_store.hpp).

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

// Attempts a job gets unless new_job::max_attempts says otherwise: the first run and four retries.
constexpr int default_max_attempts = 5;

struct job_record {
    std::string id;                    // random UUID v4
    std::string job_type = tile_generation_job;
    job_status status = job_status::queued;
    int progress = 0;                  // 0..100, never decreases within an attempt
    std::string message;
    nlohmann::json result;             // null until completed
    // Set when failed or cancelled; while a job waits for a retry (queued, attempt > 0) it keeps
    // the error of the attempt that failed.
    std::string error;
    std::string project_id;
    std::string version_id;
    std::string created_by;
    std::string created_at;            // UTC, ISO 8601 ("2026-11-28T23:07:16.123Z")
    std::optional<std::string> started_at;    // the start of the latest attempt
    std::optional<std::string> completed_at;
    nlohmann::json payload = nlohmann::json::object();  // what a worker needs to run the job
    int attempt = 0;                   // attempts started so far (a claim starts one)
    int max_attempts = default_max_attempts;
    std::string run_at;                // a queued job is not claimed before this time (UTC, ISO 8601)
    std::optional<std::string> worker;            // while running: the worker holding the lease
    std::optional<std::string> lease_expires_at;  // while running: when the lease ends unless renewed
    int releases = 0;                  // hand-backs in a row since the last attempt that counted
    std::chrono::milliseconds timeout{0};  // run-time limit of an attempt; 0: the worker's
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

// Thrown to a worker whose write is fenced off: its lease expired and the job was rescued, taken
// over by another worker or ended. Its write changed nothing; the worker must stop the job.
class lease_lost : public error {
public:
    explicit lease_lost(const std::string& message) : error(errc::lease_lost, message) {}
};

// Thrown to the worker holding a job that was cancelled (by cancel()): stop and write nothing.
class job_cancelled : public error {
public:
    explicit job_cancelled(const std::string& id, const std::string& reason)
        : error(errc::cancelled, "job '" + id + "' was cancelled" + (reason.empty() ? "" : ": " + reason)) {}
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

// A time as UTC ISO 8601 with milliseconds ("2026-11-28T23:07:16.123Z"): one fixed width, so
// such texts sort (and compare) in time order.
inline std::string format_utc(std::chrono::system_clock::time_point time) {
    const auto millis_since_epoch = std::chrono::duration_cast<std::chrono::milliseconds>(time.time_since_epoch()).count();
    const long long seconds_part = millis_since_epoch >= 0 ? millis_since_epoch / 1000 : (millis_since_epoch - 999) / 1000;
    const std::time_t seconds = static_cast<std::time_t>(seconds_part);
    const int millis = static_cast<int>(millis_since_epoch - seconds_part * 1000);
    std::tm utc{};
    gmtime_r(&seconds, &utc);
    char text[32];
    std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &utc);
    char out[40];
    std::snprintf(out, sizeof out, "%s.%03dZ", text, millis);
    return out;
}

// Now, UTC, ISO 8601 with milliseconds.
inline std::string utc_now_iso8601() { return format_utc(std::chrono::system_clock::now()); }

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
                       {"completed_at", optional_text(r.completed_at)},
                       {"payload", r.payload},
                       {"attempt", r.attempt},
                       {"max_attempts", r.max_attempts},
                       {"run_at", r.run_at},
                       {"worker", optional_text(r.worker)},
                       {"lease_expires_at", optional_text(r.lease_expires_at)},
                       {"releases", r.releases},
                       {"timeout_ms", r.timeout.count()}};
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
    r.payload = j.contains("payload") && !j.at("payload").is_null() ? j.at("payload") : nlohmann::json::object();
    r.attempt = j.value("attempt", 0);
    r.max_attempts = j.value("max_attempts", default_max_attempts);
    if (r.attempt < 0 || r.max_attempts < 1) throw error(errc::invalid_argument, "job attempts out of range in JSON");
    r.run_at = j.value("run_at", r.created_at);
    r.worker = optional_text("worker");
    r.lease_expires_at = optional_text("lease_expires_at");
    r.releases = j.value("releases", 0);
    r.timeout = std::chrono::milliseconds(j.value("timeout_ms", std::int64_t{0}));
    if (r.releases < 0 || r.timeout.count() < 0) throw error(errc::invalid_argument, "job releases or timeout out of range in JSON");
}

}  // namespace jobs
TILEKIT_NAMESPACE_END
// #include <tilekit/jobs/job_store.hpp>
// The job-store interface: the store is the queue. Any number of worker processes, on any number
// of hosts where the store allows it, share one store; a job is claimed by one worker at a time
// under a lease that the worker renews while it runs.
//
//   enqueue ──▶ queued ──claim──▶ running ──complete──▶ completed
//                 ▲  ▲              │ │ │
//                 │  └─fail(retryable, attempts left): queued again at run_at = now + backoff
//                 │     rescue (lease expired, attempts left): the same
//                 └────release (a worker shutting down hands it back): queued now, attempt not used
//              running ──fail(permanent, or no attempts left) / rescue (no attempts left)──▶ failed
//              queued | running ──cancel──▶ cancelled
//
// Fencing: claim() returns a job_lease with a fresh token. renew, report_progress, complete, fail
// and release name that lease; the store applies them only while the job is running under that
// same token. Otherwise nothing changes and the worker gets lease_lost (its lease expired and the
// job was rescued, taken over or ended) or job_cancelled (someone cancelled it). So a worker that
// lost its job can never complete it, fail it or move its progress.
//
// Progress never goes down within an attempt, terminal states stay terminal, and an illegal change
// throws instead of corrupting the record. All methods are thread-safe. The memory and SQLite
// stores apply every change through the detail::apply_* helpers below, so they agree exactly; the
// PostgreSQL store does the same in SQL, and tests/job_store_conformance.hpp holds all three to it.

// #include <tilekit/jobs/job.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <condition_variable>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <vector>

TILEKIT_NAMESPACE_BEGIN
namespace jobs {

struct new_job {
    std::string job_type = tile_generation_job;
    std::string project_id;
    std::string version_id;
    std::string created_by;
    nlohmann::json payload = nlohmann::json::object();  // must be a JSON object
    int max_attempts = default_max_attempts;             // >= 1
    std::chrono::milliseconds delay{0};                  // run_at = now + delay
    std::string message = "Queued";
    // Run-time limit of one attempt (0: the worker's worker_options::job_timeout). A handler
    // still running past it is cancelled and the attempt fails as timed out.
    std::chrono::milliseconds timeout{0};
};

// Which jobs a listing, a count or a bulk change is about; an empty field matches every job.
struct job_filter {
    std::optional<std::string> project_id;
    std::optional<std::string> version_id;
    std::optional<job_status> status;
};

// Where a page of a listing ends: listings are newest first, ordered by (created_at, id) both
// descending, and the next page starts after this key (keyset pagination: a page costs the same
// however deep it is, and jobs created meanwhile never shift it).
struct job_page_key {
    std::string created_at;
    std::string id;
};

struct job_page {
    std::vector<job_record> jobs;
    std::optional<job_page_key> next;  // set when there may be more
};

// The cursor as text ("<created_at>_<id>"), for a URL or a command line, and back (nullopt when
// it is not one).
inline std::string to_cursor(const job_page_key& key) { return key.created_at + "_" + key.id; }
inline std::optional<job_page_key> parse_cursor(const std::string& text) {
    const std::size_t split = text.rfind('_');
    if (split == std::string::npos || !is_uuid(text.substr(split + 1)) || split != 24 || text[23] != 'Z') return std::nullopt;
    return job_page_key{text.substr(0, split), text.substr(split + 1)};
}

// What retention keeps of finished (completed, failed, cancelled) jobs: those that ended within
// max_age, and of those at most keep_per_version per (project, version), the newest.
struct retention_policy {
    std::chrono::milliseconds max_age{std::chrono::hours(24 * 14)};
    std::optional<std::int64_t> keep_per_version;  // none: no cap
};

// The queue at a glance (job_store::stats). Ages and latencies by the store's clock.
struct queue_stats {
    std::int64_t queued = 0, running = 0, completed = 0, failed = 0, cancelled = 0;
    std::int64_t runnable = 0;  // queued with run_at reached
    std::optional<std::chrono::milliseconds> oldest_runnable_age;  // now - the earliest run_at of a runnable job
    std::chrono::milliseconds window{std::chrono::hours(1)};
    std::int64_t completed_in_window = 0, failed_in_window = 0;  // by completed_at
    // Attempts started in the window: started_at - run_at (when the attempt became runnable).
    std::int64_t started_in_window = 0;
    std::optional<std::chrono::milliseconds> pickup_latency_avg, pickup_latency_max;

    // failed / (completed + failed) in the window; nullopt when none ended.
    std::optional<double> failure_rate() const {
        const std::int64_t ended = completed_in_window + failed_in_window;
        if (ended == 0) return std::nullopt;
        return static_cast<double>(failed_in_window) / static_cast<double>(ended);
    }
};

// What a worker holds while it runs a job. Only the worker knows the token.
struct job_lease {
    std::string job_id;
    std::string worker_id;
    std::string token;                  // fresh for every claim
    int attempt = 0;                    // the attempt this lease is for (1 = first run)
    std::chrono::milliseconds duration{30000};  // every fenced write extends the lease by this much
    // This process's own bound for the lease: the steady-clock time at which the last successful
    // write was sent, plus `duration`. The store's lease ends no earlier, so a worker that has not
    // renewed by then must stop: the job may be rescued and run elsewhere.
    std::chrono::steady_clock::time_point valid_until{};
};

struct claimed_job {
    job_record job;
    job_lease lease;
};

// What complete_and_claim() did: the completed job, and the next one if there was one to claim.
struct completion_and_next {
    job_record completed;
    std::optional<claimed_job> next;
};

// Whether a failed attempt may be tried again. Bad input (a corrupt image, a version that is not a
// draft, a bad slug) is permanent; a storage outage, a lost lease or an interrupted worker is not.
enum class failure_kind { retryable, permanent };

// Exponential backoff with full jitter: after attempt n fails, the next one waits a uniformly random
// time in [0, min(cap, base * 2^(n-1))]. Full jitter spreads the retries of many jobs that failed
// together (a storage outage) instead of sending them back in one wave. With the defaults the
// windows are 5 s, 10 s, 20 s, 40 s, ..., at most 10 min.
struct retry_policy {
    std::chrono::milliseconds base{5000};
    std::chrono::milliseconds cap{600000};
    bool jitter = true;  // false: wait the whole window (deterministic; for tests and tuning)
    // Hand-backs (release) in a row that are free: the next one counts as a failed attempt, so a
    // job longer than the time between a deployment's restarts is not handed back forever.
    int max_releases = 3;

    std::chrono::milliseconds window(int failed_attempt) const {
        const int doublings = std::clamp(failed_attempt - 1, 0, 40);
        const double scaled = static_cast<double>(base.count()) * static_cast<double>(std::uint64_t{1} << doublings);
        return std::chrono::milliseconds(static_cast<std::int64_t>(std::min(scaled, static_cast<double>(cap.count()))));
    }

    std::chrono::milliseconds delay_after(int failed_attempt) const {
        const std::chrono::milliseconds limit = window(failed_attempt);
        if (!jitter || limit.count() <= 0) return limit;
        thread_local std::mt19937_64 random(std::random_device{}());
        return std::chrono::milliseconds(std::uniform_int_distribution<std::int64_t>(0, limit.count())(random));
    }
};

// A wake-up for idle workers: stores call notify() when a job may have become runnable (enqueued,
// retried, released, rescued; the PostgreSQL store also on NOTIFY from other processes). Take a
// ticket before looking for work and wait with it, so a notify in between is never missed.
// notify() wakes one waiting thread, not all: a job needs one claimer, and a thread that claimed
// one passes the wake-up on (worker_pool does), so a burst brings up as many threads as it has
// jobs while a single job costs one claim, not one per idle thread.
class job_wakeup {
public:
    std::uint64_t ticket() const {
        std::lock_guard<std::mutex> lock(mutex_);
        return generation_;
    }
    // Returns at once if anything was notified since `ticket` was taken; else waits up to `timeout`.
    void wait(std::uint64_t ticket, std::chrono::milliseconds timeout) const {
        std::unique_lock<std::mutex> lock(mutex_);
        changed_.wait_for(lock, timeout, [&] { return generation_ != ticket; });
    }
    void notify() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            ++generation_;
        }
        changed_.notify_one();
    }
    // Every waiting thread (a pool stopping).
    void notify_all() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            ++generation_;
        }
        changed_.notify_all();
    }

private:
    mutable std::mutex mutex_;
    mutable std::condition_variable changed_;
    std::uint64_t generation_ = 0;
};

class job_store {
public:
    virtual ~job_store() = default;

    // Creates a queued job with a fresh id. At most one queued or running job of a type exists per
    // (project, version), a job waiting for a retry included: a second one is refused with
    // job_state_error (errc::duplicate_job).
    virtual job_record enqueue(const new_job& job) = 0;
    virtual std::optional<job_record> get(const std::string& id) const = 0;
    virtual std::vector<job_record> list_by_project(const std::string& project_id) const = 0;  // newest first
    virtual std::vector<job_record> list_by_status(job_status status) const = 0;               // oldest first

    // Atomically takes the next runnable job (queued, run_at reached, of one of `job_types`; the
    // earliest run_at first, then the oldest) for `worker_id` and leases it for `lease_duration`:
    // two callers never get the same job. Starts an attempt. nullopt when nothing is runnable.
    virtual std::optional<claimed_job> claim(const std::string& worker_id, const std::vector<std::string>& job_types,
                                             std::chrono::milliseconds lease_duration) = 0;

    // The fenced writes (see the top of this file). Each one that keeps the job running also
    // extends the lease by lease.duration and moves lease.valid_until.
    virtual job_record renew(job_lease& lease) = 0;
    // `progress` below the current value is ignored (progress from several streams may arrive out
    // of order), above 100 is an error.
    virtual job_record report_progress(job_lease& lease, int progress, const std::string& message) = 0;
    virtual job_record complete(job_lease& lease, const nlohmann::json& result, const std::string& message) = 0;
    // complete(), then claim() of the next runnable job for the same worker: one step where the
    // store can make it one round trip and one commit (PostgreSQL), which halves a busy worker's
    // commits per job. The completion is fenced exactly like complete(); when it is fenced off,
    // the exception is thrown and nothing is claimed. This default makes the two calls; when the
    // claim fails (the store went away in between) it reports no next job, and the caller's next
    // claim() meets the error instead, so a completion that happened is never reported as failed.
    virtual completion_and_next complete_and_claim(job_lease& lease, const nlohmann::json& result, const std::string& message,
                                                   const std::string& worker_id, const std::vector<std::string>& job_types,
                                                   std::chrono::milliseconds lease_duration) {
        completion_and_next out{complete(lease, result, message), std::nullopt};
        try {
            out.next = claim(worker_id, job_types, lease_duration);
        } catch (const std::exception&) {
        }
        return out;
    }
    // retryable with attempts left: queued again after retry_policy().delay_after(attempt), keeping
    // `error`; otherwise failed with `error`.
    virtual job_record fail(job_lease& lease, const std::string& error, failure_kind kind) = 0;
    // Hands a running job back (a worker shutting down): queued, runnable now, and the attempt it
    // was on does not count (max_attempts grows by one; the attempt number is not reused), for
    // retry_policy::max_releases hand-backs in a row; the one after counts as a failed attempt.
    virtual job_record release(job_lease& lease, const std::string& reason) = 0;

    // Not fenced: for the service and the operator. queued | running -> cancelled; the worker
    // running it learns at its next write (job_cancelled).
    virtual job_record cancel(const std::string& id, const std::string& reason) = 0;
    // Every running job whose lease has expired goes back to queued for another attempt (after the
    // backoff), or to failed as interrupted when its attempts are used up. Returns the jobs it
    // changed. Safe to call from many processes at once; workers call it periodically.
    virtual std::vector<job_record> rescue_expired() = 0;

    // ---- for operators (not fenced)

    // A page of the jobs `filter` matches, newest first, at most `limit` (1..1000) of them,
    // after `after` (the previous page's next).
    virtual job_page list_jobs(const job_filter& filter, std::size_t limit,
                               const std::optional<job_page_key>& after = std::nullopt) const = 0;
    // How many jobs `filter` matches (a COUNT, not a listing).
    virtual std::int64_t count_jobs(const job_filter& filter) const = 0;
    // failed | cancelled -> queued, runnable now, with as many attempts again as it had (the
    // attempt number goes on: max_attempts grows) and its hand-backs forgotten; the last error is
    // kept. Refused with job_state_error
    // (errc::duplicate_job) while the version has another active job of the type.
    virtual job_record retry(const std::string& id, const std::string& reason) = 0;
    // Counts by status, the oldest runnable job's wait, and over the last `window` the failure
    // rate and the pickup latency.
    virtual queue_stats stats(std::chrono::milliseconds window) const = 0;

    // Retention: deletes the finished jobs `policy` does not keep and returns how many; with
    // dry_run deletes nothing and returns how many it would. Deletes in batches of `batch` (one
    // short transaction each), so the workers' maintenance never holds a long lock.
    std::int64_t prune(const retention_policy& policy, bool dry_run = false, std::int64_t batch = 1000) {
        if (policy.max_age.count() < 0) throw error(errc::invalid_argument, "retention: max_age cannot be negative");
        if (policy.keep_per_version && *policy.keep_per_version < 0)
            throw error(errc::invalid_argument, "retention: keep_per_version cannot be negative");
        if (batch < 1) throw error(errc::invalid_argument, "retention: batch must be >= 1");
        const std::int64_t keep = policy.keep_per_version.value_or(std::numeric_limits<std::int64_t>::max());
        if (dry_run) return prune_finished(policy.max_age, keep, 0);
        std::int64_t total = 0;
        for (;;) {
            const std::int64_t n = prune_finished(policy.max_age, keep, batch);
            total += n;
            if (n < batch) return total;
        }
    }

    // Bulk verbs: cancel (queued | running) or retry (failed | cancelled) every job `filter`
    // matches, page by page; jobs another caller changed meanwhile are skipped. Returns the
    // changed jobs.
    std::vector<job_record> cancel_all(const job_filter& filter, const std::string& reason) {
        return change_all(filter, {job_status::queued, job_status::running},
                          [&](const std::string& id) { return cancel(id, reason); });
    }
    std::vector<job_record> retry_all(const job_filter& filter, const std::string& reason) {
        return change_all(filter, {job_status::failed, job_status::cancelled},
                          [&](const std::string& id) { return retry(id, reason); });
    }

    const retry_policy& retries() const noexcept { return retry_; }
    void set_retry_policy(const retry_policy& policy) { retry_ = policy; }  // before sharing the store

    job_wakeup& wakeup() noexcept { return wakeup_; }

protected:
    // The store's part of prune(): deletes at most `limit` finished jobs that ended more than
    // `max_age` ago (by the store's clock) or rank after the newest `keep_per_version` finished
    // ones of their (project, version) (ranked by completed_at, then id); returns how many.
    // limit 0: deletes nothing and returns how many it would delete.
    virtual std::int64_t prune_finished(std::chrono::milliseconds max_age, std::int64_t keep_per_version,
                                        std::int64_t limit) = 0;

private:
    template <class Change>
    std::vector<job_record> change_all(job_filter filter, std::initializer_list<job_status> statuses, Change&& change) {
        std::vector<job_record> changed;
        for (job_status status : statuses) {
            if (filter.status && *filter.status != status) continue;
            job_filter one = filter;
            one.status = status;
            // The cursor is on (created_at, id), not on the status, so the jobs changed on one
            // page do not shift the next; jobs that refuse (a duplicate, a race) are skipped.
            std::optional<job_page_key> after;
            for (;;) {
                const job_page page = list_jobs(one, 100, after);
                for (const job_record& job : page.jobs) {
                    try {
                        changed.push_back(change(job.id));
                    } catch (const job_state_error&) {
                    } catch (const job_not_found&) {
                    }
                }
                if (!page.next || page.jobs.empty()) break;
                after = page.next;
            }
        }
        return changed;
    }

    retry_policy retry_;
    job_wakeup wakeup_;
};

}  // namespace jobs
namespace detail {

inline void require_status(const jobs::job_record& job, std::initializer_list<jobs::job_status> allowed, const char* action) {
    for (jobs::job_status s : allowed)
        if (job.status == s) return;
    throw jobs::job_state_error(std::string("cannot ") + action + " job '" + job.id + "': it is " + to_string(job.status));
}

using job_clock = std::chrono::system_clock;

// Wall time that moves only at the steady clock's pace: the wall time when it was made plus the
// steady time since. Within one process, lease ends and run_at measured by it are immune to steps
// of the wall clock (an NTP correction, a resumed VM): a step forward does not expire every lease
// at once, a step back does not hold a dead worker's job. memory_job_store keeps its times by it.
class steady_wall_clock {
public:
    job_clock::time_point now() const {
        return origin_wall_ + std::chrono::duration_cast<job_clock::duration>(std::chrono::steady_clock::now() - origin_steady_);
    }

private:
    job_clock::time_point origin_wall_ = job_clock::now();
    std::chrono::steady_clock::time_point origin_steady_ = std::chrono::steady_clock::now();
};

// What a store keeps beside the record for the queue: the token of the current lease (empty
// unless running) and the lease's end.
struct job_queue_state {
    std::string token;
    job_clock::time_point lease_expires{};
    job_clock::time_point run_at{};
};

// The fence: the write is for the lease currently held on a running job, else lease_lost or
// job_cancelled. Called inside the store's transaction, before anything changes.
inline void check_lease(const jobs::job_record& job, const job_queue_state& state, const jobs::job_lease& lease) {
    if (job.status == jobs::job_status::running && !state.token.empty() && state.token == lease.token) return;
    if (job.status == jobs::job_status::cancelled) throw jobs::job_cancelled(job.id, job.error);
    std::string now = "it is " + std::string(to_string(job.status));
    if (job.status == jobs::job_status::running || job.status == jobs::job_status::queued)
        now += " in attempt " + std::to_string(job.attempt) + (job.worker ? " held by worker " + *job.worker : "");
    throw jobs::lease_lost("job '" + job.id + "': the lease of worker " + lease.worker_id + " on attempt " +
                           std::to_string(lease.attempt) + " is no longer valid (" + now + ")");
}

inline void clear_lease(jobs::job_record& job, job_queue_state& state) {
    job.worker.reset();
    job.lease_expires_at.reset();
    state.token.clear();
    state.lease_expires = {};
}

inline void extend_lease(jobs::job_record& job, job_queue_state& state, const jobs::job_lease& lease, job_clock::time_point now) {
    state.lease_expires = now + lease.duration;
    job.lease_expires_at = jobs::format_utc(state.lease_expires);
}

inline void set_run_at(jobs::job_record& job, job_queue_state& state, job_clock::time_point when) {
    state.run_at = when;
    job.run_at = jobs::format_utc(when);
}

inline std::string new_lease_token() { return jobs::new_job_id(); }

inline void check_page_limit(std::size_t limit) {
    if (limit < 1 || limit > 1000) throw error(errc::invalid_argument, "a page holds 1..1000 jobs, not " + std::to_string(limit));
}

inline bool matches(const jobs::job_filter& filter, const jobs::job_record& job) {
    return (!filter.project_id || *filter.project_id == job.project_id) &&
           (!filter.version_id || *filter.version_id == job.version_id) && (!filter.status || *filter.status == job.status);
}

// Whether `job` comes after `key` in a listing (newest first: an older (created_at, id)).
inline bool before_key(const jobs::job_record& job, const jobs::job_page_key& key) {
    return job.created_at != key.created_at ? job.created_at < key.created_at : job.id < key.id;
}

// "2026-11-28T23:07:16.123Z" (jobs::format_utc's form) -> milliseconds since the epoch.
inline std::int64_t utc_millis(const std::string& text) {
    std::tm tm{};
    int millis = 0;
    if (std::sscanf(text.c_str(), "%d-%d-%dT%d:%d:%d.%dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min,
                    &tm.tm_sec, &millis) < 6)
        return 0;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return static_cast<std::int64_t>(timegm(&tm)) * 1000 + millis;
}

inline jobs::job_record make_job(const jobs::new_job& job, job_queue_state& state, job_clock::time_point now) {
    if (job.job_type.empty() || job.project_id.empty() || job.version_id.empty())
        throw error(errc::invalid_argument, "a job needs a job_type, a project_id and a version_id");
    if (job.max_attempts < 1 || job.max_attempts > 1000)
        throw error(errc::invalid_argument, "max_attempts must be 1..1000, got " + std::to_string(job.max_attempts));
    if (!job.payload.is_object()) throw error(errc::invalid_argument, "a job's payload must be a JSON object");
    if (job.delay.count() < 0) throw error(errc::invalid_argument, "a job's delay cannot be negative");
    jobs::job_record r;
    r.id = jobs::new_job_id();
    r.job_type = job.job_type;
    r.project_id = job.project_id;
    r.version_id = job.version_id;
    r.created_by = job.created_by;
    r.message = job.message;
    r.created_at = jobs::format_utc(now);
    r.payload = job.payload;
    r.max_attempts = job.max_attempts;
    if (job.timeout.count() < 0) throw error(errc::invalid_argument, "a job's timeout cannot be negative");
    r.timeout = job.timeout;
    set_run_at(r, state, now + job.delay);
    state.token.clear();
    return r;
}

// queued -> running, for a claim. The caller has checked that the job is runnable.
inline void apply_claim(jobs::job_record& job, job_queue_state& state, jobs::job_lease& lease, job_clock::time_point now) {
    require_status(job, {jobs::job_status::queued}, "claim");
    job.status = jobs::job_status::running;
    job.attempt += 1;
    job.progress = 0;
    job.message = "Starting (attempt " + std::to_string(job.attempt) + " of " + std::to_string(job.max_attempts) + ")";
    job.started_at = jobs::format_utc(now);
    job.worker = lease.worker_id;
    state.token = new_lease_token();
    lease.job_id = job.id;
    lease.token = state.token;
    lease.attempt = job.attempt;
    extend_lease(job, state, lease, now);
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

inline void apply_complete(jobs::job_record& job, job_queue_state& state, const nlohmann::json& result,
                           const std::string& message, job_clock::time_point now) {
    require_status(job, {jobs::job_status::running}, "complete");
    job.status = jobs::job_status::completed;
    job.progress = 100;
    job.message = message;
    job.result = result;
    job.error.clear();
    job.completed_at = jobs::format_utc(now);
    clear_lease(job, state);
}

// queued | running -> failed | cancelled.
inline void apply_end(jobs::job_record& job, job_queue_state& state, jobs::job_status status, const std::string& reason,
                      job_clock::time_point now) {
    if (status != jobs::job_status::failed && status != jobs::job_status::cancelled)
        throw error(errc::invalid_argument, "apply_end: status must be failed or cancelled");
    require_status(job, {jobs::job_status::queued, jobs::job_status::running}, status == jobs::job_status::failed ? "fail" : "cancel");
    job.status = status;
    job.error = reason;
    job.message = status == jobs::job_status::failed ? "Failed" : "Cancelled";
    job.completed_at = jobs::format_utc(now);
    clear_lease(job, state);
}

// running -> queued at `when`, keeping `error` as the last one.
inline void apply_requeue(jobs::job_record& job, job_queue_state& state, const std::string& error, const std::string& message,
                          job_clock::time_point when) {
    require_status(job, {jobs::job_status::running}, "requeue");
    job.status = jobs::job_status::queued;
    job.progress = 0;
    job.error = error;
    job.message = message;
    set_run_at(job, state, when);
    clear_lease(job, state);
}

// A failed attempt: retried after the backoff when it may be, else the end.
inline void apply_fail(jobs::job_record& job, job_queue_state& state, const std::string& error, jobs::failure_kind kind,
                       const jobs::retry_policy& policy, job_clock::time_point now) {
    require_status(job, {jobs::job_status::running}, "fail");
    job.releases = 0;
    if (kind == jobs::failure_kind::retryable && job.attempt < job.max_attempts) {
        const auto delay = policy.delay_after(job.attempt);
        apply_requeue(job, state, error,
                      "Attempt " + std::to_string(job.attempt) + " of " + std::to_string(job.max_attempts) +
                          " failed; retrying in " + std::to_string((delay.count() + 999) / 1000) + " s",
                      now + delay);
        return;
    }
    apply_end(job, state, jobs::job_status::failed, error, now);
}

// A hand-back: free for policy.max_releases in a row (the attempt's budget grows by one, so the
// attempt does not count); the one after counts as a failed, retryable attempt, and the count
// starts again. `attempt` itself never goes back: every claim gets a number of its own, and with it
// a run prefix and a scratch directory no earlier claim of the job can still be cleaning up.
inline void apply_release(jobs::job_record& job, job_queue_state& state, const std::string& reason,
                          const jobs::retry_policy& policy, job_clock::time_point now) {
    require_status(job, {jobs::job_status::running}, "release");
    if (job.releases >= policy.max_releases) {
        const int handed_back = job.releases;
        job.releases = 0;
        apply_fail(job, state,
                   "handed back " + std::to_string(handed_back + 1) + " times in a row without finishing (" + reason +
                       "); this hand-back counts as a failed attempt",
                   jobs::failure_kind::retryable, policy, now);
        return;
    }
    const std::string kept_error = job.error;
    apply_requeue(job, state, kept_error, "Queued again: " + reason, now);
    job.max_attempts += 1;
    job.releases += 1;
}

// An operator's retry: failed | cancelled -> queued now, with as many attempts again as the job
// had. The attempt count goes on (the next claim is attempt + 1), so the retry's runs never reuse
// a prefix of the attempts before it.
inline void apply_retry(jobs::job_record& job, job_queue_state& state, const std::string& reason, job_clock::time_point now) {
    require_status(job, {jobs::job_status::failed, jobs::job_status::cancelled}, "retry");
    job.status = jobs::job_status::queued;
    job.progress = 0;
    job.max_attempts = job.attempt + std::max(1, job.max_attempts);
    job.releases = 0;
    job.result = nlohmann::json();
    job.completed_at.reset();
    job.message = "Queued again: " + reason;
    set_run_at(job, state, now);
    clear_lease(job, state);
}

inline bool lease_expired(const jobs::job_record& job, const job_queue_state& state, job_clock::time_point now) {
    return job.status == jobs::job_status::running && state.lease_expires < now;
}

// A running job whose worker stopped renewing its lease.
inline void apply_rescue(jobs::job_record& job, job_queue_state& state, const jobs::retry_policy& policy, job_clock::time_point now) {
    const std::string reason = "interrupted: worker " + job.worker.value_or("?") + " stopped renewing its lease on attempt " +
                               std::to_string(job.attempt) + " of " + std::to_string(job.max_attempts);
    apply_fail(job, state, reason, jobs::failure_kind::retryable, policy, now);
}

}  // namespace detail
TILEKIT_NAMESPACE_END
// #include <tilekit/jobs/memory_store.hpp>
// An in-memory job store: for tests and single-process embeddings that need no durability. One
// mutex guards everything, so every method is atomic with respect to every other; changes go
// through the shared detail::apply_* helpers so this store and the SQLite one agree exactly.
// Finished jobs stay until job_store::prune() removes them (the workers' maintenance does).
// Times come from a steady_wall_clock: a step of the system clock moves no lease and no run_at.

// #include <tilekit/jobs/job_store.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <set>
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

    job_record enqueue(const new_job& job) override {
        detail::job_queue_state state;
        job_record record = detail::make_job(job, state, clock_.now());  // the random id is drawn outside the lock
        {
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
            const std::uint64_t sequence = next_sequence_++;
            jobs_.emplace(record.id, entry{record, state, sequence});
            active_.emplace(key, record.id);
            queued_.insert({state.run_at, sequence, record.id});
        }
        wakeup().notify();
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

    std::optional<claimed_job> claim(const std::string& worker_id, const std::vector<std::string>& job_types,
                                     std::chrono::milliseconds lease_duration) override {
        if (worker_id.empty()) throw error(errc::invalid_argument, "claim: a worker needs an id");
        if (lease_duration.count() <= 0) throw error(errc::invalid_argument, "claim: the lease duration must be positive");
        const auto now = clock_.now();
        std::lock_guard<std::mutex> lock(mutex_);
        for (auto it = queued_.begin(); it != queued_.end() && std::get<0>(*it) <= now; ++it) {
            entry& e = jobs_.at(std::get<2>(*it));
            if (std::find(job_types.begin(), job_types.end(), e.record.job_type) == job_types.end()) continue;
            claimed_job claimed;
            claimed.lease.worker_id = worker_id;
            claimed.lease.duration = lease_duration;
            const auto sent = std::chrono::steady_clock::now();
            job_record changed = e.record;
            detail::job_queue_state state = e.state;
            detail::apply_claim(changed, state, claimed.lease, now);
            queued_.erase(it);
            e.record = changed;
            e.state = state;
            claimed.lease.valid_until = sent + lease_duration;
            claimed.job = std::move(changed);
            return claimed;
        }
        return std::nullopt;
    }

    job_record renew(job_lease& lease) override {
        return fenced(lease, [&](job_record& r, detail::job_queue_state& s, detail::job_clock::time_point now) {
            detail::extend_lease(r, s, lease, now);
        });
    }

    job_record report_progress(job_lease& lease, int progress, const std::string& message) override {
        return fenced(lease, [&](job_record& r, detail::job_queue_state& s, detail::job_clock::time_point now) {
            detail::apply_progress(r, progress, message);
            detail::extend_lease(r, s, lease, now);
        });
    }

    job_record complete(job_lease& lease, const nlohmann::json& result, const std::string& message) override {
        return fenced(lease, [&](job_record& r, detail::job_queue_state& s, detail::job_clock::time_point now) {
            detail::apply_complete(r, s, result, message, now);
        });
    }

    job_record fail(job_lease& lease, const std::string& error, failure_kind kind) override {
        return fenced(lease, [&](job_record& r, detail::job_queue_state& s, detail::job_clock::time_point now) {
            detail::apply_fail(r, s, error, kind, retries(), now);
        });
    }

    job_record release(job_lease& lease, const std::string& reason) override {
        return fenced(lease, [&](job_record& r, detail::job_queue_state& s, detail::job_clock::time_point now) {
            detail::apply_release(r, s, reason, retries(), now);
        });
    }

    job_record cancel(const std::string& id, const std::string& reason) override {
        std::lock_guard<std::mutex> lock(mutex_);
        const auto it = jobs_.find(id);
        if (it == jobs_.end()) throw job_not_found(id);
        return change(it->second, [&](job_record& r, detail::job_queue_state& s, detail::job_clock::time_point now) {
            detail::apply_end(r, s, job_status::cancelled, reason, now);
        });
    }

    std::vector<job_record> rescue_expired() override {
        std::vector<job_record> rescued;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            const auto now = clock_.now();
            for (auto& item : jobs_) {
                if (!detail::lease_expired(item.second.record, item.second.state, now)) continue;
                rescued.push_back(change(item.second, [&](job_record& r, detail::job_queue_state& s, detail::job_clock::time_point at) {
                    detail::apply_rescue(r, s, retries(), at);
                }));
            }
        }
        if (!rescued.empty()) wakeup().notify();
        return rescued;
    }

    job_page list_jobs(const job_filter& filter, std::size_t limit,
                       const std::optional<job_page_key>& after = std::nullopt) const override {
        detail::check_page_limit(limit);
        std::lock_guard<std::mutex> lock(mutex_);
        std::vector<const job_record*> found;
        for (const auto& item : jobs_) {
            const job_record& r = item.second.record;
            if (!detail::matches(filter, r)) continue;
            if (after && !detail::before_key(r, *after)) continue;
            found.push_back(&r);
        }
        const auto newer = [](const job_record* a, const job_record* b) {
            return a->created_at != b->created_at ? a->created_at > b->created_at : a->id > b->id;
        };
        const std::size_t take = std::min(limit, found.size());
        std::partial_sort(found.begin(), found.begin() + static_cast<std::ptrdiff_t>(take), found.end(), newer);
        job_page page;
        for (std::size_t i = 0; i < take; ++i) page.jobs.push_back(*found[i]);
        if (found.size() > take) page.next = job_page_key{page.jobs.back().created_at, page.jobs.back().id};
        return page;
    }

    std::int64_t count_jobs(const job_filter& filter) const override {
        std::lock_guard<std::mutex> lock(mutex_);
        std::int64_t n = 0;
        for (const auto& item : jobs_) n += detail::matches(filter, item.second.record) ? 1 : 0;
        return n;
    }

    job_record retry(const std::string& id, const std::string& reason) override {
        job_record changed;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            const auto it = jobs_.find(id);
            if (it == jobs_.end()) throw job_not_found(id);
            const job_record& r = it->second.record;
            const auto active = active_.find(active_key(r));
            if (active != active_.end() && (r.status == job_status::failed || r.status == job_status::cancelled)) {
                const job_record& other = jobs_.at(active->second).record;
                throw job_state_error("a " + other.job_type + " job is already " + to_string(other.status) +
                                          " for project '" + other.project_id + "' version '" + other.version_id +
                                          "' (job '" + other.id + "')",
                                      errc::duplicate_job);
            }
            changed = change(it->second, [&](job_record& c, detail::job_queue_state& s, detail::job_clock::time_point now) {
                detail::apply_retry(c, s, reason, now);
            });
        }
        wakeup().notify();
        return changed;
    }

    queue_stats stats(std::chrono::milliseconds window) const override {
        const auto now = clock_.now();
        const std::string now_text = format_utc(now), since = format_utc(now - window);
        queue_stats out;
        out.window = window;
        std::int64_t latency_sum = 0;
        std::lock_guard<std::mutex> lock(mutex_);
        for (const auto& item : jobs_) {
            const job_record& r = item.second.record;
            const detail::job_queue_state& s = item.second.state;
            switch (r.status) {
                case job_status::queued: ++out.queued; break;
                case job_status::running: ++out.running; break;
                case job_status::completed: ++out.completed; break;
                case job_status::failed: ++out.failed; break;
                case job_status::cancelled: ++out.cancelled; break;
            }
            if (r.status == job_status::queued && s.run_at <= now) {
                ++out.runnable;
                const auto age = std::chrono::duration_cast<std::chrono::milliseconds>(now - s.run_at);
                if (!out.oldest_runnable_age || age > *out.oldest_runnable_age) out.oldest_runnable_age = age;
            }
            if (r.completed_at && *r.completed_at >= since) {
                if (r.status == job_status::completed) ++out.completed_in_window;
                if (r.status == job_status::failed) ++out.failed_in_window;
            }
            if (r.started_at && *r.started_at >= since && r.status != job_status::queued) {
                const std::int64_t latency = std::max<std::int64_t>(0, detail::utc_millis(*r.started_at) - detail::utc_millis(r.run_at));
                ++out.started_in_window;
                latency_sum += latency;
                if (!out.pickup_latency_max || latency > out.pickup_latency_max->count())
                    out.pickup_latency_max = std::chrono::milliseconds(latency);
            }
        }
        if (out.started_in_window > 0) out.pickup_latency_avg = std::chrono::milliseconds(latency_sum / out.started_in_window);
        return out;
    }

protected:
    std::int64_t prune_finished(std::chrono::milliseconds max_age, std::int64_t keep_per_version, std::int64_t limit) override {
        const std::string cutoff = format_utc(clock_.now() - max_age);
        std::lock_guard<std::mutex> lock(mutex_);
        // Finished jobs per (project, version), newest first.
        std::map<std::pair<std::string, std::string>, std::vector<const job_record*>> finished;
        for (const auto& item : jobs_)
            if (is_terminal(item.second.record.status))
                finished[{item.second.record.project_id, item.second.record.version_id}].push_back(&item.second.record);
        std::vector<std::string> doomed;
        for (auto& group : finished) {
            std::sort(group.second.begin(), group.second.end(), [](const job_record* a, const job_record* b) {
                const std::string& ea = a->completed_at ? *a->completed_at : a->created_at;
                const std::string& eb = b->completed_at ? *b->completed_at : b->created_at;
                return ea != eb ? ea > eb : a->id > b->id;
            });
            for (std::size_t rank = 0; rank < group.second.size(); ++rank) {
                const job_record* r = group.second[rank];
                const std::string& ended = r->completed_at ? *r->completed_at : r->created_at;
                if (ended < cutoff || static_cast<std::int64_t>(rank) >= keep_per_version) doomed.push_back(r->id);
            }
        }
        if (limit == 0) return static_cast<std::int64_t>(doomed.size());
        if (static_cast<std::int64_t>(doomed.size()) > limit) doomed.resize(static_cast<std::size_t>(limit));
        for (const std::string& id : doomed) jobs_.erase(id);
        return static_cast<std::int64_t>(doomed.size());
    }

private:
    struct entry {
        job_record record;
        detail::job_queue_state state;
        std::uint64_t sequence;  // insertion order: breaks created_at ties (timestamps are per millisecond)
    };

    // The one-active-job rule is per (type, project, version).
    using version_key = std::tuple<std::string, std::string, std::string>;
    static version_key active_key(const job_record& r) { return {r.job_type, r.project_id, r.version_id}; }

    // Applies a change to a copy and stores it only if the helper did not throw, so an illegal
    // change never leaves a half-updated record behind. Keeps the queued and active indexes in step.
    template <class Apply>
    job_record change(entry& e, Apply&& apply) {
        job_record changed = e.record;
        detail::job_queue_state state = e.state;
        apply(changed, state, clock_.now());
        if (e.record.status == job_status::queued) queued_.erase({e.state.run_at, e.sequence, e.record.id});
        if (changed.status == job_status::queued) queued_.insert({state.run_at, e.sequence, changed.id});
        if (is_terminal(changed.status) && !is_terminal(e.record.status)) {
            const auto active = active_.find(active_key(changed));
            if (active != active_.end() && active->second == changed.id) active_.erase(active);
        }
        if (!is_terminal(changed.status) && is_terminal(e.record.status)) active_.emplace(active_key(changed), changed.id);  // retry
        e.record = changed;
        e.state = state;
        return changed;
    }

    template <class Apply>
    job_record fenced(job_lease& lease, Apply&& apply) {
        const auto sent = std::chrono::steady_clock::now();
        job_record changed;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            const auto it = jobs_.find(lease.job_id);
            if (it == jobs_.end()) throw job_not_found(lease.job_id);
            detail::check_lease(it->second.record, it->second.state, lease);
            changed = change(it->second, apply);
        }
        if (changed.status == job_status::running)
            lease.valid_until = sent + lease.duration;
        else if (changed.status == job_status::queued)
            wakeup().notify();
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

    detail::steady_wall_clock clock_;  // every time of this store: wall-clock steps move no lease
    mutable std::mutex mutex_;
    std::unordered_map<std::string, entry> jobs_;
    std::map<version_key, std::string> active_;  // -> id of the queued or running job
    std::set<std::tuple<detail::job_clock::time_point, std::uint64_t, std::string>> queued_;  // claim order
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
// and the lease keeper that writes it. While a worker runs a job, one keeper thread is the only
// writer for that job's lease: it writes the latest percent and message at most every
// `progress_interval` (and only when they changed), never per tile, so a slow store cannot slow
// the tiler, and renews the lease every `heartbeat` when there was nothing to write. Because
// tilekit uploads while it tiles, "Generating tiles" counts tiles handed to the sink, whose queue
// is bounded: the bar follows the slower of the two streams, and the "Uploading" share covers
// only the uploads still in flight when the last tile is made.
//
// The keeper stops the job (on_stop, once) when the store fences it off (the job was cancelled:
// job_cancelled; or rescued and taken over: lease_lost), and also when it has failed to reach the
// store for so long that the lease may end before the next try (a third of the lease before the
// bound the store guarantees): another worker may then be given the job, and the two must never
// run it at the same time.
//
// Keepers do their writes on a lease_scheduler's thread. A worker pool has one for all its jobs,
// so a job costs no thread of its own (a thread started and joined per job cost ~60 us, a large
// share of a short job); a keeper made without one owns a private scheduler. One slow store call
// delays the other keepers' writes, but never their handlers' deadlines: those are on the tokens.

// #include <tilekit/jobs/job_store.hpp>
// #include <tilekit/progress.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <functional>
#include <memory>
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

// Why a keeper stopped a job.
// timed_out: the job ran past its run-time limit (set_deadline); the keeper stops renewing, so
// a handler that ignores the cancel loses its lease instead of holding the job forever.
enum class stop_reason { none, cancelled, lease_lost, timed_out };

class lease_keeper;

// The thread on which lease keepers write: each keeper is ticked every
// min(progress_interval, heartbeat) from when it was added, one at a time.
class lease_scheduler {
public:
    lease_scheduler() : thread_([this] { run(); }) {}
    lease_scheduler(const lease_scheduler&) = delete;
    lease_scheduler& operator=(const lease_scheduler&) = delete;
    ~lease_scheduler() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            stopping_ = true;
        }
        wake_.notify_all();
        thread_.join();
    }

private:
    friend class lease_keeper;
    struct entry {
        lease_keeper* keeper;
        std::chrono::steady_clock::time_point due;
    };

    void add(lease_keeper* keeper, std::chrono::steady_clock::time_point due) {
        bool earlier;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            entries_.push_back({keeper, due});
            earlier = due < wake_at_;
        }
        if (earlier) wake_.notify_all();
    }

    // After remove() returns, the scheduler will not touch the keeper again (a tick in progress
    // is waited for).
    void remove(lease_keeper* keeper) {
        std::unique_lock<std::mutex> lock(mutex_);
        ticked_.wait(lock, [&] { return ticking_ != keeper; });
        entries_.erase(std::remove_if(entries_.begin(), entries_.end(), [&](const entry& e) { return e.keeper == keeper; }),
                       entries_.end());
    }

    inline void run();

    std::mutex mutex_;
    std::condition_variable wake_;
    std::condition_variable ticked_;
    std::vector<entry> entries_;
    lease_keeper* ticking_ = nullptr;
    std::chrono::steady_clock::time_point wake_at_ = std::chrono::steady_clock::time_point::max();
    bool stopping_ = false;
    std::thread thread_;
};

class lease_keeper {
public:
    // Called once, from the keeper's thread, with why and the store's message.
    using stop_callback = std::function<void(stop_reason, const std::string& message)>;

    // `work` is the token of the work the lease covers: it is set to cancel itself when the lease
    // can no longer be trusted (a third of the lease before the bound the store guarantees), and
    // moved on after every successful write. So the work stops in time even while this keeper is
    // stuck in a call to an unreachable store.
    // `scheduler`: whose thread does the writes (a worker pool's); none: a private one.
    lease_keeper(job_store& store, job_lease& lease, std::chrono::milliseconds progress_interval,
                 std::chrono::milliseconds heartbeat, stop_callback on_stop = {}, cancel_token work = {},
                 lease_scheduler* scheduler = nullptr)
        : store_(store),
          lease_(lease),
          progress_interval_(std::max(progress_interval, std::chrono::milliseconds(1))),
          heartbeat_(std::max(heartbeat, std::chrono::milliseconds(1))),
          on_stop_(std::move(on_stop)),
          work_(std::move(work)),
          last_write_(std::chrono::steady_clock::now()) {
        work_.cancel_at(trusted_until());
        if (!scheduler) {
            own_scheduler_ = std::make_unique<lease_scheduler>();
            scheduler = own_scheduler_.get();
        }
        scheduler_ = scheduler;
        scheduler_->add(this, last_write_ + period());
    }

    lease_keeper(const lease_keeper&) = delete;
    lease_keeper& operator=(const lease_keeper&) = delete;

    ~lease_keeper() { stop(); }

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

    // Writes what is pending now and stops the thread. After stop() the caller may use the lease.
    void stop() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (stopping_) return;
            stopping_ = true;
        }
        scheduler_->remove(this);
        own_scheduler_.reset();
        if (reason_ == stop_reason::none) tick(/*final=*/true);
    }

    stop_reason reason() const noexcept { return reason_.load(); }

    // The run-time limit: at its first round after `when` the keeper stops the job (timed_out)
    // and renews no more.
    void set_deadline(std::chrono::steady_clock::time_point when) {
        std::lock_guard<std::mutex> lock(mutex_);
        deadline_ = when;
    }
    std::chrono::milliseconds lease_duration() const noexcept { return lease_.duration; }
    std::size_t writes() const noexcept { return writes_.load(); }

    // A renewal now, from the caller's thread: proof that the job is still ours and not
    // cancelled, as of this write. Throws job_cancelled or lease_lost (and stops the work) when
    // the store fences it off, or when the keeper already stopped for that reason; other store
    // errors are thrown as they are. Returns the new bound of the lease (job_lease::valid_until).
    // For a step that must happen under the lease (the publish protocol's commit).
    std::chrono::steady_clock::time_point confirm() {
        std::lock_guard<std::mutex> io(io_mutex_);
        const stop_reason before = reason_.load();
        if (before == stop_reason::cancelled) throw job_cancelled(lease_.job_id, "the job was cancelled");
        if (before == stop_reason::lease_lost) throw lease_lost("job '" + lease_.job_id + "': the lease was lost");
        try {
            store_.renew(lease_);
        } catch (const job_cancelled& e) {
            halt(stop_reason::cancelled, e.what());
            throw;
        } catch (const lease_lost& e) {
            halt(stop_reason::lease_lost, e.what());
            throw;
        }
        writes_ += 1;
        last_write_ = std::chrono::steady_clock::now();
        work_.cancel_at(trusted_until());
        return lease_.valid_until;
    }

private:
    friend class lease_scheduler;
    std::chrono::milliseconds period() const { return std::min(progress_interval_, heartbeat_); }

    // One round: the pending progress if any (which renews too), else a renewal when due.
    void tick(bool final) {
        std::vector<std::pair<int, std::string>> batch;
        std::size_t milestones_in_batch = 0;
        {
            std::unique_lock<std::mutex> lock(mutex_);
            if (!final && std::chrono::steady_clock::now() >= deadline_) {
                lock.unlock();
                halt(stop_reason::timed_out, "the job ran past its run-time limit");
                return;
            }
            if (dirty_) {
                batch.assign(milestones_.begin(), milestones_.end());
                milestones_in_batch = batch.size();
                if (batch.empty() || batch.back().first != percent_ || batch.back().second != message_)
                    batch.emplace_back(percent_, message_);
            }
        }
        std::lock_guard<std::mutex> io(io_mutex_);  // one writer of lease_ at a time (confirm())
        const auto now = std::chrono::steady_clock::now();
        if (batch.empty() && (final || now - last_write_ < heartbeat_)) return;
        try {
            if (batch.empty()) {
                store_.renew(lease_);
            } else {
                for (const auto& [percent, message] : batch) store_.report_progress(lease_, percent, message);
                std::lock_guard<std::mutex> lock(mutex_);
                milestones_.erase(milestones_.begin(), milestones_.begin() + static_cast<std::ptrdiff_t>(milestones_in_batch));
                if (batch.back().first == percent_ && batch.back().second == message_) dirty_ = false;
            }
            writes_ += batch.empty() ? 1 : batch.size();
            last_write_ = std::chrono::steady_clock::now();
            work_.cancel_at(trusted_until());
        } catch (const job_cancelled& e) {
            halt(stop_reason::cancelled, e.what());
        } catch (const lease_lost& e) {
            halt(stop_reason::lease_lost, e.what());
        } catch (const job_state_error&) {
            // progress the state machine refuses (a bug in the caller): drop it, keep the lease
            std::lock_guard<std::mutex> lock(mutex_);
            dirty_ = false;
            milestones_.clear();
        } catch (const std::exception& e) {
            // The store is unreachable or busy: try again next round while the lease can still
            // be trusted, and stop the job before it might be given to someone else.
            if (std::chrono::steady_clock::now() > trusted_until())
                halt(stop_reason::lease_lost, std::string("cannot renew the lease: ") + e.what());
        }
    }

    std::chrono::steady_clock::time_point trusted_until() const { return lease_.valid_until - lease_.duration / 3; }

    void halt(stop_reason reason, const std::string& message) {
        stop_reason expected = stop_reason::none;
        if (reason_.compare_exchange_strong(expected, reason) && on_stop_) on_stop_(reason, message);
    }

    job_store& store_;
    job_lease& lease_;
    const std::chrono::milliseconds progress_interval_;
    const std::chrono::milliseconds heartbeat_;
    stop_callback on_stop_;
    cancel_token work_;
    std::mutex mutex_;
    std::mutex io_mutex_;  // held around the store writes that move lease_
    int percent_ = -1;
    std::string message_;
    std::vector<std::pair<int, std::string>> milestones_;
    bool dirty_ = false;
    bool stopping_ = false;
    std::chrono::steady_clock::time_point deadline_ = std::chrono::steady_clock::time_point::max();
    std::atomic<stop_reason> reason_{stop_reason::none};
    std::atomic<std::size_t> writes_{0};
    std::chrono::steady_clock::time_point last_write_;  // the scheduler's only (and stop() after remove)
    std::unique_ptr<lease_scheduler> own_scheduler_;
    lease_scheduler* scheduler_ = nullptr;
};

inline void lease_scheduler::run() {
    std::unique_lock<std::mutex> lock(mutex_);
    while (!stopping_) {
        auto now = std::chrono::steady_clock::now();
        // Tick every keeper that is due, one at a time, without the lock (remove() waits for it).
        for (std::size_t i = 0; i < entries_.size() && !stopping_; ++i) {
            if (entries_[i].due > now) continue;
            lease_keeper* keeper = entries_[i].keeper;
            ticking_ = keeper;
            lock.unlock();
            keeper->tick(/*final=*/false);
            const bool halted = keeper->reason() != stop_reason::none;
            lock.lock();
            ticking_ = nullptr;
            ticked_.notify_all();
            // The entries may have changed while unlocked: find this keeper again.
            auto it = std::find_if(entries_.begin(), entries_.end(), [&](const entry& e) { return e.keeper == keeper; });
            if (it != entries_.end()) {
                if (halted) entries_.erase(it);
                else it->due = std::chrono::steady_clock::now() + keeper->period();
            }
            i = static_cast<std::size_t>(-1);  // rescan from the start
            now = std::chrono::steady_clock::now();
        }
        wake_at_ = std::chrono::steady_clock::time_point::max();
        for (const entry& e : entries_) wake_at_ = std::min(wake_at_, e.due);
        if (stopping_) break;
        if (wake_at_ == std::chrono::steady_clock::time_point::max()) wake_.wait(lock);
        else wake_.wait_until(lock, wake_at_);
    }
}

}  // namespace jobs
TILEKIT_NAMESPACE_END
// #include <tilekit/jobs/run_pointer.hpp>
// The publish protocol's storage side: immutable runs, and the pointer that says which run is a
// version's pyramid.
//
//   {version prefix}runs/{job_id}.{attempt}/...   one run: every object an attempt writes, and
//                                                 nothing else; never changed once written
//   {version prefix}current.json                  the pointer: which run is the pyramid (its
//                                                 manifest, layout, metadata), and the runs it
//                                                 replaced, with when (for the grace period)
//
// A run becomes the version's pyramid by one conditional write of the pointer (storage_sink::
// put_if) against the version tag read when the run started; a run that loses the race, or that
// may no longer commit, leaves the pointer alone. Readers (the service's /tiles/, a viewer)
// resolve the pointer and then read immutable objects, so they never see half a pyramid.
// collect_runs() deletes the runs nobody can need any more: never the committed one, retired ones
// only after a grace period, and failed or cancelled ones once their job says they ended.

// #include <tilekit/error.hpp>
// #include <tilekit/key.hpp>
// #include <tilekit/sink.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

TILEKIT_NAMESPACE_BEGIN
namespace jobs {

// Objects under a run prefix never change: caches may keep them for a year. The pointer and the
// stable manifests change at every commit: caches must ask again after a few seconds.
inline const char* const immutable_cache_control = "public, max-age=31536000, immutable";
inline const char* const pointer_cache_control = "public, max-age=5, must-revalidate";

inline const char* const pointer_name = "current.json";

struct retired_run {
    std::string run;          // "runs/{job_id}.{attempt}/"
    std::int64_t since = 0;   // unix seconds: when the pointer stopped naming it
};

struct run_pointer {
    std::string run;          // relative to the version prefix ("runs/J.1/"); empty: no pyramid
    std::string job_id;
    int attempt = 0;
    std::string layout;       // "dz", "xyz", "iiif"
    std::string manifest;     // relative to the version prefix, or empty
    std::string metadata;     // relative to the version prefix
    std::int64_t committed_at = 0;
    std::vector<retired_run> retired;
    // The pointer this one replaced (without its own retired list and previous): where
    // withdraw_abandoned_commit() goes back to.
    std::shared_ptr<const run_pointer> previous;
};

inline std::int64_t unix_now() {
    return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

inline std::string run_name(const std::string& job_id, int attempt) {
    return "runs/" + job_id + "." + std::to_string(attempt) + "/";
}

inline nlohmann::json to_json_value(const run_pointer& p) {
    nlohmann::json retired = nlohmann::json::array();
    for (const retired_run& r : p.retired) retired.push_back({{"run", r.run}, {"since", r.since}});
    nlohmann::json j{{"run", p.run.empty() ? nlohmann::json() : nlohmann::json(p.run)},
                     {"job_id", p.job_id},
                     {"attempt", p.attempt},
                     {"layout", p.layout},
                     {"manifest", p.manifest},
                     {"metadata", p.metadata},
                     {"committed_at", p.committed_at},
                     {"retired", retired}};
    if (p.previous) {
        nlohmann::json previous = to_json_value(*p.previous);
        previous.erase("retired");
        previous.erase("previous");
        j["previous"] = previous;
    }
    return j;
}

// Throws errc::storage_error for a pointer that is not one (it is never guessed at).
inline run_pointer pointer_from_json(const nlohmann::json& j) {
    try {
        run_pointer p;
        if (!j.at("run").is_null()) p.run = j.at("run").get<std::string>();
        p.job_id = j.value("job_id", "");
        p.attempt = j.value("attempt", 0);
        p.layout = j.value("layout", "");
        p.manifest = j.value("manifest", "");
        p.metadata = j.value("metadata", "");
        p.committed_at = j.value("committed_at", std::int64_t{0});
        if (j.contains("retired"))
            for (const nlohmann::json& r : j.at("retired")) p.retired.push_back({r.at("run").get<std::string>(), r.at("since").get<std::int64_t>()});
        if (j.contains("previous") && j.at("previous").is_object()) {
            nlohmann::json previous = j.at("previous");
            previous.erase("previous");
            p.previous = std::make_shared<const run_pointer>(pointer_from_json(previous));
        }
        if (!p.run.empty() && (p.run.compare(0, 5, "runs/") != 0 || p.run.back() != '/' || p.run.find("..") != std::string::npos))
            throw error(errc::storage_error, "its run '" + p.run + "' is not a run prefix");
        return p;
    } catch (const nlohmann::json::exception& e) {
        throw error(errc::storage_error, std::string("a pyramid pointer that cannot be read: ") + e.what());
    }
}

inline std::vector<std::uint8_t> pointer_body(const run_pointer& p) {
    const std::string text = to_json_value(p).dump(2) + "\n";
    return {text.begin(), text.end()};
}

// The pointer as stored, with its version tag. pointer is empty when there is none yet (and then
// version is empty too, the tag put_if() takes for "absent").
struct pointer_state {
    std::optional<run_pointer> pointer;
    std::string version;
};

inline pointer_state read_pointer(storage_sink& sink, const std::string& version_prefix) {
    if (!sink.can_compare_and_put())
        throw error(errc::invalid_argument, "publishing runs needs a storage sink with conditional writes (put_if)");
    const std::string key = version_prefix + pointer_name;
    std::optional<versioned_object> found = sink.read(key);
    if (!found) return {};
    nlohmann::json j = nlohmann::json::parse(found->object.body.begin(), found->object.body.end(), nullptr, false);
    if (j.is_discarded()) throw error(errc::storage_error, "the pyramid pointer '" + key + "' is not JSON");
    return {pointer_from_json(j), found->version};
}

// The one conditional write that makes a pointer current. stored == false: someone else's write
// came first (the version tag moved), and nothing was changed.
inline conditional_put_result write_pointer(storage_sink& sink, const std::string& version_prefix, const run_pointer& p,
                                            const std::string& expected_version) {
    storage_object object;
    object.key = version_prefix + pointer_name;
    object.body = pointer_body(p);
    object.content_type = "application/json";
    object.cache_control = pointer_cache_control;
    return sink.put_if(std::move(object), expected_version);
}

// Stable manifests: for plain static hosting (a bucket served as it is, no service in front),
// copies of the committed run's manifest and metadata at the version prefix, at the names the run
// has them ({version prefix}image.dzi, info.json, pyramid.json), that name the run's tiles:
//   Deep Zoom   image.dzi with Url="{base}/{version prefix}{run}image_files/" (OpenSeadragon
//               takes the tiles from Url when the .dzi has one; the page's own address does not
//               matter)
//   IIIF        info.json with id "{base}/{version prefix}{run without its slash}" (a run made
//               with an absolute iiif_base_url already has one, and keeps it)
//   metadata    pyramid.json with tile_url_template prefixed by the run ("runs/J.A/{z}/{x}/{y}.png":
//               still relative to the prefix the file is in) and "run" naming it
// {base} is public_base_url (where the bucket's keys are served, e.g. "https://tiles.example.com"),
// or nothing: "/{key}", for a bucket served at a domain's root (an R2 custom domain or r2.dev URL,
// an S3 virtual-hosted URL). The pointer stays the truth; these follow it: after writing them the
// pointer is read again, and if it moved meanwhile they are written again for what it says now,
// so whichever writer finishes last leaves them matching the pointer.
}  // namespace jobs
namespace detail {

inline std::string xml_attribute_escape(const std::string& text) {
    std::string out;
    for (char ch : text) {
        if (ch == '&') out += "&amp;";
        else if (ch == '"') out += "&quot;";
        else if (ch == '<') out += "&lt;";
        else if (ch == '>') out += "&gt;";
        else out += ch;
    }
    return out;
}

inline std::string run_url(const std::string& public_base_url, const std::string& key) {
    std::string base = public_base_url;
    while (!base.empty() && base.back() == '/') base.pop_back();
    return base + "/" + key;
}

// The stable copy of one of the run's documents (name relative to the run), or nothing when it
// is not one this file knows how to point at the run.
inline std::optional<std::string> stable_document(const std::string& name, const std::string& body, const std::string& version_prefix,
                                                  const std::string& run, const std::string& public_base_url) {
    const auto ends_with = [&](const char* suffix) {
        const std::string s(suffix);
        return name.size() >= s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0;
    };
    if (ends_with(".dzi")) {
        const std::size_t at = body.find("<Image");
        if (at == std::string::npos || body.find(" Url=\"") != std::string::npos) return std::nullopt;
        const std::string files = name.substr(0, name.size() - 4) + "_files/";
        const std::string url = run_url(public_base_url, version_prefix + run + files);
        std::string out = body;
        out.insert(at + 6, " Url=\"" + xml_attribute_escape(url) + "\"");
        return out;
    }
    nlohmann::ordered_json j = nlohmann::ordered_json::parse(body, nullptr, false);
    if (j.is_discarded() || !j.is_object()) return std::nullopt;
    if (j.contains("tile_url_template") && j["tile_url_template"].is_string()) {  // pyramid.json
        j["tile_url_template"] = run + j["tile_url_template"].get<std::string>();
        j["run"] = run;
        return j.dump(2) + "\n";
    }
    if (j.contains("id") && j["id"].is_string()) {  // IIIF info.json
        const std::string id = j["id"].get<std::string>();
        if (id.find("://") == std::string::npos && (id.empty() || id[0] != '/')) {
            std::string run_key = version_prefix + run;
            run_key.pop_back();
            j["id"] = run_url(public_base_url, run_key);
        }
        return j.dump(2) + "\n";
    }
    return std::nullopt;
}

}  // namespace detail
namespace jobs {

// Writes (or, when the pointer names no run, removes) the stable manifests of the version; see
// above. also_clear: names to remove when there is no pyramid (those a withdrawn run had).
inline void sync_stable_manifests(storage_sink& sink, const std::string& version_prefix, const std::string& public_base_url,
                                  const std::vector<std::string>& also_clear = {}) {
    for (int round = 0; round < 8; ++round) {
        const pointer_state state = read_pointer(sink, version_prefix);
        if (!state.pointer || state.pointer->run.empty()) {
            for (const std::string& name : also_clear) sink.remove(version_prefix + name);
        } else {
            const run_pointer& p = *state.pointer;
            for (const std::string& relative : {p.manifest, p.metadata}) {
                if (relative.size() <= p.run.size() || relative.compare(0, p.run.size(), p.run) != 0) continue;
                const std::string name = relative.substr(p.run.size());
                const std::optional<versioned_object> found = sink.read(version_prefix + relative);
                if (!found) continue;  // collected already: a later round (or commit) has a newer pointer
                const std::string body(found->object.body.begin(), found->object.body.end());
                const std::optional<std::string> text = detail::stable_document(name, body, version_prefix, p.run, public_base_url);
                if (!text) continue;
                storage_object object;
                object.key = version_prefix + name;
                object.body.assign(text->begin(), text->end());
                object.content_type = found->object.content_type;
                object.cache_control = pointer_cache_control;
                sink.put(std::move(object));
            }
            sink.flush();
        }
        if (read_pointer(sink, version_prefix).version == state.version) return;
    }
}

// A committed run whose job did not complete: its last attempt stopped between the pointer write
// and the completion (the process was killed, or the answer to the write was lost and the job
// failed), so the store failed or cancelled the job while the pointer names its run. The pointer
// goes back to the run it replaced when that run is still stored, or else to no pyramid, by one
// conditional write; the withdrawn run is retired (collected after the grace). gave_up(job_id)
// says whether a job ended without completing (failed or cancelled; false while it may still
// run, as a retry that will commit again). Returns whether the pointer was withdrawn. Run by
// `tilekit jobs gc`; keeps "a version's pyramid is a completed job's" true after a crash.
inline bool withdraw_abandoned_commit(storage_sink& sink, const std::string& version_prefix,
                                      const std::function<bool(const std::string& job_id)>& gave_up,
                                      const std::string& public_base_url = "") {
    const pointer_state state = read_pointer(sink, version_prefix);
    if (!state.pointer || state.pointer->run.empty() || !gave_up || !gave_up(state.pointer->job_id)) return false;
    const run_pointer& current = *state.pointer;
    const std::int64_t now = unix_now();
    run_pointer back;
    const run_pointer* previous = current.previous.get();
    if (previous && !previous->run.empty() && !previous->metadata.empty() && sink.read(version_prefix + previous->metadata)) {
        back = *previous;
        back.previous.reset();
    }
    back.committed_at = now;
    for (const retired_run& r : current.retired)
        if (r.run != back.run) back.retired.push_back(r);
    back.retired.push_back({current.run, now});
    if (!write_pointer(sink, version_prefix, back, state.version).stored) return false;  // moved meanwhile
    std::vector<std::string> names;
    for (const std::string& relative : {current.manifest, current.metadata})
        if (relative.size() > current.run.size()) names.push_back(relative.substr(current.run.size()));
    sync_stable_manifests(sink, version_prefix, public_base_url, names);
    return true;
}

// Garbage collection of a version's runs.
struct collect_options {
    std::chrono::seconds grace{600};  // a viewer that loaded a replaced pyramid keeps it this long
    std::int64_t now = 0;             // unix seconds; 0: the clock
    // When a run that was never committed ended for good (it can no longer commit: its job is
    // failed, cancelled or completed, or a later attempt started), as unix seconds; nothing while
    // it may still commit or nobody knows. Without it, only retired runs are collected.
    std::function<std::optional<std::int64_t>(const std::string& job_id, int attempt)> run_ended_at;
    std::string keep;                 // a run to keep whatever it looks like (the caller's own)
};

struct collect_report {
    std::vector<std::string> removed_runs;
    std::size_t removed_objects = 0;
};

// Deletes the runs under `version_prefix` that nobody can need: not the committed run, not
// `keep`, retired runs once their grace has passed, other runs once run_ended_at says they ended
// more than the grace ago. Needs a sink that can list.
inline collect_report collect_runs(storage_sink& sink, const std::string& version_prefix, const collect_options& options) {
    collect_report report;
    if (!sink.can_list()) return report;
    const std::int64_t now = options.now ? options.now : unix_now();
    const pointer_state state = read_pointer(sink, version_prefix);
    std::map<std::string, std::int64_t> retired;
    if (state.pointer)
        for (const retired_run& r : state.pointer->retired) retired[r.run] = r.since;
    std::map<std::string, std::vector<std::string>> runs;  // "runs/J.A/" -> keys
    const std::string runs_prefix = version_prefix + "runs/";
    sink.list(runs_prefix, [&](const std::string& key) {
        const std::size_t slash = key.find('/', runs_prefix.size());
        if (slash == std::string::npos) return;
        runs["runs/" + key.substr(runs_prefix.size(), slash + 1 - runs_prefix.size())].push_back(key);
    });
    for (const auto& [run, keys] : runs) {
        if (state.pointer && run == state.pointer->run) continue;
        if (run == options.keep) continue;
        std::optional<std::int64_t> ended;
        const auto found = retired.find(run);
        if (found != retired.end()) {
            ended = found->second;
        } else if (options.run_ended_at) {
            const std::string name = run.substr(5, run.size() - 6);  // "J.A"
            const std::size_t dot = name.rfind('.');
            if (dot == std::string::npos) continue;
            int attempt = 0;
            try {
                attempt = std::stoi(name.substr(dot + 1));
            } catch (const std::exception&) {
                continue;
            }
            ended = options.run_ended_at(name.substr(0, dot), attempt);
        }
        if (!ended || now - *ended < options.grace.count()) continue;
        for (const std::string& key : keys) {
            sink.remove(key);
            ++report.removed_objects;
        }
        report.removed_runs.push_back(run);
    }
    return report;
}

}  // namespace jobs
TILEKIT_NAMESPACE_END
// #include <tilekit/jobs/tile_generation.hpp>
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

// #include <tilekit/jobs/job_store.hpp>
// #include <tilekit/jobs/progress.hpp>
// #include <tilekit/jobs/run_pointer.hpp>
// #include <tilekit/jobs/version_guard.hpp>
// #include <tilekit/jobs/worker.hpp>
// The worker runtime: N threads per process that claim jobs from a job_store, run the handler
// registered for each job's type, keep the job's lease alive while it runs (lease_keeper, all on
// one lease_scheduler thread per pool), and record the outcome. Any number of such processes, on any number of hosts, may share a store.
//
//   jobs::worker_pool pool(store, options);
//   pool.handle(jobs::tile_generation_job, jobs::tile_generation_handler(source, sink, lookup));
//   pool.start();
//   ...
//   pool.stop();  // stop claiming; running jobs get options.shutdown_grace, the rest are handed back
//
// A handler returns the job's result (JSON) or throws. Its outcome:
//   returns                       -> complete
//   throws tilekit::error         -> fail; retryable (failure_kind) for storage and I/O errors, a
//                                    lost lease and an unreachable store; permanent for bad input
//   throws anything else          -> fail, permanent
//   the job was cancelled, or its lease lost, while it ran -> nothing more is written: the store
//                                    already says what happened (the keeper stopped the handler
//                                    through ctx.cancel())
//   the pool stopped and the grace period ended -> release: queued again at once, for any worker
//                                    (free retry_policy::max_releases times in a row, then it
//                                    counts as a failed attempt)
//   ran past its run-time limit (new_job::timeout, worker_options::job_timeout) -> cancelled,
//                                    then fail (retryable): "timed out after N ms"
// The pool also does maintenance: every maintenance_interval, retention (job_store::prune).
// Handlers must watch ctx.cancel() (the tiler does) so that cancellation takes effect within
// about a heartbeat, and so that a worker that lost its lease stops before anyone else starts.

// #include <tilekit/jobs/job_store.hpp>
// #include <tilekit/jobs/progress.hpp>
// #include <tilekit/progress.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#if __has_include(<unistd.h>)
#include <unistd.h>
#endif

TILEKIT_NAMESPACE_BEGIN
namespace jobs {

struct worker_options {
    unsigned threads = 2;                      // jobs run at the same time by this pool
    std::string name;                          // worker ids are "<name>#<thread>"; default "<host>/<pid>/<random>"
    std::chrono::milliseconds lease{30000};    // how long a job stays ours without a renewal
    std::chrono::milliseconds heartbeat{500};  // renewal cadence, and so how soon a cancel is noticed
    std::chrono::milliseconds progress_interval{250};  // progress is written at most this often
    std::chrono::milliseconds poll_interval{1000};     // idle workers look again this often without a wake-up
    std::chrono::milliseconds rescue_interval{5000};   // this pool's sweep for expired leases (0: none)
    std::chrono::milliseconds shutdown_grace{20000};   // stop(): running jobs may finish within this
    // Run-time limit of an attempt for jobs that set none (new_job::timeout); 0: none. A handler
    // still running past it is cancelled and the attempt fails (retryable) as timed out; the
    // lease is no longer renewed, so one that ignores the cancel is rescued when it expires.
    std::chrono::milliseconds job_timeout{0};
    // Retention, run by this pool's maintenance thread every maintenance_interval (0: never):
    // finished jobs older than retention.max_age, or beyond retention.keep_per_version per
    // (project, version), are deleted (job_store::prune).
    std::chrono::milliseconds maintenance_interval{std::chrono::minutes(10)};
    retention_policy retention;
    // Called for each job that ended (completed, failed, cancelled, requeued for a retry or handed
    // back) with its record; from a worker thread. For logging.
    std::function<void(const job_record&)> on_job_end;
};

// What a handler sees of the job it runs.
class job_context {
public:
    job_context(const job_record& job, std::shared_ptr<lease_keeper> keeper, cancel_token cancel)
        : job_(job), keeper_(std::move(keeper)), cancel_(std::move(cancel)) {}

    const job_record& job() const noexcept { return job_; }
    const nlohmann::json& payload() const noexcept { return job_.payload; }
    int attempt() const noexcept { return job_.attempt; }

    // Cancelled when the job was cancelled, its lease was lost, or the pool is shutting down past
    // its grace period. Pass it to tile_file (pyramid_options::cancel) or poll it.
    const cancel_token& cancel() const noexcept { return cancel_; }

    // Monotonic; written by the lease keeper at most every progress_interval.
    void progress(int percent, const std::string& message, bool milestone = false) {
        if (keeper_) keeper_->set(percent, message, milestone);
    }

    // Renews the lease now and returns its new bound (steady clock); throws job_cancelled or
    // lease_lost when the job is no longer this worker's to finish. See lease_keeper::confirm().
    std::chrono::steady_clock::time_point confirm_lease() {
        if (!keeper_) return std::chrono::steady_clock::time_point::max();
        return keeper_->confirm();
    }

    std::chrono::milliseconds lease_duration() const noexcept {
        return keeper_ ? keeper_->lease_duration() : std::chrono::milliseconds(0);
    }

    // An undo for a side effect the handler made visible just before returning (the publish
    // protocol's pointer switch): run by the worker when the job's completion cannot be recorded
    // because the job was cancelled or its lease lost in between, so the job's final status and
    // what it published agree. Not run when the outcome is unknown (the store unreachable).
    void on_completion_refused(std::function<void()> undo) { undo_ = std::move(undo); }
    // The registered undo, taken away (to wrap it, say in something that keeps its sink alive).
    std::function<void()> take_completion_refused() { return std::exchange(undo_, nullptr); }
    void completion_refused() {
        if (!undo_) return;
        const std::function<void()> undo = std::move(undo_);
        undo_ = nullptr;
        try {
            undo();
        } catch (const std::exception& e) {
            std::fprintf(stderr, "tilekit worker: job %s: undoing its publication failed: %s\n", job_.id.c_str(), e.what());
        }
    }

    // The message the job is completed with when the handler returns ("Completed" unless set).
    void set_completion_message(std::string message) { completion_message_ = std::move(message); }
    const std::string& completion_message() const noexcept { return completion_message_; }

private:
    const job_record& job_;
    std::shared_ptr<lease_keeper> keeper_;
    cancel_token cancel_;
    std::string completion_message_ = "Completed";
    std::function<void()> undo_;
};

using job_handler = std::function<nlohmann::json(job_context&)>;

// Which failures are worth another attempt: storage and I/O trouble, a lost lease, a store that
// could not be reached. Everything else (bad input, a version that is not a draft, an image over
// a limit, access denied, a store that refused the credentials (store_refused), a bug) fails the
// job at once.
inline failure_kind classify_failure(errc code) noexcept {
    switch (code) {
        case errc::io_error:
        case errc::storage_error:
        case errc::lease_lost:
        case errc::store_unavailable:
            return failure_kind::retryable;
        default:
            return failure_kind::permanent;
    }
}

}  // namespace jobs
namespace detail {

inline std::string default_worker_name() {
    char host[256] = {};
#if __has_include(<unistd.h>)
    if (gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') std::snprintf(host, sizeof host, "localhost");
    const long pid = static_cast<long>(getpid());
#else
    std::snprintf(host, sizeof host, "localhost");
    const long pid = 0;
#endif
    unsigned char random[3];
    random_bytes(random, sizeof random);
    char name[320];
    std::snprintf(name, sizeof name, "%s/%ld/%02x%02x%02x", host, pid, random[0], random[1], random[2]);
    return name;
}

// Runs a store write that ends a job. While the lease can be trusted, an unreachable store is
// tried again (a database restarting); a fenced-off write (lease_lost, job_cancelled) means the
// store already holds the outcome, and nothing is written. Returns the record written, if any.
template <class Write>
std::optional<jobs::job_record> write_outcome(jobs::job_lease& lease, Write&& write) {
    std::chrono::milliseconds pause{50};
    for (;;) {
        try {
            return write();
        } catch (const jobs::lease_lost&) {
            return std::nullopt;
        } catch (const jobs::job_cancelled&) {
            return std::nullopt;
        } catch (const jobs::job_state_error&) {
            throw;
        } catch (const std::exception&) {
            if (std::chrono::steady_clock::now() + pause >= lease.valid_until) throw;  // it will be rescued
            std::this_thread::sleep_for(pause);
            pause = std::min(pause * 2, std::chrono::milliseconds(2000));
        }
    }
}

// One claimed job, start to end, on the calling thread. `cancel` is the worker's own stop
// signal (a pool shutting down, the caller of run_next_job): a handler it stopped hands its job
// back. The keeper cancels it too when the store fences the job off; then nothing is written.
// A busy worker passes `claim_next` (the job types it runs): a job that completes is then
// completed together with the claim of the next one (job_store::complete_and_claim), returned in
// `next`.
struct next_claim_request {
    const std::vector<std::string>& job_types;
    std::optional<jobs::claimed_job>& next;
};

inline std::optional<jobs::job_record> run_claimed_job(jobs::job_store& store, jobs::claimed_job& claimed,
                                                       const jobs::job_handler& handler, const jobs::worker_options& options,
                                                       cancel_token cancel,
                                                       std::optional<next_claim_request> claim_next = std::nullopt,
                                                       jobs::lease_scheduler* keepers = nullptr) {
    using namespace jobs;
    job_lease& lease = claimed.lease;
    // The handler's token: cancelled with the worker's, by the keeper when the store fences the
    // job off (the store then holds the outcome), and by itself when the lease can no longer be
    // trusted.
    cancel_token work = cancel.child();
    auto keeper = std::make_shared<lease_keeper>(store, lease, options.progress_interval, options.heartbeat,
                                                 [work](stop_reason, const std::string&) mutable { work.cancel(); }, work, keepers);
    const std::chrono::milliseconds limit = claimed.job.timeout.count() > 0 ? claimed.job.timeout : options.job_timeout;
    if (limit.count() > 0) keeper->set_deadline(std::chrono::steady_clock::now() + limit);
    job_context context(claimed.job, keeper, work);
    nlohmann::json result;
    std::string failure;
    failure_kind kind = failure_kind::permanent;
    bool ok = false;
    try {
        result = handler(context);
        ok = true;
    } catch (const error& e) {
        failure = e.what();
        kind = classify_failure(e.code());
    } catch (const std::exception& e) {
        failure = std::string("unexpected error: ") + e.what();
    } catch (...) {
        failure = "unexpected error (not a std::exception)";
    }
    keeper->stop();
    const bool stopped = work.is_cancelled();
    if (keeper->reason() == stop_reason::timed_out)
        return write_outcome(lease, [&] {
            return store.fail(lease, "timed out: the attempt ran longer than its limit of " + std::to_string(limit.count()) +
                                         " ms and was cancelled", failure_kind::retryable);
        });
    if (keeper->reason() != stop_reason::none) {  // cancelled or taken over: the store knows
        if (ok) context.completion_refused();
        return std::nullopt;
    }
    if (ok) {
        std::optional<job_record> recorded;
        if (claim_next && !cancel.is_cancelled())
            recorded = write_outcome(lease, [&] {
                jobs::completion_and_next done = store.complete_and_claim(lease, result, context.completion_message(),
                                                                          lease.worker_id, claim_next->job_types, options.lease);
                claim_next->next = std::move(done.next);
                return done.completed;
            });
        else
            recorded = write_outcome(lease, [&] { return store.complete(lease, result, context.completion_message()); });
        if (!recorded) context.completion_refused();  // fenced off: cancelled or taken over meanwhile
        return recorded;
    }
    if (stopped) {
        const char* why = cancel.is_cancelled() ? "the worker shut down before the job finished"
                                                : "the worker could not renew its lease in time";
        return write_outcome(lease, [&] { return store.release(lease, why); });
    }
    return write_outcome(lease, [&] { return store.fail(lease, failure, kind); });
}

}  // namespace detail
namespace jobs {

// Claims the next runnable job of the handlers' types and runs it on this thread. Returns its
// record as the run left it (as the store holds it, when the job was cancelled or taken over
// while it ran), or nullopt when nothing was runnable. Cancelling `cancel` hands the job back.
inline std::optional<job_record> run_next_job(job_store& store, const std::map<std::string, job_handler>& handlers,
                                              const worker_options& options = {}, cancel_token cancel = {}) {
    std::vector<std::string> types;
    for (const auto& entry : handlers) types.push_back(entry.first);
    const std::string worker = options.name.empty() ? detail::default_worker_name() : options.name;
    std::optional<claimed_job> claimed = store.claim(worker, types, options.lease);
    if (!claimed) return std::nullopt;
    const std::string id = claimed->job.id;
    auto outcome = detail::run_claimed_job(store, *claimed, handlers.at(claimed->job.job_type), options, cancel);
    if (outcome && options.on_job_end) options.on_job_end(*outcome);
    if (!outcome) return store.get(id);
    return outcome;
}

class worker_pool {
public:
    explicit worker_pool(job_store& store, worker_options options = {})
        : store_(store), options_(std::move(options)) {
        if (options_.threads == 0) throw error(errc::invalid_argument, "a worker pool needs at least one thread");
        if (options_.lease < options_.heartbeat * 3)
            throw error(errc::invalid_argument, "the lease must be at least three heartbeats long");
        if (options_.name.empty()) options_.name = detail::default_worker_name();
    }
    worker_pool(const worker_pool&) = delete;
    worker_pool& operator=(const worker_pool&) = delete;
    ~worker_pool() { stop(); }

    // Registers the handler of a job type; before start().
    void handle(const std::string& job_type, job_handler handler) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (started_) throw error(errc::invalid_argument, "register handlers before the pool starts");
        handlers_[job_type] = std::move(handler);
    }

    void start() {
        std::lock_guard<std::mutex> lock(mutex_);
        if (started_) return;
        if (handlers_.empty()) throw error(errc::invalid_argument, "a worker pool needs at least one handler");
        started_ = true;
        for (const auto& entry : handlers_) types_.push_back(entry.first);
        keepers_ = std::make_unique<lease_scheduler>();
        for (unsigned i = 0; i < options_.threads; ++i)
            threads_.emplace_back([this, i] { work(options_.name + "#" + std::to_string(i)); });
        if (options_.rescue_interval.count() > 0) threads_.emplace_back([this] { rescue(); });
        if (options_.maintenance_interval.count() > 0) threads_.emplace_back([this] { maintain(); });
    }

    // Stops claiming; running jobs may finish within the grace period; then their handlers are
    // cancelled and the jobs handed back (queued again at once). Joins every thread. Idempotent.
    void stop() { stop(options_.shutdown_grace); }
    void stop(std::chrono::milliseconds grace) {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (stopping_ && threads_.empty()) return;
            stopping_ = true;
        }
        store_.wakeup().notify_all();
        changed_.notify_all();
        {
            std::unique_lock<std::mutex> lock(mutex_);
            changed_.wait_for(lock, grace, [&] { return running_.empty(); });
            shutting_down_ = true;
            for (auto& entry : running_) entry.second.cancel();
        }
        for (std::thread& t : threads_) t.join();
        threads_.clear();
        keepers_.reset();
    }

    struct stats {
        unsigned threads = 0;
        unsigned running = 0;
        std::uint64_t claimed = 0, completed = 0, failed = 0, retried = 0, released = 0, lost = 0;
        std::uint64_t pruned = 0;  // finished jobs deleted by this pool's retention
        bool stopping = false;
    };
    stats snapshot() const {
        std::lock_guard<std::mutex> lock(mutex_);
        stats s = counts_;
        s.threads = options_.threads;
        s.running = static_cast<unsigned>(running_.size());
        s.stopping = stopping_;
        return s;
    }

    const std::string& name() const noexcept { return options_.name; }

    // Non-empty once the store refused a claim for good (errc::store_refused: a wrong password, a
    // revoked grant): the message; the threads that saw it claim no more. The process should
    // stop (the service and `tilekit jobs work` exit with it).
    std::string refusal() const {
        std::lock_guard<std::mutex> lock(mutex_);
        return refusal_;
    }

private:
    void work(const std::string& worker_id) {
        std::chrono::milliseconds backoff{0};
        std::optional<claimed_job> next;  // claimed together with the last completion
        while (!is_stopping()) {
            if (next) {
                claimed_job claimed = std::move(*next);
                next.reset();
                run(claimed, next);
                continue;
            }
            const std::uint64_t ticket = store_.wakeup().ticket();
            std::optional<claimed_job> claimed;
            try {
                claimed = store_.claim(worker_id, types_, options_.lease);
                backoff = std::chrono::milliseconds(0);
            } catch (const std::exception& e) {
                const auto* refused = dynamic_cast<const error*>(&e);
                if (refused && refused->code() == errc::store_refused) {
                    // The store refused this client for good (a password changed, a grant
                    // revoked): retrying cannot help. This thread stops claiming; refusal() says why.
                    {
                        std::lock_guard<std::mutex> lock(mutex_);
                        if (refusal_.empty()) refusal_ = e.what();
                    }
                    report_store_error(worker_id, e.what());
                    break;
                }
                // The store is down or busy: wait (longer each time, up to the poll interval) and retry.
                backoff = std::min(std::max(backoff * 2, std::chrono::milliseconds(50)), options_.poll_interval);
                report_store_error(worker_id, e.what());
                sleep_unless_stopping(backoff);
                continue;
            }
            if (!claimed) {
                if (!is_stopping()) store_.wakeup().wait(ticket, options_.poll_interval);
                continue;
            }
            // A wake-up reaches one idle thread; there may be more jobs where this one came from.
            store_.wakeup().notify();
            run(*claimed, next);
        }
        if (next) hand_back(*next);
    }

    // A job claimed with the last completion when the pool had begun to stop: queued again at
    // once, its attempt not counted.
    void hand_back(claimed_job& claimed) {
        try {
            detail::write_outcome(claimed.lease, [&] { return store_.release(claimed.lease, "the worker shut down before starting it"); });
        } catch (const std::exception& e) {
            report_store_error(claimed.lease.worker_id, std::string("job ") + claimed.job.id + ": " + e.what());
        }
    }

    void run(claimed_job& claimed, std::optional<claimed_job>& next) {
        cancel_token cancel;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            ++counts_.claimed;
            running_.emplace(claimed.lease.token, cancel);
            if (shutting_down_) cancel.cancel();
        }
        std::optional<job_record> outcome;
        try {
            std::optional<detail::next_claim_request> claim_next;
            if (!is_stopping()) claim_next.emplace(detail::next_claim_request{types_, next});
            outcome = detail::run_claimed_job(store_, claimed, handlers_.at(claimed.job.job_type), options_, cancel, claim_next,
                                              keepers_.get());
        } catch (const std::exception& e) {
            report_store_error(claimed.lease.worker_id, std::string("job ") + claimed.job.id + ": " + e.what());
        }
        {
            std::lock_guard<std::mutex> lock(mutex_);
            running_.erase(claimed.lease.token);
            if (!outcome) ++counts_.lost;
            else if (outcome->status == job_status::completed) ++counts_.completed;
            else if (outcome->status == job_status::failed) ++counts_.failed;
            else if (outcome->status == job_status::queued && outcome->releases > claimed.job.releases) ++counts_.released;
            else if (outcome->status == job_status::queued) ++counts_.retried;
        }
        changed_.notify_all();
        if (outcome && options_.on_job_end) options_.on_job_end(*outcome);
    }

    void rescue() {
        while (!is_stopping()) {
            try {
                store_.rescue_expired();
            } catch (const std::exception& e) {
                report_store_error(options_.name + "/rescuer", e.what());
            }
            sleep_unless_stopping(options_.rescue_interval);
        }
    }

    // Retention: the first pass soon after start, then every maintenance_interval. Many pools may
    // prune at once; each deletes in short batches.
    void maintain() {
        sleep_unless_stopping(std::min(options_.maintenance_interval, std::chrono::milliseconds(1000)));
        while (!is_stopping()) {
            try {
                const std::int64_t pruned = store_.prune(options_.retention);
                std::lock_guard<std::mutex> lock(mutex_);
                counts_.pruned += static_cast<std::uint64_t>(pruned);
            } catch (const std::exception& e) {
                report_store_error(options_.name + "/maintenance", e.what());
            }
            sleep_unless_stopping(options_.maintenance_interval);
        }
    }

    bool is_stopping() const {
        std::lock_guard<std::mutex> lock(mutex_);
        return stopping_;
    }

    void sleep_unless_stopping(std::chrono::milliseconds duration) {
        std::unique_lock<std::mutex> lock(mutex_);
        changed_.wait_for(lock, duration, [&] { return stopping_; });
    }

    // At most one line per second per pool, so a database outage does not flood the log.
    void report_store_error(const std::string& who, const std::string& what) {
        const auto now = std::chrono::steady_clock::now();
        std::lock_guard<std::mutex> lock(mutex_);
        if (now - last_report_ < std::chrono::seconds(1)) return;
        last_report_ = now;
        std::fprintf(stderr, "tilekit worker %s: %s\n", who.c_str(), what.c_str());
    }

    job_store& store_;
    worker_options options_;
    std::map<std::string, job_handler> handlers_;
    std::vector<std::string> types_;
    mutable std::mutex mutex_;
    std::condition_variable changed_;
    // The running executions by lease token, not job id: a pool may run two attempts of one job
    // (the first one still stopping after its lease was lost), and each must keep its own cancel.
    std::map<std::string, cancel_token> running_;
    stats counts_;
    bool started_ = false;
    bool stopping_ = false;
    bool shutting_down_ = false;
    std::chrono::steady_clock::time_point last_report_{};
    std::string refusal_;
    std::vector<std::thread> threads_;
    std::unique_ptr<lease_scheduler> keepers_;  // the lease keepers' thread, shared by all jobs
};

}  // namespace jobs
TILEKIT_NAMESPACE_END
// #include <tilekit/key.hpp>
// #include <tilekit/metadata.hpp>
// #include <tilekit/sink.hpp>
// #include <tilekit/source.hpp>
// #include <tilekit/tile_file.hpp>

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
