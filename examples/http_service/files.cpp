// The viewer page, its static files (from --viewer-dir) and the tiles (from storage). All of
// them need a user like the API; a browser presents the session cookie that opening a viewer
// link sets (see auth.hpp), an API client its bearer token. Also the viewer links themselves.

#include "auth.hpp"
#include "catalog.hpp"
#include "config.hpp"
#include "routes.hpp"
#include "storage.hpp"
#include "http/range.hpp"

#include <tilekit/error.hpp>

#include <filesystem>

#include <fcntl.h>
#include <sys/stat.h>
#include <fstream>
#include <iostream>
#include <iterator>

namespace tilekit_service {

namespace {

// `relative` under `root`, or empty when it is missing or would leave the root.
std::filesystem::path file_under(const std::filesystem::path& root, const std::string& relative) {
    if (relative.empty() || relative.front() == '/' || relative.find('\\') != std::string::npos ||
        relative.find('\0') != std::string::npos)
        return {};
    for (const auto& part : std::filesystem::path(relative))
        if (part == ".." || part == ".") return {};
    std::error_code ec;
    const auto base = std::filesystem::weakly_canonical(root, ec);
    const auto full = std::filesystem::weakly_canonical(root / relative, ec);
    if (ec) return {};
    const std::string b = base.string() + "/";
    if (full.string().compare(0, b.size(), b) != 0) return {};
    if (!std::filesystem::is_regular_file(full, ec)) return {};
    return full;
}

bool read_whole(const std::filesystem::path& path, std::string& out) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return false;
    out.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    return true;
}

// The object as the answer: whole, or the one range asked for (http/range.hpp: several ranges
// are refused with 416, never served as multipart), from its file where there is one (sendfile).
void send_object(const http::route_request& req, object_to_send object, http::response& res) {
    res.set("content-type", object.content_type);
    res.set("accept-ranges", "bytes");
    const http::range_decision range = http::decide_range(req.r.header("range"), object.size);
    if (range.verdict == http::range_verdict::unsatisfiable) {
        res.status = 416;
        res.set("content-range", "bytes */" + std::to_string(object.size));
        return;
    }
    std::uint64_t first = 0, length = object.size;
    if (range.verdict == http::range_verdict::part) {
        first = range.range.first;
        length = range.range.length;
        res.status = 206;
        res.set("content-range", "bytes " + std::to_string(first) + "-" + std::to_string(first + length - 1) + "/" +
                                     std::to_string(object.size));
    }
    if (object.fd >= 0) {
        res.file = std::make_shared<http::file_part>(object.release_fd(), first, length);
        return;
    }
    res.body.assign(reinterpret_cast<const char*>(object.body.data()) + first, length);
}

}  // namespace

