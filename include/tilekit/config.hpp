#pragma once
// Every TILEKIT_* macro a user may set, with its default, and the ones tilekit defines for all
// of its headers. A macro that only one header needs is defined and #undef'd inside it.
//
// Set by the user (before the first tilekit include):
//   TILEKIT_STB_IMPLEMENTATION   define in exactly one TU to compile stb_image and stb_image_write
//                                there (only when not linking a library that already has them,
//                                such as Debian's libstb: see README "How stb reaches the linker").
//   TILEKIT_NO_INCLUDE_STB       the caller has already included stb_image.h / stb_image_write.h.
//
// Defined by tilekit:
//   TILEKIT_VERSION_MAJOR/_MINOR/_PATCH, TILEKIT_VERSION   (version.hpp)
//   TILEKIT_NAMESPACE_BEGIN / TILEKIT_NAMESPACE_END        open and close tilekit's versioned
//                                                          namespace (used by every header)
//   TILEKIT_HAS_S3, TILEKIT_HAS_SQLITE                     set by the tilekit::s3 and
//                                                          tilekit::sqlite targets (and their .pc
//                                                          files) for application code that wants
//                                                          to #if on them; no tilekit header reads them
//
// No public type changes shape with any of these macros.

#include <tilekit/version.hpp>

// Public names live in an inline namespace named after the full version (as nlohmann/json's ABI
// tag), so two different copies of tilekit linked into one program cannot silently merge:
// tilekit::image_buffer is tilekit::v0_1_0::image_buffer.
#define TILEKIT_ABI_TAG_CONCAT_EX(major, minor, patch) v##major##_##minor##_##patch
#define TILEKIT_ABI_TAG_CONCAT(major, minor, patch) TILEKIT_ABI_TAG_CONCAT_EX(major, minor, patch)
#define TILEKIT_ABI_NAMESPACE TILEKIT_ABI_TAG_CONCAT(TILEKIT_VERSION_MAJOR, TILEKIT_VERSION_MINOR, TILEKIT_VERSION_PATCH)
#define TILEKIT_NAMESPACE_BEGIN \
    namespace tilekit {         \
    inline namespace TILEKIT_ABI_NAMESPACE {
#define TILEKIT_NAMESPACE_END \
    }                         \
    }
