#pragma once
// How the service holds up under slow and hostile clients, on cpp-httplib 0.11.4 (Debian 12).
//
// - Connections: each has a thread of its own, at most --max-connections at once
//   (connection_pool). httplib's ThreadPool queues the connections beyond its threads, so 16
//   clients that start a request and go quiet stalled every other one, /health included. Beyond
//   the limit a connection still gets a thread, but only to be answered 503 and closed (at most
//   as many of these as the limit; further ones wait in the listen backlog).
// - Timeouts: --client-timeout bounds every wait for a client: for its headers, for each part
//   of a body, for its next request on a kept-alive connection, for it to take a response.
//   httplib applies it per read, not to a whole request (it has no such deadline), so a client
//   that sends a byte just in time keeps its connection; the limit bounds how many can, and a
//   stop leaves such connections behind after the timeout (plus 2 s) instead of waiting for them.
// - Bodies: httplib reads a POST body before an ordinary handler runs. Every POST route is
//   registered with post_route instead, which hands the handler a request_body that it reads
//   after checking the token and the path; a body left unread (over 64 KiB; smaller ones are
//   read and dropped) closes the connection after the answer (otherwise its bytes would be
//   taken for the next request).
// - Answers instead of stalls: 503 beyond the limit, 408 when the client stops sending,
//   413 for a body over its limit (before reading it), 431 for a header line over 8192 bytes.

#include <httplib.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

namespace tilekit_service {

struct service_config;

// Timeouts, the connection limit and the handlers that answer 503, 408 and 431 (the error
// handler of routes.cpp asks refused_request_detail). Call before listening.
void install_connection_limits(httplib::Server& server, const service_config& config);

// After the other routes: POST, PUT, PATCH and DELETE on any other path are 404 (405 for the
// others) without reading a body.
void install_fallback_routes(httplib::Server& server);

// httplib answered a request that reached no handler (status 400, 414, ...): the detail to
// send. A request whose headers never completed becomes 408 (the client went quiet) or 431 (a
// header line over the limit).
std::string refused_request_detail(const httplib::Request& request, httplib::Response& response);

// The answer is the last thing on this connection: httplib closes it once the response is sent.
void close_after_response(httplib::Response& response);

// The body of a POST. None without Content-Length or Transfer-Encoding: chunked (HTTP/1.1:
// such a request has no body; httplib would wait for the connection to close).
class request_body {
public:
    request_body(const httplib::Request& request, const httplib::ContentReader& reader);

    struct content {
        std::string bytes;     // the body; for multipart/form-data, the first file
        std::string filename;  // the multipart file's name, if any
    };
    // Reads the body once, at most `limit` bytes: nullopt after answering 413 (over the limit,
    // not read when Content-Length says so), 408 (the client stopped sending) or 400.
    std::optional<content> read(httplib::Response& response, std::uint64_t limit);
    // A body was announced and not read (the handler answered before asking for it).
    bool left_unread() const { return announced_ && !read_; }

private:
    const httplib::Request& request_;
    const httplib::ContentReader& reader_;
    bool announced_ = false;
    bool read_ = false;
};

using body_handler = std::function<void(const httplib::Request&, httplib::Response&, request_body&)>;
void post_route(httplib::Server& server, const std::string& pattern, body_handler handler);

}  // namespace tilekit_service
