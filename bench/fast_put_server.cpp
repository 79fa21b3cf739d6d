// fast_put_server: a trivial, fast HTTP/1.1 sink for upload benchmarks. NOT an S3 server.
//
//   g++ -std=c++17 -O2 bench/fast_put_server.cpp -o /tmp/fast_put_server
//   /tmp/fast_put_server [-p PORT] [-f PORTFILE]      # PORT 0 (default): the kernel picks one
//
// It answers every request with `200 OK` (empty body, `Content-Length: 0`, a fixed ETag) as
// soon as the request's body has been read and thrown away. It verifies NOTHING: no signature,
// no payload hash, no Content-MD5, no key, no method. It stores nothing. It exists only to show
// the client's own ceiling (files/s, CPU per file) when the server costs almost nothing, which
// the real test peer (s3rver + a Python SigV4 verifier) cannot show.
//
// HTTP handled: keep-alive (default in HTTP/1.1; `Connection: close` honoured), pipelined
// requests, `Content-Length` bodies, `Expect: 100-continue` (100 sent at once). A request with
// `Transfer-Encoding` gets `501` and the connection is closed (uploaders must send a length).
// One thread, epoll, non-blocking sockets, listens on 127.0.0.1 only.
//
// `GET /_fast/stats` (not counted) answers JSON {"requests":N,"puts":N,"bytes":N,"connections":N}
// so a benchmark can check that every PUT arrived. SIGTERM / SIGINT: print the same JSON to
// stderr and exit 0.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdint>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <unordered_map>

