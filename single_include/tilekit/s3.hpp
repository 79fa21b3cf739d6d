#pragma once
// tilekit 0.1.0, single header <tilekit/s3.hpp>: the s3 part.
// S3 / Cloudflare R2 storage: SigV4 signing (OpenSSL 3 libcrypto), a client and a
// concurrent upload sink (libcurl), presigned URLs, and image sources that download.
//
// Needs tilekit.hpp beside it (it includes it).
// Link (Debian: libssl-dev libcurl4-openssl-dev):
//   c++ -std=c++17 -I single_include app.cpp $(pkg-config --cflags --libs stb libcurl libcrypto) -pthread
// An installed tilekit: `pkg-config tilekit-s3`, or CMake `tilekit::s3`.
// tilekit-s3.pc also defines TILEKIT_HAS_S3=1 for code that wants to #if on it.
//
//   #include <tilekit/s3.hpp>
//   tilekit::s3::s3_sink sink(tilekit::s3::config_from_environment("my-bucket"));  // AWS_* variables
//   tilekit::pyramid_options options;
//   options.prefix = "maps/42/";
//   tilekit::tile_file("map.png", sink, options);  // uploads while it tiles
//
// Generated from include/tilekit/s3.hpp by tools/amalgamate.py. Do not edit: change include/tilekit/
// and rerun the script.

#include "tilekit.hpp"

// tilekit's optional S3 / Cloudflare R2 part: SigV4 signing (OpenSSL), a blocking client and a
// concurrent upload sink (libcurl), presigned URLs and downloads. Link `tilekit::s3` (CMake),
// `tilekit_s3_dep` (meson) or `pkg-config tilekit-s3`. The core never includes this.

// #include <tilekit/tilekit.hpp>
// #include <tilekit/s3/sigv4.hpp>
// AWS Signature Version 4 with S3's rules, on OpenSSL 3's non-deprecated interfaces (EVP
// digests and the one-shot HMAC). Pure functions plus a signer that caches the derived key per
// day; no I/O. Part of the optional `tilekit::s3` target, the only code that reaches libcrypto.
// A libcrypto failure throws tilekit::error with errc::crypto_error.

#if !__has_include(<openssl/evp.h>)
#error "tilekit/s3 needs OpenSSL 3 (Debian: libssl-dev)"
#endif

// #include <tilekit/error.hpp>

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
// #include <tilekit/s3/config.hpp>
// Where objects go and who signs for them: an endpoint (R2 from an account id, AWS by region, or
// any S3-compatible URL), the bucket, the addressing style and credentials, from explicit
// values or the standard AWS environment variables. Also how hard a transfer tries: the retry
// policy and the timeouts that s3::client and s3::s3_sink take.

// #include <tilekit/error.hpp>
// #include <tilekit/s3/sigv4.hpp>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <string>

TILEKIT_NAMESPACE_BEGIN
namespace s3 {

enum class addressing { path, virtual_host };

struct endpoint {
    std::string scheme = "https";  // "https" or "http"
    std::string host;              // without port
    int port = 0;                  // 0: the scheme's default
    std::string region = "auto";
    bool is_r2 = false;            // R2: never send ACL, checksum or storage-class headers

