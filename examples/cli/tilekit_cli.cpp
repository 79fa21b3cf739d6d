// tilekit: the command-line front end of the library.
//
//   tilekit tile INPUT OUTDIR [--layout dz|xyz|iiif] [--tile-size N] [--overlap N] [--format png|jpg|webp]
//                [--quality Q] [--lossless] [--webp-method 0..6] [--threads N] [--skip-blank]
//                [--background RRGGBB[AA]] [--basename NAME] [--iiif-base-url URL] [--max-pixels N]
//   tilekit tile INPUT s3://BUCKET/PREFIX/ [...]  uploads the tiles straight to S3 / R2
//   tilekit presign s3://BUCKET/KEY [--expires S] [--method GET|PUT|HEAD]
//   tilekit get s3://BUCKET/KEY FILE
//   tilekit put FILE s3://BUCKET/KEY [--content-type T]
//   tilekit upload DIR s3://BUCKET/PREFIX/      uploads a directory tree with the S3 sink
//   tilekit sample OUTPUT.png [--size WxH]     writes a generated map-like test image
//   tilekit jobs SUBCOMMAND ...                the tile-generation job queue (jobs_command.cpp;
//                                              built when the service's parts are, TILEKIT_CLI_JOBS)
//
// S3 endpoint and credentials come from the environment (AWS_ACCESS_KEY_ID,
// AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION, AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL)
// or from --endpoint URL, --region R, --r2-account ID, --virtual-host, --concurrency N.
//
// Exit status: 0 success, 1 failure (one line on stderr), 2 usage error; `tilekit jobs` adds
// 3 (the job was cancelled) and 4 (--timeout passed), see jobs_command.hpp.

#include <tilekit/fast_codecs.hpp>
#if TILEKIT_HAS_TIFF
#include <tilekit/tiff.hpp>  // TIFF / BigTIFF input, where tilekit::tiff is linked
#endif
#include <tilekit/s3.hpp>
#include <tilekit/tilekit.hpp>
#include <tilekit/webp.hpp>

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "sample_image.hpp"
#ifdef TILEKIT_CLI_JOBS
#include "jobs_command.hpp"
#endif

namespace {

const char* const usage_text =
    "usage: tilekit tile INPUT OUTDIR [--layout dz|xyz|iiif] [--tile-size N] [--overlap N]\n"
    "                    [--format png|jpg|webp] [--quality Q] [--lossless] [--webp-method 0..6]\n"
    "                    [--threads N] [--skip-blank]\n"
    "                    [--background RRGGBB[AA]] [--basename NAME] [--max-pixels N]\n"
    "                    [--iiif-base-url URL]  (IIIF: info.json's id is URL[/PREFIX]; default \".\")\n"
    "       tilekit tile INPUT s3://BUCKET/PREFIX/ [same options]\n"
    "       tilekit presign s3://BUCKET/KEY [--expires SECONDS] [--method GET|PUT|HEAD]\n"
    "       tilekit get s3://BUCKET/KEY FILE\n"
    "       tilekit put FILE s3://BUCKET/KEY [--content-type TYPE]\n"
    "       tilekit upload DIR s3://BUCKET/PREFIX/\n"
    "       tilekit sample OUTPUT.png [--size WxH]\n"
#ifdef TILEKIT_CLI_JOBS
    "       tilekit jobs enqueue|run|work|show|list|cancel|wait ...   the job queue (tilekit jobs --help)\n"
#endif
    "S3 options: --endpoint URL --region R --r2-account ID --virtual-host --concurrency N --allow-http\n"
    "(credentials: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN)\n";

struct usage_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

long parse_number(const std::string& flag, const std::string& text, long low, long high) {
    char* end = nullptr;
    errno = 0;
    const long value = std::strtol(text.c_str(), &end, 10);
    if (text.empty() || *end != '\0' || errno != 0 || value < low || value > high)
        throw usage_error(flag + " expects a number in " + std::to_string(low) + ".." + std::to_string(high) + ", got '" +
                          text + "'");
    return value;
}

tilekit::rgba_color parse_color(const std::string& text) {
    const bool ok = (text.size() == 6 || text.size() == 8) && text.find_first_not_of("0123456789abcdefABCDEF") == std::string::npos;
    if (!ok) throw usage_error("--background expects RRGGBB or RRGGBBAA hex, got '" + text + "'");
    const auto byte = [&](std::size_t at) { return static_cast<std::uint8_t>(std::stoul(text.substr(at, 2), nullptr, 16)); };
    return tilekit::rgba_color{byte(0), byte(2), byte(4), text.size() == 8 ? byte(6) : std::uint8_t{255}};
}

// Reports progress as a bar on a terminal and as a line per 10% otherwise (logs, CI).
class progress_printer {
public:
    explicit progress_printer(bool terminal) : terminal_(terminal), start_(std::chrono::steady_clock::now()) {}

