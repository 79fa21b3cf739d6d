#pragma once
// Writes each object to root/key, and never anywhere else. Keys are validated first, and every
// directory below the root is opened relative to its parent's descriptor with O_NOFOLLOW, so a
// symbolic link inside the root (to a directory, a file, or nowhere) is refused instead of
// followed, and a link swapped in after the check cannot redirect a write either: the sink only
// uses descriptors it opened itself. Each file is written to a short temporary name in its
// directory and renamed over the target, so a reader (or a crash) never sees a truncated object.
// Files are not fsync'ed (a pyramid is thousands of files); durability across power loss is the
// filesystem's. POSIX only (openat, mkdirat, renameat, unlinkat).
//
// Conditional writes (put_if) are a compare-and-swap under an exclusive fcntl() lock on one lock
// file per directory (".tk-cas-lock.tmp", never listed, never deleted: deleting a lock file that
// another writer has open would let two writers hold "the" lock). Under the lock the writer reads
// the key's current content, compares its tag with the expected one, and only then renames its
// temporary file over the key. Why this is safe:
//  - every put_if on a key takes the same lock, so read-compare-rename is one step for them all;
//  - the lock is an open-file-description lock (F_OFD_SETLKW) where Linux has it, so two threads
//    of one process exclude each other too, and closing another descriptor of the file does not
//    drop it (the trap of classic POSIX locks); elsewhere a classic lock plus a process mutex;
//  - fcntl() locks die with their process, so a crashed writer leaves no stale lock to break;
//  - on a shared volume (NFSv3 with lockd, NFSv4) fcntl() locks are taken on the server and two
//    hosts agree on them (flock() is not, on some systems, which is why it is not used);
//  - readers take no lock: rename() replaces the file atomically, so they see old or new;
//  - the tag is a hash of the content, not an inode number or mtime, so every host computes the
//    same tag. Equal content gives equal tags (like S3's ETag), which only means "the same state".
// A plain put() on the key bypasses the lock; the publish protocol never mixes the two.

#include <tilekit/error.hpp>
#include <tilekit/key.hpp>
#include <tilekit/sink.hpp>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

