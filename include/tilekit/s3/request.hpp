#pragma once
// Turning "PUT this key" into the exact URL and headers to send, signed with SigV4 (header auth),
// and presigned query URLs. What is signed is byte for byte what is sent.

#include <tilekit/error.hpp>
#include <tilekit/key.hpp>
#include <tilekit/s3/config.hpp>
#include <tilekit/s3/sigv4.hpp>

#include <openssl/evp.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

TILEKIT_NAMESPACE_BEGIN
namespace s3 {

struct http_request {
    std::string method;
    std::string url;      // as sent: scheme://authority/path?query
    header_list headers;  // as sent; Host comes from the URL (and was signed as such)
};

}  // namespace s3
namespace detail {

inline std::string base64(const unsigned char* data, std::size_t size) {
    std::string out(4 * ((size + 2) / 3), '\0');
    const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(&out[0]), data, static_cast<int>(size));
    out.resize(static_cast<std::size_t>(n));
    return out;
}

// Content-MD5: base64 of the raw 16-byte MD5 (S3 and R2 verify it and answer BadDigest).
inline std::string content_md5(const std::uint8_t* data, std::size_t size) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    if (!EVP_Digest(data, size, md, &length, EVP_md5(), nullptr))
        throw error(errc::crypto_error, "MD5 failed (OpenSSL)");
    return base64(md, length);
}

// Lower-case hex of the MD5: the ETag S3 and R2 give an object stored by one PUT.
inline std::string md5_hex(const std::uint8_t* data, std::size_t size) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    if (!EVP_Digest(data, size, md, &length, EVP_md5(), nullptr))
        throw error(errc::crypto_error, "MD5 failed (OpenSSL)");
    static const char digits[] = "0123456789abcdef";
    std::string out;
    for (unsigned int i = 0; i < length; ++i) {
        out += digits[md[i] >> 4];
        out += digits[md[i] & 15];
    }
    return out;
}

// Object keys for S3: not empty, at most 1024 bytes, no NUL or control characters. S3 itself
// allows '..' or '//' in keys, but tilekit refuses them everywhere for one set of rules.
inline void check_object_key(const std::string& key) { validate_key(key); }

}  // namespace detail
namespace s3 {

// The server's clock minus ours, learned from RequestTimeTooSkewed answers; shared by requests.
class clock_offset {
public:
    std::chrono::system_clock::time_point now() const {
        return std::chrono::system_clock::now() + std::chrono::seconds(seconds_.load(std::memory_order_relaxed));
    }
    void set_seconds(long long seconds) noexcept { seconds_.store(seconds, std::memory_order_relaxed); }
    long long seconds() const noexcept { return seconds_.load(std::memory_order_relaxed); }

private:
    std::atomic<long long> seconds_{0};
};

class request_signer {
public:
    explicit request_signer(config c) : config_(std::move(c)), signer_(config_.creds, config_.target.region) {
        check_transport(config_);
    }

    const config& settings() const noexcept { return config_; }

    // "/bucket/key" (path style) or "/key" (virtual host), key bytes strictly encoded, '/' kept.
    std::string object_path(const std::string& key) const {
        const std::string encoded = detail::uri_encode(key, true);
        return config_.style == addressing::path ? "/" + config_.bucket + "/" + encoded : "/" + encoded;
    }

    std::string authority() const {
        return config_.style == addressing::path ? config_.target.authority()
                                                 : config_.bucket + "." + config_.target.authority();
    }

    // Signs a request for `key` (empty key: the bucket itself). `headers` are extra headers to
    // send and sign (content-type, cache-control, content-md5, if-none-match, ...).
    http_request sign(const std::string& method, const std::string& key, const std::string& query, header_list headers,
                      const std::string& payload_hash, std::chrono::system_clock::time_point when) const {
        if (!key.empty()) detail::check_object_key(key);
        for (const auto& [name, value] : headers) detail::check_header(name, value);
        const std::string date = detail::amz_date(when);
        headers.emplace_back("x-amz-date", date);
        headers.emplace_back("x-amz-content-sha256", payload_hash);
        if (!config_.creds.session_token.empty()) headers.emplace_back("x-amz-security-token", config_.creds.session_token);
        request_to_sign request;
        request.method = method;
        request.encoded_path = key.empty() ? (config_.style == addressing::path ? "/" + config_.bucket : "/") : object_path(key);
        request.query = query;
        for (const auto& header : headers)
            if (!detail::is_unsigned_header(header.first)) request.headers.push_back(header);
        request.headers.emplace_back("host", authority());
        request.payload_hash = payload_hash;
        const signature_parts parts = signer_.sign(request, date);
        http_request out;
        out.method = method;
        // The canonical form of the query is what was signed, so it is also what is sent.
        const std::string sent_query = detail::canonical_query(query);
        out.url = config_.target.scheme + "://" + authority() + request.encoded_path +
                  (sent_query.empty() ? "" : "?" + sent_query);
        out.headers = std::move(headers);
        out.headers.emplace_back("Authorization", signer_.authorization(parts));
        return out;
    }

    // A presigned URL for GET, HEAD or PUT of `key`, valid for `expires` (1 s .. 7 days).
    std::string presign(const std::string& method, const std::string& key, std::chrono::seconds expires,
                        std::chrono::system_clock::time_point when) const {
        if (method != "GET" && method != "HEAD" && method != "PUT")
            throw error(errc::invalid_argument, "presigned URLs are for GET, HEAD or PUT, not " + method);
        if (expires.count() < 1 || expires.count() > 604800)
            throw error(errc::invalid_argument, "presigned URL expiry must be 1 s .. 7 days, got " +
                                                    std::to_string(expires.count()) + " s");
        detail::check_object_key(key);
        const std::string date = detail::amz_date(when);
        const std::string scope = date.substr(0, 8) + "/" + config_.target.region + "/s3/aws4_request";
        std::string query = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=" +
                            detail::uri_encode(config_.creds.access_key_id + "/" + scope, false) + "&X-Amz-Date=" + date +
                            "&X-Amz-Expires=" + std::to_string(expires.count());
        if (!config_.creds.session_token.empty())
            query += "&X-Amz-Security-Token=" + detail::uri_encode(config_.creds.session_token, false);
        query += "&X-Amz-SignedHeaders=host";
        request_to_sign request;
        request.method = method;
        request.encoded_path = object_path(key);
        request.query = query;
        request.headers = {{"host", authority()}};
        request.payload_hash = "UNSIGNED-PAYLOAD";
        const signature_parts parts = signer_.sign(request, date);
        return config_.target.scheme + "://" + authority() + request.encoded_path + "?" + query +
               "&X-Amz-Signature=" + parts.signature;
    }

private:
    config config_;
    signer signer_;
};

}  // namespace s3
TILEKIT_NAMESPACE_END
