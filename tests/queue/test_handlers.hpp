#pragma once
// The job handlers a queue_tool worker runs. Each one is wrapped by logged(): a "start" line
// before it runs, and "end" (returned), "stopped" (it saw ctx.cancel()) or "failed" (it threw)
// after, in the side-effect log, with the job id, attempt and worker. That log, not the store,
// is what the driver uses as proof of what ran.

#include "side_effect_log.hpp"

#include <tilekit/fast_codecs.hpp>
#include <tilekit/jobs.hpp>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>

namespace queue_tool {

namespace jobs = tilekit::jobs;

inline nlohmann::json job_fields(const jobs::job_context& ctx) {
    const jobs::job_record& job = ctx.job();
    return {{"job", job.id}, {"type", job.job_type}, {"attempt", job.attempt}, {"worker", job.worker.value_or("")}};
}

inline jobs::job_handler logged(const side_effect_log& log, jobs::job_handler inner) {
    return [&log, inner = std::move(inner)](jobs::job_context& ctx) {
        log.write("start", job_fields(ctx));
        try {
            nlohmann::json result = inner(ctx);
            log.write("end", job_fields(ctx));
            return result;
        } catch (const tilekit::error& e) {
            nlohmann::json fields = job_fields(ctx);
            fields["error"] = e.what();
            fields["code"] = tilekit::to_string(e.code());
            log.write(e.code() == tilekit::errc::cancelled ? "stopped" : "failed", fields);
            throw;
        } catch (const std::exception& e) {
            nlohmann::json fields = job_fields(ctx);
            fields["error"] = e.what();
            log.write("failed", fields);
            throw;
        }
    };
}

// Does nothing; its start/end lines are the whole point.
inline nlohmann::json run_noop(jobs::job_context&) { return {{"ok", true}}; }

// Sleeps payload.ms milliseconds in small steps, moving the bar, and stops within a few
// milliseconds of ctx.cancel() (a cancel, a lost lease, a shutdown past its grace).
inline nlohmann::json run_sleep(jobs::job_context& ctx) {
    const auto total = std::chrono::milliseconds(ctx.payload().value("ms", 0));
    const auto begin = std::chrono::steady_clock::now();
    for (;;) {
        if (ctx.cancel().is_cancelled()) throw tilekit::cancelled_error();
        const auto elapsed = std::chrono::steady_clock::now() - begin;
        if (elapsed >= total) break;
        if (total.count() > 0)
            ctx.progress(static_cast<int>(100 * elapsed / total), "sleeping");
        std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(std::chrono::milliseconds(5), total - elapsed));
    }
    return {{"slept_ms", total.count()}};
}

// A storage outage that never ends: retryable, so the job uses every attempt.
inline nlohmann::json run_retryable_fail(jobs::job_context& ctx) {
    throw tilekit::error(tilekit::errc::storage_error, "simulated storage outage on attempt " + std::to_string(ctx.attempt()));
}

// Bad input: permanent, so the first attempt is the last.
inline nlohmann::json run_permanent_fail(jobs::job_context&) {
    throw tilekit::error(tilekit::errc::invalid_argument, "simulated bad input");
}

// The real tile-generation job: images from <root>/sources, pyramids to <root>/tiles, scratch in
// <root>/scratch; the version is always a draft.
class tile_generation_setup {
public:
    tile_generation_setup(const std::filesystem::path& root, unsigned tiler_threads)
        : source_(root / "sources"), sink_(root / "tiles") {
        settings_.scratch_root = root / "scratch";
        settings_.threads = tiler_threads;
        std::filesystem::create_directories(settings_.scratch_root);
    }

    jobs::job_handler handler() {
        const jobs::version_lookup always_draft = [](const jobs::job_record& job) {
            return jobs::version_info{job.payload.value("version", 1), jobs::draft_version_status};
        };
        return jobs::tile_generation_handler<tilekit::fast_codecs>(source_, sink_, always_draft, settings_);
    }

private:
    tilekit::filesystem_source source_;
    tilekit::filesystem_sink sink_;  // thread-safe, and flush() waits for nothing: shared by all jobs
    jobs::tile_generation_settings settings_;
};

}  // namespace queue_tool
