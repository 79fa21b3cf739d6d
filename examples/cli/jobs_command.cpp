// `tilekit jobs`: the tile-generation queue from the shell. Everything it touches is the
// service's: the configuration (TILEKIT_* variables and the same flags), the catalog of projects
// and versions (the draft guard), the storage (filesystem or S3) and the job store (a SQLite file
// or a PostgreSQL URL), so a job enqueued here is run by tilekit-service's workers and the other
// way round.

#include "jobs_command.hpp"

#include "catalog.hpp"
#include "config.hpp"
#include "job_queue.hpp"
#include "storage.hpp"

#include <tilekit/jobs.hpp>
#include <tilekit/tilekit.hpp>

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <functional>
#include <iostream>
#include <map>
#include <optional>
#include <pthread.h>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace tilekit_cli {

const char* const jobs_usage_text =
    "usage: tilekit jobs enqueue (--file PATH | --source KEY) --project SLUG --version N [--create-draft]\n"
    "                            [--owner NAME] [--tile-size N] [--overlap N] [--quality Q] [--skip-blank]\n"
    "                            [--json] [--wait [--timeout S]]\n"
    "       tilekit jobs run     (same as enqueue) [--threads N] [--timeout S] [--json]\n"
    "                            enqueue, run it with a worker in this process, wait; prints the result\n"
    "       tilekit jobs work    [--threads N] [--drain]    run workers until SIGTERM/SIGINT (or, with\n"
    "                            --drain, until no runnable job is left)\n"
    "       tilekit jobs show ID [--json]\n"
    "       tilekit jobs list    [--status S] [--project SLUG [--version N]] [--limit N] [--after CURSOR] [--json]\n"
    "                            newest first, N (default 50) per page; the next page's --after is printed\n"
    "                            (stderr) when there is one\n"
    "       tilekit jobs cancel ID [--reason TEXT] [--json]\n"
    "       tilekit jobs cancel --project SLUG [--version N] --all [--reason TEXT]\n"
    "                            cancels every queued or running job of the project (version)\n"
    "       tilekit jobs retry ID [--json]\n"
    "                            a failed or cancelled job back to the queue, all its attempts again;\n"
    "                            refused while its version has another queued or running job\n"
    "       tilekit jobs retry --status failed|cancelled --project SLUG [--version N]\n"
    "                            retries every such job (those whose version is busy are skipped)\n"
    "       tilekit jobs prune   [--older-than DURATION] [--keep-per-version N] [--dry-run] [--json]\n"
    "                            deletes finished (completed, failed, cancelled) jobs that ended more than\n"
    "                            DURATION ago (default 14d; 90s, 30m, 12h, 7d) or beyond the newest N per\n"
    "                            version; --dry-run counts them. Workers do the same every 10 minutes\n"
    "                            (--job-retention-days, --job-keep-per-version)\n"
    "       tilekit jobs stats   [--window DURATION] [--json]\n"
    "                            jobs by status, the oldest runnable job's wait, and over the window\n"
    "                            (default 1h) the failure rate and pickup latency (started_at - run_at)\n"
    "       tilekit jobs wait ID [--timeout S] [--json]\n"
    "       tilekit jobs schema-sql [--jobs-schema S] [--from-version N]\n"
    "                            prints the PostgreSQL job store's schema SQL (from N: the migration\n"
    "                            from version N) for a DBA to apply; then run with --jobs-create-schema 0\n"
    "       tilekit jobs gc      [--project SLUG [--version N]] [--json]\n"
    "                            deletes the tile runs nobody can need: replaced ones --gc-grace-seconds\n"
    "                            (default 600) after they were replaced, failed or cancelled ones as long\n"
    "                            after their job ended; never a version's committed run. A pyramid\n"
    "                            committed by a job that then failed or was cancelled (killed between\n"
    "                            its commit and its completion) is withdrawn first (the previous one\n"
    "                            comes back); stable manifests are rewritten to match each pointer\n"
    "The job's layout and format come from --layout dz|xyz|iiif and --format\n"
    "png|jpg|webp|webp-lossless (IIIF: info.json's id from --iiif-base-url URL, joined with the job's\n"
    "prefix; default \".\"), its key from\n"
    "--prefix-template (default mp/{slug}/uploads/tiles/{version}/). Every tilekit-service option and\n"
    "TILEKIT_* variable applies: --data-dir DIR (default ./tilekit-data), --jobs-db FILE|postgresql://URL\n"
    "(default <data-dir>/jobs.db), --catalog-db, --storage-root, --s3-bucket, --lease-seconds,\n"
    "--max-attempts, --tiler-threads, --grace-seconds, --max-upload-bytes, and PostgreSQL's --jobs-schema,\n"
    "--jobs-create-schema 0|1, --jobs-pool-size and timeouts (tilekit-service --help).\n"
    "A job store that refuses the connection for good (a wrong password, no such database or role, no\n"
    "privilege) ends every command at once with the server's message [store_refused], exit status 1.\n"
    "--file stores the image as the project's upload (mp/{slug}/uploads/assets/ID.png) first.\n"
    "--create-draft registers a missing project (owned by --owner, default user 'tilekit-cli') and a\n"
    "missing version as a draft; without it a missing one is refused. A version that is not a draft\n"
    "is always refused, and the worker checks again when the job starts.\n"
    "show/list/cancel/wait print JSON when stdout is not a terminal or with --json, a table otherwise.\n"
    "Progress: a bar on a terminal (stderr), plain lines otherwise.\n"
    "Exit status: 0 done (wait/run: completed), 1 failed (the job, or the command: refused, not found,\n"
    "store error), 2 usage error, 3 cancelled, 4 --timeout reached before the job ended.\n";

