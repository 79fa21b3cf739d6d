// The JSON API. Every handler checks in the same order: token (401), the shape of the path and
// query (422), then existence and access (404: another user's project is "not found" too),
// then the state rules (400/409), then the user's quotas (403 for projects, versions and
// stored bytes; 429 for jobs), then capacity (503).

#include "routes.hpp"

#include "job_queue.hpp"

#include "auth.hpp"
#include "catalog.hpp"
#include "config.hpp"
#include "http/multipart.hpp"
#include "http/upload_file.hpp"
#include "storage.hpp"

#include <tilekit/fast_codecs.hpp>
#include <tilekit/sqlite.hpp>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <mutex>

namespace tilekit_service {

using nlohmann::json;
namespace jobs = tilekit::jobs;

void send_json(http::response& response, int status, const json& body) {
    response.status = status;
    response.set("cache-control", "no-store");
    response.set("content-type", "application/json");
    response.body = body.dump();
}

void send_error(http::response& response, int status, const std::string& detail) {
    send_json(response, status, json{{"detail", detail}});
}

std::optional<project> accessible_project(const service_context& c, const user& who, const std::string& slug,
                                          http::response& response) {
    if (!valid_slug(slug)) {
        send_error(response, 422, invalid_slug_detail);
        return std::nullopt;
    }
    std::optional<project> p = c.db.find_project(slug);
    if (!p || p->owner_id != who.id) {
        send_error(response, 404, "Project not found");
        return std::nullopt;
    }
    return p;
}

std::optional<version_path> parse_version_path(const service_context& c, const http::route_request& request,
                                               http::response& response) {
    std::optional<user> who = require_user(c.db, request, response);
    if (!who) return std::nullopt;
    version_path path{std::move(*who), request.capture(0), parse_version_number(request.capture(1))};
    if (!valid_slug(path.slug)) {
        send_error(response, 422, invalid_slug_detail);
        return std::nullopt;
    }
    if (!path.number) {
        send_error(response, 422, "Invalid version number: a positive integer");
        return std::nullopt;
    }
    return path;
}

std::optional<version_target> find_version_target(const service_context& c, const version_path& path,
                                                  http::response& response) {
    std::optional<project> p = accessible_project(c, path.who, path.slug, response);
    if (!p) return std::nullopt;
    std::optional<version> v = c.db.find_version(p->id, path.number);
    if (!v) {
        send_error(response, 404, "Version not found");
        return std::nullopt;
    }
    return version_target{path.who, std::move(*p), std::move(*v)};
}

std::optional<version_target> version_target_of(const service_context& c, const http::route_request& request,
                                                http::response& response) {
    const std::optional<version_path> path = parse_version_path(c, request, response);
    return path ? find_version_target(c, *path, response) : std::nullopt;
}

namespace {

// The request body as a JSON object, or nullopt after writing 400/422 (the server has already
// refused a body over the route's limit with 413).
std::optional<json> json_body(const service_context& c, const http::route_request& req, http::response& response) {
    parse_failure failure;
    std::optional<json> body = parse_json_body(req.r.body, c.config.max_json_bytes, failure);
    if (!body) send_error(response, failure.status, failure.detail);
    return body;
}

// A job as the API shows it: the record without what only workers need (the payload, with its
// storage keys, and which worker holds the lease until when).
json job_json(const jobs::job_record& job) {
    json j = job;
    for (const char* internal : {"payload", "worker", "lease_expires_at", "releases", "timeout_ms"}) j.erase(internal);
    if (job.status == jobs::job_status::completed && job.result.is_object() && job.result.contains("tiles_path"))
    {
        j["result"]["tiles_url"] = "/tiles/" + job.result["tiles_path"].get<std::string>();
        for (const char* name : {"manifest", "metadata"})
            if (job.result.contains(name) && job.result[name].is_string() && !job.result[name].get<std::string>().empty())
                j["result"][std::string(name) + "_url"] = "/tiles/" + job.result[name].get<std::string>();
    }
    return j;
}

// A version's prefix, where its pointer and its runs are (jobs/run_pointer.hpp).
std::string version_prefix_of(const service_context& c, const std::string& slug, int number) {
    jobs::tile_generation_request request;
    request.project_slug = slug;
    request.version = number;
    request.prefix_template = c.config.prefix_template;
    return tilekit::detail::expand_prefix(request, "");
}

// The project's live pointer: which published version (and which of its runs) the project's
// public map shows. Beside the versions' prefixes: the template without its {version}.
std::string live_key_of(const service_context& c, const std::string& slug) {
    jobs::tile_generation_request request;
    request.project_slug = slug;
    request.prefix_template = c.config.prefix_template;
    for (const std::string pattern : {"{version}/", "{version}"})
        for (std::size_t at = request.prefix_template.find(pattern); at != std::string::npos;
             at = request.prefix_template.find(pattern))
            request.prefix_template.erase(at, pattern.size());
    return tilekit::detail::expand_prefix(request, "") + "live.json";
}

// The version's committed pyramid, as its pointer says; nothing when no run was committed.
std::optional<jobs::run_pointer> committed_pointer(const service_context& c, const std::string& slug, int number) {
    const auto object = c.store.get(version_prefix_of(c, slug, number) + jobs::pointer_name);
    if (!object) return std::nullopt;
    const json j = json::parse(object->body.begin(), object->body.end(), nullptr, false);
    if (j.is_discarded()) return std::nullopt;
    jobs::run_pointer pointer = jobs::pointer_from_json(j);
    if (pointer.run.empty()) return std::nullopt;
    return pointer;
}

// The version, its project, its latest job and the pyramid its pointer names (the committed
// run: immutable, so a viewer that loads it never sees a later run's tiles mixed in).
json version_view(const service_context& c, const project& p, const version& v) {
    json out = v;
    out["project"] = {{"id", p.id}, {"slug", p.slug}, {"name", p.name}};
    out["viewer_url"] = "/projects/" + p.slug + "/versions/" + std::to_string(v.number) + "/viewer";
    out["latest_job"] = nullptr;
    out["job_id"] = nullptr;
    out["job_status"] = nullptr;
    out["tiles"] = nullptr;
    for (const jobs::job_record& job : c.jobs.list_jobs(jobs::job_filter{p.id, v.id, std::nullopt}, 1).jobs) {  // the newest
        if (out["latest_job"].is_null()) {
            out["latest_job"] = job_json(job);
            out["job_id"] = job.id;
            out["job_status"] = jobs::to_string(job.status);
        }
        break;
    }
    if (const auto pointer = committed_pointer(c, p.slug, v.number)) {
        const auto job = c.jobs.get(pointer->job_id);
        if (job && job->status == jobs::job_status::completed) {
            out["tiles"] = job_json(*job)["result"];
            out["tiles"]["job_id"] = job->id;
        }
    }
    return out;
}

bool is_png(const std::string& b) { return b.size() >= 8 && b.compare(0, 8, "\x89PNG\r\n\x1a\n") == 0; }
bool is_jpeg(const std::string& b) { return b.size() >= 3 && b.compare(0, 3, "\xff\xd8\xff") == 0; }
bool is_webp(const std::string& b) { return b.size() >= 12 && b.compare(0, 4, "RIFF") == 0 && b.compare(8, 4, "WEBP") == 0; }
// TIFF and BigTIFF, either byte order: read where the tiff part is linked (TILEKIT_HAS_TIFF).
bool is_tiff(const std::string& b) {
    return tilekit::detail::describe_format(reinterpret_cast<const std::uint8_t*>(b.data()), b.size()) == "tiff";
}

// An upload on its way to storage: written to a scratch file piece by piece, then stored.
class asset_upload final : public http::body_sink {
public:
    // `who` may upload to `p` (checked from the header, before any byte of the body).
    asset_upload(service_context& c, user who, project p, std::string filename_param, std::optional<std::string> boundary)
        : c_(c), who_(std::move(who)), p_(std::move(p)), filename_param_(std::move(filename_param)),
          file_(scratch_dir(c), std::move(boundary)) {}

