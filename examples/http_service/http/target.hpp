#pragma once
// The request-target, taken apart strictly: the path split on '/' and each segment
// percent-decoded on its own (so "%2F" is a character of a segment, never a separator, and a key
// can never gain a directory level through encoding), the query into decoded name/value pairs.
// Anything malformed (bad hex, NUL or another control character once decoded, a target that is not
// origin-form) is refused whole: the caller answers 400.

#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace tilekit_service::http {

namespace detail {

inline int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// Percent-decoding of one component; `plus_is_space` for the query (form encoding).
inline std::optional<std::string> percent_decode(const std::string& in, bool plus_is_space) {
    std::string out;
    out.reserve(in.size());
    for (std::size_t i = 0; i < in.size(); ++i) {
        char c = in[i];
        if (c == '%') {
            if (i + 2 >= in.size()) return std::nullopt;
            const int hi = hex_value(in[i + 1]), lo = hex_value(in[i + 2]);
            if (hi < 0 || lo < 0) return std::nullopt;
            c = static_cast<char>(hi * 16 + lo);
            i += 2;
        } else if (c == '+' && plus_is_space) {
            c = ' ';
        }
        // No control characters in a decoded component: they have no business in a key or a
        // parameter, and they would forge lines in a log.
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return std::nullopt;
        out.push_back(c);
    }
    return out;
}

}  // namespace detail

struct parsed_target {
    std::vector<std::string> segments;
    std::multimap<std::string, std::string> query;
};

// "/a/b%20c/?x=1&y" -> segments {"a", "b c", ""}, query {x: "1", y: ""}. nullopt when malformed.
inline std::optional<parsed_target> parse_target(const std::string& target) {
    if (target.empty() || target[0] != '/') return std::nullopt;  // origin-form only
    for (const char c : target)
        if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f || c == '#') return std::nullopt;
    parsed_target out;
    const std::size_t question = target.find('?');
    const std::string path = target.substr(1, question == std::string::npos ? std::string::npos : question - 1);
    std::size_t start = 0;
    for (;;) {
        const std::size_t slash = path.find('/', start);
        const auto segment = detail::percent_decode(path.substr(start, slash == std::string::npos ? std::string::npos : slash - start), false);
        if (!segment) return std::nullopt;
        out.segments.push_back(*segment);
        if (slash == std::string::npos) break;
        start = slash + 1;
    }
    if (out.segments.size() == 1 && out.segments[0].empty()) out.segments.clear();  // "/"
    if (question != std::string::npos) {
        const std::string query = target.substr(question + 1);
        std::size_t at = 0;
        while (at <= query.size()) {
            const std::size_t amp = query.find('&', at);
            const std::string pair = query.substr(at, amp == std::string::npos ? std::string::npos : amp - at);
            if (!pair.empty()) {
                const std::size_t eq = pair.find('=');
                const auto name = detail::percent_decode(pair.substr(0, eq), true);
                const auto value = detail::percent_decode(eq == std::string::npos ? std::string() : pair.substr(eq + 1), true);
                if (!name || !value) return std::nullopt;
                out.query.emplace(*name, *value);
            }
            if (amp == std::string::npos) break;
            at = amp + 1;
        }
    }
    return out;
}

}  // namespace tilekit_service::http
