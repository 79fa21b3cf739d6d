// libFuzzer target: the example HTTP service's request bodies and ranges
// (examples/http_service/http/): an upload streamed piece by piece into http::upload_file (the raw
// body, or the first file part of a multipart/form-data body, its delimiter found across
// arbitrary piece boundaries), and http::decide_range on a Range header.
// Input: byte 0 = the number of cuts (its low 4 bits), then 2 bytes per cut (little-endian, taken
// modulo the body's size + 1: where a piece ends), then newline-separated text: the Range header
// (an empty line: no header), the file size for the range (decimal, modulo 2^64), the
// Content-Type (http::multipart_boundary gives the boundary; none: a raw upload), then the body
// (the rest, newlines included). The temporary files go to $TILEKIT_FUZZ_TMP (run.sh sets it).
// Invariants (trap when violated):
//   - upload_file, fed the pieces in order (stopping at the first refused one, as the server
//     does), succeeds exactly when a whole-buffer reference parse of the same body does: raw, the
//     whole body; multipart, "--boundary\r\n" first, part headers up to "\r\n\r\n" (refused only
//     when more than 8192 bytes of them were pending at the end of some piece), the content up
//     to the first "\r\n--boundary" after them;
//   - when both succeed, the file holds exactly the reference's content (read back from disk),
//     size() is its size, head() its first bytes (up to head_bytes), filename() the part's
//     filename="..." (multipart::first_form_file, the service's own whole-buffer parser, agrees);
//   - the temporary file is gone once the upload_file is destroyed (without keep());
//   - decide_range: no header, or another unit than "bytes=", is `whole`; a "bytes=" header with
//     a ',' (several ranges) is `unsatisfiable`; a `part` lies within the size (first < size,
//     1 <= length <= size - first) and is what the one range asks for, clamped to the size.
#include "http/multipart.hpp"
#include "http/range.hpp"
#include "http/upload_file.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>
#include <vector>

#include <sys/stat.h>

namespace http = tilekit_service::http;