    // "host" or "host:port" as sent in the Host header (and signed).
    std::string authority() const {
        const bool default_port = port == 0 || (scheme == "https" && port == 443) || (scheme == "http" && port == 80);
        return default_port ? host : host + ":" + std::to_string(port);
    }
    std::string base_url() const { return scheme + "://" + authority(); }
};

struct config {
    endpoint target;
    std::string bucket;
    credentials creds;
    addressing style = addressing::path;  // path-style: dotted bucket names and TLS wildcards never bite
    bool allow_insecure_http = false;     // plain http is accepted for loopback hosts only, unless this is set
};

// When a failed request is tried again. Retried: broken connections (refused, reset, dropped,
// failed TLS handshake), timeouts, HTTP 429, 500, 502, 503 and 504, and S3's SlowDown,
// RequestTimeout, InternalError and ServiceUnavailable. Everything else fails at once: refused
// credentials or signatures, missing buckets or keys, other HTTP errors. A RequestTimeTooSkewed
// answer corrects the clock from the server's Date once and tries again. Every attempt is
// signed afresh.
struct retry_policy {
    int max_attempts = 10;                           // per object, first try included
    std::chrono::milliseconds base_delay{50};        // full jitter: uniform(0, min(max, base * 2^n))
    std::chrono::milliseconds max_delay{5000};
    std::chrono::milliseconds max_retry_after{30000};  // a server's Retry-After is honoured up to this
};

// Limits of one attempt (libcurl's connect, total and low-speed timeouts). A timed-out attempt
// is retried under retry_policy.
struct timeouts {
    long connect_ms = 10000;             // TCP and TLS handshake
    long request_ms = 120000;            // the whole attempt
    long low_speed_bytes_per_s = 1024;  // abort a transfer slower than this ...
    long low_speed_seconds = 30;        // ... for this long
};

}  // namespace s3
namespace detail {

// Whether an endpoint's host is this machine: "localhost", ::1, or a literal IPv4 address in
// 127.0.0.0/8 (four decimal parts of 0..255). A name that merely starts with "127." (such as
// 127.attacker.example) is a name like any other, resolved by DNS to anywhere.
inline bool is_loopback(const std::string& host) {
    if (host == "localhost" || host == "::1" || host == "[::1]") return true;
    int parts = 0;
    std::size_t at = 0;
    while (at <= host.size()) {
        const std::size_t dot = std::min(host.find('.', at), host.size());
        const std::string part = host.substr(at, dot - at);
        if (part.empty() || part.size() > 3 || part.find_first_not_of("0123456789") != std::string::npos) return false;
        if (std::stoi(part) > 255 || (parts == 0 && part != "127")) return false;
        ++parts;
        at = dot + 1;
    }
    return parts == 4;
}

inline std::string getenv_string(const char* name) {
    const char* value = std::getenv(name);
    return value ? std::string(value) : std::string();
}

}  // namespace detail
namespace s3 {

// Parses "https://host[:port]" (a trailing '/' is allowed; a path is not).
inline endpoint parse_endpoint(const std::string& url, const std::string& region = "auto") {
    endpoint e;
    e.region = region;
    const std::size_t colon_slashes = url.find("://");
    if (colon_slashes == std::string::npos)
        throw error(errc::invalid_argument, "S3 endpoint must start with https:// or http://, got '" + url + "'");
    e.scheme = url.substr(0, colon_slashes);
    if (e.scheme != "https" && e.scheme != "http")
        throw error(errc::invalid_argument, "S3 endpoint scheme must be https or http, got '" + e.scheme + "'");
    std::string rest = url.substr(colon_slashes + 3);
    if (!rest.empty() && rest.back() == '/') rest.pop_back();
    if (rest.empty() || rest.find_first_of("/?#@ ") != std::string::npos)
        throw error(errc::invalid_argument, "S3 endpoint must be scheme://host[:port] without a path, got '" + url + "'");
    std::size_t port_colon = rest.rfind(':');
    if (rest.front() == '[') port_colon = rest.find("]:") == std::string::npos ? std::string::npos : rest.find("]:") + 1;
    if (port_colon != std::string::npos) {
        const std::string port = rest.substr(port_colon + 1);
        if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos ||
            std::stoi(port) == 0 || std::stoi(port) > 65535)
            throw error(errc::invalid_argument, "S3 endpoint has a bad port: '" + url + "'");
        e.port = std::stoi(port);
        rest = rest.substr(0, port_colon);
    }
    e.host = rest;
    e.is_r2 = e.host.size() > 25 && e.host.compare(e.host.size() - 25, 25, ".r2.cloudflarestorage.com") == 0;
    return e;
}

// Cloudflare R2: https://<account>.r2.cloudflarestorage.com, region "auto".
inline endpoint r2_endpoint(const std::string& account_id) {
    if (account_id.empty() || account_id.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos)
        throw error(errc::invalid_argument, "R2 account id must be hexadecimal, got '" + account_id + "'");
    endpoint e = parse_endpoint("https://" + account_id + ".r2.cloudflarestorage.com", "auto");
    e.is_r2 = true;
    return e;
}

// AWS S3 in a region: https://s3.<region>.amazonaws.com.
inline endpoint aws_endpoint(const std::string& region) {
    if (region.empty() || region.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-") != std::string::npos)
        throw error(errc::invalid_argument, "AWS region must look like 'eu-west-1', got '" + region + "'");
    return parse_endpoint("https://s3." + region + ".amazonaws.com", region);
}

// Refuses plain http to anything but loopback unless explicitly allowed: credentials and
// presigned URLs would travel in clear.
inline void check_transport(const config& c) {
    if (c.target.host.empty()) throw error(errc::invalid_argument, "S3 endpoint has no host");
    if (c.bucket.empty()) throw error(errc::invalid_argument, "S3 bucket is empty");
    if (c.target.scheme == "http" && !detail::is_loopback(c.target.host) && !c.allow_insecure_http)
        throw error(errc::invalid_argument, "refusing plain http to '" + c.target.host +
                                                "': use https, or allow insecure http explicitly");
}

// Credentials and endpoint from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN,
// AWS_REGION (or AWS_DEFAULT_REGION), AWS_ENDPOINT_URL_S3 (or AWS_ENDPOINT_URL). Without an
// endpoint variable the AWS endpoint of the region is used.
inline config config_from_environment(const std::string& bucket) {
    config c;
    c.bucket = bucket;
    c.creds.access_key_id = detail::getenv_string("AWS_ACCESS_KEY_ID");
    c.creds.secret_access_key = detail::getenv_string("AWS_SECRET_ACCESS_KEY");
    c.creds.session_token = detail::getenv_string("AWS_SESSION_TOKEN");
    if (c.creds.access_key_id.empty() || c.creds.secret_access_key.empty())
        throw error(errc::invalid_argument, "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set");
    std::string region = detail::getenv_string("AWS_REGION");
    if (region.empty()) region = detail::getenv_string("AWS_DEFAULT_REGION");
    std::string url = detail::getenv_string("AWS_ENDPOINT_URL_S3");
    if (url.empty()) url = detail::getenv_string("AWS_ENDPOINT_URL");
    if (url.empty()) {
        c.target = aws_endpoint(region.empty() ? "us-east-1" : region);
    } else {
        c.target = parse_endpoint(url, region.empty() ? "auto" : region);
    }
    return c;
}

}  // namespace s3
TILEKIT_NAMESPACE_END
// #include <tilekit/s3/error.hpp>
// S3 failures as typed errors: the HTTP status, S3's error code and the object key, never a
// secret or a signature. Auth failures map to errc::access_denied, missing buckets and keys to
// errc::not_found, everything else to errc::storage_error.

