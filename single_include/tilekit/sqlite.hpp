#pragma once
// tilekit 0.1.0, single header <tilekit/sqlite.hpp>: the sqlite part.
// The durable job store: one SQLite file in WAL mode, shared by several threads and
// processes on one host.
//
// Needs tilekit.hpp and jobs.hpp beside it (it includes them).
// Link (Debian: libsqlite3-dev):
//   c++ -std=c++17 -I single_include app.cpp $(pkg-config --cflags --libs stb sqlite3) -pthread
// An installed tilekit: `pkg-config tilekit-sqlite`, or CMake `tilekit::sqlite`.
// tilekit-sqlite.pc also defines TILEKIT_HAS_SQLITE=1 for code that wants to #if on it.
//
//   #include <tilekit/sqlite.hpp>
//   tilekit::jobs::sqlite_job_store store("jobs.db");
//   tilekit::jobs::new_job job;  job.project_id = "project";  job.version_id = "v1";  store.enqueue(job);
//   auto claimed = store.claim("worker-1", {tilekit::jobs::tile_generation_job}, std::chrono::seconds(30));
//   store.report_progress(claimed->lease, 50, "Generating tiles...");  // fenced by the lease
//   tilekit::jobs::job_record done = store.complete(claimed->lease, {{"levels", 12}}, "Done");
//
// Generated from include/tilekit/sqlite.hpp by tools/amalgamate.py. Do not edit: change include/tilekit/
// and rerun the script.

#include "jobs.hpp"

// tilekit's optional SQLite part: the durable job store (one file in WAL mode; safe for several
// threads and several processes on one host). Link `tilekit::sqlite` (CMake), `tilekit_sqlite_dep`
// (meson) or `pkg-config tilekit-sqlite` (Debian: libsqlite3-dev). The core never includes this.

// #include <tilekit/jobs.hpp>
// #include <tilekit/sqlite/sqlite_store.hpp>
// The SQLite job store: the durable, embedded default. One database file holds every job; several
// threads and several processes (on one host) may share it. Link `tilekit::sqlite` (CMake),
// `tilekit_sqlite_dep` (meson) or `pkg-config tilekit-sqlite`; the core never includes SQLite.
//
// How it is built, and why:
// - WAL journal: readers never block the writer and the writer never blocks readers, so `get`
//   and `list_*` from a web front end stay fast while workers write progress.
// - synchronous=NORMAL: in WAL mode a commit is then written to the WAL but not fsync'ed; the
//   WAL is synced at checkpoints. A crash of the *process* (SIGKILL, abort) loses nothing that
//   was committed; only a power loss or kernel crash can lose the last few commits, and never
//   corrupts the file. Progress is written every few hundred milliseconds, and an fsync per
//   write (FULL) would cost milliseconds each on real disks. A job whose completion is lost that
//   way reads `running` again and is failed as interrupted by the next open (after a reboot its
//   owner is gone), so nothing is left stuck. Set `synchronous_full` to fsync every commit.
// - Every transition is one `BEGIN IMMEDIATE` transaction: read the row, apply the shared
//   detail::apply_* helper (so this store and memory_job_store agree exactly), write it back.
//   IMMEDIATE takes SQLite's write lock before the read, so two processes can never both read
//   the old row and lose one of the updates.
// - Busy handling: sqlite3_busy_timeout (options.busy_timeout) on the connection, and a bounded,
//   jittered retry of `BEGIN IMMEDIATE`, `COMMIT` and reads on SQLITE_BUSY on top of it
//   (options.busy_retries), so contention shows up as latency, not as "database is locked".
// - One connection per store object, guarded by a mutex; share one store between threads. SQLite
//   admits one writer per file at a time anyway: the mutex queues a process's threads without
//   sleeping, whereas separate connections wait for each other in the busy handler's sleeps (1, 2,
//   5, 10, ... ms). Measured (2-core VM, 13 transactions per job, 400 jobs): 2 to 8 threads run at
//   12k-18k transactions/s either way (run-to-run noise is larger than the difference); at 32
//   threads one shared connection kept 15.9k/s (p99 18 ms) where a connection per thread fell to
//   10.9k/s (p99 26 ms). The mutex also serialises reads, which only matters if reads dominate;
//   a reader-heavy process can open a second store object on the same file for its readers.
//   tests/unit-jobs-sqlite.cpp runs (and times) both arrangements.
// - The one-active-job rule is checked inside create's transaction and is also a partial unique
//   index on (project_id, version_id, job_type) WHERE status IN ('queued','running').
// - Schema: PRAGMA user_version (schema_version) and PRAGMA application_id mark the file. A file
//   with a newer user_version, another application id, or someone else's tables is refused.
// - Results are stored as JSON text (NULL until completed).
//
// The queue. A claim is one IMMEDIATE transaction: the first queued row whose run_at has come
// (index jobs_runnable) becomes running under a fresh lease token, so two processes never claim
// one job. Every fenced write reads the row, checks the token (detail::check_lease) and writes it
// back in one transaction. Times are this host's clock, as integer milliseconds beside the ISO
// text (run_at_ms, lease_expires_ms), which is what SQLite's one-host use needs.
//
// The lease clock. Lease ends (lease_expires_ms, and the rescue's "now") are not wall time: the
// wall clock steps (an NTP correction, a resumed VM, an operator's `date`), and a step forward
// would have every process rescue every live job at once, a step back would leave a dead worker's
// job waiting by the size of the step. They are the host's boot clock (CLOCK_BOOTTIME: never
// stepped, counts suspended time, one for every process and container of the host) plus an origin,
// the wall time minus the boot clock when the first process after a boot opened the file, kept in
// the file (table lease_clock, with the boot id), so that every process of that boot reads the
// same clock and its numbers stay near wall milliseconds. After a reboot the origin is taken again;
// leases written before it are compared with a clock that has moved on by the downtime. Where there
// is no boot clock or boot id, leases are on the wall clock. run_at is wall time on purpose: a job
// scheduled for 03:00 runs at 03:00 by the wall clock. lease_expires_at stays wall time, for people.
//
// Dead workers. Leases are the defence: a job whose worker stops renewing is rescued by any
// process's rescue_expired() once its lease ends. On top of that, a process that is certainly gone
// gives its jobs back at once, proven by a lock rather than judged by host name and pid (two
// containers sharing the volume may have one host name and overlapping pid namespaces, so a pid
// means nothing outside its namespace). Before its first claim, a process creates a file of its
// own in the directory "<database>-owners/" beside the database (its name: a random UUID) and
// holds an open-file-description lock on it (fcntl F_OFD_SETLK, exclusive, whole file) for the
// rest of its life; the file is locked before it is renamed into place, so a file under a final
// name is never seen unlocked while its process lives. claim() records that name in the row
// (owner_lock), beside the host name, pid, start time and boot id, which are for people only.
// rescue_dead_owners() (run by the constructor under recovery_policy::rescue_dead_owners, the
// default) lists that directory, asks for each file whether anyone holds its lock
// (F_OFD_GETLK; an OFD lock conflicts with other open file descriptions of the same process too,
// so a process sees its own lock as held), rescues in one transaction every running job whose
// owner's lock is free, and then deletes those files. The kernel drops the lock when its process
// dies, however it dies (SIGKILL, OOM killer, reboot), so the proof works across PID namespaces
// and across hosts that share the file's filesystem with working fcntl() locks (a local volume
// shared by containers; NFSv4, where the server drops a dead client's locks when its lease ends).
// Anything unknown (no owner_lock recorded, the file missing or unreadable, a lock query that
// fails) counts as alive, so a live job is never rescued by mistake: its lease still expires. A
// rescued job goes back to the queue for another attempt, or is failed as interrupted when its
// attempts are used up. Where the system has no OFD locks (not Linux), no owner lock is taken
// and only leases rescue. A forked child takes a lock of its own at its first claim.
//
// Schema versions: 1 (tilekit 0.1: no queue columns) is migrated in place to 2, 3 and 4 when
// opened; its running jobs have no lease and are rescued. 2 -> 3 adds owner_lock; running jobs
// claimed before have none and are left to their leases. 3 -> 4 adds releases and timeout_ms and
// the index jobs_by_created.
//
// Operators' calls: list_jobs and count_jobs build their WHERE from the filter (so the
// jobs_by_project / jobs_by_status / jobs_by_created index serves it) with LIMIT; stats is one
// aggregate over the table; prune_finished ranks finished jobs per (project, version) with a
// window function and deletes a batch of ids per transaction.