namespace {

namespace jobs = tilekit::jobs;
using namespace tilekit_service;
using json = nlohmann::json;

struct usage_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};
// The command cannot do what was asked (a published version, a missing project, a duplicate).
struct refusal : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// "90s", "30m", "12h", "7d" (a bare number is seconds).
std::chrono::milliseconds parse_duration(const std::string& flag, const std::string& text) {
    char* end = nullptr;
    errno = 0;
    const long long value = std::strtoll(text.c_str(), &end, 10);
    const std::string unit = end ? end : "";
    long long seconds_per = 0;
    if (unit.empty() || unit == "s") seconds_per = 1;
    else if (unit == "m") seconds_per = 60;
    else if (unit == "h") seconds_per = 3600;
    else if (unit == "d") seconds_per = 86400;
    if (text.empty() || end == text.c_str() || errno != 0 || value < 0 || seconds_per == 0 || value > 36500LL * 86400 / seconds_per)
        throw usage_error(flag + " expects a duration such as 90s, 30m, 12h or 7d, got '" + text + "'");
    return std::chrono::milliseconds(value * seconds_per * 1000);
}

long parse_number(const std::string& flag, const std::string& text, long low, long high) {
    char* end = nullptr;
    errno = 0;
    const long value = std::strtol(text.c_str(), &end, 10);
    if (text.empty() || *end != '\0' || errno != 0 || value < low || value > high)
        throw usage_error(flag + " expects a number in " + std::to_string(low) + ".." + std::to_string(high) + ", got '" +
                          text + "'");
    return value;
}

struct options {
    std::string command;
    std::vector<std::string> positional;
    std::vector<std::string> config_args;  // passed on to the service's load_config
    std::string file, source_key, project, owner = "tilekit-cli", status, reason = "cancelled from the command line";
    int version = 0;
    bool create_draft = false, json_out = false, wait = false, drain = false, skip_blank = false;
    long timeout_seconds = 0;  // 0: none
    long limit = 50;
    int from_version = 0;
    std::string after;
    bool all = false, dry_run = false;
    std::optional<std::chrono::milliseconds> older_than, window;
    std::optional<long> keep_per_version;
    std::optional<unsigned> threads;
    std::optional<int> tile_size, overlap, quality;
};

options parse(const std::vector<std::string>& args) {
    if (args.empty()) throw usage_error("jobs needs a subcommand");
    options o;
    o.command = args[0];
    for (std::size_t i = 1; i < args.size(); ++i) {
        const std::string& arg = args[i];
        const auto value = [&]() -> const std::string& {
            if (i + 1 >= args.size()) throw usage_error(arg + " needs a value");
            return args[++i];
        };
        if (arg == "--file") o.file = value();
        else if (arg == "--source") o.source_key = value();
        else if (arg == "--project") o.project = value();
        else if (arg == "--version") o.version = static_cast<int>(parse_number(arg, value(), 1, 999999999));
        else if (arg == "--owner") o.owner = value();
        else if (arg == "--create-draft") o.create_draft = true;
        else if (arg == "--json") o.json_out = true;
        else if (arg == "--wait") o.wait = true;
        else if (arg == "--drain") o.drain = true;
        else if (arg == "--skip-blank") o.skip_blank = true;
        else if (arg == "--timeout") o.timeout_seconds = parse_number(arg, value(), 1, 86400 * 7);
        else if (arg == "--limit") o.limit = parse_number(arg, value(), 1, 1000);
        else if (arg == "--from-version") o.from_version = static_cast<int>(parse_number(arg, value(), 0, 1000));
        else if (arg == "--after") o.after = value();
        else if (arg == "--all") o.all = true;
        else if (arg == "--dry-run") o.dry_run = true;
        else if (arg == "--older-than") o.older_than = parse_duration(arg, value());
        else if (arg == "--window") o.window = parse_duration(arg, value());
        else if (arg == "--keep-per-version") o.keep_per_version = parse_number(arg, value(), 0, 1000000);
        else if (arg == "--status") {
            o.status = value();
            try {
                (void)jobs::parse_job_status(o.status);
            } catch (const std::exception&) {
                throw usage_error("--status must be queued, running, completed, failed or cancelled, got '" + o.status + "'");
            }
        } else if (arg == "--reason") o.reason = value();
        else if (arg == "--threads") o.threads = static_cast<unsigned>(parse_number(arg, value(), 1, 256));
        else if (arg == "--tile-size") o.tile_size = static_cast<int>(parse_number(arg, value(), 1, 8192));
        else if (arg == "--overlap") o.overlap = static_cast<int>(parse_number(arg, value(), 0, 64));
        else if (arg == "--quality") o.quality = static_cast<int>(parse_number(arg, value(), 1, 100));
        else if (arg.size() > 2 && arg.compare(0, 2, "--") == 0) {
            // A service setting (--data-dir, --jobs-db, ...): load_config knows them all.
            o.config_args.push_back(arg);
            if (arg.find('=') == std::string::npos) o.config_args.push_back(value());  // else --flag=VALUE
        } else if (!arg.empty() && arg[0] == '-') {
            throw usage_error("unknown option '" + arg + "'");
        } else {
            o.positional.push_back(arg);
        }
    }
    return o;
}

service_config load(const options& o) {
    try {
        return load_config(o.config_args);
    } catch (const config_error& e) {
        throw usage_error(e.message);
    }
}