void install_file_routes(http::router& routes, service_context& context) {
    service_context* const c = &context;

    // The viewer page's policy: its scripts, styles and images come from here only (index.html
    // has no inline script), fetches go back here only, and no other site may frame it.
    // Inline styles stay allowed: OpenSeadragon and Leaflet position their elements with them.
    static const char* const viewer_csp =
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

    // One page for a version's pyramid and for the project's live map (viewer.js tells them
    // apart by the URL).
    const auto send_viewer_page = [c](const http::route_request&, http::response& res) {
        std::string page;
        if (!read_whole(std::filesystem::path(c->config.viewer_dir) / "index.html", page)) {
            // Where it was looked for is for the operator, not for the client.
            std::cerr << "tilekit-service: viewer not installed: no index.html in " << c->config.viewer_dir << "\n";
            return send_error(res, 404, "Viewer not installed");
        }
        res.set("cache-control", "no-store");
        res.set("referrer-policy", "no-referrer");
        res.set("content-security-policy", viewer_csp);
        res.set("x-frame-options", "DENY");  // frame-ancestors for older browsers
        res.set("content-type", "text/html; charset=utf-8");
        res.body = std::move(page);
    };
    // ?code= on a viewer URL: the one-time code of a viewer link (auth.hpp). A good code opens a
    // session in the cookie and sends the browser to the same page without the code (out of the
    // address bar and the history); a bad one changes nothing. True when it answered.
    const auto redeem_code = [c](const http::route_request& req, http::response& res, const std::string& path) {
        if (!req.has_param("code")) return false;
        res.set("referrer-policy", "no-referrer");
        const auto who = c->db.take_viewer_code(req.param("code"), path);
        if (!who) {
            send_error(res, 401, "This viewer link is invalid, expired or already used; ask for a new one "
                                 "(POST " + path + "-link with your token)");
            return true;
        }
        // Lax, not Strict: a link opened from another site (a mail, a chat) is a cross-site
        // navigation, and browsers withhold a Strict cookie from the whole redirect chain that
        // follows it. Lax cookies ride only on top-level GET navigations, and a cookie here
        // authenticates GET and HEAD only (reads; the answer goes to the user's own tab).
        const std::string session = new_token();
        const std::chrono::seconds lifetime = std::chrono::hours(c->config.session_hours);
        c->db.add_session(session, *who, lifetime);
        std::string cookie = std::string(session_cookie_name) + "=" + session + "; Path=/; HttpOnly; SameSite=Lax; Max-Age=" +
                             std::to_string(lifetime.count());
        if (c->config.cookie_secure) cookie += "; Secure";
        res.status = 303;
        res.set("set-cookie", cookie);
        res.set("location", path);  // built from a minted path: a checked slug and a number
        res.set("cache-control", "no-store");
        return true;
    };
    const auto version_viewer_path = [](const std::string& slug, int number) {
        return "/projects/" + slug + "/versions/" + std::to_string(number) + "/viewer";
    };
    const auto live_viewer_path = [](const std::string& slug) { return "/projects/" + slug + "/viewer"; };

    routes.get("/projects/{slug}/versions/{version}/viewer", [c, send_viewer_page, redeem_code, version_viewer_path](
                                                                 const http::route_request& req, http::response& res) {
        if (redeem_code(req, res, version_viewer_path(req.capture(0), parse_version_number(req.capture(1))))) return;
        if (!version_target_of(*c, req, res)) return;
        send_viewer_page(req, res);
    });
    // The project's live map: the published version its live pointer names, at a stable URL.
    routes.get("/projects/{slug}/viewer", [c, send_viewer_page, redeem_code, live_viewer_path](const http::route_request& req,
                                                                                               http::response& res) {
        if (redeem_code(req, res, live_viewer_path(req.capture(0)))) return;
        const auto who = require_user(c->db, req, res);
        if (!who) return;
        if (!accessible_project(*c, *who, req.capture(0), res)) return;
        send_viewer_page(req, res);
    });

    // A viewer link: a one-time code for the page, minted for the bearer of the token (header
    // only: a POST never takes the cookie). {"code", "viewer_url", "expires_in"}; viewer_url is
    // relative to the service's address.
    const auto send_link = [c](http::response& res, const user& who, const std::string& path) {
        const std::string code = new_token();
        const std::chrono::seconds lifetime(c->config.viewer_code_seconds);
        if (!c->db.add_viewer_code(code, who, path, lifetime, max_viewer_codes)) {
            res.set("retry-after", "60");
            return send_error(res, 503, "Too many viewer links outstanding; try again later");
        }
        send_json(res, 201, {{"code", code}, {"viewer_url", path + "?code=" + code},
                             {"expires_in", lifetime.count()}});
    };
    const http::precheck signed_in = [c](const http::route_request& req, http::response& res) {
        return require_user(c->db, req, res).has_value();
    };
    const std::uint64_t json_limit = c->config.max_json_bytes;
    routes.post("/projects/{slug}/versions/{version}/viewer-link", signed_in, json_limit,
                [c, send_link, version_viewer_path](const http::route_request& req, http::response& res) {
                    const auto t = version_target_of(*c, req, res);
                    if (!t) return;
                    send_link(res, t->who, version_viewer_path(t->p.slug, t->v.number));
                });
    routes.post("/projects/{slug}/viewer-link", signed_in, json_limit,
                [c, send_link, live_viewer_path](const http::route_request& req, http::response& res) {
                    const auto who = require_user(c->db, req, res);
                    if (!who) return;
                    const auto p = accessible_project(*c, *who, req.capture(0), res);
                    if (!p) return;
                    send_link(res, *who, live_viewer_path(p->slug));
                });

    routes.get("/static/{*path}", [c](const http::route_request& req, http::response& res) {
        if (!require_user(c->db, req, res)) return;
        const auto path = file_under(c->config.viewer_dir, req.capture(0));
        object_to_send file;
        struct stat status {};
        if (path.empty() || (file.fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) < 0 ||
            ::fstat(file.fd, &status) != 0 || !S_ISREG(status.st_mode))
            return send_error(res, 404, "Not found");
        file.size = static_cast<std::uint64_t>(status.st_size);
        file.content_type = content_type_for(path.string(), content_types::viewer);
        res.set("cache-control", "no-cache");
        send_object(req, std::move(file), res);
    });

    routes.get("/tiles/{*key}", [c](const http::route_request& req, http::response& res) {
        const auto who = require_user(c->db, req, res);
        if (!who) return;
        const std::string key = req.capture(0);
        if (!tilekit::key_problem(key).empty()) return send_error(res, 400, "Invalid tile key");
        // Only what lies under the tile prefix of a version of the user's projects: never the
        // uploaded sources or anything else stored next to the tiles.
        std::vector<project> candidates;
        if (c->config.prefix_template.find("{slug}") == std::string::npos) {
            candidates = c->db.projects_of(who->id);
        } else {
            const std::string slug = slug_of_key(c->config.prefix_template, key);
            const auto p = valid_slug(slug) ? c->db.find_project(slug) : std::nullopt;
            if (p && p->owner_id == who->id) candidates.push_back(*p);
        }
        bool tile = false;
        for (const project& p : candidates)
            for (const version& v : c->db.versions_of(p.id))
                tile = tile || key_under_tile_prefix(c->config.prefix_template, p.slug, v.number, key);
        if (!tile) return send_error(res, 404, "Not found");
        std::optional<object_to_send> object = c->store.open(key);
        if (!object) return send_error(res, 404, "Not found");
        res.set("cache-control", cache_control_for(key));
        send_object(req, std::move(*object), res);
    });
}

}  // namespace tilekit_service