#if !__has_include(<sqlite3.h>)
#error "<tilekit/jobs/sqlite_store.hpp> needs SQLite 3 (<sqlite3.h>; Debian: libsqlite3-dev). Link tilekit::sqlite (CMake), tilekit_sqlite_dep (meson) or pkg-config tilekit-sqlite."
#endif

// #include <tilekit/jobs/job_store.hpp>

#include <nlohmann/json.hpp>
#include <sqlite3.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iterator>
#include <mutex>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>
#define TILEKIT_DETAIL_SQLITE_POSIX 1
#else
#define TILEKIT_DETAIL_SQLITE_POSIX 0
#endif
#if TILEKIT_DETAIL_SQLITE_POSIX && defined(F_OFD_SETLK) && defined(F_OFD_GETLK)
#define TILEKIT_DETAIL_SQLITE_OWNER_LOCKS 1
#else
#define TILEKIT_DETAIL_SQLITE_OWNER_LOCKS 0
#endif

TILEKIT_NAMESPACE_BEGIN
namespace jobs {

// What opening a store does with `running` jobs whose process is gone.
enum class recovery_policy {
    rescue_dead_owners,  // rescue them at once (the default): queued again, or failed when out of attempts
    none,                // leave them to their leases; or call sqlite_job_store::rescue_dead_owners() yourself
};

struct sqlite_store_options {
    // sqlite3_busy_timeout: how long one attempt waits for another connection's lock.
    std::chrono::milliseconds busy_timeout{5000};
    // Further attempts (with jittered backoff) when an attempt still reports SQLITE_BUSY.
    int busy_retries = 8;
    recovery_policy recovery = recovery_policy::rescue_dead_owners;
    // The store's retry policy (job_store::set_retry_policy), set before the constructor rescues
    // dead owners' jobs, so that those retries follow it too.
    retry_policy retries;
    // PRAGMA synchronous=FULL instead of NORMAL: fsync every commit (survives power loss).
    bool synchronous_full = false;
};

// Who runs a job, as recorded by claim(). Only `lock` decides whether the owner is alive; the
// rest is for people (pids and host names mean nothing across PID namespaces and containers).
struct job_owner {
    std::string lock;  // the name of the owner's lock file in "<database>-owners/"; empty if none
    std::string host;
    std::int64_t pid = 0;
    std::uint64_t start_time = 0;  // /proc/<pid>/stat field 22 (clock ticks after boot); 0 if unknown
    std::string boot_id;           // /proc/sys/kernel/random/boot_id; empty if unknown
};

// A database error (I/O, corruption, still locked after every retry) or a file that is not a
// job store this tilekit can use (a newer schema, another application's database).
class sqlite_store_error : public error {
public:
    sqlite_store_error(errc code, const std::string& message) : error(code, message) {}
};

}  // namespace jobs
namespace detail {

inline std::string read_first_line(const char* path) {
    std::ifstream in(path);
    std::string line;
    std::getline(in, line);
    return line;
}

struct proc_stat {
    char state = '?';
    std::uint64_t start_time = 0;
};

// Fields 3 (state) and 22 (starttime) of /proc/<pid>/stat; nullopt if unreadable. Field 2 is the
// command name in parentheses and may contain spaces or parentheses, so parse after the last ')'.
inline std::optional<proc_stat> read_proc_stat(std::int64_t pid) {
    const std::string path = pid == 0 ? std::string("/proc/self/stat") : "/proc/" + std::to_string(pid) + "/stat";
    std::ifstream in(path);
    if (!in) return std::nullopt;
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const std::size_t close = text.rfind(')');
    if (close == std::string::npos) return std::nullopt;
    std::istringstream fields(text.substr(close + 1));
    proc_stat stat;
    std::string field;
    if (!(fields >> stat.state)) return std::nullopt;
    for (int number = 4; number <= 22; ++number)  // fields 4..22
        if (!(fields >> field)) return std::nullopt;
    try {
        stat.start_time = std::stoull(field);
    } catch (const std::exception&) {
        return std::nullopt;
    }
    return stat;
}

// Milliseconds on the host's boot clock (never stepped; counts suspended time); nullopt where the
// system has none.
inline std::optional<std::int64_t> boot_clock_millis() {
#if TILEKIT_DETAIL_SQLITE_POSIX && defined(CLOCK_BOOTTIME)
    timespec now{};
    if (clock_gettime(CLOCK_BOOTTIME, &now) == 0)
        return static_cast<std::int64_t>(now.tv_sec) * 1000 + static_cast<std::int64_t>(now.tv_nsec / 1000000);
#endif
    return std::nullopt;
}

inline std::string host_name() {
#if TILEKIT_DETAIL_SQLITE_POSIX
    char name[256] = {};
    if (gethostname(name, sizeof name - 1) == 0 && name[0] != '\0') return name;
#endif
    return "localhost";
}

inline jobs::job_owner this_process() {
    jobs::job_owner self;
    self.host = host_name();
#if TILEKIT_DETAIL_SQLITE_POSIX
    self.pid = static_cast<std::int64_t>(getpid());
#endif
    if (const auto stat = read_proc_stat(0)) self.start_time = stat->start_time;
    self.boot_id = read_first_line("/proc/sys/kernel/random/boot_id");
    return self;
}

// Whether a lock file name (as stored in owner_lock) is one this store made: a UUID, nothing
// that could leave the directory.
inline bool is_owner_lock_name(const std::string& name) {
    return name.size() == 36 && name.find_first_not_of("0123456789abcdef-") == std::string::npos;
}

// The directory of owner locks of the database at `database_path` (absolute, as SQLite names it):
// "<real path>-owners", so that every path to one file (a symlink, another mount point of a shared
// volume) finds the same locks. Empty for an in-memory or temporary database.
inline std::string owner_lock_directory(const std::string& database_path) {
    if (database_path.empty()) return {};
#if TILEKIT_DETAIL_SQLITE_POSIX
    if (char* real = ::realpath(database_path.c_str(), nullptr)) {
        std::string resolved = real;
        std::free(real);
        return resolved + "-owners";
    }
#endif
    return database_path + "-owners";
}

// This process's owner locks: one held file per directory, for the life of the process.
struct owner_lock_registry {
    struct held {
        int fd = -1;
        std::string name;
        std::int64_t pid = 0;
    };
    std::mutex mutex;
    std::vector<std::pair<std::string, held>> by_directory;
    bool warned = false;
};
inline owner_lock_registry& owner_locks() {
    static owner_lock_registry registry;  // never destroyed before exit: the locks live as long
    return registry;
}

// The name of this process's owner lock in `directory`, created and locked on first use; empty
// when no lock can be held there (then the jobs this process claims are left to their leases).
inline std::string hold_owner_lock(const std::string& directory) {
    if (directory.empty()) return {};
#if TILEKIT_DETAIL_SQLITE_OWNER_LOCKS
    owner_lock_registry& registry = owner_locks();
    std::lock_guard<std::mutex> guard(registry.mutex);
    const std::int64_t self = static_cast<std::int64_t>(::getpid());
    for (auto it = registry.by_directory.begin(); it != registry.by_directory.end(); ++it) {
        if (it->first != directory) continue;
        if (it->second.pid == self) return it->second.name;
        // A forked child: the inherited descriptor shares the parent's lock, which stays the
        // parent's (closing this copy does not release it); the child takes its own.
        ::close(it->second.fd);
        registry.by_directory.erase(it);
        break;
    }
    const auto give_up = [&](const std::string& what, int failure) {
        if (!registry.warned)
            std::fprintf(stderr, "tilekit sqlite job store: cannot hold an owner lock in '%s' (%s: %s); jobs this process "
                                 "claims are rescued only when their leases expire\n",
                         directory.c_str(), what.c_str(), std::strerror(failure));
        registry.warned = true;
        return std::string();
    };
    if (::mkdir(directory.c_str(), 0777) != 0 && errno != EEXIST) return give_up("mkdir", errno);
    const std::string name = jobs::new_job_id();
    const std::string temporary = directory + "/.tmp-" + name;
    const std::string final_path = directory + "/" + name;
    const int fd = ::open(temporary.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0666);
    if (fd < 0) return give_up("create", errno);
    struct flock whole {};
    whole.l_type = F_WRLCK;
    whole.l_whence = SEEK_SET;
    // Locked first, renamed into place second: a final name is never unlocked while we live.
    if (::fcntl(fd, F_OFD_SETLK, &whole) != 0 || ::rename(temporary.c_str(), final_path.c_str()) != 0) {
        const int failure = errno;
        ::close(fd);
        ::unlink(temporary.c_str());
        return give_up("lock", failure);
    }
    registry.by_directory.emplace_back(directory, owner_lock_registry::held{fd, name, self});
    return name;
#else
    return {};
#endif
}

enum class owner_lock_state { held, free, unknown };

// Whether anyone holds the lock on `path`: free only when the file exists and the kernel (or the
// file server) says no lock conflicts with an exclusive one. Any error is `unknown`.
inline owner_lock_state probe_owner_lock(const std::string& path) {
#if TILEKIT_DETAIL_SQLITE_OWNER_LOCKS
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return owner_lock_state::unknown;
    struct flock whole {};
    whole.l_type = F_WRLCK;
    whole.l_whence = SEEK_SET;
    const int rc = ::fcntl(fd, F_OFD_GETLK, &whole);
    ::close(fd);
    if (rc != 0) return owner_lock_state::unknown;
    return whole.l_type == F_UNLCK ? owner_lock_state::free : owner_lock_state::held;
#else
    (void)path;
    return owner_lock_state::unknown;
#endif
}

// The owner lock files in `directory` whose lock is free: their processes are gone. Unfinished
// temporary files (a process killed between creating and renaming its file) count once they are
// a minute old and free.
inline std::vector<std::string> free_owner_locks(const std::string& directory) {
    std::vector<std::string> gone;
#if TILEKIT_DETAIL_SQLITE_OWNER_LOCKS
    if (directory.empty()) return gone;
    DIR* dir = ::opendir(directory.c_str());
    if (!dir) return gone;
    while (const dirent* entry = ::readdir(dir)) {
        const std::string name = entry->d_name;
        const bool temporary = name.rfind(".tmp-", 0) == 0 && is_owner_lock_name(name.substr(5));
        if (!temporary && !is_owner_lock_name(name)) continue;
        const std::string path = directory + "/" + name;
        if (temporary) {
            struct stat info {};
            if (::stat(path.c_str(), &info) != 0 || std::time(nullptr) - info.st_mtime < 60) continue;
        }
        if (probe_owner_lock(path) == owner_lock_state::free) gone.push_back(name);
    }
    ::closedir(dir);
#else
    (void)directory;
#endif
    return gone;
}

inline bool is_busy(int rc) noexcept {
    const int primary = rc & 0xff;
    return primary == SQLITE_BUSY || primary == SQLITE_LOCKED;
}

// A prepared statement; reset (and unbound) by `use` after every execution so no read
// transaction stays open between calls.
class sqlite_statement {
public:
    sqlite_statement() = default;
    sqlite_statement(sqlite3* db, const char* sql) {
        if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt_, nullptr) != SQLITE_OK) {
            const std::string message = sqlite3_errmsg(db);
            sqlite3_finalize(stmt_);
            stmt_ = nullptr;
            throw jobs::sqlite_store_error(errc::io_error, std::string("sqlite job store: cannot prepare \"") + sql + "\": " + message);
        }
    }
    sqlite_statement(const sqlite_statement&) = delete;
    sqlite_statement& operator=(const sqlite_statement&) = delete;
    sqlite_statement(sqlite_statement&& other) noexcept : stmt_(std::exchange(other.stmt_, nullptr)) {}
    sqlite_statement& operator=(sqlite_statement&& other) noexcept {
        if (this != &other) {
            sqlite3_finalize(stmt_);
            stmt_ = std::exchange(other.stmt_, nullptr);
        }
        return *this;
    }
    ~sqlite_statement() { sqlite3_finalize(stmt_); }

    sqlite3_stmt* get() const noexcept { return stmt_; }

    void bind(int index, const std::string& text) const {
        sqlite3_bind_text(stmt_, index, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
    }
    void bind(int index, const std::optional<std::string>& text) const {
        if (text)
            bind(index, *text);
        else
            sqlite3_bind_null(stmt_, index);
    }
    void bind(int index, std::int64_t value) const { sqlite3_bind_int64(stmt_, index, value); }

    std::string text(int column) const {
        const unsigned char* data = sqlite3_column_text(stmt_, column);
        const int size = sqlite3_column_bytes(stmt_, column);
        return data ? std::string(reinterpret_cast<const char*>(data), static_cast<std::size_t>(size)) : std::string();
    }
    std::optional<std::string> optional_text(int column) const {
        if (sqlite3_column_type(stmt_, column) == SQLITE_NULL) return std::nullopt;
        return text(column);
    }
    std::int64_t integer(int column) const { return sqlite3_column_int64(stmt_, column); }

    void reset() const noexcept {
        sqlite3_reset(stmt_);
        sqlite3_clear_bindings(stmt_);
    }

private:
    sqlite3_stmt* stmt_ = nullptr;
};

}  // namespace detail
namespace jobs {

class sqlite_job_store final : public job_store {
public:
    static constexpr int schema_version = 4;
    static constexpr std::int32_t application_id = 0x544b4a53;  // "TKJS"

