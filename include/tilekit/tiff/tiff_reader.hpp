#pragma once
// A streaming TIFF / BigTIFF decoder on libtiff: a row source (row_source.hpp) that never holds
// the image. Striped files with interleaved samples are read one scanline per next_row()
// (libtiff reads a large strip's compressed data piecewise); tiled files, and striped files with
// one plane per sample, one band at a time (a row of tiles, or one strip of each plane).
//
// Read: the first image (IFD) of classic TIFF and BigTIFF, little- and big-endian; compression
// none, LZW, Deflate (both tags), JPEG (YCbCr converted to RGB by libjpeg), PackBits and CCITT
// RLE/G3/G4; unsigned samples of 1, 2, 4, 8 or 16 bits; min-is-black and min-is-white gray,
// RGB and palette, each with an optional alpha (the first extra sample). Anything else (CMYK,
// Lab, raw YCbCr, signed or floating-point samples, old-style JPEG, other codecs) is refused
// with errc::corrupt_image naming what it is.
//
// Conversions, chosen to match what `vips dzsave` makes of the same file:
// - 16-bit samples keep their high byte (v >> 8), as vips does when it saves 8-bit tiles and as
//   tilekit's PNG readers do; 1-, 2- and 4-bit samples are scaled to 0..255.
// - min-is-white gray is inverted; palette indices become RGB (the colormap's high byte, or its
//   value when every entry is below 256: an 8-bit colormap written by a careless writer).
// - The first extra sample is alpha, whatever ExtraSamples says about it (vips does the same).
//   Associated (premultiplied) alpha is unpremultiplied at the source's precision (v * max / a,
//   truncated, as vips does on load; 0 where alpha is 0), since tiles are PNG-style unassociated
//   RGBA; unassociated or unspecified alpha is kept as it is. Other extra samples are dropped.
//
// Limits: the pixel limit is checked from the header and the memory this reader and libtiff
// need (scanline or band, tile or strip buffers, libtiff's raw-data buffer) is estimated and held
// to decode_limits::max_memory_bytes before any pixel buffer is allocated; libtiff's own
// allocations are capped at the same budget (TIFFOpenOptionsSetMaxSingleMemAlloc). There is no
// end marker in TIFF, so decode_limits::accept_damaged changes nothing: any error libtiff
// reports is an error.

#include <tilekit/decode.hpp>
#include <tilekit/error.hpp>
#include <tilekit/input_readers.hpp>
#include <tilekit/row_source.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <sys/types.h>
#include <tiffio.h>

TILEKIT_NAMESPACE_BEGIN
namespace detail {

// Where libtiff reads from (an open file or bytes in memory) and what went wrong. libtiff calls
// back into these through its client procedures, so the address must stay put.
struct tiff_input {
    std::FILE* file = nullptr;  // owned
    const std::uint8_t* data = nullptr;
    std::uint64_t size = 0;
    std::uint64_t position = 0;
    std::string label;           // "'path': " or empty
    bool ran_off_end = false;    // a read began inside the file and stopped at its end
    bool pointed_past = false;   // a read began past the end of the file
    char message[512] = {0};     // libtiff's first error

