#pragma once
// A full structural check of a JPEG before stb_image sees it. stb trusts its input in ways a
// crafted file can exploit (a Huffman table with more than 256 codes writes past its arrays,
// a scan may use a table that was never defined and read uninitialised memory, a component
// without a scan leaves heap memory in the pixels, DC predictors overflow), and it pads damaged
// data with grey where libjpeg warns. So every marker segment is parsed and every entropy-coded
// segment is walked (Huffman symbols decoded, nothing transformed), with libjpeg's rules: what
// libjpeg refuses, or warns about as damage, is refused here, so that the header-only path and
// the fast codecs agree. Only what stb can then decode is let through: baseline, extended and
// progressive Huffman coding, 8-bit samples, 1, 3 or 4 components.

#include <tilekit/error.hpp>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

TILEKIT_NAMESPACE_BEGIN

namespace detail {

struct jpeg_huffman_table {
    bool defined = false;
    std::array<std::uint8_t, 17> count{};  // count[length], length 1..16
    std::array<std::uint8_t, 256> symbols{};
    int symbol_count = 0;
    // Canonical decoding: the largest code of each length (-1 when none) and the index of that
    // length's first symbol minus its first code.
    std::array<std::int32_t, 18> max_code{};
    std::array<std::int32_t, 17> offset{};
    // The first 8 bits of the stream: code length (0 when longer than 8) and symbol.
    std::array<std::uint8_t, 256> fast_length{};
    std::array<std::uint8_t, 256> fast_symbol{};
};

struct jpeg_component {
    int id = 0;
    int h = 1, v = 1;
    int quant_table = 0;
    std::uint64_t blocks_wide = 0, blocks_high = 0;  // the component's own blocks
    int dc_table = 0, ac_table = 0;                  // from the current scan
    std::int64_t dc_predictor = 0;
    int scans = 0;                      // sequential: scans that held this component
    bool dc_done = false;               // progressive: a first DC scan has run
    std::array<int, 64> coef_bits{};    // progressive: last Al per coefficient, -1 none yet
    std::vector<std::uint64_t> nonzero;  // progressive: one bit per coefficient per block
};

// Reads the entropy-coded bits of one scan. Past a marker it supplies zero bits (as libjpeg
// does) and counts them, so that running out of data is detected, never read out of bounds.
class jpeg_bit_reader {
public:
    jpeg_bit_reader(const std::uint8_t* data, std::size_t size, std::size_t pos) noexcept
        : data_(data), size_(size), pos_(pos) {}

    std::uint32_t peek(int n) {
        fill();
        return static_cast<std::uint32_t>(buffer_ >> (64 - n));
    }
    void skip(int n) noexcept {
        buffer_ <<= n;
        bits_ -= n;
    }
    std::uint32_t take(int n) {
        if (n == 0) return 0;
        const std::uint32_t value = peek(n);
        skip(n);
        return value;
    }
    // True when a bit past the end of the segment has been used: the data ran out.
    bool overran() const noexcept { return bits_ < fake_bits_; }

    // At a restart marker or the end of a scan: drops the padding bits of the current byte and
    // counts the whole bytes left before the marker (libjpeg's "extraneous bytes").
    std::uint64_t finish_segment() {
        std::uint64_t extraneous = bits_ > fake_bits_ ? static_cast<std::uint64_t>(bits_ - fake_bits_) / 8 : 0;
        buffer_ = 0;
        bits_ = fake_bits_ = 0;
        while (!at_marker_ && pos_ < size_) {  // the way libjpeg's next_marker skips to a marker
            if (data_[pos_] != 0xff) {
                ++extraneous;
                ++pos_;
                continue;
            }
            std::size_t p = pos_;
            while (p < size_ && data_[p] == 0xff) ++p;
            if (p >= size_) break;
            if (data_[p] == 0x00) {
                extraneous += 2;
                pos_ = p + 1;
                continue;
            }
            at_marker_ = true;
            pos_ = p - 1;
        }
        return extraneous;
    }
    // Where the marker that ended the segment starts (at its 0xFF), or size when the data ended.
    std::size_t marker_position() const noexcept { return at_marker_ ? pos_ : size_; }
    std::uint8_t marker() const noexcept { return at_marker_ ? data_[pos_ + 1] : 0; }
    void resume_after_marker() noexcept {  // past a restart marker, into the next interval
        pos_ += 2;
        at_marker_ = false;
    }

private:
    void fill() {
        while (bits_ <= 56) {
            std::uint8_t byte = 0;
            if (at_marker_ || pos_ >= size_) {
                fake_bits_ += 8;
            } else if ((byte = data_[pos_]) != 0xff) {
                ++pos_;
            } else {
                std::size_t p = pos_ + 1;
                while (p < size_ && data_[p] == 0xff) ++p;  // fill bytes before a marker
                if (p < size_ && data_[p] == 0x00) {
                    pos_ = p + 1;  // a stuffed 0xFF data byte
                } else {           // a marker, or the file ends
                    at_marker_ = p < size_;
                    pos_ = at_marker_ ? p - 1 : size_;
                    byte = 0;
                    fake_bits_ += 8;
                }
            }
            buffer_ |= std::uint64_t{byte} << (56 - bits_);
            bits_ += 8;
        }
    }

