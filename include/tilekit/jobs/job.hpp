#pragma once
// The job record: what a service shows its users about a background job (queued, running with
// a percentage and a message, completed with a result, failed with the reason), what a worker
// needs to run it (its payload), its attempts and, while it runs, the lease a worker holds on it;
// and its JSON. The lease's fencing token is not part of the record: only the worker holding the
// lease knows it (see job_lease in job_store.hpp).

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

// Attempts a job gets unless new_job::max_attempts says otherwise: the first run and four retries.
constexpr int default_max_attempts = 5;

struct job_record {
    std::string id;                    // random UUID v4
    std::string job_type = tile_generation_job;
    job_status status = job_status::queued;
    int progress = 0;                  // 0..100, never decreases within an attempt
    std::string message;
    nlohmann::json result;             // null until completed
    // Set when failed or cancelled; while a job waits for a retry (queued, attempt > 0) it keeps
    // the error of the attempt that failed.
    std::string error;
    std::string project_id;
    std::string version_id;
    std::string created_by;
    std::string created_at;            // UTC, ISO 8601 ("2026-11-28T23:07:16.123Z")
    std::optional<std::string> started_at;    // the start of the latest attempt
    std::optional<std::string> completed_at;
    nlohmann::json payload = nlohmann::json::object();  // what a worker needs to run the job
    int attempt = 0;                   // attempts started so far (a claim starts one)
    int max_attempts = default_max_attempts;
    std::string run_at;                // a queued job is not claimed before this time (UTC, ISO 8601)
    std::optional<std::string> worker;            // while running: the worker holding the lease
    std::optional<std::string> lease_expires_at;  // while running: when the lease ends unless renewed
    int releases = 0;                  // hand-backs in a row since the last attempt that counted
    std::chrono::milliseconds timeout{0};  // run-time limit of an attempt; 0: the worker's
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

// Thrown to a worker whose write is fenced off: its lease expired and the job was rescued, taken
// over by another worker or ended. Its write changed nothing; the worker must stop the job.
class lease_lost : public error {
public:
    explicit lease_lost(const std::string& message) : error(errc::lease_lost, message) {}
};

// Thrown to the worker holding a job that was cancelled (by cancel()): stop and write nothing.
class job_cancelled : public error {
public:
    explicit job_cancelled(const std::string& id, const std::string& reason)
        : error(errc::cancelled, "job '" + id + "' was cancelled" + (reason.empty() ? "" : ": " + reason)) {}
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

// A time as UTC ISO 8601 with milliseconds ("2026-11-28T23:07:16.123Z"): one fixed width, so
// such texts sort (and compare) in time order.
inline std::string format_utc(std::chrono::system_clock::time_point time) {
    const auto millis_since_epoch = std::chrono::duration_cast<std::chrono::milliseconds>(time.time_since_epoch()).count();
    const long long seconds_part = millis_since_epoch >= 0 ? millis_since_epoch / 1000 : (millis_since_epoch - 999) / 1000;
    const std::time_t seconds = static_cast<std::time_t>(seconds_part);
    const int millis = static_cast<int>(millis_since_epoch - seconds_part * 1000);
    std::tm utc{};
    gmtime_r(&seconds, &utc);
    char text[32];
    std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &utc);
    char out[40];
    std::snprintf(out, sizeof out, "%s.%03dZ", text, millis);
    return out;
}

// Now, UTC, ISO 8601 with milliseconds.
inline std::string utc_now_iso8601() { return format_utc(std::chrono::system_clock::now()); }

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
                       {"completed_at", optional_text(r.completed_at)},
                       {"payload", r.payload},
                       {"attempt", r.attempt},
                       {"max_attempts", r.max_attempts},
                       {"run_at", r.run_at},
                       {"worker", optional_text(r.worker)},
                       {"lease_expires_at", optional_text(r.lease_expires_at)},
                       {"releases", r.releases},
                       {"timeout_ms", r.timeout.count()}};
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
    r.payload = j.contains("payload") && !j.at("payload").is_null() ? j.at("payload") : nlohmann::json::object();
    r.attempt = j.value("attempt", 0);
    r.max_attempts = j.value("max_attempts", default_max_attempts);
    if (r.attempt < 0 || r.max_attempts < 1) throw error(errc::invalid_argument, "job attempts out of range in JSON");
    r.run_at = j.value("run_at", r.created_at);
    r.worker = optional_text("worker");
    r.lease_expires_at = optional_text("lease_expires_at");
    r.releases = j.value("releases", 0);
    r.timeout = std::chrono::milliseconds(j.value("timeout_ms", std::int64_t{0}));
    if (r.releases < 0 || r.timeout.count() < 0) throw error(errc::invalid_argument, "job releases or timeout out of range in JSON");
}

}  // namespace jobs
TILEKIT_NAMESPACE_END