    ~tiff_input() {
        if (file) std::fclose(file);
    }
};

inline std::uint64_t tiff_mul(std::uint64_t a, std::uint64_t b) noexcept {
    if (a != 0 && b > UINT64_MAX / a) return UINT64_MAX;
    return a * b;
}

inline std::uint64_t tiff_add(std::uint64_t a, std::uint64_t b) noexcept { return b > UINT64_MAX - a ? UINT64_MAX : a + b; }

// The memory budget's refusal, worded as the PNG and JPEG readers word it (this part does not
// include theirs: fast_codecs/detail/memory_budget.hpp is in another layer).
inline void tiff_refuse_over_budget(const std::string& label, const char* format, std::uint64_t estimate, std::uint64_t budget) {
    if (estimate <= budget) return;
    throw error(errc::over_memory_budget, label + "decoding this " + format + " needs about " + std::to_string(estimate) +
                                              " bytes, over the memory budget of " + std::to_string(budget) +
                                              " bytes (decode_limits::max_memory_bytes)");
}

extern "C" inline tmsize_t tilekit_tiff_read(thandle_t handle, void* out, tmsize_t size) {
    auto* input = static_cast<tiff_input*>(handle);
    if (size <= 0) return 0;
    const std::uint64_t wanted = static_cast<std::uint64_t>(size);
    if (input->position >= input->size) {
        (input->position == input->size ? input->ran_off_end : input->pointed_past) = true;
        return 0;
    }
    const std::uint64_t available = input->size - input->position;
    const std::uint64_t n = std::min(wanted, available);
    if (n < wanted) input->ran_off_end = true;
    std::size_t got = 0;
    if (input->file) {
        if (fseeko(input->file, static_cast<off_t>(input->position), SEEK_SET) != 0) return -1;
        got = std::fread(out, 1, static_cast<std::size_t>(n), input->file);
    } else {
        std::memcpy(out, input->data + input->position, static_cast<std::size_t>(n));
        got = static_cast<std::size_t>(n);
    }
    input->position += got;
    return static_cast<tmsize_t>(got);
}

extern "C" inline tmsize_t tilekit_tiff_write(thandle_t, void*, tmsize_t) { return 0; }

extern "C" inline toff_t tilekit_tiff_seek(thandle_t handle, toff_t offset, int whence) {
    auto* input = static_cast<tiff_input*>(handle);
    std::uint64_t base = 0;
    if (whence == SEEK_CUR) base = input->position;
    else if (whence == SEEK_END) base = input->size;
    else if (whence != SEEK_SET) return static_cast<toff_t>(-1);
    if (offset > UINT64_MAX - base) return static_cast<toff_t>(-1);
    input->position = base + offset;
    return input->position;
}

extern "C" inline int tilekit_tiff_close(thandle_t) { return 0; }
extern "C" inline toff_t tilekit_tiff_size(thandle_t handle) { return static_cast<tiff_input*>(handle)->size; }
extern "C" inline int tilekit_tiff_map(thandle_t, void**, toff_t*) { return 0; }
extern "C" inline void tilekit_tiff_unmap(thandle_t, void*, toff_t) {}

extern "C" inline int tilekit_tiff_error(TIFF*, void* user, const char* module, const char* format, va_list args) {
    auto* input = static_cast<tiff_input*>(user);
    if (!input->message[0]) {
        char text[400];
        std::vsnprintf(text, sizeof text, format, args);
        std::snprintf(input->message, sizeof input->message, "%s%s%s", module ? module : "", module ? ": " : "", text);
    }
    return 1;  // handled: nothing on stderr
}

extern "C" inline int tilekit_tiff_warning(TIFF*, void*, const char*, const char*, va_list) { return 1; }

// Compression schemes this reader lets libtiff decode (README: "TIFF input").
inline bool tiff_compression_allowed(std::uint16_t compression) {
    switch (compression) {
        case COMPRESSION_NONE:
        case COMPRESSION_CCITTRLE:
        case COMPRESSION_CCITTFAX3:
        case COMPRESSION_CCITTFAX4:
        case COMPRESSION_LZW:
        case COMPRESSION_JPEG:
        case COMPRESSION_ADOBE_DEFLATE:
        case COMPRESSION_DEFLATE:
        case COMPRESSION_PACKBITS:
            return true;
        default:
            return false;
    }
}

inline std::string tiff_photometric_name(std::uint16_t photometric) {
    switch (photometric) {
        case PHOTOMETRIC_SEPARATED: return "CMYK (separated)";
        case PHOTOMETRIC_YCBCR: return "YCbCr";
        case PHOTOMETRIC_CIELAB: return "CIE L*a*b*";
        case PHOTOMETRIC_ICCLAB: return "ICC L*a*b*";
        case PHOTOMETRIC_ITULAB: return "ITU L*a*b*";
        case PHOTOMETRIC_LOGL: return "LogL";
        case PHOTOMETRIC_LOGLUV: return "LogLuv";
        case PHOTOMETRIC_MASK: return "transparency mask";
        default: return "photometric " + std::to_string(photometric);
    }
}

}  // namespace detail

