#include "workers.hpp"

#include <cstdio>

namespace tilekit_service {

worker_pool::worker_pool(unsigned workers, unsigned queue_capacity) : capacity_(queue_capacity) {
    for (unsigned i = 0; i < workers; ++i) threads_.emplace_back([this] { run(); });
}

worker_pool::~worker_pool() {
    shutdown(std::chrono::milliseconds(0), [](const std::string&, bool) {});
}

bool worker_pool::try_reserve() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_ || queue_.size() + reserved_ >= capacity_) return false;
    ++reserved_;
    return true;
}

void worker_pool::release() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (reserved_) --reserved_;
}

void worker_pool::submit(const std::string& job_id, task work) {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (reserved_) --reserved_;
        queue_.push_back({job_id, std::move(work)});
    }
    wake_.notify_one();
}

worker_pool::stats worker_pool::snapshot() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return {static_cast<unsigned>(threads_.size()), capacity_, static_cast<unsigned>(queue_.size() + reserved_),
            static_cast<unsigned>(running_.size()), stopping_};
}

void worker_pool::run() {
    for (;;) {
        entry next;
        tilekit::cancel_token token;
        {
            std::unique_lock<std::mutex> lock(mutex_);
            wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
            if (queue_.empty()) return;  // stopping
            next = std::move(queue_.front());
            queue_.pop_front();
            running_[next.job_id] = token;
        }
        try {
            next.work(token);
        } catch (const std::exception& e) {
            std::fprintf(stderr, "tilekit-service: job %s: %s\n", next.job_id.c_str(), e.what());
        } catch (...) {
            std::fprintf(stderr, "tilekit-service: job %s: unknown error\n", next.job_id.c_str());
        }
        {
            std::lock_guard<std::mutex> lock(mutex_);
            running_.erase(next.job_id);
        }
        idle_.notify_all();
    }
}

void worker_pool::shutdown(std::chrono::milliseconds grace,
                           const std::function<void(const std::string&, bool)>& abandon) {
    std::deque<entry> never_started;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (stopping_ && threads_.empty()) return;
        stopping_ = true;
        never_started.swap(queue_);
    }
    wake_.notify_all();
    for (const entry& e : never_started) abandon(e.job_id, false);

    std::map<std::string, tilekit::cancel_token> overdue;
    {
        std::unique_lock<std::mutex> lock(mutex_);
        idle_.wait_for(lock, grace, [&] { return running_.empty(); });
        overdue = running_;
    }
    for (auto& item : overdue) {
        abandon(item.first, true);
        item.second.cancel();
    }
    for (std::thread& t : threads_) t.join();
    threads_.clear();
}

}  // namespace tilekit_service
