// The server of server.hpp on Boost.Beast: one session object per connection, driven by
// asynchronous reads and writes on the I/O threads; the service's handlers on a pool of their own.
// Beast and Asio appear in this file only (their headers are heavy to compile).

#include "server.hpp"

#include "target.hpp"

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <sys/sendfile.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

namespace tilekit_service::http {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = net::ip::tcp;
using steady = std::chrono::steady_clock;

namespace {

constexpr std::size_t body_piece = 64 * 1024;

std::string json_escape(const std::string& text) {
    std::string out;
    for (const char c : text) {
        if (c == '"' || c == '\\') out.push_back('\\');
        if (static_cast<unsigned char>(c) < 0x20) continue;
        out.push_back(c);
    }
    return out;
}

response error_response(int status, const std::string& detail) {
    response r;
    r.status = status;
    r.set("content-type", "application/json");
    r.body = "{\"detail\":\"" + json_escape(detail) + "\"}";
    return r;
}

std::string lower(std::string text) {
    for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return text;
}

}  // namespace

struct server::impl {
    server_limits limits;
    admit_function admit;
    log_function log;
    net::io_context io;
    tcp::acceptor acceptor{io};
    std::optional<net::thread_pool> handlers;  // none: handlers run on the I/O threads
    std::atomic<bool> stopping{false};
    mutable std::mutex mutex;
    std::map<std::string, unsigned> per_address;
    unsigned open = 0;
    // Every open session, so that stop() can close the ones waiting for a next request.
    std::map<void*, std::function<void()>> closers;

    impl(server_limits l, admit_function a, log_function lg)
        : limits(l), admit(std::move(a)), log(std::move(lg)), io(static_cast<int>(std::max(1u, l.io_threads))) {
        if (l.handler_threads) handlers.emplace(l.handler_threads);
    }

    bool take_connection(const std::string& address) {
        std::lock_guard<std::mutex> lock(mutex);
        unsigned& mine = per_address[address];
        if (open >= limits.max_connections || mine >= limits.max_per_address) {
            if (mine == 0) per_address.erase(address);
            return false;
        }
        ++open;
        ++mine;
        return true;
    }
    void give_back(const std::string& address) {
        std::lock_guard<std::mutex> lock(mutex);
        --open;
        const auto it = per_address.find(address);
        if (it != per_address.end() && --it->second == 0) per_address.erase(it);
    }

    void accept();
    void stop_when_drained(std::chrono::steady_clock::time_point give_up);
};

namespace {

class session : public std::enable_shared_from_this<session> {
public:
    session(server::impl& owner, tcp::socket socket, std::string address)
        : s_(owner), stream_(std::move(socket)), buffer_(owner.limits.header_bytes + body_piece), address_(std::move(address)),
          timer_(stream_.get_executor()) {}
    ~session() {
        {
            std::lock_guard<std::mutex> lock(s_.mutex);
            s_.closers.erase(this);
        }
        s_.give_back(address_);
    }

    void start() {
        {
            std::weak_ptr<session> weak = shared_from_this();
            std::lock_guard<std::mutex> lock(s_.mutex);
            s_.closers[this] = [weak] {
                if (auto self = weak.lock())
                    net::post(self->stream_.get_executor(), [self] {
                        if (self->waiting_) self->close();  // between requests: nothing is lost
                    });
            };
        }
        read_header(true);
    }

private:
    void read_header(bool first) {
        if (s_.stopping && !first) return close();
        header_.emplace();
        header_->header_limit(static_cast<std::uint32_t>(s_.limits.header_bytes));
        header_->body_limit(boost::none);  // the route's limit applies once it is known
        body_.reset();
        req_ = request{};
        res_ = response{};
        linger_ = false;
        // Reads run under a timer of ours that cancels them (tcp_stream's own timeout would close
        // the socket, and a client that stalled is owed a 408).
        stream_.expires_never();
        waiting_ = true;
        arm(steady::now() + (first ? s_.limits.header_deadline : std::min(s_.limits.idle_timeout, s_.limits.header_deadline)));
        bhttp::async_read_header(stream_, buffer_, *header_,
                                 [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_header(ec); });
    }

