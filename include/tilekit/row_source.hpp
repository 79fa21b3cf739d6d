#pragma once
// The row-source contract: how pixels reach the tiler, one full-resolution row at a time, top
// to bottom, so that a decoder can stream and the whole image is never held.
//
// A row source has
//   int width() const;  int height() const;
//   int channels() const;            // 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA (8 bits each)
//   const std::uint8_t* next_row();  // the next row, width()*channels() bytes, valid until the
//                                    // following call; called exactly height() times;
//                                    // throws tilekit::error on damaged data
// `row_source` is that contract as a base class: generate_pyramid() is templated on the source
// type (a final class is called without a virtual dispatch), and run-time code holds any source
// as a std::unique_ptr<row_source>. Every source in tilekit derives from it.

#include <tilekit/error.hpp>
#include <tilekit/image.hpp>

#include <cstdint>
#include <utility>

TILEKIT_NAMESPACE_BEGIN

class row_source {
public:
    virtual ~row_source() = default;
    virtual int width() const = 0;
    virtual int height() const = 0;
    virtual int channels() const = 0;
    virtual const std::uint8_t* next_row() = 0;
};

// The rows of an image in memory: a view of someone else's pixels, or an image it owns (a
// decoder that decodes whole images hands its result over this way).
class image_row_source final : public row_source {
public:
    explicit image_row_source(const image_view& image) : image_(image) { check(); }
    explicit image_row_source(image_buffer image) : owned_(std::move(image)), image_(owned_.view()) { check(); }

    int width() const override { return image_.width; }
    int height() const override { return image_.height; }
    int channels() const override { return image_.channels; }
    const std::uint8_t* next_row() override {
        if (next_ >= image_.height) throw error(errc::invalid_argument, "image_row_source: read past the last row");
        return image_.row(next_++);
    }

private:
    void check() const {
        if (!image_.pixels) throw error(errc::invalid_argument, "image_row_source: the image has no pixels");
    }

    image_buffer owned_;
    image_view image_;
    int next_ = 0;
};

TILEKIT_NAMESPACE_END
