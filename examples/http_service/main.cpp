// tilekit-service: a small reference HTTP service that embeds tilekit (see README.md,
// "The reference HTTP service"). main wires the parts together and owns the lifecycle:
// SIGTERM/SIGINT stop accepting requests and claiming jobs, running jobs get a grace period,
// and jobs that cannot finish are handed back to the queue (any instance runs them next).
// --role serve runs only the API, --role work only the workers, the default both.

#include "auth.hpp"
#include "catalog.hpp"
#include "config.hpp"
#include "http/server.hpp"
#include "routes.hpp"
#include "job_queue.hpp"
#include "storage.hpp"

#include <sys/resource.h>

#include <tilekit/sqlite.hpp>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <pthread.h>
#include <thread>

#include <unistd.h>

namespace {

using namespace tilekit_service;

void prepare_directories(const service_config& config) {
    const std::string jobs_dir =
        is_postgresql_url(config.jobs_db) ? std::string() : std::filesystem::path(config.jobs_db).parent_path().string();
    for (const std::string& path : {config.data_dir, std::filesystem::path(config.catalog_db).parent_path().string(), jobs_dir})
        if (!path.empty()) std::filesystem::create_directories(path);
}

int add_user(std::vector<std::string> args) {
    if (args.empty() || args[0].empty() || args[0][0] == '-') throw config_error{"add-user needs a NAME"};
    const std::string name = args[0];
    std::string token;
    args.erase(args.begin());
    for (std::size_t i = 0; i + 1 < args.size(); ++i)
        if (args[i] == "--token") {
            token = args[i + 1];
            args.erase(args.begin() + static_cast<long>(i), args.begin() + static_cast<long>(i) + 2);
            break;
        }
    const service_config config = load_config(args);
    prepare_directories(config);
    if (token.empty()) token = new_token();
    catalog db(config.catalog_db);
    const user u = db.add_user(name, token);
    std::cerr << "created user '" << u.name << "' (" << u.id << ") in " << config.catalog_db << "\n";
    std::cout << token << std::endl;  // shown once; only its SHA-256 is stored
    return 0;
}

int serve(const std::vector<std::string>& args) {
    // Block the stop signals in every thread; one thread waits for them with sigwait.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
    std::signal(SIGPIPE, SIG_IGN);

    const service_config config = load_config(args);
    std::cerr << describe(config);
    // Every connection is a descriptor: the soft limit (often 1024) would refuse accepts below
    // --max-connections, so it is raised to the hard limit.
    rlimit files{};
    if (::getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
        files.rlim_cur = files.rlim_max;
        ::setrlimit(RLIMIT_NOFILE, &files);
    }
    prepare_directories(config);

    catalog db(config.catalog_db);
    // Queued jobs stay queued across restarts; the workers (here or in another process) run them.
    const std::unique_ptr<tilekit::jobs::job_store> jobs = open_job_store(config);
    sweep_scratch(config, *jobs);  // before any worker here starts one
    std::unique_ptr<storage> store = make_storage(config);
    std::unique_ptr<tilekit::jobs::worker_pool> workers;
    if (config.role != "serve") workers = start_workers(config, *jobs, db, *store);
    std::atomic<bool> stopping{false};
    service_context context{config, db, *jobs, *store, workers.get(), stopping};

    http::server_limits limits;
    limits.max_connections = config.max_connections;
    limits.max_per_address = config.max_connections_per_address;
    limits.io_threads = config.http_threads;
    limits.handler_threads = config.handler_threads;
    limits.idle_timeout = std::chrono::seconds(config.client_timeout_seconds);
    limits.header_deadline = std::chrono::seconds(std::max(1, config.client_timeout_seconds) * 2);
    http::router routes;
    install_api_routes(routes, context);
    install_file_routes(routes, context);
    http::server server(
        limits, [&routes](http::request& r) { return routes.admit(r); },
        [](const http::exchange& x) {
            // The target as sent, with anything outside printable ASCII escaped: a request
            // cannot write a line of its own into the log.
            std::string target;
            for (const unsigned char ch : x.target) {
                if (ch < 0x21 || ch > 0x7e || ch == '\\') {
                    char hex[5];
                    std::snprintf(hex, sizeof hex, "\\x%02x", ch);
                    target += hex;
                } else {
                    target.push_back(static_cast<char>(ch));
                }
            }
            std::fprintf(stderr, "%s %s %s %d %llu %lldms\n", x.remote_address.c_str(), x.method.c_str(), target.c_str(),
                         x.status, static_cast<unsigned long long>(x.body_bytes), static_cast<long long>(x.took.count()));
        });
    std::thread signal_waiter([&] {
        int received = 0;
        sigwait(&stop_signals, &received);
        std::cerr << "tilekit-service: signal " << received << ", stopping (grace " << config.shutdown_grace_seconds
                  << " s)\n";
        stopping = true;
        server.stop(std::chrono::seconds(2));
    });
    // A store that refuses the workers for good (a password rotated, a grant revoked while running:
    // errc::store_refused) stops the service, as if SIGTERM came, and the exit status is 1.
    std::string refusal;
    std::thread refusal_watch([&] {
        while (workers && !stopping) {
            std::this_thread::sleep_for(std::chrono::milliseconds(250));
            refusal = workers->refusal();
            if (refusal.empty()) continue;
            std::cerr << "tilekit-service: the job store refused the workers, stopping: " << refusal << " [store_refused]\n";
            kill(getpid(), SIGTERM);
            return;
        }
    });
    if (config.role == "work") {
        std::cerr << "tilekit-service: working (no HTTP server); " << config.workers << " workers on "
                  << describe_job_store(config) << "\n";
        std::cout << "working" << std::endl;
        signal_waiter.join();
    } else {
        try {
            server.listen(config.host, static_cast<unsigned short>(config.port));
        } catch (const std::exception& e) {
            throw std::runtime_error("cannot bind " + config.host + ":" + std::to_string(config.port) + ": " + e.what());
        }
        const unsigned port = server.port();
        std::cerr << "tilekit-service: listening on http://" << config.host << ":" << port << "\n";
        std::cout << "listening " << port << std::endl;
        server.run();
    }
    stopping = true;
    // Stop claiming; running jobs get the grace period, then are handed back to the queue.
    refusal_watch.join();
    if (workers) workers->stop();
    if (signal_waiter.joinable()) {
        pthread_kill(signal_waiter.native_handle(), SIGTERM);  // wakes it if listen ended otherwise
        signal_waiter.join();
    }
    std::cerr << "tilekit-service: stopped\n";
    return refusal.empty() ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
    std::vector<std::string> args(argv + 1, argv + argc);
    try {
        if (!args.empty() && (args[0] == "--help" || args[0] == "-h")) {
            std::cout << usage_text;
            return 0;
        }
        if (!args.empty() && args[0] == "add-user") return add_user({args.begin() + 1, args.end()});
        if (!args.empty() && args[0] == "serve") args.erase(args.begin());
        return serve(args);
    } catch (const config_error& e) {
        std::cerr << "tilekit-service: " << e.message << "\n" << usage_text;
        return 2;
    } catch (const std::exception& e) {
        std::cerr << "tilekit-service: " << e.what() << "\n";
        return 1;
    }
}