    // The deadline of the read in progress: past it, the read is cancelled and timed_out_ set.
    void arm(steady::time_point deadline) {
        timed_out_ = false;
        timer_.expires_at(deadline);
        timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
            if (ec) return;  // disarmed
            self->timed_out_ = true;
            beast::error_code ignored;
            self->stream_.socket().cancel(ignored);
        });
    }
    void disarm() { timer_.cancel(); }

    void on_header(beast::error_code ec) {
        disarm();
        waiting_ = false;
        if (timed_out_) {
            if (!header_->got_some() && buffer_.size() == 0) return close();  // an idle connection: nothing to answer
            return refuse(408, "Request timeout: the request headers did not arrive within " +
                                   std::to_string(s_.limits.header_deadline.count() / 1000) + " s");
        }
        if (ec == bhttp::error::end_of_stream || ec == net::error::eof || ec == net::error::connection_reset) return close();
        if (ec == bhttp::error::header_limit || ec == bhttp::error::buffer_overflow)
            return refuse(431, "Request header fields too large (limit " + std::to_string(s_.limits.header_bytes) + " bytes in all)");
        if (ec) return refuse(400, "Bad request: " + ec.message());

        const auto& message = header_->get();
        began_ = steady::now();
        req_.method = std::string(message.method_string());
        req_.target = std::string(message.target());
        req_.remote_address = address_;
        std::size_t count = 0;
        for (const auto& field : message) {
            if (++count > s_.limits.max_fields)
                return refuse(431, "Request header fields too large (limit " + std::to_string(s_.limits.max_fields) + " fields)");
            if (field.name_string().size() + field.value().size() + 2 > s_.limits.line_bytes)
                return refuse(431, "Request header fields too large (limit " + std::to_string(s_.limits.line_bytes) + " bytes a line)");
            req_.headers.emplace_back(lower(std::string(field.name_string())), std::string(field.value()));
        }
        if (message.version() != 11 && message.version() != 10) return refuse(505, "HTTP version not supported: HTTP/1.1 only");
        if (message.target().size() > s_.limits.line_bytes)
            return refuse(414, "Request URI too long (limit " + std::to_string(s_.limits.line_bytes) + " bytes)");
        const bool has_te = message.find(bhttp::field::transfer_encoding) != message.end();
        // Beast 1.81 takes a Transfer-Encoding that does not end in chunked as "no body", and
        // accepts chunked on HTTP/1.0: both are refused (RFC 9112 §6.1).
        if (has_te && message.version() == 10) return refuse(400, "Bad request: Transfer-Encoding on HTTP/1.0");
        if (has_te && !header_->chunked()) return refuse(501, "Not implemented: only the chunked transfer coding");
        if (message.version() == 11 && message.find(bhttp::field::host) == message.end())
            return refuse(400, "Bad request: an HTTP/1.1 request needs a Host header");
        const std::optional<parsed_target> target = parse_target(req_.target);
        if (!target) return refuse(400, "Bad request: a malformed request target");
        req_.segments = target->segments;
        req_.query = target->query;
        keep_alive_ = message.keep_alive();
        has_body_ = header_->chunked() || (header_->content_length() && *header_->content_length() > 0);
        handle([self = shared_from_this()] {
            admission decided;
            try {
                decided = self->s_.admit(self->req_);
            } catch (const std::exception&) {
                decided.answer = error_response(500, "internal error");
            }
            return decided;
        }, [self = shared_from_this()](admission decided) { self->on_admitted(std::move(decided)); });
    }

    void on_admitted(admission decided) {
        admission_ = std::move(decided);
        if (admission_.answer) {
            res_ = std::move(*admission_.answer);
            if (has_body_) {  // not read: the connection cannot carry another request
                res_.close = true;
                linger_ = true;
            }
            return send();
        }
        if (!has_body_) return run_handler();
        const auto length = header_->content_length();
        if (length && *length > admission_.body_limit) return refuse(413, too_large());
        // A large body gets time in proportion to its size, beyond the request's deadline.
        const std::uint64_t expected = length ? *length : admission_.body_limit;
        const auto extra = std::chrono::milliseconds(expected * 1000 / std::max<std::uint64_t>(1, s_.limits.min_upload_rate));
        body_deadline_ = began_ + s_.limits.request_deadline + extra;
        piece_.reset(new char[body_piece]);
        // Room to read a body in large pieces (the buffer grows only as far as each read asks,
        // 512 bytes at a time otherwise: 39,066 reads for a 20 MB upload); given back after it.
        buffer_.reserve(body_piece);
        body_.emplace(std::move(*header_));
        body_->body_limit(admission_.body_limit);
        const auto expect = req_.header("expect");
        if (expect && lower(*expect) == "100-continue") {
            static const std::string go_on = "HTTP/1.1 100 Continue\r\n\r\n";
            return net::async_write(stream_, net::buffer(go_on), [self = shared_from_this()](beast::error_code ec, std::size_t) {
                if (ec) return self->close();
                self->read_body();
            });
        }
        read_body();
    }