    const std::uint8_t* data_;
    std::size_t size_;
    std::size_t pos_;
    std::uint64_t buffer_ = 0;  // bits, most significant first
    int bits_ = 0;
    int fake_bits_ = 0;  // zero bits supplied past the end, at the end of the buffer
    bool at_marker_ = false;
};

class jpeg_checker {
public:
    jpeg_checker(const std::uint8_t* data, std::size_t size, bool strict) noexcept
        : data_(data), size_(size), strict_(strict) {}

    // Throws tilekit::error (corrupt_image, truncated_image) unless stb can be trusted with the
    // file. A file damaged only in its entropy data passes when strict is false.
    // header_only: stops after the frame header (what read_image_info needs), having checked
    // every table defined before it.
    void run(bool header_only = false) {
        if (size_ < 4 || data_[0] != 0xff || data_[1] != 0xd8) fail("it does not start with an SOI marker");
        std::size_t pos = 2;
        for (;;) {
            pos = next_marker(pos);
            if (pos >= size_) {  // lenient: the file ends without EOI, which libjpeg supplies
                ended_without_eoi_ = true;
                break;
            }
            const std::uint8_t marker = data_[pos + 1];
            pos += 2;
            if (marker == 0xd9) break;                        // EOI
            if (marker >= 0xd0 && marker <= 0xd7) continue;   // a stray RST: libjpeg skips it
            if (marker == 0xd8) fail("a second SOI marker");
            if (marker == 0x01) continue;                     // TEM, no length
            if (pos + 2 > size_) truncated("inside a marker segment");
            const std::size_t length = (std::size_t{data_[pos]} << 8) | data_[pos + 1];
            if (length < 2) fail("a marker segment with a length under 2");
            if (length > size_ - pos) truncated("inside a marker segment");
            const std::uint8_t* segment = data_ + pos + 2;
            const std::size_t segment_size = length - 2;
            pos += length;
            switch (marker) {
                case 0xc4: define_huffman_tables(segment, segment_size); break;
                case 0xdb: define_quantization_tables(segment, segment_size); break;
                case 0xdd:
                    if (segment_size != 2) fail("a DRI segment of the wrong length");
                    restart_interval_ = (unsigned{segment[0]} << 8) | segment[1];
                    break;
                case 0xda: pos = scan(segment, segment_size, pos); break;
                case 0xee:
                    if (segment_size >= 12 && std::memcmp(segment, "Adobe", 5) == 0) adobe_transform_ = segment[11];
                    break;
                case 0xdc: fail("a DNL marker (height defined after the data), which is not supported");
                default:
                    if (marker >= 0xc0 && marker <= 0xcf && marker != 0xc8 && marker != 0xcc) {
                        frame(marker, segment, segment_size);
                        if (header_only) return;
                    } else if ((marker < 0xe0 || marker > 0xef) && marker != 0xfe && marker != 0xcc) {
                        // not APPn, COM or DAC: libjpeg refuses markers it does not know
                        fail("an unknown marker 0xFF" + hex(marker));
                    }
                    break;
            }
        }
        if (!frame_seen_) fail("it has no frame header (SOF)");
        if (scans_ == 0) truncated("before its first scan");
        for (const jpeg_component& c : components_) {
            if (progressive_ && !c.dc_done) fail("component " + std::to_string(c.id) + " has no DC scan");
            if (!progressive_ && c.scans == 0) fail("component " + std::to_string(c.id) + " has no scan");
        }
        // stb and libjpeg disagree on a 4-component file without Adobe's marker (libjpeg: plain
        // CMYK; stb: YCbCr and an ignored fourth channel): refuse rather than guess.
        if (components_.size() == 4 && adobe_transform_ < 0)
            fail("it has 4 components (CMYK) but no Adobe APP14 marker naming their colour transform; "
                 "the fast codecs (libjpeg) read it");
    }

