#pragma once
// Writes each object to root/key. Every file is written to a temporary name in the same
// directory and then renamed over the target, so a reader (or a crash) never sees a truncated
// object. Keys are validated first: nothing can be written outside the root. Files are not
// fsync'ed (a pyramid is thousands of files); durability across power loss is the filesystem's.

#include <tilekit/error.hpp>
#include <tilekit/key.hpp>
#include <tilekit/sink.hpp>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <random>
#include <string>
#include <system_error>
#include <unordered_set>

TILEKIT_NAMESPACE_BEGIN

class filesystem_sink final : public storage_sink {
public:
    explicit filesystem_sink(std::filesystem::path root) : root_(std::move(root)) {
        std::error_code ec;
        std::filesystem::create_directories(root_, ec);
        if (ec) throw error(errc::io_error, "cannot create directory '" + root_.string() + "': " + ec.message());
    }

    const std::filesystem::path& root() const noexcept { return root_; }

    void put(storage_object object) override {
        validate_key(object.key);
        const std::filesystem::path target = root_ / object.key;
        ensure_directory(target.parent_path());
        const std::filesystem::path temporary =
            target.parent_path() /
            ("." + target.filename().string() + ".tmp-" + instance_tag_ + "-" + std::to_string(next_temp_id_++));
        write_file(temporary, object);
        std::error_code ec;
        std::filesystem::rename(temporary, target, ec);
        if (ec) {
            std::filesystem::remove(temporary, ec);
            throw error(errc::io_error, "cannot store '" + object.key + "': rename failed: " + ec.message());
        }
    }

    // Writes are synchronous, so there is nothing left to wait for.
    void flush() override {}

    // Removes an object; true when it existed.
    bool remove(const std::string& key) override {
        validate_key(key);
        std::error_code ec;
        const bool removed = std::filesystem::remove(root_ / key, ec);
        if (ec) throw error(errc::io_error, "cannot remove '" + key + "': " + ec.message());
        return removed;
    }

private:
    void ensure_directory(const std::filesystem::path& directory) {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (known_directories_.count(directory.string())) return;
        }
        std::error_code ec;
        std::filesystem::create_directories(directory, ec);
        if (ec) throw error(errc::io_error, "cannot create directory '" + directory.string() + "': " + ec.message());
        std::lock_guard<std::mutex> lock(mutex_);
        known_directories_.insert(directory.string());
    }

    static void write_file(const std::filesystem::path& path, const storage_object& object) {
        std::FILE* file = std::fopen(path.c_str(), "wb");
        if (!file)
            throw error(errc::io_error, "cannot store '" + object.key + "': " + std::strerror(errno));
        const std::size_t written = object.body.empty() ? 0 : std::fwrite(object.body.data(), 1, object.body.size(), file);
        const int write_errno = errno;
        const bool closed = std::fclose(file) == 0;
        if (written != object.body.size() || !closed) {
            std::error_code ignored;
            std::filesystem::remove(path, ignored);
            throw error(errc::io_error, "cannot store '" + object.key + "': " + std::strerror(write_errno));
        }
    }

    std::filesystem::path root_;
    std::mutex mutex_;
    std::unordered_set<std::string> known_directories_;
    // Temporary names carry a random tag per sink, so two processes writing into the same
    // directory never share a temporary file.
    std::string instance_tag_ = [] {
        std::random_device random;
        return std::to_string(random()) + std::to_string(random());
    }();
    std::atomic<unsigned long long> next_temp_id_{0};
};

TILEKIT_NAMESPACE_END
