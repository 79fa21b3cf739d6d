#pragma once
// A blocking S3 client: PUT, GET (to memory or a file), HEAD, DELETE, listing (ListObjectsV2)
// and presigned URLs, with
// retries (full-jitter backoff, re-signed every attempt, Retry-After honoured) and the clock
// corrected once when the server says RequestTimeTooSkewed. Thread-safe; connections are kept
// alive in a small pool of curl handles. Also downloads by presigned URL, used verbatim.

#include <tilekit/error.hpp>
#include <tilekit/s3/config.hpp>
#include <tilekit/s3/detail/curl.hpp>
#include <tilekit/s3/detail/list_xml.hpp>
#include <tilekit/s3/detail/transfer.hpp>
#include <tilekit/s3/error.hpp>
#include <tilekit/s3/request.hpp>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

TILEKIT_NAMESPACE_BEGIN
namespace s3 {

struct put_options {
    std::string content_type = "application/octet-stream";
    std::string cache_control;
    bool content_md5 = true;     // the server verifies the body (BadDigest otherwise)
    bool if_none_match = false;  // create only: 412 when the key exists
    std::string if_match;        // replace only that version: 412 when the ETag differs (404 when absent)
};

struct object_info {
    std::uint64_t size = 0;
    std::string etag;
};

// How client::list() pages through a listing.
struct list_options {
    unsigned max_keys = 1000;                      // keys per page (ListObjectsV2 max-keys, 1..1000)
    std::uint64_t max_response_bytes = 16u << 20;  // a larger page is refused (ResponseTooLarge)
    unsigned max_empty_pages = 100;                // more truncated pages without a key in a row: an error
};

}  // namespace s3
namespace detail {

// The query of one ListObjectsV2 request, each value strictly encoded (the signer sorts it).
inline std::string list_objects_v2_query(const std::string& prefix, unsigned max_keys, const std::string& token) {
    std::string query = "list-type=2&max-keys=" + std::to_string(max_keys) + "&prefix=" + uri_encode(prefix, false);
    if (!token.empty()) query += "&continuation-token=" + uri_encode(token, false);
    return query;
}

// A listing prefix: empty (the whole bucket) or up to 1024 bytes without NUL or control
// characters. Unlike a key it may end with '/'.
inline void check_list_prefix(const std::string& prefix) {
    if (prefix.size() > 1024) throw error(errc::invalid_argument, "S3 listing prefix is longer than 1024 bytes");
    for (const char c : prefix)
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
            throw error(errc::invalid_argument, "S3 listing prefix contains a NUL or control character");
}

// Curl handles kept for reuse, so keep-alive connections survive between calls.
class easy_pool {
public:
    easy_handle acquire() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (!idle_.empty()) {
                easy_handle easy = std::move(idle_.back());
                idle_.pop_back();
                curl_easy_reset(easy.get());
                return easy;
            }
        }
        return make_easy();
    }
    void release(easy_handle easy) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (idle_.size() < 16) idle_.push_back(std::move(easy));
    }

private:
    std::mutex mutex_;
    std::vector<easy_handle> idle_;
};

// Runs one request to completion with retries. `prepare` is called before every attempt with
// the response to fill (to reset a download file, for example).
template <class Sign, class Prepare>
s3_response run_s3_request(easy_pool& pool, const s3::retry_policy& policy, const s3::timeouts& limits,
                           s3::clock_offset& clock, const std::string& method, const std::string& key,
                           const std::uint8_t* body, std::size_t body_size, Sign&& sign, Prepare&& prepare,
                           bool accept_412_on_retry = false) {
    thread_local std::mt19937_64 random{std::random_device{}()};
    bool clock_fixed = false;
    for (int attempt = 1;; ++attempt) {
        const s3::http_request request = sign(clock.now());
        const header_slist headers = make_slist(request.headers);
        upload_cursor upload{body, body_size, 0};
        s3_response answer;
        prepare(answer);
        easy_handle easy = pool.acquire();
        setup_easy(easy.get(), request, headers, &upload, answer, limits);
        answer.curl_code = curl_easy_perform(easy.get());
        curl_easy_getinfo(easy.get(), CURLINFO_RESPONSE_CODE, &answer.status);
        curl_off_t length = -1;
        if (curl_easy_getinfo(easy.get(), CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &length) == CURLE_OK && length >= 0)
            answer.content_length = static_cast<std::uint64_t>(length);
        pool.release(std::move(easy));
        if (answer.cancelled) throw cancelled_error();
        if (accept_412_on_retry && attempt > 1 && answer.status == 412) answer.status = 200;  // our earlier try landed
        const s3_verdict v = judge_s3_response(answer);
        if (v == s3_verdict::done) return answer;
        if (v == s3_verdict::fix_clock_and_retry && !clock_fixed) {
            clock_fixed = true;
            clock.set_seconds(skew_from_date(answer.date));
            continue;
        }
        if (v != s3_verdict::retry || attempt >= policy.max_attempts) throw make_s3_error(method, key, answer, attempt);
        std::this_thread::sleep_for(s3_backoff(policy, attempt, answer, random));
        if (answer.cancel && answer.cancel->is_cancelled()) throw cancelled_error();
    }
}

}  // namespace detail
namespace s3 {

class client {
public:
    explicit client(config c, retry_policy retry = {}, timeouts limits = {})
        : signer_(std::move(c)), retry_(retry), limits_(limits) {
        detail::curl_global();
    }

