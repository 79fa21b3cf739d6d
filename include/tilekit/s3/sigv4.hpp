#pragma once
// AWS Signature Version 4 with S3's rules, on OpenSSL 3's non-deprecated interfaces (EVP
// digests and the one-shot HMAC). Pure functions plus a signer that caches the derived key per
// day; no I/O. Part of the optional `tilekit::s3` target, the only code that reaches libcrypto.
// A libcrypto failure throws tilekit::error with errc::crypto_error.

#if !__has_include(<openssl/evp.h>)
#error "tilekit/s3 needs OpenSSL 3 (Debian: libssl-dev)"
#endif

#include <tilekit/error.hpp>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <ctime>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

TILEKIT_NAMESPACE_BEGIN
namespace s3 {

struct credentials {
    std::string access_key_id;
    std::string secret_access_key;
    std::string session_token;  // optional (temporary credentials)
};

using header_list = std::vector<std::pair<std::string, std::string>>;

// What is signed: the method, the path exactly as it will be sent (already percent-encoded), the
// query exactly as it will be sent (without '?'), the headers to sign and the payload hash.
struct request_to_sign {
    std::string method;
    std::string encoded_path = "/";
    std::string query;
    header_list headers;
    std::string payload_hash;  // hex sha256 of the body, or "UNSIGNED-PAYLOAD"
};

}  // namespace s3
namespace detail {

using sha256_digest = std::array<unsigned char, 32>;

inline std::string hex(const unsigned char* data, std::size_t size) {
    static const char digits[] = "0123456789abcdef";
    std::string out(size * 2, '0');
    for (std::size_t i = 0; i < size; ++i) {
        out[2 * i] = digits[data[i] >> 4];
        out[2 * i + 1] = digits[data[i] & 15];
    }
    return out;
}

inline sha256_digest sha256(const void* data, std::size_t size) {
    sha256_digest out{};
    unsigned int length = 0;
    if (!EVP_Digest(data, size, out.data(), &length, EVP_sha256(), nullptr) || length != out.size())
        throw error(errc::crypto_error, "SHA-256 failed (OpenSSL)");
    return out;
}

inline std::string sha256_hex(std::string_view data) {
    const sha256_digest d = sha256(data.data(), data.size());
    return hex(d.data(), d.size());
}

inline std::string sha256_hex(const std::uint8_t* data, std::size_t size) {
    const sha256_digest d = sha256(data, size);
    return hex(d.data(), d.size());
}

inline sha256_digest hmac_sha256(const void* key, std::size_t key_size, std::string_view data) {
    sha256_digest out{};
    unsigned int length = 0;
    if (!HMAC(EVP_sha256(), key, static_cast<int>(key_size), reinterpret_cast<const unsigned char*>(data.data()),
              data.size(), out.data(), &length) ||
        length != out.size())
        throw error(errc::crypto_error, "HMAC-SHA256 failed (OpenSSL)");
    return out;
}

inline bool is_uri_unreserved(unsigned char ch) {
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' ||
           ch == '_' || ch == '.' || ch == '~';
}

// RFC 3986 encoding of every byte outside A-Za-z0-9-_.~ with upper-case hex; '/' kept when
// asked (object keys in paths). Space is %20, never '+'.
inline std::string uri_encode(std::string_view text, bool keep_slash) {
    static const char digits[] = "0123456789ABCDEF";
    std::string out;
    out.reserve(text.size() * 3);
    for (const char c : text) {
        const auto ch = static_cast<unsigned char>(c);
        if (is_uri_unreserved(ch) || (keep_slash && ch == '/')) {
            out += c;
        } else {
            out += '%';
            out += digits[ch >> 4];
            out += digits[ch & 15];
        }
    }
    return out;
}

inline int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// Percent-decoding; '+' stays '+' (S3 query strings are not form-encoded).
inline std::string uri_decode(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (text[i] == '%' && i + 2 < text.size() && hex_value(text[i + 1]) >= 0 &&
            hex_value(text[i + 2]) >= 0) {
            out += static_cast<char>(hex_value(text[i + 1]) * 16 + hex_value(text[i + 2]));
            i += 2;
        } else {
            out += text[i];
        }
    }
    return out;
}

