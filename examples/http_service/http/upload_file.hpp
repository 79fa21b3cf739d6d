#pragma once
// An upload written to a temporary file as it arrives, never held in memory: the raw body, or the
// first file of a multipart/form-data body, found on the fly (a delimiter may straddle two pieces,
// so the last bytes of each piece are held back until the next one shows they are not one).
// The first bytes are kept (`head()`) so that the caller can tell the format at once and refuse
// the rest of a body that is not an image before it has all arrived.

#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>

#include <fcntl.h>
#include <unistd.h>

namespace tilekit_service::http {

class upload_file {
public:
    // `dir`: where the temporary file goes; `boundary`: the multipart boundary, if the body is a form.
    upload_file(const std::string& dir, std::optional<std::string> boundary) : boundary_(std::move(boundary)) {
        std::string pattern = dir + "/upload-XXXXXX";
        fd_ = ::mkstemp(pattern.data());
        if (fd_ >= 0) path_ = pattern;
        if (boundary_) delimiter_ = "\r\n--" + *boundary_;
        state_ = boundary_ ? state::preamble : state::content;
    }
    ~upload_file() {
        if (fd_ >= 0) ::close(fd_);
        if (!path_.empty() && !kept_) ::unlink(path_.c_str());
    }
    upload_file(const upload_file&) = delete;
    upload_file& operator=(const upload_file&) = delete;

    bool ok() const { return fd_ >= 0 && !failed_; }
    // False once the body is malformed or the file cannot be written.
    bool write(const char* data, std::size_t size) {
        if (!ok()) return false;
        if (state_ == state::content && !boundary_) return store(data, size);
        pending_.append(data, size);
        return advance();
    }
    // After the last piece: whether the file holds a complete upload.
    bool finish() {
        if (!ok()) return false;
        if (boundary_) return state_ == state::done;
        return true;
    }
    static constexpr std::size_t head_bytes = 64 * 1024;
    const std::string& head() const { return head_; }  // the first bytes of the file (up to head_bytes)
    const std::string& filename() const { return filename_; }
    std::uint64_t size() const { return size_; }
    const std::string& path() const { return path_; }
    void keep() { kept_ = true; }  // the caller moved or deleted the file

private:
    enum class state { preamble, part_headers, content, done };

    bool store(const char* data, std::size_t size) {
        if (head_.size() < head_bytes) head_.append(data, std::min<std::size_t>(size, head_bytes - head_.size()));
        size_ += size;
        while (size > 0) {
            const ssize_t n = ::write(fd_, data, size);
            if (n <= 0) {
                failed_ = true;
                return false;
            }
            data += n;
            size -= static_cast<std::size_t>(n);
        }
        return true;
    }

    bool advance() {
        for (;;) {
            if (state_ == state::preamble) {  // "--boundary\r\n" first (a preamble is not allowed here)
                const std::string first = "--" + *boundary_ + "\r\n";
                if (pending_.size() < first.size()) return pending_.size() < 1024;
                if (pending_.compare(0, first.size(), first) != 0) return fail();
                pending_.erase(0, first.size());
                state_ = state::part_headers;
            } else if (state_ == state::part_headers) {
                const std::size_t end = pending_.find("\r\n\r\n");
                if (end == std::string::npos) return pending_.size() <= 8192 || fail();  // bounded headers
                const std::string headers = pending_.substr(0, end);
                const std::size_t name = headers.find("filename=\"");
                if (name != std::string::npos) {
                    const std::size_t close = headers.find('"', name + 10);
                    if (close == std::string::npos) return fail();
                    filename_ = headers.substr(name + 10, close - name - 10);
                }
                pending_.erase(0, end + 4);
                state_ = state::content;
            } else if (state_ == state::content) {
                const std::size_t at = pending_.find(delimiter_);
                if (at != std::string::npos) {
                    if (!store(pending_.data(), at)) return false;
                    pending_.clear();
                    state_ = state::done;  // the rest (other parts, the epilogue) is not kept
                    return true;
                }
                // Keep back what could be the start of a delimiter; store the rest.
                if (pending_.size() > delimiter_.size()) {
                    const std::size_t safe = pending_.size() - delimiter_.size();
                    if (!store(pending_.data(), safe)) return false;
                    pending_.erase(0, safe);
                }
                return true;
            } else {
                pending_.clear();
                return true;
            }
        }
    }

    bool fail() {
        failed_ = true;
        return false;
    }

    std::optional<std::string> boundary_;
    std::string delimiter_, pending_, head_, filename_, path_;
    state state_ = state::content;
    int fd_ = -1;
    std::uint64_t size_ = 0;
    bool failed_ = false, kept_ = false;
};

}  // namespace tilekit_service::http
