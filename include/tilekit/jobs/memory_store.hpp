#pragma once
// An in-memory job store: for tests and single-process embeddings that need no durability. One
// mutex guards everything, so every method is atomic with respect to every other; changes go
// through the shared detail::apply_* helpers so this store and the SQLite one agree exactly.
// Finished jobs stay until job_store::prune() removes them (the workers' maintenance does).
// Times come from a steady_wall_clock: a step of the system clock moves no lease and no run_at.

#include <tilekit/jobs/job_store.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <set>
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

    job_record enqueue(const new_job& job) override {
        detail::job_queue_state state;
        job_record record = detail::make_job(job, state, clock_.now());  // the random id is drawn outside the lock
        {
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
            const std::uint64_t sequence = next_sequence_++;
            jobs_.emplace(record.id, entry{record, state, sequence});
            active_.emplace(key, record.id);
            queued_.insert({state.run_at, sequence, record.id});
        }
        wakeup().notify();
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

    std::optional<claimed_job> claim(const std::string& worker_id, const std::vector<std::string>& job_types,
                                     std::chrono::milliseconds lease_duration) override {
        if (worker_id.empty()) throw error(errc::invalid_argument, "claim: a worker needs an id");
        if (lease_duration.count() <= 0) throw error(errc::invalid_argument, "claim: the lease duration must be positive");
        const auto now = clock_.now();
        std::lock_guard<std::mutex> lock(mutex_);
        for (auto it = queued_.begin(); it != queued_.end() && std::get<0>(*it) <= now; ++it) {
            entry& e = jobs_.at(std::get<2>(*it));
            if (std::find(job_types.begin(), job_types.end(), e.record.job_type) == job_types.end()) continue;
            claimed_job claimed;
            claimed.lease.worker_id = worker_id;
            claimed.lease.duration = lease_duration;
            const auto sent = std::chrono::steady_clock::now();
            job_record changed = e.record;
            detail::job_queue_state state = e.state;
            detail::apply_claim(changed, state, claimed.lease, now);
            queued_.erase(it);
            e.record = changed;
            e.state = state;
            claimed.lease.valid_until = sent + lease_duration;
            claimed.job = std::move(changed);
            return claimed;
        }
        return std::nullopt;
    }

    job_record renew(job_lease& lease) override {
        return fenced(lease, [&](job_record& r, detail::job_queue_state& s, detail::job_clock::time_point now) {
            detail::extend_lease(r, s, lease, now);
        });
    }

    job_record report_progress(job_lease& lease, int progress, const std::string& message) override {
        return fenced(lease, [&](job_record& r, detail::job_queue_state& s, detail::job_clock::time_point now) {
            detail::apply_progress(r, progress, message);
            detail::extend_lease(r, s, lease, now);
        });
    }

    job_record complete(job_lease& lease, const nlohmann::json& result, const std::string& message) override {
        return fenced(lease, [&](job_record& r, detail::job_queue_state& s, detail::job_clock::time_point now) {
            detail::apply_complete(r, s, result, message, now);
        });
    }

    job_record fail(job_lease& lease, const std::string& error, failure_kind kind) override {
        return fenced(lease, [&](job_record& r, detail::job_queue_state& s, detail::job_clock::time_point now) {
            detail::apply_fail(r, s, error, kind, retries(), now);
        });
    }

    job_record release(job_lease& lease, const std::string& reason) override {
        return fenced(lease, [&](job_record& r, detail::job_queue_state& s, detail::job_clock::time_point now) {
            detail::apply_release(r, s, reason, retries(), now);
        });
    }

    job_record cancel(const std::string& id, const std::string& reason) override {
        std::lock_guard<std::mutex> lock(mutex_);
        const auto it = jobs_.find(id);
        if (it == jobs_.end()) throw job_not_found(id);
        return change(it->second, [&](job_record& r, detail::job_queue_state& s, detail::job_clock::time_point now) {
            detail::apply_end(r, s, job_status::cancelled, reason, now);
        });
    }

    std::vector<job_record> rescue_expired() override {
        std::vector<job_record> rescued;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            const auto now = clock_.now();
            for (auto& item : jobs_) {
                if (!detail::lease_expired(item.second.record, item.second.state, now)) continue;
                rescued.push_back(change(item.second, [&](job_record& r, detail::job_queue_state& s, detail::job_clock::time_point at) {
                    detail::apply_rescue(r, s, retries(), at);
                }));
            }
        }
        if (!rescued.empty()) wakeup().notify();
        return rescued;
    }

    job_page list_jobs(const job_filter& filter, std::size_t limit,
                       const std::optional<job_page_key>& after = std::nullopt) const override {
        detail::check_page_limit(limit);
        std::lock_guard<std::mutex> lock(mutex_);
        std::vector<const job_record*> found;
        for (const auto& item : jobs_) {
            const job_record& r = item.second.record;
            if (!detail::matches(filter, r)) continue;
            if (after && !detail::before_key(r, *after)) continue;
            found.push_back(&r);
        }
        const auto newer = [](const job_record* a, const job_record* b) {
            return a->created_at != b->created_at ? a->created_at > b->created_at : a->id > b->id;
        };
        const std::size_t take = std::min(limit, found.size());
        std::partial_sort(found.begin(), found.begin() + static_cast<std::ptrdiff_t>(take), found.end(), newer);
        job_page page;
        for (std::size_t i = 0; i < take; ++i) page.jobs.push_back(*found[i]);
        if (found.size() > take) page.next = job_page_key{page.jobs.back().created_at, page.jobs.back().id};
        return page;
    }

    std::int64_t count_jobs(const job_filter& filter) const override {
        std::lock_guard<std::mutex> lock(mutex_);
        std::int64_t n = 0;
        for (const auto& item : jobs_) n += detail::matches(filter, item.second.record) ? 1 : 0;
        return n;
    }

    job_record retry(const std::string& id, const std::string& reason) override {
        job_record changed;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            const auto it = jobs_.find(id);
            if (it == jobs_.end()) throw job_not_found(id);
            const job_record& r = it->second.record;
            const auto active = active_.find(active_key(r));
            if (active != active_.end() && (r.status == job_status::failed || r.status == job_status::cancelled)) {
                const job_record& other = jobs_.at(active->second).record;
                throw job_state_error("a " + other.job_type + " job is already " + to_string(other.status) +
                                          " for project '" + other.project_id + "' version '" + other.version_id +
                                          "' (job '" + other.id + "')",
                                      errc::duplicate_job);
            }
            changed = change(it->second, [&](job_record& c, detail::job_queue_state& s, detail::job_clock::time_point now) {
                detail::apply_retry(c, s, reason, now);
            });
        }
        wakeup().notify();
        return changed;
    }

    queue_stats stats(std::chrono::milliseconds window) const override {
        const auto now = clock_.now();
        const std::string now_text = format_utc(now), since = format_utc(now - window);
        queue_stats out;
        out.window = window;
        std::int64_t latency_sum = 0;
        std::lock_guard<std::mutex> lock(mutex_);
        for (const auto& item : jobs_) {
            const job_record& r = item.second.record;
            const detail::job_queue_state& s = item.second.state;
            switch (r.status) {
                case job_status::queued: ++out.queued; break;
                case job_status::running: ++out.running; break;
                case job_status::completed: ++out.completed; break;
                case job_status::failed: ++out.failed; break;
                case job_status::cancelled: ++out.cancelled; break;
            }
            if (r.status == job_status::queued && s.run_at <= now) {
                ++out.runnable;
                const auto age = std::chrono::duration_cast<std::chrono::milliseconds>(now - s.run_at);
                if (!out.oldest_runnable_age || age > *out.oldest_runnable_age) out.oldest_runnable_age = age;
            }
            if (r.completed_at && *r.completed_at >= since) {
                if (r.status == job_status::completed) ++out.completed_in_window;
                if (r.status == job_status::failed) ++out.failed_in_window;
            }
            if (r.started_at && *r.started_at >= since && r.status != job_status::queued) {
                const std::int64_t latency = std::max<std::int64_t>(0, detail::utc_millis(*r.started_at) - detail::utc_millis(r.run_at));
                ++out.started_in_window;
                latency_sum += latency;
                if (!out.pickup_latency_max || latency > out.pickup_latency_max->count())
                    out.pickup_latency_max = std::chrono::milliseconds(latency);
            }
        }
        if (out.started_in_window > 0) out.pickup_latency_avg = std::chrono::milliseconds(latency_sum / out.started_in_window);
        return out;
    }