// The canonical query: each name and value decoded, strictly re-encoded, sorted by name then
// value; "name=" for empty values; X-Amz-Signature left out.
inline std::string canonical_query(std::string_view query) {
    std::vector<std::pair<std::string, std::string>> params;
    std::size_t start = 0;
    while (start < query.size()) {
        std::size_t end = query.find('&', start);
        if (end == std::string_view::npos) end = query.size();
        const std::string_view item = query.substr(start, end - start);
        start = end + 1;
        if (item.empty()) continue;
        const std::size_t eq = item.find('=');
        std::string name = uri_encode(uri_decode(item.substr(0, eq)), false);
        std::string value = eq == std::string_view::npos ? std::string() : uri_encode(uri_decode(item.substr(eq + 1)), false);
        if (name == "X-Amz-Signature") continue;
        params.emplace_back(std::move(name), std::move(value));
    }
    std::sort(params.begin(), params.end());
    std::string out;
    for (const auto& [name, value] : params) {
        if (!out.empty()) out += '&';
        out += name;
        out += '=';
        out += value;
    }
    return out;
}

inline std::string ascii_lower(std::string_view text) {
    std::string out(text);
    for (char& c : out)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    return out;
}

// Trims and folds runs of spaces and tabs to one space (header values).
inline std::string fold_spaces(std::string_view value) {
    std::string out;
    bool in_space = false;
    for (const char c : value) {
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
            in_space = true;
            continue;
        }
        if (in_space && !out.empty()) out += ' ';
        in_space = false;
        out += c;
    }
    return out;
}

// Headers sent but never signed: transport controls that curl or a proxy may change or drop.
inline bool is_unsigned_header(const std::string& name) {
    const std::string lowered = ascii_lower(name);
    return lowered == "expect" || lowered == "user-agent" || lowered == "accept";
}

struct canonical_header_block {
    std::string text;            // "name:value\n" lines, sorted
    std::string signed_headers;  // "a;b;c"
};

// Lower-cased, sorted names; repeated headers joined with ',' in their original order.
inline canonical_header_block canonical_headers(const s3::header_list& headers) {
    std::vector<std::pair<std::string, std::string>> entries;
    for (const auto& [name, value] : headers) {
        const std::string key = ascii_lower(name);
        const std::string folded = fold_spaces(value);
        auto found = std::find_if(entries.begin(), entries.end(), [&](const auto& e) { return e.first == key; });
        if (found == entries.end())
            entries.emplace_back(key, folded);
        else
            found->second += "," + folded;
    }
    std::stable_sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    canonical_header_block block;
    for (const auto& [name, value] : entries) {
        block.text += name + ":" + value + "\n";
        if (!block.signed_headers.empty()) block.signed_headers += ';';
        block.signed_headers += name;
    }
    return block;
}

inline std::string canonical_request(const s3::request_to_sign& request, const canonical_header_block& headers) {
    return request.method + "\n" + request.encoded_path + "\n" + canonical_query(request.query) + "\n" + headers.text +
           "\n" + headers.signed_headers + "\n" + request.payload_hash;
}

// "YYYYMMDDTHHMMSSZ" in UTC.
inline std::string amz_date(std::chrono::system_clock::time_point when) {
    const std::time_t seconds = std::chrono::system_clock::to_time_t(when);
    std::tm utc{};
    gmtime_r(&seconds, &utc);
    char text[17];
    std::strftime(text, sizeof text, "%Y%m%dT%H%M%SZ", &utc);
    return text;
}

