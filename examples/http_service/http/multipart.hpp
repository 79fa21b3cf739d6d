#pragma once
// The first file of a multipart/form-data body (RFC 7578), which is how an HTML form or
// `curl -F file=@map.png` uploads: its bytes and its filename. Only what an upload needs: the
// boundary from Content-Type, the first part's Content-Disposition filename, its content up to
// the next delimiter. Anything else malformed is refused (nullopt: the caller answers 400).

#include <optional>
#include <string>

namespace tilekit_service::http {

struct form_file {
    std::string bytes;
    std::string filename;
};

// The boundary of a multipart/form-data Content-Type, or nullopt for another type.
inline std::optional<std::string> multipart_boundary(const std::string& content_type) {
    std::string lowered;
    for (const char c : content_type) lowered.push_back(static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c));
    if (lowered.rfind("multipart/form-data", 0) != 0) return std::nullopt;
    const std::size_t at = lowered.find("boundary=");
    if (at == std::string::npos) return std::nullopt;
    std::string boundary = content_type.substr(at + 9);
    const std::size_t end = boundary.find(';');
    if (end != std::string::npos) boundary.resize(end);
    if (boundary.size() >= 2 && boundary.front() == '"' && boundary.back() == '"') boundary = boundary.substr(1, boundary.size() - 2);
    if (boundary.empty() || boundary.size() > 70) return std::nullopt;
    return boundary;
}

inline std::optional<form_file> first_form_file(const std::string& body, const std::string& boundary) {
    const std::string delimiter = "--" + boundary;
    if (body.compare(0, delimiter.size(), delimiter) != 0) return std::nullopt;
    std::size_t at = delimiter.size();
    if (body.compare(at, 2, "\r\n") != 0) return std::nullopt;
    at += 2;
    const std::size_t headers_end = body.find("\r\n\r\n", at);
    if (headers_end == std::string::npos) return std::nullopt;
    form_file out;
    const std::string headers = body.substr(at, headers_end - at);
    const std::size_t name = headers.find("filename=\"");
    if (name != std::string::npos) {
        const std::size_t close = headers.find('"', name + 10);
        if (close == std::string::npos) return std::nullopt;
        out.filename = headers.substr(name + 10, close - name - 10);
    }
    const std::size_t content = headers_end + 4;
    const std::size_t next = body.find("\r\n" + delimiter, content);
    if (next == std::string::npos) return std::nullopt;
    out.bytes = body.substr(content, next - content);
    return out;
}

}  // namespace tilekit_service::http
