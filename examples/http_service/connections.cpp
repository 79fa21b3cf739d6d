#include "connections.hpp"

#include "config.hpp"
#include "routes.hpp"  // send_error

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <thread>

namespace tilekit_service {

namespace {

using clock = std::chrono::steady_clock;

// What the thread serving a connection knows about it.
struct connection_state {
    bool admitted = true;      // within --max-connections; otherwise it is answered 503
    clock::time_point active;  // the connection's start or its last response
    int timeout_seconds = 0;
};
thread_local connection_state this_connection;

// httplib hands each accepted connection to a TaskQueue. This one gives it a thread of its
// own: up to `limit` connections are served, up to `limit` more are answered 503, and beyond
// that the listening thread waits (new connections stay in the kernel's backlog).
class connection_pool final : public httplib::TaskQueue {
public:
    connection_pool(unsigned limit, int timeout_seconds) : limit_(limit), timeout_seconds_(timeout_seconds) {}

    void enqueue(std::function<void()> serve) override {
        std::unique_lock<std::mutex> lock(counts_->mutex);
        counts_->changed.wait(lock, [this] { return counts_->refused < limit_; });
        const bool admitted = counts_->served < limit_;
        ++(admitted ? counts_->served : counts_->refused);
        std::thread([counts = counts_, admitted, timeout = timeout_seconds_, serve = std::move(serve)] {
            this_connection = {admitted, clock::now(), timeout};
            serve();  // reads requests and answers them until the connection closes
            const std::lock_guard<std::mutex> done(counts->mutex);
            --(admitted ? counts->served : counts->refused);
            counts->changed.notify_all();
        }).detach();
    }