    bool progressive() const noexcept { return progressive_; }
    // Lenient only: the data stopped before EOI (stb needs one appended to decode what is there).
    bool ended_without_eoi() const noexcept { return ended_without_eoi_; }

private:
    [[noreturn]] void fail(const std::string& why) const {
        throw error(errc::corrupt_image, "jpeg image is damaged or unsupported: " + why);
    }
    [[noreturn]] void truncated(const std::string& where) const {
        throw error(errc::truncated_image, "jpeg image is truncated: the data ends " + where);
    }
    static std::string hex(std::uint8_t value) {
        const char* digits = "0123456789ABCDEF";
        return {digits[value >> 4], digits[value & 15]};
    }
    // Damage libjpeg recovers from with a warning: an error when strict.
    void damaged(const std::string& why, bool is_truncation = false) const {
        if (!strict_) return;
        if (is_truncation) truncated(why);
        fail(why);
    }

    // The position of the next marker's 0xFF at or after pos; bytes before it are damage. When
    // lenient, the end of the file stands for EOI (size is returned).
    std::size_t next_marker(std::size_t pos) const {
        std::size_t skipped = 0;
        for (;;) {
            while (pos < size_ && data_[pos] != 0xff) {
                ++pos;
                ++skipped;
            }
            std::size_t p = pos;
            while (p < size_ && data_[p] == 0xff) ++p;
            if (p >= size_) {
                if (!strict_ && frame_seen_ && scans_ > 0) return size_;
                truncated("before its EOI marker");
            }
            if (data_[p] != 0x00) {
                if (skipped) damaged(std::to_string(skipped) + " extraneous bytes before a marker");
                return p - 1;
            }
            skipped += 2;
            pos = p + 1;
        }
    }

    void define_huffman_tables(const std::uint8_t* p, std::size_t n) {
        while (n > 0) {
            if (n < 17) fail("a DHT segment of the wrong length");
            const int table_class = p[0] >> 4, id = p[0] & 15;
            if (table_class > 1 || id > 3) fail("a Huffman table with class " + std::to_string(table_class) +
                                                " and id " + std::to_string(id));
            jpeg_huffman_table& t = (table_class == 0 ? dc_tables_ : ac_tables_)[static_cast<std::size_t>(id)];
            t = jpeg_huffman_table{};
            int total = 0;
            for (int length = 1; length <= 16; ++length) {
                t.count[static_cast<std::size_t>(length)] = p[length];
                total += p[length];
            }
            if (total > 256) fail("a Huffman table with " + std::to_string(total) + " codes (at most 256)");
            if (n < 17 + static_cast<std::size_t>(total)) fail("a DHT segment of the wrong length");
            std::memcpy(t.symbols.data(), p + 17, static_cast<std::size_t>(total));
            t.symbol_count = total;
            build(t);
            t.defined = true;
            p += 17 + total;
            n -= 17 + static_cast<std::size_t>(total);
        }
    }

    // Canonical codes, refusing a table that is not a prefix code or uses an all-ones code
    // (libjpeg's rule; stb writes past its arrays on such tables).
    void build(jpeg_huffman_table& t) const {
        std::int32_t code = 0;
        int index = 0;
        t.max_code.fill(-1);
        for (int length = 1; length <= 16; ++length) {
            const int count = t.count[static_cast<std::size_t>(length)];
            t.offset[static_cast<std::size_t>(length)] = index - code;
            for (int i = 0; i < count; ++i, ++code, ++index) {
                if (code >= (std::int32_t{1} << length)) fail("a Huffman table whose codes do not fit their lengths");
                if (length <= 8) {
                    const int first = code << (8 - length), span = 1 << (8 - length);
                    for (int j = 0; j < span; ++j) {
                        t.fast_length[static_cast<std::size_t>(first + j)] = static_cast<std::uint8_t>(length);
                        t.fast_symbol[static_cast<std::size_t>(first + j)] = t.symbols[static_cast<std::size_t>(index)];
                    }
                }
            }
            if (count > 0) {
                if (code >= (std::int32_t{1} << length)) fail("a Huffman table whose codes do not fit their lengths");
                t.max_code[static_cast<std::size_t>(length)] = code - 1;
            }
            code <<= 1;
        }
        t.max_code[17] = 0x7fffffff;
    }

