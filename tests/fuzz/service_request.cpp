// libFuzzer target: the example HTTP service's request parsing
// (examples/http_service/request_parsing.hpp), fed the way cpp-httplib's server feeds the
// handlers: the target split at '?', the path percent-decoded (detail::decode_url), the query
// parsed (detail::parse_query_text), the path matched against the service's route patterns.
// Input, newline-separated: "METHOD TARGET", the Authorization header, the Cookie header, then
// the body (the rest, newlines included).
// Only tilekit::error could come out (nothing here throws one). Invariants (trap when violated):
//   - a parsed version number n is 1..999999999, its text is digits only and equals
//     std::to_string(n) after leading zeros, and parse_version_number(std::to_string(n)) == n;
//     text that is 9 digits or fewer and not all zeros always parses;
//   - valid_slug accepts only 1..64 of [a-z0-9-]; a slug_of_key of a valid key is the segment
//     after the template's prefix;
//   - the presented token is a piece of the Authorization header; the session id a piece of the
//     Cookie header, never taken for POST or beside an Authorization header;
//   - a parsed JSON body is an object; parsed project and version fields keep their ranges;
//   - whatever the parsers accept can be answered: the JSON the service would send for it
//     (the recorded asset filename included) dumps without throwing.
#include "request_parsing.hpp"

#include <tilekit/key.hpp>

#include <httplib.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <regex>
#include <string>
#include <vector>

namespace svc = tilekit_service;

namespace {

[[noreturn]] void violated(const char* what, const std::string& detail = "") {
    std::fprintf(stderr, "service_request: invariant violated: %s\n  [%s]\n", what, detail.c_str());
    __builtin_trap();
}

// The service's routes (routes.cpp, files.cpp), as httplib matches them: the whole path.
struct route {
    const char* pattern;
    int groups;
};
const route routes[] = {
    {"/projects/([^/]+)", 1},
    {"/projects/([^/]+)/versions", 1},
    {"/projects/([^/]+)/versions/([^/]+)", 2},
    {"/projects/([^/]+)/versions/([^/]+)/publish", 2},
    {"/projects/([^/]+)/versions/([^/]+)/generate-tiles", 2},
    {"/projects/([^/]+)/versions/([^/]+)/viewer", 2},
    {"/projects/([^/]+)/assets", 1},
    {"/projects/([^/]+)/jobs", 1},
    {"/jobs/([^/]+)", 1},
    {"/static/(.+)", 1},
    {"/tiles/(.+)", 1},
};

const std::vector<std::regex>& compiled_routes() {
    static const std::vector<std::regex> compiled = [] {
        std::vector<std::regex> out;
        for (const route& r : routes) out.emplace_back(r.pattern);
        return out;
    }();
    return compiled;
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

    // As httplib's server: path and query split at the first '?', the path decoded, the query parsed.
    const std::size_t question = target.find('?');
    const std::string path = httplib::detail::decode_url(target.substr(0, question), false);
    httplib::Params params;
    if (question != std::string::npos) httplib::detail::parse_query_text(target.substr(question + 1), params);
    const auto param = [&](const char* name) -> const std::string* {
        const auto found = params.find(name);
        return found == params.end() ? nullptr : &found->second;
    };

    // The routes, and the parsing of what they capture.
    const auto& compiled = compiled_routes();
    if (path.size() <= 4096) {  // httplib refuses longer request lines before any handler
        for (std::size_t r = 0; r < compiled.size(); ++r) {
            std::smatch match;
            if (!std::regex_match(path, match, compiled[r])) continue;
            const std::string first = match[1];
            check_slug(first);
            if (routes[r].groups == 2) check_version_number(match[2]);
            const std::string pattern = routes[r].pattern;
            if (pattern == "/jobs/([^/]+)") (void)tilekit::jobs::is_uuid(svc::lower(first));
            if (pattern == "/tiles/(.+)" && tilekit::key_problem(first).empty()) {
                const std::string slug = svc::slug_of_key("mp/{slug}/uploads/tiles/{version}/", first);
                if (!slug.empty() && first.compare(0, 3 + slug.size() + 1, "mp/" + slug + "/") != 0)
                    violated("slug_of_key returned something that is not the key's second segment", first);
                check_slug(slug);
            }
        }
    }
    check_version_number(target);  // the parser on raw text too (not only what the regex captures)

    // The query values the handlers read.
    if (const std::string* type = param("type")) {
        if (svc::valid_asset_type(*type) &&
            (type->size() > 32 || type->find_first_not_of("abcdefghijklmnopqrstuvwxyz_") != std::string::npos))
            violated("valid_asset_type accepted a bad type", *type);
    }
    if (const std::string* asset_id = param("asset_id")) {
        const std::string id = svc::lower(*asset_id);
        if (tilekit::jobs::is_uuid(id) && id.size() != 36) violated("is_uuid accepted a string that is not 36 long", id);
    }
    const std::string* filename_parameter = param("filename");
    const std::string filename = svc::asset_filename(filename_parameter ? *filename_parameter : "", body.substr(0, 300));
    if (filename.size() > 200) violated("an asset filename over 200 bytes", filename);
    dump_or_die(nlohmann::json{{"filename", filename}}, "the recorded asset filename cannot be sent back as JSON");

    // The presented credentials: a bearer token from the header only (never the query), a
    // session id from the cookie for GET and HEAD without an Authorization header.
    const std::string token = svc::bearer_token(authorization);
    if (!token.empty() && token != authorization.substr(7)) violated("the token is not the header's", token);
    const std::string session = svc::session_cookie(authorization, method, cookie, "tilekit_session");
    if (!session.empty()) {
        if (!authorization.empty()) violated("a session was taken despite an Authorization header", authorization);
        if (method != "GET" && method != "HEAD") violated("a session cookie was taken for another method than GET or HEAD", method);
        if (!is_piece_of(session, cookie)) violated("the session is not a piece of the cookie", session);
    }

    // The JSON body and the fields the handlers take from it.
    svc::parse_failure failure;
    const auto parsed = svc::parse_json_body(body, 64 << 10, failure);
    if (!parsed) {
        if (failure.status != 400 && failure.status != 413 && failure.status != 422) violated("an unexpected status", body);
        return 0;
    }
    if (!parsed->is_object()) violated("a parsed body is not an object", body);
    svc::parse_failure field_failure;
    if (const auto project = svc::parse_project_fields(*parsed, field_failure)) {
        if (!svc::valid_slug(project->slug) || project->name.size() > 200) violated("project fields out of range", body);
        dump_or_die(nlohmann::json{{"slug", project->slug}, {"name", project->name}}, "project fields cannot be sent back");
    }
    if (const auto version = svc::parse_version_fields(*parsed, field_failure)) {
        if (version->number < 0 || version->number > 999999999) violated("a version number out of range", body);
        if (version->status != "draft" && version->status != "published") violated("a version status out of range", body);
    }
    return 0;
}