// The directories a SQLite catalog and job store live in.
void prepare_directories(const service_config& config) {
    const std::string jobs_dir =
        is_postgresql_url(config.jobs_db) ? std::string() : std::filesystem::path(config.jobs_db).parent_path().string();
    for (const std::string& path : {config.data_dir, std::filesystem::path(config.catalog_db).parent_path().string(), jobs_dir})
        if (!path.empty()) std::filesystem::create_directories(path);
}

bool stdout_is_terminal() { return isatty(STDOUT_FILENO) != 0; }

std::string job_id_argument(const options& o) {
    if (o.positional.size() != 1) throw usage_error(o.command + " needs one job ID");
    std::string id = o.positional[0];
    std::transform(id.begin(), id.end(), id.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (!jobs::is_uuid(id)) throw usage_error("'" + o.positional[0] + "' is not a job ID (a UUID)");
    return id;
}

jobs::job_record require_job(const jobs::job_store& queue, const std::string& id) {
    std::optional<jobs::job_record> job = queue.get(id);
    if (!job) throw refusal("job " + id + " not found");
    return *job;
}

int exit_code_for(jobs::job_status status) {
    switch (status) {
        case jobs::job_status::completed: return exit_ok;
        case jobs::job_status::cancelled: return exit_cancelled;
        default: return exit_failed;
    }
}

// --- progress: a bar on a terminal, plain lines otherwise (both on stderr) ---

class progress_display {
public:
    explicit progress_display(bool terminal) : terminal_(terminal) {}
    ~progress_display() { finish(); }

    void show(const jobs::job_record& job) {
        const std::string status = jobs::to_string(job.status);
        if (terminal_) {
            const int filled = job.progress * 30 / 100;
            std::string message = job.message;
            if (message.size() > 48) message = message.substr(0, 45) + "...";
            std::fprintf(stderr, "\r\033[K[%-30s] %3d%%  %-9s %s", std::string(static_cast<std::size_t>(filled), '#').c_str(),
                         job.progress, status.c_str(), message.c_str());
            std::fflush(stderr);
            drawn_ = true;
            return;
        }
        // One line per change of status or stage, and per 10% step.
        const std::string stage = job.message.substr(0, job.message.find("..."));
        if (status == last_status_ && stage == last_stage_ && job.progress / 10 == last_step_) return;
        last_status_ = status;
        last_stage_ = stage;
        last_step_ = job.progress / 10;
        std::fprintf(stderr, "job %s: %-9s %3d%%  %s\n", job.id.substr(0, 8).c_str(), status.c_str(), job.progress,
                     job.message.c_str());
        std::fflush(stderr);
    }

    void finish() {
        if (terminal_ && drawn_) std::fputc('\n', stderr);
        drawn_ = false;
    }

private:
    bool terminal_;
    bool drawn_ = false;
    std::string last_status_, last_stage_;
    int last_step_ = -1;
};

// Polls the job until it ends. nullopt when the timeout came first. `signals` (blocked in every
// thread by the caller), when given, are waited for between polls: on one, `on_signal` runs once.
std::optional<jobs::job_record> wait_for_job(const jobs::job_store& queue, const std::string& id, long timeout_seconds,
                                             const sigset_t* signals = nullptr,
                                             const std::function<void()>& on_signal = {}) {
    progress_display display(isatty(STDERR_FILENO) != 0);
    const auto start = std::chrono::steady_clock::now();
    bool signalled = false;
    for (;;) {
        const jobs::job_record job = require_job(queue, id);
        display.show(job);
        if (jobs::is_terminal(job.status)) return job;
        if (timeout_seconds > 0 && std::chrono::steady_clock::now() - start >= std::chrono::seconds(timeout_seconds)) {
            display.finish();
            return std::nullopt;
        }
        if (signals) {
            const timespec pause{0, 200 * 1000 * 1000};
            if (sigtimedwait(signals, nullptr, &pause) > 0 && !signalled && on_signal) {
                signalled = true;
                display.finish();
                on_signal();
            }
        } else {
            std::this_thread::sleep_for(std::chrono::milliseconds(200));
        }
    }
}

void print_job(const jobs::job_record& job) { std::cout << json(job).dump(2) << std::endl; }

int report_wait(const std::optional<jobs::job_record>& job, const std::string& id, long timeout_seconds, bool result_only) {
    if (!job) {
        std::cerr << "tilekit jobs: job " << id << " has not ended after " << timeout_seconds << " s\n";
        return exit_timeout;
    }
    if (result_only && job->status == jobs::job_status::completed) std::cout << job->result.dump(2) << std::endl;
    else print_job(*job);
    if (job->status == jobs::job_status::failed) std::cerr << "tilekit jobs: job " << id << " failed: " << job->error << "\n";
    if (job->status == jobs::job_status::cancelled)
        std::cerr << "tilekit jobs: job " << id << " was cancelled" << (job->error.empty() ? "" : ": " + job->error) << "\n";
    return exit_code_for(job->status);
}

// --- enqueue ---

std::string sniff_image_extension(const std::vector<std::uint8_t>& bytes) {
    static const unsigned char png[] = {0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a};
    if (bytes.size() >= 8 && std::equal(png, png + 8, bytes.begin())) return ".png";
    if (bytes.size() >= 3 && bytes[0] == 0xff && bytes[1] == 0xd8 && bytes[2] == 0xff) return ".jpg";
    if (bytes.size() >= 12 && std::equal(bytes.begin(), bytes.begin() + 4, "RIFF") &&
        std::equal(bytes.begin() + 8, bytes.begin() + 12, "WEBP"))
        return ".webp";
    if (tilekit::detail::describe_format(bytes.data(), bytes.size()) == "tiff") return ".tif";
    return "";
}

// The project and version the job is for, registered first with --create-draft.
std::pair<project, version> find_target(const options& o, const service_config& config, catalog& db) {
    std::optional<project> p = db.find_project(o.project);
    if (!p) {
        if (!o.create_draft)
            throw refusal("project '" + o.project + "' is not in the catalog " + config.catalog_db +
                          " (add --create-draft to register it with a draft version " + std::to_string(o.version) + ")");
        std::optional<user> owner = db.find_user(o.owner);
        // A new owner gets a random token that is never shown: the CLI needs no account.
        // (`tilekit-service add-user NAME` makes a user whose token you keep; pass it as --owner.)
        if (!owner) owner = db.add_user(o.owner, jobs::new_job_id() + jobs::new_job_id());
        p = db.create_project(o.project, o.project, owner->id);
        std::cerr << "tilekit jobs: registered project '" << p->slug << "' (owner '" << owner->name << "')\n";
    }
    std::optional<version> v = db.find_version(p->id, o.version);
    if (!v) {
        if (!o.create_draft)
            throw refusal("project '" + o.project + "' has no version " + std::to_string(o.version) +
                          " (add --create-draft to register it as a draft)");
        v = db.create_version(p->id, o.version, jobs::draft_version_status);
        std::cerr << "tilekit jobs: registered draft version " << v->number << " of '" << p->slug << "'\n";
    }
    if (!jobs::is_draft({v->number, v->status}))
        throw refusal("Can only generate tiles for draft versions: version " + std::to_string(v->number) + " of '" +
                      p->slug + "' is '" + v->status + "'");
    return {*p, *v};
}

jobs::job_record enqueue(const options& o, const service_config& config, catalog& db, storage& store, jobs::job_store& queue) {
    if (o.project.empty()) throw usage_error(o.command + " needs --project SLUG");
    if (o.version <= 0) throw usage_error(o.command + " needs --version N");
    if (o.file.empty() == o.source_key.empty()) throw usage_error(o.command + " needs one of --file PATH or --source KEY");
    if (!o.positional.empty()) throw usage_error("unexpected argument '" + o.positional[0] + "'");
    try {
        tilekit::detail::check_slug(o.project);
        if (!o.source_key.empty()) tilekit::validate_key(o.source_key);
    } catch (const tilekit::error& e) {
        throw usage_error(e.what());
    }
    std::vector<std::uint8_t> upload;
    std::string extension;
    if (!o.file.empty()) {
        upload = tilekit::read_file_bytes(o.file);
        extension = sniff_image_extension(upload);
        if (extension.empty()) throw refusal("'" + o.file + "' is not a PNG, JPEG or WebP image");
    }
    const auto [p, v] = find_target(o, config, db);
    for (const jobs::job_record& other : queue.list_by_project(p.id))
        if (other.version_id == v.id && other.job_type == jobs::tile_generation_job && !jobs::is_terminal(other.status))
            throw refusal("a tile-generation job is already " + std::string(jobs::to_string(other.status)) + " for version " +
                          std::to_string(v.number) + " of '" + p.slug + "': " + other.id);

    std::string source_key = o.source_key;
    if (!o.file.empty()) {
        // The service's layout for an uploaded base map, recorded in the catalog as its asset.
        asset a;
        a.id = new_uuid();
        a.project_id = p.id;
        a.type = "base_map";
        a.storage_key = "mp/" + p.slug + "/uploads/assets/" + a.id + extension;
        a.content_type = content_type_for(a.storage_key);
        a.filename = std::filesystem::path(o.file).filename().string();
        a.size = upload.size();
        a.created_at = now_iso8601();
        tilekit::storage_object object;
        object.key = a.storage_key;
        object.body = std::move(upload);
        object.content_type = a.content_type;
        store.put(std::move(object));
        db.add_asset(a);
        source_key = a.storage_key;
        std::cerr << "tilekit jobs: stored " << o.file << " as " << source_key << " (" << store.describe() << ")\n";
    }

    json payload = tile_job_payload(config, source_key, p.slug, v.number);
    jobs::tile_generation_request request = jobs::request_from_payload(payload);
    if (o.tile_size) request.tiling.tile_size = *o.tile_size;
    if (o.overlap) request.tiling.overlap = *o.overlap;
    if (o.quality) request.tiling.quality = *o.quality;
    if (o.skip_blank) request.tiling.skip_blank_tiles = true;
    payload = jobs::to_payload(request);
    try {
        (void)jobs::request_from_payload(payload);  // what a worker would refuse is refused now
    } catch (const tilekit::error& e) {
        throw usage_error(e.what());
    }
    jobs::new_job job{jobs::tile_generation_job, p.id, v.id, p.owner_id};
    job.payload = payload;
    job.max_attempts = config.max_attempts;
    try {
        return queue.enqueue(job);
    } catch (const jobs::job_state_error& e) {
        throw refusal(e.what());
    }
}

// Signals SIGTERM and SIGINT, blocked in this thread and every thread started after.
sigset_t block_stop_signals() {
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);
    return signals;
}

