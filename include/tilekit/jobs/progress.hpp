#pragma once
// Job progress as the service this replaces showed it: each stage owns a share of the bar
//   download 0-10, generating tiles 10-80, uploading 80-95, finalising 95-100
// and the store is written from a background thread at most every `interval` (and only when
// the whole percent or the message changed), never per tile, so a slow store cannot slow the
// tiler. Because tilekit uploads while it tiles, "Generating tiles" counts tiles handed to the
// sink, whose queue is bounded: the bar follows the slower of the two streams, and the
// "Uploading" share covers only the uploads still in flight when the last tile is made.

#include <tilekit/jobs/job_store.hpp>
#include <tilekit/progress.hpp>

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
