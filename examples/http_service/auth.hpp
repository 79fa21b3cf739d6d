#pragma once
// Authentication. API clients send `Authorization: Bearer <token>`; that header is the only
// place a token is accepted (never `?token=`: a URL ends up in browser history, proxy logs and
// Referer headers).
//
// A browser cannot put a header on a page navigation or an <img> tile request, so the viewer
// works with a session instead. A client holding the token asks for a viewer link
// (POST .../viewer-link, files.cpp): a one-time code, valid for --viewer-code-seconds (60 s),
// bound to the user and to that one viewer path. Opening the link redeems the code: the answer
// sets the `tilekit_session` cookie (a random session id, never the token; HttpOnly,
// SameSite=Lax (files.cpp says why not Strict), Path=/, Secure at an https address) and
// redirects (303) to the same path without the code, so the code leaves the address bar. The cookie authenticates GET and HEAD
// only (the viewer page, /static/, /tiles/ and the API reads the viewer makes); a write (POST)
// takes the header only, so a cross-site form cannot act with a visitor's cookie (CSRF).
//
// Codes and sessions are kept in the catalog (by their SHA-256, as tokens are), so every process
// sharing it knows them and a restart or a redeploy signs nobody out. At most 100,000 unspent
// codes exist at once (minting beyond: 503); expired codes and sessions are deleted as new ones
// are made.
//
// What remains: whoever holds a link can sign a browser in as the link's user ("login CSRF": an
// attacker may send a victim a link with the attacker's own code; the victim then sees the
// attacker's project, signed in as the attacker). The code is single-use, short-lived and bound
// to one viewer path, and the page says which user it is signed in as (X-Tilekit-User on the
// API answers; the viewer shows it).

#include "catalog.hpp"

#include "http/router.hpp"

#include <chrono>
#include <optional>
#include <string>

namespace tilekit_service {

inline const char* const session_cookie_name = "tilekit_session";

// The user, or nullopt after writing 401 {"detail": ...} with WWW-Authenticate: Bearer.
// Bearer header for every method; the session cookie for GET and HEAD.
std::optional<user> require_user(const catalog& users, const http::route_request& request, http::response& response);

// Mints a random token (256 bits, hex).
std::string new_token();

// Unspent viewer codes at once: each lives a minute, but a client with a token could mint them
// in a loop.
constexpr std::size_t max_viewer_codes = 100000;

}  // namespace tilekit_service