// #include <tilekit/error.hpp>

#include <string>

TILEKIT_NAMESPACE_BEGIN
namespace s3 {

class s3_error : public error {
public:
    s3_error(errc code, const std::string& message, long http_status, std::string s3_code, std::string key)
        : error(code, message), http_status_(http_status), s3_code_(std::move(s3_code)), key_(std::move(key)) {}

    long http_status() const noexcept { return http_status_; }  // 0 when no response arrived
    const std::string& s3_code() const noexcept { return s3_code_; }  // "NoSuchKey", ... or a curl error name
    const std::string& key() const noexcept { return key_; }

private:
    long http_status_;
    std::string s3_code_;
    std::string key_;
};

}  // namespace s3
namespace detail {

// The text of the first <tag>...</tag> in an S3 error document (they are flat and small).
inline std::string s3_xml_element(const std::string& xml, const std::string& tag) {
    const std::string open = "<" + tag + ">";
    const std::size_t start = xml.find(open);
    if (start == std::string::npos) return {};
    const std::size_t end = xml.find("</" + tag + ">", start);
    if (end == std::string::npos) return {};
    std::string text = xml.substr(start + open.size(), end - start - open.size());
    if (text.size() > 300) text = text.substr(0, 300) + "...";
    return text;
}

inline errc classify_s3_code(long status, const std::string& code) {
    if (code == "SignatureDoesNotMatch" || code == "AccessDenied" || code == "InvalidAccessKeyId" ||
        code == "AuthorizationHeaderMalformed" || code == "AuthorizationQueryParametersError" ||
        code == "ExpiredToken" || code == "InvalidToken" || (code.empty() && (status == 401 || status == 403)))
        return errc::access_denied;
    if (code == "NoSuchBucket" || code == "NoSuchKey" || (code.empty() && status == 404)) return errc::not_found;
    return errc::storage_error;
}

}  // namespace detail
TILEKIT_NAMESPACE_END
// #include <tilekit/s3/request.hpp>
// Turning "PUT this key" into the exact URL and headers to send, signed with SigV4 (header auth),
// and presigned query URLs. What is signed is byte for byte what is sent.

// #include <tilekit/error.hpp>
// #include <tilekit/key.hpp>
// #include <tilekit/s3/config.hpp>
// #include <tilekit/s3/sigv4.hpp>

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
// #include <tilekit/s3/client.hpp>
// A blocking S3 client: PUT, GET (to memory or a file), HEAD, DELETE, listing (ListObjectsV2)
// and presigned URLs, with
// retries (full-jitter backoff, re-signed every attempt, Retry-After honoured) and the clock
// corrected once when the server says RequestTimeTooSkewed. Thread-safe; connections are kept
// alive in a small pool of curl handles. Also downloads by presigned URL, used verbatim.

// #include <tilekit/error.hpp>
// #include <tilekit/s3/config.hpp>
// #include <tilekit/s3/detail/curl.hpp>
// Thin RAII around libcurl: one-time global init, easy handles, header lists, and a response
// collector shared by the blocking client and the concurrent sink.

#if !__has_include(<curl/curl.h>)
#error "tilekit/s3 needs libcurl (Debian: libcurl4-openssl-dev)"
#endif

// #include <tilekit/error.hpp>
// #include <tilekit/progress.hpp>
// #include <tilekit/s3/sigv4.hpp>

#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>

TILEKIT_NAMESPACE_BEGIN
namespace detail {

inline void curl_global() {
    static std::once_flag once;
    std::call_once(once, [] {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
            throw error(errc::storage_error, "libcurl failed to initialise");
    });
}

struct easy_deleter {
    void operator()(CURL* easy) const noexcept { curl_easy_cleanup(easy); }
};
using easy_handle = std::unique_ptr<CURL, easy_deleter>;

inline easy_handle make_easy() {
    curl_global();
    easy_handle easy(curl_easy_init());
    if (!easy) throw error(errc::storage_error, "libcurl: cannot create a handle");
    return easy;
}

struct slist_deleter {
    void operator()(curl_slist* list) const noexcept { curl_slist_free_all(list); }
};
using header_slist = std::unique_ptr<curl_slist, slist_deleter>;

inline header_slist make_slist(const s3::header_list& headers) {
    curl_slist* list = nullptr;
    for (const auto& [name, value] : headers) {
        check_header(name, value);  // every request, signed or not, passes here
        // "Name:" removes a header curl adds by itself (Expect: 100-continue); "Name;" sends an
        // empty value, so a signed empty header really goes on the wire.
        const std::string line = value.empty() ? (is_unsigned_header(name) ? name + ":" : name + ";") : name + ": " + value;
        curl_slist* grown = curl_slist_append(list, line.c_str());
        if (!grown) {
            curl_slist_free_all(list);
            throw std::bad_alloc();
        }
        list = grown;
    }
    return header_slist(list);
}

// What a transfer brought back. The body goes to memory (bounded) or to a file.
struct s3_response {
    long status = 0;
    CURLcode curl_code = CURLE_OK;
    char curl_message[CURL_ERROR_SIZE] = {0};
    std::string body;
    std::string date;         // the server's Date header
    std::string retry_after;  // Retry-After, seconds
    std::string etag;
    std::string content_type;
    std::uint64_t max_body = 1 << 20;  // bytes kept in memory
    bool body_too_large = false;
    std::FILE* file = nullptr;  // when set, a 2xx body goes here instead of `body`
    CURL* easy = nullptr;       // needed to tell a 2xx body from an error document
    std::uint64_t received = 0;
    std::uint64_t content_length = 0;  // from the Content-Length header (HEAD)
    const cancel_token* cancel = nullptr;  // when set, watched during the transfer (a download)
    bool cancelled = false;                 // the transfer stopped because `cancel` was cancelled

