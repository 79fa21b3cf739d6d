#pragma once
// Routes: a method and a path pattern over the decoded segments ("/projects/{slug}/jobs";
// "{*rest}" as the last segment takes the remaining segments joined by '/', none of which may
// hold an encoded '/'), mapped to handlers
// that see the service's request and response. 404 for no path, 405 (with Allow) for another
// method. A POST route says what it checks before any byte of its body is read (the token, the
// path, the query) and how large a body it takes; the server enforces that limit while reading.

#include "message.hpp"

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace tilekit_service::http {

// The request as a handler sees it: the request, and the pattern's captures in order.
struct route_request {
    request& r;
    std::vector<std::string> captures;

    const std::string& capture(std::size_t i) const { return captures.at(i); }
    bool has_param(const std::string& name) const { return r.query.count(name) != 0; }
    std::string param(const std::string& name) const { return r.param(name).value_or(""); }
    std::string header(const std::string& lower_name) const { return r.header(lower_name).value_or(""); }
};

using handler = std::function<void(const route_request&, response&)>;
// A streamed body's destination, made from the header alone; null after writing the answer (no
// body is read then). It checks what a precheck would, and keeps what it found for finish().
using sink_factory = std::function<std::shared_ptr<body_sink>(const route_request&, response&)>;
// Runs on the header alone; false after writing the answer (no body is read then).
using precheck = std::function<bool(const route_request&, response&)>;

class router {
public:
    void get(const std::string& pattern, handler h) { add("GET", pattern, nullptr, 0, std::move(h)); }
    // A POST: `before` on the header (may be null), then the body (at most `body_limit` bytes,
    // buffered in request::body), then `h`.
    void post(const std::string& pattern, precheck before, std::uint64_t body_limit, handler h) {
        add("POST", pattern, std::move(before), body_limit, std::move(h));
    }
    // A POST whose body goes to a sink piece by piece as it arrives (an upload), never whole into
    // memory; the sink's finish() answers.
    void post_stream(const std::string& pattern, std::uint64_t body_limit, sink_factory make) {
        add("POST", pattern, nullptr, body_limit, nullptr);
        routes_.back().make_sink = std::move(make);
    }

    // What the server does with a request whose header is in.
    admission admit(request& r) const {
        admission out;
        std::vector<std::string> allowed;
        for (const route& candidate : routes_) {
            std::vector<std::string> captures;
            if (!match(candidate.pattern, r.segments, captures)) continue;
            const bool same = candidate.method == r.method || (candidate.method == "GET" && r.method == "HEAD");
            if (!same) {
                allowed.push_back(candidate.method);
                continue;
            }
            // The route_request refers to `r`, which outlives the whole exchange (the session owns it).
            response early;
            if (candidate.before && !candidate.before(route_request{r, captures}, early)) {
                out.answer = std::move(early);
                return out;
            }
            if (candidate.method == "POST" && candidate.make_sink) {
                out.sink = candidate.make_sink(route_request{r, captures}, early);
                if (!out.sink) out.answer = std::move(early);
                out.body_limit = candidate.body_limit;
                return out;
            }
            if (candidate.method == "POST") {
                out.body_limit = candidate.body_limit;
                const handler h = candidate.h;
                out.complete = [h, captures](request& full) {
                    response res;
                    h(route_request{full, captures}, res);
                    return res;
                };
                return out;
            }
            response res;
            candidate.h(route_request{r, captures}, res);
            out.answer = std::move(res);
            return out;
        }
        response res;
        if (allowed.empty()) {
            res.status = 404;
            res.set("content-type", "application/json");
            res.body = "{\"detail\":\"Not found\"}";
        } else {
            std::string allow;
            for (const std::string& m : allowed) allow += (allow.empty() ? "" : ", ") + m;
            res.status = 405;
            res.set("allow", allow);
            res.set("content-type", "application/json");
            res.body = "{\"detail\":\"Method not allowed\"}";
        }
        out.answer = std::move(res);
        return out;
    }

private:
    struct route {
        std::string method;
        std::vector<std::string> pattern;
        precheck before;
        std::uint64_t body_limit = 0;
        handler h;
        sink_factory make_sink;
    };

    void add(std::string method, const std::string& pattern, precheck before, std::uint64_t body_limit, handler h) {
        route r{std::move(method), split(pattern), std::move(before), body_limit, std::move(h), {}};
        routes_.push_back(std::move(r));
    }

    static std::vector<std::string> split(const std::string& pattern) {
        std::vector<std::string> out;
        std::size_t start = 1;
        while (start <= pattern.size()) {
            const std::size_t slash = pattern.find('/', start);
            out.push_back(pattern.substr(start, slash == std::string::npos ? std::string::npos : slash - start));
            if (slash == std::string::npos) break;
            start = slash + 1;
        }
        if (out.size() == 1 && out[0].empty()) out.clear();
        return out;
    }

    static bool match(const std::vector<std::string>& pattern, const std::vector<std::string>& segments,
                      std::vector<std::string>& captures) {
        for (std::size_t i = 0; i < pattern.size(); ++i) {
            const std::string& p = pattern[i];
            if (p.rfind("{*", 0) == 0) {  // the rest, at least one segment
                if (i >= segments.size()) return false;
                std::string rest;
                for (std::size_t j = i; j < segments.size(); ++j) {
                    // A segment with an encoded '/' ("%2F") would gain a level once joined: no match.
                    if (segments[j].find('/') != std::string::npos) return false;
                    rest += (j > i ? "/" : "") + segments[j];
                }
                captures.push_back(rest);
                return true;
            }
            if (i >= segments.size()) return false;
            if (!p.empty() && p.front() == '{') {
                if (segments[i].empty()) return false;
                captures.push_back(segments[i]);
            } else if (p != segments[i]) {
                return false;
            }
        }
        return pattern.size() == segments.size();
    }

    std::vector<route> routes_;
};

}  // namespace tilekit_service::http