class tiff_row_reader final : public row_source {
public:
    // Refuses images over `limits` (pixels, memory budget) and formats it does not read from the
    // header, before anything is allocated for pixels. Never null.
    static std::unique_ptr<tiff_row_reader> open_file(const std::string& path, const decode_limits& limits = {}) {
        std::unique_ptr<tiff_row_reader> reader(new tiff_row_reader());
        detail::tiff_input& input = reader->input_;
        input.label = "'" + path + "': ";
        input.file = std::fopen(path.c_str(), "rb");
        if (!input.file) throw error(errc::io_error, "cannot open '" + path + "': " + std::strerror(errno));
        std::error_code ec;
        if (std::filesystem::is_directory(path, ec)) throw error(errc::io_error, "cannot read '" + path + "': it is a directory");
        if (fseeko(input.file, 0, SEEK_END) != 0) throw error(errc::io_error, "cannot read '" + path + "' (not a regular file?)");
        const off_t end = ftello(input.file);
        if (end < 0) throw error(errc::io_error, "cannot read '" + path + "' (not a regular file?)");
        input.size = static_cast<std::uint64_t>(end);
        reader->open(limits);
        return reader;
    }

    // The bytes must outlive the reader.
    static std::unique_ptr<tiff_row_reader> open_memory(const std::uint8_t* data, std::size_t size,
                                                       const decode_limits& limits = {}) {
        std::unique_ptr<tiff_row_reader> reader(new tiff_row_reader());
        reader->input_.data = data;
        reader->input_.size = size;
        reader->open(limits);
        return reader;
    }

    ~tiff_row_reader() override {
        if (tiff_) TIFFClose(tiff_);
    }
    tiff_row_reader(const tiff_row_reader&) = delete;
    tiff_row_reader& operator=(const tiff_row_reader&) = delete;

    int width() const override { return width_; }
    int height() const override { return height_; }
    int channels() const override { return channels_; }

    bool tiled() const noexcept { return tiled_; }
    bool bigtiff() const noexcept { return bigtiff_; }
    int bits_per_sample() const noexcept { return bits_; }
    bool associated_alpha() const noexcept { return associated_; }
    // Rows decoded at a time: 1 (scanlines), or the tile or strip height.
    int band_height() const noexcept { return scanlines_ ? 1 : unit_height_; }

    const std::uint8_t* next_row() override {
        if (next_ >= height_) throw error(errc::invalid_argument, "tiff_row_reader: read past the last row");
        const int y = next_++;
        if (scanlines_) {
            if (TIFFReadScanline(tiff_, units_[0].data(), static_cast<std::uint32_t>(y), 0) < 0) fail("cannot decode TIFF");
            if (passthrough_) return units_[0].data();
            const std::uint8_t* planes[1] = {units_[0].data()};
            convert(planes, 0, row_.data(), static_cast<std::size_t>(width_));
            return row_.data();
        }
        const int in_band = y % unit_height_;
        if (in_band == 0) fill_band(y);
        return row_.data() + static_cast<std::size_t>(in_band) * row_bytes();
    }

private:
    tiff_row_reader() = default;

    std::size_t row_bytes() const noexcept { return static_cast<std::size_t>(width_) * static_cast<std::size_t>(channels_); }