    void reset() {
        status = 0;
        curl_code = CURLE_OK;
        curl_message[0] = '\0';
        body.clear();
        date.clear();
        retry_after.clear();
        etag.clear();
        content_type.clear();
        body_too_large = false;
        received = 0;
        content_length = 0;
        cancelled = false;
    }
};

// curl's progress callback, called several times a second even while no byte arrives: a
// non-zero return stops the transfer (CURLE_ABORTED_BY_CALLBACK).
inline int on_curl_progress(void* context, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
    auto* r = static_cast<s3_response*>(context);
    if (r->cancel && r->cancel->is_cancelled()) {
        r->cancelled = true;
        return 1;
    }
    return 0;
}

inline std::size_t on_curl_body(char* data, std::size_t size, std::size_t count, void* context) {
    auto* r = static_cast<s3_response*>(context);
    const std::size_t bytes = size * count;
    r->received += bytes;
    if (r->received > r->max_body) {
        r->body_too_large = true;
        return 0;  // aborts the transfer with CURLE_WRITE_ERROR
    }
    if (r->file && r->easy) {
        long status = 0;
        curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
        // Only a successful body goes to the file; an error document goes to memory.
        if (status >= 200 && status < 300) return std::fwrite(data, 1, bytes, r->file) == bytes ? bytes : 0;
    }
    r->body.append(data, bytes);
    return bytes;
}

inline std::string trim_header_value(std::string text) {
    while (!text.empty() && (text.back() == '\r' || text.back() == '\n' || text.back() == ' ')) text.pop_back();
    std::size_t start = 0;
    while (start < text.size() && text[start] == ' ') ++start;
    return text.substr(start);
}

inline std::size_t on_curl_header(char* data, std::size_t size, std::size_t count, void* context) {
    auto* r = static_cast<s3_response*>(context);
    const std::size_t bytes = size * count;
    const std::string line(data, bytes);
    const std::size_t colon = line.find(':');
    if (colon != std::string::npos) {
        std::string name = line.substr(0, colon);
        for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        const std::string value = trim_header_value(line.substr(colon + 1));
        if (name == "date") r->date = value;
        else if (name == "retry-after") r->retry_after = value;
        else if (name == "etag") r->etag = value;
        else if (name == "content-type") r->content_type = value;
    } else if (line.rfind("HTTP/", 0) == 0) {
        r->date.clear();  // a new response (after a redirect or 100-continue)
        r->retry_after.clear();
    }
    return bytes;
}

// Upload source for PUT bodies.
struct upload_cursor {
    const std::uint8_t* data = nullptr;
    std::size_t size = 0;
    std::size_t offset = 0;
};

inline std::size_t on_curl_read(char* buffer, std::size_t size, std::size_t count, void* context) {
    auto* cursor = static_cast<upload_cursor*>(context);
    const std::size_t n = std::min(size * count, cursor->size - cursor->offset);
    if (n) std::memcpy(buffer, cursor->data + cursor->offset, n);
    cursor->offset += n;
    return n;
}

inline int on_curl_seek(void* context, curl_off_t offset, int origin) {
    auto* cursor = static_cast<upload_cursor*>(context);
    if (origin != SEEK_SET || offset < 0 || static_cast<std::size_t>(offset) > cursor->size) return CURL_SEEKFUNC_CANTSEEK;
    cursor->offset = static_cast<std::size_t>(offset);
    return CURL_SEEKFUNC_OK;
}

}  // namespace detail
TILEKIT_NAMESPACE_END
// #include <tilekit/s3/detail/list_xml.hpp>
// Reading one page of a ListObjectsV2 answer (<ListBucketResult>): the object keys, IsTruncated
// and NextContinuationToken. A small, strict XML reader of its own, for this one document: it
// checks that the document is well formed (tags nest and match, one root, nothing but
// whitespace, comments and processing instructions around it), unescapes the five predefined
// entities and numeric character references, and refuses a DTD (no entity expansion), an
// unknown entity, a control character, a body over the size limit and nesting deeper than a
// ListBucketResult ever is. Anything it cannot read is a tilekit::error (errc::storage_error)
// that says what was wrong; it never reads past the end of the body.

// #include <tilekit/error.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

TILEKIT_NAMESPACE_BEGIN
namespace detail {

struct s3_list_page {
    std::vector<std::string> keys;  // the <Key> of each <Contents>, unescaped, in document order
    bool truncated = false;         // <IsTruncated>
    std::string next_token;         // <NextContinuationToken>; never empty when truncated
};

class s3_list_reader {
public:
    static constexpr std::size_t max_depth = 8;  // ListBucketResult/Contents/Owner/ID is 3 deep

    explicit s3_list_reader(std::string_view xml) : xml_(xml) {}

