#pragma once
// The service's request parsing with no I/O, no database and no httplib: path pieces, query
// values, JSON bodies and the presented credentials, each a pure function of its text. The handlers
// (routes.cpp, files.cpp, auth.cpp) call these in the order their checks run;
// tests/fuzz/service_request.cpp fuzzes them.

#include <tilekit/jobs.hpp>  // jobs::is_uuid

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <optional>
#include <string>

namespace tilekit_service {

// 1..64 characters of [a-z0-9-].
inline bool valid_slug(const std::string& slug) {
    return !slug.empty() && slug.size() <= 64 &&
           slug.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-") == std::string::npos;
}

// Version numbers are 1..max_version_number: at most 9 digits in a URL.
inline constexpr int max_version_number = 999999999;

// "1".."999999999" (leading zeros allowed) -> the number; anything else -> 0.
inline int parse_version_number(const std::string& text) {
    if (text.empty() || text.size() > 9 || text.find_first_not_of("0123456789") != std::string::npos) return 0;
    return std::stoi(text);
}

inline std::string lower(std::string text) {
    std::transform(text.begin(), text.end(), text.begin(), [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
    return text;
}

// A refused request: the status and the {"detail"} text to answer with.
struct parse_failure {
    int status = 0;
    std::string detail;
};

// The request body as a JSON object (an empty body is {}), or why not (413, 400, 422).
inline std::optional<nlohmann::json> parse_json_body(const std::string& body, std::uint64_t max_bytes,
                                                     parse_failure& failure) {
    if (body.size() > max_bytes) {
        failure = {413, "Request body too large (limit " + std::to_string(max_bytes) + " bytes)"};
        return std::nullopt;
    }
    if (body.empty()) return nlohmann::json::object();
    nlohmann::json parsed = nlohmann::json::parse(body, nullptr, false);
    if (parsed.is_discarded()) {
        failure = {400, "Malformed JSON body"};
        return std::nullopt;
    }
    if (!parsed.is_object()) {
        failure = {422, "The JSON body must be an object"};
        return std::nullopt;
    }
    return parsed;
}

inline const char* const invalid_slug_detail = "Invalid project slug: 1..64 characters of [a-z0-9-]";

// POST /projects: {"slug": required, "name": optional, default the slug}.
struct project_fields {
    std::string slug, name;
};

inline std::optional<project_fields> parse_project_fields(const nlohmann::json& body, parse_failure& failure) {
    if (!body.contains("slug") || !body["slug"].is_string()) {
        failure = {422, "Field 'slug' (string) is required"};
        return std::nullopt;
    }
    project_fields fields;
    fields.slug = body["slug"].get<std::string>();
    if (!valid_slug(fields.slug)) {
        failure = {422, invalid_slug_detail};
        return std::nullopt;
    }
    fields.name = fields.slug;
    if (body.contains("name")) {
        if (!body["name"].is_string() || body["name"].get<std::string>().size() > 200) {
            failure = {422, "Field 'name' must be a string of at most 200 characters"};
            return std::nullopt;
        }
        fields.name = body["name"].get<std::string>();
    }
    return fields;
}

// POST /projects/{slug}/versions: {"number": optional 1..999999999 (0: the next one),
// "status": optional "draft" (default) or "published"}.
struct version_fields {
    int number = 0;
    std::string status = "draft";
};

inline std::optional<version_fields> parse_version_fields(const nlohmann::json& body, parse_failure& failure) {
    version_fields fields;
    if (body.contains("number")) {
        const nlohmann::json& n = body["number"];
        if (!n.is_number_integer() || n.get<long long>() < 1 || n.get<long long>() > max_version_number) {
            failure = {422, "Field 'number' must be an integer in 1..999999999"};
            return std::nullopt;
        }
        fields.number = n.get<int>();
    }
    if (body.contains("status")) {
        if (!body["status"].is_string() || (body["status"] != "draft" && body["status"] != "published")) {
            failure = {422, "Field 'status' must be 'draft' or 'published'"};
            return std::nullopt;
        }
        fields.status = body["status"].get<std::string>();
    }
    return fields;
}

// ?type= of an asset upload: 1..32 characters of [a-z_].
inline bool valid_asset_type(const std::string& type) {
    return !type.empty() && type.size() <= 32 && type.find_first_not_of("abcdefghijklmnopqrstuvwxyz_") == std::string::npos;
}

// The value of cookie `name` in a Cookie header ("" when absent).
inline std::string cookie_value(const std::string& header, const std::string& name) {
    std::size_t at = 0;
    while (at < header.size()) {
        const std::size_t end = std::min(header.find(';', at), header.size());
        std::string part = header.substr(at, end - at);
        const std::size_t first = part.find_first_not_of(' ');
        part = first == std::string::npos ? "" : part.substr(first);
        if (part.compare(0, name.size() + 1, name + "=") == 0) return part.substr(name.size() + 1);
        at = end + 1;
    }
    return "";
}

// The bearer token of an `Authorization: Bearer T` header ("" for none or another scheme). A
// token is taken from this header only, never from the query: a URL ends up in browser history
// and proxy logs (auth.hpp).
inline std::string bearer_token(const std::string& authorization) {
    if (authorization.size() > 7 && (authorization.compare(0, 7, "Bearer ") == 0 || authorization.compare(0, 7, "bearer ") == 0))
        return authorization.substr(7);
    return "";
}

// The session id a request presents in cookie `cookie_name` ("" for none), by the rules of
// auth.hpp: GET and HEAD only (a cookie never authenticates a write: CSRF), and only without an
// Authorization header (another scheme is refused, never mixed with the cookie).
inline std::string session_cookie(const std::string& authorization, const std::string& method,
                                  const std::string& cookie_header, const std::string& cookie_name) {
    if (!authorization.empty()) return "";
    if (method != "GET" && method != "HEAD") return "";
    return cookie_value(cookie_header, cookie_name);
}

// The project slug a tile key belongs to, by the prefix template ("mp/{slug}/..."); empty when
// the template has no {slug} or the key does not fit it.
inline std::string slug_of_key(const std::string& prefix_template, const std::string& key) {
    const std::size_t at = prefix_template.find("{slug}");
    if (at == std::string::npos) return "";
    const std::string before = prefix_template.substr(0, at);
    if (key.compare(0, before.size(), before) != 0) return "";
    const std::size_t end = key.find('/', before.size());
    return end == std::string::npos ? "" : key.substr(before.size(), end - before.size());
}

// Whether `key` is an object under the tile prefix of version `number` of project `slug`: the
// prefix template with {slug} and {version} put in as the tile jobs do ({job_id}: any job id),
// and something after it. Source uploads and other folders of a project are not under one.
inline bool key_under_tile_prefix(const std::string& prefix_template, const std::string& slug, int number,
                                  const std::string& key) {
    std::string prefix = prefix_template;
    const auto replace_all = [&prefix](const std::string& name, const std::string& value) {
        for (std::size_t at = prefix.find(name); at != std::string::npos; at = prefix.find(name, at + value.size()))
            prefix.replace(at, name.size(), value);
    };
    replace_all("{slug}", slug);
    replace_all("{version}", std::to_string(number));
    if (!prefix.empty() && prefix.back() != '/') prefix += '/';
    std::size_t at_key = 0, at_prefix = 0;
    for (std::size_t job = prefix.find("{job_id}"); job != std::string::npos; job = prefix.find("{job_id}", at_prefix)) {
        if (key.compare(at_key, job - at_prefix, prefix, at_prefix, job - at_prefix) != 0) return false;
        at_key += job - at_prefix;
        if (key.size() < at_key + 36 || !tilekit::jobs::is_uuid(key.substr(at_key, 36))) return false;
        at_key += 36;
        at_prefix = job + 8;
    }
    const std::size_t rest = prefix.size() - at_prefix;
    return key.size() > at_key + rest && key.compare(at_key, rest, prefix, at_prefix, rest) == 0;
}

// The length of the well-formed UTF-8 sequence at text[at] (1..4), or 0 when the bytes there
// are ill-formed (a stray continuation byte, an overlong form, a surrogate, beyond U+10FFFF,
// or cut short).
inline std::size_t utf8_sequence_length(const std::string& text, std::size_t at) {
    const auto byte = [&](std::size_t i) { return i < text.size() ? static_cast<unsigned char>(text[i]) : 0u; };
    const unsigned lead = byte(at);
    if (lead < 0x80) return 1;
    std::size_t length = 0;
    unsigned low = 0x80, high = 0xbf;  // the range of the second byte
    if (lead >= 0xc2 && lead <= 0xdf) length = 2;
    else if (lead == 0xe0) length = 3, low = 0xa0;
    else if (lead == 0xed) length = 3, high = 0x9f;
    else if (lead >= 0xe1 && lead <= 0xef) length = 3;
    else if (lead == 0xf0) length = 4, low = 0x90;
    else if (lead == 0xf4) length = 4, high = 0x8f;
    else if (lead >= 0xf1 && lead <= 0xf3) length = 4;
    else return 0;
    if (byte(at + 1) < low || byte(at + 1) > high) return 0;
    for (std::size_t i = 2; i < length; ++i)
        if (byte(at + i) < 0x80 || byte(at + i) > 0xbf) return 0;
    return length;
}

// The filename recorded for an uploaded asset: ?filename=, else the multipart part's. It is
// answered as JSON, which must be UTF-8: each ill-formed byte becomes '?', and the name is cut
// to at most 200 bytes between characters, never inside one.
inline std::string asset_filename(const std::string& parameter, const std::string& multipart_filename) {
    const std::string& filename = parameter.empty() ? multipart_filename : parameter;
    std::string out;
    for (std::size_t at = 0; at < filename.size();) {
        const std::size_t length = utf8_sequence_length(filename, at);
        if (out.size() + (length ? length : 1) > 200) break;
        if (length) out.append(filename, at, length);
        else out += '?';
        at += length ? length : 1;
    }
    return out;
}

}  // namespace tilekit_service
