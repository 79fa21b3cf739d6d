#include "auth.hpp"

#include <tilekit/jobs/job.hpp>

#include <openssl/rand.h>

#include <nlohmann/json.hpp>

namespace tilekit_service {

namespace {

std::string cookie_value(const std::string& header, const std::string& name) {
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

}  // namespace

std::string presented_token(const httplib::Request& request) {
    const std::string header = request.get_header_value("Authorization");
    if (header.size() > 7 && (header.compare(0, 7, "Bearer ") == 0 || header.compare(0, 7, "bearer ") == 0))
        return header.substr(7);
    if (!header.empty()) return "";  // some other scheme: refused, never mixed with the fallbacks
    if (request.method != "GET" && request.method != "HEAD") return "";
    if (request.has_param("token")) return request.get_param_value("token");
    return cookie_value(request.get_header_value("Cookie"), token_cookie);
}

std::optional<user> require_user(const catalog& users, const httplib::Request& request, httplib::Response& response) {
    const std::string token = presented_token(request);
    std::optional<user> found = token.size() > 512 ? std::nullopt : users.authenticate(token);
    if (!found) {
        response.status = 401;
        response.set_header("WWW-Authenticate", "Bearer");
        response.set_content(nlohmann::json{{"detail", token.empty() ? "Not authenticated" : "Invalid token"}}.dump(),
                             "application/json");
    }
    return found;
}

std::string new_token() {
    unsigned char bytes[32];
    if (RAND_bytes(bytes, sizeof bytes) != 1) throw std::runtime_error("no cryptographic random source (OpenSSL RAND_bytes)");
    return to_hex(bytes, sizeof bytes);
}

}  // namespace tilekit_service
