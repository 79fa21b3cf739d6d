#pragma once
// Thin RAII around libcurl: one-time global init, easy handles, header lists, and a response
// collector shared by the blocking client and the concurrent sink.

#if !__has_include(<curl/curl.h>)
#error "tilekit/s3 needs libcurl (Debian: libcurl4-openssl-dev)"
#endif

#include <tilekit/error.hpp>
#include <tilekit/progress.hpp>
#include <tilekit/s3/sigv4.hpp>

#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>

TILEKIT_NAMESPACE_BEGIN
namespace detail {

inline void curl_global() {
    static std::once_flag once;
    std::call_once(once, [] {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
            throw error(errc::storage_error, "libcurl failed to initialise");
    });
}

struct easy_deleter {
    void operator()(CURL* easy) const noexcept { curl_easy_cleanup(easy); }
};
using easy_handle = std::unique_ptr<CURL, easy_deleter>;

inline easy_handle make_easy() {
    curl_global();
    easy_handle easy(curl_easy_init());
    if (!easy) throw error(errc::storage_error, "libcurl: cannot create a handle");
    return easy;
}

struct slist_deleter {
    void operator()(curl_slist* list) const noexcept { curl_slist_free_all(list); }
};
using header_slist = std::unique_ptr<curl_slist, slist_deleter>;

inline header_slist make_slist(const s3::header_list& headers) {
    curl_slist* list = nullptr;
    for (const auto& [name, value] : headers) {
        check_header(name, value);  // every request, signed or not, passes here
        // "Name:" removes a header curl adds by itself (Expect: 100-continue); "Name;" sends an
        // empty value, so a signed empty header really goes on the wire.
        const std::string line = value.empty() ? (is_unsigned_header(name) ? name + ":" : name + ";") : name + ": " + value;
        curl_slist* grown = curl_slist_append(list, line.c_str());
        if (!grown) {
            curl_slist_free_all(list);
            throw std::bad_alloc();
        }
        list = grown;
    }
    return header_slist(list);
}

// What a transfer brought back. The body goes to memory (bounded) or to a file.
struct s3_response {
    long status = 0;
    CURLcode curl_code = CURLE_OK;
    char curl_message[CURL_ERROR_SIZE] = {0};
    std::string body;
    std::string date;         // the server's Date header
    std::string retry_after;  // Retry-After, seconds
    std::string etag;
    std::string content_type;
    std::uint64_t max_body = 1 << 20;  // bytes kept in memory
    bool body_too_large = false;
    std::FILE* file = nullptr;  // when set, a 2xx body goes here instead of `body`
    CURL* easy = nullptr;       // needed to tell a 2xx body from an error document
    std::uint64_t received = 0;
    std::uint64_t content_length = 0;  // from the Content-Length header (HEAD)
    const cancel_token* cancel = nullptr;  // when set, watched during the transfer (a download)
    bool cancelled = false;                 // the transfer stopped because `cancel` was cancelled

    void reset() {
        status = 0;
        curl_code = CURLE_OK;
        curl_message[0] = '\0';
        body.clear();
        date.clear();
        retry_after.clear();
        etag.clear();
        content_type.clear();
        body_too_large = false;
        received = 0;
        content_length = 0;
        cancelled = false;
    }
};

// curl's progress callback, called several times a second even while no byte arrives: a
// non-zero return stops the transfer (CURLE_ABORTED_BY_CALLBACK).
inline int on_curl_progress(void* context, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
    auto* r = static_cast<s3_response*>(context);
    if (r->cancel && r->cancel->is_cancelled()) {
        r->cancelled = true;
        return 1;
    }
    return 0;
}

inline std::size_t on_curl_body(char* data, std::size_t size, std::size_t count, void* context) {
    auto* r = static_cast<s3_response*>(context);
    const std::size_t bytes = size * count;
    r->received += bytes;
    if (r->received > r->max_body) {
        r->body_too_large = true;
        return 0;  // aborts the transfer with CURLE_WRITE_ERROR
    }
    if (r->file && r->easy) {
        long status = 0;
        curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
        // Only a successful body goes to the file; an error document goes to memory.
        if (status >= 200 && status < 300) return std::fwrite(data, 1, bytes, r->file) == bytes ? bytes : 0;
    }
    r->body.append(data, bytes);
    return bytes;
}

inline std::string trim_header_value(std::string text) {
    while (!text.empty() && (text.back() == '\r' || text.back() == '\n' || text.back() == ' ')) text.pop_back();
    std::size_t start = 0;
    while (start < text.size() && text[start] == ' ') ++start;
    return text.substr(start);
}

inline std::size_t on_curl_header(char* data, std::size_t size, std::size_t count, void* context) {
    auto* r = static_cast<s3_response*>(context);
    const std::size_t bytes = size * count;
    const std::string line(data, bytes);
    const std::size_t colon = line.find(':');
    if (colon != std::string::npos) {
        std::string name = line.substr(0, colon);
        for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        const std::string value = trim_header_value(line.substr(colon + 1));
        if (name == "date") r->date = value;
        else if (name == "retry-after") r->retry_after = value;
        else if (name == "etag") r->etag = value;
        else if (name == "content-type") r->content_type = value;
    } else if (line.rfind("HTTP/", 0) == 0) {
        r->date.clear();  // a new response (after a redirect or 100-continue)
        r->retry_after.clear();
    }
    return bytes;
}

// Upload source for PUT bodies.
struct upload_cursor {
    const std::uint8_t* data = nullptr;
    std::size_t size = 0;
    std::size_t offset = 0;
};

inline std::size_t on_curl_read(char* buffer, std::size_t size, std::size_t count, void* context) {
    auto* cursor = static_cast<upload_cursor*>(context);
    const std::size_t n = std::min(size * count, cursor->size - cursor->offset);
    if (n) std::memcpy(buffer, cursor->data + cursor->offset, n);
    cursor->offset += n;
    return n;
}

inline int on_curl_seek(void* context, curl_off_t offset, int origin) {
    auto* cursor = static_cast<upload_cursor*>(context);
    if (origin != SEEK_SET || offset < 0 || static_cast<std::size_t>(offset) > cursor->size) return CURL_SEEKFUNC_CANTSEEK;
    cursor->offset = static_cast<std::size_t>(offset);
    return CURL_SEEKFUNC_OK;
}

}  // namespace detail
TILEKIT_NAMESPACE_END