    void open(const decode_limits& limits) {
        const std::string& label = input_.label;
        if (input_.size == 0) throw error(errc::empty_input, label + "image is empty (0 bytes)");
        std::unique_ptr<TIFFOpenOptions, void (*)(TIFFOpenOptions*)> options(TIFFOpenOptionsAlloc(), TIFFOpenOptionsFree);
        if (!options) throw std::bad_alloc();
        // Every allocation libtiff makes (tag arrays, strip offsets, buffers) within the budget.
        TIFFOpenOptionsSetMaxSingleMemAlloc(options.get(), static_cast<tmsize_t>(std::min<std::uint64_t>(
                                                               std::max<std::uint64_t>(limits.max_memory_bytes, 1 << 16), INT64_MAX)));
        TIFFOpenOptionsSetErrorHandlerExtR(options.get(), detail::tilekit_tiff_error, &input_);
        TIFFOpenOptionsSetWarningHandlerExtR(options.get(), detail::tilekit_tiff_warning, &input_);
        // "m": no memory mapping (the file is read through tiff_input, so the memory it costs is
        // what this reader allocates, not a mapping of the whole file).
        tiff_ = TIFFClientOpenExt("TIFF", "rm", &input_, detail::tilekit_tiff_read,
                                  detail::tilekit_tiff_write, detail::tilekit_tiff_seek, detail::tilekit_tiff_close,
                                  detail::tilekit_tiff_size, detail::tilekit_tiff_map, detail::tilekit_tiff_unmap, options.get());
        if (!tiff_) fail("cannot read TIFF header");
        bigtiff_ = TIFFIsBigTIFF(tiff_) != 0;
        tiled_ = TIFFIsTiled(tiff_) != 0;

        std::uint32_t width = 0, height = 0;
        if (!TIFFGetField(tiff_, TIFFTAG_IMAGEWIDTH, &width) || !TIFFGetField(tiff_, TIFFTAG_IMAGELENGTH, &height) ||
            width == 0 || height == 0)
            throw error(errc::corrupt_image, label + "TIFF header has no image size (ImageWidth, ImageLength)");
        try {
            detail::refuse_over_limit(width, height, limits);
        } catch (const error& e) {
            throw error(e.code(), label + e.what());
        }

        std::uint16_t samples = 1, bits = 1, format = SAMPLEFORMAT_UINT, planar = PLANARCONFIG_CONTIG,
                      compression = COMPRESSION_NONE, photometric = 0;
        TIFFGetFieldDefaulted(tiff_, TIFFTAG_SAMPLESPERPIXEL, &samples);
        TIFFGetFieldDefaulted(tiff_, TIFFTAG_BITSPERSAMPLE, &bits);
        TIFFGetFieldDefaulted(tiff_, TIFFTAG_SAMPLEFORMAT, &format);
        TIFFGetFieldDefaulted(tiff_, TIFFTAG_PLANARCONFIG, &planar);
        TIFFGetFieldDefaulted(tiff_, TIFFTAG_COMPRESSION, &compression);
        if (!TIFFGetField(tiff_, TIFFTAG_PHOTOMETRIC, &photometric))
            throw error(errc::corrupt_image, label + "TIFF header has no PhotometricInterpretation");
        const auto refuse = [&](const std::string& what) {
            throw error(errc::corrupt_image, label + "TIFF with " + what + " is not supported (tilekit reads 1- to 16-bit unsigned "
                                                     "gray, RGB and palette images, with or without alpha)");
        };
        if (!detail::tiff_compression_allowed(compression))
            throw error(errc::corrupt_image, label + "TIFF compression " + std::to_string(compression) +
                                                 " is not supported (tilekit reads none, LZW, Deflate, JPEG, PackBits and CCITT)");
        if (!TIFFIsCODECConfigured(compression))
            throw error(errc::corrupt_image, label + "TIFF compression " + std::to_string(compression) + " is not built into this libtiff");
        if (format != SAMPLEFORMAT_UINT) refuse(format == SAMPLEFORMAT_IEEEFP ? "floating-point samples" : "signed or complex samples");
        if (bits != 1 && bits != 2 && bits != 4 && bits != 8 && bits != 16) refuse(std::to_string(bits) + "-bit samples");
        int base = 0;
        switch (photometric) {
            case PHOTOMETRIC_MINISWHITE:
            case PHOTOMETRIC_MINISBLACK: base = 1; break;
            case PHOTOMETRIC_PALETTE: base = 1; break;
            case PHOTOMETRIC_RGB: base = 3; break;
            case PHOTOMETRIC_YCBCR:
                if (compression != COMPRESSION_JPEG) refuse("YCbCr samples outside JPEG compression");
                // libjpeg converts to RGB (and upsamples the chroma) while decoding.
                if (!TIFFSetField(tiff_, TIFFTAG_JPEGCOLORMODE, JPEGCOLORMODE_RGB)) fail("cannot read TIFF header");
                base = 3;
                break;
            default: refuse(detail::tiff_photometric_name(photometric));
        }
        if (samples < base) refuse(std::to_string(samples) + " samples per pixel for " + (base == 3 ? "RGB" : "gray"));
        if (bits < 8 && (base != 1 || samples != 1 || planar != PLANARCONFIG_CONTIG)) refuse(std::to_string(bits) + "-bit colour or alpha samples");
        if (compression == COMPRESSION_JPEG && bits != 8) refuse("JPEG compression of " + std::to_string(bits) + "-bit samples");
        if (planar != PLANARCONFIG_CONTIG && planar != PLANARCONFIG_SEPARATE) refuse("PlanarConfiguration " + std::to_string(planar));
        const bool alpha = samples > base;
        if (alpha) {
            std::uint16_t count = 0;
            std::uint16_t* kinds = nullptr;
            if (TIFFGetField(tiff_, TIFFTAG_EXTRASAMPLES, &count, &kinds) && count > 0 && kinds)
                associated_ = kinds[0] == EXTRASAMPLE_ASSOCALPHA;
        }
        palette_ = photometric == PHOTOMETRIC_PALETTE;
        invert_ = photometric == PHOTOMETRIC_MINISWHITE;
        if (palette_) read_colormap(bits);
        samples_ = samples;
        bits_ = bits;
        used_ = base + (alpha ? 1 : 0);
        separate_ = planar == PLANARCONFIG_SEPARATE && samples > 1;
        channels_ = (palette_ ? 3 : base) + (alpha ? 1 : 0);
        width_ = static_cast<int>(width);
        height_ = static_cast<int>(height);

        // The memory this needs, from the header, before any pixel buffer is allocated.
        const std::uint64_t out_row = detail::tiff_mul(width, std::uint64_t(channels_));
        std::uint64_t cost = std::uint64_t{256} << 10;  // libtiff's and libjpeg's state and tables
        const int planes = separate_ ? used_ : 1;
        std::uint64_t unit_bytes = 0;
        if (tiled_) {
            std::uint32_t tile_width = 0, tile_height = 0;
            if (!TIFFGetField(tiff_, TIFFTAG_TILEWIDTH, &tile_width) || !TIFFGetField(tiff_, TIFFTAG_TILELENGTH, &tile_height) ||
                tile_width == 0 || tile_height == 0)
                throw error(errc::corrupt_image, label + "tiled TIFF without a tile size (TileWidth, TileLength)");
            unit_width_ = tile_width;
            unit_height_ = static_cast<int>(std::min(tile_height, height));
            unit_bytes = TIFFTileSize64(tiff_);
            unit_row_bytes_ = TIFFTileRowSize64(tiff_);
            cost = detail::tiff_add(cost, detail::tiff_mul(out_row, unit_height_));
        } else {
            std::uint32_t rows_per_strip = height;
            TIFFGetFieldDefaulted(tiff_, TIFFTAG_ROWSPERSTRIP, &rows_per_strip);
            if (rows_per_strip == 0) rows_per_strip = height;
            unit_width_ = width;
            unit_height_ = static_cast<int>(std::min(rows_per_strip, height));
            unit_row_bytes_ = TIFFScanlineSize64(tiff_);
            scanlines_ = !separate_;
            if (scanlines_) {
                unit_bytes = unit_row_bytes_;  // one scanline
                cost = detail::tiff_add(cost, out_row);
            } else {
                unit_bytes = TIFFStripSize64(tiff_);
                cost = detail::tiff_add(cost, detail::tiff_mul(out_row, unit_height_));
            }
        }
        if (unit_bytes == 0 || unit_row_bytes_ == 0) fail("cannot read TIFF header");
        // Decoded units (one per plane), and libtiff's buffer for the compressed bytes of one
        // strip or tile, which it reads whole: the largest stated byte count (no strip can hold
        // more than the file). Uncompressed single strips are split by libtiff into ~8 KB ones.
        cost = detail::tiff_add(cost, detail::tiff_mul(unit_bytes, std::uint64_t(planes)));
        std::uint64_t largest_raw = 0;
        const std::uint32_t striles = tiled_ ? TIFFNumberOfTiles(tiff_) : TIFFNumberOfStrips(tiff_);
        for (std::uint32_t i = 0; i < striles && largest_raw < input_.size; ++i)
            largest_raw = std::max<std::uint64_t>(largest_raw, TIFFGetStrileByteCount(tiff_, i));
        cost = detail::tiff_add(cost, std::min(largest_raw, input_.size));
        detail::tiff_refuse_over_budget(label, tiled_ ? "tiled TIFF" : "TIFF", cost, limits.max_memory_bytes);

        // 8-bit samples, nothing to convert, all samples used: libtiff's scanline is the row.
        passthrough_ = scanlines_ && bits_ == 8 && !palette_ && !invert_ && !associated_ && samples_ == channels_;
        units_.resize(static_cast<std::size_t>(planes));
        for (auto& unit : units_) unit.resize(static_cast<std::size_t>(unit_bytes));
        if (!passthrough_) row_.resize(static_cast<std::size_t>(scanlines_ ? out_row : out_row * std::uint64_t(unit_height_)));
    }

