#pragma once
// An in-memory job store: for tests and small embeddings that need no durability. One mutex
// guards everything, so every method is atomic with respect to every other; transitions go
// through the shared detail::apply_* helpers so this store and the SQLite one agree exactly.
// Jobs are never evicted: a long-lived embedding that creates many jobs should use a durable store.

#include <tilekit/jobs/job_store.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

TILEKIT_NAMESPACE_BEGIN
namespace jobs {

class memory_job_store final : public job_store {
public:
    memory_job_store() = default;
    memory_job_store(const memory_job_store&) = delete;
    memory_job_store& operator=(const memory_job_store&) = delete;

    job_record create(const new_job& job) override {
        job_record record = detail::make_job(job);  // the random id is drawn outside the lock
        std::lock_guard<std::mutex> lock(mutex_);
        const version_key key = active_key(record);
        const auto active = active_.find(key);
        if (active != active_.end()) {
            const job_record& other = jobs_.at(active->second).record;
            throw job_state_error("a " + other.job_type + " job is already " + to_string(other.status) +
                                  " for project '" + other.project_id + "' version '" + other.version_id +
                                  "' (job '" + other.id + "')",
                                  errc::duplicate_job);
        }
        // A UUID v4 collision is astronomically unlikely, but overwriting a job would lose it silently.
        if (jobs_.count(record.id)) throw job_state_error("job id '" + record.id + "' already exists");
        jobs_.emplace(record.id, entry{record, next_sequence_++});
        active_.emplace(key, record.id);
        return record;
    }

    std::optional<job_record> get(const std::string& id) const override {
        std::lock_guard<std::mutex> lock(mutex_);
        const auto it = jobs_.find(id);
        if (it == jobs_.end()) return std::nullopt;
        return it->second.record;
    }

    std::vector<job_record> list_by_project(const std::string& project_id) const override {
        return list([&](const job_record& r) { return r.project_id == project_id; }, /*newest_first=*/true);
    }

    std::vector<job_record> list_by_status(job_status status) const override {
        return list([&](const job_record& r) { return r.status == status; }, /*newest_first=*/false);
    }

    job_record start(const std::string& id, const std::string& message) override {
        return update(id, [&](job_record& r) { detail::apply_start(r, message); });
    }

    job_record report_progress(const std::string& id, int progress, const std::string& message) override {
        return update(id, [&](job_record& r) { detail::apply_progress(r, progress, message); });
    }

    job_record complete(const std::string& id, const nlohmann::json& result, const std::string& message) override {
        return update(id, [&](job_record& r) { detail::apply_complete(r, result, message); });
    }

    job_record fail(const std::string& id, const std::string& error) override {
        return update(id, [&](job_record& r) { detail::apply_end(r, job_status::failed, error); });
    }

    job_record cancel(const std::string& id, const std::string& reason) override {
        return update(id, [&](job_record& r) { detail::apply_end(r, job_status::cancelled, reason); });
    }

private:
    struct entry {
        job_record record;
        std::uint64_t sequence;  // insertion order: breaks created_at ties (timestamps are per millisecond)
    };

    // The one-active-job rule is per (type, project, version).
    using version_key = std::tuple<std::string, std::string, std::string>;
    static version_key active_key(const job_record& r) { return {r.job_type, r.project_id, r.version_id}; }

    // Applies a transition to a copy and stores it only if the helper did not throw, so an illegal
    // change never leaves a half-updated record behind.
    template <class Apply>
    job_record update(const std::string& id, Apply&& apply) {
        std::lock_guard<std::mutex> lock(mutex_);
        const auto it = jobs_.find(id);
        if (it == jobs_.end()) throw job_not_found(id);
        job_record changed = it->second.record;
        apply(changed);
        if (is_terminal(changed.status) && !is_terminal(it->second.record.status)) {
            const auto active = active_.find(active_key(changed));
            if (active != active_.end() && active->second == id) active_.erase(active);
        }
        it->second.record = changed;
        return changed;
    }

    template <class Match>
    std::vector<job_record> list(Match&& match, bool newest_first) const {
        std::lock_guard<std::mutex> lock(mutex_);
        std::vector<const entry*> found;
        for (const auto& item : jobs_)
            if (match(item.second.record)) found.push_back(&item.second);
        // ISO 8601 UTC timestamps of one fixed width sort as text.
        std::sort(found.begin(), found.end(), [&](const entry* a, const entry* b) {
            const int order = a->record.created_at.compare(b->record.created_at);
            if (order != 0) return newest_first ? order > 0 : order < 0;
            return newest_first ? a->sequence > b->sequence : a->sequence < b->sequence;
        });
        std::vector<job_record> out;
        out.reserve(found.size());
        for (const entry* e : found) out.push_back(e->record);
        return out;
    }

    mutable std::mutex mutex_;
    std::unordered_map<std::string, entry> jobs_;
    std::map<version_key, std::string> active_;  // -> id of the queued or running job
    std::uint64_t next_sequence_ = 0;
};

}  // namespace jobs
TILEKIT_NAMESPACE_END
