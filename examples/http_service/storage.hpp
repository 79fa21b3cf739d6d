#pragma once
// Where assets and tiles live: a directory (the default) or an S3 / R2 bucket. Both go through
// tilekit's own sinks and job sources, so uploads and jobs use the same storage layer.

#include <tilekit/source.hpp>
#include <tilekit/sink.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <unistd.h>

namespace tilekit_service {

struct service_config;

struct stored_object {
    std::vector<std::uint8_t> body;
    std::string content_type;
};

// An object to send as it is stored: an open descriptor of its file (filesystem storage: sent
// with sendfile, never read into memory), or else its bytes.
struct object_to_send {
    object_to_send() = default;
    object_to_send(object_to_send&& other) noexcept
        : fd(std::exchange(other.fd, -1)), size(other.size), body(std::move(other.body)), content_type(std::move(other.content_type)) {}
    object_to_send(const object_to_send&) = delete;
    object_to_send& operator=(const object_to_send&) = delete;
    object_to_send& operator=(object_to_send&&) = delete;
    ~object_to_send() {
        if (fd >= 0) ::close(fd);
    }
    int release_fd() { return std::exchange(fd, -1); }

    int fd = -1;  // owned; -1: the bytes are in `body`
    std::uint64_t size = 0;
    std::vector<std::uint8_t> body;
    std::string content_type;
};

class storage {
public:
    virtual ~storage() = default;
    virtual std::string describe() const = 0;
    // Stores one object and waits until it is stored.
    virtual void put(tilekit::storage_object object) = 0;
    // Stores the file at `path` (an upload in the scratch directory) as `key`, without reading it
    // into memory: a rename on the filesystem, the mapped file's pages on S3. The file is gone
    // afterwards.
    virtual void put_file(const std::string& key, const std::string& path, const std::string& content_type) = 0;
    // A fresh sink for one job (each job flushes its own).
    virtual std::unique_ptr<tilekit::storage_sink> make_sink() = 0;
    virtual tilekit::image_source& source() = 0;
    // Reads an object back for /tiles/; nullopt when it does not exist.
    virtual std::optional<stored_object> get(const std::string& key) = 0;
    // The same, to send as a response body (/tiles/): see object_to_send.
    virtual std::optional<object_to_send> open(const std::string& key) = 0;
};

std::unique_ptr<storage> make_storage(const service_config& config);

// The Content-Type for a key or file name, by its extension. `stored` (objects in storage:
// tiles, manifests, uploads): image/png, image/jpeg, application/json, application/xml
// (.dzi/.xml). `viewer` (the viewer's own files under /static/) adds .html, .js/.mjs, .css,
// .svg, .map, .woff2 and .ico. Anything else: application/octet-stream.
enum class content_types { stored, viewer };
std::string content_type_for(const std::string& name, content_types set = content_types::stored);
// Anything under a run prefix (".../runs/{job}.{attempt}/"): immutable, a year; a version's
// pointer: a few seconds; other tiles: tilekit's tile rule ("public, max-age=86400"); other
// manifests: "no-cache".
std::string cache_control_for(const std::string& key);

}  // namespace tilekit_service