    // The colormap as 8-bit RGB. libtiff checks that it holds 2^bits entries per channel.
    void read_colormap(std::uint16_t bits) {
        std::uint16_t *red = nullptr, *green = nullptr, *blue = nullptr;
        if (!TIFFGetField(tiff_, TIFFTAG_COLORMAP, &red, &green, &blue) || !red || !green || !blue)
            throw error(errc::corrupt_image, input_.label + "palette TIFF without a colormap");
        const std::size_t entries = std::size_t{1} << bits;
        bool eight_bit = true;
        for (std::size_t i = 0; i < entries && eight_bit; ++i) eight_bit = red[i] < 256 && green[i] < 256 && blue[i] < 256;
        const int shift = eight_bit ? 0 : 8;
        colormap_.resize(entries * 3);
        for (std::size_t i = 0; i < entries; ++i) {
            colormap_[i * 3] = static_cast<std::uint8_t>(red[i] >> shift);
            colormap_[i * 3 + 1] = static_cast<std::uint8_t>(green[i] >> shift);
            colormap_[i * 3 + 2] = static_cast<std::uint8_t>(blue[i] >> shift);
        }
    }

    // Sample s (0 .. used_-1) of pixel x. Contiguous: one plane, samples_ per pixel; separate:
    // one plane per sample.
    std::uint32_t sample(const std::uint8_t* const* planes, std::size_t x, int s) const noexcept {
        const std::uint8_t* plane = separate_ ? planes[s] : planes[0];
        const std::size_t index = separate_ ? x : x * samples_ + static_cast<std::size_t>(s);
        switch (bits_) {
            case 16: {
                std::uint16_t v;
                std::memcpy(&v, plane + index * 2, 2);  // libtiff has swapped it to native order
                return v;
            }
            case 8: return plane[index];
            default: {  // 1, 2, 4: one gray or palette sample, most significant bits first
                const std::size_t bit = index * bits_;
                return (plane[bit / 8] >> (8 - bits_ - bit % 8)) & ((1u << bits_) - 1);
            }
        }
    }

