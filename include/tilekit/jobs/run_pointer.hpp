#pragma once
// The publish protocol's storage side: immutable runs, and the pointer that says which run is a
// version's pyramid.
//
//   {version prefix}runs/{job_id}.{attempt}/...   one run: every object an attempt writes, and
//                                                 nothing else; never changed once written
//   {version prefix}current.json                  the pointer: which run is the pyramid (its
//                                                 manifest, layout, metadata), and the runs it
//                                                 replaced, with when (for the grace period)
//
// A run becomes the version's pyramid by one conditional write of the pointer (storage_sink::
// put_if) against the version tag read when the run started; a run that loses the race, or that
// may no longer commit, leaves the pointer alone. Readers (the service's /tiles/, a viewer)
// resolve the pointer and then read immutable objects, so they never see half a pyramid.
// collect_runs() deletes the runs nobody can need any more: never the committed one, retired ones
// only after a grace period, and failed or cancelled ones once their job says they ended.

#include <tilekit/error.hpp>
#include <tilekit/key.hpp>
#include <tilekit/sink.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

TILEKIT_NAMESPACE_BEGIN
namespace jobs {

// Objects under a run prefix never change: caches may keep them for a year. The pointer and the
// stable manifests change at every commit: caches must ask again after a few seconds.
inline const char* const immutable_cache_control = "public, max-age=31536000, immutable";
inline const char* const pointer_cache_control = "public, max-age=5, must-revalidate";

inline const char* const pointer_name = "current.json";

struct retired_run {
    std::string run;          // "runs/{job_id}.{attempt}/"
    std::int64_t since = 0;   // unix seconds: when the pointer stopped naming it
};

struct run_pointer {
    std::string run;          // relative to the version prefix ("runs/J.1/"); empty: no pyramid
    std::string job_id;
    int attempt = 0;
    std::string layout;       // "dz", "xyz", "iiif"
    std::string manifest;     // relative to the version prefix, or empty
    std::string metadata;     // relative to the version prefix
    std::int64_t committed_at = 0;
    std::vector<retired_run> retired;
    // The pointer this one replaced (without its own retired list and previous): where
    // withdraw_abandoned_commit() goes back to.
    std::shared_ptr<const run_pointer> previous;
};

inline std::int64_t unix_now() {
    return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

inline std::string run_name(const std::string& job_id, int attempt) {
    return "runs/" + job_id + "." + std::to_string(attempt) + "/";
}

inline nlohmann::json to_json_value(const run_pointer& p) {
    nlohmann::json retired = nlohmann::json::array();
    for (const retired_run& r : p.retired) retired.push_back({{"run", r.run}, {"since", r.since}});
    nlohmann::json j{{"run", p.run.empty() ? nlohmann::json() : nlohmann::json(p.run)},
                     {"job_id", p.job_id},
                     {"attempt", p.attempt},
                     {"layout", p.layout},
                     {"manifest", p.manifest},
                     {"metadata", p.metadata},
                     {"committed_at", p.committed_at},
                     {"retired", retired}};
    if (p.previous) {
        nlohmann::json previous = to_json_value(*p.previous);
        previous.erase("retired");
        previous.erase("previous");
        j["previous"] = previous;
    }
    return j;
}

// Throws errc::storage_error for a pointer that is not one (it is never guessed at).
inline run_pointer pointer_from_json(const nlohmann::json& j) {
    try {
        run_pointer p;
        if (!j.at("run").is_null()) p.run = j.at("run").get<std::string>();
        p.job_id = j.value("job_id", "");
        p.attempt = j.value("attempt", 0);
        p.layout = j.value("layout", "");
        p.manifest = j.value("manifest", "");
        p.metadata = j.value("metadata", "");
        p.committed_at = j.value("committed_at", std::int64_t{0});
        if (j.contains("retired"))
            for (const nlohmann::json& r : j.at("retired")) p.retired.push_back({r.at("run").get<std::string>(), r.at("since").get<std::int64_t>()});
        if (j.contains("previous") && j.at("previous").is_object()) {
            nlohmann::json previous = j.at("previous");
            previous.erase("previous");
            p.previous = std::make_shared<const run_pointer>(pointer_from_json(previous));
        }
        if (!p.run.empty() && (p.run.compare(0, 5, "runs/") != 0 || p.run.back() != '/' || p.run.find("..") != std::string::npos))
            throw error(errc::storage_error, "its run '" + p.run + "' is not a run prefix");
        return p;
    } catch (const nlohmann::json::exception& e) {
        throw error(errc::storage_error, std::string("a pyramid pointer that cannot be read: ") + e.what());
    }
}

inline std::vector<std::uint8_t> pointer_body(const run_pointer& p) {
    const std::string text = to_json_value(p).dump(2) + "\n";
    return {text.begin(), text.end()};
}

// The pointer as stored, with its version tag. pointer is empty when there is none yet (and then
// version is empty too, the tag put_if() takes for "absent").
struct pointer_state {
    std::optional<run_pointer> pointer;
    std::string version;
};

inline pointer_state read_pointer(storage_sink& sink, const std::string& version_prefix) {
    if (!sink.can_compare_and_put())
        throw error(errc::invalid_argument, "publishing runs needs a storage sink with conditional writes (put_if)");
    const std::string key = version_prefix + pointer_name;
    std::optional<versioned_object> found = sink.read(key);
    if (!found) return {};
    nlohmann::json j = nlohmann::json::parse(found->object.body.begin(), found->object.body.end(), nullptr, false);
    if (j.is_discarded()) throw error(errc::storage_error, "the pyramid pointer '" + key + "' is not JSON");
    return {pointer_from_json(j), found->version};
}

// The one conditional write that makes a pointer current. stored == false: someone else's write
// came first (the version tag moved), and nothing was changed.
inline conditional_put_result write_pointer(storage_sink& sink, const std::string& version_prefix, const run_pointer& p,
                                            const std::string& expected_version) {
    storage_object object;
    object.key = version_prefix + pointer_name;
    object.body = pointer_body(p);
    object.content_type = "application/json";
    object.cache_control = pointer_cache_control;
    return sink.put_if(std::move(object), expected_version);
}

// Stable manifests: for plain static hosting (a bucket served as it is, no service in front),
// copies of the committed run's manifest and metadata at the version prefix, at the names the run
// has them ({version prefix}image.dzi, info.json, pyramid.json), that name the run's tiles:
//   Deep Zoom   image.dzi with Url="{base}/{version prefix}{run}image_files/" (OpenSeadragon
//               takes the tiles from Url when the .dzi has one; the page's own address does not
//               matter)
//   IIIF        info.json with id "{base}/{version prefix}{run without its slash}" (a run made
//               with an absolute iiif_base_url already has one, and keeps it)
//   metadata    pyramid.json with tile_url_template prefixed by the run ("runs/J.A/{z}/{x}/{y}.png":
//               still relative to the prefix the file is in) and "run" naming it
// {base} is public_base_url (where the bucket's keys are served, e.g. "https://tiles.example.com"),
// or nothing: "/{key}", for a bucket served at a domain's root (an R2 custom domain or r2.dev URL,
// an S3 virtual-hosted URL). The pointer stays the truth; these follow it: after writing them the
// pointer is read again, and if it moved meanwhile they are written again for what it says now,
// so whichever writer finishes last leaves them matching the pointer.
}  // namespace jobs
namespace detail {

inline std::string xml_attribute_escape(const std::string& text) {
    std::string out;
    for (char ch : text) {
        if (ch == '&') out += "&amp;";
        else if (ch == '"') out += "&quot;";
        else if (ch == '<') out += "&lt;";
        else if (ch == '>') out += "&gt;";
        else out += ch;
    }
    return out;
}

inline std::string run_url(const std::string& public_base_url, const std::string& key) {
    std::string base = public_base_url;
    while (!base.empty() && base.back() == '/') base.pop_back();
    return base + "/" + key;
}

// The stable copy of one of the run's documents (name relative to the run), or nothing when it
// is not one this file knows how to point at the run.
inline std::optional<std::string> stable_document(const std::string& name, const std::string& body, const std::string& version_prefix,
                                                  const std::string& run, const std::string& public_base_url) {
    const auto ends_with = [&](const char* suffix) {
        const std::string s(suffix);
        return name.size() >= s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0;
    };
    if (ends_with(".dzi")) {
        const std::size_t at = body.find("<Image");
        if (at == std::string::npos || body.find(" Url=\"") != std::string::npos) return std::nullopt;
        const std::string files = name.substr(0, name.size() - 4) + "_files/";
        const std::string url = run_url(public_base_url, version_prefix + run + files);
        std::string out = body;
        out.insert(at + 6, " Url=\"" + xml_attribute_escape(url) + "\"");
        return out;
    }
    nlohmann::ordered_json j = nlohmann::ordered_json::parse(body, nullptr, false);
    if (j.is_discarded() || !j.is_object()) return std::nullopt;
    if (j.contains("tile_url_template") && j["tile_url_template"].is_string()) {  // pyramid.json
        j["tile_url_template"] = run + j["tile_url_template"].get<std::string>();
        j["run"] = run;
        return j.dump(2) + "\n";
    }
    if (j.contains("id") && j["id"].is_string()) {  // IIIF info.json
        const std::string id = j["id"].get<std::string>();
        if (id.find("://") == std::string::npos && (id.empty() || id[0] != '/')) {
            std::string run_key = version_prefix + run;
            run_key.pop_back();
            j["id"] = run_url(public_base_url, run_key);
        }
        return j.dump(2) + "\n";
    }
    return std::nullopt;
}

}  // namespace detail
namespace jobs {

// Writes (or, when the pointer names no run, removes) the stable manifests of the version; see
// above. also_clear: names to remove when there is no pyramid (those a withdrawn run had).
inline void sync_stable_manifests(storage_sink& sink, const std::string& version_prefix, const std::string& public_base_url,
                                  const std::vector<std::string>& also_clear = {}) {
    for (int round = 0; round < 8; ++round) {
        const pointer_state state = read_pointer(sink, version_prefix);
        if (!state.pointer || state.pointer->run.empty()) {
            for (const std::string& name : also_clear) sink.remove(version_prefix + name);
        } else {
            const run_pointer& p = *state.pointer;
            for (const std::string& relative : {p.manifest, p.metadata}) {
                if (relative.size() <= p.run.size() || relative.compare(0, p.run.size(), p.run) != 0) continue;
                const std::string name = relative.substr(p.run.size());
                const std::optional<versioned_object> found = sink.read(version_prefix + relative);
                if (!found) continue;  // collected already: a later round (or commit) has a newer pointer
                const std::string body(found->object.body.begin(), found->object.body.end());
                const std::optional<std::string> text = detail::stable_document(name, body, version_prefix, p.run, public_base_url);
                if (!text) continue;
                storage_object object;
                object.key = version_prefix + name;
                object.body.assign(text->begin(), text->end());
                object.content_type = found->object.content_type;
                object.cache_control = pointer_cache_control;
                sink.put(std::move(object));
            }
            sink.flush();
        }
        if (read_pointer(sink, version_prefix).version == state.version) return;
    }
}

// A committed run whose job did not complete: its last attempt stopped between the pointer write
// and the completion (the process was killed, or the answer to the write was lost and the job
// failed), so the store failed or cancelled the job while the pointer names its run. The pointer
// goes back to the run it replaced when that run is still stored, or else to no pyramid, by one
// conditional write; the withdrawn run is retired (collected after the grace). gave_up(job_id)
// says whether a job ended without completing (failed or cancelled; false while it may still
// run, as a retry that will commit again). Returns whether the pointer was withdrawn. Run by
// `tilekit jobs gc`; keeps "a version's pyramid is a completed job's" true after a crash.
inline bool withdraw_abandoned_commit(storage_sink& sink, const std::string& version_prefix,
                                      const std::function<bool(const std::string& job_id)>& gave_up,
                                      const std::string& public_base_url = "") {
    const pointer_state state = read_pointer(sink, version_prefix);
    if (!state.pointer || state.pointer->run.empty() || !gave_up || !gave_up(state.pointer->job_id)) return false;
    const run_pointer& current = *state.pointer;
    const std::int64_t now = unix_now();
    run_pointer back;
    const run_pointer* previous = current.previous.get();
    if (previous && !previous->run.empty() && !previous->metadata.empty() && sink.read(version_prefix + previous->metadata)) {
        back = *previous;
        back.previous.reset();
    }
    back.committed_at = now;
    for (const retired_run& r : current.retired)
        if (r.run != back.run) back.retired.push_back(r);
    back.retired.push_back({current.run, now});
    if (!write_pointer(sink, version_prefix, back, state.version).stored) return false;  // moved meanwhile
    std::vector<std::string> names;
    for (const std::string& relative : {current.manifest, current.metadata})
        if (relative.size() > current.run.size()) names.push_back(relative.substr(current.run.size()));
    sync_stable_manifests(sink, version_prefix, public_base_url, names);
    return true;
}

// Garbage collection of a version's runs.
struct collect_options {
    std::chrono::seconds grace{600};  // a viewer that loaded a replaced pyramid keeps it this long
    std::int64_t now = 0;             // unix seconds; 0: the clock
    // When a run that was never committed ended for good (it can no longer commit: its job is
    // failed, cancelled or completed, or a later attempt started), as unix seconds; nothing while
    // it may still commit or nobody knows. Without it, only retired runs are collected.
    std::function<std::optional<std::int64_t>(const std::string& job_id, int attempt)> run_ended_at;
    std::string keep;                 // a run to keep whatever it looks like (the caller's own)
};

struct collect_report {
    std::vector<std::string> removed_runs;
    std::size_t removed_objects = 0;
};

// Deletes the runs under `version_prefix` that nobody can need: not the committed run, not
// `keep`, retired runs once their grace has passed, other runs once run_ended_at says they ended
// more than the grace ago. Needs a sink that can list.
inline collect_report collect_runs(storage_sink& sink, const std::string& version_prefix, const collect_options& options) {
    collect_report report;
    if (!sink.can_list()) return report;
    const std::int64_t now = options.now ? options.now : unix_now();
    const pointer_state state = read_pointer(sink, version_prefix);
    std::map<std::string, std::int64_t> retired;
    if (state.pointer)
        for (const retired_run& r : state.pointer->retired) retired[r.run] = r.since;
    std::map<std::string, std::vector<std::string>> runs;  // "runs/J.A/" -> keys
    const std::string runs_prefix = version_prefix + "runs/";
    sink.list(runs_prefix, [&](const std::string& key) {
        const std::size_t slash = key.find('/', runs_prefix.size());
        if (slash == std::string::npos) return;
        runs["runs/" + key.substr(runs_prefix.size(), slash + 1 - runs_prefix.size())].push_back(key);
    });
    for (const auto& [run, keys] : runs) {
        if (state.pointer && run == state.pointer->run) continue;
        if (run == options.keep) continue;
        std::optional<std::int64_t> ended;
        const auto found = retired.find(run);
        if (found != retired.end()) {
            ended = found->second;
        } else if (options.run_ended_at) {
            const std::string name = run.substr(5, run.size() - 6);  // "J.A"
            const std::size_t dot = name.rfind('.');
            if (dot == std::string::npos) continue;
            int attempt = 0;
            try {
                attempt = std::stoi(name.substr(dot + 1));
            } catch (const std::exception&) {
                continue;
            }
            ended = options.run_ended_at(name.substr(0, dot), attempt);
        }
        if (!ended || now - *ended < options.grace.count()) continue;
        for (const std::string& key : keys) {
            sink.remove(key);
            ++report.removed_objects;
        }
        report.removed_runs.push_back(run);
    }
    return report;
}

}  // namespace jobs
TILEKIT_NAMESPACE_END
