#pragma once
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

#include <tilekit/jobs/job_store.hpp>
#include <tilekit/jobs/progress.hpp>
#include <tilekit/progress.hpp>

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