    // `count` pixels starting at pixel `first` of the planes into 8-bit output pixels.
    void convert(const std::uint8_t* const* planes, std::size_t first, std::uint8_t* out, std::size_t count) const noexcept {
        const std::uint32_t max = (1u << bits_) - 1;
        const bool alpha = used_ == 2 || used_ == 4;
        const int colours = alpha ? used_ - 1 : used_;
        const auto to8 = [this, max](std::uint32_t v) -> std::uint8_t {
            if (bits_ == 16) return static_cast<std::uint8_t>(v >> 8);
            if (bits_ == 8) return static_cast<std::uint8_t>(v);
            return static_cast<std::uint8_t>(v * 255 / max);
        };
        for (std::size_t i = 0; i < count; ++i) {
            const std::size_t x = first + i;
            std::uint32_t a = alpha ? sample(planes, x, colours) : max;
            if (palette_) {
                const std::size_t index = sample(planes, x, 0);
                out[0] = colormap_[index * 3];
                out[1] = colormap_[index * 3 + 1];
                out[2] = colormap_[index * 3 + 2];
                out += 3;
            } else {
                for (int c = 0; c < colours; ++c) {
                    std::uint32_t v = sample(planes, x, c);
                    if (invert_) v = max - v;
                    if (associated_) v = a == 0 ? 0 : std::min<std::uint32_t>(max, v * max / a);  // truncated, as vips
                    *out++ = to8(v);
                }
            }
            if (alpha) *out++ = to8(a);
        }
    }

