#pragma once
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

#include <tilekit/jobs/job_store.hpp>
#include <tilekit/progress.hpp>

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
