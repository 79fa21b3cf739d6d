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
