#pragma once
// The storage-sink contract: where finished objects go. `storage_sink` is the one sink type;
// memory, filesystem and S3 sinks derive from it, and so does yours. The tiler calls put() once
// per tile through it: a virtual call is nothing next to encoding the tile (bench/run.sh).
//
//   put(object)   may be called from several threads at once; throws tilekit::error for
//                 failures it can see right away (a bad key, a full disk)
//   flush()       waits until everything put so far is stored, then throws the first failure
//                 (naming its key), if any
//   remove(key)   deletes an object and says whether the sink did. The default is for sinks
//                 that cannot delete: it removes nothing and returns false. Callers use it to
//                 retract a previous pyramid's manifests before overwriting its tiles, so a
//                 sink that cannot delete leaves them in place during a rerun.

#include <tilekit/error.hpp>

#include <cstdint>
#include <functional>
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
    // True when the object is gone because of this call (or, for stores that cannot tell, when
    // the delete was accepted); false when the sink cannot delete or there was nothing to remove.
    virtual bool remove(const std::string& key) {
        static_cast<void>(key);
        return false;
    }
    // Listing (see the top of this file): whether list() works, and every stored key that starts
    // with `prefix`, in any order.
    virtual bool can_list() const { return false; }
    virtual void list(const std::string& prefix, const std::function<void(const std::string& key)>& on_key) {
        static_cast<void>(prefix);
        static_cast<void>(on_key);
        throw error(errc::invalid_argument, "this storage sink cannot list its objects");
    }
};

TILEKIT_NAMESPACE_END