struct environment {
    service_config config;
    std::unique_ptr<catalog> db;
    std::unique_ptr<storage> store;
    std::unique_ptr<jobs::job_store> queue;
};

environment open_environment(const service_config& config, bool with_storage) {
    prepare_directories(config);
    environment env{config, std::make_unique<catalog>(config.catalog_db), nullptr, nullptr};
    if (with_storage) env.store = make_storage(config);
    env.queue = open_job_store(config);
    return env;
}

// Where the pyramid is, for a person: a directory with filesystem storage.
void say_where(const service_config& config, const jobs::job_record& job) {
    if (job.status != jobs::job_status::completed || !job.result.contains("tiles_path")) return;
    const std::string path = job.result.at("tiles_path").get<std::string>();
    if (config.s3_bucket.empty())
        std::cerr << "tilekit jobs: tiles in " << (std::filesystem::path(config.storage_root) / path).string() << "\n";
    else
        std::cerr << "tilekit jobs: tiles in s3://" << config.s3_bucket << "/" << path << "\n";
}

int command_enqueue(const options& o) {
    const service_config config = load(o);
    environment env = open_environment(config, true);
    const jobs::job_record job = enqueue(o, config, *env.db, *env.store, *env.queue);
    std::cerr << "tilekit jobs: queued job " << job.id << " (version " << job.payload.value("version", 0) << " of '"
              << o.project << "', " << describe_job_store(config) << ")\n";
    if (!o.wait) {
        if (o.json_out) print_job(job);
        else std::cout << job.id << std::endl;
        return exit_ok;
    }
    return report_wait(wait_for_job(*env.queue, job.id, o.timeout_seconds), job.id, o.timeout_seconds, false);
}