    bool write(const char* data, std::size_t size) override {
        if (!file_.write(data, size)) return false;
        if (!checked_ && file_.head().size() >= 12) {
            checked_ = true;
            if (!known_image(file_.head())) return false;  // refused: the rest is not read
        }
        return true;
    }

    http::response finish(http::request&) override {
        http::response res;
        res.set("x-tilekit-user", who_.name);  // as require_user sets it
        if (!file_.ok() || !file_.finish()) {
            if (checked_ && !known_image(file_.head())) {
                send_error(res, 415, base_map_formats);
                return res;
            }
            send_error(res, 400, file_.ok() ? "Malformed multipart/form-data body" : "The upload could not be stored");
            return res;
        }
        const std::string& head = file_.head();
        if (file_.size() == 0) {
            send_error(res, 422, "The request body (the image) is empty");
            return res;
        }
        const bool png = is_png(head), jpeg = is_jpeg(head), webp = is_webp(head), tiff = is_tiff_head(head);
        if (!known_image(head)) {
            send_error(res, 415, base_map_formats);
            return res;
        }
        // The dimensions from the header, against the service's pixel limit.
        if (png || jpeg) {
            std::uint64_t width = 0, height = 0;
            if (tilekit::detail::header_dimensions(png ? "png" : "jpeg", reinterpret_cast<const std::uint8_t*>(head.data()),
                                                   head.size(), width, height) &&
                width * height > c_.config.max_pixels) {
                send_error(res, 422, "The image is " + std::to_string(width) + "x" + std::to_string(height) +
                                         " pixels, more than this service's limit of " + std::to_string(c_.config.max_pixels));
                return res;
            }
        }
        asset a;
        a.id = new_uuid();
        a.project_id = p_.id;
        a.type = "base_map";
        a.storage_key = "mp/" + p_.slug + "/uploads/assets/" + a.id + (png ? ".png" : jpeg ? ".jpg" : webp ? ".webp" : tiff ? ".tif" : ".bin");
        a.content_type = content_type_for(a.storage_key);  // by the extension just chosen
        a.filename = asset_filename(filename_param_, file_.filename());
        a.size = file_.size();
        a.created_at = now_iso8601();
        c_.store.put_file(a.storage_key, file_.path(), a.content_type);  // moved, not copied
        file_.keep();
        try {
            send_json(res, 201, c_.db.add_asset(a, c_.config.max_stored_bytes));
        } catch (const catalog_quota& e) {
            // Over the user's stored bytes (counted with the insert, under the catalog's lock):
            // the file just stored is withdrawn.
            c_.store.make_sink()->remove(a.storage_key);
            send_error(res, 403, e.what());
        }
        return res;
    }

private:
    static std::string scratch_dir(const service_context& c) {
        const std::filesystem::path dir = std::filesystem::path(c.config.data_dir) / "scratch";
        std::error_code ec;
        std::filesystem::create_directories(dir, ec);
        return dir.string();
    }
    static bool is_tiff_head(const std::string& head) {
#if TILEKIT_HAS_TIFF
        return is_tiff(head);
#else
        static_cast<void>(head);
        return false;
#endif
    }
    static bool known_image(const std::string& head) {
        return is_png(head) || is_jpeg(head) || is_webp(head) || is_tiff_head(head);
    }
#if TILEKIT_HAS_TIFF
    static constexpr const char* base_map_formats = "A base map must be a PNG, JPEG, WebP or TIFF image";
#else
    static constexpr const char* base_map_formats = "A base map must be a PNG, JPEG or WebP image";
#endif