    // Decodes the band (row of tiles, or strip of each plane) that starts at row y into row_.
    void fill_band(int y) {
        const int rows = std::min(unit_height_, height_ - y);
        const std::uint32_t across = tiled_ ? (static_cast<std::uint32_t>(width_) + unit_width_ - 1) / unit_width_ : 1;
        for (std::uint32_t t = 0; t < across; ++t) {
            const std::uint32_t x0 = t * unit_width_;
            for (std::size_t p = 0; p < units_.size(); ++p) {
                const auto plane = static_cast<std::uint16_t>(p);
                const tmsize_t got =
                    tiled_ ? TIFFReadEncodedTile(tiff_, TIFFComputeTile(tiff_, x0, static_cast<std::uint32_t>(y), 0, plane), units_[p].data(),
                                                 static_cast<tmsize_t>(units_[p].size()))
                           : TIFFReadEncodedStrip(tiff_, TIFFComputeStrip(tiff_, static_cast<std::uint32_t>(y), plane), units_[p].data(),
                                                  static_cast<tmsize_t>(units_[p].size()));
                if (got < 0) fail("cannot decode TIFF");
            }
            const std::size_t count = std::min<std::size_t>(unit_width_, static_cast<std::size_t>(width_) - x0);
            for (int r = 0; r < rows; ++r) {
                const std::uint8_t* planes[4] = {nullptr, nullptr, nullptr, nullptr};
                for (std::size_t p = 0; p < units_.size(); ++p) planes[p] = units_[p].data() + static_cast<std::size_t>(r) * unit_row_bytes_;
                std::uint8_t* out = row_.data() + static_cast<std::size_t>(r) * row_bytes() + static_cast<std::size_t>(x0) * channels_;
                if (!separate_ && bits_ == 8 && !palette_ && !invert_ && !associated_ && samples_ == channels_)
                    std::memcpy(out, planes[0], count * static_cast<std::size_t>(channels_));
                else
                    convert(planes, 0, out, count);
            }
        }
    }

    [[noreturn]] void fail(const char* what) const {
        const bool truncated = input_.ran_off_end;
        const char* reason = input_.message[0] ? input_.message : "libtiff gave no reason";
        std::string text = input_.label + what;
        if (truncated) text += " (file is truncated)";
        else if (input_.pointed_past) text += " (it points past the end of the file)";
        throw error(truncated ? errc::truncated_image : errc::corrupt_image, text + ": " + reason);
    }

    detail::tiff_input input_;
    TIFF* tiff_ = nullptr;
    bool bigtiff_ = false, tiled_ = false, scanlines_ = false, separate_ = false, passthrough_ = false;
    bool palette_ = false, invert_ = false, associated_ = false;
    int width_ = 0, height_ = 0, channels_ = 0, bits_ = 8, samples_ = 1, used_ = 1;
    std::uint32_t unit_width_ = 0;
    int unit_height_ = 1;
    std::uint64_t unit_row_bytes_ = 0;
    int next_ = 0;
    std::vector<std::vector<std::uint8_t>> units_;  // scanline, or one tile or strip per plane
    std::vector<std::uint8_t> row_;                 // the converted row, or band of rows
    std::vector<std::uint8_t> colormap_;            // palette: 8-bit RGB per index
};

namespace detail {

inline std::unique_ptr<row_source> open_tiff_file(const std::string& path, const decode_limits& limits) {
    return tiff_row_reader::open_file(path, limits);
}

inline std::unique_ptr<row_source> open_tiff_memory(const std::uint8_t* data, std::size_t size, const decode_limits& limits) {
    return tiff_row_reader::open_memory(data, size, limits);
}

inline const input_reader tiff_input_reader{"tiff", &open_tiff_file, &open_tiff_memory};

// tile_file(), tile_memory(), the CLI and the jobs path read TIFF in every program with a TU
// that includes this header (an inline variable: one registration per program, before main).
inline const bool tiff_reader_is_registered = register_input_reader(&tiff_input_reader);

}  // namespace detail
TILEKIT_NAMESPACE_END