    const request_signer& signer() const noexcept { return signer_; }
    const config& settings() const noexcept { return signer_.settings(); }
    clock_offset& clock() noexcept { return clock_; }

    // Returns the ETag the server gave the new object (empty if it sent none).
    std::string put(const std::string& key, const std::uint8_t* data, std::size_t size, const put_options& options = {}) {
        detail::check_object_key(key);
        const std::string payload_hash = detail::sha256_hex(data, size);
        header_list headers = put_headers(data, size, options);
        return detail::run_s3_request(
            pool_, retry_, limits_, clock_, "PUT", key, data, size,
            [&](auto now) { return signer_.sign("PUT", key, "", headers, payload_hash, now); }, [](detail::s3_response&) {},
            options.if_none_match && options.if_match.empty()).etag;
    }

    std::string put(const std::string& key, const std::vector<std::uint8_t>& data, const put_options& options = {}) {
        return put(key, data.data(), data.size(), options);
    }

    // A compare-and-swap: stores the object only when the key's ETag is `expected_etag` (empty:
    // only when the key is absent), with If-Match / If-None-Match: * as S3 and R2 document them.
    // Returns the new ETag, or nothing when the condition failed (412, or 404 for If-Match on a
    // missing key). A retry after a lost answer can meet 412 for its own earlier try; so a 412 is
    // looked at again: when the object's ETag is now our body's MD5 (the ETag of a single PUT),
    // the object holds our bytes and the write counts as done.
    std::optional<std::string> put_if(const std::string& key, const std::vector<std::uint8_t>& data,
                                      const std::string& expected_etag, put_options options = {}) {
        options.if_none_match = expected_etag.empty();
        options.if_match = expected_etag;
        try {
            return put(key, data, options);
        } catch (const s3_error& e) {
            if (e.http_status() != 412 && !(e.http_status() == 404 && !expected_etag.empty())) throw;
        }
        const std::optional<object_info> now = head(key);
        if (now && unquote(now->etag) == detail::md5_hex(data.data(), data.size())) return now->etag;
        return std::nullopt;
    }

    // The object's bytes, ETag and Content-Type; nothing when it does not exist.
    struct versioned_body {
        std::vector<std::uint8_t> body;
        std::string etag;
        std::string content_type;
    };
    std::optional<versioned_body> get_versioned(const std::string& key, std::uint64_t max_bytes = std::uint64_t{1} << 30) {
        detail::check_object_key(key);
        try {
            const detail::s3_response answer = detail::run_s3_request(
                pool_, retry_, limits_, clock_, "GET", key, nullptr, 0,
                [&](auto now) { return signer_.sign("GET", key, "", {}, empty_hash(), now); },
                [&](detail::s3_response& r) { r.max_body = max_bytes; });
            return versioned_body{std::vector<std::uint8_t>(answer.body.begin(), answer.body.end()), answer.etag,
                                  answer.content_type};
        } catch (const s3_error& e) {
            if (e.http_status() == 404) return std::nullopt;
            throw;
        }
    }

    static std::string unquote(const std::string& etag) {
        std::string text = etag;
        if (text.size() >= 2 && text.compare(0, 2, "W/") == 0) text.erase(0, 2);
        if (text.size() >= 2 && text.front() == '"' && text.back() == '"') text = text.substr(1, text.size() - 2);
        return text;
    }