namespace {

[[noreturn]] void violated(const char* what, const std::string& detail = "") {
    std::fprintf(stderr, "http_body: invariant violated: %s\n  [%s]\n", what, detail.substr(0, 400).c_str());
    __builtin_trap();
}

const std::string& temp_dir() {
    static const std::string dir = [] {
        const char* env = std::getenv("TILEKIT_FUZZ_TMP");
        return std::string(env && *env ? env : "/tmp");
    }();
    return dir;
}

struct reference_file {
    std::string content, filename;
};

// The whole body at once; `ends`: where each piece ended (for the bound on pending part headers).
std::optional<reference_file> reference_parse(const std::string& body, const std::optional<std::string>& boundary,
                                              const std::vector<std::size_t>& ends) {
    if (!boundary) return reference_file{body, ""};
    const std::string first = "--" + *boundary + "\r\n";
    if (body.size() < first.size() || body.compare(0, first.size(), first) != 0) return std::nullopt;
    const std::size_t headers = first.size();
    const std::size_t headers_end = body.find("\r\n\r\n", headers);
    // The part headers are refused when a piece ends with more than 8192 bytes of them pending
    // and their end not yet in.
    for (const std::size_t end : ends) {
        if (end < headers) continue;
        const bool complete = headers_end != std::string::npos && headers_end + 4 <= end;
        if (!complete && end - headers > 8192) return std::nullopt;
        if (complete) break;
    }
    if (headers_end == std::string::npos) return std::nullopt;
    reference_file out;
    const std::string part_headers = body.substr(headers, headers_end - headers);
    const std::size_t name = part_headers.find("filename=\"");
    if (name != std::string::npos) {
        const std::size_t close = part_headers.find('"', name + 10);
        if (close == std::string::npos) return std::nullopt;
        out.filename = part_headers.substr(name + 10, close - name - 10);
    }
    const std::size_t content = headers_end + 4;
    const std::size_t next = body.find("\r\n--" + *boundary, content);
    if (next == std::string::npos) return std::nullopt;
    out.content = body.substr(content, next - content);
    return out;
}

void check_upload(const std::string& body, const std::optional<std::string>& boundary, std::vector<std::size_t> cuts) {
    std::sort(cuts.begin(), cuts.end());
    cuts.push_back(body.size());
    std::string path;
    bool accepted = true;
    std::optional<reference_file> got;
    {
        http::upload_file file(temp_dir(), boundary);
        if (!file.ok()) return;  // no temporary file (the directory is not writable): nothing to check
        path = file.path();
        std::size_t from = 0;
        for (const std::size_t to : cuts) {
            if (!file.write(body.data() + from, to - from)) {
                accepted = false;
                break;
            }
            from = to;
        }
        accepted = accepted && file.finish();
        const auto expected = reference_parse(body, boundary, cuts);
        if (accepted != expected.has_value())
            violated(accepted ? "upload_file accepted a body the reference refuses" : "upload_file refused a body the reference accepts", body);
        if (accepted) {
            std::ifstream in(path, std::ios::binary);
            const std::string stored((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
            if (stored != expected->content) violated("the stored file differs from the reference's content", body);
            if (file.size() != stored.size()) violated("size() is not the stored file's size", body);
            if (file.head() != stored.substr(0, http::upload_file::head_bytes)) violated("head() is not the file's first bytes", body);
            if (file.filename() != expected->filename) violated("filename() differs from the reference's", body);
            if (boundary) {
                const auto form = http::first_form_file(body, *boundary);
                if (!form || form->bytes != stored || form->filename != file.filename())
                    violated("first_form_file disagrees with upload_file", body);
            }
        }
    }
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0) violated("the temporary file outlived its upload_file", path);
}

void check_range(const std::optional<std::string>& header, std::uint64_t size) {
    const http::range_decision d = http::decide_range(header, size);
    const std::string shown = (header ? *header : std::string("(none)")) + " size " + std::to_string(size);
    const bool bytes_unit = header && header->compare(0, 6, "bytes=") == 0;
    if (!bytes_unit) {
        if (d.verdict != http::range_verdict::whole) violated("no header or another unit is not `whole`", shown);
        return;
    }
    std::string spec = header->substr(6);
    if (spec.find(',') != std::string::npos) {
        if (d.verdict != http::range_verdict::unsatisfiable) violated("several ranges are not `unsatisfiable`", shown);
        return;
    }
    if (d.verdict == http::range_verdict::whole) violated("a bytes= header answered `whole`", shown);
    if (d.verdict != http::range_verdict::part) return;
    if (d.range.first >= size || d.range.length == 0 || d.range.length > size - d.range.first)
        violated("a `part` outside the file", shown);
    // What the one range asks for: "first-[last]" or "-suffix" (digits, trailing blanks ignored).
    while (!spec.empty() && (spec.back() == ' ' || spec.back() == '\t')) spec.pop_back();
    const std::size_t dash = spec.find('-');
    if (dash == std::string::npos) violated("a `part` from a range without '-'", shown);
    const std::string a = spec.substr(0, dash), b = spec.substr(dash + 1);
    const auto number = [&](const std::string& text) {
        if (text.empty() || text.size() > 19 || text.find_first_not_of("0123456789") != std::string::npos)
            violated("a `part` from a range that is not digits", shown);
        return static_cast<std::uint64_t>(std::strtoull(text.c_str(), nullptr, 10));
    };
    if (a.empty()) {
        const std::uint64_t n = number(b);
        if (d.range.length != std::min(n, size) || d.range.first + d.range.length != size) violated("a suffix range is not the file's last bytes", shown);
    } else {
        const std::uint64_t first = number(a);
        const std::uint64_t last = b.empty() ? size - 1 : std::min(number(b), size - 1);
        if (d.range.first != first || d.range.first + d.range.length - 1 != last) violated("a range is not the bytes asked for", shown);
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const std::size_t cut_count = data[0] & 15;
    std::size_t at = 1;
    std::vector<std::uint16_t> raw_cuts;
    for (std::size_t i = 0; i < cut_count && at + 1 < size; ++i, at += 2)
        raw_cuts.push_back(static_cast<std::uint16_t>(data[at] | data[at + 1] << 8));
    if (at > size) at = size;
    const std::string input(reinterpret_cast<const char*>(data) + at, size - at);
    std::string lines[3];
    std::size_t pos = 0;
    for (std::string& line : lines) {
        const std::size_t nl = input.find('\n', pos);
        if (nl == std::string::npos) {
            line = input.substr(pos);
            pos = input.size();
            break;
        }
        line = input.substr(pos, nl - pos);
        pos = nl + 1;
    }
    const std::string body = pos < input.size() ? input.substr(pos) : std::string();

    std::optional<std::string> range_header;
    if (!lines[0].empty()) range_header = lines[0];
    std::uint64_t file_size = 0;
    for (const char c : lines[1])
        if (c >= '0' && c <= '9') file_size = file_size * 10 + static_cast<std::uint64_t>(c - '0');
    check_range(range_header, file_size);
    check_range(std::nullopt, file_size);

    const std::optional<std::string> boundary = http::multipart_boundary(lines[2]);
    if (boundary && (boundary->empty() || boundary->size() > 70)) violated("a boundary of bad length", *boundary);
    std::vector<std::size_t> cuts;
    for (const std::uint16_t c : raw_cuts) cuts.push_back(c % (body.size() + 1));
    check_upload(body, boundary, cuts);
    return 0;
}