    void define_quantization_tables(const std::uint8_t* p, std::size_t n) {
        while (n > 0) {
            const int precision = p[0] >> 4, id = p[0] & 15;
            if (precision > 1 || id > 3) fail("a quantization table with precision " + std::to_string(precision) +
                                              " and id " + std::to_string(id));
            const std::size_t table_size = 1 + 64 * static_cast<std::size_t>(precision + 1);
            if (n < table_size) fail("a DQT segment of the wrong length");
            quant_defined_[static_cast<std::size_t>(id)] = true;
            p += table_size;
            n -= table_size;
        }
    }

    void frame(std::uint8_t marker, const std::uint8_t* p, std::size_t n) {
        if (frame_seen_) fail("a second frame header (SOF)");
        if (marker == 0xc3 || marker == 0xc7 || marker == 0xcb || marker == 0xcf)
            fail("lossless JPEG, which the core decoder (stb_image) does not read");
        if (marker >= 0xc9) fail("arithmetic coding, which the core decoder (stb_image) does not read; the fast codecs do");
        if (marker == 0xc5 || marker == 0xc6) fail("hierarchical JPEG, which is not supported");
        frame_seen_ = true;
        progressive_ = marker == 0xc2;
        if (n < 6) fail("a frame header of the wrong length");
        if (p[0] != 8) fail(std::to_string(p[0]) + "-bit samples (8-bit only)");
        height_ = (unsigned{p[1]} << 8) | p[2];
        width_ = (unsigned{p[3]} << 8) | p[4];
        if (height_ == 0 || width_ == 0) fail("a frame of size 0 (a DNL marker would give the height; not supported)");
        const int count = p[5];
        if (count != 1 && count != 3 && count != 4) fail(std::to_string(count) + " components (1, 3 or 4 are read)");
        if (n != 6 + 3 * static_cast<std::size_t>(count)) fail("a frame header of the wrong length");
        components_.resize(static_cast<std::size_t>(count));
        for (int i = 0; i < count; ++i) {
            jpeg_component& c = components_[static_cast<std::size_t>(i)];
            const std::uint8_t* q = p + 6 + 3 * i;
            c.id = q[0];
            c.h = q[1] >> 4;
            c.v = q[1] & 15;
            c.quant_table = q[2];
            if (c.h < 1 || c.h > 4 || c.v < 1 || c.v > 4) fail("a sampling factor outside 1..4");
            if (c.quant_table > 3) fail("a quantization table id over 3");
            for (int j = 0; j < i; ++j)
                if (components_[static_cast<std::size_t>(j)].id == c.id) fail("two components with the same id");
            max_h_ = std::max(max_h_, c.h);
            max_v_ = std::max(max_v_, c.v);
        }
        for (jpeg_component& c : components_) {
            if (max_h_ % c.h != 0 || max_v_ % c.v != 0) fail("sampling factors that are not integer ratios");
            const std::uint64_t w = (std::uint64_t{width_} * std::uint64_t(c.h) + std::uint64_t(max_h_) - 1) / std::uint64_t(max_h_);
            const std::uint64_t h = (std::uint64_t{height_} * std::uint64_t(c.v) + std::uint64_t(max_v_) - 1) / std::uint64_t(max_v_);
            c.blocks_wide = (w + 7) / 8;
            c.blocks_high = (h + 7) / 8;
            c.coef_bits.fill(-1);
        }
        mcus_wide_ = (std::uint64_t{width_} + 8 * std::uint64_t(max_h_) - 1) / (8 * std::uint64_t(max_h_));
        mcus_high_ = (std::uint64_t{height_} + 8 * std::uint64_t(max_v_) - 1) / (8 * std::uint64_t(max_v_));
    }

