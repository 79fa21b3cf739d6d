// libFuzzer target: storage keys (key.hpp) and tilekit::filesystem_sink writing them.
// Input: the key up to the first '\n', the object's body after it (a body starting with "rm"
// also removes the key again). No '\n' or other control character is a valid key byte, so the
// split loses nothing.
//
// Once per process: a fresh root $TILEKIT_FUZZ_TMP/tilekit-fuzz-root-XXXXXX and an outside
// directory $TILEKIT_FUZZ_TMP/tilekit-fuzz-outside-XXXXXX (default /tmp) holding one file
// ("victim"). libFuzzer ends without running destructors, so run.sh points TILEKIT_FUZZ_TMP
// into its build directory and empties it. Inside the root, symbolic links that point outside:
// root/link -> outside, root/a/link2 -> outside, root/file_link -> outside/victim,
// root/dangling -> outside/nothing-here. Every 512 inputs the root is emptied
// and rebuilt (and the sink made anew), so disk use stays bounded.
// Only tilekit::error may come out of the sink. Invariants (trap when violated):
//   - validate_key throws (invalid_key) exactly when key_problem is non-empty, and a key with
//     a problem is never stored;
//   - the outside directory always holds exactly "victim", unchanged;
//   - a stored key is a regular file (not a link) at root/key whose realpath is below the
//     root's, with the body as its content; no component of its path is a symbolic link;
//   - a removed key is gone;
//   - no temporary file (.tk*.tmp) is left behind anywhere under the root.
#include <tilekit/key.hpp>
#include <tilekit/sinks/filesystem_sink.hpp>

#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <set>
#include <string>

#include <sys/stat.h>
#include <unistd.h>

namespace fs = std::filesystem;

namespace {

[[noreturn]] void violated(const char* what, const std::string& key) {
    std::string shown;
    for (const char c : key.substr(0, 300)) shown += (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) ? '?' : c;
    std::fprintf(stderr, "key_sink: invariant violated: %s (key '%s')\n", what, shown.c_str());
    __builtin_trap();
}

// The sink's temporary names: ".tk" + a tag + a number + ".tmp".
bool looks_temporary(const std::string& name) {
    return name.size() > 7 && name.compare(0, 3, ".tk") == 0 && name.compare(name.size() - 4, 4, ".tmp") == 0;
}

const char victim_content[] = "the outside file: must never change";

struct world {
    std::string root, root_real, outside;
    std::unique_ptr<tilekit::filesystem_sink> sink;
    unsigned long inputs = 0;
    std::set<std::string> stored;  // paths of keys put successfully: a key may look like a temporary name

    world() {
        const char* base = std::getenv("TILEKIT_FUZZ_TMP");
        const std::string parent = base && *base ? base : "/tmp";
        std::string root_template = parent + "/tilekit-fuzz-root-XXXXXX";
        std::string outside_template = parent + "/tilekit-fuzz-outside-XXXXXX";
        if (!mkdtemp(&root_template[0]) || !mkdtemp(&outside_template[0])) {
            std::perror("key_sink: mkdtemp");
            std::abort();
        }
        root = root_template;
        outside = outside_template;
        char resolved[PATH_MAX];
        if (!realpath(root.c_str(), resolved)) std::abort();
        root_real = resolved;
        std::ofstream(outside + "/victim", std::ios::binary) << victim_content;
        rebuild();
    }

    ~world() { remove_all(); }

    static world& instance() {
        static world w;
        return w;
    }

    void remove_all() {
        sink.reset();
        std::error_code ec;
        fs::remove_all(root, ec);
        fs::remove_all(outside, ec);
    }

    // Empties the root, checking that no temporary file was left, and plants the links again.
    void rebuild() {
        sink.reset();
        std::error_code ec;
        for (auto it = fs::recursive_directory_iterator(root, fs::directory_options::none, ec);
             !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
            const std::string name = it->path().filename().string();
            if (looks_temporary(name) && !stored.count(it->path().string()) &&
                it->symlink_status().type() == fs::file_type::regular) {
                for (const std::string& k : stored)
                    if (k.size() >= name.size() && k.compare(k.size() - name.size(), name.size(), name) == 0)
                        std::fprintf(stderr, "key_sink: a stored key ends in that name: %s\n", k.c_str());
                std::fprintf(stderr, "key_sink: %zu keys stored since the last rebuild, input %lu, file name [%s], path %zu bytes\n", stored.size(), inputs, name.c_str(), it->path().string().size());
                violated("a temporary file was left behind", it->path().string());
            }
        }
        // Not entry by entry while iterating (readdir may skip entries of a directory that changes).
        fs::remove_all(root, ec);
        fs::create_directory(root, ec);
        if (ec || !fs::is_empty(root, ec)) {
            std::fprintf(stderr, "key_sink: cannot empty %s: %s\n", root.c_str(), ec.message().c_str());
            std::abort();
        }
        stored.clear();
        fs::create_directories(root + "/a", ec);
        fs::create_directory_symlink(outside, root + "/link", ec);
        fs::create_directory_symlink(outside, root + "/a/link2", ec);
        fs::create_symlink(outside + "/victim", root + "/file_link", ec);
        fs::create_symlink(outside + "/nothing-here", root + "/dangling", ec);
        sink = std::make_unique<tilekit::filesystem_sink>(root);
    }

