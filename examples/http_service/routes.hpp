#pragma once
// The HTTP endpoints. api_routes: projects, versions, assets, jobs, health (JSON in and out,
// errors as {"detail": "..."}). file_routes: the viewer page, its static files and the tiles.

#include <tilekit/sqlite.hpp>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <string>


namespace tilekit_service {

struct service_config;
class catalog;
class storage;
class worker_pool;

struct service_context {
    const service_config& config;
    catalog& db;
    tilekit::jobs::sqlite_job_store& jobs;
    storage& store;
    worker_pool& pool;
    std::atomic<bool>& stopping;
};

void install_api_routes(httplib::Server& server, service_context& context);
void install_file_routes(httplib::Server& server, service_context& context);
// 404/405 bodies as JSON, exceptions as 500 {"detail"}, a one-line access log.
void install_common_handlers(httplib::Server& server);

// Shared by both files.
void send_json(httplib::Response& response, int status, const nlohmann::json& body);
void send_error(httplib::Response& response, int status, const std::string& detail);
bool valid_slug(const std::string& slug);
// "1".."999999999" -> the number; anything else -> 0.
int parse_version_number(const std::string& text);

}  // namespace tilekit_service
