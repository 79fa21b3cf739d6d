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
//   read(key)     the object and its version tag (an opaque string; S3's ETag), or nothing
//   put_if(object, expected)
//                 compare-and-swap: stores the object only when the key's current version tag
//                 is `expected` (empty: only when the key does not exist). Atomic against every
//                 other put_if on the key, by any process that shares the store. The publish
//                 protocol (jobs/run_pointer.hpp) commits a run with one such write. Sinks that
//                 cannot do it say so with can_compare_and_put() == false.

#include <tilekit/error.hpp>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

TILEKIT_NAMESPACE_BEGIN

struct storage_object {
    std::string key;                 // relative, '/'-separated; see validate_key()
    std::vector<std::uint8_t> body;
    std::string content_type;        // e.g. "image/png"
    std::string cache_control;       // e.g. "public, max-age=86400"; empty for none
};

// An object as read back, with the tag that put_if() compares against.
struct versioned_object {
    storage_object object;
    std::string version;
};

// What put_if() did. stored: the object is now the key's content and `version` its new tag.
// Not stored: the condition did not hold, and `version` is the tag found (empty: no object).
struct conditional_put_result {
    bool stored = false;
    std::string version;
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
    // Conditional writes (see the top of this file).
    virtual bool can_compare_and_put() const { return false; }
    virtual std::optional<versioned_object> read(const std::string& key) {
        static_cast<void>(key);
        throw error(errc::invalid_argument, "this storage sink cannot read its objects back");
    }
    virtual conditional_put_result put_if(storage_object object, const std::string& expected_version) {
        static_cast<void>(object);
        static_cast<void>(expected_version);
        throw error(errc::invalid_argument, "this storage sink cannot write conditionally");
    }
};

TILEKIT_NAMESPACE_END