    void check_outside(const std::string& key) const {
        int entries = 0;
        std::error_code ec;
        for (const auto& entry : fs::directory_iterator(outside, ec)) {
            ++entries;
            if (entry.path().filename() != "victim") violated("something appeared in the outside directory", key);
        }
        if (ec) violated("the outside directory cannot be listed", key);
        if (entries != 1) violated("the outside file is gone", key);
        std::ifstream in(outside + "/victim", std::ios::binary);
        const std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        if (content != victim_content) violated("the outside file was changed", key);
    }

    // No temporary file in the directory of a key whose put failed.
    void check_no_temporary(const std::string& key) const {
        const std::size_t slash = key.rfind('/');
        const std::string directory = slash == std::string::npos ? root : root + "/" + key.substr(0, slash);
        std::error_code ec;
        for (const auto& entry : fs::directory_iterator(directory, ec)) {
            // Temporaries are regular files; a directory may carry such a name as a stored key's parent.
            if (looks_temporary(entry.path().filename().string()) && !stored.count(entry.path().string()) &&
                entry.symlink_status().type() == fs::file_type::regular) {
                // What the next look needs: which file, and what this world stored since its rebuild.
                std::fprintf(stderr, "key_sink: left file [%s], input %lu, %zu keys stored since the last rebuild\n",
                             entry.path().string().c_str(), inputs, stored.size());
                for (const std::string& k : stored) std::fprintf(stderr, "key_sink:   stored %s\n", k.c_str());
                violated("a failed put left its temporary file", key);
            }
        }
    }

    // The stored object at root/key: a regular file reached without links, below the root.
    void check_stored(const std::string& key, const std::string& body) const {
        std::string path = root;
        std::size_t start = 0;
        while (true) {
            const std::size_t slash = key.find('/', start);
            path += "/" + key.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
            struct stat st {};
            if (::lstat(path.c_str(), &st) != 0) violated("a stored key does not exist", key);
            if (S_ISLNK(st.st_mode)) violated("a stored key's path goes through a symbolic link", key);
            if (slash == std::string::npos) {
                if (!S_ISREG(st.st_mode)) violated("a stored key is not a regular file", key);
                break;
            }
            if (!S_ISDIR(st.st_mode)) violated("a directory of a stored key is not a directory", key);
            start = slash + 1;
        }
        char resolved[PATH_MAX];
        if (!realpath(path.c_str(), resolved)) violated("a stored key cannot be resolved", key);
        const std::string real = resolved;
        if (real.compare(0, root_real.size() + 1, root_real + "/") != 0) violated("a stored key resolves outside the root", key);
        std::ifstream in(path, std::ios::binary);
        const std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        if (content != body) violated("a stored key does not hold its body", key);
    }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    world& w = world::instance();
    if (++w.inputs % 512 == 0) w.rebuild();
    const std::string input(reinterpret_cast<const char*>(data), size);
    const std::size_t newline = input.find('\n');
    const std::string key = input.substr(0, newline);
    const std::string body = newline == std::string::npos ? std::string() : input.substr(newline + 1);

    const std::string problem = tilekit::key_problem(key);
    bool threw = false;
    try {
        tilekit::validate_key(key);
    } catch (const tilekit::error& e) {
        threw = true;
        if (e.code() != tilekit::errc::invalid_key) violated("validate_key threw another code than invalid_key", key);
    }
    if (threw != !problem.empty()) violated("validate_key and key_problem disagree", key);
    if (std::string(tilekit::content_type_for_key(key)).empty()) violated("an empty content type", key);

    tilekit::storage_object object;
    object.key = key;
    object.body.assign(body.begin(), body.end());
    object.content_type = tilekit::content_type_for_key(key);
    bool stored = false;
    try {
        w.sink->put(std::move(object));
        stored = true;
    } catch (const tilekit::error& e) {
        if (!problem.empty() && e.code() != tilekit::errc::invalid_key) violated("a bad key failed with another code", key);
    }
    if (stored && !problem.empty()) violated("a key with a problem was stored", key);
    if (!stored && problem.empty()) w.check_no_temporary(key);
    if (stored) {
        w.check_stored(key, body);
        w.stored.insert(w.root + "/" + key);
    }
    if (body.compare(0, 2, "rm") == 0) {
        try {
            const bool removed = w.sink->remove(key);
            if (stored && !removed) violated("a stored key was not removed", key);
            struct stat st {};
            if (removed && ::lstat((w.root + "/" + key).c_str(), &st) == 0) violated("a removed key is still there", key);
        } catch (const tilekit::error&) {
            if (stored) violated("removing a stored key failed", key);
        }
    }
    w.check_outside(key);
    return 0;
}
