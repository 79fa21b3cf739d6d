// libFuzzer target: the example HTTP service's request handling before any catalog lookup, fed
// the way its HTTP layer (examples/http_service/http/, Boost.Beast underneath in server.cpp
// only) feeds it: the request-target through http::parse_target (path split on '/', each
// segment percent-decoded on its own, the query decoded; a refused target is answered 400 and
// is fine here), the segments through the service's real http::router with every route of
// routes.cpp and files.cpp, then the parsers of request_parsing.hpp on what the routes capture.
// auth.cpp (require_user) needs the catalog and is not compiled in: its pure part, which
// credentials a request presents, is request_parsing.hpp's bearer_token and session_cookie.
// Input, newline-separated: "METHOD TARGET", the Authorization header, the Cookie header, then
// the body (the rest, newlines included).
// Only tilekit::error could come out (nothing here throws one). Invariants (trap when violated):
//   - parse_target is deterministic (twice the same text, twice the same segments and query);
//     an accepted target starts with '/' and holds no byte <= 0x20, 0x7f or '#';
//   - a decoded segment holds a '/' only where its raw text held "%2F": the segments are the
//     raw path's '/'-separated pieces (as many as its '/'s, "/" alone none), and joined with '/'
//     they split into exactly segments + (number of %2F) pieces, never more;
//   - no control character (< 0x20, 0x7f) in a decoded segment, query name or query value;
//   - the router agrees with a plain segment matcher over the same patterns: the first route
//     whose pattern and method (HEAD for GET) match is the one taken, with the segments
//     ("{name}": one non-empty segment; "{*rest}": the rest, at least one segment, none with
//     an encoded '/', joined by '/') as captures; no such route but a pattern that matches: 405 with Allow listing the
//     methods; no pattern: 404;
//   - a parsed version number n is 1..999999999, its text is digits only and equals
//     std::to_string(n) after leading zeros, and parse_version_number(std::to_string(n)) == n;
//     text that is 9 digits or fewer and not all zeros always parses;
//   - valid_slug accepts only 1..64 of [a-z0-9-]; a slug_of_key of a valid key is the segment
//     after the template's prefix;
//   - a token is never taken from a query parameter (`?token=` is not accepted any more): the
//     presented bearer token is what follows "Bearer " (or "bearer ") in the Authorization
//     header, taken from nothing else (bearer_token sees the header only); the session id (a random id, never the token) is a cookie
//     value of the Cookie header, never taken for another method than GET and HEAD or beside
//     an Authorization header;
//   - a parsed JSON body is an object; parsed project and version fields keep their ranges;
//   - whatever the parsers accept can be answered: the JSON the service would send for it
//     (the recorded asset filename included) dumps without throwing.
#include "http/router.hpp"
#include "http/target.hpp"
#include "request_parsing.hpp"

#include <tilekit/key.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace svc = tilekit_service;
namespace http = tilekit_service::http;