protected:
    std::int64_t prune_finished(std::chrono::milliseconds max_age, std::int64_t keep_per_version, std::int64_t limit) override {
        const std::string cutoff = format_utc(clock_.now() - max_age);
        std::lock_guard<std::mutex> lock(mutex_);
        // Finished jobs per (project, version), newest first.
        std::map<std::pair<std::string, std::string>, std::vector<const job_record*>> finished;
        for (const auto& item : jobs_)
            if (is_terminal(item.second.record.status))
                finished[{item.second.record.project_id, item.second.record.version_id}].push_back(&item.second.record);
        std::vector<std::string> doomed;
        for (auto& group : finished) {
            std::sort(group.second.begin(), group.second.end(), [](const job_record* a, const job_record* b) {
                const std::string& ea = a->completed_at ? *a->completed_at : a->created_at;
                const std::string& eb = b->completed_at ? *b->completed_at : b->created_at;
                return ea != eb ? ea > eb : a->id > b->id;
            });
            for (std::size_t rank = 0; rank < group.second.size(); ++rank) {
                const job_record* r = group.second[rank];
                const std::string& ended = r->completed_at ? *r->completed_at : r->created_at;
                if (ended < cutoff || static_cast<std::int64_t>(rank) >= keep_per_version) doomed.push_back(r->id);
            }
        }
        if (limit == 0) return static_cast<std::int64_t>(doomed.size());
        if (static_cast<std::int64_t>(doomed.size()) > limit) doomed.resize(static_cast<std::size_t>(limit));
        for (const std::string& id : doomed) jobs_.erase(id);
        return static_cast<std::int64_t>(doomed.size());
    }