    explicit sqlite_job_store(std::string path, sqlite_store_options options = {})
        : path_(std::move(path)), options_(options) {
        set_retry_policy(options_.retries);
        try {
            open();
            if (options_.recovery == recovery_policy::rescue_dead_owners) recovered_ = rescue_dead_owners();
        } catch (...) {
            close();
            throw;
        }
    }

    sqlite_job_store(const sqlite_job_store&) = delete;
    sqlite_job_store& operator=(const sqlite_job_store&) = delete;
    ~sqlite_job_store() override { close(); }

    const std::string& path() const noexcept { return path_; }
    // The jobs that the constructor rescued because their process was gone.
    const std::vector<job_record>& recovered_on_open() const noexcept { return recovered_; }

    job_record enqueue(const new_job& job) override {
        detail::job_queue_state state;
        job_record record = detail::make_job(job, state, detail::job_clock::now());
        {
            std::lock_guard<std::mutex> lock(mutex_);
            write_transaction tx(*this);
            {
                const auto& q = stmt_.active;
                q.bind(1, record.project_id);
                q.bind(2, record.version_id);
                q.bind(3, record.job_type);
                const reset_on_exit reset(q);
                const int rc = sqlite3_step(q.get());
                if (rc == SQLITE_ROW)
                    throw job_state_error("a " + record.job_type + " job is already " + q.text(1) + " for project '" +
                                              record.project_id + "' version '" + record.version_id + "' (job '" +
                                              q.text(0) + "')",
                                          errc::duplicate_job);
                if (rc != SQLITE_DONE) fail_sqlite(rc, "check for an active job");
            }
            {
                const auto& q = stmt_.insert;
                bind_record(q, record, state);
                const reset_on_exit reset(q);
                const int rc = sqlite3_step(q.get());
                if (rc == SQLITE_CONSTRAINT_PRIMARYKEY) throw job_state_error("job id '" + record.id + "' already exists");
                if (rc == SQLITE_CONSTRAINT_UNIQUE)
                    throw job_state_error("a " + record.job_type + " job is already queued or running for project '" +
                                              record.project_id + "' version '" + record.version_id + "'",
                                          errc::duplicate_job);
                if (rc != SQLITE_DONE) fail_sqlite(rc, "insert a job");
            }
            tx.commit();
        }
        wakeup().notify();
        return record;
    }

