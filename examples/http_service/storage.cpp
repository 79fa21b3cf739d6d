#include "storage.hpp"

#include "config.hpp"

#include <tilekit/jobs/run_pointer.hpp>
#include <tilekit/key.hpp>
#include <tilekit/s3.hpp>
#include <tilekit/sinks/filesystem_sink.hpp>
#include <tilekit/tiler.hpp>

#include <cerrno>
#include <fstream>
#include <iterator>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace tilekit_service {

namespace {

bool ends_with(const std::string& text, const char* suffix) {
    const std::string s(suffix);
    return text.size() >= s.size() && text.compare(text.size() - s.size(), s.size(), s) == 0;
}

class filesystem_storage final : public storage {
public:
    explicit filesystem_storage(const std::string& root) : root_(root), sink_(root), source_(root) {}
    std::string describe() const override { return "filesystem " + root_; }
    void put(tilekit::storage_object object) override {
        sink_.put(std::move(object));
        sink_.flush();
    }
    std::unique_ptr<tilekit::storage_sink> make_sink() override { return std::make_unique<tilekit::filesystem_sink>(root_); }
    tilekit::image_source& source() override { return source_; }
    std::optional<stored_object> get(const std::string& key) override {
        tilekit::validate_key(key);  // throws for "..", absolute paths, empty segments
        // The sink never writes a symbolic link, so one under the root was put there by someone
        // else (and could point anywhere: /etc, another user's pyramid). Each segment is opened
        // with O_NOFOLLOW relative to the one before, so no link is followed, nor can one be
        // swapped in between a check and the open.
        int dir = ::open(root_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);  // the root itself may be a link
        if (dir < 0) return std::nullopt;
        std::size_t at = 0;
        for (;;) {
            const std::size_t slash = key.find('/', at);
            const bool last = slash == std::string::npos;
            const std::string segment = key.substr(at, last ? std::string::npos : slash - at);
            const int next = ::openat(dir, segment.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | (last ? O_NONBLOCK : O_DIRECTORY));
            ::close(dir);
            if (next < 0) return std::nullopt;  // missing, or a link (ELOOP / ENOTDIR); O_NONBLOCK: a FIFO cannot stall us
            dir = next;
            if (last) break;
            at = slash + 1;
        }
        const int fd = dir;
        struct stat st {};
        if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
            ::close(fd);
            return std::nullopt;
        }
        stored_object out;
        out.body.resize(static_cast<std::size_t>(st.st_size));
        std::size_t got = 0;
        while (got < out.body.size()) {
            const ssize_t n = ::read(fd, out.body.data() + got, out.body.size() - got);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) break;
            got += static_cast<std::size_t>(n);
        }
        ::close(fd);
        out.body.resize(got);
        out.content_type = content_type_for(key);
        return out;
    }

private:
    std::string root_;
    tilekit::filesystem_sink sink_;
    tilekit::filesystem_source source_;
};

class s3_storage final : public storage {
public:
    explicit s3_storage(const std::string& bucket)
        : config_(tilekit::s3::config_from_environment(bucket)), client_(config_), source_(client_) {}
    std::string describe() const override { return "s3 bucket " + config_.bucket + " at " + config_.target.host; }
    void put(tilekit::storage_object object) override {
        tilekit::s3::put_options options;
        options.content_type = object.content_type;
        options.cache_control = object.cache_control;
        client_.put(object.key, object.body, options);
    }
    std::unique_ptr<tilekit::storage_sink> make_sink() override { return std::make_unique<tilekit::s3::s3_sink>(config_); }
    tilekit::image_source& source() override { return source_; }
    std::optional<stored_object> get(const std::string& key) override {
        tilekit::validate_key(key);
        try {
            stored_object out;
            out.body = client_.get(key, std::uint64_t{64} << 20);
            out.content_type = content_type_for(key);
            return out;
        } catch (const tilekit::s3::s3_error& e) {
            if (e.http_status() == 404) return std::nullopt;
            throw;
        }
    }

private:
    tilekit::s3::config config_;
    tilekit::s3::client client_;
    tilekit::s3::object_source source_;
};

}  // namespace

std::unique_ptr<storage> make_storage(const service_config& config) {
    if (!config.s3_bucket.empty()) return std::make_unique<s3_storage>(config.s3_bucket);
    return std::make_unique<filesystem_storage>(config.storage_root);
}

std::string content_type_for(const std::string& name, content_types set) {
    struct by_extension {
        const char* extension;
        const char* type;
    };
    static const by_extension viewer_files[] = {
        {".html", "text/html; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".mjs", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".svg", "image/svg+xml"},
        {".map", "application/json"},
        {".woff2", "font/woff2"},
        {".ico", "image/x-icon"},
    };
    if (set == content_types::viewer)
        for (const by_extension& row : viewer_files)
            if (ends_with(name, row.extension)) return row.type;
    return tilekit::content_type_for_key(name);  // what pyramids and uploads consist of
}

std::string cache_control_for(const std::string& key) {
    // Everything under a run prefix is immutable (jobs/run_pointer.hpp); the pointer is not.
    if (key.find("/runs/") != std::string::npos) return tilekit::jobs::immutable_cache_control;
    if (ends_with(key, tilekit::jobs::pointer_name)) return tilekit::jobs::pointer_cache_control;
    static const tilekit::tile_options rules;
    if (ends_with(key, ".png") || ends_with(key, ".jpg") || ends_with(key, ".jpeg") || ends_with(key, ".webp"))
        return rules.tile_cache_control;
    return rules.manifest_cache_control;
}

}  // namespace tilekit_service
