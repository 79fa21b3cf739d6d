#pragma once
// Image sources on S3 / R2 (tilekit::image_source): a source image fetched by a signed GET
// through the client, or by a presigned URL handed over by another service (used verbatim,
// never re-encoded). Both stream to the caller's scratch directory and stop at the size limit.

#include <tilekit/error.hpp>
#include <tilekit/s3/client.hpp>
#include <tilekit/s3/error.hpp>
#include <tilekit/source.hpp>

#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>

TILEKIT_NAMESPACE_BEGIN
namespace detail {

// The client reports an over-limit body as a storage error; image_source promises image_too_large.
template <class F>
std::string s3_fetch_with_limit(const std::string& key, std::uint64_t max_bytes, F&& fetch) {
    try {
        return fetch();
    } catch (const s3::s3_error& e) {
        if (e.s3_code() == "ResponseTooLarge")
            throw error(errc::image_too_large, "source image '" + key + "' is larger than the limit of " +
                                                   std::to_string(max_bytes) + " bytes");
        throw;
    }
}

// A source that downloads the object to "<scratch>/source": fetch() and fetch_cancellable() for
// both S3 sources below, which differ only in how they download.
class s3_download_source : public image_source {
public:
    std::string fetch(const std::string& key, const std::filesystem::path& scratch_dir, std::uint64_t max_bytes) override {
        return fetch_watching(key, scratch_dir, max_bytes, nullptr);
    }
    // A cancel stops the download part-way (within a fraction of a second), not after it.
    std::string fetch_cancellable(const std::string& key, const std::filesystem::path& scratch_dir, std::uint64_t max_bytes,
                                  const cancel_token& cancel) override {
        if (cancel.is_cancelled()) throw cancelled_error();
        return fetch_watching(key, scratch_dir, max_bytes, &cancel);
    }

protected:
    virtual void download(const std::string& key, const std::string& path, std::uint64_t max_bytes,
                          const cancel_token* cancel) = 0;

private:
    std::string fetch_watching(const std::string& key, const std::filesystem::path& scratch_dir, std::uint64_t max_bytes,
                               const cancel_token* cancel) {
        const std::string path = (scratch_dir / "source").string();
        return s3_fetch_with_limit(key, max_bytes, [&] {
            download(key, path, max_bytes, cancel);
            return path;
        });
    }
};

}  // namespace detail
namespace s3 {

class object_source final : public detail::s3_download_source {
public:
    explicit object_source(client& storage) : client_(storage) {}

private:
    void download(const std::string& key, const std::string& path, std::uint64_t max_bytes, const cancel_token* cancel) override {
        client_.get_to_file(key, path, max_bytes, cancel);
    }

    client& client_;
};

class presigned_url_source final : public detail::s3_download_source {
public:
    presigned_url_source(client& downloader, std::string url) : client_(downloader), url_(std::move(url)) {}

private:
    void download(const std::string&, const std::string& path, std::uint64_t max_bytes, const cancel_token* cancel) override {
        client_.download_url_to_file(url_, path, max_bytes, cancel);
    }

    client& client_;
    std::string url_;
};

}  // namespace s3
TILEKIT_NAMESPACE_END
