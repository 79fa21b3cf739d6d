#pragma once
// The S3 storage sink: many PUTs in flight over reused connections (one curl multi handle on a
// background thread), retries with full-jitter backoff re-signed on every attempt, Retry-After
// honoured, and backpressure: put() blocks while `max_pending` objects already wait, so memory
// stays bounded however fast the tiler encodes. flush() waits for every upload and throws the
// first failure with its key; after a failure nothing else is uploaded, so a run whose uploads
// failed never publishes its manifest. remove() deletes right away (a blocking DELETE); list()
// waits for the uploads put so far, then lists (ListObjectsV2, blocking).

#include <tilekit/key.hpp>
#include <tilekit/s3/client.hpp>
#include <tilekit/s3/config.hpp>
#include <tilekit/s3/detail/curl.hpp>
#include <tilekit/s3/detail/transfer.hpp>
#include <tilekit/s3/request.hpp>
#include <tilekit/sink.hpp>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

TILEKIT_NAMESPACE_BEGIN
namespace s3 {

struct sink_options {
    unsigned concurrency = 32;       // requests in flight
    std::size_t max_pending = 128;   // objects waiting to start (or to retry) before put() blocks
    retry_policy retry;
    timeouts limits;
    bool content_md5 = true;
    bool if_none_match = false;      // create only; a 412 on a retry counts as our earlier try landing
    list_options listing;            // list(): page size and limits
};

struct sink_stats {
    std::uint64_t objects = 0;  // stored
    std::uint64_t bytes = 0;
    std::uint64_t retries = 0;
};

class s3_sink final : public storage_sink {
public:
    explicit s3_sink(const config& c, sink_options options = {})
        : signer_(c), blocking_(c, options.retry, options.limits), options_(options),
          slots_(std::max(1u, options.concurrency)) {
        detail::curl_global();
        multi_ = curl_multi_init();
        if (!multi_) throw error(errc::storage_error, "libcurl: cannot create a multi handle");
        curl_multi_setopt(multi_, CURLMOPT_MAX_HOST_CONNECTIONS, static_cast<long>(slots_.size()));
        curl_multi_setopt(multi_, CURLMOPT_MAX_TOTAL_CONNECTIONS, static_cast<long>(slots_.size()));
        for (std::size_t i = 0; i < slots_.size(); ++i) free_slots_.push_back(slots_.size() - 1 - i);
        thread_ = std::thread([this] { loop(); });
    }

    s3_sink(const s3_sink&) = delete;
    s3_sink& operator=(const s3_sink&) = delete;

    // Abandons uploads that have not finished; call flush() first to wait for them.
    ~s3_sink() override {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            stopping_ = true;
            ready_.clear();
            delayed_.clear();
        }
        curl_multi_wakeup(multi_);
        thread_.join();
        for (slot& s : slots_)
            if (s.job) curl_multi_remove_handle(multi_, s.easy.get());
        curl_multi_cleanup(multi_);
    }

    void put(storage_object object) override {
        validate_key(object.key);
        auto job = std::make_unique<transfer>();
        job->payload_hash = detail::sha256_hex(object.body.data(), object.body.size());
        if (!object.content_type.empty()) job->headers.emplace_back("content-type", object.content_type);
        if (!object.cache_control.empty()) job->headers.emplace_back("cache-control", object.cache_control);
        if (options_.content_md5)
            job->headers.emplace_back("content-md5", detail::content_md5(object.body.data(), object.body.size()));
        if (options_.if_none_match) job->headers.emplace_back("if-none-match", "*");
        job->headers.emplace_back("Expect", "");
        job->object = std::move(object);
        {
            std::unique_lock<std::mutex> lock(mutex_);
            changed_.wait(lock, [&] { return failure_ || ready_.size() + delayed_.size() < options_.max_pending; });
            if (failure_) std::rethrow_exception(failure_);
            ready_.push_back(std::move(job));
        }
        curl_multi_wakeup(multi_);
    }

    void flush() override {
        std::unique_lock<std::mutex> lock(mutex_);
        changed_.wait(lock, [&] { return ready_.empty() && delayed_.empty() && in_flight_ == 0; });
        if (failure_) std::rethrow_exception(failure_);
    }