int command_run(const options& o) {
    service_config config = load(o);
    config.workers = o.threads.value_or(1);
    const sigset_t signals = block_stop_signals();
    environment env = open_environment(config, true);
    const jobs::job_record queued = enqueue(o, config, *env.db, *env.store, *env.queue);
    std::cerr << "tilekit jobs: job " << queued.id << " queued in " << describe_job_store(config) << " "
              << redact_url(config.jobs_db) << "; running it here\n";
    // No log line per job end: the progress display shows it (and a line would break the bar).
    sweep_scratch(config, *env.queue);  // what killed runs left, as tilekit-service does at start
    std::unique_ptr<jobs::worker_pool> pool = start_workers(config, *env.queue, *env.db, *env.store, "");
    const std::optional<jobs::job_record> job =
        wait_for_job(*env.queue, queued.id, o.timeout_seconds, &signals, [&] {
            std::cerr << "tilekit jobs: interrupted, cancelling job " << queued.id << "\n";
            try {
                env.queue->cancel(queued.id, "interrupted (tilekit jobs run)");
            } catch (const std::exception& e) {
                std::cerr << "tilekit jobs: " << e.what() << "\n";
            }
        });
    pool->stop();
    if (job) say_where(config, *job);
    return report_wait(job, queued.id, o.timeout_seconds, !o.json_out);
}

int command_work(const options& o) {
    if (!o.positional.empty()) throw usage_error("unexpected argument '" + o.positional[0] + "'");
    service_config config = load(o);
    if (o.threads) config.workers = *o.threads;
    const sigset_t signals = block_stop_signals();
    environment env = open_environment(config, true);
    sweep_scratch(config, *env.queue);  // what killed runs left, as tilekit-service does at start
    std::unique_ptr<jobs::worker_pool> pool = start_workers(config, *env.queue, *env.db, *env.store, "tilekit jobs work");
    std::cerr << "tilekit jobs work: " << config.workers << " workers (" << pool->name() << ") on "
              << describe_job_store(config) << " " << redact_url(config.jobs_db) << ", storage " << env.store->describe()
              << (o.drain ? "; exits when no runnable job is left" : "; SIGTERM or SIGINT stops") << "\n";
    // --drain: idle when no job is due and none is running under this pool. "Due" is judged by the
    // store's clock (its stats' runnable count), not this host's: a host whose clock runs ahead
    // would stop while jobs it sees as due still wait on the server, and one behind would wait on.
    // The CLI's queue holds tile-generation jobs only, which is what this pool runs.
    const std::string own_prefix = pool->name() + "#";
    const auto idle = [&] {
        if (pool->snapshot().running > 0) return false;
        if (env.queue->stats(std::chrono::milliseconds(0)).runnable > 0) return false;
        for (const jobs::job_record& job : env.queue->list_by_status(jobs::job_status::running))
            if (job.worker && job.worker->rfind(own_prefix, 0) == 0) return false;
        return true;
    };
    int idle_checks = 0;
    for (;;) {
        const timespec pause{0, 500 * 1000 * 1000};
        const int received = sigtimedwait(&signals, nullptr, &pause);
        if (received > 0) {
            std::cerr << "tilekit jobs work: signal " << received << ", stopping: no new claims, running jobs get "
                      << config.shutdown_grace_seconds << " s, then go back to the queue\n";
            break;
        }
        const std::string refusal = pool->refusal();
        if (!refusal.empty()) {
            pool->stop();
            std::cerr << "tilekit jobs work: the job store refused this worker, stopping: " << refusal << " [store_refused]\n";
            return exit_failed;
        }
        if (!o.drain) continue;
        try {
            idle_checks = idle() ? idle_checks + 1 : 0;
        } catch (const tilekit::error& e) {
            if (e.code() == tilekit::errc::store_refused) throw;  // pool's destructor stops it
            idle_checks = 0;
            std::cerr << "tilekit jobs work: " << e.what() << "\n";
        } catch (const std::exception& e) {
            idle_checks = 0;
            std::cerr << "tilekit jobs work: " << e.what() << "\n";
        }
        if (idle_checks >= 2) {
            std::cerr << "tilekit jobs work: no runnable job left, stopping\n";
            break;
        }
    }
    pool->stop();
    const jobs::worker_pool::stats s = pool->snapshot();
    std::cerr << "tilekit jobs work: stopped; claimed " << s.claimed << ", completed " << s.completed << ", failed "
              << s.failed << ", retried " << s.retried << ", handed back " << s.released << "\n";
    return exit_ok;
}

