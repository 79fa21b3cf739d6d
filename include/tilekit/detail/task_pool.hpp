#pragma once
// A fixed set of worker threads with a bounded queue. When the queue is full the submitting
// thread runs the task itself, which both bounds memory (at most `capacity` finished-but-unsent
// tiles wait) and keeps every core busy. The first exception from a task is kept and rethrown
// by wait(); later tasks are then dropped.

#include <tilekit/config.hpp>

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

TILEKIT_NAMESPACE_BEGIN
namespace detail {

class task_pool {
public:
    task_pool(unsigned workers, std::size_t capacity) : capacity_(capacity == 0 ? 1 : capacity) {
        threads_.reserve(workers);
        for (unsigned i = 0; i < workers; ++i) threads_.emplace_back([this] { work(); });
    }

    task_pool(const task_pool&) = delete;
    task_pool& operator=(const task_pool&) = delete;

    ~task_pool() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            stopping_ = true;
            queue_.clear();
        }
        wake_workers_.notify_all();
        for (auto& thread : threads_) thread.join();
    }

    void submit(std::function<void()> task) {
        {
            std::unique_lock<std::mutex> lock(mutex_);
            if (failure_) return;
            if (!threads_.empty() && queue_.size() < capacity_) {
                queue_.push_back(std::move(task));
                ++pending_;
                lock.unlock();
                wake_workers_.notify_one();
                return;
            }
            ++pending_;
        }
        run(task);
    }

    // Waits for every submitted task, then rethrows the first failure.
    void wait() {
        std::unique_lock<std::mutex> lock(mutex_);
        all_done_.wait(lock, [this] { return pending_ == 0; });
        if (failure_) std::rethrow_exception(failure_);
    }

    bool failed() const {
        std::lock_guard<std::mutex> lock(mutex_);
        return failure_ != nullptr;
    }

private:
    void run(std::function<void()>& task) {
        try {
            task();
        } catch (...) {
            std::lock_guard<std::mutex> lock(mutex_);
            if (!failure_) failure_ = std::current_exception();
            pending_ -= queue_.size();
            queue_.clear();
        }
        std::lock_guard<std::mutex> lock(mutex_);
        if (--pending_ == 0) all_done_.notify_all();
    }

    void work() {
        for (;;) {
            std::function<void()> task;
            {
                std::unique_lock<std::mutex> lock(mutex_);
                wake_workers_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
                if (stopping_) return;
                task = std::move(queue_.front());
                queue_.pop_front();
            }
            run(task);
        }
    }

    const std::size_t capacity_;
    mutable std::mutex mutex_;
    std::condition_variable wake_workers_;
    std::condition_variable all_done_;
    std::deque<std::function<void()>> queue_;
    std::vector<std::thread> threads_;
    std::size_t pending_ = 0;
    std::exception_ptr failure_;
    bool stopping_ = false;
};

}  // namespace detail
TILEKIT_NAMESPACE_END
