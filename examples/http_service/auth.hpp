#pragma once
// Bearer-token authentication. API clients send `Authorization: Bearer <token>`. A browser
// cannot put a header on a page navigation or an <img> tile request, so GET requests also
// accept the token as `?token=` (the demo viewer URL carries it) or as the `tilekit_token`
// cookie the viewer page sets (HttpOnly, SameSite=Strict). This is a demo convenience: a token
// in a URL ends up in browser history and logs. Writes (POST) take the header only.

#include "catalog.hpp"

#include "http/router.hpp"

#include <optional>
#include <string>

namespace tilekit_service {

inline const char* const token_cookie = "tilekit_token";

// The token a request presents ("" for none), by the rules above.
std::string presented_token(const http::route_request& request);

// The user, or nullopt after writing 401 {"detail": ...} with WWW-Authenticate: Bearer.
std::optional<user> require_user(const catalog& users, const http::route_request& request, http::response& response);

// Mints a random token (256 bits, hex).
std::string new_token();

}  // namespace tilekit_service