    std::optional<job_record> get(const std::string& id) const override {
        std::lock_guard<std::mutex> lock(mutex_);
        std::vector<job_record> found = read_jobs(stmt_.get, id, "read a job");
        if (found.empty()) return std::nullopt;
        return std::move(found.front());
    }

    std::vector<job_record> list_by_project(const std::string& project_id) const override {
        std::lock_guard<std::mutex> lock(mutex_);
        return read_jobs(stmt_.by_project, project_id, "list jobs by project");
    }

    std::vector<job_record> list_by_status(job_status status) const override {
        std::lock_guard<std::mutex> lock(mutex_);
        return read_jobs(stmt_.by_status, to_string(status), "list jobs by status");
    }

    std::optional<claimed_job> claim(const std::string& worker_id, const std::vector<std::string>& job_types,
                                     std::chrono::milliseconds lease_duration) override {
        if (worker_id.empty()) throw error(errc::invalid_argument, "claim: a worker needs an id");
        if (lease_duration.count() <= 0) throw error(errc::invalid_argument, "claim: the lease duration must be positive");
        if (job_types.empty()) return std::nullopt;
        const std::string types = nlohmann::json(job_types).dump();
        job_owner self = detail::this_process();
        self.lock = detail::hold_owner_lock(owner_directory_);
        const auto sent = std::chrono::steady_clock::now();
        std::lock_guard<std::mutex> lock(mutex_);
        write_transaction tx(*this);
        const auto now = detail::job_clock::now();
        std::vector<stored_job> found;
        {
            const auto& q = stmt_.next_runnable;
            q.bind(1, millis(now));
            q.bind(2, types);
            const reset_on_exit reset(q);
            const int rc = step_rows(q, [&] { found.push_back(read_stored(q)); });
            if (rc != SQLITE_DONE) fail_sqlite(rc, "look for a runnable job");
        }
        if (found.empty()) return std::nullopt;  // the transaction rolls back: nothing changed
        claimed_job claimed;
        claimed.lease.worker_id = worker_id;
        claimed.lease.duration = lease_duration;
        stored_job& job = found.front();
        detail::apply_claim(job.record, job.state, claimed.lease, now);
        job.state.lease_expires = lease_now() + lease_duration;  // on the lease clock
        write_record(job.record, job.state);
        set_owner(job.record.id, self);
        tx.commit();
        claimed.lease.valid_until = sent + lease_duration;
        claimed.job = std::move(job.record);
        return claimed;
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
        return update(id, [&](stored_job& job, detail::job_clock::time_point now) {
            detail::apply_end(job.record, job.state, job_status::cancelled, reason, now);
        });
    }

    std::vector<job_record> rescue_expired() override {
        const auto now = lease_now();
        return rescue_where([now](const stored_job& job, detail::job_clock::time_point) -> std::optional<std::string> {
            if (!detail::lease_expired(job.record, job.state, now)) return std::nullopt;
            return std::string();  // detail::apply_rescue's reason
        });
    }

    // Rescues every running job whose owner process is gone, proven by its free owner lock (see
    // the top of this file), and returns them. The constructor calls it under
    // recovery_policy::rescue_dead_owners; a process may call it at any time (it costs a directory
    // listing and one lock query per process that ever claimed from this file and still lives).
    std::vector<job_record> rescue_dead_owners() {
        const std::vector<std::string> gone = detail::free_owner_locks(owner_directory_);
        if (gone.empty()) return {};
        std::vector<job_record> rescued =
            rescue_where([&](const stored_job& job, detail::job_clock::time_point) -> std::optional<std::string> {
                if (!job.owner || job.owner->lock.empty() ||
                    std::find(gone.begin(), gone.end(), job.owner->lock) == gone.end())
                    return std::nullopt;
                return "interrupted: the process running this job stopped (pid " + std::to_string(job.owner->pid) +
                       " on host " + job.owner->host + ")";
            });
        // Only now that their jobs are rescued: a free lock never comes back, so no one else can
        // need these files (a rescuer that finds one missing leaves its jobs to their leases).
        for (const std::string& name : gone) ::unlink((owner_directory_ + "/" + name).c_str());
        return rescued;
    }

    // Where this store's owner locks live ("<database>-owners"; empty for an in-memory database).
    const std::string& owner_lock_directory() const noexcept { return owner_directory_; }

    job_page list_jobs(const job_filter& filter, std::size_t limit,
                       const std::optional<job_page_key>& after = std::nullopt) const override {
        detail::check_page_limit(limit);
        std::vector<std::string> binds;
        std::string where = filter_sql(filter, binds);
        if (after) {
            where += std::string(where.empty() ? " WHERE" : " AND") + " (created_at, id) < (?" +
                     std::to_string(binds.size() + 1) + ", ?" + std::to_string(binds.size() + 2) + ")";
            binds.push_back(after->created_at);
            binds.push_back(after->id);
        }
        const std::string sql = "SELECT " + std::string(job_columns) + " FROM jobs" + where +
                                " ORDER BY created_at DESC, id DESC LIMIT " + std::to_string(limit + 1);
        job_page page;
        std::lock_guard<std::mutex> lock(mutex_);
        const detail::sqlite_statement q(db_, sql.c_str());
        run_read(q, [&] {
            page.jobs.clear();
            for (std::size_t i = 0; i < binds.size(); ++i) q.bind(static_cast<int>(i + 1), binds[i]);
            return step_rows(q, [&] { page.jobs.push_back(read_record(q)); });
        }, "list jobs");
        if (page.jobs.size() > limit) {
            page.jobs.resize(limit);
            page.next = job_page_key{page.jobs.back().created_at, page.jobs.back().id};
        }
        return page;
    }

    std::int64_t count_jobs(const job_filter& filter) const override {
        std::vector<std::string> binds;
        const std::string sql = "SELECT count(*) FROM jobs" + filter_sql(filter, binds);
        std::lock_guard<std::mutex> lock(mutex_);
        const detail::sqlite_statement q(db_, sql.c_str());
        std::int64_t n = 0;
        run_read(q, [&] {
            for (std::size_t i = 0; i < binds.size(); ++i) q.bind(static_cast<int>(i + 1), binds[i]);
            return step_rows(q, [&] { n = q.integer(0); });
        }, "count jobs");
        return n;
    }

    job_record retry(const std::string& id, const std::string& reason) override {
        return update(id, [&](stored_job& job, detail::job_clock::time_point now) {
            if (job.record.status == job_status::failed || job.record.status == job_status::cancelled) {
                const auto& q = stmt_.active;
                q.bind(1, job.record.project_id);
                q.bind(2, job.record.version_id);
                q.bind(3, job.record.job_type);
                const reset_on_exit reset(q);
                const int rc = sqlite3_step(q.get());
                if (rc == SQLITE_ROW)
                    throw job_state_error("a " + job.record.job_type + " job is already " + q.text(1) + " for project '" +
                                              job.record.project_id + "' version '" + job.record.version_id + "' (job '" +
                                              q.text(0) + "')",
                                          errc::duplicate_job);
                if (rc != SQLITE_DONE) fail_sqlite(rc, "check for an active job");
            }
            detail::apply_retry(job.record, job.state, reason, now);
        });
    }