namespace {

volatile std::sig_atomic_t stop_requested = 0;
extern "C" void on_signal(int) { stop_requested = 1; }

struct counters {
    unsigned long long requests = 0, puts = 0, bytes = 0, connections = 0;
} stats;

std::string stats_json() {
    char text[256];
    std::snprintf(text, sizeof text, "{\"requests\":%llu,\"puts\":%llu,\"bytes\":%llu,\"connections\":%llu}",
                  stats.requests, stats.puts, stats.bytes, stats.connections);
    return text;
}

struct connection {
    int fd = -1;
    std::string head;           // header bytes of the request being read
    unsigned long long body_left = 0;
    bool in_body = false;
    bool is_put = false;
    bool close_after = false;   // close once the output is sent
    std::string out;            // unsent response bytes
};

bool iequals_prefix(const char* text, std::size_t length, const char* prefix) {
    const std::size_t n = std::strlen(prefix);
    if (length < n) return false;
    for (std::size_t i = 0; i < n; ++i)
        if (std::tolower(static_cast<unsigned char>(text[i])) != prefix[i]) return false;
    return true;
}

std::string trim(const char* begin, const char* end) {
    while (begin < end && (*begin == ' ' || *begin == '\t')) ++begin;
    while (end > begin && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r')) --end;
    return std::string(begin, end);
}

const char ok_response[] =
    "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nETag: \"fast\"\r\nServer: fast_put_server\r\n\r\n";

void respond(connection& c, const std::string& status, const std::string& body, const char* type) {
    c.out += "HTTP/1.1 " + status + "\r\nContent-Length: " + std::to_string(body.size()) +
             "\r\nContent-Type: " + type + "\r\nServer: fast_put_server\r\n";
    if (c.close_after) c.out += "Connection: close\r\n";
    c.out += "\r\n" + body;
}

void request_done(connection& c) {
    ++stats.requests;
    if (c.is_put) ++stats.puts;
    if (c.close_after) {
        respond(c, "200 OK", "", "text/plain");
    } else {
        c.out.append(ok_response, sizeof ok_response - 1);
    }
    c.in_body = false;
    c.head.clear();
}

// Parses the header block in c.head (ends with CRLFCRLF). Returns false if the connection must close.
bool start_request(connection& c) {
    const char* p = c.head.data();
    const char* end = p + c.head.size();
    const char* line_end = static_cast<const char*>(std::memchr(p, '\n', end - p));
    const std::string request_line = trim(p, line_end);
    c.is_put = request_line.rfind("PUT ", 0) == 0;
    const bool http10 = request_line.size() >= 8 && request_line.compare(request_line.size() - 8, 8, "HTTP/1.0") == 0;
    c.close_after = http10;
    c.body_left = 0;
    bool expect_continue = false, chunked = false;
    for (p = line_end + 1; p < end;) {
        const char* e = static_cast<const char*>(std::memchr(p, '\n', end - p));
        if (!e) e = end;
        const std::size_t n = static_cast<std::size_t>(e - p);
        const char* colon = static_cast<const char*>(std::memchr(p, ':', n));
        if (colon) {
            const std::string value = trim(colon + 1, e);
            if (iequals_prefix(p, n, "content-length:")) c.body_left = std::strtoull(value.c_str(), nullptr, 10);
            else if (iequals_prefix(p, n, "transfer-encoding:")) chunked = true;
            else if (iequals_prefix(p, n, "expect:") && (value == "100-continue" || value == "100-Continue"))
                expect_continue = true;
            else if (iequals_prefix(p, n, "connection:")) {
                if (value == "close" || value == "Close") c.close_after = true;
                else if (value == "keep-alive" || value == "Keep-Alive") c.close_after = false;
            }
        }
        p = e + 1;
    }
    if (chunked) {
        c.close_after = true;
        respond(c, "501 Not Implemented", "Transfer-Encoding is not supported; send Content-Length\n", "text/plain");
        return false;
    }
    if (request_line.rfind("GET /_fast/stats", 0) == 0) {
        respond(c, "200 OK", stats_json(), "application/json");
        c.head.clear();
        c.in_body = false;
        return true;
    }
    stats.bytes += c.body_left;
    if (c.body_left == 0) {
        request_done(c);
    } else {
        if (expect_continue) c.out += "HTTP/1.1 100 Continue\r\n\r\n";
        c.in_body = true;
    }
    return true;
}

// Consumes received bytes; false = protocol error, close.
bool consume(connection& c, const char* data, std::size_t n) {
    std::size_t pos = 0;
    while (pos < n) {
        if (c.in_body) {
            const std::size_t take = static_cast<std::size_t>(std::min<unsigned long long>(c.body_left, n - pos));
            c.body_left -= take;
            pos += take;
            if (c.body_left == 0) request_done(c);
            continue;
        }
        // header bytes: append up to the end of the header block
        const std::size_t old = c.head.size();
        c.head.append(data + pos, n - pos);
        std::size_t search_from = old >= 3 ? old - 3 : 0;
        const std::size_t mark = c.head.find("\r\n\r\n", search_from);
        if (mark == std::string::npos) {
            if (c.head.size() > 65536) {
                c.close_after = true;
                respond(c, "431 Request Header Fields Too Large", "", "text/plain");
                return false;
            }
            return true;
        }
        const std::size_t used = mark + 4 - old;  // bytes of this chunk that belong to the header
        c.head.resize(mark + 4);
        pos += used;
        if (!start_request(c)) return false;
    }
    return true;
}

int listen_on(int port) {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) { std::perror("socket"); std::exit(1); }
    const int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) { std::perror("bind"); std::exit(1); }
    if (listen(fd, 1024) != 0) { std::perror("listen"); std::exit(1); }
    return fd;
}

}  // namespace