    s3_list_page read() {
        skip_prolog();
        if (at_end()) fail("no root element");
        if (xml_[pos_] != '<') fail("text before the root element");
        read_element_tree();
        skip_misc();
        if (!at_end()) fail("content after the root element");
        if (truncated_count_ == 0) fail("no <IsTruncated>");
        if (page_.truncated && page_.next_token.empty())
            fail("<IsTruncated> is true but there is no <NextContinuationToken>");
        if (!page_.truncated) page_.next_token.clear();
        return std::move(page_);
    }

private:
    struct frame {
        std::string name;
        std::string text;
        bool has_children = false;
        int keys = 0;  // <Key> children (Contents only)
    };

    [[noreturn]] void fail(const std::string& why) const {
        throw error(errc::storage_error,
                    "malformed ListObjectsV2 response (" + why + ", at byte " + std::to_string(pos_) + ")");
    }

    bool at_end() const { return pos_ >= xml_.size(); }
    bool starts_with(std::string_view text) const { return xml_.compare(pos_, text.size(), text) == 0; }

    static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
    void skip_spaces() {
        while (!at_end() && is_space(xml_[pos_])) ++pos_;
    }

    // Moves past `terminator`, which must come before the end of the body.
    void skip_past(std::string_view terminator, const char* what) {
        const std::size_t end = xml_.find(terminator, pos_);
        if (end == std::string_view::npos) fail(std::string("unterminated ") + what);
        pos_ = end + terminator.size();
    }

    // Comments and processing instructions (the XML declaration among them); a DTD is refused.
    bool skip_comment_or_pi() {
        if (starts_with("<!--")) {
            pos_ += 4;
            skip_past("-->", "comment");
            return true;
        }
        if (starts_with("<?")) {
            pos_ += 2;
            skip_past("?>", "processing instruction");
            return true;
        }
        if (starts_with("<!DOCTYPE") || starts_with("<!doctype")) fail("a DTD is not accepted");
        return false;
    }

    void skip_misc() {
        for (;;) {
            skip_spaces();
            if (at_end() || !skip_comment_or_pi()) return;
        }
    }

    void skip_prolog() {
        if (starts_with("\xEF\xBB\xBF")) pos_ += 3;  // a UTF-8 byte order mark
        skip_misc();
    }

    static bool is_name_char(char c) {
        const auto u = static_cast<unsigned char>(c);
        return u >= 0x80 || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
               c == ':' || c == '-' || c == '.';
    }

    std::string_view read_name() {
        const std::size_t start = pos_;
        while (!at_end() && is_name_char(xml_[pos_])) ++pos_;
        if (pos_ == start) fail("a tag without a name");
        const char first = xml_[start];
        if ((first >= '0' && first <= '9') || first == '-' || first == '.') fail("a tag name starts with a digit, '-' or '.'");
        return xml_.substr(start, pos_ - start);
    }

    // After the name of a start tag: attributes up to '>' or '/>'. Returns true for '/>'.
    bool read_attributes() {
        for (;;) {
            const std::size_t before = pos_;
            skip_spaces();
            if (at_end()) fail("unterminated start tag");
            if (starts_with("/>")) {
                pos_ += 2;
                return true;
            }
            if (xml_[pos_] == '>') {
                ++pos_;
                return false;
            }
            if (pos_ == before) fail("attributes must be separated by whitespace");
            read_name();
            skip_spaces();
            if (at_end() || xml_[pos_] != '=') fail("an attribute without '='");
            ++pos_;
            skip_spaces();
            if (at_end() || (xml_[pos_] != '"' && xml_[pos_] != '\'')) fail("an attribute value without quotes");
            const char quote = xml_[pos_++];
            const std::size_t end = xml_.find(quote, pos_);
            if (end == std::string_view::npos) fail("unterminated attribute value");
            if (xml_.substr(pos_, end - pos_).find('<') != std::string_view::npos) fail("'<' in an attribute value");
            pos_ = end + 1;
        }
    }

    static void append_utf8(std::string& out, std::uint32_t cp) {
        if (cp < 0x80) {
            out += static_cast<char>(cp);
        } else if (cp < 0x800) {
            out += static_cast<char>(0xC0 | (cp >> 6));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            out += static_cast<char>(0xE0 | (cp >> 12));
            out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        } else {
            out += static_cast<char>(0xF0 | (cp >> 18));
            out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
            out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        }
    }

    // XML 1.0's Char production.
    static bool is_xml_char(std::uint32_t cp) {
        return cp == 0x9 || cp == 0xA || cp == 0xD || (cp >= 0x20 && cp <= 0xD7FF) || (cp >= 0xE000 && cp <= 0xFFFD) ||
               (cp >= 0x10000 && cp <= 0x10FFFF);
    }

    // At '&': one entity or character reference, appended to `out`.
    void read_reference(std::string& out) {
        const std::size_t semicolon = xml_.find(';', pos_);
        if (semicolon == std::string_view::npos || semicolon - pos_ > 12) fail("'&' that starts no entity");
        const std::string_view name = xml_.substr(pos_ + 1, semicolon - pos_ - 1);
        if (name == "amp") out += '&';
        else if (name == "lt") out += '<';
        else if (name == "gt") out += '>';
        else if (name == "quot") out += '"';
        else if (name == "apos") out += '\'';
        else if (name.size() >= 2 && name[0] == '#') {
            const bool hexadecimal = name[1] == 'x';
            const std::string_view digits = name.substr(hexadecimal ? 2 : 1);
            if (digits.empty() || digits.size() > 7) fail("a bad character reference");
            std::uint32_t cp = 0;
            for (const char c : digits) {
                int value = -1;
                if (c >= '0' && c <= '9') value = c - '0';
                else if (hexadecimal && c >= 'a' && c <= 'f') value = c - 'a' + 10;
                else if (hexadecimal && c >= 'A' && c <= 'F') value = c - 'A' + 10;
                if (value < 0) fail("a bad character reference");
                cp = cp * (hexadecimal ? 16 : 10) + static_cast<std::uint32_t>(value);
            }
            if (!is_xml_char(cp)) fail("a character reference to a character XML does not allow");
            append_utf8(out, cp);
        } else {
            fail("an unknown entity '&" + std::string(name.substr(0, 40)) + ";'");
        }
        pos_ = semicolon + 1;
    }

