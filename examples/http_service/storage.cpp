#include "storage.hpp"

#include "config.hpp"

#include <tilekit/jobs/run_pointer.hpp>
#include <tilekit/key.hpp>
#include <tilekit/s3.hpp>
#include <tilekit/sinks/filesystem_sink.hpp>
#include <tilekit/tiler.hpp>

#include <cerrno>
#include <cstring>
#include <functional>

#include <fcntl.h>
#include <sys/mman.h>
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
    void put_file(const std::string& key, const std::string& path, const std::string&) override {
        sink_.put_file(key, path);  // the content type follows from the key's extension here
    }
    // Reads go through the sink too, so a symbolic link below the root is never followed: the
    // sink never writes one, and one placed there is not an object.
    std::optional<stored_object> get(const std::string& key) override {
        tilekit::validate_key(key);  // throws for "..", absolute paths, empty segments
        auto found = sink_.read(key);
        if (!found) return std::nullopt;
        return stored_object{std::move(found->object.body), content_type_for(key)};
    }
    std::optional<object_to_send> open(const std::string& key) override {
        tilekit::validate_key(key);
        tilekit::detail::unique_fd file = sink_.open(key);
        struct stat status {};
        if (!file || ::fstat(file.get(), &status) != 0) return std::nullopt;
        object_to_send out;
        out.fd = file.release();
        out.size = static_cast<std::uint64_t>(status.st_size);
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
    // The file is mapped, not read: its pages come from the page cache as the request sends them
    // (one PUT: S3 takes up to 5 GiB that way; the service's upload limit is far below).
    void put_file(const std::string& key, const std::string& path, const std::string& content_type) override {
        tilekit::detail::unique_fd file(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
        struct stat status {};
        if (!file || ::fstat(file.get(), &status) != 0)
            throw tilekit::error(tilekit::errc::io_error, "cannot read the upload '" + path + "': " + std::strerror(errno));
        const std::size_t size = static_cast<std::size_t>(status.st_size);
        void* mapped = size ? ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, file.get(), 0) : nullptr;
        if (mapped == MAP_FAILED)
            throw tilekit::error(tilekit::errc::io_error, "cannot map the upload '" + path + "': " + std::strerror(errno));
        const std::unique_ptr<void, std::function<void(void*)>> unmap(mapped, [size](void* at) {
            if (at) ::munmap(at, size);
        });
        tilekit::s3::put_options options;
        options.content_type = content_type;
        client_.put(key, static_cast<const std::uint8_t*>(mapped), size, options);
        ::unlink(path.c_str());
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
    std::optional<object_to_send> open(const std::string& key) override {
        auto found = get(key);
        if (!found) return std::nullopt;
        object_to_send out;
        out.size = found->body.size();
        out.body = std::move(found->body);
        out.content_type = std::move(found->content_type);
        return out;
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