    queue_stats stats(std::chrono::milliseconds window) const override {
        const auto now = detail::job_clock::now();
        queue_stats out;
        out.window = window;
        std::lock_guard<std::mutex> lock(mutex_);
        const detail::sqlite_statement q(db_,
            "SELECT count(*) FILTER (WHERE status = 'queued'), count(*) FILTER (WHERE status = 'running'),"
            " count(*) FILTER (WHERE status = 'completed'), count(*) FILTER (WHERE status = 'failed'),"
            " count(*) FILTER (WHERE status = 'cancelled'),"
            " count(*) FILTER (WHERE status = 'queued' AND run_at_ms <= ?1),"
            " min(run_at_ms) FILTER (WHERE status = 'queued' AND run_at_ms <= ?1),"
            " count(*) FILTER (WHERE status = 'completed' AND completed_at >= ?2),"
            " count(*) FILTER (WHERE status = 'failed' AND completed_at >= ?2),"
            " count(*) FILTER (WHERE status <> 'queued' AND started_at >= ?2),"
            " CAST(avg(latency) FILTER (WHERE status <> 'queued' AND started_at >= ?2) AS INTEGER),"
            " max(latency) FILTER (WHERE status <> 'queued' AND started_at >= ?2)"
            " FROM (SELECT status, run_at_ms, completed_at, started_at, max(0, CAST(round((julianday(started_at) -"
            " julianday(run_at)) * 86400000.0) AS INTEGER)) AS latency FROM jobs)");
        run_read(q, [&] {
            q.bind(1, millis(now));
            q.bind(2, format_utc(now - window));
            return step_rows(q, [&] {
                out.queued = q.integer(0);
                out.running = q.integer(1);
                out.completed = q.integer(2);
                out.failed = q.integer(3);
                out.cancelled = q.integer(4);
                out.runnable = q.integer(5);
                if (sqlite3_column_type(q.get(), 6) != SQLITE_NULL)
                    out.oldest_runnable_age = std::chrono::milliseconds(std::max<std::int64_t>(0, millis(now) - q.integer(6)));
                out.completed_in_window = q.integer(7);
                out.failed_in_window = q.integer(8);
                out.started_in_window = q.integer(9);
                if (sqlite3_column_type(q.get(), 10) != SQLITE_NULL) out.pickup_latency_avg = std::chrono::milliseconds(q.integer(10));
                if (sqlite3_column_type(q.get(), 11) != SQLITE_NULL) out.pickup_latency_max = std::chrono::milliseconds(q.integer(11));
            });
        }, "read the queue's statistics");
        return out;
    }

    // The owner recorded when the job was last claimed; nullopt for an unknown or never claimed job.
    std::optional<job_owner> owner(const std::string& id) const {
        std::lock_guard<std::mutex> lock(mutex_);
        const auto& q = stmt_.owner;
        std::optional<job_owner> found;
        run_read(q, [&] {
            found.reset();
            q.bind(1, id);
            return step_rows(q, [&] {
                if (sqlite3_column_type(q.get(), 0) == SQLITE_NULL) return;
                found = read_owner(q, 0);
            });
        }, "read a job's owner");
        return found;
    }

protected:
    std::int64_t prune_finished(std::chrono::milliseconds max_age, std::int64_t keep_per_version, std::int64_t limit) override {
        const std::string doomed =
            "SELECT id FROM (SELECT id, coalesce(completed_at, created_at) AS ended, row_number() OVER (PARTITION BY"
            " project_id, version_id ORDER BY coalesce(completed_at, created_at) DESC, id DESC) AS rank FROM jobs"
            " WHERE status IN ('completed','failed','cancelled')) WHERE ended < ?1 OR rank > ?2";
        const std::string cutoff = format_utc(detail::job_clock::now() - max_age);
        std::lock_guard<std::mutex> lock(mutex_);
        if (limit == 0) {
            const detail::sqlite_statement q(db_, ("SELECT count(*) FROM (" + doomed + ")").c_str());
            std::int64_t n = 0;
            run_read(q, [&] {
                q.bind(1, cutoff);
                q.bind(2, keep_per_version);
                return step_rows(q, [&] { n = q.integer(0); });
            }, "count the jobs retention would delete");
            return n;
        }
        write_transaction tx(*this);
        const detail::sqlite_statement q(db_, ("DELETE FROM jobs WHERE id IN (" + doomed + " LIMIT ?3)").c_str());
        q.bind(1, cutoff);
        q.bind(2, keep_per_version);
        q.bind(3, limit);
        const reset_on_exit reset(q);
        const int rc = sqlite3_step(q.get());
        if (rc != SQLITE_DONE) fail_sqlite(rc, "delete finished jobs");
        const std::int64_t n = sqlite3_changes(db_);
        tx.commit();
        return n;
    }

private:
    // " WHERE ..." for a filter (empty when it matches everything); its values appended to binds.
    static std::string filter_sql(const job_filter& filter, std::vector<std::string>& binds) {
        std::string where;
        const auto add = [&](const char* column, const std::string& value) {
            binds.push_back(value);
            where += std::string(where.empty() ? " WHERE " : " AND ") + column + " = ?" + std::to_string(binds.size());
        };
        if (filter.project_id) add("project_id", *filter.project_id);
        if (filter.version_id) add("version_id", *filter.version_id);
        if (filter.status) add("status", to_string(*filter.status));
        return where;
    }

    // Column order of every job SELECT (read_record and read_stored rely on it), then the owner.
    static constexpr const char* job_columns =
        "id, job_type, status, progress, message, result, error, project_id, version_id, created_by, "
        "created_at, started_at, completed_at, payload, attempt, max_attempts, run_at, worker, lease_expires_at, "
        "run_at_ms, lease_token, lease_expires_ms, releases, timeout_ms";
    static constexpr int job_column_count = 24;
    static constexpr const char* owner_columns = "owner_host, owner_pid, owner_start_time, owner_boot_id, owner_lock";

    struct statements {
        detail::sqlite_statement begin, commit, rollback, get, by_project, by_status, active, insert, update,
            set_owner, owner, running, next_runnable;
    };

    // A row: the record, the queue state beside it, and the process that claimed it last.
    struct stored_job {
        job_record record;
        detail::job_queue_state state;
        std::optional<job_owner> owner;
    };

    static std::int64_t millis(detail::job_clock::time_point t) {
        return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
    }
    static detail::job_clock::time_point from_millis(std::int64_t ms) {
        return detail::job_clock::time_point(std::chrono::duration_cast<detail::job_clock::duration>(std::chrono::milliseconds(ms)));
    }

    struct reset_on_exit {
        const detail::sqlite_statement& statement;
        explicit reset_on_exit(const detail::sqlite_statement& s) : statement(s) {}
        ~reset_on_exit() { statement.reset(); }
        reset_on_exit(const reset_on_exit&) = delete;
        reset_on_exit& operator=(const reset_on_exit&) = delete;
    };

    // BEGIN IMMEDIATE ... COMMIT, rolled back unless committed.
    class write_transaction {
    public:
        explicit write_transaction(const sqlite_job_store& store) : store_(store) {
            const int rc = store_.with_busy_retry([&] {
                const int r = sqlite3_step(store_.stmt_.begin.get());
                sqlite3_reset(store_.stmt_.begin.get());
                return r;
            });
            if (rc != SQLITE_DONE) store_.fail_sqlite(rc, "begin a write transaction");
        }
        void commit() {
            // A COMMIT that reports SQLITE_BUSY leaves the transaction open; trying again is allowed.
            const int rc = store_.with_busy_retry([&] {
                const int r = sqlite3_step(store_.stmt_.commit.get());
                sqlite3_reset(store_.stmt_.commit.get());
                return r;
            });
            if (rc != SQLITE_DONE) store_.fail_sqlite(rc, "commit");
            committed_ = true;
        }
        ~write_transaction() {
            if (committed_ || sqlite3_get_autocommit(store_.db_)) return;
            sqlite3_step(store_.stmt_.rollback.get());
            sqlite3_reset(store_.stmt_.rollback.get());
        }
        write_transaction(const write_transaction&) = delete;
        write_transaction& operator=(const write_transaction&) = delete;

