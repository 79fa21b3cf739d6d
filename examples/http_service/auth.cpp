#include "auth.hpp"

#include "request_parsing.hpp"

#include <tilekit/jobs/job.hpp>

#include <openssl/rand.h>

#include <nlohmann/json.hpp>

namespace tilekit_service {

std::string presented_token(const http::route_request& request) {
    const bool has_token = request.has_param("token");
    const std::string token = has_token ? request.param("token") : "";
    return presented_token(request.header("authorization"), request.r.method, has_token ? &token : nullptr,
                           request.header("cookie"), token_cookie);
}

std::optional<user> require_user(const catalog& users, const http::route_request& request, http::response& response) {
    const std::string token = presented_token(request);
    std::optional<user> found = token.size() > 512 ? std::nullopt : users.authenticate(token);
    if (!found) {
        response.status = 401;
        response.set("www-authenticate", "Bearer");
        response.set("content-type", "application/json");
        response.body = nlohmann::json{{"detail", token.empty() ? "Not authenticated" : "Invalid token"}}.dump();
    }
    return found;
}

std::string new_token() {
    unsigned char bytes[32];
    if (RAND_bytes(bytes, sizeof bytes) != 1) throw std::runtime_error("no cryptographic random source (OpenSSL RAND_bytes)");
    return to_hex(bytes, sizeof bytes);
}

}  // namespace tilekit_service
