#pragma once
// The service's own request and response, independent of the HTTP library under them (Boost.Beast:
// http/server.cpp). Handlers see only these, so the library's heavy headers stay in one file.

#include <unistd.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace tilekit_service::http {

// Header fields as received (names lower-cased; values byte for byte: never percent-decoded).
using fields = std::vector<std::pair<std::string, std::string>>;

struct request {
    std::string method;                          // "GET", "POST", ...
    std::string target;                          // the request-target as sent (for the access log: escaped there)
    std::vector<std::string> segments;           // the path, split on '/' and percent-decoded per segment
    std::multimap<std::string, std::string> query;  // the query, percent-decoded ('+' is a space)
    fields headers;
    std::string remote_address;
    std::string body;                            // a buffered body (JSON); empty for streamed uploads

    // The first value of a header (name in lower case), if present.
    std::optional<std::string> header(const std::string& lower_name) const {
        for (const auto& f : headers)
            if (f.first == lower_name) return f.second;
        return std::nullopt;
    }
    std::optional<std::string> param(const std::string& name) const {
        const auto it = query.find(name);
        if (it == query.end()) return std::nullopt;
        return it->second;
    }
};

// A part of a file, sent from its descriptor without passing through a buffer of ours (sendfile).
struct file_part {
    int fd = -1;                  // owned: closed when the response is sent or dropped
    std::uint64_t offset = 0;
    std::uint64_t length = 0;

    file_part() = default;
    file_part(int descriptor, std::uint64_t from, std::uint64_t bytes) : fd(descriptor), offset(from), length(bytes) {}
    file_part(const file_part&) = delete;
    file_part& operator=(const file_part&) = delete;
    ~file_part() {
        if (fd >= 0) ::close(fd);
    }
};

struct response {
    int status = 200;
    fields headers;
    std::string body;
    std::shared_ptr<file_part> file;  // when set, the body is this part of a file (body is unused)
    bool close = false;               // the last answer on this connection

    void set(const std::string& name, std::string value) {
        for (auto& f : headers)
            if (f.first == name) {
                f.second = std::move(value);
                return;
            }
        headers.emplace_back(name, std::move(value));
    }
};

// Where a streamed body goes (an upload to a temporary file): write() for each piece as it
// arrives (false: stop reading, the answer is already decided), finish() once it is complete.
class body_sink {
public:
    virtual ~body_sink() = default;
    virtual bool write(const char* data, std::size_t size) = 0;
    virtual response finish(request& r) = 0;
};

// What a route decides from the header alone, before any byte of a body is read.
struct admission {
    // Answer now (an error, or a GET): no body is read. A body the client sends anyway is read
    // and dropped up to a bound (a lingering close), so that it sees this answer.
    std::optional<response> answer;
    // Else: the body is buffered into request::body up to `body_limit` bytes, or given to `sink`
    // piece by piece, and then `complete` (buffered) or sink->finish (streamed) answers.
    std::uint64_t body_limit = 0;
    std::shared_ptr<body_sink> sink;
    std::function<response(request&)> complete;
};

// The service: admit() runs once the header is read and checked; both it and whatever it returns
// run on the handler pool, never on the I/O threads (they may block on the catalog, the queue or
// S3).
using admit_function = std::function<admission(request&)>;

}  // namespace tilekit_service::http