    // Character data up to the next '<', unescaped and with line ends normalised, into `out`.
    void read_text(std::string& out) {
        while (!at_end() && xml_[pos_] != '<') {
            const char c = xml_[pos_];
            const auto u = static_cast<unsigned char>(c);
            if (c == '&') {
                read_reference(out);
            } else if (c == '\r') {
                out += '\n';
                ++pos_;
                if (!at_end() && xml_[pos_] == '\n') ++pos_;
            } else if ((u < 0x20 && c != '\t' && c != '\n') || u == 0x7F) {
                fail("a control character in the text");
            } else {
                out += c;
                ++pos_;
            }
        }
    }

    static bool only_spaces(const std::string& text) {
        for (const char c : text)
            if (!is_space(c)) return false;
        return true;
    }

    void read_element_tree() {
        std::vector<frame> stack;
        do {
            if (at_end()) fail("the body ends inside <" + stack.back().name + ">");
            if (xml_[pos_] != '<') {
                read_text(stack.back().text);
                continue;
            }
            if (starts_with("</")) {
                if (stack.empty()) fail("an end tag before the root element");
                pos_ += 2;
                const std::string_view name = read_name();
                skip_spaces();
                if (at_end() || xml_[pos_] != '>') fail("unterminated end tag");
                ++pos_;
                if (name != stack.back().name)
                    fail("</" + std::string(name.substr(0, 40)) + "> closes <" + stack.back().name + ">");
                close(stack);
                continue;
            }
            if (starts_with("<![CDATA[")) {
                if (stack.empty()) fail("CDATA outside the root element");
                pos_ += 9;
                const std::size_t end = xml_.find("]]>", pos_);
                if (end == std::string_view::npos) fail("unterminated CDATA section");
                stack.back().text.append(xml_.substr(pos_, end - pos_));
                pos_ = end + 3;
                continue;
            }
            if (skip_comment_or_pi()) continue;
            if (starts_with("<!")) fail("an unexpected '<!' declaration");
            ++pos_;
            frame opened;
            opened.name = std::string(read_name());
            const bool empty = read_attributes();
            if (stack.empty() && opened.name != "ListBucketResult")
                fail("the root element is <" + opened.name.substr(0, 40) + ">, not <ListBucketResult>");
            if (stack.size() >= max_depth) fail("elements nested too deep");
            if (!stack.empty()) stack.back().has_children = true;
            stack.push_back(std::move(opened));
            if (empty) close(stack);
        } while (!stack.empty());
    }

    // The element on top of `stack` has ended: take what the page needs from it.
    void close(std::vector<frame>& stack) {
        frame done = std::move(stack.back());
        stack.pop_back();
        if (done.has_children && !only_spaces(done.text)) fail("text mixed with elements in <" + done.name + ">");
        if (stack.empty()) return;  // the root
        frame& parent = stack.back();
        if (stack.size() == 1) {  // a child of ListBucketResult
            if (done.name == "IsTruncated") {
                if (++truncated_count_ > 1) fail("more than one <IsTruncated>");
                std::string_view value = done.text;
                while (!value.empty() && is_space(value.front())) value.remove_prefix(1);
                while (!value.empty() && is_space(value.back())) value.remove_suffix(1);
                if (value == "true") page_.truncated = true;
                else if (value == "false") page_.truncated = false;
                else fail("<IsTruncated> is neither true nor false");
            } else if (done.name == "NextContinuationToken") {
                if (++token_count_ > 1) fail("more than one <NextContinuationToken>");
                page_.next_token = std::move(done.text);
            } else if (done.name == "Contents") {
                if (done.keys != 1) fail("a <Contents> with " + std::to_string(done.keys) + " <Key> elements");
            } else if (done.name == "CommonPrefixes") {
                fail("<CommonPrefixes> in a listing asked for without a delimiter");
            } else if (done.name == "EncodingType") {
                if (!only_spaces(done.text)) fail("keys encoded as '" + done.text.substr(0, 40) + "', which was not asked for");
            }
        } else if (stack.size() == 2 && parent.name == "Contents" && done.name == "Key") {
            if (done.has_children) fail("a <Key> with elements inside");
            if (done.text.empty()) fail("an empty <Key>");
            ++parent.keys;
            page_.keys.push_back(std::move(done.text));
        }
    }