namespace {

const char* const session_cookie_name = "tilekit_session";  // auth.hpp (which needs the catalog)

[[noreturn]] void violated(const char* what, const std::string& detail = "") {
    std::fprintf(stderr, "service_request: invariant violated: %s\n  [%s]\n", what, detail.c_str());
    __builtin_trap();
}

// The service's routes (routes.cpp, files.cpp), method and pattern, in the order they are added.
struct route {
    const char* method;
    const char* pattern;
    bool stream;  // post_stream
};
const route routes[] = {
    {"GET", "/health", false},
    {"GET", "/projects", false},
    {"POST", "/projects", false},
    {"GET", "/projects/{slug}", false},
    {"POST", "/projects/{slug}/versions", false},
    {"GET", "/projects/{slug}/versions/{version}", false},
    {"POST", "/projects/{slug}/versions/{version}/publish", false},
    {"GET", "/projects/{slug}/live", false},
    {"POST", "/projects/{slug}/assets", true},
    {"POST", "/projects/{slug}/versions/{version}/generate-tiles", false},
    {"GET", "/projects/{slug}/jobs", false},
    {"GET", "/metrics", false},
    {"GET", "/jobs/{id}", false},
    {"POST", "/jobs/{id}/cancel", false},
    {"GET", "/projects/{slug}/versions/{version}/viewer", false},
    {"GET", "/projects/{slug}/viewer", false},
    {"POST", "/projects/{slug}/versions/{version}/viewer-link", false},
    {"POST", "/projects/{slug}/viewer-link", false},
    {"GET", "/static/{*path}", false},
    {"GET", "/tiles/{*key}", false},
};
constexpr std::size_t route_count = sizeof routes / sizeof routes[0];

// Which route the router took last, and its captures (set by the handlers and prechecks).
struct taken {
    int index = -1;
    std::vector<std::string> captures;
};
taken last;

const http::router& service_router() {
    static const http::router r = [] {
        http::router out;
        for (std::size_t i = 0; i < route_count; ++i) {
            const int index = static_cast<int>(i);
            const auto record = [index](const http::route_request& req) {
                last.index = index;
                last.captures = req.captures;
            };
            if (std::string(routes[i].method) == "GET") {
                out.get(routes[i].pattern, [record](const http::route_request& req, http::response& res) {
                    record(req);
                    res.status = 299;
                });
            } else {
                // The precheck runs on the header alone; answering here keeps the body unread.
                const http::precheck before = [record](const http::route_request& req, http::response& res) {
                    record(req);
                    res.status = 299;
                    return false;
                };
                if (routes[i].stream)
                    out.post_stream(routes[i].pattern, 1, [record](const http::route_request& req, http::response& res) {
                        record(req);  // the factory runs on the header alone too
                        res.status = 299;
                        return std::shared_ptr<http::body_sink>();
                    });
                else
                    out.post(routes[i].pattern, before, 1, [](const http::route_request&, http::response&) {});
            }
        }
        return out;
    }();
    return r;
}

std::vector<std::string> split_pattern(const std::string& pattern) {
    std::vector<std::string> out;
    std::size_t start = 1;
    for (;;) {
        const std::size_t slash = pattern.find('/', start);
        out.push_back(pattern.substr(start, slash == std::string::npos ? std::string::npos : slash - start));
        if (slash == std::string::npos) break;
        start = slash + 1;
    }
    if (out.size() == 1 && out[0].empty()) out.clear();
    return out;
}

// The reference matcher: the pattern's segments against the request's.
bool mirror_match(const std::string& pattern, const std::vector<std::string>& segments, std::vector<std::string>& captures) {
    const std::vector<std::string> p = split_pattern(pattern);
    captures.clear();
    if (!p.empty() && p.back().rfind("{*", 0) == 0) {
        const std::size_t fixed = p.size() - 1;
        if (segments.size() < p.size()) return false;
        for (std::size_t i = 0; i < fixed; ++i) {
            if (p[i][0] == '{') {
                if (segments[i].empty()) return false;
                captures.push_back(segments[i]);
            } else if (p[i] != segments[i]) {
                return false;
            }
        }
        for (std::size_t j = fixed; j < segments.size(); ++j)
            if (segments[j].find('/') != std::string::npos) return false;  // "%2F" never adds a level
        std::string rest = segments[fixed];
        for (std::size_t j = fixed + 1; j < segments.size(); ++j) rest += "/" + segments[j];
        captures.push_back(rest);
        return true;
    }
    if (p.size() != segments.size()) return false;
    for (std::size_t i = 0; i < p.size(); ++i) {
        if (p[i][0] == '{') {
            if (segments[i].empty()) return false;
            captures.push_back(segments[i]);
        } else if (p[i] != segments[i]) {
            return false;
        }
    }
    return true;
}

bool has_control(const std::string& text) {
    for (const char c : text)
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return true;
    return false;
}

std::size_t count_encoded_slashes(const std::string& raw) {
    std::size_t n = 0;
    for (std::size_t at = raw.find('%'); at != std::string::npos; at = raw.find('%', at + 1))
        if (raw.compare(at, 3, "%2F") == 0 || raw.compare(at, 3, "%2f") == 0) ++n;
    return n;
}

void check_target(const std::string& target, const http::parsed_target& parsed) {
    const auto again = http::parse_target(target);
    if (!again || again->segments != parsed.segments || again->query != parsed.query)
        violated("parse_target is not deterministic", target);
    if (target.empty() || target[0] != '/') violated("a target that is not origin-form was accepted", target);
    for (const char c : target)
        if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f || c == '#') violated("a target with a raw space, control or '#' was accepted", target);
    // The raw path's pieces, one per decoded segment.
    const std::size_t question = target.find('?');
    const std::string raw_path = target.substr(1, question == std::string::npos ? std::string::npos : question - 1);
    std::vector<std::string> raw;
    for (std::size_t start = 0;;) {
        const std::size_t slash = raw_path.find('/', start);
        raw.push_back(raw_path.substr(start, slash == std::string::npos ? std::string::npos : slash - start));
        if (slash == std::string::npos) break;
        start = slash + 1;
    }
    if (raw.size() == 1 && raw[0].empty()) raw.clear();
    if (raw.size() != parsed.segments.size()) violated("the segments are not the raw path's '/'-separated pieces", target);
    std::size_t encoded = 0;
    std::string joined;
    for (std::size_t i = 0; i < raw.size(); ++i) {
        const std::string& s = parsed.segments[i];
        if (has_control(s)) violated("a control character in a decoded segment", target);
        std::size_t slashes = 0;
        for (const char c : s) slashes += c == '/';
        const std::size_t expected = count_encoded_slashes(raw[i]);
        if (slashes != expected) violated("a decoded segment holds a '/' that was not %2F", target);
        encoded += expected;
        joined += (i ? "/" : "") + s;
    }
    if (!raw.empty()) {
        std::size_t pieces = 1;
        for (const char c : joined) pieces += c == '/';
        if (pieces != raw.size() + encoded) violated("the joined segments split into more pieces than the path had", target);
        if (pieces > static_cast<std::size_t>(std::count(raw_path.begin(), raw_path.end(), '/')) + 1 + encoded)
            violated("the joined segments yield more segments than the '/' count + 1", target);
    }
    for (const auto& [name, value] : parsed.query)
        if (has_control(name) || has_control(value)) violated("a control character in a decoded query name or value", target);
}

