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
                       {"lease_expires_at", optional_text(r.lease_expires_at)}};
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
#include <condition_variable>
#include <cstdint>
#include <initializer_list>
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
    // was on does not count.
    virtual job_record release(job_lease& lease, const std::string& reason) = 0;

    // Not fenced: for the service and the operator. queued | running -> cancelled; the worker
    // running it learns at its next write (job_cancelled).
    virtual job_record cancel(const std::string& id, const std::string& reason) = 0;
    // Every running job whose lease has expired goes back to queued for another attempt (after the
    // backoff), or to failed as interrupted when its attempts are used up. Returns the jobs it
    // changed. Safe to call from many processes at once; workers call it periodically.
    virtual std::vector<job_record> rescue_expired() = 0;

    const retry_policy& retries() const noexcept { return retry_; }
    void set_retry_policy(const retry_policy& policy) { retry_ = policy; }  // before sharing the store

    job_wakeup& wakeup() noexcept { return wakeup_; }

private:
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

inline void apply_release(jobs::job_record& job, job_queue_state& state, const std::string& reason, job_clock::time_point now) {
    const std::string kept_error = job.error;
    apply_requeue(job, state, kept_error, "Queued again: " + reason, now);
    job.attempt = std::max(0, job.attempt - 1);
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
// Jobs are never evicted: a long-lived embedding that creates many jobs should use a durable store.

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
        job_record record = detail::make_job(job, state, detail::job_clock::now());  // the random id is drawn outside the lock
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
        const auto now = detail::job_clock::now();
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
            detail::apply_release(r, s, reason, now);
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
            const auto now = detail::job_clock::now();
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
        apply(changed, state, detail::job_clock::now());
        if (e.record.status == job_status::queued) queued_.erase({e.state.run_at, e.sequence, e.record.id});
        if (changed.status == job_status::queued) queued_.insert({state.run_at, e.sequence, changed.id});
        if (is_terminal(changed.status) && !is_terminal(e.record.status)) {
            const auto active = active_.find(active_key(changed));
            if (active != active_.end() && active->second == changed.id) active_.erase(active);
        }
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
enum class stop_reason { none, cancelled, lease_lost };

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
    std::size_t writes() const noexcept { return writes_.load(); }

private:
    friend class lease_scheduler;
    std::chrono::milliseconds period() const { return std::min(progress_interval_, heartbeat_); }

    // One round: the pending progress if any (which renews too), else a renewal when due.
    void tick(bool final) {
        std::vector<std::pair<int, std::string>> batch;
        std::size_t milestones_in_batch = 0;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (dirty_) {
                batch.assign(milestones_.begin(), milestones_.end());
                milestones_in_batch = batch.size();
                if (batch.empty() || batch.back().first != percent_ || batch.back().second != message_)
                    batch.emplace_back(percent_, message_);
            }
        }
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
    int percent_ = -1;
    std::string message_;
    std::vector<std::pair<int, std::string>> milestones_;
    bool dirty_ = false;
    bool stopping_ = false;
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
// #include <tilekit/jobs/tile_generation.hpp>
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

// #include <tilekit/jobs/job_store.hpp>
// #include <tilekit/jobs/progress.hpp>
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

    // The message the job is completed with when the handler returns ("Completed" unless set).
    void set_completion_message(std::string message) { completion_message_ = std::move(message); }
    const std::string& completion_message() const noexcept { return completion_message_; }

private:
    const job_record& job_;
    std::shared_ptr<lease_keeper> keeper_;
    cancel_token cancel_;
    std::string completion_message_ = "Completed";
};

using job_handler = std::function<nlohmann::json(job_context&)>;

// Which failures are worth another attempt: storage and I/O trouble, a lost lease, a store that
// could not be reached. Everything else (bad input, a version that is not a draft, an image over
// a limit, access denied, a bug) fails the job at once.
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
    if (keeper->reason() != stop_reason::none) return std::nullopt;  // cancelled or taken over: the store knows
    if (ok && claim_next && !cancel.is_cancelled())
        return write_outcome(lease, [&] {
            jobs::completion_and_next done = store.complete_and_claim(lease, result, context.completion_message(), lease.worker_id,
                                                                      claim_next->job_types, options.lease);
            claim_next->next = std::move(done.next);
            return done.completed;
        });
    if (ok) return write_outcome(lease, [&] { return store.complete(lease, result, context.completion_message()); });
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
        store_.wakeup().notify();
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
            running_.emplace(claimed.job.id, cancel);
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
            running_.erase(claimed.job.id);
            if (!outcome) ++counts_.lost;
            else if (outcome->status == job_status::completed) ++counts_.completed;
            else if (outcome->status == job_status::failed) ++counts_.failed;
            else if (outcome->status == job_status::queued && outcome->attempt < claimed.lease.attempt) ++counts_.released;
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
    std::map<std::string, cancel_token> running_;
    stats counts_;
    bool started_ = false;
    bool stopping_ = false;
    bool shutting_down_ = false;
    std::chrono::steady_clock::time_point last_report_{};
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