    void read_body() {
        body_->get().body().data = piece_.get();
        body_->get().body().size = body_piece;
        body_->get().body().more = true;
        // The whole body within its deadline, and no wait for the next piece longer than the
        // idle timeout (a client that stalls mid-body gets 408 then, not at the deadline).
        arm(std::min(body_deadline_, steady::now() + s_.limits.idle_timeout));
        bhttp::async_read(stream_, buffer_, *body_, [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_body(ec); });
    }

    void on_body(beast::error_code ec) {
        disarm();
        if (timed_out_) return refuse(408, "Request timeout: the body stopped arriving");
        if (ec == bhttp::error::need_buffer) ec = {};
        if (ec == bhttp::error::body_limit) return refuse(413, too_large());
        if (ec && ec.category() == bhttp::make_error_code(bhttp::error::bad_chunk).category())
            return refuse(400, "Bad request: a malformed body (" + ec.message() + ")");
        if (ec) return close();
        const std::size_t got = body_piece - body_->get().body().size;
        if (got > 0) {
            if (admission_.sink) {
                if (!admission_.sink->write(piece_.get(), got)) {  // the sink has had enough: it answers now
                    linger_ = !body_->is_done();
                    return run_handler();
                }
            } else {
                req_.body.append(piece_.get(), got);
            }
        }
        if (!body_->is_done()) return read_body();
        piece_.reset();
        buffer_.shrink_to_fit();
        run_handler();
    }

    // Runs the service's code (`work`, which may block), then `then` with its result on this
    // session's strand: inline on this I/O thread, or on the handler pool when there is one.
    template <class Work, class Then>
    void handle(Work work, Then then) {
        if (s_.limits.handler_threads == 0) return then(work());
        net::post(*s_.handlers, [self = shared_from_this(), work = std::move(work), then = std::move(then)]() mutable {
            net::post(self->stream_.get_executor(), [then = std::move(then), result = work()]() mutable { then(std::move(result)); });
        });
    }

    void run_handler() {
        handle([self = shared_from_this()] {
            response answer;
            try {
                if (self->admission_.sink)
                    answer = self->admission_.sink->finish(self->req_);
                else if (self->admission_.complete)
                    answer = self->admission_.complete(self->req_);
                else
                    answer = error_response(500, "no handler");
            } catch (const std::exception&) {
                answer = error_response(500, "internal error");
            }
            return answer;
        }, [self = shared_from_this()](response answer) {
            self->res_ = std::move(answer);
            if (self->linger_) self->res_.close = true;
            self->send();
        });
    }

    std::string too_large() const {
        return "Request body too large (limit " + std::to_string(admission_.body_limit) + " bytes)";
    }

    // An answer decided by the server itself; the connection ends after it.
    void refuse(int status, const std::string& detail) {
        res_ = error_response(status, detail);
        res_.close = true;
        linger_ = true;
        if (req_.method.empty()) req_.method = "-";
        send();
    }

