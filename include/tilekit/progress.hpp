#pragma once
// Progress reporting and cooperative cancellation for a tiling run.

#include <tilekit/config.hpp>

#include <atomic>
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

// A cheap, copyable handle: every copy sees cancel() from any other copy, from any thread.
class cancel_token {
public:
    void cancel() noexcept { state_->store(true, std::memory_order_relaxed); }
    bool is_cancelled() const noexcept { return state_->load(std::memory_order_relaxed); }

private:
    std::shared_ptr<std::atomic<bool>> state_ = std::make_shared<std::atomic<bool>>(false);
};

TILEKIT_NAMESPACE_END
