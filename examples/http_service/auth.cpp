#include "auth.hpp"

#include "request_parsing.hpp"

#include <tilekit/jobs/job.hpp>

#include <openssl/rand.h>

#include <nlohmann/json.hpp>


namespace tilekit_service {

std::optional<user> require_user(const catalog& users, const http::route_request& request, http::response& response) {
    const std::string authorization = request.header("authorization");
    const std::string token = bearer_token(authorization);
    std::optional<user> found;
    bool presented = !token.empty();
    if (presented) {
        found = token.size() > 512 ? std::nullopt : users.authenticate(token);
    } else {
        const std::string session = session_cookie(authorization, request.r.method, request.header("cookie"), session_cookie_name);
        presented = !session.empty();
        if (presented) found = users.session_user(session);
    }
    if (!found) {
        response.status = 401;
        response.set("www-authenticate", "Bearer");
        response.set("content-type", "application/json");
        response.body = nlohmann::json{{"detail", presented ? "Invalid token" : "Not authenticated"}}.dump();
        return found;
    }
    // Which user a browser is signed in as, for the viewer to show (see auth.hpp: login CSRF).
    response.set("x-tilekit-user", found->name);
    return found;
}

std::string new_token() {
    unsigned char bytes[32];
    if (RAND_bytes(bytes, sizeof bytes) != 1) throw std::runtime_error("no cryptographic random source (OpenSSL RAND_bytes)");
    return to_hex(bytes, sizeof bytes);
}


}  // namespace tilekit_service
