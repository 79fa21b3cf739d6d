#pragma once
// The side-effect log: the independent record of what the queue's handlers really ran. Every
// line is one JSON object written with a single write() to a file opened with O_APPEND, so the
// lines of several processes (and threads) never interleave and a SIGKILL loses at most the line
// being written. The test driver reads it instead of trusting the job store.

#include <nlohmann/json.hpp>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <string>

#include <fcntl.h>
#include <unistd.h>

namespace queue_tool {

class side_effect_log {
public:
    explicit side_effect_log(const std::string& path)
        : fd_(::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644)) {
        if (fd_ < 0) throw std::runtime_error("cannot open side-effect log '" + path + "': " + std::strerror(errno));
    }
    side_effect_log(const side_effect_log&) = delete;
    side_effect_log& operator=(const side_effect_log&) = delete;
    ~side_effect_log() { ::close(fd_); }

    // Adds the event name, this process's pid and both clocks, then appends the line. CLOCK_MONOTONIC
    // (steady_clock on Linux) is shared by every process on the host, so the driver compares these
    // with its own time.monotonic().
    void write(const std::string& event, nlohmann::json fields = nlohmann::json::object()) const {
        fields["event"] = event;
        fields["pid"] = static_cast<long>(::getpid());
        fields["mono_ns"] = std::chrono::duration_cast<std::chrono::nanoseconds>(
                                std::chrono::steady_clock::now().time_since_epoch())
                                .count();
        fields["real_ms"] = std::chrono::duration_cast<std::chrono::milliseconds>(
                                std::chrono::system_clock::now().time_since_epoch())
                                .count();
        const std::string line = fields.dump() + "\n";
        // One write() per line; a short write to a regular file means a full disk: say so loudly.
        const ssize_t written = ::write(fd_, line.data(), line.size());
        if (written != static_cast<ssize_t>(line.size()))
            throw std::runtime_error(std::string("side-effect log: short write: ") + std::strerror(errno));
    }

private:
    int fd_;
};

}  // namespace queue_tool
