#pragma once
// The pyramid tiler: a row-streaming pipeline in the manner of libvips. A row source hands
// full-resolution rows top to bottom; each level keeps only the band of rows its current tile
// row needs, cuts tiles as soon as the band is complete, and feeds every pair of its rows,
// reduced 2x2, to the next level. Tiles are encoded on a pool of threads and handed to the sink
// as they are made; the layout's manifest and the JSON metadata are written last, after the
// sink has confirmed every tile, so their presence means the pyramid is complete.

#include <tilekit/detail/downsample.hpp>
#include <tilekit/detail/progress_reporter.hpp>
#include <tilekit/detail/task_pool.hpp>
#include <tilekit/detail/tile_pixels.hpp>
#include <tilekit/error.hpp>
#include <tilekit/image.hpp>
#include <tilekit/key.hpp>
#include <tilekit/layout.hpp>
#include <tilekit/metadata.hpp>
#include <tilekit/progress.hpp>
#include <tilekit/row_source.hpp>
#include <tilekit/sink.hpp>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

TILEKIT_NAMESPACE_BEGIN

struct tile_options {
    std::string prefix;                        // prepended to every key, e.g. "maps/42/" (keep the slash)
    std::string metadata_key = "pyramid.json";  // relative to prefix; written last
    unsigned threads = 0;                      // encoder threads; 0 = one per core
    bool skip_blank_tiles = false;             // do not write tiles whose pixels are all alpha 0
    std::optional<rgba_color> background;      // padding (XYZ) and alpha flattening (JPEG; default white)
    std::string tile_cache_control = "public, max-age=86400";
    std::string manifest_cache_control = "no-cache";
    progress_callback on_progress;
    cancel_token cancel;
    // Recorded in the metadata (pyramid.json) as they are; tile_file() and tile_memory() fill
    // them: the input's format as sniffed ("png", "jpeg", "tiff", "webp") and the tile
    // encoder's settings ({"quality": 85}, {"lossless": true, "method": 2}, ...).
    std::string source_format;
    nlohmann::json encoding = nlohmann::json::object();
};

namespace detail {

// Whether a layout names more keys for a tile (layout.hpp: tile_aliases, optional).
template <class Layout, class = void>
struct has_tile_aliases : std::false_type {};
template <class Layout>
struct has_tile_aliases<Layout, std::void_t<decltype(std::declval<const Layout&>().tile_aliases(
                                    std::declval<const level_geometry&>(), 0, 0, std::declval<const std::string&>()))>>
    : std::true_type {};

template <class Layout, class = void>
struct has_repeated_tiles : std::false_type {};
template <class Layout>
struct has_repeated_tiles<Layout, std::void_t<decltype(std::declval<const Layout&>().repeats_finer_tile(
                                      std::declval<const level_geometry&>(), 0, 0))>> : std::true_type {};

template <class Layout, class Encoder>
class pyramid_builder {
public:
    pyramid_builder(const Layout& layout, const Encoder& encoder, storage_sink& sink, const tile_options& options, int width,
                    int height, int channels)
        : layout_(layout),
          encoder_(encoder),
          sink_(sink),
          options_(options),
          channels_(channels),
          extension_(encoder.extension()),
          content_type_(encoder.content_type()),
          cancel_(options.cancel) {
        if (channels < 1 || channels > 4)
            throw error(errc::invalid_argument, "images must have 1..4 channels, got " + std::to_string(channels));
        const std::vector<level_geometry> levels = layout.levels(width, height);
        std::uint64_t total = 0;
        for (const level_geometry& level : levels) {
            stages_.emplace_back(make_stage(level));
            total += level.tile_count();
        }
        total_tiles_ = total;
        const rgba_color* background = options.background ? &*options.background : nullptr;
        interior_format_ = choose_tile_format(channels, encoder.supports_alpha(), false, background);
        edge_format_ = choose_tile_format(channels, encoder.supports_alpha(), layout.pads_edges(), background);
    }

