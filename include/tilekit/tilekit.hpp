#pragma once
// tilekit: turn a large image into a Deep Zoom or XYZ tile pyramid and publish it to storage.
// This umbrella header is the core: it needs only the standard library, stb and nlohmann_json.
// Optional parts have their own headers and targets (see README).

#include <tilekit/version.hpp>
#include <tilekit/config.hpp>
#include <tilekit/error.hpp>
#include <tilekit/image.hpp>
#include <tilekit/decode.hpp>
#include <tilekit/layout.hpp>
#include <tilekit/encode.hpp>
#include <tilekit/progress.hpp>
#include <tilekit/key.hpp>
#include <tilekit/sink.hpp>
#include <tilekit/sinks/memory_sink.hpp>
#include <tilekit/sinks/filesystem_sink.hpp>
#include <tilekit/metadata.hpp>
#include <tilekit/tiler.hpp>
#include <tilekit/tile_image.hpp>
#include <tilekit/jobs.hpp>
