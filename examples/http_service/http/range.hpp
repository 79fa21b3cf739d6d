#pragma once
// One byte range per request (RFC 9110 §14.2). Several ranges are refused with 416 rather than
// served as multipart: a list of 4,000 overlapping ranges over one small tile turned an 8 KB
// request into a 788 MB answer. Viewers (OpenSeadragon, the PMTiles readers) ask for one.

#include <cstdint>
#include <optional>
#include <string>

namespace tilekit_service::http {

struct byte_range {
    std::uint64_t first = 0;
    std::uint64_t length = 0;
};

enum class range_verdict {
    whole,          // no Range header, or one this server ignores (another unit): 200 with everything
    part,           // 206 with `range`
    unsatisfiable,  // 416 with Content-Range: bytes */size (several ranges, or none inside the file)
};

struct range_decision {
    range_verdict verdict = range_verdict::whole;
    byte_range range;
};

namespace detail {

inline std::optional<std::uint64_t> parse_digits(const std::string& text) {
    if (text.empty() || text.size() > 19) return std::nullopt;
    std::uint64_t value = 0;
    for (const char c : text) {
        if (c < '0' || c > '9') return std::nullopt;
        value = value * 10 + static_cast<std::uint64_t>(c - '0');
    }
    return value;
}

}  // namespace detail

// `header`: the Range header's value, if any; `size`: the file's size.
inline range_decision decide_range(const std::optional<std::string>& header, std::uint64_t size) {
    range_decision d;
    if (!header) return d;
    const std::string& h = *header;
    const std::string unit = "bytes=";
    if (h.compare(0, unit.size(), unit) != 0) return d;  // another unit: ignored (RFC 9110 §14.2)
    std::string spec = h.substr(unit.size());
    while (!spec.empty() && (spec.back() == ' ' || spec.back() == '\t')) spec.pop_back();
    d.verdict = range_verdict::unsatisfiable;
    if (spec.find(',') != std::string::npos) return d;  // one range only
    const std::size_t dash = spec.find('-');
    if (dash == std::string::npos) return d;
    const std::string a = spec.substr(0, dash), b = spec.substr(dash + 1);
    if (a.empty()) {  // suffix: the last N bytes
        const auto n = detail::parse_digits(b);
        if (!n || *n == 0 || size == 0) return d;
        d.range.length = *n < size ? *n : size;
        d.range.first = size - d.range.length;
    } else {
        const auto first = detail::parse_digits(a);
        if (!first || *first >= size) return d;
        std::uint64_t last = size - 1;
        if (!b.empty()) {
            const auto l = detail::parse_digits(b);
            if (!l || *l < *first) return d;
            last = *l < size - 1 ? *l : size - 1;
        }
        d.range.first = *first;
        d.range.length = last - *first + 1;
    }
    d.verdict = range_verdict::part;
    return d;
}

}  // namespace tilekit_service::http