    void operator()(const tilekit::tile_progress& p) {
        const int percent = p.tiles_total ? static_cast<int>(p.tiles_done * 100 / p.tiles_total) : 100;
        if (terminal_) {
            const int filled = percent * 30 / 100;
            std::fprintf(stderr, "\r[%-30s] %3d%%  %llu/%llu tiles", std::string(static_cast<std::size_t>(filled), '#').c_str(),
                         percent, static_cast<unsigned long long>(p.tiles_done), static_cast<unsigned long long>(p.tiles_total));
            if (p.tiles_done == p.tiles_total) std::fputc('\n', stderr);
        } else if (percent / 10 > last_decile_ || p.tiles_done == p.tiles_total) {
            last_decile_ = percent / 10;
            const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
            std::fprintf(stderr, "progress %3d%% %llu/%llu tiles %.1fs\n", percent, static_cast<unsigned long long>(p.tiles_done),
                         static_cast<unsigned long long>(p.tiles_total), seconds);
        }
        std::fflush(stderr);
    }

private:
    bool terminal_;
    int last_decile_ = 0;
    std::chrono::steady_clock::time_point start_;
};

struct s3_location {
    std::string bucket;
    std::string key;  // object key, or prefix for `tile`
};

bool is_s3_url(const std::string& text) { return text.rfind("s3://", 0) == 0; }

s3_location parse_s3_url(const std::string& text) {
    if (!is_s3_url(text)) throw usage_error("expected s3://BUCKET/KEY, got '" + text + "'");
    const std::string rest = text.substr(5);
    const std::size_t slash = rest.find('/');
    s3_location where{rest.substr(0, slash), slash == std::string::npos ? std::string() : rest.substr(slash + 1)};
    if (where.bucket.empty()) throw usage_error("no bucket in '" + text + "'");
    return where;
}

// S3 settings from the environment, overridden by flags.
struct s3_flags {
    std::string endpoint, region, r2_account;
    bool virtual_host = false;
    bool allow_http = false;
    unsigned concurrency = 0;

    // Consumes an S3 flag at args[i]; false when args[i] is not one.
    bool take(const std::vector<std::string>& args, std::size_t& i) {
        const std::string& arg = args[i];
        const auto value = [&]() -> const std::string& {
            if (i + 1 >= args.size()) throw usage_error(arg + " needs a value");
            return args[++i];
        };
        if (arg == "--endpoint") endpoint = value();
        else if (arg == "--region") region = value();
        else if (arg == "--r2-account") r2_account = value();
        else if (arg == "--virtual-host") virtual_host = true;
        else if (arg == "--allow-http") allow_http = true;
        else if (arg == "--concurrency") concurrency = static_cast<unsigned>(parse_number(arg, value(), 1, 1024));
        else return false;
        return true;
    }

