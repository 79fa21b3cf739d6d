#include "storage.hpp"

#include "config.hpp"

#include <tilekit/jobs/run_pointer.hpp>
#include <tilekit/key.hpp>
#include <tilekit/s3.hpp>
#include <tilekit/sinks/filesystem_sink.hpp>
#include <tilekit/tiler.hpp>

#include <fstream>
#include <iterator>

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
        const std::filesystem::path path = std::filesystem::path(root_) / key;
        std::error_code ec;
        if (!std::filesystem::is_regular_file(path, ec)) return std::nullopt;
        std::ifstream in(path, std::ios::binary);
        if (!in) return std::nullopt;
        stored_object out;
        out.body.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
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
