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
// SameSite=Lax (files.cpp says why not Strict), Path=/, Secure with --cookie-secure 1) and
// redirects (303) to the same path without the code, so the code leaves the address bar. The cookie authenticates GET and HEAD
// only (the viewer page, /static/, /tiles/ and the API reads the viewer makes); a write (POST)
// takes the header only, so a cross-site form cannot act with a visitor's cookie (CSRF).
//
// Codes and sessions live in this process's memory: a restart signs viewers out, and with
// several `--role serve` processes behind a balancer a code must be redeemed where it was minted
// (sticky sessions) -- acceptable for an example.
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

// The viewer's one-time codes and the sessions they open. One per process (see above); the
// lifetimes are set once at start (main.cpp).
namespace viewer_sessions {

void configure(std::chrono::seconds code_lifetime, std::chrono::seconds session_lifetime);
std::chrono::seconds code_lifetime();
std::chrono::seconds session_lifetime();

// A new code for `who`, redeemable once, only at `path`, until it expires ("" when too many
// codes are outstanding).
std::string mint_code(const user& who, const std::string& path);
// The code's user if it is known, unused, unexpired and was minted for `path`; it is spent
// either way (a wrong path burns it too).
std::optional<user> redeem_code(const std::string& code, const std::string& path);
// A new session for `who`: its id, for the cookie.
std::string open_session(const user& who);
// The session's user, while it lasts.
std::optional<user> session_user(const std::string& id);

}  // namespace viewer_sessions

}  // namespace tilekit_service
