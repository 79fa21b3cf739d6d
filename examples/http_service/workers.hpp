#pragma once
// A bounded pool for tile-generation jobs: N worker threads and a queue of at most Q waiting
// jobs. A request first reserves a place (try_reserve); only then is the job record created and
// submitted, so a full service answers 503 without leaving a queued job behind.
// shutdown(): stop accepting, hand back the queued jobs, give running jobs a grace period,
// then hand back the ones still running (and cancel them).

#include <tilekit/progress.hpp>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace tilekit_service {

class worker_pool {
public:
    using task = std::function<void(tilekit::cancel_token)>;

    worker_pool(unsigned workers, unsigned queue_capacity);
    ~worker_pool();
    worker_pool(const worker_pool&) = delete;
    worker_pool& operator=(const worker_pool&) = delete;

    // A place in the queue, or false when the queue is full or the pool is stopping.
    bool try_reserve();
    void release();  // gives back a reservation that was not submitted
    void submit(const std::string& job_id, task work);  // uses a reservation

    struct stats {
        unsigned workers, capacity, queued, running;
        bool stopping;
    };
    stats snapshot() const;

    // `abandon` is called for every job that never started, then for every job still
    // running when the grace period ends (its token is cancelled too). Joins the threads.
    void shutdown(std::chrono::milliseconds grace, const std::function<void(const std::string& job_id, bool was_running)>& abandon);

private:
    void run();

    struct entry {
        std::string job_id;
        task work;
    };
    const unsigned capacity_;
    mutable std::mutex mutex_;
    std::condition_variable wake_, idle_;
    std::deque<entry> queue_;
    unsigned reserved_ = 0;
    std::map<std::string, tilekit::cancel_token> running_;
    bool stopping_ = false;
    std::vector<std::thread> threads_;
};

}  // namespace tilekit_service