    // Parses a scan header, then walks its entropy-coded data; returns where the data ends.
    std::size_t scan(const std::uint8_t* p, std::size_t n, std::size_t data_pos) {
        if (!frame_seen_) fail("a scan before the frame header");
        if (n < 1) fail("a scan header of the wrong length");
        const int count = p[0];
        if (count < 1 || count > 4 || n != 4 + 2 * static_cast<std::size_t>(count))
            fail("a scan header of the wrong length or component count");
        std::vector<jpeg_component*> in_scan;
        int blocks_per_mcu = 0;
        for (int i = 0; i < count; ++i) {
            const int id = p[1 + 2 * i];
            jpeg_component* found = nullptr;
            for (jpeg_component& c : components_)
                if (c.id == id) found = &c;
            if (!found) fail("a scan naming component " + std::to_string(id) + ", which the frame does not have");
            for (const jpeg_component* c : in_scan)
                if (c == found) fail("a scan naming one component twice");
            found->dc_table = p[2 + 2 * i] >> 4;
            found->ac_table = p[2 + 2 * i] & 15;
            if (found->dc_table > 3 || found->ac_table > 3) fail("a scan naming a Huffman table id over 3");
            if (!quant_defined_[static_cast<std::size_t>(found->quant_table)])
                fail("quantization table " + std::to_string(found->quant_table) + " is used but never defined");
            in_scan.push_back(found);
            blocks_per_mcu += found->h * found->v;
        }
        if (count > 1 && blocks_per_mcu > 10) fail("an interleaved scan with more than 10 blocks per MCU");
        const std::uint8_t* tail = p + 1 + 2 * count;
        const int ss = tail[0], se = tail[1], ah = tail[2] >> 4, al = tail[2] & 15;
        ++scans_;
        if (progressive_) {
            if (ss > se || se > 63 || ah > 13 || al > 13) fail("invalid progressive scan parameters");
            if (ss == 0 && se != 0) fail("a progressive scan mixing DC and AC coefficients");
            if (ss > 0 && count != 1) fail("a progressive AC scan with more than one component");
            for (jpeg_component* c : in_scan) {
                if (ss > 0 && c->coef_bits[0] < 0) damaged("an AC scan before the DC scan of its component");
                for (int k = ss; k <= se; ++k) {
                    const int expected = std::max(c->coef_bits[static_cast<std::size_t>(k)], 0);
                    if (ah != expected) damaged("a scan that refines bits that were never sent");
                    c->coef_bits[static_cast<std::size_t>(k)] = al;
                }
                if (ss == 0 && ah == 0) c->dc_done = true;
                if (ss > 0 && c->nonzero.empty()) c->nonzero.assign(c->blocks_wide * c->blocks_high, 0);
            }
        } else {
            if (ss != 0 || se != 63 || ah != 0 || al != 0) damaged("a sequential scan with progressive parameters");
            for (jpeg_component* c : in_scan)
                if (++c->scans > 1) fail("a component with two sequential scans");
        }
        // Every table the scan's data needs must exist (stb would read uninitialised ones).
        const bool needs_dc = !progressive_ || (ss == 0 && ah == 0);
        const bool needs_ac = !progressive_ || ss > 0;
        for (const jpeg_component* c : in_scan) {
            if (needs_dc) require_table(dc_tables_[static_cast<std::size_t>(c->dc_table)], "DC", c->dc_table, true);
            if (needs_ac) require_table(ac_tables_[static_cast<std::size_t>(c->ac_table)], "AC", c->ac_table, false);
        }
        return walk(in_scan, data_pos, ss, se, ah);
    }

    void require_table(const jpeg_huffman_table& t, const char* kind, int id, bool dc) const {
        if (!t.defined) fail(std::string("a scan uses ") + kind + " Huffman table " + std::to_string(id) + ", which is never defined");
        if (dc)
            for (int i = 0; i < t.symbol_count; ++i)
                if (t.symbols[static_cast<std::size_t>(i)] > 15) fail("a DC Huffman table with a symbol over 15");
    }

    int decode(jpeg_bit_reader& bits, const jpeg_huffman_table& t) const {
        const std::uint32_t look = bits.peek(8);
        if (const int length = t.fast_length[look]) {
            bits.skip(length);
            return t.fast_symbol[look];
        }
        const std::uint32_t word = bits.peek(16);
        for (int length = 9; length <= 16; ++length) {
            const std::int32_t code = static_cast<std::int32_t>(word >> (16 - length));
            if (code <= t.max_code[static_cast<std::size_t>(length)]) {
                bits.skip(length);
                return t.symbols[static_cast<std::size_t>(code + t.offset[static_cast<std::size_t>(length)])];
            }
        }
        bits.skip(16);
        return -1;  // no such code
    }

