#pragma once
// Progress reporting and cooperative cancellation for a tiling run.

#include <tilekit/config.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>

TILEKIT_NAMESPACE_BEGIN

struct tile_progress {
    std::uint64_t tiles_done = 0;   // tiles encoded and handed to the sink (skipped blanks count)
    std::uint64_t tiles_total = 0;  // tiles in the whole pyramid
};

// Called with non-decreasing tiles_done, from one thread at a time, at most about a thousand
// times per run and always once with tiles_done == tiles_total when the tiles are done.
using progress_callback = std::function<void(const tile_progress&)>;

// A cheap, copyable handle: every copy sees cancel() from any other copy, from any thread. Once
// cancelled it stays cancelled. A token can also cancel itself at a deadline (cancel_at): a job
// worker sets the time after which its lease can no longer be trusted, so the work stops then
// even if nobody is able to call cancel() (the thread that would is stuck talking to an
// unreachable job store). child() gives a token that is cancelled with its parent, and on its
// own without cancelling the parent: one job's deadline must not cancel the worker.
class cancel_token {
public:
    void cancel() noexcept { state_->cancelled.store(true, std::memory_order_relaxed); }

    bool is_cancelled() const noexcept {
        for (const state* s = state_.get(); s != nullptr; s = s->parent.get()) {
            if (s->cancelled.load(std::memory_order_relaxed)) return true;
            const std::int64_t deadline = s->deadline.load(std::memory_order_relaxed);
            if (deadline != no_deadline && std::chrono::steady_clock::now().time_since_epoch().count() >= deadline) {
                s->cancelled.store(true, std::memory_order_relaxed);  // a passed deadline stays passed
                return true;
            }
        }
        return false;
    }

    // Cancelled from `when` on, unless moved again before then.
    void cancel_at(std::chrono::steady_clock::time_point when) noexcept {
        state_->deadline.store(static_cast<std::int64_t>(when.time_since_epoch().count()), std::memory_order_relaxed);
    }

    cancel_token child() const {
        cancel_token token;
        token.state_->parent = state_;
        return token;
    }

private:
    static constexpr std::int64_t no_deadline = INT64_MAX;
    struct state {
        mutable std::atomic<bool> cancelled{false};
        std::atomic<std::int64_t> deadline{no_deadline};  // steady_clock ticks
        std::shared_ptr<const state> parent;
    };
    std::shared_ptr<state> state_ = std::make_shared<state>();
};

TILEKIT_NAMESPACE_END
