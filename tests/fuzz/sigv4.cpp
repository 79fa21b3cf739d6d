// libFuzzer target: SigV4 canonicalisation, header signing and presigned URLs
// (include/tilekit/s3/sigv4.hpp, request.hpp).
// Input, newline-separated fields (missing ones are empty): object key, query, header name,
// header value, session token, unix seconds (decimal, clamped to what system_clock holds),
// flags ('v': virtual-host addressing, 't': an https endpoint).
// Only tilekit::error may come out. Invariants (trap when violated):
//   - the canonical URI is a pure function of the key: object_path(key) computed twice is the
//     same, uses only unreserved characters, '/' and %XX, and decodes back to /bucket/key;
//   - canonical_query is idempotent (what a server computes from the query we send is what we
//     signed);
//   - detail::check_header refuses exactly empty names, names with non-token characters and
//     values with control characters other than tab;
//   - presign() succeeds exactly for valid keys; its URL carries one X-Amz-Signature, last, and
//     a verifier that parses the URL, canonicalises its query again and signs it with the same
//     secret gets the same signature;
//   - sign() refuses a header check_header refuses; otherwise the URL has no space, control or
//     non-ASCII byte, no header sent has CR, LF or NUL, and the same re-verification from what
//     is sent (URL, headers) reproduces the Authorization signature.
#include <tilekit/key.hpp>
#include <tilekit/s3/request.hpp>
#include <tilekit/s3/sigv4.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace s3 = tilekit::s3;
namespace detail = tilekit::detail;