int main(int argc, char** argv) {
    int port = 0;
    const char* port_file = nullptr;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg == "-p" && i + 1 < argc) port = std::atoi(argv[++i]);
        else if (arg == "-f" && i + 1 < argc) port_file = argv[++i];
        else {
            std::fprintf(stderr, "usage: %s [-p PORT] [-f PORTFILE]\n", argv[0]);
            return 2;
        }
    }
    std::signal(SIGPIPE, SIG_IGN);
    struct sigaction sa {};
    sa.sa_handler = on_signal;  // no SA_RESTART: epoll_wait returns EINTR
    sigaction(SIGTERM, &sa, nullptr);
    sigaction(SIGINT, &sa, nullptr);

    const int listener = listen_on(port);
    sockaddr_in bound{};
    socklen_t len = sizeof bound;
    getsockname(listener, reinterpret_cast<sockaddr*>(&bound), &len);
    const int actual_port = ntohs(bound.sin_port);
    if (port_file) {
        const std::string tmp = std::string(port_file) + ".tmp";
        if (FILE* f = std::fopen(tmp.c_str(), "w")) {
            std::fprintf(f, "%d\n", actual_port);
            std::fclose(f);
            std::rename(tmp.c_str(), port_file);
        }
    }
    std::printf("%d\n", actual_port);
    std::fflush(stdout);

    const int ep = epoll_create1(EPOLL_CLOEXEC);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = listener;
    epoll_ctl(ep, EPOLL_CTL_ADD, listener, &ev);

    std::unordered_map<int, std::unique_ptr<connection>> conns;
    static char buffer[1 << 18];
    epoll_event events[256];

    const auto close_conn = [&](int fd) {
        epoll_ctl(ep, EPOLL_CTL_DEL, fd, nullptr);
        close(fd);
        conns.erase(fd);
    };
    // Sends what is pending; false when the connection was closed.
    const auto flush_out = [&](connection& c) -> bool {
        while (!c.out.empty()) {
            const ssize_t sent = send(c.fd, c.out.data(), c.out.size(), MSG_NOSIGNAL);
            if (sent > 0) { c.out.erase(0, static_cast<std::size_t>(sent)); continue; }
            if (sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
            if (sent < 0 && errno == EINTR) continue;
            close_conn(c.fd);
            return false;
        }
        epoll_event mod{};
        mod.events = EPOLLIN | (c.out.empty() ? 0u : static_cast<unsigned>(EPOLLOUT));
        mod.data.fd = c.fd;
        epoll_ctl(ep, EPOLL_CTL_MOD, c.fd, &mod);
        if (c.out.empty() && c.close_after) {
            close_conn(c.fd);
            return false;
        }
        return true;
    };

    while (!stop_requested) {
        const int n = epoll_wait(ep, events, 256, 1000);
        if (n < 0) {
            if (errno == EINTR) continue;
            std::perror("epoll_wait");
            return 1;
        }
        for (int i = 0; i < n; ++i) {
            const int fd = events[i].data.fd;
            if (fd == listener) {
                for (;;) {
                    const int client = accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (client < 0) break;
                    const int one = 1;
                    setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    auto c = std::make_unique<connection>();
                    c->fd = client;
                    epoll_event add{};
                    add.events = EPOLLIN;
                    add.data.fd = client;
                    epoll_ctl(ep, EPOLL_CTL_ADD, client, &add);
                    conns.emplace(client, std::move(c));
                    ++stats.connections;
                }
                continue;
            }
            auto it = conns.find(fd);
            if (it == conns.end()) continue;
            connection& c = *it->second;
            if (events[i].events & EPOLLOUT) {
                if (!flush_out(c)) continue;
            }
            if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                bool alive = true, eof = false;
                for (;;) {
                    const ssize_t got = recv(fd, buffer, sizeof buffer, 0);
                    if (got > 0) {
                        if (!consume(c, buffer, static_cast<std::size_t>(got))) { c.close_after = true; break; }
                        if (static_cast<std::size_t>(got) < sizeof buffer) break;
                        continue;
                    }
                    if (got == 0) { eof = true; break; }
                    if (errno == EINTR) continue;
                    if (errno != EAGAIN && errno != EWOULDBLOCK) eof = true;
                    break;
                }
                if (eof) { close_conn(fd); alive = false; }
                if (alive) flush_out(c);
            }
        }
    }
    std::fprintf(stderr, "%s\n", stats_json().c_str());
    return 0;
}
