#pragma once
// The job record: what a service shows its users about a background job (queued, running with
// a percentage and a message, completed with a result, failed with the reason), and its JSON.

#include <tilekit/error.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <optional>
#include <string>

#if __has_include(<sys/random.h>)
#include <sys/random.h>
#include <sys/types.h>
#endif

TILEKIT_NAMESPACE_BEGIN
namespace jobs {

enum class job_status { queued, running, completed, failed, cancelled };

inline const char* to_string(job_status status) noexcept {
    switch (status) {
        case job_status::queued: return "queued";
        case job_status::running: return "running";
        case job_status::completed: return "completed";
        case job_status::failed: return "failed";
        case job_status::cancelled: return "cancelled";
    }
    return "unknown";
}

inline job_status parse_job_status(const std::string& text) {
    for (job_status s : {job_status::queued, job_status::running, job_status::completed, job_status::failed,
                         job_status::cancelled})
        if (text == to_string(s)) return s;
    throw error(errc::invalid_argument, "unknown job status '" + text + "'");
}

inline bool is_terminal(job_status status) noexcept {
    return status == job_status::completed || status == job_status::failed || status == job_status::cancelled;
}

inline const char* const tile_generation_job = "tile_generation";

struct job_record {
    std::string id;                    // random UUID v4
    std::string job_type = tile_generation_job;
    job_status status = job_status::queued;
    int progress = 0;                  // 0..100, never decreases
    std::string message;
    nlohmann::json result;             // null until completed
    std::string error;                 // set when failed or cancelled
    std::string project_id;
    std::string version_id;
    std::string created_by;
    std::string created_at;            // UTC, ISO 8601 ("2026-11-28T23:07:16.123Z")
    std::optional<std::string> started_at;
    std::optional<std::string> completed_at;
};

// Thrown for a state change the state machine forbids (completing a failed job, progress over
// 100, ...): errc::illegal_transition; and for a second active job of a project version:
// errc::duplicate_job.
class job_state_error : public error {
public:
    explicit job_state_error(const std::string& message, errc code = errc::illegal_transition) : error(code, message) {}
};

// Thrown when a job id does not exist.
class job_not_found : public error {
public:
    explicit job_not_found(const std::string& id) : error(errc::not_found, "job '" + id + "' not found") {}
};

}  // namespace jobs
namespace detail {

// 16 bytes from the kernel's CSPRNG (getrandom, else /dev/urandom).
inline void random_bytes(unsigned char* out, std::size_t size) {
#if __has_include(<sys/random.h>)
    std::size_t got = 0;
    while (got < size) {
        const ssize_t n = getrandom(out + got, size - got, 0);
        if (n <= 0) break;
        got += static_cast<std::size_t>(n);
    }
    if (got == size) return;
#endif
    std::ifstream urandom("/dev/urandom", std::ios::binary);
    if (!urandom.read(reinterpret_cast<char*>(out), static_cast<std::streamsize>(size)))
        throw error(errc::io_error, "no cryptographic random source (getrandom, /dev/urandom)");
}

}  // namespace detail
namespace jobs {

// A random (version 4) UUID from a cryptographic source.
inline std::string new_job_id() {
    unsigned char b[16];
    detail::random_bytes(b, sizeof b);
    b[6] = static_cast<unsigned char>((b[6] & 0x0f) | 0x40);
    b[8] = static_cast<unsigned char>((b[8] & 0x3f) | 0x80);
    char text[37];
    std::snprintf(text, sizeof text, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
                  b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
    return text;
}

inline bool is_uuid(const std::string& text) {
    if (text.size() != 36) return false;
    for (std::size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? c != '-' : !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
            return false;
    }
    return true;
}

// Now, UTC, ISO 8601 with milliseconds.
inline std::string utc_now_iso8601() {
    const auto now = std::chrono::system_clock::now();
    const std::time_t seconds = std::chrono::system_clock::to_time_t(now);
    const auto millis =
        std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
    std::tm utc{};
    gmtime_r(&seconds, &utc);
    char text[32];
    std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &utc);
    char out[40];
    std::snprintf(out, sizeof out, "%s.%03dZ", text, static_cast<int>(millis));
    return out;
}

inline void to_json(nlohmann::json& j, const job_record& r) {
    const auto optional_text = [](const std::optional<std::string>& v) { return v ? nlohmann::json(*v) : nlohmann::json(); };
    j = nlohmann::json{{"id", r.id},
                       {"job_type", r.job_type},
                       {"status", to_string(r.status)},
                       {"progress", r.progress},
                       {"message", r.message},
                       {"result", r.result},
                       {"error", r.error.empty() ? nlohmann::json() : nlohmann::json(r.error)},
                       {"project_id", r.project_id},
                       {"version_id", r.version_id},
                       {"created_by", r.created_by},
                       {"created_at", r.created_at},
                       {"started_at", optional_text(r.started_at)},
                       {"completed_at", optional_text(r.completed_at)}};
}

inline void from_json(const nlohmann::json& j, job_record& r) {
    const auto optional_text = [&](const char* name) -> std::optional<std::string> {
        if (!j.contains(name) || j.at(name).is_null()) return std::nullopt;
        return j.at(name).get<std::string>();
    };
    j.at("id").get_to(r.id);
    j.at("job_type").get_to(r.job_type);
    r.status = parse_job_status(j.at("status").get<std::string>());
    j.at("progress").get_to(r.progress);
    if (r.progress < 0 || r.progress > 100) throw error(errc::invalid_argument, "job progress out of range in JSON");
    r.message = j.value("message", std::string());
    r.result = j.contains("result") ? j.at("result") : nlohmann::json();
    r.error = j.contains("error") && !j.at("error").is_null() ? j.at("error").get<std::string>() : std::string();
    r.project_id = j.value("project_id", std::string());
    r.version_id = j.value("version_id", std::string());
    r.created_by = j.value("created_by", std::string());
    r.created_at = j.value("created_at", std::string());
    r.started_at = optional_text("started_at");
    r.completed_at = optional_text("completed_at");
}

}  // namespace jobs
TILEKIT_NAMESPACE_END