    private:
        const sqlite_job_store& store_;
        bool committed_ = false;
    };

    [[noreturn]] void fail_sqlite(int rc, const std::string& what) const {
        std::string message = "sqlite job store '" + path_ + "': cannot " + what + ": ";
        message += db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
        if (detail::is_busy(rc))
            message += " (still busy after " + std::to_string(options_.busy_retries + 1) + " attempts of " +
                       std::to_string(options_.busy_timeout.count()) + " ms)";
        throw sqlite_store_error(errc::io_error, message);
    }

    // Runs `attempt` (returning an SQLite result code) again while it reports SQLITE_BUSY,
    // at most options_.busy_retries more times, sleeping 1, 2, 4, ... 64 ms plus jitter between.
    template <class Attempt>
    int with_busy_retry(Attempt&& attempt) const {
        thread_local std::minstd_rand jitter(std::random_device{}());
        int rc = attempt();
        for (int retry = 0; detail::is_busy(rc) && retry < options_.busy_retries; ++retry) {
            const int base = 1 << (retry < 6 ? retry : 6);
            const int sleep_ms = base + static_cast<int>(jitter() % static_cast<unsigned>(base + 1));
            std::this_thread::sleep_for(std::chrono::milliseconds(sleep_ms));
            rc = attempt();
        }
        return rc;
    }

    // Steps through every row, calling on_row for each; returns the final result code.
    template <class OnRow>
    static int step_rows(const detail::sqlite_statement& q, OnRow&& on_row) {
        int rc;
        while ((rc = sqlite3_step(q.get())) == SQLITE_ROW) on_row();
        return rc;
    }

    // A read statement, retried as a whole on SQLITE_BUSY; `run` binds and steps it.
    template <class Run>
    void run_read(const detail::sqlite_statement& q, Run&& run, const char* what) const {
        const int rc = with_busy_retry([&] {
            const reset_on_exit reset(q);
            return run();
        });
        if (rc != SQLITE_DONE) fail_sqlite(rc, what);
    }

    std::vector<job_record> read_jobs(const detail::sqlite_statement& q, const std::string& key, const char* what) const {
        std::vector<job_record> out;
        run_read(q, [&] {
            out.clear();
            q.bind(1, key);
            return step_rows(q, [&] { out.push_back(read_record(q)); });
        }, what);
        return out;
    }

    job_record read_record(const detail::sqlite_statement& q) const {
        job_record r;
        r.id = q.text(0);
        r.job_type = q.text(1);
        r.status = parse_job_status(q.text(2));
        r.progress = static_cast<int>(q.integer(3));
        r.message = q.text(4);
        if (const auto result = q.optional_text(5)) r.result = parse_json(r.id, "result", *result);
        r.error = q.text(6);
        r.project_id = q.text(7);
        r.version_id = q.text(8);
        r.created_by = q.text(9);
        r.created_at = q.text(10);
        r.started_at = q.optional_text(11);
        r.completed_at = q.optional_text(12);
        r.payload = parse_json(r.id, "payload", q.text(13));
        r.attempt = static_cast<int>(q.integer(14));
        r.max_attempts = static_cast<int>(q.integer(15));
        r.run_at = q.text(16);
        r.worker = q.optional_text(17);
        r.lease_expires_at = q.optional_text(18);
        r.releases = static_cast<int>(q.integer(22));
        r.timeout = std::chrono::milliseconds(q.integer(23));
        return r;
    }

    stored_job read_stored(const detail::sqlite_statement& q) const {
        stored_job job;
        job.record = read_record(q);
        job.state.run_at = from_millis(q.integer(19));
        job.state.token = q.text(20);
        job.state.lease_expires = from_millis(q.integer(21));
        if (sqlite3_column_type(q.get(), job_column_count) != SQLITE_NULL) job.owner = read_owner(q, job_column_count);
        return job;
    }

    nlohmann::json parse_json(const std::string& id, const char* column, const std::string& text) const {
        try {
            return nlohmann::json::parse(text);
        } catch (const nlohmann::json::exception& e) {
            throw sqlite_store_error(errc::io_error, "sqlite job store '" + path_ + "': job '" + id + "' has a " + column +
                                                         " that is not JSON: " + e.what());
        }
    }

    static job_owner read_owner(const detail::sqlite_statement& q, int first) {
        job_owner o;
        o.host = q.text(first);
        o.pid = q.integer(first + 1);
        o.start_time = static_cast<std::uint64_t>(q.integer(first + 2));
        o.boot_id = q.text(first + 3);
        o.lock = q.text(first + 4);
        return o;
    }

    std::string json_text(const job_record& r, const nlohmann::json& value, const char* what) const {
        try {
            return value.dump();
        } catch (const nlohmann::json::exception& e) {  // e.g. a string that is not UTF-8
            throw job_state_error("job '" + r.id + "': the " + std::string(what) + " cannot be stored as JSON text: " + e.what());
        }
    }

    // Binds the 24 job columns in job_columns order.
    void bind_record(const detail::sqlite_statement& q, const job_record& r, const detail::job_queue_state& s) const {
        q.bind(1, r.id);
        q.bind(2, r.job_type);
        q.bind(3, std::string(to_string(r.status)));
        q.bind(4, static_cast<std::int64_t>(r.progress));
        q.bind(5, r.message);
        q.bind(6, r.result.is_null() ? std::optional<std::string>() : std::optional<std::string>(json_text(r, r.result, "result")));
        q.bind(7, r.error);
        q.bind(8, r.project_id);
        q.bind(9, r.version_id);
        q.bind(10, r.created_by);
        q.bind(11, r.created_at);
        q.bind(12, r.started_at);
        q.bind(13, r.completed_at);
        q.bind(14, json_text(r, r.payload, "payload"));
        q.bind(15, static_cast<std::int64_t>(r.attempt));
        q.bind(16, static_cast<std::int64_t>(r.max_attempts));
        q.bind(17, r.run_at);
        q.bind(18, r.worker);
        q.bind(19, r.lease_expires_at);
        q.bind(20, millis(s.run_at));
        q.bind(21, s.token.empty() ? std::optional<std::string>() : std::optional<std::string>(s.token));
        q.bind(22, s.token.empty() ? std::int64_t{0} : millis(s.lease_expires));
        q.bind(23, static_cast<std::int64_t>(r.releases));
        q.bind(24, static_cast<std::int64_t>(r.timeout.count()));
    }

    void write_record(const job_record& r, const detail::job_queue_state& s) {
        const auto& q = stmt_.update;
        bind_record(q, r, s);
        const reset_on_exit reset(q);
        const int rc = sqlite3_step(q.get());
        if (rc != SQLITE_DONE) fail_sqlite(rc, "update job '" + r.id + "'");
        if (sqlite3_changes(db_) != 1) throw job_not_found(r.id);
    }

    void set_owner(const std::string& id, const job_owner& owner) {
        const auto& q = stmt_.set_owner;
        q.bind(1, owner.host);
        q.bind(2, owner.pid);
        q.bind(3, static_cast<std::int64_t>(owner.start_time));
        q.bind(4, owner.boot_id);
        q.bind(5, id);
        q.bind(6, owner.lock.empty() ? std::optional<std::string>() : std::optional<std::string>(owner.lock));
        const reset_on_exit reset(q);
        const int rc = sqlite3_step(q.get());
        if (rc != SQLITE_DONE) fail_sqlite(rc, "record the owner of job '" + id + "'");
    }

