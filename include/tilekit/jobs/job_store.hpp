#pragma once
// The job-store interface, and the state machine every store enforces:
//   queued -> running -> completed | failed | cancelled;   queued -> failed | cancelled
// Progress never goes down, terminal states stay terminal, and an illegal change throws
// job_state_error instead of corrupting the record. All methods are thread-safe.

#include <tilekit/jobs/job.hpp>

#include <initializer_list>
#include <optional>
#include <string>
#include <vector>

TILEKIT_NAMESPACE_BEGIN
namespace jobs {

struct new_job {
    std::string job_type = tile_generation_job;
    std::string project_id;
    std::string version_id;
    std::string created_by;
    std::string message = "Queued";
};

class job_store {
public:
    virtual ~job_store() = default;

    // Creates a queued job with a fresh id. At most one queued or running job of a type exists
    // per (project, version): a second one is refused with job_state_error (errc::invalid_argument).
    virtual job_record create(const new_job& job) = 0;
    virtual std::optional<job_record> get(const std::string& id) const = 0;
    virtual std::vector<job_record> list_by_project(const std::string& project_id) const = 0;  // newest first
    virtual std::vector<job_record> list_by_status(job_status status) const = 0;               // oldest first

    virtual job_record start(const std::string& id, const std::string& message) = 0;  // queued -> running
    // running only; the same value updates the message; `progress` below the current value is ignored (never an error: progress
    // from several streams may arrive out of order), above 100 is an error.
    virtual job_record report_progress(const std::string& id, int progress, const std::string& message) = 0;
    virtual job_record complete(const std::string& id, const nlohmann::json& result, const std::string& message) = 0;
    virtual job_record fail(const std::string& id, const std::string& error) = 0;    // queued/running -> failed
    virtual job_record cancel(const std::string& id, const std::string& reason) = 0;  // queued/running -> cancelled
};

}  // namespace jobs
namespace detail {

inline void require_status(const jobs::job_record& job, std::initializer_list<jobs::job_status> allowed, const char* action) {
    for (jobs::job_status s : allowed)
        if (job.status == s) return;
    throw jobs::job_state_error(std::string("cannot ") + action + " job '" + job.id + "': it is " + to_string(job.status));
}

// Applies one transition to a record in memory; every store uses these so they agree exactly.
inline void apply_start(jobs::job_record& job, const std::string& message) {
    require_status(job, {jobs::job_status::queued}, "start");
    job.status = jobs::job_status::running;
    job.message = message;
    job.started_at = jobs::utc_now_iso8601();
}

inline void apply_progress(jobs::job_record& job, int progress, const std::string& message) {
    require_status(job, {jobs::job_status::running}, "report progress of");
    if (progress < 0 || progress > 100)
        throw jobs::job_state_error("progress must be 0..100, got " + std::to_string(progress));
    if (progress >= job.progress) {
        job.progress = progress;
        job.message = message;
    }
}

inline void apply_complete(jobs::job_record& job, const nlohmann::json& result, const std::string& message) {
    require_status(job, {jobs::job_status::running}, "complete");
    job.status = jobs::job_status::completed;
    job.progress = 100;
    job.message = message;
    job.result = result;
    job.completed_at = jobs::utc_now_iso8601();
}

inline void apply_end(jobs::job_record& job, jobs::job_status status, const std::string& reason) {
    if (status != jobs::job_status::failed && status != jobs::job_status::cancelled)
        throw error(errc::invalid_argument, "apply_end: status must be failed or cancelled");
    require_status(job, {jobs::job_status::queued, jobs::job_status::running}, status == jobs::job_status::failed ? "fail" : "cancel");
    job.status = status;
    job.error = reason;
    job.message = status == jobs::job_status::failed ? "Failed" : "Cancelled";
    job.completed_at = jobs::utc_now_iso8601();
}

inline jobs::job_record make_job(const jobs::new_job& job) {
    if (job.job_type.empty() || job.project_id.empty() || job.version_id.empty())
        throw error(errc::invalid_argument, "a job needs a job_type, a project_id and a version_id");
    jobs::job_record r;
    r.id = jobs::new_job_id();
    r.job_type = job.job_type;
    r.project_id = job.project_id;
    r.version_id = job.version_id;
    r.created_by = job.created_by;
    r.message = job.message;
    r.created_at = jobs::utc_now_iso8601();
    return r;
}

}  // namespace detail
namespace jobs {
}  // namespace jobs
TILEKIT_NAMESPACE_END