std::string shorten(const std::string& text, std::size_t width) {
    return text.size() <= width ? text : text.substr(0, width - 3) + "...";
}

int command_show(const options& o) {
    const std::string id = job_id_argument(o);
    const service_config config = load(o);
    environment env = open_environment(config, false);
    const jobs::job_record job = require_job(*env.queue, id);
    if (o.json_out || !stdout_is_terminal()) {
        print_job(job);
        return exit_ok;
    }
    const std::optional<project> p = env.db->project_by_id(job.project_id);
    const auto row = [](const char* name, const std::string& value) {
        if (!value.empty()) std::cout << "  " << name << std::string(12 - std::string(name).size(), ' ') << value << "\n";
    };
    std::cout << "job " << job.id << "\n";
    row("status", jobs::to_string(job.status));
    row("progress", std::to_string(job.progress) + "%  " + job.message);
    row("project", p ? p->slug : job.project_id);
    row("version", std::to_string(job.payload.value("version", 0)));
    row("source", job.payload.value("source_key", std::string()));
    row("attempt", std::to_string(job.attempt) + " of " + std::to_string(job.max_attempts));
    row("created", job.created_at);
    row("started", job.started_at.value_or(""));
    row("ended", job.completed_at.value_or(""));
    row("worker", job.worker.value_or(""));
    row("error", job.error);
    if (!job.result.is_null()) row("result", job.result.dump());
    return exit_ok;
}

// The filter --project SLUG [--version N] [--status S] names (project and version from the catalog).
jobs::job_filter filter_of(const options& o, const service_config& config, catalog& db) {
    jobs::job_filter filter;
    if (!o.status.empty()) filter.status = jobs::parse_job_status(o.status);
    if (o.version > 0 && o.project.empty()) throw usage_error("--version needs --project SLUG");
    if (!o.project.empty()) {
        const std::optional<project> p = db.find_project(o.project);
        if (!p) throw refusal("project '" + o.project + "' is not in the catalog " + config.catalog_db);
        filter.project_id = p->id;
        if (o.version > 0) {
            const std::optional<version> v = db.find_version(p->id, o.version);
            if (!v) throw refusal("project '" + o.project + "' has no version " + std::to_string(o.version));
            filter.version_id = v->id;
        }
    }
    return filter;
}

int command_list(const options& o) {
    if (!o.positional.empty()) throw usage_error("unexpected argument '" + o.positional[0] + "'");
    const service_config config = load(o);
    environment env = open_environment(config, false);
    std::optional<jobs::job_page_key> after;
    if (!o.after.empty()) {
        after = jobs::parse_cursor(o.after);
        if (!after) throw usage_error("--after expects the cursor a previous page printed, got '" + o.after + "'");
    }
    // One page from the store (LIMIT in SQL), newest first.
    const jobs::job_page page = env.queue->list_jobs(filter_of(o, config, *env.db), static_cast<std::size_t>(o.limit), after);
    const std::vector<jobs::job_record>& found = page.jobs;
    if (page.next) std::cerr << "tilekit jobs: more jobs: --after " << jobs::to_cursor(*page.next) << "\n";
    if (o.json_out || !stdout_is_terminal()) {
        json out = json::array();
        for (const jobs::job_record& job : found) out.push_back(job);
        std::cout << out.dump(2) << std::endl;
        return exit_ok;
    }
    std::map<std::string, std::string> slugs;
    const auto slug_of = [&](const std::string& project_id) {
        auto it = slugs.find(project_id);
        if (it != slugs.end()) return it->second;
        const std::optional<project> p = env.db->project_by_id(project_id);
        return slugs[project_id] = p ? p->slug : project_id.substr(0, 8);
    };
    std::printf("%-36s  %-9s  %4s  %-16s  %4s  %-7s  %-24s  %s\n", "ID", "STATUS", "PROG", "PROJECT", "VER", "ATTEMPT",
                "CREATED", "MESSAGE");
    for (const jobs::job_record& job : found) {
        const std::string attempts = std::to_string(job.attempt) + "/" + std::to_string(job.max_attempts);
        const std::string message = job.status == jobs::job_status::failed ? job.error : job.message;
        std::printf("%-36s  %-9s  %3d%%  %-16s  %4d  %-7s  %-24s  %s\n", job.id.c_str(), jobs::to_string(job.status),
                    job.progress, shorten(slug_of(job.project_id), 16).c_str(), job.payload.value("version", 0),
                    attempts.c_str(), job.created_at.c_str(), shorten(message, 60).c_str());
    }
    if (found.empty()) std::printf("(no jobs)\n");
    return exit_ok;
}