    // One change: BEGIN IMMEDIATE, read, apply, write back, COMMIT. An exception from `apply` (an
    // illegal transition, a fenced-off lease) rolls back, so the stored row never changes halfway.
    template <class Apply>
    job_record update(const std::string& id, Apply&& apply) {
        job_record changed;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            write_transaction tx(*this);
            std::vector<stored_job> found;
            {
                const auto& q = stmt_.get;
                q.bind(1, id);
                const reset_on_exit reset(q);
                const int rc = step_rows(q, [&] { found.push_back(read_stored(q)); });
                if (rc != SQLITE_DONE) fail_sqlite(rc, "read job '" + id + "'");
            }
            if (found.empty()) throw job_not_found(id);
            stored_job& job = found.front();
            apply(job, detail::job_clock::now());
            write_record(job.record, job.state);
            tx.commit();
            changed = std::move(job.record);
        }
        if (changed.status == job_status::queued) wakeup().notify();
        return changed;
    }

    template <class Apply>
    job_record fenced(job_lease& lease, Apply&& apply) {
        const auto sent = std::chrono::steady_clock::now();
        job_record changed = update(lease.job_id, [&](stored_job& job, detail::job_clock::time_point now) {
            detail::check_lease(job.record, job.state, lease);
            const auto lease_end = job.state.lease_expires;
            apply(job.record, job.state, now);
            // Renewed (apply set it from the wall clock): on the lease clock instead.
            if (job.record.status == job_status::running && job.state.lease_expires != lease_end)
                job.state.lease_expires = lease_now() + lease.duration;
        });
        if (changed.status == job_status::running) lease.valid_until = sent + lease.duration;
        return changed;
    }