    static std::int32_t extend(std::uint32_t value, int size) noexcept {
        if (size == 0) return 0;
        const std::int32_t v = static_cast<std::int32_t>(value);
        return v < (std::int32_t{1} << (size - 1)) ? v - (std::int32_t{1} << size) + 1 : v;
    }

    std::size_t walk(const std::vector<jpeg_component*>& in_scan, std::size_t pos, int ss, int se, int ah) {
        jpeg_bit_reader bits(data_, size_, pos);
        const bool single = in_scan.size() == 1;
        const std::uint64_t mcus_wide = single ? in_scan[0]->blocks_wide : mcus_wide_;
        const std::uint64_t mcus_high = single ? in_scan[0]->blocks_high : mcus_high_;
        const std::uint64_t total = mcus_wide * mcus_high;
        std::uint32_t eob_run = 0;
        unsigned next_restart = 0;
        bool bad_code = false;
        for (jpeg_component* c : in_scan) c->dc_predictor = 0;
        for (std::uint64_t mcu = 0; mcu < total; ++mcu) {
            if (restart_interval_ && mcu > 0 && mcu % restart_interval_ == 0) {
                if (bits.overran()) return premature_end(bits);
                if (bits.finish_segment() > 0) damaged("extraneous bytes before a restart marker");
                if (bits.marker() != 0xd0 + next_restart) {
                    damaged("a missing or wrong restart marker");
                    if (bits.marker() < 0xd0 || bits.marker() > 0xd7) return premature_end(bits);
                }
                bits.resume_after_marker();
                next_restart = (next_restart + 1) & 7;
                for (jpeg_component* c : in_scan) c->dc_predictor = 0;
                eob_run = 0;
            }
            const std::uint64_t mcu_x = mcu % mcus_wide, mcu_y = mcu / mcus_wide;
            for (jpeg_component* c : in_scan) {
                const int bw = single ? 1 : c->h, bh = single ? 1 : c->v;
                for (int by = 0; by < bh; ++by)
                    for (int bx = 0; bx < bw; ++bx) {
                        const std::uint64_t block_x = mcu_x * std::uint64_t(bw) + std::uint64_t(bx);
                        const std::uint64_t block_y = mcu_y * std::uint64_t(bh) + std::uint64_t(by);
                        // Interleaved MCUs cover padding blocks beyond the component's own.
                        std::uint64_t* nonzero = nullptr;
                        if (!c->nonzero.empty() && block_x < c->blocks_wide && block_y < c->blocks_high)
                            nonzero = &c->nonzero[block_y * c->blocks_wide + block_x];
                        if (!block(bits, *c, ss, se, ah, eob_run, nonzero)) bad_code = true;
                    }
            }
            if (bad_code) {
                damaged("an invalid Huffman code in the data");
                bad_code = false;
            }
            if (bits.overran()) return premature_end(bits);
        }
        if (bits.finish_segment() > 0) damaged("extraneous bytes after the last block of a scan");
        return bits.marker_position();
    }

    // libjpeg fills the rest of the image with grey and warns; stb does the same silently.
    std::size_t premature_end(jpeg_bit_reader& bits) const {
        damaged("before the image ends (the scan's data stops short of the blocks its header promises)", true);
        bits.finish_segment();
        return bits.marker_position();
    }

    bool block(jpeg_bit_reader& bits, jpeg_component& c, int ss, int se, int ah, std::uint32_t& eob_run,
               std::uint64_t* nonzero) const {
        if (!progressive_ || (ss == 0 && ah == 0)) {  // DC, first pass
            const int size = decode(bits, dc_tables_[static_cast<std::size_t>(c.dc_table)]);
            if (size < 0) return false;
            c.dc_predictor += extend(bits.take(size), size);
            // stb keeps the predictor in an int and multiplies it by the quantizer or 2^Al.
            if (c.dc_predictor > 32767 || c.dc_predictor < -32768) fail("a DC coefficient out of range");
            if (!progressive_) return sequential_ac(bits, c);
            return true;
        }
        if (ss == 0) {  // DC refinement: one bit
            bits.take(1);
            return true;
        }
        if (ah == 0) return first_ac(bits, c, ss, se, eob_run, nonzero);
        return refine_ac(bits, c, ss, se, eob_run, nonzero);
    }