    template <class RowSource>
    pyramid_metadata run(RowSource& source) {
        progress_reporter progress(options_.on_progress, total_tiles_);
        progress_ = &progress;
        unsigned threads = options_.threads ? options_.threads : std::thread::hardware_concurrency();
        if (threads == 0) threads = 1;
        // The calling thread streams rows and runs tasks itself when the queue is full, so with
        // one thread requested no worker is started at all.
        detail::task_pool pool(threads > 1 ? threads : 0, std::size_t{threads} * 4);
        pool_ = &pool;

        const int height = stages_.front().geometry.height;
        for (int y = 0; y < height; ++y) {
            if (cancel_.is_cancelled() || pool.failed()) break;
            push_row(0, source.next_row());
        }
        pool.wait();
        if (cancel_.is_cancelled()) throw cancelled_error();
        sink_.flush();
        if (cancel_.is_cancelled()) throw cancelled_error();
        return finish();
    }

private:
    struct stage {
        level_geometry geometry;
        std::size_t row_bytes = 0;
        std::vector<std::uint8_t> band;  // rows band_first .. band_first + band_rows - 1
        int band_first = 0;
        int band_rows = 0;
        int next_tile_row = 0;
        int rows_received = 0;
        std::vector<std::uint8_t> pending;  // the upper row of the next 2x2 reduction
        bool has_pending = false;
        std::vector<std::uint8_t> reduced;  // output row for the next level
    };

    stage make_stage(const level_geometry& level) const {
        stage s;
        s.geometry = level;
        s.row_bytes = static_cast<std::size_t>(level.width) * static_cast<std::size_t>(channels_);
        int tallest = 0;
        for (int r = 0; r < level.rows; ++r) tallest = std::max(tallest, layout_.region(level, 0, r).height);
        s.band.resize(s.row_bytes * static_cast<std::size_t>(tallest));
        return s;
    }

    void push_row(std::size_t index, const std::uint8_t* row) {
        stage& s = stages_[index];
        std::memcpy(s.band.data() + s.row_bytes * static_cast<std::size_t>(s.band_rows), row, s.row_bytes);
        ++s.band_rows;
        ++s.rows_received;
        emit_ready_tile_rows(s);

        if (index + 1 == stages_.size()) return;
        const bool last_row = s.rows_received == s.geometry.height;
        if (!s.has_pending && !last_row) {
            s.pending.assign(row, row + s.row_bytes);
            s.has_pending = true;
            return;
        }
        const std::uint8_t* upper = s.has_pending ? s.pending.data() : row;  // odd last row pairs with itself
        s.reduced.resize(stages_[index + 1].row_bytes);
        downsample_rows(channels_, upper, row, s.geometry.width, s.reduced.data());
        s.has_pending = false;
        push_row(index + 1, s.reduced.data());
    }

    void emit_ready_tile_rows(stage& s) {
        const level_geometry& level = s.geometry;
        while (s.next_tile_row < level.rows) {
            const tile_region first = layout_.region(level, 0, s.next_tile_row);
            if (s.band_first + s.band_rows < first.y + first.height) return;
            emit_tile_row(s, s.next_tile_row);
            ++s.next_tile_row;
            if (s.next_tile_row == level.rows) return;
            const int keep_from = layout_.region(level, 0, s.next_tile_row).y;
            const int drop = keep_from - s.band_first;
            if (drop > 0) {
                const int kept = s.band_rows - drop;
                std::memmove(s.band.data(), s.band.data() + s.row_bytes * static_cast<std::size_t>(drop),
                             s.row_bytes * static_cast<std::size_t>(kept));
                s.band_first = keep_from;
                s.band_rows = kept;
            }
        }
    }

    void emit_tile_row(stage& s, int row) {
        const level_geometry& level = s.geometry;
        std::vector<const std::uint8_t*> rows;
        for (int column = 0; column < level.columns; ++column) {
            if constexpr (has_repeated_tiles<Layout>::value) {
                if (layout_.repeats_finer_tile(level, column, row)) {  // written at the finer level
                    progress_->tile_finished();
                    continue;
                }
            }
            const tile_region region = layout_.region(level, column, row);
            rows.resize(static_cast<std::size_t>(region.height));
            for (int y = 0; y < region.height; ++y)
                rows[static_cast<std::size_t>(y)] =
                    s.band.data() + s.row_bytes * static_cast<std::size_t>(region.y + y - s.band_first);
            if (options_.skip_blank_tiles && region_is_blank(rows.data(), region, channels_)) {
                skipped_tiles_.fetch_add(1, std::memory_order_relaxed);
                progress_->tile_finished();
                continue;
            }
            const bool padded = region.out_width != region.width || region.out_height != region.height;
            const tile_pixel_format& format = padded ? edge_format_ : interior_format_;
            std::vector<std::uint8_t> pixels;
            assemble_tile(rows.data(), region, format, pixels);
            std::string key = options_.prefix + layout_.tile_key(level, column, row, extension_);
            std::vector<std::string> aliases;
            if constexpr (has_tile_aliases<Layout>::value)
                for (const std::string& alias : layout_.tile_aliases(level, column, row, extension_))
                    aliases.push_back(options_.prefix + alias);
            pool_->submit([this, pixels = std::move(pixels), key = std::move(key), aliases = std::move(aliases), region,
                           channels = format.tile_channels]() mutable {
                if (cancel_.is_cancelled()) return;
                storage_object object;
                object.key = std::move(key);
                encoder_.encode(image_view{pixels.data(), region.out_width, region.out_height, channels,
                                           static_cast<std::size_t>(region.out_width) * static_cast<std::size_t>(channels)},
                                object.body);
                object.content_type = content_type_;
                object.cache_control = options_.tile_cache_control;
                const std::uint64_t bytes = object.body.size();
                for (std::string& alias : aliases) {  // copies first: `object` is moved into the sink last
                    storage_object copy = object;
                    copy.key = std::move(alias);
                    sink_.put(std::move(copy));
                }
                sink_.put(std::move(object));
                written_tiles_.fetch_add(1 + aliases.size(), std::memory_order_relaxed);
                written_bytes_.fetch_add(bytes * (1 + aliases.size()), std::memory_order_relaxed);
                progress_->tile_finished();
            });
        }
    }