private:
    struct entry {
        job_record record;
        detail::job_queue_state state;
        std::uint64_t sequence;  // insertion order: breaks created_at ties (timestamps are per millisecond)
    };

    // The one-active-job rule is per (type, project, version).
    using version_key = std::tuple<std::string, std::string, std::string>;
    static version_key active_key(const job_record& r) { return {r.job_type, r.project_id, r.version_id}; }

    // Applies a change to a copy and stores it only if the helper did not throw, so an illegal
    // change never leaves a half-updated record behind. Keeps the queued and active indexes in step.
    template <class Apply>
    job_record change(entry& e, Apply&& apply) {
        job_record changed = e.record;
        detail::job_queue_state state = e.state;
        apply(changed, state, clock_.now());
        if (e.record.status == job_status::queued) queued_.erase({e.state.run_at, e.sequence, e.record.id});
        if (changed.status == job_status::queued) queued_.insert({state.run_at, e.sequence, changed.id});
        if (is_terminal(changed.status) && !is_terminal(e.record.status)) {
            const auto active = active_.find(active_key(changed));
            if (active != active_.end() && active->second == changed.id) active_.erase(active);
        }
        if (!is_terminal(changed.status) && is_terminal(e.record.status)) active_.emplace(active_key(changed), changed.id);  // retry
        e.record = changed;
        e.state = state;
        return changed;
    }

    template <class Apply>
    job_record fenced(job_lease& lease, Apply&& apply) {
        const auto sent = std::chrono::steady_clock::now();
        job_record changed;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            const auto it = jobs_.find(lease.job_id);
            if (it == jobs_.end()) throw job_not_found(lease.job_id);
            detail::check_lease(it->second.record, it->second.state, lease);
            changed = change(it->second, apply);
        }
        if (changed.status == job_status::running)
            lease.valid_until = sent + lease.duration;
        else if (changed.status == job_status::queued)
            wakeup().notify();
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

    detail::steady_wall_clock clock_;  // every time of this store: wall-clock steps move no lease
    mutable std::mutex mutex_;
    std::unordered_map<std::string, entry> jobs_;
    std::map<version_key, std::string> active_;  // -> id of the queued or running job
    std::set<std::tuple<detail::job_clock::time_point, std::uint64_t, std::string>> queued_;  // claim order
    std::uint64_t next_sequence_ = 0;
};

}  // namespace jobs
TILEKIT_NAMESPACE_END
