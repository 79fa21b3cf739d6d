#pragma once
// The storage sink: where finished objects go. The tiler is templated on the sink type, so any
// type with these two members works; storage_sink is the same contract as a base class for
// code that chooses a sink at run time.
//
//   void put(storage_object object);  // may be called from several threads at once; throws
//                                     // tilekit::error for failures it can see right away
//   void flush();                     // waits until everything put so far is stored, then
//                                     // throws the first failure (naming its key), if any

#include <tilekit/config.hpp>

#include <cstdint>
#include <string>
#include <vector>

TILEKIT_NAMESPACE_BEGIN

struct storage_object {
    std::string key;                 // relative, '/'-separated; see validate_key()
    std::vector<std::uint8_t> body;
    std::string content_type;        // e.g. "image/png"
    std::string cache_control;       // e.g. "public, max-age=86400"; empty for none
};

class storage_sink {
public:
    virtual ~storage_sink() = default;
    virtual void put(storage_object object) = 0;
    virtual void flush() = 0;
};

TILEKIT_NAMESPACE_END