    std::string_view xml_;
    std::size_t pos_ = 0;
    s3_list_page page_;
    int truncated_count_ = 0;
    int token_count_ = 0;
};

// One page of a ListObjectsV2 answer. Throws tilekit::error (errc::storage_error) for a body
// larger than `max_bytes` or one that is not a well-formed ListBucketResult with an IsTruncated
// (and a NextContinuationToken when truncated).
inline s3_list_page parse_list_objects_v2(std::string_view xml, std::size_t max_bytes = std::size_t{64} << 20) {
    if (xml.size() > max_bytes)
        throw error(errc::storage_error, "ListObjectsV2 response of " + std::to_string(xml.size()) +
                                             " bytes is larger than the limit of " + std::to_string(max_bytes));
    return s3_list_reader(xml).read();
}

}  // namespace detail
TILEKIT_NAMESPACE_END
// #include <tilekit/s3/detail/transfer.hpp>
// One HTTP exchange with S3, shared by the blocking client and the concurrent sink: setting up
// a curl handle for a signed request, judging the answer (done, retry, or fail), the backoff
// before a retry, and the typed error for a failure.

// #include <tilekit/s3/config.hpp>
// #include <tilekit/s3/detail/curl.hpp>
// #include <tilekit/s3/error.hpp>
// #include <tilekit/s3/request.hpp>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <random>
#include <string>

TILEKIT_NAMESPACE_BEGIN
namespace detail {

inline void setup_easy(CURL* easy, const s3::http_request& request, const header_slist& headers, upload_cursor* upload,
                       s3_response& answer, const s3::timeouts& limits) {
    curl_easy_setopt(easy, CURLOPT_URL, request.url.c_str());
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers.get());
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, limits.connect_ms);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, limits.request_ms);
    curl_easy_setopt(easy, CURLOPT_LOW_SPEED_LIMIT, limits.low_speed_bytes_per_s);
    curl_easy_setopt(easy, CURLOPT_LOW_SPEED_TIME, limits.low_speed_seconds);
    curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(easy, CURLOPT_PATH_AS_IS, 1L);  // send the signed path byte for byte
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, answer.curl_message);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_curl_body);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, &answer);
    curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, on_curl_header);
    curl_easy_setopt(easy, CURLOPT_HEADERDATA, &answer);
    if (answer.cancel) {
        curl_easy_setopt(easy, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(easy, CURLOPT_XFERINFOFUNCTION, on_curl_progress);
        curl_easy_setopt(easy, CURLOPT_XFERINFODATA, &answer);
    }
    answer.easy = easy;
    if (request.method == "PUT") {
        curl_easy_setopt(easy, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(easy, CURLOPT_READFUNCTION, on_curl_read);
        curl_easy_setopt(easy, CURLOPT_READDATA, upload);
        curl_easy_setopt(easy, CURLOPT_SEEKFUNCTION, on_curl_seek);
        curl_easy_setopt(easy, CURLOPT_SEEKDATA, upload);
        curl_easy_setopt(easy, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(upload ? upload->size : 0));
    } else if (request.method == "HEAD") {
        curl_easy_setopt(easy, CURLOPT_NOBODY, 1L);
    } else if (request.method != "GET") {
        curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, request.method.c_str());
    }
}

enum class s3_verdict { done, retry, fix_clock_and_retry, fail };

inline bool retryable_curl_code(CURLcode code) {
    switch (code) {
        case CURLE_COULDNT_CONNECT:
        case CURLE_SEND_ERROR:
        case CURLE_RECV_ERROR:
        case CURLE_OPERATION_TIMEDOUT:
        case CURLE_GOT_NOTHING:
        case CURLE_PARTIAL_FILE:
        case CURLE_HTTP2:
        case CURLE_HTTP2_STREAM:
        case CURLE_SSL_CONNECT_ERROR:
            return true;
        default:
            return false;
    }
}

inline s3_verdict judge_s3_response(const s3_response& answer) {
    if (answer.curl_code != CURLE_OK)
        return !answer.body_too_large && retryable_curl_code(answer.curl_code) ? s3_verdict::retry : s3_verdict::fail;
    const long status = answer.status;
    if (status >= 200 && status < 300) return s3_verdict::done;
    const std::string code = s3_xml_element(answer.body, "Code");
    if (code == "RequestTimeTooSkewed") return s3_verdict::fix_clock_and_retry;
    if (status == 500 || status == 502 || status == 503 || status == 504 || status == 429) return s3_verdict::retry;
    if (code == "SlowDown" || code == "RequestTimeout" || code == "InternalError" || code == "ServiceUnavailable")
        return s3_verdict::retry;
    return s3_verdict::fail;
}

// Server time minus local time, from a Date header; 0 when it cannot be read.
inline long long skew_from_date(const std::string& date_header) {
    if (date_header.empty()) return 0;
    const std::time_t server = curl_getdate(date_header.c_str(), nullptr);
    if (server <= 0) return 0;
    return static_cast<long long>(server) - static_cast<long long>(std::time(nullptr));
}

inline std::chrono::milliseconds s3_backoff(const s3::retry_policy& policy, int attempt, const s3_response& answer,
                                            std::mt19937_64& random) {
    const long long cap = std::min<long long>(policy.max_delay.count(),
                                              policy.base_delay.count() << std::min(attempt, 20));
    std::uniform_int_distribution<long long> jitter(0, std::max<long long>(cap, 0));
    long long delay = jitter(random);
    if (!answer.retry_after.empty() && answer.retry_after.find_first_not_of("0123456789") == std::string::npos &&
        answer.retry_after.size() < 7)
        delay = std::max<long long>(delay, std::min<long long>(std::stoll(answer.retry_after) * 1000,
                                                               policy.max_retry_after.count()));
    return std::chrono::milliseconds(delay);
}

