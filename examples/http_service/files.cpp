// The viewer page, its static files (from --viewer-dir) and the tiles (from storage). All of
// them need a token like the API; a browser presents it as ?token= or as the cookie that the
// viewer page sets (see auth.hpp).

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

    // One page for a version's pyramid and for the project's live map (viewer.js tells them
    // apart by the URL).
    const auto send_viewer_page = [c](const http::route_request& req, http::response& res) {
        std::string page;
        if (!read_whole(std::filesystem::path(c->config.viewer_dir) / "index.html", page))
            return send_error(res, 404, "Viewer not installed (no index.html in " + c->config.viewer_dir + ")");
        if (req.has_param("token"))  // so the page's own requests (scripts, tiles) carry it
            res.set("Set-Cookie", std::string(token_cookie) + "=" + presented_token(req) +
                                             "; Path=/; HttpOnly; SameSite=Strict");
        res.set("cache-control", "no-store");
        res.set("referrer-policy", "no-referrer");
        res.set("content-type", "text/html; charset=utf-8");
        res.body = std::move(page);
    };
    routes.get("/projects/{slug}/versions/{version}/viewer", [c, send_viewer_page](const http::route_request& req, http::response& res) {
        if (!version_target_of(*c, req, res)) return;
        send_viewer_page(req, res);
    });
    // The project's live map: the published version its live pointer names, at a stable URL.
    routes.get("/projects/{slug}/viewer", [c, send_viewer_page](const http::route_request& req, http::response& res) {
        const auto who = require_user(c->db, req, res);
        if (!who) return;
        if (!accessible_project(*c, *who, req.capture(0), res)) return;
        send_viewer_page(req, res);
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