    // Deletes an object right away (a blocking DELETE with the sink's retry policy and timeouts).
    // True means the delete request succeeded: S3 also succeeds for a key that did not exist, so
    // it does not say an object was there. A failure throws s3_error.
    bool remove(const std::string& key) override {
        blocking_.remove(key);
        return true;
    }

    bool can_list() const override { return true; }

    // Every key under `prefix` (the bucket's whole key space: this sink writes each key as the
    // object name, with no prefix of its own). Pending puts are visible: list() first waits for
    // every upload put so far, as flush() does (and throws the first upload failure as flush()
    // does), then lists; S3 and R2 list what was written at once. Keys tilekit would refuse to
    // write or delete (validate_key: '//', '..', a leading '/', ...) are skipped, so every key
    // given to `on_key` can be passed to remove(); on_key may do that right away. Listing errors
    // are s3_error, as for client::list.
    void list(const std::string& prefix, const std::function<void(const std::string& key)>& on_key) override {
        flush();
        blocking_.list(
            prefix,
            [&](const std::string& key) {
                if (key_problem(key).empty()) on_key(key);
            },
            options_.listing);
    }

    // Conditional writes go straight to the server, one blocking request each (the publish
    // protocol's pointer, not tiles): If-Match on the ETag, If-None-Match: * for "absent".
    bool can_compare_and_put() const override { return true; }
    std::optional<versioned_object> read(const std::string& key) override {
        validate_key(key);
        std::optional<client::versioned_body> found = blocking_.get_versioned(key, std::uint64_t{64} << 20);
        if (!found) return std::nullopt;
        versioned_object out;
        out.object.key = key;
        out.object.body = std::move(found->body);
        out.object.content_type = std::move(found->content_type);
        out.version = std::move(found->etag);
        return out;
    }
    conditional_put_result put_if(storage_object object, const std::string& expected_version) override {
        validate_key(object.key);
        put_options options;
        options.content_type = object.content_type;
        options.cache_control = object.cache_control;
        options.content_md5 = options_.content_md5;
        std::optional<std::string> etag = blocking_.put_if(object.key, object.body, expected_version, options);
        if (etag) return {true, *etag};
        const std::optional<object_info> now = blocking_.head(object.key);
        return {false, now ? now->etag : std::string()};
    }

    sink_stats stats() const {
        std::lock_guard<std::mutex> lock(mutex_);
        return stats_;
    }

    const request_signer& signer() const noexcept { return signer_; }

private:
    using steady = std::chrono::steady_clock;

    struct transfer {
        storage_object object;
        std::string payload_hash;
        header_list headers;
        int attempt = 0;
        bool clock_fixed = false;
        steady::time_point not_before{};
    };

    struct slot {
        detail::easy_handle easy;
        detail::header_slist headers;
        detail::upload_cursor upload;
        detail::s3_response answer;
        http_request request;
        std::unique_ptr<transfer> job;
    };

    void loop() {
        for (;;) {
            std::vector<std::unique_ptr<transfer>> starting;
            long wait_ms = 200;
            {
                std::lock_guard<std::mutex> lock(mutex_);
                if (stopping_ && in_flight_ == 0) return;
                const steady::time_point now = steady::now();
                while (!stopping_ && in_flight_ + starting.size() < slots_.size()) {
                    auto due = std::find_if(delayed_.begin(), delayed_.end(),
                                            [&](const auto& job) { return job->not_before <= now; });
                    if (due != delayed_.end()) {
                        starting.push_back(std::move(*due));
                        delayed_.erase(due);
                    } else if (!ready_.empty()) {
                        starting.push_back(std::move(ready_.front()));
                        ready_.pop_front();
                    } else {
                        break;
                    }
                }
                in_flight_ += starting.size();
                for (const auto& job : delayed_) {
                    const auto until = std::chrono::duration_cast<std::chrono::milliseconds>(job->not_before - now).count();
                    wait_ms = std::max<long>(0, std::min<long>(wait_ms, static_cast<long>(until) + 1));
                }
            }
            if (!starting.empty()) changed_.notify_all();  // room for put()
            for (auto& job : starting) start(std::move(job));

            int running = 0;
            curl_multi_perform(multi_, &running);
            int queued = 0;
            bool finished_any = false;
            while (CURLMsg* message = curl_multi_info_read(multi_, &queued)) {
                if (message->msg != CURLMSG_DONE) continue;
                finish(message->easy_handle, message->data.result);
                finished_any = true;
            }
            // Freed slots are refilled at once: polling now could sleep with work queued.
            if (finished_any) continue;
            curl_multi_poll(multi_, nullptr, 0, static_cast<int>(wait_ms), nullptr);
        }
    }

