#pragma once
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

#include <tilekit/jobs/job.hpp>

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