// A header value with CR or LF would end the header early and start another one on the wire
// (header injection); other control characters are refused with them. Names must be tokens.
inline void check_header(const std::string& name, const std::string& value) {
    const auto is_token_char = [](unsigned char c) {
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
               std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos;
    };
    if (name.empty()) throw error(errc::invalid_argument, "an HTTP header has an empty name");
    for (const char c : name)
        if (!is_token_char(static_cast<unsigned char>(c)))
            throw error(errc::invalid_argument, "HTTP header name '" + name + "' has a character headers cannot carry");
    for (const char c : value) {
        const auto u = static_cast<unsigned char>(c);
        if ((u < 0x20 && u != '\t') || u == 0x7f)
            throw error(errc::invalid_argument, "the value of HTTP header '" + name +
                                                    "' contains a control character (CR, LF, ...); refused so it "
                                                    "cannot add headers of its own");
    }
}

}  // namespace detail
namespace s3 {

// The pieces of one signature, kept for tests and for debugging a SignatureDoesNotMatch.
struct signature_parts {
    std::string canonical_request;
    std::string string_to_sign;
    std::string signed_headers;
    std::string credential_scope;
    std::string signature;
};

// Signs requests for one access key, region and service. Thread-safe; the derived signing key
// depends only on (secret, day, region, service), so it is cached per day.
class signer {
public:
    signer(credentials creds, std::string region, std::string service = "s3")
        : credentials_(std::move(creds)), region_(std::move(region)), service_(std::move(service)) {
        if (credentials_.access_key_id.empty() || credentials_.secret_access_key.empty())
            throw error(errc::invalid_argument, "S3 credentials need an access key id and a secret access key");
        if (region_.empty()) throw error(errc::invalid_argument, "S3 signing needs a region ('auto' for R2)");
    }

    const credentials& creds() const noexcept { return credentials_; }
    const std::string& region() const noexcept { return region_; }
    const std::string& service() const noexcept { return service_; }

    // The signature of `request` at `date` ("YYYYMMDDTHHMMSSZ").
    signature_parts sign(const request_to_sign& request, const std::string& date) const {
        signature_parts parts;
        const detail::canonical_header_block headers = detail::canonical_headers(request.headers);
        parts.signed_headers = headers.signed_headers;
        parts.canonical_request = detail::canonical_request(request, headers);
        parts.credential_scope = date.substr(0, 8) + "/" + region_ + "/" + service_ + "/aws4_request";
        parts.string_to_sign = "AWS4-HMAC-SHA256\n" + date + "\n" + parts.credential_scope + "\n" +
                               detail::sha256_hex(parts.canonical_request);
        const detail::sha256_digest key = signing_key(date.substr(0, 8));
        const detail::sha256_digest mac = detail::hmac_sha256(key.data(), key.size(), parts.string_to_sign);
        parts.signature = detail::hex(mac.data(), mac.size());
        return parts;
    }

    // The Authorization header value for `parts`.
    std::string authorization(const signature_parts& parts) const {
        return "AWS4-HMAC-SHA256 Credential=" + credentials_.access_key_id + "/" + parts.credential_scope +
               ", SignedHeaders=" + parts.signed_headers + ", Signature=" + parts.signature;
    }

    detail::sha256_digest signing_key(const std::string& day) const {
        std::lock_guard<std::mutex> lock(cache_mutex_);
        if (day != cached_day_) {
            const std::string secret = "AWS4" + credentials_.secret_access_key;
            const detail::sha256_digest k_date = detail::hmac_sha256(secret.data(), secret.size(), day);
            const detail::sha256_digest k_region = detail::hmac_sha256(k_date.data(), k_date.size(), region_);
            const detail::sha256_digest k_service = detail::hmac_sha256(k_region.data(), k_region.size(), service_);
            cached_key_ = detail::hmac_sha256(k_service.data(), k_service.size(), "aws4_request");
            cached_day_ = day;
        }
        return cached_key_;
    }

private:
    credentials credentials_;
    std::string region_;
    std::string service_;
    mutable std::mutex cache_mutex_;
    mutable std::string cached_day_;
    mutable detail::sha256_digest cached_key_{};
};

}  // namespace s3
TILEKIT_NAMESPACE_END