    void start(std::unique_ptr<transfer> job) {
        const std::size_t index = free_slots_.back();
        free_slots_.pop_back();
        slot& s = slots_[index];
        try {
            if (!s.easy) s.easy = detail::make_easy();
            else curl_easy_reset(s.easy.get());
            ++job->attempt;
            s.request = signer_.sign("PUT", job->object.key, "", job->headers, job->payload_hash, clock_.now());
            s.headers = detail::make_slist(s.request.headers);
            s.upload = detail::upload_cursor{job->object.body.data(), job->object.body.size(), 0};
            s.answer.reset();
            detail::setup_easy(s.easy.get(), s.request, s.headers, &s.upload, s.answer, options_.limits);
            curl_easy_setopt(s.easy.get(), CURLOPT_PRIVATE, reinterpret_cast<char*>(index));
            s.job = std::move(job);
            if (curl_multi_add_handle(multi_, s.easy.get()) != CURLM_OK)
                throw error(errc::storage_error, "libcurl refused a transfer");
        } catch (...) {
            s.job.reset();
            free_slots_.push_back(index);
            std::lock_guard<std::mutex> lock(mutex_);
            --in_flight_;
            fail_locked(std::current_exception());
        }
    }

    void finish(CURL* easy, CURLcode code) {
        char* private_data = nullptr;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, &private_data);
        const auto index = reinterpret_cast<std::size_t>(private_data);
        slot& s = slots_[index];
        curl_multi_remove_handle(multi_, easy);
        s.answer.curl_code = code;
        curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &s.answer.status);
        std::unique_ptr<transfer> job = std::move(s.job);
        free_slots_.push_back(index);
        if (options_.if_none_match && job->attempt > 1 && s.answer.status == 412) s.answer.status = 200;
        const detail::s3_verdict v = detail::judge_s3_response(s.answer);

        std::lock_guard<std::mutex> lock(mutex_);
        --in_flight_;
        changed_.notify_all();
        if (stopping_) return;
        if (v == detail::s3_verdict::done) {
            ++stats_.objects;
            stats_.bytes += job->object.body.size();
            return;
        }
        if (v == detail::s3_verdict::fix_clock_and_retry && !job->clock_fixed) {
            job->clock_fixed = true;
            clock_.set_seconds(detail::skew_from_date(s.answer.date));
            job->not_before = steady::now();
            delayed_.push_back(std::move(job));
            return;
        }
        if (v == detail::s3_verdict::retry && job->attempt < options_.retry.max_attempts && !failure_) {
            ++stats_.retries;
            job->not_before = steady::now() + detail::s3_backoff(options_.retry, job->attempt, s.answer, random_);
            delayed_.push_back(std::move(job));
            return;
        }
        fail_locked(std::make_exception_ptr(detail::make_s3_error("PUT", job->object.key, s.answer, job->attempt)));
    }

    // The first failure wins; nothing queued is uploaded after it.
    void fail_locked(std::exception_ptr failure) {
        if (!failure_) failure_ = std::move(failure);
        ready_.clear();
        delayed_.clear();
        changed_.notify_all();
    }

    request_signer signer_;
    client blocking_;  // remove() and list()
    sink_options options_;
    clock_offset clock_;
    std::vector<slot> slots_;           // touched by the loop thread only
    std::vector<std::size_t> free_slots_;  // loop thread only
    std::mt19937_64 random_{std::random_device{}()};
    CURLM* multi_ = nullptr;

    mutable std::mutex mutex_;
    std::condition_variable changed_;
    std::deque<std::unique_ptr<transfer>> ready_;
    std::vector<std::unique_ptr<transfer>> delayed_;
    std::size_t in_flight_ = 0;
    std::exception_ptr failure_;
    sink_stats stats_;
    bool stopping_ = false;
    std::thread thread_;
};

}  // namespace s3
TILEKIT_NAMESPACE_END