    service_context& c_;
    const user who_;
    const project p_;
    std::string filename_param_;
    http::upload_file file_;
    bool checked_ = false;
};

// Why the user may not queue another job (their share of the queue, so that one tenant cannot
// fill it for everyone), or nothing. Jobs are counted over the user's projects: only a
// project's owner enqueues its jobs, and the job store filters by project, not by user.
std::optional<std::string> user_jobs_refusal(const service_context& c, const user& who) {
    const unsigned max_queued = c.config.max_queued_jobs, max_running = c.config.max_running_jobs;
    if (!max_queued && !max_running) return std::nullopt;
    std::int64_t queued = 0, running = 0;
    for (const project& p : c.db.projects_of(who.id)) {
        queued += c.jobs.count_jobs(jobs::job_filter{p.id, std::nullopt, jobs::job_status::queued});
        running += c.jobs.count_jobs(jobs::job_filter{p.id, std::nullopt, jobs::job_status::running});
    }
    if (max_queued && queued >= max_queued)
        return "You have " + std::to_string(queued) + " queued tile generation jobs, the limit of this service (--max-queued-jobs " +
               std::to_string(max_queued) + "); try again when one has started";
    // The running share: the workers take jobs in order whoever queued them, so it is held here
    // instead. Beyond its running share a user's running jobs take from their queued ones.
    if (max_queued && max_running && queued + running >= max_queued + max_running)
        return "You have " + std::to_string(running) + " running and " + std::to_string(queued) +
               " queued tile generation jobs, the limit of this service (--max-running-jobs " + std::to_string(max_running) +
               " plus --max-queued-jobs " + std::to_string(max_queued) + "); try again when one has finished";
    return std::nullopt;
}

// Held from the job checks to the enqueue, so that concurrent requests to this process cannot
// all pass the same count. Several processes on one job store can still each pass it once.
std::mutex enqueue_mutex;

// Refuses an upload before its body is read when it cannot fit the user's stored-bytes quota:
// the quota is reached already, or a raw body's declared length passes it.
bool upload_fits_quota(const service_context& c, const user& who, const http::route_request& req, http::response& res) {
    if (!c.config.max_stored_bytes) return true;
    const std::uint64_t stored = c.db.stored_bytes(who.id);
    // A multipart body's length is more than its file's: only a raw body's is the asset's size.
    const std::uint64_t declared =
        http::multipart_boundary(req.header("content-type")) ? 0 : std::strtoull(req.header("content-length").c_str(), nullptr, 10);
    if (stored < c.config.max_stored_bytes && stored + declared <= c.config.max_stored_bytes) return true;
    send_error(res, 403, stored_bytes_detail(stored, declared, c.config.max_stored_bytes));
    return false;
}

}  // namespace

void install_api_routes(http::router& routes, service_context& context) {
    service_context* const c = &context;
    // What every POST checks before its body is read: the token.
    const http::precheck signed_in = [c](const http::route_request& req, http::response& res) {
        return require_user(c->db, req, res).has_value();
    };
    const std::uint64_t json_limit = c->config.max_json_bytes;

    routes.get("/health", [c](const http::route_request&, http::response& res) {
        const bool stopping = c->stopping.load();
        // Whether it is up and what it does; nothing about where it keeps things (paths,
        // bucket, endpoint): /health needs no token.
        json body{{"status", stopping ? "stopping" : "ok"}, {"role", c->config.role}, {"workers", nullptr}};
        if (c->workers) {
            const jobs::worker_pool::stats s = c->workers->snapshot();
            body["workers"] = {{"threads", s.threads}, {"running", s.running}, {"completed", s.completed},
                               {"failed", s.failed}, {"retried", s.retried}};
        }
        send_json(res, stopping ? 503 : 200, body);
    });

    routes.get("/projects", [c](const http::route_request& req, http::response& res) {
        const auto who = require_user(c->db, req, res);
        if (!who) return;
        send_json(res, 200, c->db.projects_of(who->id));
    });

    // POST routes read their body themselves, after the token and the path (connections.hpp).
    routes.post("/projects", signed_in, json_limit, [c](const http::route_request& req, http::response& res) {
        const auto who = require_user(c->db, req, res);
        if (!who) return;
        const auto body = json_body(*c, req, res);
        if (!body) return;
        parse_failure failure;
        const auto fields = parse_project_fields(*body, failure);
        if (!fields) return send_error(res, failure.status, failure.detail);
        try {
            send_json(res, 201, c->db.create_project(fields->slug, fields->name, who->id, c->config.max_projects));
        } catch (const catalog_conflict&) {
            // Slugs are one namespace for all users (URLs and storage keys are per slug), so a
            // taken slug is refused whoever took it, with one answer that says no more.
            send_error(res, 409, "Project slug is taken (slugs are shared by all users of this service)");
        } catch (const catalog_quota& e) {
            send_error(res, 403, e.what());
        }
    });

    routes.get("/projects/{slug}", [c](const http::route_request& req, http::response& res) {
        const auto who = require_user(c->db, req, res);
        if (!who) return;
        const auto p = accessible_project(*c, *who, req.capture(0), res);
        if (!p) return;
        json out = *p;
        out["versions"] = c->db.versions_of(p->id);
        send_json(res, 200, out);
    });

    routes.post("/projects/{slug}/versions", signed_in, json_limit, [c](const http::route_request& req, http::response& res) {
        const auto who = require_user(c->db, req, res);
        if (!who) return;
        const auto body = json_body(*c, req, res);
        if (!body) return;
        parse_failure failure;
        const auto fields = parse_version_fields(*body, failure);
        if (!fields) return send_error(res, failure.status, failure.detail);
        const auto p = accessible_project(*c, *who, req.capture(0), res);
        if (!p) return;
        try {
            send_json(res, 201, c->db.create_version(p->id, fields->number, fields->status, c->config.max_versions));
        } catch (const catalog_conflict&) {
            send_error(res, 409, "Version already exists");
        } catch (const catalog_quota& e) {
            send_error(res, 403, e.what());
        } catch (const catalog_limit& e) {
            send_error(res, 409, e.what());
        }
    });

    routes.get("/projects/{slug}/versions/{version}", [c](const http::route_request& req, http::response& res) {
        const auto t = version_target_of(*c, req, res);
        if (!t) return;
        send_json(res, 200, version_view(*c, t->p, t->v));
    });

    routes.post("/projects/{slug}/versions/{version}/publish", signed_in, json_limit, [c](const http::route_request& req,
                                                                                          http::response& res) {
        const auto t = version_target_of(*c, req, res);
        if (!t) return;
        if (t->v.status != "draft") return send_error(res, 409, "Only draft versions can be published");
        // A job still working on the version could otherwise change its pyramid after it is
        // published (its commit checks the draft status again, and would fail): refused instead.
        for (const jobs::job_record& job : c->jobs.list_jobs(jobs::job_filter{t->p.id, t->v.id, std::nullopt}, 1).jobs)
            if (job.status == jobs::job_status::queued || job.status == jobs::job_status::running)
                return send_json(res, 409, {{"detail", "A tile generation job is " + std::string(jobs::to_string(job.status)) +
                                                           " for this version (job " + job.id + "); cancel it or wait for it"},
                                            {"job_id", job.id}});
        json published = c->db.publish(t->v);
        // Promotion is a pointer switch: the project's live pointer names this version's
        // committed run, with one conditional write (retried if another publish came between).
        if (const auto pointer = committed_pointer(*c, t->p.slug, t->v.number)) {
            const std::string key = live_key_of(*c, t->p.slug);
            const std::string prefix = version_prefix_of(*c, t->p.slug, t->v.number);
            json live{{"version", t->v.number}, {"version_prefix", prefix}, {"run", pointer->run},
                      {"job_id", pointer->job_id}, {"layout", pointer->layout},
                      {"manifest", pointer->manifest.empty() ? "" : prefix + pointer->manifest},
                      {"metadata", prefix + pointer->metadata}, {"published_at", published.value("published_at", "")}};
            const std::string text = live.dump(2) + "\n";
            const std::unique_ptr<tilekit::storage_sink> sink = c->store.make_sink();
            for (int attempt = 0; attempt < 5; ++attempt) {
                const auto now = sink->read(key);
                tilekit::storage_object object{key, {text.begin(), text.end()}, "application/json", jobs::pointer_cache_control};
                if (sink->put_if(std::move(object), now ? now->version : "").stored) break;
            }
            published["live"] = live;
        }
        send_json(res, 200, published);
    });

    // The project's live map: the published version the live pointer names.
    routes.get("/projects/{slug}/live", [c](const http::route_request& req, http::response& res) {
        const auto who = require_user(c->db, req, res);
        if (!who) return;
        const auto p = accessible_project(*c, *who, req.capture(0), res);
        if (!p) return;
        const auto object = c->store.get(live_key_of(*c, p->slug));
        if (!object) return send_error(res, 404, "No version of this project has been published with tiles yet");
        json live = json::parse(object->body.begin(), object->body.end(), nullptr, false);
        if (live.is_discarded()) return send_error(res, 500, "The live pointer cannot be read");
        live["tiles_url"] = "/tiles/" + live.value("version_prefix", "") + live.value("run", "");
        if (!live.value("manifest", "").empty()) live["manifest_url"] = "/tiles/" + live.value("manifest", "");
        // The pyramid as the viewer needs it (size, levels, layout), from the run's metadata:
        // the same shape as a version's `tiles`.
        if (const auto meta = c->store.get(live.value("metadata", ""))) {
            json m = json::parse(meta->body.begin(), meta->body.end(), nullptr, false);
            if (m.is_object()) {
                m.erase("level_sizes");
                m["tiles_url"] = live["tiles_url"];
                m["version"] = live.value("version", 0);
                live["tiles"] = m;
            }
        }
        send_json(res, 200, live);
    });

    // An upload is read only after the token, the type and the project check out, and refused
    // unread beyond the limit.
    // An upload is read only after the token, the type, the project and the quota check out (from
    // the header), and refused unread beyond the limit. The body goes to a file in the scratch
    // directory as it arrives (http/upload_file.hpp); its first bytes decide the format at once,
    // so a base map that is not an image is refused before the rest is read.
    routes.post_stream("/projects/{slug}/assets", c->config.max_upload_bytes,
                       [c](const http::route_request& req, http::response& res) -> std::shared_ptr<http::body_sink> {
                           auto who = require_user(c->db, req, res);
                           if (!who) return nullptr;
                           // Base maps only: each is checked as an image as it arrives. Another type
                           // would store whatever bytes a client sends, which nothing here reads.
                           if (req.param("type") != "base_map") {
                               send_error(res, 422, "Query parameter 'type' must be base_map");
                               return nullptr;
                           }
                           auto p = accessible_project(*c, *who, req.capture(0), res);
                           if (!p || !upload_fits_quota(*c, *who, req, res)) return nullptr;
                           return std::make_shared<asset_upload>(*c, std::move(*who), std::move(*p),
                                                                 req.has_param("filename") ? req.param("filename") : "",
                                                                 http::multipart_boundary(req.header("content-type")));
                       });

    routes.post("/projects/{slug}/versions/{version}/generate-tiles", signed_in, json_limit, [c](const http::route_request& req,
                                                                                                 http::response& res) {
        const auto path = parse_version_path(*c, req, res);
        if (!path) return;
        const std::string asset_id = lower(req.has_param("asset_id") ? req.param("asset_id") : "");
        if (!jobs::is_uuid(asset_id)) return send_error(res, 422, "Query parameter 'asset_id' must be a UUID");
        // Per job, the layout and tile format may differ from the service's defaults.
        service_config job_config = c->config;
        if (req.has_param("layout")) {
            job_config.layout = req.param("layout");
            if (job_config.layout != "dz" && job_config.layout != "xyz" && job_config.layout != "iiif")
                return send_error(res, 422, "Query parameter 'layout' must be dz, xyz or iiif");
        }
        if (req.has_param("format")) {
            job_config.format = req.param("format");
            if (job_config.format != "png" && job_config.format != "jpg" && job_config.format != "webp" &&
                job_config.format != "webp-lossless")
                return send_error(res, 422, "Query parameter 'format' must be png, jpg, webp or webp-lossless");
        }
        const auto t = find_version_target(*c, *path, res);
        if (!t) return;
        const project& p = t->p;
        const version& v = t->v;
        if (!jobs::is_draft({v.number, v.status})) return send_error(res, 400, "Can only generate tiles for draft versions");
        const auto a = c->db.find_asset(asset_id);
        if (!a || a->project_id != p.id || a->type != "base_map") return send_error(res, 400, "Invalid base map asset");
        // Pyramids count toward the stored bytes: a user at the limit makes no new one (one job
        // can pass it by at most --max-job-bytes).
        if (c->config.max_stored_bytes) {
            const std::uint64_t stored = c->db.stored_bytes(t->who.id);
            if (stored >= c->config.max_stored_bytes)
                return send_error(res, 403, stored_bytes_detail(stored, 0, c->config.max_stored_bytes));
        }
        const std::lock_guard<std::mutex> lock(enqueue_mutex);
        if (const auto refusal = user_jobs_refusal(*c, t->who)) {
            res.set("Retry-After", "10");
            return send_error(res, 429, *refusal);
        }
        // The queue is durable, but not unbounded: beyond the capacity a client is asked to come back.
        // A COUNT in the store, not a listing of the queue.
        if (c->stopping.load() ||
            c->jobs.count_jobs(jobs::job_filter{std::nullopt, std::nullopt, jobs::job_status::queued}) >=
                static_cast<std::int64_t>(c->config.queue_capacity)) {
            res.set("Retry-After", "5");
            return send_error(res, 503, "Too many tile generation jobs; try again later");
        }
        jobs::new_job request{jobs::tile_generation_job, p.id, v.id, t->who.id};
        request.payload = tile_job_payload(job_config, a->storage_key, p.slug, v.number);
        request.max_attempts = c->config.max_attempts;
        jobs::job_record job;
        try {
            job = c->jobs.enqueue(request);
        } catch (const jobs::job_state_error&) {
            return send_error(res, 409, "A tile generation job is already queued or running for this version");
        }
        send_json(res, 202, {{"job_id", job.id}, {"status", "queued"}, {"message", "Tile generation started"}});
    });

    routes.get("/projects/{slug}/jobs", [c](const http::route_request& req, http::response& res) {
        const auto who = require_user(c->db, req, res);
        if (!who) return;
        const auto p = accessible_project(*c, *who, req.capture(0), res);
        if (!p) return;
        // Newest first, a page at a time: ?limit=1..1000 (default 100) and ?after=CURSOR, the
        // X-Next-After header of the previous page (absent on the last page).
        std::size_t limit = 100;
        if (req.has_param("limit")) {
            const std::string text = req.param("limit");
            char* end = nullptr;
            const long n = std::strtol(text.c_str(), &end, 10);
            if (text.empty() || *end != '\0' || n < 1 || n > 1000) return send_error(res, 422, "Query parameter 'limit' must be 1..1000");
            limit = static_cast<std::size_t>(n);
        }
        std::optional<jobs::job_page_key> after;
        if (req.has_param("after")) {
            after = jobs::parse_cursor(req.param("after"));
            if (!after) return send_error(res, 422, "Query parameter 'after' must be the X-Next-After of a previous page");
        }
        const jobs::job_page page = c->jobs.list_jobs(jobs::job_filter{p->id, std::nullopt, std::nullopt}, limit, after);
        json out = json::array();
        for (const jobs::job_record& job : page.jobs) out.push_back(job_json(job));
        if (page.next) res.set("X-Next-After", jobs::to_cursor(*page.next));
        send_json(res, 200, out);
    });

    // The queue's health as Prometheus text exposition, for any authenticated user.
    routes.get("/metrics", [c](const http::route_request& req, http::response& res) {
        const auto who = require_user(c->db, req, res);
        if (!who) return;
        res.set("content-type", "text/plain; version=0.0.4");
        res.body = jobs_metrics_text(c->jobs.stats(std::chrono::hours(1)), c->workers);
    });

    routes.get("/jobs/{id}", [c](const http::route_request& req, http::response& res) {
        const auto who = require_user(c->db, req, res);
        if (!who) return;
        const std::string id = lower(req.capture(0));
        if (!jobs::is_uuid(id)) return send_error(res, 422, "Invalid job id: a UUID");
        const auto job = c->jobs.get(id);
        const auto p = job ? c->db.project_by_id(job->project_id) : std::nullopt;
        if (!job || !p || p->owner_id != who->id) return send_error(res, 404, "Job not found");
        send_json(res, 200, job_json(*job));
    });

    // Cancels a queued or running job; a running one stops within about a second, no manifest.
    routes.post("/jobs/{id}/cancel", signed_in, json_limit, [c](const http::route_request& req, http::response& res) {
        const auto who = require_user(c->db, req, res);
        if (!who) return;
        const std::string id = lower(req.capture(0));
        if (!jobs::is_uuid(id)) return send_error(res, 422, "Invalid job id: a UUID");
        const auto job = c->jobs.get(id);
        const auto p = job ? c->db.project_by_id(job->project_id) : std::nullopt;
        if (!job || !p || p->owner_id != who->id) return send_error(res, 404, "Job not found");
        try {
            send_json(res, 200, job_json(c->jobs.cancel(id, "cancelled by " + who->name)));
        } catch (const jobs::job_state_error&) {
            send_error(res, 409, std::string("The job has already ended: it is ") + jobs::to_string(c->jobs.get(id)->status));
        }
    });
}

}  // namespace tilekit_service
