#pragma once
// The HTTP/1.1 server under the service (Boost.Beast 1.81 from Debian 12's libboost1.81-dev, in
// server.cpp only). Why not cpp-httplib 0.11.4 any more: it buffers a request line or a header
// line until it sees a newline and checks its limits only afterwards, keeps any number of header
// lines, percent-decodes header values, parses chunk sizes with strtoul, and gives every
// connection a thread for its whole life; all of that happens before any code of ours runs.
//
// What holds here, before a request reaches the service:
// - Memory per connection is bounded: the request line and header fields together by
//   `header_bytes` (Beast's parser, over a read buffer of bounded size) and `max_fields`; a body
//   by the route's own limit, checked against Content-Length before a byte of it is read, and
//   while a chunked body arrives.
// - Framing is strict (RFC 9112): CRLF only, strict chunk syntax, Content-Length together with
//   Transfer-Encoding refused, a Transfer-Encoding other than chunked refused (501), header
//   values never decoded.
// - Idle and slow connections cost no thread: I/O is asynchronous on `io_threads`. Handlers run
//   on those threads too (`handler_threads` 0: no hand-off between threads, the fastest where
//   handlers wait only on local files and SQLite), or on a pool of `handler_threads` (where they
//   wait on the network, S3: the I/O threads stay free for accepts, refusals and timeouts). A deadline covers the whole header (`header_deadline`) and the whole
//   request (`request_deadline`, longer for a large upload at `min_upload_rate`).
// - Connections are capped in total and per client address (503 and close beyond).
// - A refused body does not kill the answer: the answer is written, the sending side shut, and
//   what the client still sends is read and dropped up to `linger_bytes` / `linger_time`
//   (a lingering close, as nginx does), so a client that sends its body before reading sees it.

#include "message.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace tilekit_service::http {

struct server_limits {
    std::size_t header_bytes = 16 * 1024;  // request line + header fields (431 beyond)
    std::size_t line_bytes = 8192;         // the request-target (414 beyond) and each header field (431)
    std::size_t max_fields = 100;          // header fields (431 beyond)
    std::chrono::milliseconds header_deadline{10000};   // from the first wait to the end of the header
    std::chrono::milliseconds request_deadline{60000};  // the header, the body and the answer
    std::uint64_t min_upload_rate = 256 * 1024;         // bytes/s a large body is given time for
    std::chrono::milliseconds idle_timeout{5000};       // a kept-alive connection's wait for its next request
    // After a refusal (413, 401 to a POST with a body, ...): the body a client still sends is read
    // and dropped, so that it sees the answer instead of a reset; at most this much, this long,
    // and this long silent. It costs a connection slot and bandwidth, never memory.
    std::uint64_t linger_bytes = std::uint64_t{1} << 30;
    std::chrono::milliseconds linger_time{30000};
    std::chrono::milliseconds linger_idle{5000};
    unsigned max_connections = 1024;
    unsigned max_per_address = 64;
    unsigned io_threads = 2;
    unsigned handler_threads = 0;
};

// One line per answered request: the caller writes the access log (with the target escaped).
struct exchange {
    std::string remote_address, method, target;
    int status = 0;
    std::uint64_t body_bytes = 0;
    std::chrono::milliseconds took{0};
};
using log_function = std::function<void(const exchange&)>;

class server {
public:
    server(server_limits limits, admit_function admit, log_function log);
    ~server();
    server(const server&) = delete;
    server& operator=(const server&) = delete;

    // Binds (throws std::system_error); port 0 picks a free one.
    void listen(const std::string& address, unsigned short port);
    unsigned short port() const;
    // Serves until stop(); then waits for requests in progress up to `grace`.
    void run();
    // From any thread (a signal-handling thread): no new connections, kept-alive ones close.
    void stop(std::chrono::milliseconds grace = std::chrono::milliseconds(10000));

    unsigned open_connections() const;

    struct impl;  // server.cpp: the acceptor, the sessions' shared state, the handler pool

private:
    std::unique_ptr<impl> impl_;
};

}  // namespace tilekit_service::http