    // The object's bytes; refuses objects larger than max_bytes.
    std::vector<std::uint8_t> get(const std::string& key, std::uint64_t max_bytes = std::uint64_t{1} << 30) {
        detail::check_object_key(key);
        const detail::s3_response answer = detail::run_s3_request(
            pool_, retry_, limits_, clock_, "GET", key, nullptr, 0,
            [&](auto now) { return signer_.sign("GET", key, "", {}, empty_hash(), now); },
            [&](detail::s3_response& r) { r.max_body = max_bytes; });
        return std::vector<std::uint8_t>(answer.body.begin(), answer.body.end());
    }

    // Streams the object into `path` (through a temporary file, renamed when complete). With
    // `cancel`, a cancel stops the transfer within a fraction of a second (cancelled_error) and
    // leaves no file.
    void get_to_file(const std::string& key, const std::string& path, std::uint64_t max_bytes = std::uint64_t{1} << 34,
                     const cancel_token* cancel = nullptr) {
        detail::check_object_key(key);
        download_to_file(path, max_bytes, "GET", key,
                         [&](auto now) { return signer_.sign("GET", key, "", {}, empty_hash(), now); }, cancel);
    }

    // Size and ETag, or nothing when the object does not exist.
    std::optional<object_info> head(const std::string& key) {
        detail::check_object_key(key);
        try {
            const detail::s3_response answer = detail::run_s3_request(
                pool_, retry_, limits_, clock_, "HEAD", key, nullptr, 0,
                [&](auto now) { return signer_.sign("HEAD", key, "", {}, empty_hash(), now); },
                [](detail::s3_response&) {});
            object_info info;
            info.etag = answer.etag;
            info.size = answer.content_length;
            return info;
        } catch (const s3_error& e) {
            if (e.http_status() == 404) return std::nullopt;
            throw;
        }
    }

    // Deletes the object. S3 answers success whether or not the key existed; failures throw.
    void remove(const std::string& key) {
        detail::check_object_key(key);
        detail::run_s3_request(
            pool_, retry_, limits_, clock_, "DELETE", key, nullptr, 0,
            [&](auto now) { return signer_.sign("DELETE", key, "", {}, empty_hash(), now); }, [](detail::s3_response&) {});
    }

    // Calls `on_key` with every key in the bucket that starts with `prefix` (all keys for an empty
    // prefix), page by page (ListObjectsV2 with continuation tokens), in the server's order
    // (S3: ascending UTF-8 bytes). Each page is requested with the retry policy, parsed and
    // checked before any of its keys is passed on, so a failure part way leaves the earlier
    // pages reported. `on_key` may remove() the keys it is given. Keys are reported as stored,
    // also those tilekit would refuse to write (see validate_key). Throws s3_error for an HTTP
    // failure and for an answer that cannot be trusted: malformed XML, a truncated page without
    // a continuation token, a token that comes back a second time, a key outside the prefix,
    // more keys than asked for, or too many empty truncated pages in a row.
    void list(const std::string& prefix, const std::function<void(const std::string& key)>& on_key,
              const list_options& options = {}) {
        detail::check_list_prefix(prefix);
        if (options.max_keys < 1 || options.max_keys > 1000)
            throw error(errc::invalid_argument, "S3 listing page size (max-keys) must be 1 .. 1000, got " +
                                                    std::to_string(options.max_keys));
        const auto malformed = [&](const std::string& why) {
            return s3_error(errc::storage_error, "S3 LIST '" + prefix + "' failed: " + why, 200, "MalformedListResponse",
                            prefix);
        };
        std::string token;
        std::unordered_set<std::string> tokens_seen;
        unsigned empty_pages = 0;
        for (;;) {
            const std::string query = detail::list_objects_v2_query(prefix, options.max_keys, token);
            const detail::s3_response answer = detail::run_s3_request(
                pool_, retry_, limits_, clock_, "LIST", prefix, nullptr, 0,
                [&](auto now) { return signer_.sign("GET", "", query, {}, empty_hash(), now); },
                [&](detail::s3_response& r) { r.max_body = options.max_response_bytes; });
            detail::s3_list_page page;
            try {
                page = detail::parse_list_objects_v2(answer.body);
            } catch (const error& e) {
                throw malformed(e.what());
            }
            if (page.keys.size() > options.max_keys)
                throw malformed(std::to_string(page.keys.size()) + " keys in a page of at most " +
                                std::to_string(options.max_keys));
            for (const std::string& key : page.keys)
                if (key.compare(0, prefix.size(), prefix) != 0)
                    throw malformed("the key '" + key.substr(0, 200) + "' is outside the prefix");
            if (page.truncated) {
                if (!tokens_seen.insert(page.next_token).second)
                    throw malformed("the server sent the same continuation token twice");
                empty_pages = page.keys.empty() ? empty_pages + 1 : 0;
                if (empty_pages > options.max_empty_pages)
                    throw malformed(std::to_string(empty_pages) + " truncated pages in a row without a key");
            }
            for (const std::string& key : page.keys) on_key(key);
            if (!page.truncated) return;
            token = std::move(page.next_token);
        }
    }

