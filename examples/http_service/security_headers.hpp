#pragma once
// Headers every answer of the service carries, added once where main.cpp hands the router's
// decision to the server (so the router's own 404/405 get them too). The server's early
// refusals (400, 408, 413, 503 before a route is chosen) come from http/server.cpp and do not
// pass here.

#include "http/message.hpp"

#include <memory>
#include <utility>

namespace tilekit_service {

inline void add_security_headers(http::response& response) {
    // No content sniffing: a tile or an upload answered as image/png is never run as HTML or
    // script, whatever its bytes.
    response.set("x-content-type-options", "nosniff");
}

// A sink whose answer gets the headers too (streamed uploads answer from finish()).
class security_headers_sink final : public http::body_sink {
public:
    explicit security_headers_sink(std::shared_ptr<http::body_sink> inner) : inner_(std::move(inner)) {}
    bool write(const char* data, std::size_t size) override { return inner_->write(data, size); }
    http::response finish(http::request& r) override {
        http::response res = inner_->finish(r);
        add_security_headers(res);
        return res;
    }

private:
    std::shared_ptr<http::body_sink> inner_;
};

inline http::admission with_security_headers(http::admission a) {
    if (a.answer) add_security_headers(*a.answer);
    if (a.sink) a.sink = std::make_shared<security_headers_sink>(std::move(a.sink));
    if (a.complete)
        a.complete = [complete = std::move(a.complete)](http::request& r) {
            http::response res = complete(r);
            add_security_headers(res);
            return res;
        };
    return a;
}

}  // namespace tilekit_service