    // Rescues, in one transaction, every running job for which `reason` gives a reason (empty:
    // apply_rescue's own).
    template <class Reason>
    std::vector<job_record> rescue_where(Reason&& reason) {
        std::vector<job_record> rescued;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            write_transaction tx(*this);
            const auto now = detail::job_clock::now();
            std::vector<stored_job> running;
            {
                const auto& q = stmt_.running;
                const reset_on_exit reset(q);
                const int rc = step_rows(q, [&] { running.push_back(read_stored(q)); });
                if (rc != SQLITE_DONE) fail_sqlite(rc, "list running jobs");
            }
            for (stored_job& job : running) {
                const std::optional<std::string> why = reason(job, now);
                if (!why) continue;
                if (why->empty())
                    detail::apply_rescue(job.record, job.state, retries(), now);
                else
                    detail::apply_fail(job.record, job.state, *why, failure_kind::retryable, retries(), now);
                write_record(job.record, job.state);
                rescued.push_back(job.record);
            }
            tx.commit();
        }
        if (!rescued.empty()) wakeup().notify();
        return rescued;
    }

    // The lease clock's "now" (see the top of this file).
    detail::job_clock::time_point lease_now() const {
        if (lease_origin_ms_)
            if (const std::optional<std::int64_t> boot = detail::boot_clock_millis()) return from_millis(*lease_origin_ms_ + *boot);
        return detail::job_clock::now();
    }

    // Reads the lease clock's origin for this boot, or records it as the first process of the boot.
    void start_lease_clock() {
        const std::optional<std::int64_t> boot = detail::boot_clock_millis();
        const std::string boot_id = detail::read_first_line("/proc/sys/kernel/random/boot_id");
        if (!boot || boot_id.empty()) return;  // leases on the wall clock
        write_transaction tx(*this);
        std::optional<std::int64_t> origin;
        {
            const detail::sqlite_statement q(db_, "SELECT origin_ms FROM lease_clock WHERE boot_id = ?1");
            q.bind(1, boot_id);
            const reset_on_exit reset(q);
            const int rc = step_rows(q, [&] { origin = q.integer(0); });
            if (rc != SQLITE_DONE) fail_sqlite(rc, "read the lease clock");
        }
        if (!origin) {
            origin = millis(detail::job_clock::now()) - *boot;
            exec("DELETE FROM lease_clock", "reset the lease clock");
            const detail::sqlite_statement insert(db_, "INSERT INTO lease_clock (boot_id, origin_ms) VALUES (?1, ?2)");
            insert.bind(1, boot_id);
            insert.bind(2, *origin);
            const reset_on_exit reset(insert);
            const int rc = sqlite3_step(insert.get());
            if (rc != SQLITE_DONE) fail_sqlite(rc, "record the lease clock");
        }
        tx.commit();
        lease_origin_ms_ = origin;
    }

    void exec(const char* sql, const char* what) {
        const int rc = with_busy_retry([&] { return sqlite3_exec(db_, sql, nullptr, nullptr, nullptr); });
        if (rc != SQLITE_OK) fail_sqlite(rc, what);
    }

    // A single-value PRAGMA or query, as text.
    std::string query_text(const char* sql, const char* what) {
        detail::sqlite_statement q(db_, sql);
        std::string value;
        run_read(q, [&] { return step_rows(q, [&] { value = q.text(0); }); }, what);
        return value;
    }
    std::int64_t query_integer(const char* sql, const char* what) {
        const std::string text = query_text(sql, what);
        return text.empty() ? 0 : std::stoll(text);
    }

    void open() {
        const int rc = sqlite3_open_v2(path_.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                                       nullptr);
        if (rc != SQLITE_OK) fail_sqlite(rc, "open");
        sqlite3_extended_result_codes(db_, 1);
        sqlite3_busy_timeout(db_, static_cast<int>(options_.busy_timeout.count()));

        // Look before changing anything: refuse files that are not (or not yet) ours.
        check_identity();

        // WAL is a property of the file; setting it again is a no-op. ":memory:" cannot be WAL.
        const std::string mode = query_text("PRAGMA journal_mode=WAL", "switch to WAL mode");
        if (mode != "wal" && path_ != ":memory:" && !path_.empty())
            throw sqlite_store_error(errc::io_error, "sqlite job store '" + path_ +
                                                         "': cannot use WAL mode (journal_mode is '" + mode + "')");
        exec(options_.synchronous_full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL", "set synchronous");

        stmt_.begin = detail::sqlite_statement(db_, "BEGIN IMMEDIATE");
        stmt_.commit = detail::sqlite_statement(db_, "COMMIT");
        stmt_.rollback = detail::sqlite_statement(db_, "ROLLBACK");
        if (query_integer("PRAGMA user_version", "read the schema version") != schema_version) create_schema();
        prepare();
        start_lease_clock();
        const char* file = sqlite3_db_filename(db_, "main");
        owner_directory_ = detail::owner_lock_directory(file ? file : "");
    }

    // Throws unless the file is empty or a tilekit job store of a known schema version.
    // Returns true when the schema still has to be created.
    bool check_identity() {
        const std::int64_t app = query_integer("PRAGMA application_id", "read the application id");
        const std::int64_t version = query_integer("PRAGMA user_version", "read the schema version");
        if (app != 0 && app != application_id)
            throw sqlite_store_error(errc::invalid_argument,
                                     "'" + path_ + "' is an SQLite database of another application (application_id " +
                                         std::to_string(app) + "), not a tilekit job store");
        if (version > schema_version)
            throw sqlite_store_error(errc::invalid_argument,
                                     "tilekit job store '" + path_ + "' has schema version " + std::to_string(version) +
                                         ", newer than the " + std::to_string(schema_version) +
                                         " this tilekit understands: open it with a newer tilekit");
        if (version == 0) {
            const std::int64_t objects = query_integer("SELECT count(*) FROM sqlite_master", "read the schema");
            if (objects != 0)
                throw sqlite_store_error(errc::invalid_argument,
                                         "'" + path_ + "' is an SQLite database with other tables, not a tilekit job store");
            return true;
        }
        if (app != application_id)
            throw sqlite_store_error(errc::invalid_argument, "'" + path_ + "' has schema version " +
                                                                 std::to_string(version) +
                                                                 " but no tilekit application id: not a tilekit job store");
        return false;
    }

    void create_schema() {
        write_transaction tx(*this);  // IMMEDIATE: two processes creating it at once take turns
        const bool empty = check_identity();
        const std::int64_t version = query_integer("PRAGMA user_version", "read the schema version");
        if (!empty && version == schema_version) return;  // another process got there first
        if (empty || version < 2) create_schema_2(empty);
        // Version 2 -> 3: the owner's lock (rescue_dead_owners()).
        if (empty || version < 3)
            exec("ALTER TABLE jobs ADD COLUMN owner_lock TEXT;"
                 "PRAGMA user_version = 3;",
                 "add the owner lock column (schema version 3)");
        // Version 3 -> 4: hand-backs in a row, the per-job run-time limit, the index of the
        // newest-first listing without a filter, and the lease clock's origin. Leases of running
        // jobs were written on the wall clock, which the new origin continues (near enough: a
        // lease ends at most by the wall clock's steps since boot early or late).
        exec("ALTER TABLE jobs ADD COLUMN releases INTEGER NOT NULL DEFAULT 0 CHECK (releases >= 0);"
             "ALTER TABLE jobs ADD COLUMN timeout_ms INTEGER NOT NULL DEFAULT 0 CHECK (timeout_ms >= 0);"
             "CREATE INDEX jobs_by_created ON jobs (created_at, id);"
             "CREATE TABLE IF NOT EXISTS lease_clock (boot_id TEXT NOT NULL, origin_ms INTEGER NOT NULL);"
             "PRAGMA user_version = 4;",
             "add hand-back counts, run-time limits and the lease clock (schema version 4)");
        static_assert(schema_version == 4, "keep the schema SQL in step");
        tx.commit();
    }

    // The schema up to version 2, in the write transaction create_schema() holds.
    void create_schema_2(bool empty) {
        if (empty) {
            exec("CREATE TABLE jobs ("
                 " id TEXT PRIMARY KEY NOT NULL,"
                 " job_type TEXT NOT NULL,"
                 " status TEXT NOT NULL CHECK (status IN ('queued','running','completed','failed','cancelled')),"
                 " progress INTEGER NOT NULL CHECK (progress BETWEEN 0 AND 100),"
                 " message TEXT NOT NULL,"
                 " result TEXT,"  // JSON text; NULL until completed
                 " error TEXT NOT NULL,"
                 " project_id TEXT NOT NULL,"
                 " version_id TEXT NOT NULL,"
                 " created_by TEXT NOT NULL,"
                 " created_at TEXT NOT NULL,"  // ISO 8601 UTC, fixed width: sorts as text
                 " started_at TEXT,"
                 " completed_at TEXT,"
                 " owner_host TEXT,"  // the process that claimed it last: rescue_dead_owners()
                 " owner_pid INTEGER,"
                 " owner_start_time INTEGER,"
                 " owner_boot_id TEXT);"
                 "CREATE UNIQUE INDEX jobs_one_active ON jobs (project_id, version_id, job_type)"
                 " WHERE status IN ('queued','running');"
                 "CREATE INDEX jobs_by_project ON jobs (project_id, created_at);"
                 "CREATE INDEX jobs_by_status ON jobs (status, created_at);"
                 "PRAGMA application_id = 1414220371;",  // 0x544b4a53
                 "create the schema");
            static_assert(application_id == 1414220371, "keep the schema SQL in step");
        }
        // Version 1 -> 2: the queue's columns. A version-1 running job has no lease (0) and is rescued.
        exec("ALTER TABLE jobs ADD COLUMN payload TEXT NOT NULL DEFAULT '{}';"
             "ALTER TABLE jobs ADD COLUMN attempt INTEGER NOT NULL DEFAULT 0 CHECK (attempt >= 0);"
             "ALTER TABLE jobs ADD COLUMN max_attempts INTEGER NOT NULL DEFAULT 5 CHECK (max_attempts >= 1);"
             "ALTER TABLE jobs ADD COLUMN run_at TEXT NOT NULL DEFAULT '';"  // ISO 8601 UTC, for people
             "ALTER TABLE jobs ADD COLUMN run_at_ms INTEGER NOT NULL DEFAULT 0;"  // the same, for the claim
             "ALTER TABLE jobs ADD COLUMN worker TEXT;"
             "ALTER TABLE jobs ADD COLUMN lease_expires_at TEXT;"
             "ALTER TABLE jobs ADD COLUMN lease_token TEXT;"  // the fencing token; NULL unless running
             "ALTER TABLE jobs ADD COLUMN lease_expires_ms INTEGER NOT NULL DEFAULT 0;"
             "UPDATE jobs SET run_at = created_at,"
             " run_at_ms = CAST(round((julianday(created_at) - 2440587.5) * 86400000.0) AS INTEGER),"
             " attempt = CASE WHEN status = 'queued' THEN 0 ELSE 1 END;"
             "CREATE INDEX jobs_runnable ON jobs (run_at_ms) WHERE status = 'queued';"
             "CREATE INDEX jobs_leases ON jobs (lease_expires_ms) WHERE status = 'running';"
             "PRAGMA user_version = 2;",
             "create the queue's columns (schema version 2)");
    }

    void prepare() {
        const std::string columns = job_columns;
        const std::string selected = columns + ", " + owner_columns;
        const auto make = [&](const std::string& sql) { return detail::sqlite_statement(db_, sql.c_str()); };
        // rowid (insertion order) breaks ties between jobs created in the same millisecond.
        stmt_.get = make("SELECT " + selected + " FROM jobs WHERE id = ?1");
        stmt_.by_project =
            make("SELECT " + selected + " FROM jobs WHERE project_id = ?1 ORDER BY created_at DESC, rowid DESC");
        stmt_.by_status = make("SELECT " + selected + " FROM jobs WHERE status = ?1 ORDER BY created_at, rowid");
        stmt_.active = make(
            "SELECT id, status FROM jobs WHERE project_id = ?1 AND version_id = ?2 AND job_type = ?3"
            " AND status IN ('queued','running') LIMIT 1");
        stmt_.insert = make("INSERT INTO jobs (" + columns +
                            ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,"
                            " ?19, ?20, ?21, ?22, ?23, ?24)");
        // Only the mutable columns change; ?2, ?8..?11, ?14 and ?24 (immutable) are bound but not used.
        stmt_.update = make(
            "UPDATE jobs SET status = ?3, progress = ?4, message = ?5, result = ?6, error = ?7, started_at = ?12,"
            " completed_at = ?13, attempt = ?15, max_attempts = ?16, run_at = ?17, worker = ?18,"
            " lease_expires_at = ?19, run_at_ms = ?20, lease_token = ?21, lease_expires_ms = ?22, releases = ?23 WHERE id = ?1");
        stmt_.set_owner = make(
            "UPDATE jobs SET owner_host = ?1, owner_pid = ?2, owner_start_time = ?3, owner_boot_id = ?4, owner_lock = ?6"
            " WHERE id = ?5");
        stmt_.owner = make(std::string("SELECT ") + owner_columns + " FROM jobs WHERE id = ?1");
        stmt_.running = make("SELECT " + selected + " FROM jobs WHERE status = 'running' ORDER BY created_at, rowid");
        // jobs_runnable serves the range on run_at_ms in claim order (named: without statistics the
        // planner would take jobs_by_status and sort every queued job); the types come as a JSON array.
        stmt_.next_runnable = make("SELECT " + selected +
                                   " FROM jobs INDEXED BY jobs_runnable WHERE status = 'queued' AND run_at_ms <= ?1"
                                   " AND job_type IN (SELECT value FROM json_each(?2)) ORDER BY run_at_ms, rowid LIMIT 1");
    }

    void close() noexcept {
        stmt_ = statements();
        if (db_) sqlite3_close_v2(db_);
        db_ = nullptr;
    }

    std::string path_;
    sqlite_store_options options_;
    sqlite3* db_ = nullptr;
    statements stmt_;
    mutable std::mutex mutex_;
    std::vector<job_record> recovered_;
    std::string owner_directory_;
    std::optional<std::int64_t> lease_origin_ms_;  // the lease clock's origin; nullopt: the wall clock
};

}  // namespace jobs
TILEKIT_NAMESPACE_END

#undef TILEKIT_DETAIL_SQLITE_POSIX
#undef TILEKIT_DETAIL_SQLITE_OWNER_LOCKS