    std::string presign(const std::string& method, const std::string& key, std::chrono::seconds expires) const {
        return signer_.presign(method, key, expires, clock_.now());
    }

    // Downloads a presigned URL, used verbatim (never re-encoded), into memory or a file.
    std::vector<std::uint8_t> download_url(const std::string& url, std::uint64_t max_bytes = std::uint64_t{1} << 30) {
        const detail::s3_response answer = detail::run_s3_request(
            pool_, retry_, limits_, clock_, "GET", redact(url), nullptr, 0, [&](auto) { return http_request{"GET", url, {}}; },
            [&](detail::s3_response& r) { r.max_body = max_bytes; });
        return std::vector<std::uint8_t>(answer.body.begin(), answer.body.end());
    }

    void download_url_to_file(const std::string& url, const std::string& path,
                              std::uint64_t max_bytes = std::uint64_t{1} << 34, const cancel_token* cancel = nullptr) {
        download_to_file(path, max_bytes, "GET", redact(url), [&](auto) { return http_request{"GET", url, {}}; }, cancel);
    }

    // A presigned URL without its signature and credential, for error messages.
    static std::string redact(const std::string& url) {
        const std::size_t query = url.find('?');
        return query == std::string::npos ? url : url.substr(0, query) + "?<presigned>";
    }

private:
    static const std::string& empty_hash() {
        static const std::string hash = detail::sha256_hex(std::string_view());
        return hash;
    }

    header_list put_headers(const std::uint8_t* data, std::size_t size, const put_options& options) const {
        header_list headers;
        if (!options.content_type.empty()) headers.emplace_back("content-type", options.content_type);
        if (!options.cache_control.empty()) headers.emplace_back("cache-control", options.cache_control);
        if (options.content_md5) headers.emplace_back("content-md5", detail::content_md5(data, size));
        if (options.if_none_match) headers.emplace_back("if-none-match", "*");
        if (!options.if_match.empty()) headers.emplace_back("if-match", options.if_match);
        headers.emplace_back("Expect", "");  // no 100-continue round trip
        return headers;
    }

    template <class Sign>
    void download_to_file(const std::string& path, std::uint64_t max_bytes, const std::string& method,
                          const std::string& what, Sign&& sign, const cancel_token* cancel) {
        const std::string temporary = path + ".part";
        struct file_guard {
            std::FILE* file = nullptr;
            std::string path;
            bool keep = false;
            ~file_guard() {
                if (file) std::fclose(file);
                if (!keep) std::remove(path.c_str());
            }
        } guard{nullptr, temporary, false};
        detail::run_s3_request(pool_, retry_, limits_, clock_, method, what, nullptr, 0, sign,
                               [&](detail::s3_response& r) {
                                   if (guard.file) std::fclose(guard.file);
                                   guard.file = std::fopen(temporary.c_str(), "wb");  // each attempt starts over
                                   if (!guard.file)
                                       throw error(errc::io_error, "cannot write '" + temporary + "': " + std::strerror(errno));
                                   r.file = guard.file;
                                   r.max_body = max_bytes;
                                   r.cancel = cancel;
                               });
        const bool closed = std::fclose(guard.file) == 0;
        guard.file = nullptr;
        if (!closed) throw error(errc::io_error, "cannot write '" + temporary + "'");
        std::error_code ec;
        std::filesystem::rename(temporary, path, ec);
        if (ec) throw error(errc::io_error, "cannot rename '" + temporary + "' to '" + path + "': " + ec.message());
        guard.keep = true;
    }

    request_signer signer_;
    retry_policy retry_;
    timeouts limits_;
    clock_offset clock_;
    detail::easy_pool pool_;
};

}  // namespace s3
TILEKIT_NAMESPACE_END