    // httplib calls this when it stops listening. A request in progress or an idle kept-alive
    // connection ends within the client timeout; a client that sends a byte just in time would
    // hold its thread for ever, so after the timeout (and a little more) it is left behind: the
    // process is stopping.
    void shutdown() override {
        std::unique_lock<std::mutex> lock(counts_->mutex);
        const bool all_ended = counts_->changed.wait_for(lock, std::chrono::seconds(timeout_seconds_ + 2), [this] {
            return counts_->served + counts_->refused == 0;
        });
        if (!all_ended)
            std::fprintf(stderr, "tilekit-service: stopping with %u connections open (clients that send too slowly)\n",
                         counts_->served + counts_->refused);
    }

private:
    // Shared with the connections' threads, which may outlive the pool (see shutdown).
    struct counts {
        std::mutex mutex;
        std::condition_variable changed;
        unsigned served = 0, refused = 0;
    };
    const std::shared_ptr<counts> counts_ = std::make_shared<counts>();
    const unsigned limit_;
    const int timeout_seconds_;
};

// The header close_after_response leaves for the post-routing handler (never sent).
const char* const close_marker = "X-Tilekit-Close-Connection";

// Bodies up to this size are read and dropped when a handler answered without them, so the
// connection stays usable; larger ones close it (not read: the point of refusing early).
constexpr std::uint64_t discard_limit = 64 << 10;

// A handler that reads the body itself, as httplib wants it. A body the handler left unread
// (it answered 401, 404, 422, ... first): a small one is dropped so that the connection can go
// on, a large one is not read and the connection is closed after the answer.
httplib::Server::HandlerWithContentReader with_body(body_handler handler) {
    return [handler](const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& reader) {
        request_body body(req, reader);
        try {
            handler(req, res, body);
        } catch (...) {
            if (body.left_unread()) close_after_response(res);
            throw;
        }
        if (!body.left_unread()) return;
        const std::string length = req.get_header_value("Content-Length");
        const bool small = !length.empty() && length.size() < 20 && std::strtoull(length.c_str(), nullptr, 10) <= discard_limit;
        if (small && reader([](const char*, std::size_t) { return true; })) return;
        close_after_response(res);
    };
}

}  // namespace

void install_connection_limits(httplib::Server& server, const service_config& config) {
    const unsigned limit = config.max_connections;
    const int timeout = config.client_timeout_seconds;
    server.new_task_queue = [limit, timeout] { return new connection_pool(limit, timeout); };
    server.set_read_timeout(timeout);
    server.set_write_timeout(timeout);
    server.set_keep_alive_timeout(timeout);
    server.set_keep_alive_max_count(100);
    // httplib writes a response's headers and body separately: without this, each response on a
    // kept-alive connection waited ~40 ms for the client's delayed ACK (Nagle's algorithm).
    server.set_tcp_nodelay(true);
    // Bodies are read by request_body with the route's own limit; this one is for any other.
    server.set_payload_max_length(static_cast<std::size_t>(config.max_upload_bytes));

    // Runs once a request's headers are read, before its route.
    server.set_pre_routing_handler([](const httplib::Request& req, httplib::Response& res) {
        // httplib reads no body for GET, HEAD or OPTIONS: one sent anyway would be taken for the
        // next request, so the connection ends with this one.
        const bool reads_body = req.method == "POST" || req.method == "PUT" || req.method == "PATCH" || req.method == "DELETE";
        if (!reads_body && (req.get_header_value("Content-Length", 0).find_first_not_of("0") != std::string::npos ||
                            req.has_header("Transfer-Encoding")))
            close_after_response(res);
        // A connection beyond the limit is answered 503 and nothing else is done for it.
        if (this_connection.admitted) return httplib::Server::HandlerResponse::Unhandled;
        res.set_header("Retry-After", "1");
        send_error(res, 503, "Too many connections; try again later");
        close_after_response(res);
        return httplib::Server::HandlerResponse::Handled;
    });

    // Runs just before each response is written. httplib has no call to close a connection
    // after a response; it does close it when a response's body cannot be written in full, so
    // the body is handed over by a content provider that writes it all and then reports failure.
    server.set_post_routing_handler([](const httplib::Request&, httplib::Response& res) {
        this_connection.active = clock::now();
        if (!res.has_header(close_marker)) return;
        res.headers.erase(close_marker);
        res.headers.erase("Keep-Alive");
        if (!res.has_header("Connection")) res.set_header("Connection", "close");
        const auto body = std::make_shared<std::string>(std::move(res.body));
        res.body.clear();
        if (body->empty()) *body = "\n";  // the close comes with a write: there must be one
        const std::string type = res.get_header_value("Content-Type");
        res.headers.erase("Content-Type");  // set_content_provider sets it again
        res.headers.erase("Content-Length");
        res.set_header("Content-Length", std::to_string(body->size()));
        res.set_content_provider(body->size(), type, [body](std::size_t offset, std::size_t length, httplib::DataSink& sink) {
            sink.write(body->data() + offset, length);
            return false;  // all written; "failing" here makes httplib close the connection
        });
    });
}

void install_fallback_routes(httplib::Server& server) {
    const auto not_found = with_body([](const httplib::Request&, httplib::Response& res, request_body&) {
        send_error(res, 404, "Not found");
    });
    server.Post(".*", not_found);
    server.Put(".*", not_found);
    server.Patch(".*", not_found);
    server.Delete(".*", not_found);
}

std::string refused_request_detail(const httplib::Request& req, httplib::Response& res) {
    switch (res.status) {
    case 404: return "Not found";
    case 405: return "Method not allowed";
    case 413: return "Request body too large";
    case 414: return "Request URI too long (limit 8192 bytes)";
    case 416: return "Range not satisfiable";
    case 400: break;
    default: return "Error";
    }
    // httplib sets REMOTE_ADDR once the headers are read: without it they never completed, and
    // the connection is not usable any more.
    if (req.path.empty()) {
        close_after_response(res);
        return "Bad request: a malformed request line";
    }
    if (req.has_header("REMOTE_ADDR")) return "Bad request";
    close_after_response(res);
    // The headers failed. httplib stops on a read that waits past the timeout, or on a header
    // line over its limit; the first takes at least the timeout, the second comes at once.
    const auto waited = std::chrono::duration_cast<std::chrono::seconds>(clock::now() - this_connection.active).count();
    if (this_connection.timeout_seconds > 0 && waited >= this_connection.timeout_seconds) {
        res.status = 408;
        return "Request timeout: the request headers did not arrive within " +
               std::to_string(this_connection.timeout_seconds) + " s";
    }
    res.status = 431;
    return "Request header fields too large (limit 8192 bytes a line)";
}

void close_after_response(httplib::Response& response) {
    if (!response.has_header(close_marker)) response.set_header(close_marker, "1");
}

request_body::request_body(const httplib::Request& request, const httplib::ContentReader& reader)
    : request_(request), reader_(reader) {
    announced_ = request.has_header("Content-Length") || request.has_header("Transfer-Encoding");
}

std::optional<request_body::content> request_body::read(httplib::Response& response, std::uint64_t limit) {
    read_ = true;
    content out;
    if (!announced_) return out;
    if (request_.has_header("Content-Length")) {
        const std::string text = request_.get_header_value("Content-Length");
        char* end = nullptr;
        const unsigned long long length = std::strtoull(text.c_str(), &end, 10);
        if (text.empty() || *end != '\0' || text.find_first_not_of("0123456789") != std::string::npos) {
            send_error(response, 400, "Invalid Content-Length");
            close_after_response(response);
            return std::nullopt;
        }
        if (length > limit) {  // refused from the header: not read
            send_error(response, 413, "Request body too large (limit " + std::to_string(limit) + " bytes)");
            close_after_response(response);
            return std::nullopt;
        }
    }
    std::uint64_t received = 0;
    bool too_large = false;
    const auto keep = [&](std::string& to, const char* data, std::size_t size) {
        received += size;
        if (received > limit) {  // a chunked body: counted as it comes
            too_large = true;
            return false;
        }
        to.append(data, size);
        return true;
    };
    const clock::time_point started = clock::now();
    bool complete = false;
    if (request_.is_multipart_form_data()) {
        int parts = 0;
        std::string ignored;
        complete = reader_(
            [&](const httplib::MultipartFormData& part) {
                if (parts++ == 0) out.filename = part.filename;
                return true;
            },
            [&](const char* data, std::size_t size) { return keep(parts == 1 ? out.bytes : ignored, data, size); });
    } else {
        complete = reader_([&](const char* data, std::size_t size) { return keep(out.bytes, data, size); });
    }
    if (complete) return out;
    close_after_response(response);
    // httplib reports every failure as 400: a read that waited past the timeout took at least
    // that long; a malformed body (chunks, multipart) or a closed connection fails sooner.
    const int timeout = this_connection.timeout_seconds;
    if (too_large) {
        send_error(response, 413, "Request body too large (limit " + std::to_string(limit) + " bytes)");
    } else if (timeout <= 0 || clock::now() - started < std::chrono::seconds(timeout)) {
        send_error(response, 400, "Malformed request body");
    } else {
        send_error(response, 408,
                   "Request timeout: the body stopped arriving (" + std::to_string(timeout) + " s without data)");
    }
    return std::nullopt;
}

void post_route(httplib::Server& server, const std::string& pattern, body_handler handler) {
    server.Post(pattern, with_body(std::move(handler)));
}

}  // namespace tilekit_service
