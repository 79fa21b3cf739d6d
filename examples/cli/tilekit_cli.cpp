// tilekit: the command-line front end of the library.
//
//   tilekit tile INPUT OUTDIR [--layout dz|xyz] [--tile-size N] [--overlap N] [--format png|jpg]
//                [--quality Q] [--threads N] [--skip-blank] [--background RRGGBB[AA]]
//                [--basename NAME] [--max-pixels N]
//   tilekit sample OUTPUT.png [--size WxH]     writes a generated map-like test image
//
// Exit status: 0 success, 1 failure (one line on stderr), 2 usage error.

#include <tilekit/fast_codecs.hpp>
#include <tilekit/streaming_decode.hpp>
#include <tilekit/tilekit.hpp>

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "sample_image.hpp"

namespace {

const char* const usage_text =
    "usage: tilekit tile INPUT OUTDIR [--layout dz|xyz] [--tile-size N] [--overlap N]\n"
    "                    [--format png|jpg] [--quality Q] [--threads N] [--skip-blank]\n"
    "                    [--background RRGGBB[AA]] [--basename NAME] [--max-pixels N]\n"
    "       tilekit sample OUTPUT.png [--size WxH]\n";

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

volatile std::sig_atomic_t interrupted = 0;
extern "C" void on_interrupt(int) { interrupted = 1; }

int run_tile(const std::vector<std::string>& args) {
    std::vector<std::string> positional;
    tilekit::pyramid_options options;
    tilekit::decode_limits limits;
    for (std::size_t i = 0; i < args.size(); ++i) {
        const std::string& arg = args[i];
        const auto value = [&]() -> const std::string& {
            if (i + 1 >= args.size()) throw usage_error(arg + " needs a value");
            return args[++i];
        };
        if (arg == "--layout") {
            const std::string& v = value();
            if (v == "dz") options.layout = tilekit::layout_type::deep_zoom;
            else if (v == "xyz") options.layout = tilekit::layout_type::xyz;
            else throw usage_error("--layout must be dz or xyz, got '" + v + "'");
        } else if (arg == "--format") {
            const std::string& v = value();
            if (v == "png") options.format = tilekit::tile_format::png;
            else if (v == "jpg" || v == "jpeg") options.format = tilekit::tile_format::jpeg;
            else throw usage_error("--format must be png or jpg, got '" + v + "'");
        } else if (arg == "--tile-size") {
            options.tile_size = static_cast<int>(parse_number(arg, value(), 1, 8192));
        } else if (arg == "--overlap") {
            options.overlap = static_cast<int>(parse_number(arg, value(), 0, 8192));
        } else if (arg == "--quality") {
            options.quality = static_cast<int>(parse_number(arg, value(), 1, 100));
        } else if (arg == "--threads") {
            options.tiling.threads = static_cast<unsigned>(parse_number(arg, value(), 1, 1024));
        } else if (arg == "--skip-blank") {
            options.tiling.skip_blank_tiles = true;
        } else if (arg == "--background") {
            options.tiling.background = parse_color(value());
        } else if (arg == "--basename") {
            options.basename = value();
        } else if (arg == "--max-pixels") {
            limits.max_pixels = static_cast<std::uint64_t>(parse_number(arg, value(), 1, 1L << 40));
        } else if (arg.size() > 1 && arg[0] == '-') {
            throw usage_error("unknown option '" + arg + "'");
        } else {
            positional.push_back(arg);
        }
    }
    if (positional.size() != 2) throw usage_error("tile needs INPUT and OUTDIR");

    progress_printer printer(isatty(STDERR_FILENO) != 0);
    options.tiling.on_progress = [&printer](const tilekit::tile_progress& p) { printer(p); };

    // Ctrl-C and SIGTERM cancel the run cleanly: no manifest is written for a partial pyramid.
    std::signal(SIGINT, on_interrupt);
    std::signal(SIGTERM, on_interrupt);
    std::atomic<bool> finished{false};
    tilekit::cancel_token cancel = options.tiling.cancel;
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

    tilekit::filesystem_sink sink(positional[1]);
    const tilekit::pyramid_metadata result = tilekit::tile_file<tilekit::fast_codecs>(positional[0], sink, options, limits);
    std::cout << nlohmann::json(result).dump(2) << std::endl;
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
            std::cerr << usage_text;
            return args.empty() ? 2 : 0;
        }
        const std::vector<std::string> rest(args.begin() + 1, args.end());
        if (args[0] == "tile") return run_tile(rest);
        if (args[0] == "sample") return run_sample(rest);
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