int command_gc(const options& o) {
    if (!o.positional.empty()) throw usage_error("unexpected argument '" + o.positional[0] + "'");
    if (o.version > 0 && o.project.empty()) throw usage_error("--version needs --project SLUG");
    const service_config config = load(o);
    environment env = open_environment(config, true);
    std::vector<project> projects;
    if (!o.project.empty()) {
        const std::optional<project> p = env.db->find_project(o.project);
        if (!p) throw refusal("project '" + o.project + "' is not in the catalog " + config.catalog_db);
        projects.push_back(*p);
    } else {
        projects = env.db->all_projects();
    }
    const std::unique_ptr<tilekit::storage_sink> sink = env.store->make_sink();
    jobs::collect_options gc;
    gc.grace = std::chrono::seconds(config.gc_grace_seconds);
    gc.run_ended_at = jobs::run_ended_from_store(*env.queue);
    json report = json::array();
    std::size_t runs = 0, objects = 0, withdrawals = 0;
    for (const project& p : projects) {
        for (const version& v : env.db->versions_of(p.id)) {
            if (o.version > 0 && v.number != o.version) continue;
            jobs::tile_generation_request request;
            request.project_slug = p.slug;
            request.version = v.number;
            request.prefix_template = config.prefix_template;
            const std::string prefix = tilekit::detail::expand_prefix(request, "");
            const std::string public_base = config.public_base_url.empty() ? config.iiif_base_url : config.public_base_url;
            // A pyramid committed by a job that then failed or was cancelled (its process died
            // between the commit and the completion) is withdrawn first.
            const bool withdrawn = jobs::withdraw_abandoned_commit(*sink, prefix, jobs::job_gave_up_from_store(*env.queue), public_base);
            const jobs::collect_report done = jobs::collect_runs(*sink, prefix, gc);
            // The stable manifests follow the pointer (a commit whose own write of them failed).
            jobs::sync_stable_manifests(*sink, prefix, public_base);
            runs += done.removed_runs.size();
            objects += done.removed_objects;
            if (withdrawn) ++withdrawals;
            report.push_back({{"project", p.slug}, {"version", v.number}, {"prefix", prefix}, {"withdrawn", withdrawn},
                              {"removed_runs", done.removed_runs}, {"removed_objects", done.removed_objects}});
        }
    }
    if (o.json_out || !::isatty(STDOUT_FILENO))
        std::cout << json{{"removed_runs", runs}, {"removed_objects", objects}, {"withdrawn", withdrawals}, {"versions", report}}.dump(2) << "\n";
    else
        std::cout << "removed " << runs << " run(s), " << objects << " object(s) in " << report.size() << " version(s)"
                  << (withdrawals ? ", withdrew " + std::to_string(withdrawals) + " pyramid(s) of jobs that did not complete" : std::string())
                  << "\n";
    return exit_ok;
}

int command_cancel_all(const options& o) {
    if (!o.positional.empty()) throw usage_error("cancel --all takes no job ID");
    if (o.project.empty()) throw usage_error("cancel --all needs --project SLUG");
    const service_config config = load(o);
    environment env = open_environment(config, false);
    jobs::job_filter filter = filter_of(o, config, *env.db);
    const std::vector<jobs::job_record> done = env.queue->cancel_all(filter, o.reason);
    std::cerr << "tilekit jobs: cancelled " << done.size() << " job(s)\n";
    if (o.json_out || !stdout_is_terminal()) {
        json out = json::array();
        for (const jobs::job_record& job : done) out.push_back(job);
        std::cout << out.dump(2) << std::endl;
    }
    return exit_ok;
}

int command_retry(const options& o) {
    const service_config config = load(o);
    if (o.positional.empty()) {  // bulk
        if (o.project.empty() || o.status.empty())
            throw usage_error("retry needs a job ID, or --status failed|cancelled --project SLUG [--version N]");
        if (o.status != "failed" && o.status != "cancelled") throw usage_error("retry --status must be failed or cancelled");
        environment env = open_environment(config, false);
        const std::vector<jobs::job_record> done =
            env.queue->retry_all(filter_of(o, config, *env.db), "retried from the command line");
        std::cerr << "tilekit jobs: queued " << done.size() << " job(s) again\n";
        if (o.json_out || !stdout_is_terminal()) {
            json out = json::array();
            for (const jobs::job_record& job : done) out.push_back(job);
            std::cout << out.dump(2) << std::endl;
        }
        return exit_ok;
    }
    const std::string id = job_id_argument(o);
    environment env = open_environment(config, false);
    (void)require_job(*env.queue, id);
    jobs::job_record job;
    try {
        job = env.queue->retry(id, "retried from the command line");
    } catch (const jobs::job_state_error& e) {
        throw refusal(e.what());
    }
    std::cerr << "tilekit jobs: job " << id << " queued again (attempts " << job.attempt + 1 << " to " << job.max_attempts
              << ")\n";
    if (o.json_out || !stdout_is_terminal()) print_job(job);
    return exit_ok;
}

int command_prune(const options& o) {
    if (!o.positional.empty()) throw usage_error("unexpected argument '" + o.positional[0] + "'");
    const service_config config = load(o);
    environment env = open_environment(config, false);
    jobs::retention_policy policy;
    policy.max_age = o.older_than.value_or(std::chrono::hours(24) * config.job_retention_days);
    if (!o.older_than && config.job_retention_days == 0) policy.max_age = std::chrono::hours(24 * 365 * 100);
    if (o.keep_per_version) policy.keep_per_version = *o.keep_per_version;
    else if (config.job_keep_per_version > 0) policy.keep_per_version = config.job_keep_per_version;
    const std::int64_t n = env.queue->prune(policy, o.dry_run);
    if (o.json_out || !stdout_is_terminal())
        std::cout << json{{"dry_run", o.dry_run}, {o.dry_run ? "would_delete" : "deleted", n}}.dump(2) << std::endl;
    else
        std::cout << (o.dry_run ? "would delete " : "deleted ") << n << " finished job(s)\n";
    return exit_ok;
}