TILEKIT_NAMESPACE_BEGIN
namespace detail {

// An owned file descriptor.
class unique_fd {
public:
    unique_fd() = default;
    explicit unique_fd(int fd) noexcept : fd_(fd) {}
    unique_fd(unique_fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
    unique_fd& operator=(unique_fd&& other) noexcept {
        if (this != &other) {
            reset();
            fd_ = std::exchange(other.fd_, -1);
        }
        return *this;
    }
    unique_fd(const unique_fd&) = delete;
    unique_fd& operator=(const unique_fd&) = delete;
    ~unique_fd() { reset(); }
    int get() const noexcept { return fd_; }
    explicit operator bool() const noexcept { return fd_ >= 0; }
    void reset() noexcept {
        if (fd_ >= 0) ::close(fd_);
        fd_ = -1;
    }
    int release() noexcept { return std::exchange(fd_, -1); }

private:
    int fd_ = -1;
};

// NAME_MAX of common filesystems (ext4, xfs, btrfs, tmpfs): longer segments cannot be stored.
constexpr std::size_t max_name_bytes = 255;

}  // namespace detail

class filesystem_sink final : public storage_sink {
public:
    explicit filesystem_sink(std::filesystem::path root) : root_(std::move(root)) {
        std::error_code ec;
        std::filesystem::create_directories(root_, ec);
        if (ec) throw error(errc::io_error, "cannot create directory '" + root_.string() + "': " + ec.message());
        // The root itself is the caller's choice and may be reached through links; below it, nothing is.
        root_fd_ = detail::unique_fd(::open(root_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        if (!root_fd_) throw error(errc::io_error, "cannot open directory '" + root_.string() + "': " + std::strerror(errno));
    }

    const std::filesystem::path& root() const noexcept { return root_; }

    void put(storage_object object) override {
        const split_key parts = split(object.key);
        const std::shared_ptr<detail::unique_fd> directory = open_directory("store", object.key, parts.directories, true);
        // Short, fixed-length temporary names: a key segment may use all of NAME_MAX.
        const std::string temporary = ".tk" + instance_tag_ + std::to_string(next_temp_id_++) + ".tmp";
        write_file(directory->get(), temporary, object);
        if (::renameat(directory->get(), temporary.c_str(), directory->get(), parts.name.c_str()) != 0) {
            const int failure = errno;
            ::unlinkat(directory->get(), temporary.c_str(), 0);
            throw error(errc::io_error, "cannot store '" + object.key + "': rename failed: " + describe(failure));
        }
    }

    // Stores the file at `file` as the object `key`, moving it (the file is gone afterwards). A
    // rename when both are on one filesystem, so a large upload is never read back into memory;
    // otherwise a copy, in 1 MiB pieces, to a temporary name, renamed when complete.
    void put_file(const std::string& key, const std::filesystem::path& file) {
        const split_key parts = split(key);
        const std::shared_ptr<detail::unique_fd> directory = open_directory("store", key, parts.directories, true);
        if (::renameat(AT_FDCWD, file.c_str(), directory->get(), parts.name.c_str()) == 0) return;
        if (errno != EXDEV) throw error(errc::io_error, "cannot store '" + key + "': rename failed: " + describe(errno));
        detail::unique_fd in(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
        if (!in) throw error(errc::io_error, "cannot store '" + key + "': cannot open '" + file.string() + "': " + std::strerror(errno));
        const std::string temporary = ".tk" + instance_tag_ + std::to_string(next_temp_id_++) + ".tmp";
        detail::unique_fd out(::openat(directory->get(), temporary.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666));
        if (!out) throw error(errc::io_error, "cannot store '" + key + "': " + describe(errno));
        std::vector<char> buffer(std::size_t{1} << 20);
        for (;;) {
            ssize_t n = ::read(in.get(), buffer.data(), buffer.size());
            if (n < 0 && errno == EINTR) continue;
            if (n == 0) break;
            for (ssize_t written = 0; n > 0 && written < n;) {
                const ssize_t w = ::write(out.get(), buffer.data() + written, static_cast<std::size_t>(n - written));
                if (w < 0 && errno == EINTR) continue;
                if (w <= 0) n = -1;
                else written += w;
            }
            if (n < 0) {
                const int failure = errno ? errno : EIO;
                out.reset();
                ::unlinkat(directory->get(), temporary.c_str(), 0);
                throw error(errc::io_error, "cannot store '" + key + "': " + std::strerror(failure));
            }
        }
        const int closed = ::close(out.release());
        if (closed != 0 || ::renameat(directory->get(), temporary.c_str(), directory->get(), parts.name.c_str()) != 0) {
            const int failure = errno;
            ::unlinkat(directory->get(), temporary.c_str(), 0);
            throw error(errc::io_error, "cannot store '" + key + "': " + describe(failure));
        }
        ::unlink(file.c_str());
    }

    // The object's file opened for reading (its descriptor, for sendfile or ranged reads), found
    // as writes find it: never through a link below the root. An empty descriptor when there is
    // no such object; a link in its place or on its path counts as none.
    detail::unique_fd open(const std::string& key) {
        const split_key parts = split(key);
        std::shared_ptr<detail::unique_fd> directory;
        try {
            directory = open_directory("read", key, parts.directories, false);
        } catch (const error&) {
            return {};  // a link or a file where a directory should be
        }
        if (!directory) return {};
        detail::unique_fd file(::openat(directory->get(), parts.name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
        struct stat status {};
        if (!file || ::fstat(file.get(), &status) != 0 || !S_ISREG(status.st_mode)) return {};
        return file;
    }

    // Writes are synchronous, so there is nothing left to wait for.
    void flush() override {}

    // Removes an object; true when it existed. A symbolic link in its place is removed itself,
    // never what it points to.
    bool remove(const std::string& key) override {
        const split_key parts = split(key);
        const std::shared_ptr<detail::unique_fd> directory = open_directory("remove", key, parts.directories, false);
        if (!directory) return false;
        if (::unlinkat(directory->get(), parts.name.c_str(), 0) == 0) return true;
        if (errno == ENOENT) return false;
        throw error(errc::io_error, "cannot remove '" + key + "': " + describe(errno));
    }

    // Listing walks the directories below the prefix's own, opened as writes open them (relative
    // to their parent, never through a link). Symbolic links and other non-files are not objects
    // and are not listed; neither are this or another sink's temporary files (".tk*.tmp"), nor
    // names that are not valid keys. The keys are gathered first, so `on_key` may call remove().
    bool can_list() const override { return true; }
    void list(const std::string& prefix, const std::function<void(const std::string& key)>& on_key) override {
        const std::size_t slash = prefix.rfind('/');
        const std::string base = slash == std::string::npos ? std::string() : prefix.substr(0, slash + 1);
        std::vector<std::string> segments;
        if (!base.empty()) {
            segments = split(base + "_").directories;  // validates the segments
        }
        // The prefix's directory, opened as writes open theirs. Missing, a file, or a link on the
        // way: no object of this sink can be there, so there is nothing to list.
        detail::unique_fd start(::openat(root_fd_.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        int failure = start ? 0 : errno;
        for (std::size_t i = 0; i < segments.size() && start; ++i) {
            const int next = ::openat(start.get(), segments[i].c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            failure = next < 0 ? errno : 0;
            start = detail::unique_fd(next);
        }
        if (!start) {
            if (failure == ENOENT || failure == ENOTDIR || failure == ELOOP) return;
            throw error(errc::io_error, "cannot list '" + prefix + "': " + std::strerror(failure));
        }
        std::vector<std::string> keys;
        struct pending {
            detail::unique_fd directory;
            std::string key_prefix;
        };
        std::vector<pending> stack;
        stack.push_back({std::move(start), base});
        while (!stack.empty()) {
            pending current = std::move(stack.back());
            stack.pop_back();
            if (!current.directory) throw error(errc::io_error, "cannot list '" + prefix + "': " + std::strerror(errno));
            DIR* stream = ::fdopendir(current.directory.get());
            if (!stream) throw error(errc::io_error, "cannot list '" + current.key_prefix + "': " + std::strerror(errno));
            const int fd = current.directory.release();
            struct closer {
                DIR* stream;
                ~closer() { ::closedir(stream); }
            } close_stream{stream};
            while (const dirent* entry = ::readdir(stream)) {
                const std::string name = entry->d_name;
                if (name == "." || name == ".." || is_temporary(name)) continue;
                const std::string key = current.key_prefix + name;
                struct stat status {};
                if (::fstatat(fd, name.c_str(), &status, AT_SYMLINK_NOFOLLOW) != 0) continue;  // gone meanwhile
                if (S_ISDIR(status.st_mode)) {
                    // Only directories that can hold a matching key ("a/b/" for prefix "a/b/c" or "a/").
                    const std::string directory = key + "/";
                    if (!starts_with(directory, prefix) && !starts_with(prefix, directory)) continue;
                    detail::unique_fd child(::openat(fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
                    if (child) stack.push_back({std::move(child), directory});
                } else if (S_ISREG(status.st_mode) && starts_with(key, prefix) && key_problem(key).empty()) {
                    keys.push_back(key);
                }
            }
        }
        for (const std::string& key : keys) on_key(key);
    }

    bool can_compare_and_put() const override { return true; }

    std::optional<versioned_object> read(const std::string& key) override {
        const split_key parts = split(key);
        const std::shared_ptr<detail::unique_fd> directory = open_directory("read", key, parts.directories, false);
        if (!directory) return std::nullopt;
        std::optional<std::vector<std::uint8_t>> body = read_file(directory->get(), parts.name, key);
        if (!body) return std::nullopt;
        versioned_object found;
        found.version = content_tag(*body);
        found.object.key = key;
        found.object.body = std::move(*body);
        return found;
    }

    conditional_put_result put_if(storage_object object, const std::string& expected_version) override {
        const split_key parts = split(object.key);
        const std::shared_ptr<detail::unique_fd> directory = open_directory("store", object.key, parts.directories, true);
        detail::unique_fd lock(::openat(directory->get(), ".tk-cas-lock.tmp", O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0666));
        if (!lock) throw error(errc::io_error, "cannot store '" + object.key + "': cannot open its lock file: " + describe(errno));
#ifdef F_OFD_SETLKW
        const int lock_command = F_OFD_SETLKW;
#else
        const int lock_command = F_SETLKW;
        std::lock_guard<std::mutex> in_process(cas_mutex_);
#endif
        struct flock whole {};
        whole.l_type = F_WRLCK;
        whole.l_whence = SEEK_SET;
        while (::fcntl(lock.get(), lock_command, &whole) != 0) {
            if (errno != EINTR) throw error(errc::io_error, "cannot lock '" + object.key + "': " + std::strerror(errno));
        }
        // Held until `lock` is closed (on every path out of here).
        const std::optional<std::vector<std::uint8_t>> current = read_file(directory->get(), parts.name, object.key);
        const std::string current_version = current ? content_tag(*current) : std::string();
        if (current_version != expected_version) return {false, current_version};
        const std::string version = content_tag(object.body);
        const std::string temporary = ".tk" + instance_tag_ + std::to_string(next_temp_id_++) + ".tmp";
        write_file(directory->get(), temporary, object);
        if (::renameat(directory->get(), temporary.c_str(), directory->get(), parts.name.c_str()) != 0) {
            const int failure = errno;
            ::unlinkat(directory->get(), temporary.c_str(), 0);
            throw error(errc::io_error, "cannot store '" + object.key + "': rename failed: " + describe(failure));
        }
        return {true, version};
    }

private:
    // "fs-<size>-<FNV-1a 64>": the same on every host that reads the same bytes.
    static std::string content_tag(const std::vector<std::uint8_t>& body) {
        std::uint64_t hash = 1469598103934665603ull;
        for (const std::uint8_t byte : body) {
            hash ^= byte;
            hash *= 1099511628211ull;
        }
        char text[64];
        std::snprintf(text, sizeof text, "fs-%zu-%016llx", body.size(), static_cast<unsigned long long>(hash));
        return text;
    }

    // A regular file's bytes, or nothing when there is no such file.
    static std::optional<std::vector<std::uint8_t>> read_file(int directory, const std::string& name, const std::string& key) {
        detail::unique_fd file(::openat(directory, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
        if (!file) {
            if (errno == ENOENT) return std::nullopt;
            throw error(errc::io_error, "cannot read '" + key + "': " + describe(errno));
        }
        std::vector<std::uint8_t> body;
        std::uint8_t buffer[65536];
        for (;;) {
            const ssize_t n = ::read(file.get(), buffer, sizeof buffer);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) throw error(errc::io_error, "cannot read '" + key + "': " + std::strerror(errno));
            if (n == 0) break;
            body.insert(body.end(), buffer, buffer + n);
        }
        return body;
    }

    static bool starts_with(const std::string& text, const std::string& start) {
        return text.size() >= start.size() && text.compare(0, start.size(), start) == 0;
    }
    static bool is_temporary(const std::string& name) {
        return name.size() > 7 && name.compare(0, 3, ".tk") == 0 && name.compare(name.size() - 4, 4, ".tmp") == 0;
    }

    struct split_key {
        std::vector<std::string> directories;
        std::string name;
    };

    static split_key split(const std::string& key) {
        validate_key(key);
        split_key parts;
        std::size_t start = 0;
        for (std::size_t slash = key.find('/'); slash != std::string::npos; slash = key.find('/', start)) {
            parts.directories.push_back(key.substr(start, slash - start));
            start = slash + 1;
        }
        parts.name = key.substr(start);
        const auto check_length = [&](const std::string& segment) {
            if (segment.size() > detail::max_name_bytes)
                throw error(errc::invalid_key, "invalid storage key '" + key.substr(0, 200) + "...': a segment is " +
                                                   std::to_string(segment.size()) +
                                                   " bytes, more than a file name can hold (255)");
        };
        for (const std::string& directory : parts.directories) check_length(directory);
        check_length(parts.name);
        return parts;
    }

    static std::string describe(int failure) {
        if (failure == ELOOP || failure == ENOTDIR)
            return "a part of its path is a symbolic link or not a directory (the sink never follows links below its root)";
        return std::strerror(failure);
    }

    // The directory of a key, opened segment by segment below the root without following links;
    // created when `create`, else null when it does not exist. Cached, so a pyramid's thousands
    // of tiles walk each directory once.
    std::shared_ptr<detail::unique_fd> open_directory(const char* verb, const std::string& key,
                                                      const std::vector<std::string>& segments, bool create) {
        const std::string failed = std::string("cannot ") + verb + " '" + key + "': ";
        std::string relative;
        for (const std::string& segment : segments) relative += segment + "/";
        {
            std::lock_guard<std::mutex> lock(mutex_);
            const auto found = directories_.find(relative);
            if (found != directories_.end()) {
                // A cached directory that was deleted since (someone emptied the output folder
                // mid-run) would take writes that nobody can see: walk the path again instead.
                struct stat status {};
                if (::fstat(found->second->get(), &status) == 0 && status.st_nlink > 0) return found->second;
                directories_.erase(found);
            }
        }
        int parent = root_fd_.get();
        detail::unique_fd current;
        for (const std::string& segment : segments) {
            detail::unique_fd next(::openat(parent, segment.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
            if (!next && errno == ENOENT) {
                if (!create) return nullptr;
                if (::mkdirat(parent, segment.c_str(), 0777) != 0 && errno != EEXIST)
                    throw error(errc::io_error, failed + "cannot create directory '" + segment + "': " + describe(errno));
                next = detail::unique_fd(::openat(parent, segment.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
            }
            if (!next) throw error(errc::io_error, failed + describe(errno));
            current = std::move(next);
            parent = current.get();
        }
        auto directory = std::make_shared<detail::unique_fd>(current ? std::move(current)
                                                                     : detail::unique_fd(::dup(root_fd_.get())));
        if (!*directory) throw error(errc::io_error, failed + std::strerror(errno));
        std::lock_guard<std::mutex> lock(mutex_);
        // Bounded: a sink writing into very many directories keeps at most this many open.
        if (directories_.size() >= 512) directories_.clear();
        return directories_.emplace(relative, std::move(directory)).first->second;
    }

    static void write_file(int directory, const std::string& name, const storage_object& object) {
        // O_EXCL | O_NOFOLLOW: never write through something that already sits at the name.
        detail::unique_fd file(::openat(directory, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666));
        if (!file) throw error(errc::io_error, "cannot store '" + object.key + "': " + describe(errno));
        std::size_t written = 0;
        while (written < object.body.size()) {
            const ssize_t n = ::write(file.get(), object.body.data() + written, object.body.size() - written);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) {
                const int failure = n < 0 ? errno : EIO;
                file.reset();
                ::unlinkat(directory, name.c_str(), 0);
                throw error(errc::io_error, "cannot store '" + object.key + "': " + std::strerror(failure));
            }
            written += static_cast<std::size_t>(n);
        }
        if (::close(file.release()) != 0) {  // close() can report a delayed write error
            const int failure = errno;
            ::unlinkat(directory, name.c_str(), 0);
            throw error(errc::io_error, "cannot store '" + object.key + "': " + std::strerror(failure));
        }
    }

    std::filesystem::path root_;
    detail::unique_fd root_fd_;
    std::mutex mutex_;
    std::map<std::string, std::shared_ptr<detail::unique_fd>> directories_;
    // Temporary names carry a random tag per sink, so two processes writing into the same
    // directory never share a temporary file (O_EXCL would refuse it anyway).
    std::string instance_tag_ = [] {
        std::random_device random;
        char tag[16];
        std::snprintf(tag, sizeof tag, "%08x", static_cast<unsigned>(random()));
        return std::string(tag) + "-";
    }();
    std::atomic<unsigned long long> next_temp_id_{0};
#ifndef F_OFD_SETLKW
    std::mutex cas_mutex_;
#endif
};

TILEKIT_NAMESPACE_END