    tilekit::s3::config config(const std::string& bucket) const {
        namespace s3 = tilekit::s3;
        if (!endpoint.empty()) setenv("AWS_ENDPOINT_URL_S3", endpoint.c_str(), 1);
        if (!region.empty()) setenv("AWS_REGION", region.c_str(), 1);
        s3::config c = s3::config_from_environment(bucket);
        if (!r2_account.empty()) c.target = s3::r2_endpoint(r2_account);
        if (virtual_host) c.style = s3::addressing::virtual_host;
        c.allow_insecure_http = allow_http;
        return c;
    }
};

volatile std::sig_atomic_t interrupted = 0;
extern "C" void on_interrupt(int) { interrupted = 1; }

int run_tile(const std::vector<std::string>& args) {
    std::vector<std::string> positional;
    tilekit::pyramid_options options;
    s3_flags s3;
    for (std::size_t i = 0; i < args.size(); ++i) {
        if (s3.take(args, i)) continue;
        const std::string& arg = args[i];
        const auto value = [&]() -> const std::string& {
            if (i + 1 >= args.size()) throw usage_error(arg + " needs a value");
            return args[++i];
        };
        if (arg == "--layout") {
            const std::string& v = value();
            if (v == "dz") options.layout = tilekit::layout_type::deep_zoom;
            else if (v == "xyz") options.layout = tilekit::layout_type::xyz;
            else if (v == "iiif") options.layout = tilekit::layout_type::iiif;
            else throw usage_error("--layout must be dz, xyz or iiif, got '" + v + "'");
        } else if (arg == "--format") {
            const std::string& v = value();
            if (v == "png") options.format = tilekit::tile_format::png;
            else if (v == "jpg" || v == "jpeg") options.format = tilekit::tile_format::jpeg;
            else if (v == "webp") options.format = tilekit::tile_format::webp;
            else throw usage_error("--format must be png, jpg or webp, got '" + v + "'");
        } else if (arg == "--lossless") {
            options.lossless = true;
        } else if (arg == "--webp-method") {
            options.webp_method = static_cast<int>(parse_number(arg, value(), 0, 6));
        } else if (arg == "--tile-size") {
            options.tile_size = static_cast<int>(parse_number(arg, value(), 1, 8192));
        } else if (arg == "--overlap") {
            options.overlap = static_cast<int>(parse_number(arg, value(), 0, 8192));
        } else if (arg == "--quality") {
            options.quality = static_cast<int>(parse_number(arg, value(), 1, 100));
        } else if (arg == "--threads") {
            options.threads = static_cast<unsigned>(parse_number(arg, value(), 1, 1024));
        } else if (arg == "--skip-blank") {
            options.skip_blank_tiles = true;
        } else if (arg == "--background") {
            options.background = parse_color(value());
        } else if (arg == "--basename") {
            options.basename = value();
        } else if (arg == "--iiif-base-url") {
            options.iiif_base_url = value();
        } else if (arg == "--max-pixels") {
            options.limits.max_pixels = static_cast<std::uint64_t>(parse_number(arg, value(), 1, 1L << 40));
        } else if (arg.size() > 1 && arg[0] == '-') {
            throw usage_error("unknown option '" + arg + "'");
        } else {
            positional.push_back(arg);
        }
    }
    if (positional.size() != 2) throw usage_error("tile needs INPUT and OUTDIR");

    progress_printer printer(isatty(STDERR_FILENO) != 0);
    options.on_progress = [&printer](const tilekit::tile_progress& p) { printer(p); };

    // Ctrl-C and SIGTERM cancel the run cleanly: no manifest is written for a partial pyramid.
    std::signal(SIGINT, on_interrupt);
    std::signal(SIGTERM, on_interrupt);
    std::atomic<bool> finished{false};
    tilekit::cancel_token cancel = options.cancel;
    std::thread watcher([&] {
        while (!finished.load()) {
            if (interrupted) cancel.cancel();
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
    });
    struct join_on_exit {
        std::atomic<bool>& finished;
        std::thread& thread;
        ~join_on_exit() {
            finished = true;
            thread.join();
        }
    } joiner{finished, watcher};

    tilekit::pyramid_metadata result;
    if (is_s3_url(positional[1])) {
        const s3_location where = parse_s3_url(positional[1]);
        options.prefix = where.key.empty() || where.key.back() == '/' ? where.key : where.key + "/";
        tilekit::s3::sink_options sink_options;
        if (s3.concurrency) sink_options.concurrency = s3.concurrency;
        tilekit::s3::s3_sink sink(s3.config(where.bucket), sink_options);
        result = tilekit::tile_file(positional[0], sink, options);
    } else {
        tilekit::filesystem_sink sink(positional[1]);
        result = tilekit::tile_file(positional[0], sink, options);
    }
    std::cout << nlohmann::json(result).dump(2) << std::endl;
    return 0;
}


// Uploads every regular file under `root` to PREFIX/relative/path through the S3 sink.
int upload_tree(const std::string& root, const s3_location& where, const s3_flags& s3) {
    tilekit::s3::sink_options options;
    if (s3.concurrency) options.concurrency = s3.concurrency;
    tilekit::s3::s3_sink sink(s3.config(where.bucket), options);
    const std::string prefix = where.key.empty() || where.key.back() == '/' ? where.key : where.key + "/";
    std::uint64_t files = 0, bytes = 0;
    for (const auto& entry : std::filesystem::recursive_directory_iterator(root)) {
        if (!entry.is_regular_file()) continue;
        tilekit::storage_object object;
        object.key = prefix + std::filesystem::relative(entry.path(), root).generic_string();
        object.body = tilekit::read_file_bytes(entry.path().string());
        object.content_type = tilekit::content_type_for_key(object.key);
        bytes += object.body.size();
        ++files;
        sink.put(std::move(object));
    }
    sink.flush();
    const tilekit::s3::sink_stats stats = sink.stats();
    std::cout << nlohmann::json{{"files", files}, {"bytes", bytes}, {"retries", stats.retries}}.dump() << std::endl;
    return 0;
}

// presign / get / put / upload: small S3 commands around tilekit::s3::client and s3_sink.
int run_s3_command(const std::string& command, const std::vector<std::string>& args) {
    std::vector<std::string> positional;
    s3_flags s3;
    long expires = 3600;
    std::string method = "GET";
    std::string content_type = "application/octet-stream";
    for (std::size_t i = 0; i < args.size(); ++i) {
        if (s3.take(args, i)) continue;
        const std::string& arg = args[i];
        const auto value = [&]() -> const std::string& {
            if (i + 1 >= args.size()) throw usage_error(arg + " needs a value");
            return args[++i];
        };
        if (arg == "--expires" && command == "presign") expires = parse_number(arg, value(), 1, 604800);
        else if (arg == "--method" && command == "presign") method = value();
        else if (arg == "--content-type" && command == "put") content_type = value();
        else if (arg.size() > 1 && arg[0] == '-') throw usage_error("unknown option '" + arg + "'");
        else positional.push_back(arg);
    }
    if (command == "presign") {
        if (positional.size() != 1) throw usage_error("presign needs s3://BUCKET/KEY");
        if (method != "GET" && method != "PUT" && method != "HEAD") throw usage_error("--method must be GET, PUT or HEAD");
        const s3_location where = parse_s3_url(positional[0]);
        tilekit::s3::client client(s3.config(where.bucket));
        std::cout << client.presign(method, where.key, std::chrono::seconds(expires)) << std::endl;
        return 0;
    }
    if (positional.size() != 2) throw usage_error(command + " needs two arguments");
    if (command == "upload") return upload_tree(positional[0], parse_s3_url(positional[1]), s3);
    if (command == "get") {
        const s3_location where = parse_s3_url(positional[0]);
        tilekit::s3::client client(s3.config(where.bucket));
        client.get_to_file(where.key, positional[1]);
        return 0;
    }
    const s3_location where = parse_s3_url(positional[1]);
    tilekit::s3::client client(s3.config(where.bucket));
    tilekit::s3::put_options put;
    put.content_type = content_type;
    client.put(where.key, tilekit::read_file_bytes(positional[0]), put);
    return 0;
}

int run_sample(const std::vector<std::string>& args) {
    std::vector<std::string> positional;
    int width = 4096, height = 3072;
    for (std::size_t i = 0; i < args.size(); ++i) {
        if (args[i] == "--size") {
            if (i + 1 >= args.size()) throw usage_error("--size needs WxH");
            const std::string& v = args[++i];
            const std::size_t x = v.find('x');
            if (x == std::string::npos) throw usage_error("--size expects WxH, got '" + v + "'");
            width = static_cast<int>(parse_number("--size", v.substr(0, x), 1, 32768));
            height = static_cast<int>(parse_number("--size", v.substr(x + 1), 1, 32768));
        } else if (args[i].size() > 1 && args[i][0] == '-') {
            throw usage_error("unknown option '" + args[i] + "'");
        } else {
            positional.push_back(args[i]);
        }
    }
    if (positional.size() != 1) throw usage_error("sample needs OUTPUT.png");
    const tilekit::image_buffer image = tilekit_examples::make_sample_map(width, height);
    tilekit::libdeflate_png_encoder encoder(6, tilekit::png_filter::adaptive);
    std::vector<std::uint8_t> png;
    encoder.encode(image.view(), png);
    std::FILE* file = std::fopen(positional[0].c_str(), "wb");
    if (!file || std::fwrite(png.data(), 1, png.size(), file) != png.size() || std::fclose(file) != 0)
        throw tilekit::error(tilekit::errc::io_error, "cannot write '" + positional[0] + "'");
    std::cerr << "wrote " << positional[0] << " (" << width << "x" << height << ", " << png.size() << " bytes)\n";
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    const std::vector<std::string> args(argv + 1, argv + argc);
    try {
        if (args.empty() || args[0] == "--help" || args[0] == "-h") {
            (args.empty() ? std::cerr : std::cout) << usage_text;
#ifdef TILEKIT_CLI_JOBS
            if (!args.empty()) std::cout << "\n" << tilekit_cli::jobs_usage_text;
#endif
            return args.empty() ? 2 : 0;
        }
        const std::vector<std::string> rest(args.begin() + 1, args.end());
        if (args[0] == "tile") return run_tile(rest);
#ifdef TILEKIT_CLI_JOBS
        if (args[0] == "jobs") return tilekit_cli::jobs_main(rest);
#endif
        if (args[0] == "sample") return run_sample(rest);
        if (args[0] == "presign" || args[0] == "get" || args[0] == "put" || args[0] == "upload")
            return run_s3_command(args[0], rest);
        throw usage_error("unknown command '" + args[0] + "'");
    } catch (const usage_error& e) {
        std::cerr << "tilekit: " << e.what() << "\n" << usage_text;
        return 2;
    } catch (const tilekit::error& e) {
        std::cerr << "tilekit: " << e.what() << " [" << tilekit::to_string(e.code()) << "]\n";
        return 1;
    } catch (const std::exception& e) {
        std::cerr << "tilekit: " << e.what() << "\n";
        return 1;
    }
}
