#pragma once
// Where objects go and who signs for them: an endpoint (R2 from an account id, AWS by region, or
// any S3-compatible URL), the bucket, the addressing style and credentials, from explicit
// values or the standard AWS environment variables. Also how hard a transfer tries: the retry
// policy and the timeouts that s3::client and s3::s3_sink take.

#include <tilekit/error.hpp>
#include <tilekit/s3/sigv4.hpp>

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
