#pragma once
// The HTTP endpoints. api_routes: projects, versions, assets, jobs, health (JSON in and out,
// errors as {"detail": "..."}). file_routes: the viewer page, its static files and the tiles.

#include "catalog.hpp"
#include "request_parsing.hpp"  // valid_slug, parse_version_number, the body and query parsers

#include <tilekit/jobs.hpp>

#include "http/router.hpp"
#include <nlohmann/json.hpp>

#include <atomic>
#include <optional>
#include <string>

namespace tilekit_service {

struct service_config;
class catalog;
class storage;
struct service_context {
    const service_config& config;
    catalog& db;
    tilekit::jobs::job_store& jobs;  // the queue: SQLite or PostgreSQL
    storage& store;
    tilekit::jobs::worker_pool* workers;  // null for --role serve: other processes run the jobs
    std::atomic<bool>& stopping;
};

void install_api_routes(http::router& routes, service_context& context);
void install_file_routes(http::router& routes, service_context& context);

// Shared by both files.
void send_json(http::response& response, int status, const nlohmann::json& body);
void send_error(http::response& response, int status, const std::string& detail);

// The request preamble of the project and version routes, in the order every handler checks:
// the token (401), the shape of the path (422), then existence and access (404; another user's
// project is "not found" too). Each returns nullopt after writing the error response.

// The project behind `slug` if `who` owns it (422 for a malformed slug, else 404).
std::optional<project> accessible_project(const service_context& c, const user& who, const std::string& slug,
                                          http::response& response);

// /projects/{slug}/versions/{number}/...: who asks, and a well-formed slug and number (the
// regex groups 1 and 2). 401, then 422; nothing is looked up yet.
struct version_path {
    user who;
    std::string slug;
    int number = 0;
};
std::optional<version_path> parse_version_path(const service_context& c, const http::route_request& request,
                                               http::response& response);

// The project (404) and the version (404) that a parsed path names.
struct version_target {
    user who;
    project p;
    version v;
};
std::optional<version_target> find_version_target(const service_context& c, const version_path& path,
                                                  http::response& response);

// Both steps, for handlers that check nothing of their own in between.
std::optional<version_target> version_target_of(const service_context& c, const http::route_request& request,
                                                http::response& response);

}  // namespace tilekit_service