    void send() {
        const bool head = req_.method == "HEAD";
        const bool keep = keep_alive_ && !res_.close && !s_.stopping;
        header_msg_ = std::make_shared<bhttp::response<bhttp::empty_body>>();
        auto& h = *header_msg_;
        h.result(static_cast<unsigned>(res_.status));
        h.version(11);
        for (const auto& f : res_.headers) h.set(f.first, f.second);
        // On every answer, the server's own refusals included: a tile, an upload or an error
        // answered with its content type is never sniffed into HTML or script by a browser.
        h.set("x-content-type-options", "nosniff");
        const std::uint64_t length = res_.file ? res_.file->length : res_.body.size();
        h.content_length(length);
        h.keep_alive(keep);
        keep_going_ = keep;
        sent_bytes_ = head ? 0 : length;
        // Writing the answer: tcp_stream's timeout (closing the socket) is right here.
        stream_.expires_at(std::max(began_ + s_.limits.request_deadline, steady::now() + std::chrono::seconds(5)));
        if (!head && !res_.file) {
            // Header and body in one gathered write.
            auto whole = std::make_shared<bhttp::response<bhttp::string_body>>(std::move(h.base()), std::move(res_.body));
            whole_msg_ = whole;
            return bhttp::async_write(stream_, *whole, [self = shared_from_this()](beast::error_code ec, std::size_t) {
                if (ec) return self->close();
                self->after_write();
            });
        }
        serializer_ = std::make_shared<bhttp::response_serializer<bhttp::empty_body>>(h);
        bhttp::async_write_header(stream_, *serializer_, [self = shared_from_this(), head](beast::error_code ec, std::size_t) {
            if (ec) return self->close();
            if (head) return self->after_write();
            self->send_file();
        });
    }

    // The file part straight from its descriptor to the socket (sendfile: no copy through us).
    void send_file() {
        file_part& part = *res_.file;
        auto& socket = stream_.socket();
        beast::error_code ec;
        socket.native_non_blocking(true, ec);
        if (ec) return close();
        while (part.length > 0) {
            off_t offset = static_cast<off_t>(part.offset);
            const ssize_t n = ::sendfile(socket.native_handle(), part.fd, &offset, std::min<std::uint64_t>(part.length, 1 << 20));
            if (n > 0) {
                part.offset += static_cast<std::uint64_t>(n);
                part.length -= static_cast<std::uint64_t>(n);
                continue;
            }
            if (n < 0 && errno == EINTR) continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                // Wait until the socket takes more, but not past the request's deadline (a client
                // that stops reading must not hold the connection).
                timer_.expires_at(began_ + s_.limits.request_deadline);
                timer_.async_wait([self = shared_from_this()](beast::error_code e) {
                    if (!e) self->stream_.socket().cancel();
                });
                socket.async_wait(tcp::socket::wait_write, [self = shared_from_this()](beast::error_code e) {
                    self->timer_.cancel();
                    if (e) return self->close();
                    self->send_file();
                });
                return;
            }
            return close();  // an error, or the file shrank under us
        }
        after_write();
    }

    void after_write() {
        if (s_.log) {
            exchange x;
            x.remote_address = address_;
            x.method = req_.method;
            x.target = req_.target;
            x.status = res_.status;
            x.body_bytes = sent_bytes_;
            x.took = std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - began_);
            try {
                s_.log(x);
            } catch (const std::exception&) {
            }
        }
        res_.file.reset();
        whole_msg_.reset();
        if (keep_going_) return read_header(false);
        if (linger_) return linger_close();
        close();
    }

    // Shut our side, then read and drop what the client still sends, within bounds, so that the
    // close does not reset the connection before the client has read the answer.
    void linger_close() {
        beast::error_code ec;
        stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
        if (ec) return close();
        lingered_ = 0;
        piece_.reset(new char[body_piece]);
        linger_until_ = std::chrono::steady_clock::now() + s_.limits.linger_time;
        drain();
    }
    // Each read waits at most linger_idle, and all of them end by linger_until_ (nginx's
    // lingering_timeout and lingering_time).
    void drain() {
        if (s_.stopping) return close();
        const auto left = linger_until_ - std::chrono::steady_clock::now();
        if (left <= std::chrono::steady_clock::duration::zero()) return close();
        stream_.expires_after(std::min<std::chrono::steady_clock::duration>(left, s_.limits.linger_idle));
        stream_.async_read_some(net::buffer(piece_.get(), body_piece), [self = shared_from_this()](beast::error_code ec, std::size_t n) {
            self->lingered_ += n;
            if (ec || self->lingered_ >= self->s_.limits.linger_bytes) return self->close();
            self->drain();
        });
    }

    void close() {
        beast::error_code ec;
        stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
        stream_.close();
    }

    server::impl& s_;
    beast::tcp_stream stream_;
    beast::flat_buffer buffer_;
    std::string address_;
    net::steady_timer timer_;
    std::optional<bhttp::request_parser<bhttp::empty_body>> header_;
    std::optional<bhttp::request_parser<bhttp::buffer_body>> body_;
    std::unique_ptr<char[]> piece_;
    request req_;
    admission admission_;
    response res_;
    std::shared_ptr<bhttp::response<bhttp::empty_body>> header_msg_;
    std::shared_ptr<bhttp::response_serializer<bhttp::empty_body>> serializer_;
    std::shared_ptr<bhttp::response<bhttp::string_body>> whole_msg_;
    steady::time_point began_ = steady::now();
    steady::time_point body_deadline_ = steady::now();
    bool keep_alive_ = false, has_body_ = false, keep_going_ = false, linger_ = false, timed_out_ = false, waiting_ = false;
    std::uint64_t sent_bytes_ = 0, lingered_ = 0;
    std::chrono::steady_clock::time_point linger_until_;
};