void check_version_number(const std::string& text) {
    const int n = svc::parse_version_number(text);
    const bool digits = !text.empty() && text.find_first_not_of("0123456789") == std::string::npos;
    if (n == 0) {
        if (digits && text.size() <= 9 && text.find_first_not_of('0') != std::string::npos)
            violated("a number of 9 digits or fewer was refused", text);
        return;
    }
    if (n < 1 || n > 999999999) violated("a version number out of 1..999999999", text);
    if (!digits || text.size() > 9) violated("a version number parsed from text that is not 1..9 digits", text);
    const std::string shown = std::to_string(n);
    if (text.substr(text.find_first_not_of('0')) != shown) violated("a version number does not round-trip to its text", text);
    if (svc::parse_version_number(shown) != n) violated("std::to_string of a version number does not parse back", text);
}

void check_slug(const std::string& slug) {
    if (!svc::valid_slug(slug)) return;
    if (slug.empty() || slug.size() > 64) violated("valid_slug accepted a slug of bad length", slug);
    for (const char c : slug)
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) violated("valid_slug accepted a bad character", slug);
}

// The route the request reaches, checked against the mirror; then what its captures go through.
void check_routing(const std::string& method, const http::parsed_target& parsed, const std::string& target) {
    http::request r;
    r.method = method;
    r.target = target;
    r.segments = parsed.segments;
    r.query = parsed.query;
    last = taken{};
    const http::admission a = service_router().admit(r);

    int expected = -1;
    std::vector<std::string> expected_captures, captures;
    std::vector<std::string> allowed;
    for (std::size_t i = 0; i < route_count && expected < 0; ++i) {
        if (!mirror_match(routes[i].pattern, parsed.segments, captures)) continue;
        const std::string m = routes[i].method;
        if (m == method || (m == "GET" && method == "HEAD")) {
            expected = static_cast<int>(i);
            expected_captures = captures;
        } else {
            allowed.push_back(m);
        }
    }
    if (last.index != expected) violated("the router took another route than the segment patterns match", method + " " + target);
    if (expected >= 0) {
        if (last.captures != expected_captures) violated("the router's captures differ from the segments", target);
        if (!a.answer || a.answer->status != 299) violated("a matched route did not answer", target);
    } else {
        if (!a.answer) violated("an unmatched request was not answered", target);
        if (allowed.empty() && a.answer->status != 404) violated("no pattern matches but the answer is not 404", target);
        if (!allowed.empty()) {
            std::string allow;
            for (const std::string& m : allowed) allow += (allow.empty() ? "" : ", ") + m;
            std::string header;
            for (const auto& f : a.answer->headers)
                if (f.first == "allow") header = f.second;
            if (a.answer->status != 405 || header != allow) violated("a pattern matches another method but the answer is not 405 with Allow", target);
        }
        return;
    }

    const std::string pattern = routes[expected].pattern;
    const std::vector<std::string>& caps = last.captures;
    if (pattern.rfind("/projects/{slug}", 0) == 0) check_slug(caps.at(0));
    if (pattern.find("{version}") != std::string::npos) check_version_number(caps.at(1));
    if (pattern.rfind("/jobs/{id}", 0) == 0) (void)tilekit::jobs::is_uuid(svc::lower(caps.at(0)));
    if (pattern == "/tiles/{*key}" && tilekit::key_problem(caps.at(0)).empty()) {
        const std::string& key = caps.at(0);
        const std::string slug = svc::slug_of_key("mp/{slug}/uploads/tiles/{version}/", key);
        if (!slug.empty() && key.compare(0, 3 + slug.size() + 1, "mp/" + slug + "/") != 0)
            violated("slug_of_key returned something that is not the key's second segment", key);
        check_slug(slug);
        (void)svc::key_under_tile_prefix("mp/{slug}/uploads/tiles/{version}/{job_id}/", slug, 1, key);
    }
}

