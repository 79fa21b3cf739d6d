#pragma once
// Where a streaming decoder reads its file from: an open file or bytes in memory, with the name
// errors show ("'map.png'" or "image").

#include <tilekit/error.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>

TILEKIT_NAMESPACE_BEGIN
namespace detail {

struct file_closer {
    void operator()(std::FILE* file) const noexcept { std::fclose(file); }
};
using file_handle = std::unique_ptr<std::FILE, file_closer>;

inline file_handle open_for_reading(const std::string& path) {
    file_handle file(std::fopen(path.c_str(), "rb"));
    if (!file) throw error(errc::io_error, "cannot open '" + path + "': " + std::strerror(errno));
    // fopen succeeds on a directory on Linux, and the first read then looks like an empty file.
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec))
        throw error(errc::io_error, "cannot read '" + path + "': it is a directory");
    return file;
}

class encoded_input {
public:
    static encoded_input file(const std::string& path) {
        encoded_input input;
        input.file_ = open_for_reading(path);
        input.label_ = "'" + path + "': ";
        return input;
    }

    static encoded_input memory(const std::uint8_t* data, std::size_t size) {
        encoded_input input;
        input.data_ = data;
        input.size_ = size;
        return input;
    }

    std::FILE* stream() const noexcept { return file_.get(); }
    const std::uint8_t* data() const noexcept { return data_; }
    std::size_t size() const noexcept { return size_; }
    // Prefix for error messages: "'path': " for files, empty for memory.
    const std::string& label() const noexcept { return label_; }

    // Up to `size` bytes; fewer only at the end of the input.
    std::size_t read(std::uint8_t* out, std::size_t size) {
        if (file_) return std::fread(out, 1, size, file_.get());
        const std::size_t n = std::min(size, size_ - position_);
        if (n) std::memcpy(out, data_ + position_, n);
        position_ += n;
        return n;
    }

    bool at_end() const {
        if (file_) return std::feof(file_.get()) != 0;
        return position_ >= size_;
    }

private:
    file_handle file_;
    const std::uint8_t* data_ = nullptr;
    std::size_t size_ = 0;
    std::size_t position_ = 0;
    std::string label_;
};

}  // namespace detail
TILEKIT_NAMESPACE_END