inline s3::s3_error make_s3_error(const std::string& method, const std::string& key, const s3_response& answer,
                                  int attempts) {
    const std::string what = "S3 " + method + " '" + key + "'";
    const std::string tries = attempts > 1 ? " (after " + std::to_string(attempts) + " attempts)" : "";
    if (answer.body_too_large)
        return s3::s3_error(errc::storage_error, what + " failed: the response is larger than the limit of " +
                                                     std::to_string(answer.max_body) + " bytes",
                            answer.status, "ResponseTooLarge", key);
    if (answer.curl_code != CURLE_OK) {
        const std::string detail = answer.curl_message[0] ? answer.curl_message : curl_easy_strerror(answer.curl_code);
        return s3::s3_error(errc::storage_error, what + " failed: " + detail + tries, 0,
                            "curl:" + std::string(curl_easy_strerror(answer.curl_code)), key);
    }
    const std::string code = s3_xml_element(answer.body, "Code");
    const std::string message = s3_xml_element(answer.body, "Message");
    std::string text = what + " failed: HTTP " + std::to_string(answer.status);
    if (!code.empty()) text += " " + code;
    if (!message.empty()) text += ": " + message;
    text += tries;
    return s3::s3_error(classify_s3_code(answer.status, code), text, answer.status, code, key);
}

}  // namespace detail
TILEKIT_NAMESPACE_END
// #include <tilekit/s3/error.hpp>
// #include <tilekit/s3/request.hpp>

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
// #include <tilekit/s3/sink.hpp>
// The S3 storage sink: many PUTs in flight over reused connections (one curl multi handle on a
// background thread), retries with full-jitter backoff re-signed on every attempt, Retry-After
// honoured, and backpressure: put() blocks while `max_pending` objects already wait, so memory
// stays bounded however fast the tiler encodes. flush() waits for every upload and throws the
// first failure with its key; after a failure nothing else is uploaded, so a run whose uploads
// failed never publishes its manifest. remove() deletes right away (a blocking DELETE); list()
// waits for the uploads put so far, then lists (ListObjectsV2, blocking).

// #include <tilekit/key.hpp>
// #include <tilekit/s3/client.hpp>
// #include <tilekit/s3/config.hpp>
// #include <tilekit/s3/detail/curl.hpp>
// #include <tilekit/s3/detail/transfer.hpp>
// #include <tilekit/s3/request.hpp>
// #include <tilekit/sink.hpp>

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
// #include <tilekit/s3/source.hpp>
// Image sources on S3 / R2 (tilekit::image_source): a source image fetched by a signed GET
// through the client, or by a presigned URL handed over by another service (used verbatim,
// never re-encoded). Both stream to the caller's scratch directory and stop at the size limit.

// #include <tilekit/error.hpp>
// #include <tilekit/s3/client.hpp>
// #include <tilekit/s3/error.hpp>
// #include <tilekit/source.hpp>

#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>

TILEKIT_NAMESPACE_BEGIN
namespace detail {

// The client reports an over-limit body as a storage error; image_source promises image_too_large.
template <class F>
std::string s3_fetch_with_limit(const std::string& key, std::uint64_t max_bytes, F&& fetch) {
    try {
        return fetch();
    } catch (const s3::s3_error& e) {
        if (e.s3_code() == "ResponseTooLarge")
            throw error(errc::image_too_large, "source image '" + key + "' is larger than the limit of " +
                                                   std::to_string(max_bytes) + " bytes");
        throw;
    }
}

// A source that downloads the object to "<scratch>/source": fetch() and fetch_cancellable() for
// both S3 sources below, which differ only in how they download.
class s3_download_source : public image_source {
public:
    std::string fetch(const std::string& key, const std::filesystem::path& scratch_dir, std::uint64_t max_bytes) override {
        return fetch_watching(key, scratch_dir, max_bytes, nullptr);
    }
    // A cancel stops the download part-way (within a fraction of a second), not after it.
    std::string fetch_cancellable(const std::string& key, const std::filesystem::path& scratch_dir, std::uint64_t max_bytes,
                                  const cancel_token& cancel) override {
        if (cancel.is_cancelled()) throw cancelled_error();
        return fetch_watching(key, scratch_dir, max_bytes, &cancel);
    }

protected:
    virtual void download(const std::string& key, const std::string& path, std::uint64_t max_bytes,
                          const cancel_token* cancel) = 0;

private:
    std::string fetch_watching(const std::string& key, const std::filesystem::path& scratch_dir, std::uint64_t max_bytes,
                               const cancel_token* cancel) {
        const std::string path = (scratch_dir / "source").string();
        return s3_fetch_with_limit(key, max_bytes, [&] {
            download(key, path, max_bytes, cancel);
            return path;
        });
    }
};

}  // namespace detail
namespace s3 {

class object_source final : public detail::s3_download_source {
public:
    explicit object_source(client& storage) : client_(storage) {}

private:
    void download(const std::string& key, const std::string& path, std::uint64_t max_bytes, const cancel_token* cancel) override {
        client_.get_to_file(key, path, max_bytes, cancel);
    }

    client& client_;
};

class presigned_url_source final : public detail::s3_download_source {
public:
    presigned_url_source(client& downloader, std::string url) : client_(downloader), url_(std::move(url)) {}

private:
    void download(const std::string&, const std::string& path, std::uint64_t max_bytes, const cancel_token* cancel) override {
        client_.download_url_to_file(url_, path, max_bytes, cancel);
    }

    client& client_;
    std::string url_;
};

}  // namespace s3
TILEKIT_NAMESPACE_END
