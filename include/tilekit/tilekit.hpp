#pragma once
// tilekit: turn a large image into a Deep Zoom or XYZ tile pyramid and publish it to storage.
// This umbrella header is the core: the standard library, stb and nlohmann_json, and no job
// code. Optional parts have their own folder, umbrella header and target (README "Architecture"):
// <tilekit/fast_codecs.hpp>, <tilekit/s3.hpp>, <tilekit/jobs.hpp>, <tilekit/sqlite.hpp>.

#include <tilekit/version.hpp>
#include <tilekit/config.hpp>
#include <tilekit/error.hpp>
#include <tilekit/image.hpp>
#include <tilekit/decode.hpp>
#include <tilekit/row_source.hpp>
#include <tilekit/input_readers.hpp>
#include <tilekit/layout.hpp>
#include <tilekit/png_filter.hpp>
#include <tilekit/encode.hpp>
#include <tilekit/progress.hpp>
#include <tilekit/key.hpp>
#include <tilekit/sink.hpp>
#include <tilekit/sinks/memory_sink.hpp>
#include <tilekit/sinks/filesystem_sink.hpp>
#include <tilekit/source.hpp>
#include <tilekit/metadata.hpp>
#include <tilekit/tiler.hpp>
#include <tilekit/tile_file.hpp>