int command_stats(const options& o) {
    if (!o.positional.empty()) throw usage_error("unexpected argument '" + o.positional[0] + "'");
    const service_config config = load(o);
    environment env = open_environment(config, false);
    const jobs::queue_stats s = env.queue->stats(o.window.value_or(std::chrono::hours(1)));
    const auto ms = [](const std::optional<std::chrono::milliseconds>& v) { return v ? json(v->count()) : json(); };
    const json out{{"counts", {{"queued", s.queued}, {"running", s.running}, {"completed", s.completed}, {"failed", s.failed},
                               {"cancelled", s.cancelled}}},
                   {"runnable", s.runnable},
                   {"oldest_runnable_age_ms", ms(s.oldest_runnable_age)},
                   {"window_ms", s.window.count()},
                   {"completed_in_window", s.completed_in_window},
                   {"failed_in_window", s.failed_in_window},
                   {"failure_rate", s.failure_rate() ? json(*s.failure_rate()) : json()},
                   {"started_in_window", s.started_in_window},
                   {"pickup_latency_avg_ms", ms(s.pickup_latency_avg)},
                   {"pickup_latency_max_ms", ms(s.pickup_latency_max)}};
    if (o.json_out || !stdout_is_terminal()) {
        std::cout << out.dump(2) << std::endl;
        return exit_ok;
    }
    const auto secs = [](const std::optional<std::chrono::milliseconds>& v) {
        return v ? std::to_string(v->count() / 1000.0).substr(0, std::to_string(v->count() / 1000.0).find('.') + 2) + " s" : std::string("-");
    };
    std::cout << "queued " << s.queued << " (runnable " << s.runnable << "), running " << s.running << ", completed "
              << s.completed << ", failed " << s.failed << ", cancelled " << s.cancelled << "\n"
              << "oldest runnable job waiting: " << secs(s.oldest_runnable_age) << "\n"
              << "last " << s.window.count() / 1000 << " s: " << s.completed_in_window << " completed, " << s.failed_in_window
              << " failed"
              << (s.failure_rate() ? " (failure rate " + std::to_string(static_cast<int>(*s.failure_rate() * 100 + 0.5)) + "%)" : std::string())
              << "; " << s.started_in_window << " attempts started, pickup latency avg " << secs(s.pickup_latency_avg)
              << ", max " << secs(s.pickup_latency_max) << "\n";
    return exit_ok;
}

int command_cancel(const options& o) {
    if (o.all) return command_cancel_all(o);
    const std::string id = job_id_argument(o);
    const service_config config = load(o);
    environment env = open_environment(config, false);
    (void)require_job(*env.queue, id);
    jobs::job_record job;
    try {
        job = env.queue->cancel(id, o.reason);
    } catch (const jobs::job_state_error& e) {
        throw refusal(e.what());
    }
    std::cerr << "tilekit jobs: cancelled job " << id << " (a running job stops at its worker's next renewal)\n";
    if (o.json_out || !stdout_is_terminal()) print_job(job);
    return exit_ok;
}

int command_schema_sql(const options& o) {
    if (!o.positional.empty()) throw usage_error("unexpected argument '" + o.positional[0] + "'");
    const service_config config = load(o);
    try {
        std::cout << job_store_schema_sql(config, o.from_version);
    } catch (const tilekit::error& e) {
        throw usage_error(e.what());  // a bad schema name or version
    }
    return exit_ok;
}

int command_wait(const options& o) {
    const std::string id = job_id_argument(o);
    const service_config config = load(o);
    environment env = open_environment(config, false);
    return report_wait(wait_for_job(*env.queue, id, o.timeout_seconds), id, o.timeout_seconds, false);
}

}  // namespace

int jobs_main(const std::vector<std::string>& args) {
    try {
        const bool help = std::find_if(args.begin(), args.end(), [](const std::string& a) {
                              return a == "--help" || a == "-h";
                          }) != args.end();
        if (args.empty() || help || args[0] == "help") {
            (args.empty() ? std::cerr : std::cout) << jobs_usage_text;
            return args.empty() ? exit_usage : exit_ok;
        }
        const options o = parse(args);
        if (o.command == "enqueue") return command_enqueue(o);
        if (o.command == "run") return command_run(o);
        if (o.command == "work") return command_work(o);
        if (o.command == "show") return command_show(o);
        if (o.command == "list") return command_list(o);
        if (o.command == "cancel") return command_cancel(o);
        if (o.command == "wait") return command_wait(o);
        if (o.command == "gc") return command_gc(o);
        if (o.command == "schema-sql") return command_schema_sql(o);
        if (o.command == "retry") return command_retry(o);
        if (o.command == "prune") return command_prune(o);
        if (o.command == "stats") return command_stats(o);
        throw usage_error("unknown jobs subcommand '" + o.command + "'");
    } catch (const usage_error& e) {
        std::cerr << "tilekit jobs: " << e.what() << "\n" << jobs_usage_text;
        return exit_usage;
    } catch (const refusal& e) {
        std::cerr << "tilekit jobs: " << e.what() << "\n";
        return exit_failed;
    } catch (const tilekit::error& e) {
        std::cerr << "tilekit jobs: " << e.what() << " [" << tilekit::to_string(e.code()) << "]\n";
        return exit_failed;
    } catch (const std::exception& e) {
        std::cerr << "tilekit jobs: " << e.what() << "\n";
        return exit_failed;
    }
}

}  // namespace tilekit_cli
