#pragma once
// tilekit's optional S3 / Cloudflare R2 part: SigV4 signing (OpenSSL), a blocking client and a
// concurrent upload sink (libcurl), presigned URLs and downloads. Link `tilekit::s3` (CMake),
// `tilekit_s3_dep` (meson) or `pkg-config tilekit-s3`. The core never includes this.

#include <tilekit/tilekit.hpp>
#include <tilekit/s3/sigv4.hpp>
#include <tilekit/s3/config.hpp>
#include <tilekit/s3/error.hpp>
#include <tilekit/s3/request.hpp>
#include <tilekit/s3/client.hpp>
#include <tilekit/s3/sink.hpp>
#include <tilekit/s3/source.hpp>