// Beyond the connection limits: a short 503, then close (no session, no handler).
void turn_away(tcp::socket socket) {
    static const std::string body = "{\"detail\":\"Too many connections; retry shortly\"}";
    static const std::string busy = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: " +
                                    std::to_string(body.size()) + "\r\nConnection: close\r\nRetry-After: 1\r\n\r\n" + body;
    auto s = std::make_shared<tcp::socket>(std::move(socket));
    net::async_write(*s, net::buffer(busy), [s](beast::error_code, std::size_t) {
        beast::error_code ec;
        s->shutdown(tcp::socket::shutdown_both, ec);
        s->close(ec);
    });
}

}  // namespace

void server::impl::accept() {
    acceptor.async_accept(net::make_strand(io), [this](beast::error_code ec, tcp::socket socket) {
        if (ec == net::error::operation_aborted || !acceptor.is_open()) return;
        if (!ec) {
            beast::error_code e;
            const auto endpoint = socket.remote_endpoint(e);
            const std::string address = e ? std::string("?") : endpoint.address().to_string();
            // Answers go out as soon as they are written: with Nagle's algorithm, the file part
            // that follows a header waits for the client's delayed ACK (40 ms a request).
            socket.set_option(tcp::no_delay(true), e);
            if (take_connection(address))
                std::make_shared<session>(*this, std::move(socket), address)->start();
            else
                turn_away(std::move(socket));
        }
        accept();
    });
}

server::server(server_limits limits, admit_function admit, log_function log)
    : impl_(std::make_unique<impl>(limits, std::move(admit), std::move(log))) {}

server::~server() {
    impl_->io.stop();
    if (impl_->handlers) impl_->handlers->join();
}

void server::listen(const std::string& address, unsigned short port) {
    const tcp::endpoint endpoint(net::ip::make_address(address), port);
    impl_->acceptor.open(endpoint.protocol());
    impl_->acceptor.set_option(net::socket_base::reuse_address(true));
    impl_->acceptor.bind(endpoint);
    impl_->acceptor.listen(net::socket_base::max_listen_connections);
}

unsigned short server::port() const { return impl_->acceptor.local_endpoint().port(); }

void server::run() {
    impl_->accept();
    std::vector<std::thread> threads;
    for (unsigned i = 1; i < std::max(1u, impl_->limits.io_threads); ++i) threads.emplace_back([this] { impl_->io.run(); });
    impl_->io.run();
    for (std::thread& t : threads) t.join();
}

void server::stop(std::chrono::milliseconds grace) {
    impl_->stopping = true;
    net::post(impl_->io, [this, grace] {
        beast::error_code ec;
        impl_->acceptor.close(ec);
        std::vector<std::function<void()>> closers;
        {
            std::lock_guard<std::mutex> lock(impl_->mutex);
            for (const auto& entry : impl_->closers) closers.push_back(entry.second);
        }
        for (const auto& close_if_waiting : closers) close_if_waiting();
        // Requests in progress get up to `grace`; run() returns as soon as none is left.
        impl_->stop_when_drained(std::chrono::steady_clock::now() + grace);
    });
}

void server::impl::stop_when_drained(std::chrono::steady_clock::time_point give_up) {
    {
        std::lock_guard<std::mutex> lock(mutex);
        if (open == 0 || std::chrono::steady_clock::now() >= give_up) {
            io.stop();
            return;
        }
    }
    auto timer = std::make_shared<net::steady_timer>(io, std::chrono::milliseconds(20));
    timer->async_wait([this, timer, give_up](beast::error_code) { stop_when_drained(give_up); });
}

unsigned server::open_connections() const {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    return impl_->open;
}

}  // namespace tilekit_service::http
