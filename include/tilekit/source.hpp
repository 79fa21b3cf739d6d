#pragma once
// The image-source contract, the read-side twin of storage_sink: it makes the image behind a
// storage key available as a local file (for the streaming decoders), refusing anything over a
// size limit. Files it creates live in the scratch directory the caller gives it, and the caller
// removes them. The S3 part adds s3::object_source and s3::presigned_url_source.

#include <tilekit/error.hpp>
#include <tilekit/key.hpp>
#include <tilekit/progress.hpp>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <map>
#include <mutex>
#include <string>
#include <vector>

TILEKIT_NAMESPACE_BEGIN

class image_source {
public:
    virtual ~image_source() = default;
    // The path of a local file holding the image at `key`; throws tilekit::error (not_found,
    // image_too_large, access_denied, storage_error, ...) with a message a user can act on.
    virtual std::string fetch(const std::string& key, const std::filesystem::path& scratch_dir,
                              std::uint64_t max_bytes) = 0;
    // The same, for a caller that may be cancelled meanwhile (a job): throws cancelled_error once
    // `cancel` is cancelled. This default checks before and after fetch(); a source whose
    // transfer can be stopped part-way overrides it to watch the token during the transfer too.
    virtual std::string fetch_cancellable(const std::string& key, const std::filesystem::path& scratch_dir,
                                          std::uint64_t max_bytes, const cancel_token& cancel) {
        if (cancel.is_cancelled()) throw cancelled_error();
        std::string path = fetch(key, scratch_dir, max_bytes);
        if (cancel.is_cancelled()) throw cancelled_error();
        return path;
    }
};

namespace detail {

inline void refuse_oversized(const std::string& key, std::uint64_t size, std::uint64_t max_bytes) {
    refuse_over_limit("source image '" + key + "'", size, max_bytes, "bytes");
}

}  // namespace detail

// Images under a root directory, read in place (nothing is copied).
class filesystem_source final : public image_source {
public:
    explicit filesystem_source(std::filesystem::path root) : root_(std::move(root)) {}

    std::string fetch(const std::string& key, const std::filesystem::path&, std::uint64_t max_bytes) override {
        validate_key(key);
        const std::filesystem::path path = root_ / key;
        std::error_code ec;
        const auto size = std::filesystem::file_size(path, ec);
        if (ec) throw error(errc::not_found, "source image '" + key + "' not found");
        detail::refuse_oversized(key, size, max_bytes);
        return path.string();
    }

private:
    std::filesystem::path root_;
};

// Images held in memory (tests, embedding); written to the scratch directory when fetched.
class memory_source final : public image_source {
public:
    void add(const std::string& key, std::vector<std::uint8_t> bytes) {
        validate_key(key);
        std::lock_guard<std::mutex> lock(mutex_);
        objects_[key] = std::move(bytes);
    }

    std::string fetch(const std::string& key, const std::filesystem::path& scratch_dir, std::uint64_t max_bytes) override {
        std::vector<std::uint8_t> bytes;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            const auto found = objects_.find(key);
            if (found == objects_.end()) throw error(errc::not_found, "source image '" + key + "' not found");
            bytes = found->second;
        }
        detail::refuse_oversized(key, bytes.size(), max_bytes);
        const std::filesystem::path path = scratch_dir / "source";
        std::FILE* file = std::fopen(path.c_str(), "wb");
        const bool ok = file && std::fwrite(bytes.data(), 1, bytes.size(), file) == bytes.size();
        if (file && std::fclose(file) != 0) throw error(errc::io_error, "cannot write '" + path.string() + "'");
        if (!ok) throw error(errc::io_error, "cannot write '" + path.string() + "'");
        return path.string();
    }

private:
    std::mutex mutex_;
    std::map<std::string, std::vector<std::uint8_t>> objects_;
};

TILEKIT_NAMESPACE_END
