#include "auth.hpp"

#include "request_parsing.hpp"

#include <tilekit/jobs/job.hpp>

#include <openssl/rand.h>

#include <nlohmann/json.hpp>

#include <map>
#include <mutex>

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
        if (presented) found = viewer_sessions::session_user(session);
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

namespace viewer_sessions {

namespace {

using clock = std::chrono::steady_clock;

struct code_entry {
    user who;
    std::string path;
    clock::time_point expires;
};
struct session_entry {
    user who;
    clock::time_point expires;
};

// Unspent codes at once: each lives a minute, but a client with a token could mint them in a
// loop; beyond this many, minting answers 503 rather than growing without bound.
constexpr std::size_t max_codes = 100000;

struct registry {
    std::mutex mutex;
    std::chrono::seconds code_lifetime{60};
    std::chrono::seconds session_lifetime{12 * 3600};
    // Keyed by the SHA-256 of the code or session id, as the catalog keeps tokens: a lookup's
    // timing tells nothing about the secret, and the map holds nothing a client could present.
    std::map<std::string, code_entry> codes;
    std::map<std::string, session_entry> sessions;

    // Drops what has expired (under the lock). Linear, but both maps stay small: codes live a
    // minute, sessions a working day.
    void prune(clock::time_point now) {
        for (auto it = codes.begin(); it != codes.end();) it = it->second.expires <= now ? codes.erase(it) : std::next(it);
        for (auto it = sessions.begin(); it != sessions.end();)
            it = it->second.expires <= now ? sessions.erase(it) : std::next(it);
    }
};

registry& the_registry() {
    static registry r;
    return r;
}

}  // namespace

void configure(std::chrono::seconds code_lifetime, std::chrono::seconds session_lifetime) {
    registry& r = the_registry();
    const std::lock_guard<std::mutex> lock(r.mutex);
    r.code_lifetime = code_lifetime;
    r.session_lifetime = session_lifetime;
}

std::chrono::seconds code_lifetime() {
    registry& r = the_registry();
    const std::lock_guard<std::mutex> lock(r.mutex);
    return r.code_lifetime;
}

std::chrono::seconds session_lifetime() {
    registry& r = the_registry();
    const std::lock_guard<std::mutex> lock(r.mutex);
    return r.session_lifetime;
}

std::string mint_code(const user& who, const std::string& path) {
    const std::string code = new_token();
    registry& r = the_registry();
    const std::lock_guard<std::mutex> lock(r.mutex);
    const auto now = clock::now();
    r.prune(now);
    if (r.codes.size() >= max_codes) return "";
    r.codes[sha256_hex(code)] = code_entry{who, path, now + r.code_lifetime};
    return code;
}

std::optional<user> redeem_code(const std::string& code, const std::string& path) {
    registry& r = the_registry();
    const std::lock_guard<std::mutex> lock(r.mutex);
    const auto now = clock::now();
    r.prune(now);
    const auto it = r.codes.find(sha256_hex(code));
    if (it == r.codes.end()) return std::nullopt;
    const code_entry entry = it->second;
    r.codes.erase(it);  // single use, whatever the outcome
    if (entry.path != path) return std::nullopt;
    return entry.who;
}

std::string open_session(const user& who) {
    const std::string id = new_token();
    registry& r = the_registry();
    const std::lock_guard<std::mutex> lock(r.mutex);
    r.sessions[sha256_hex(id)] = session_entry{who, clock::now() + r.session_lifetime};
    return id;
}

std::optional<user> session_user(const std::string& id) {
    registry& r = the_registry();
    const std::lock_guard<std::mutex> lock(r.mutex);
    const auto it = r.sessions.find(sha256_hex(id));
    if (it == r.sessions.end()) return std::nullopt;
    if (it->second.expires <= clock::now()) {
        r.sessions.erase(it);
        return std::nullopt;
    }
    return it->second.who;
}

}  // namespace viewer_sessions

}  // namespace tilekit_service