    bool sequential_ac(jpeg_bit_reader& bits, const jpeg_component& c) const {
        const jpeg_huffman_table& t = ac_tables_[static_cast<std::size_t>(c.ac_table)];
        for (int k = 1; k < 64;) {
            const int rs = decode(bits, t);
            if (rs < 0) return false;
            const int run = rs >> 4, size = rs & 15;
            if (size == 0) {
                if (run != 15) break;  // end of block
                k += 16;
                continue;
            }
            bits.take(size);
            k += run + 1;
        }
        return true;
    }

    bool first_ac(jpeg_bit_reader& bits, const jpeg_component& c, int ss, int se, std::uint32_t& eob_run,
                  std::uint64_t* nonzero) const {
        if (eob_run > 0) {
            --eob_run;
            return true;
        }
        const jpeg_huffman_table& t = ac_tables_[static_cast<std::size_t>(c.ac_table)];
        for (int k = ss; k <= se; ++k) {
            const int rs = decode(bits, t);
            if (rs < 0) return false;
            const int run = rs >> 4, size = rs & 15;
            if (size == 0) {
                if (run < 15) {
                    eob_run = (std::uint32_t{1} << run) + bits.take(run) - 1;
                    break;
                }
                k += 15;
                continue;
            }
            k += run;
            bits.take(size);
            if (nonzero && k <= 63) *nonzero |= std::uint64_t{1} << k;
        }
        return true;
    }

    // Successive approximation of AC coefficients (ITU T.81 G.1.2.3): which bits are read
    // depends on which coefficients earlier scans made nonzero, hence the bitmap.
    bool refine_ac(jpeg_bit_reader& bits, const jpeg_component& c, int ss, int se, std::uint32_t& eob_run,
                   std::uint64_t* nonzero) const {
        std::uint64_t scratch = 0;
        std::uint64_t& nz = nonzero ? *nonzero : scratch;
        const auto is_nonzero = [&](int k) { return k <= 63 && ((nz >> k) & 1) != 0; };
        int k = ss;
        bool ok = true;
        if (eob_run == 0) {
            const jpeg_huffman_table& t = ac_tables_[static_cast<std::size_t>(c.ac_table)];
            for (; k <= se; ++k) {
                const int rs = decode(bits, t);
                if (rs < 0) return false;
                int run = rs >> 4;
                const int size = rs & 15;
                if (size != 0) {
                    if (size != 1) ok = false;  // libjpeg warns; stb refuses
                    bits.take(1);
                } else if (run != 15) {
                    eob_run = (std::uint32_t{1} << run) + bits.take(run);
                    break;
                }
                do {
                    if (is_nonzero(k)) {
                        bits.take(1);
                    } else if (--run < 0) {
                        break;
                    }
                    ++k;
                } while (k <= se);
                if (size != 0 && k <= 63) nz |= std::uint64_t{1} << k;
            }
        }
        if (eob_run > 0) {
            for (; k <= se; ++k)
                if (is_nonzero(k)) bits.take(1);
            --eob_run;
        }
        return ok;
    }

    const std::uint8_t* data_;
    std::size_t size_;
    bool strict_;
    bool frame_seen_ = false;
    bool progressive_ = false;
    unsigned width_ = 0, height_ = 0;
    int max_h_ = 1, max_v_ = 1;
    std::uint64_t mcus_wide_ = 0, mcus_high_ = 0;
    unsigned restart_interval_ = 0;
    int adobe_transform_ = -1;
    bool ended_without_eoi_ = false;
    int scans_ = 0;
    std::vector<jpeg_component> components_;
    std::array<jpeg_huffman_table, 4> dc_tables_{};
    std::array<jpeg_huffman_table, 4> ac_tables_{};
    std::array<bool, 4> quant_defined_{};
};

// Memory the check itself needs: for progressive files, one 64-bit word per block.
inline std::uint64_t jpeg_check_cost(std::uint64_t width, std::uint64_t height, int channels) noexcept {
    return (width / 8 + 2) * (height / 8 + 2) * 8 * std::uint64_t(channels);
}


}  // namespace detail

TILEKIT_NAMESPACE_END