namespace {

[[noreturn]] void violated(const char* what, const std::string& detail_text = "") {
    std::fprintf(stderr, "sigv4: invariant violated: %s\n  %s\n", what, detail_text.c_str());
    __builtin_trap();
}

std::vector<std::string> fields_of(const std::uint8_t* data, std::size_t size, std::size_t count) {
    std::vector<std::string> fields(count);
    std::size_t at = 0, field = 0;
    const std::string input(reinterpret_cast<const char*>(data), size);
    while (field + 1 < count) {
        const std::size_t nl = input.find('\n', at);
        if (nl == std::string::npos) break;
        fields[field++] = input.substr(at, nl - at);
        at = nl + 1;
    }
    if (at <= input.size()) fields[field] = input.substr(at);
    return fields;
}

// The reference rule for header names (RFC 9110 tokens) and values.
bool header_acceptable(const std::string& name, const std::string& value) {
    if (name.empty()) return false;
    for (const char c : name) {
        const auto u = static_cast<unsigned char>(c);
        const bool token = (u >= '0' && u <= '9') || (u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') ||
                           std::string("!#$%&'*+-.^_`|~").find(c) != std::string::npos;
        if (!token) return false;
    }
    for (const char c : value) {
        const auto u = static_cast<unsigned char>(c);
        if ((u < 0x20 && u != '\t') || u == 0x7f) return false;
    }
    return true;
}

bool is_encoded_path(const std::string& path) {
    for (std::size_t i = 0; i < path.size(); ++i) {
        const auto u = static_cast<unsigned char>(path[i]);
        if (detail::is_uri_unreserved(u) || u == '/') continue;
        if (u == '%' && i + 2 < path.size() && detail::hex_value(path[i + 1]) >= 0 && detail::hex_value(path[i + 2]) >= 0 &&
            !(path[i + 1] >= 'a' && path[i + 1] <= 'f') && !(path[i + 2] >= 'a' && path[i + 2] <= 'f')) {
            i += 2;
            continue;
        }
        return false;
    }
    return true;
}

long long clamp_seconds(const std::string& text) {
    const long long limit = 9000000000LL;  // system_clock (nanoseconds in int64) holds about +-292 years
    const long long value = std::strtoll(text.c_str(), nullptr, 10);  // saturates; garbage is 0
    return value < -limit ? -limit : value > limit ? limit : value;
}

// The value of `name` in a raw query (the first one), undecoded.
std::string query_value(const std::string& query, const std::string& name, int* count = nullptr) {
    std::string found;
    int n = 0;
    std::size_t start = 0;
    while (start <= query.size()) {
        std::size_t end = query.find('&', start);
        if (end == std::string::npos) end = query.size();
        const std::string item = query.substr(start, end - start);
        if (item.compare(0, name.size() + 1, name + "=") == 0) {
            if (n++ == 0) found = item.substr(name.size() + 1);
        }
        start = end + 1;
    }
    if (count) *count = n;
    return found;
}

struct split_url {
    std::string path, query;
};

split_url split(const std::string& url, const std::string& base) {
    if (url.compare(0, base.size(), base) != 0) violated("a URL does not start with the endpoint", url);
    const std::string rest = url.substr(base.size());
    const std::size_t q = rest.find('?');
    return {rest.substr(0, q), q == std::string::npos ? std::string() : rest.substr(q + 1)};
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::vector<std::string> f = fields_of(data, size, 7);
    const std::string &key = f[0], &query = f[1], &header_name = f[2], &header_value = f[3], &token = f[4];
    const bool virtual_host = f[6].find('v') != std::string::npos;
    const bool https = f[6].find('t') != std::string::npos;
    const auto when = std::chrono::system_clock::time_point(std::chrono::seconds(clamp_seconds(f[5])));

    s3::config c;
    c.bucket = "tiles";
    c.creds = {"AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token};
    c.target = s3::parse_endpoint(https ? "https://s3.example.com" : "http://127.0.0.1:9000", "us-east-1");
    c.style = virtual_host ? s3::addressing::virtual_host : s3::addressing::path;
    const s3::request_signer signer(c);
    const s3::signer verifier(c.creds, c.target.region);
    const std::string base = c.target.scheme + "://" + signer.authority();
    const std::string bucket_prefix = virtual_host ? "/" : "/tiles/";

    // The canonical URI.
    const std::string path = signer.object_path(key);
    if (signer.object_path(key) != path) violated("object_path is not a pure function of the key", key);
    if (!is_encoded_path(path)) violated("object_path left a byte unencoded (or lower-case hex)", path);
    if (detail::uri_decode(path) != bucket_prefix + key) violated("object_path does not decode back to the key", path);

    // The canonical query.
    const std::string canonical = detail::canonical_query(query);
    if (detail::canonical_query(canonical) != canonical) violated("canonical_query is not idempotent", query);

    // check_header against the reference rule.
    bool header_ok = true;
    try {
        detail::check_header(header_name, header_value);
    } catch (const tilekit::error& e) {
        header_ok = false;
        if (e.code() != tilekit::errc::invalid_argument) violated("check_header threw another code than invalid_argument");
    }
    if (header_ok != header_acceptable(header_name, header_value))
        violated(header_ok ? "check_header accepted a header it must refuse" : "check_header refused a good header",
                 header_name + ": " + header_value);

    const bool key_ok = tilekit::key_problem(key).empty();
    const bool token_ok = header_acceptable("x-amz-security-token", token);

    // Presigned URL, then a verifier's view of it.
    std::string url;
    try {
        url = signer.presign("GET", key, std::chrono::seconds(3600), when);
    } catch (const tilekit::error&) {
        if (key_ok) violated("presign refused a valid key", key);
    }
    if (!url.empty()) {
        if (!key_ok) violated("presign accepted an invalid key", key);
        const split_url parts = split(url, base);
        if (parts.path != path) violated("the presigned URL's path is not object_path(key)", url);
        int signatures = 0;
        const std::string signature = query_value(parts.query, "X-Amz-Signature", &signatures);
        if (signatures != 1 || signature.size() != 64) violated("a presigned URL needs exactly one 64-digit signature", url);
        const std::size_t last = parts.query.rfind('&');
        if (last == std::string::npos || parts.query.compare(last + 1, 16, "X-Amz-Signature=") != 0)
            violated("X-Amz-Signature is not the last parameter", url);
        s3::request_to_sign again;
        again.method = "GET";
        again.encoded_path = parts.path;
        again.query = parts.query;  // canonical_query drops X-Amz-Signature itself
        again.headers = {{"host", signer.authority()}};
        again.payload_hash = "UNSIGNED-PAYLOAD";
        const std::string date = detail::uri_decode(query_value(parts.query, "X-Amz-Date"));
        if (date != detail::amz_date(when)) violated("X-Amz-Date is not the signing time", url);
        if (verifier.sign(again, date).signature != signature)
            violated("re-canonicalising the presigned URL's query gives another signature", url);
        if (!token.empty() && detail::uri_decode(query_value(parts.query, "X-Amz-Security-Token")) != token)
            violated("the session token does not survive the query", url);
    }

    // A header-signed request, then a verifier's view of what is sent.
    s3::http_request sent;
    bool signed_ok = false;
    try {
        sent = signer.sign("PUT", key, query, {{header_name, header_value}}, "UNSIGNED-PAYLOAD", when);
        signed_ok = true;
    } catch (const tilekit::error&) {
    }
    if (signed_ok && !header_ok) violated("sign() sent a header check_header refuses", header_name + ": " + header_value);
    if (signed_ok && !key.empty() && !key_ok) violated("sign() accepted an invalid key", key);
    if (!signed_ok && header_ok && (key.empty() || key_ok)) violated("sign() refused a good request", key);
    if (signed_ok) {
        for (const char ch : sent.url) {
            const auto u = static_cast<unsigned char>(ch);
            if (u <= 0x20 || u >= 0x7f) violated("the URL has a space, control or non-ASCII byte", sent.url);
        }
        std::string authorization;
        s3::request_to_sign again;
        for (const auto& [name, value] : sent.headers) {
            const bool clean = name.find_first_of(std::string("\r\n\0", 3)) == std::string::npos &&
                               value.find_first_of(std::string("\r\n\0", 3)) == std::string::npos;
            // The session token is configuration, not request input; it is only checked when clean.
            if (!clean && !(name == "x-amz-security-token" && !token_ok))
                violated("a header sent has CR, LF or NUL", name + ": " + value);
            if (name == "Authorization") {
                authorization = value;
                continue;
            }
            if (!detail::is_unsigned_header(name)) again.headers.emplace_back(name, value);
        }
        again.headers.emplace_back("host", signer.authority());
        const split_url parts = split(sent.url, base);
        if (parts.query != canonical) violated("the query sent is not the canonical query", sent.url);
        again.method = "PUT";
        again.encoded_path = parts.path;
        again.query = parts.query;
        again.payload_hash = "UNSIGNED-PAYLOAD";
        const std::size_t at = authorization.rfind("Signature=");
        if (at == std::string::npos) violated("no Signature in the Authorization header", authorization);
        if (verifier.sign(again, detail::amz_date(when)).signature != authorization.substr(at + 10))
            violated("re-verifying what is sent gives another signature", sent.url);
    }
    return 0;
}