    pyramid_metadata finish() {
        pyramid_metadata m;
        const level_geometry& full = stages_.front().geometry;
        m.layout = Layout::name();
        m.format = extension_;
        m.source_format = options_.source_format;
        m.encoding = options_.encoding.is_object() ? options_.encoding : nlohmann::json::object();
        m.width = full.width;
        m.height = full.height;
        m.channels = channels_;
        m.tile_size = layout_.tile_size();
        m.overlap = layout_.overlap();
        m.levels = static_cast<int>(stages_.size());
        m.min_level = stages_.back().geometry.index;
        m.max_level = full.index;
        m.tile_count = written_tiles_.load();
        m.skipped_tiles = skipped_tiles_.load();
        m.total_bytes = written_bytes_.load();
        m.tile_url_template = layout_.tile_url_template(extension_);
        m.manifest = layout_.manifest_key();
        for (auto it = stages_.rbegin(); it != stages_.rend(); ++it) m.level_sizes.push_back(it->geometry);

        if (!m.manifest.empty()) {
            const std::string text = layout_.manifest(m.width, m.height, extension_);
            put_manifest(m.manifest, text, content_type_for_key(m.manifest));  // .dzi: XML, info.json: JSON
            sink_.flush();  // the layout manifest lands before the metadata that declares completion
        }
        put_manifest(options_.metadata_key, nlohmann::json(m).dump(2) + "\n", "application/json");
        sink_.flush();
        return m;
    }

    void put_manifest(const std::string& key, const std::string& text, const char* content_type) {
        storage_object object;
        object.key = options_.prefix + key;
        object.body.assign(text.begin(), text.end());
        object.content_type = content_type;
        object.cache_control = options_.manifest_cache_control;
        sink_.put(std::move(object));
    }

    const Layout& layout_;
    const Encoder& encoder_;
    storage_sink& sink_;
    const tile_options& options_;
    const int channels_;
    const std::string extension_;
    const std::string content_type_;
    cancel_token cancel_;
    std::vector<stage> stages_;
    std::uint64_t total_tiles_ = 0;
    tile_pixel_format interior_format_;
    tile_pixel_format edge_format_;
    progress_reporter* progress_ = nullptr;
    task_pool* pool_ = nullptr;
    std::atomic<std::uint64_t> written_tiles_{0};
    std::atomic<std::uint64_t> skipped_tiles_{0};
    std::atomic<std::uint64_t> written_bytes_{0};
};

}  // namespace detail

// The compile-time entry point: tiles `source` with a layout, an encoder and a sink chosen as
// types (see the contracts in row_source.hpp, layout.hpp, encode.hpp and sink.hpp). `source`
// is a row source or an image in memory (anything convertible to image_view). Returns the
// pyramid's metadata, which is also written, last, as options.metadata_key. Throws
// tilekit::error on bad options, cancelled_error when cancelled, and whatever the source or the
// sink throws; in every failure case no manifest is written.
template <class Source, class Layout, class Encoder>
pyramid_metadata generate_pyramid(Source&& source, const Layout& layout, const Encoder& encoder, storage_sink& sink,
                                  const tile_options& options = {}) {
    if constexpr (std::is_convertible_v<Source, image_view>) {
        image_row_source rows{image_view(source)};
        return generate_pyramid(rows, layout, encoder, sink, options);
    } else {
        detail::pyramid_builder<Layout, Encoder> builder(layout, encoder, sink, options, source.width(),
                                                         source.height(), source.channels());
        return builder.run(source);
    }
}

TILEKIT_NAMESPACE_END
