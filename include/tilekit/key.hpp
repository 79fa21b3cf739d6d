#pragma once
// Storage keys are relative paths made of '/'-separated segments. Anything that could escape a
// directory or mean different things to different stores is refused up front.

#include <tilekit/error.hpp>

#include <string>
#include <string_view>

TILEKIT_NAMESPACE_BEGIN

// Empty string when the key is acceptable, otherwise why it is not.
inline std::string key_problem(std::string_view key) {
    if (key.empty()) return "key is empty";
    if (key.size() > 1024) return "key is longer than 1024 bytes";
    if (key.front() == '/') return "key is absolute";
    for (const char ch : key) {
        if (ch == '\0') return "key contains a NUL byte";
        if (ch == '\\') return "key contains a backslash";
        if (static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f) return "key contains a control character";
    }
    std::size_t start = 0;
    while (start <= key.size()) {
        std::size_t end = key.find('/', start);
        if (end == std::string_view::npos) end = key.size();
        const std::string_view segment = key.substr(start, end - start);
        if (segment.empty()) return "key has an empty path segment";
        if (segment == "..") return "key contains a '..' segment";
        if (segment == ".") return "key contains a '.' segment";
        start = end + 1;
    }
    return {};
}

// Throws tilekit::error(errc::invalid_key) naming the key and the problem.
inline void validate_key(std::string_view key) {
    const std::string problem = key_problem(key);
    if (!problem.empty()) {
        std::string shown;
        for (const char ch : key.substr(0, 200)) shown += (static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f) ? '?' : ch;
        throw error(errc::invalid_key, "invalid storage key '" + shown + "': " + problem);
    }
}

// The content type of the objects a pyramid consists of, and of its source images, by the key's
// extension (case-sensitive, as tilekit writes them); "application/octet-stream" otherwise.
inline const char* content_type_for_key(std::string_view key) noexcept {
    struct by_extension {
        std::string_view extension;
        const char* type;
    };
    static constexpr by_extension table[] = {
        {".png", "image/png"},        {".jpg", "image/jpeg"},      {".jpeg", "image/jpeg"},
        {".json", "application/json"}, {".dzi", "application/xml"}, {".xml", "application/xml"},
        {".webp", "image/webp"},
    };
    for (const by_extension& row : table)
        if (key.size() >= row.extension.size() && key.substr(key.size() - row.extension.size()) == row.extension)
            return row.type;
    return "application/octet-stream";
}

TILEKIT_NAMESPACE_END