bool is_piece_of(const std::string& token, const std::string& text) { return text.find(token) != std::string::npos; }

void dump_or_die(const nlohmann::json& j, const char* what) {
    try {
        (void)j.dump();
    } catch (const nlohmann::json::exception& e) {
        violated(what, e.what());
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string input(reinterpret_cast<const char*>(data), size);
    std::string lines[3];
    std::size_t at = 0;
    for (std::string& line : lines) {
        const std::size_t nl = input.find('\n', at);
        if (nl == std::string::npos) {
            line = input.substr(at);
            at = input.size();
            break;
        }
        line = input.substr(at, nl - at);
        at = nl + 1;
    }
    const std::string body = at < input.size() ? input.substr(at) : std::string();
    const std::string& request_line = lines[0];
    const std::string& authorization = lines[1];
    const std::string& cookie = lines[2];
    const std::size_t space = request_line.find(' ');
    const std::string method = request_line.substr(0, space);
    const std::string target = space == std::string::npos ? std::string() : request_line.substr(space + 1);

    check_version_number(target);  // the parser on raw text too (not only what the router captures)

    // As the server: a target parse_target refuses is answered 400 before any route.
    const auto parsed = http::parse_target(target);
    http::request r;
    if (parsed) {
        check_target(target, *parsed);
        check_routing(method, *parsed, target);
        r.query = parsed->query;
    }

    // The query values the handlers read (request::param: the first value of a name).
    if (const auto type = r.param("type")) {
        if (svc::valid_asset_type(*type) &&
            (type->size() > 32 || type->find_first_not_of("abcdefghijklmnopqrstuvwxyz_") != std::string::npos))
            violated("valid_asset_type accepted a bad type", *type);
    }
    if (const auto asset_id = r.param("asset_id")) {
        const std::string id = svc::lower(*asset_id);
        if (tilekit::jobs::is_uuid(id) && id.size() != 36) violated("is_uuid accepted a string that is not 36 long", id);
    }
    const auto filename_parameter = r.param("filename");
    const std::string filename = svc::asset_filename(filename_parameter.value_or(""), body.substr(0, 300));
    if (filename.size() > 200) violated("an asset filename over 200 bytes", filename);
    dump_or_die(nlohmann::json{{"filename", filename}}, "the recorded asset filename cannot be sent back as JSON");

    // The presented credentials: a bearer token from the header only (never the query), a
    // session id from the cookie for GET and HEAD without an Authorization header.
    const std::string token = svc::bearer_token(authorization);
    if (!token.empty()) {
        if (authorization.size() <= 7 || token != authorization.substr(7) ||
            (authorization.compare(0, 7, "Bearer ") != 0 && authorization.compare(0, 7, "bearer ") != 0))
            violated("the token is not what follows \"Bearer \" in the header", token);
    }
    if (authorization.empty() && !token.empty()) violated("a token without an Authorization header", token);
    const std::string session = svc::session_cookie(authorization, method, cookie, session_cookie_name);
    if (!session.empty()) {
        if (!authorization.empty()) violated("a session was taken despite an Authorization header", authorization);
        if (method != "GET" && method != "HEAD") violated("a session cookie was taken for another method than GET or HEAD", method);
        if (!is_piece_of(std::string(session_cookie_name) + "=" + session, cookie))
            violated("the session is not a tilekit_session value of the cookie", session);
    }

    // The JSON body and the fields the handlers take from it.
    svc::parse_failure failure;
    const auto json = svc::parse_json_body(body, 64 << 10, failure);
    if (!json) {
        if (failure.status != 400 && failure.status != 413 && failure.status != 422) violated("an unexpected status", body);
        return 0;
    }
    if (!json->is_object()) violated("a parsed body is not an object", body);
    svc::parse_failure field_failure;
    if (const auto project = svc::parse_project_fields(*json, field_failure)) {
        if (!svc::valid_slug(project->slug) || project->name.size() > 200) violated("project fields out of range", body);
        dump_or_die(nlohmann::json{{"slug", project->slug}, {"name", project->name}}, "project fields cannot be sent back");
    }
    if (const auto version = svc::parse_version_fields(*json, field_failure)) {
        if (version->number < 0 || version->number > 999999999) violated("a version number out of range", body);
        if (version->status != "draft" && version->status != "published") violated("a version status out of range", body);
    }
    return 0;
}
