#pragma once
// Turns per-tile completions from many threads into a short, monotonic series of callbacks.

#include <tilekit/progress.hpp>

#include <atomic>
#include <cstdint>
#include <mutex>

TILEKIT_NAMESPACE_BEGIN
namespace detail {

class progress_reporter {
public:
    progress_reporter(progress_callback callback, std::uint64_t total)
        : callback_(std::move(callback)), total_(total), step_(total <= 1000 ? 1 : (total + 999) / 1000) {}

    void tile_finished() {
        const std::uint64_t done = done_.fetch_add(1, std::memory_order_relaxed) + 1;
        if (!callback_ || (done % step_ != 0 && done != total_)) return;
        std::lock_guard<std::mutex> lock(mutex_);
        const std::uint64_t now = done_.load(std::memory_order_relaxed);
        if (now <= reported_) return;  // a later thread already reported a higher count
        reported_ = now;
        callback_(tile_progress{now, total_});
    }

    std::uint64_t done() const noexcept { return done_.load(std::memory_order_relaxed); }

private:
    progress_callback callback_;
    const std::uint64_t total_;
    const std::uint64_t step_;
    std::atomic<std::uint64_t> done_{0};
    std::mutex mutex_;
    std::uint64_t reported_ = 0;
};

}  // namespace detail
TILEKIT_NAMESPACE_END
