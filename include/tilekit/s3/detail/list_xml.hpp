#pragma once
// Reading one page of a ListObjectsV2 answer (<ListBucketResult>): the object keys, IsTruncated
// and NextContinuationToken. A small, strict XML reader of its own, for this one document: it
// checks that the document is well formed (tags nest and match, one root, nothing but
// whitespace, comments and processing instructions around it), unescapes the five predefined
// entities and numeric character references, and refuses a DTD (no entity expansion), an
// unknown entity, a control character, a body over the size limit and nesting deeper than a
// ListBucketResult ever is. Anything it cannot read is a tilekit::error (errc::storage_error)
// that says what was wrong; it never reads past the end of the body.

#include <tilekit/error.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

TILEKIT_NAMESPACE_BEGIN
namespace detail {

struct s3_list_page {
    std::vector<std::string> keys;  // the <Key> of each <Contents>, unescaped, in document order
    bool truncated = false;         // <IsTruncated>
    std::string next_token;         // <NextContinuationToken>; never empty when truncated
};

class s3_list_reader {
public:
    static constexpr std::size_t max_depth = 8;  // ListBucketResult/Contents/Owner/ID is 3 deep

    explicit s3_list_reader(std::string_view xml) : xml_(xml) {}

    s3_list_page read() {
        skip_prolog();
        if (at_end()) fail("no root element");
        if (xml_[pos_] != '<') fail("text before the root element");
        read_element_tree();
        skip_misc();
        if (!at_end()) fail("content after the root element");
        if (truncated_count_ == 0) fail("no <IsTruncated>");
        if (page_.truncated && page_.next_token.empty())
            fail("<IsTruncated> is true but there is no <NextContinuationToken>");
        if (!page_.truncated) page_.next_token.clear();
        return std::move(page_);
    }

private:
    struct frame {
        std::string name;
        std::string text;
        bool has_children = false;
        int keys = 0;  // <Key> children (Contents only)
    };

    [[noreturn]] void fail(const std::string& why) const {
        throw error(errc::storage_error,
                    "malformed ListObjectsV2 response (" + why + ", at byte " + std::to_string(pos_) + ")");
    }

    bool at_end() const { return pos_ >= xml_.size(); }
    bool starts_with(std::string_view text) const { return xml_.compare(pos_, text.size(), text) == 0; }

    static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
    void skip_spaces() {
        while (!at_end() && is_space(xml_[pos_])) ++pos_;
    }

    // Moves past `terminator`, which must come before the end of the body.
    void skip_past(std::string_view terminator, const char* what) {
        const std::size_t end = xml_.find(terminator, pos_);
        if (end == std::string_view::npos) fail(std::string("unterminated ") + what);
        pos_ = end + terminator.size();
    }

    // Comments and processing instructions (the XML declaration among them); a DTD is refused.
    bool skip_comment_or_pi() {
        if (starts_with("<!--")) {
            pos_ += 4;
            skip_past("-->", "comment");
            return true;
        }
        if (starts_with("<?")) {
            pos_ += 2;
            skip_past("?>", "processing instruction");
            return true;
        }
        if (starts_with("<!DOCTYPE") || starts_with("<!doctype")) fail("a DTD is not accepted");
        return false;
    }

    void skip_misc() {
        for (;;) {
            skip_spaces();
            if (at_end() || !skip_comment_or_pi()) return;
        }
    }

    void skip_prolog() {
        if (starts_with("\xEF\xBB\xBF")) pos_ += 3;  // a UTF-8 byte order mark
        skip_misc();
    }

    static bool is_name_char(char c) {
        const auto u = static_cast<unsigned char>(c);
        return u >= 0x80 || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
               c == ':' || c == '-' || c == '.';
    }

    std::string_view read_name() {
        const std::size_t start = pos_;
        while (!at_end() && is_name_char(xml_[pos_])) ++pos_;
        if (pos_ == start) fail("a tag without a name");
        const char first = xml_[start];
        if ((first >= '0' && first <= '9') || first == '-' || first == '.') fail("a tag name starts with a digit, '-' or '.'");
        return xml_.substr(start, pos_ - start);
    }

    // After the name of a start tag: attributes up to '>' or '/>'. Returns true for '/>'.
    bool read_attributes() {
        for (;;) {
            const std::size_t before = pos_;
            skip_spaces();
            if (at_end()) fail("unterminated start tag");
            if (starts_with("/>")) {
                pos_ += 2;
                return true;
            }
            if (xml_[pos_] == '>') {
                ++pos_;
                return false;
            }
            if (pos_ == before) fail("attributes must be separated by whitespace");
            read_name();
            skip_spaces();
            if (at_end() || xml_[pos_] != '=') fail("an attribute without '='");
            ++pos_;
            skip_spaces();
            if (at_end() || (xml_[pos_] != '"' && xml_[pos_] != '\'')) fail("an attribute value without quotes");
            const char quote = xml_[pos_++];
            const std::size_t end = xml_.find(quote, pos_);
            if (end == std::string_view::npos) fail("unterminated attribute value");
            if (xml_.substr(pos_, end - pos_).find('<') != std::string_view::npos) fail("'<' in an attribute value");
            pos_ = end + 1;
        }
    }

    static void append_utf8(std::string& out, std::uint32_t cp) {
        if (cp < 0x80) {
            out += static_cast<char>(cp);
        } else if (cp < 0x800) {
            out += static_cast<char>(0xC0 | (cp >> 6));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            out += static_cast<char>(0xE0 | (cp >> 12));
            out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        } else {
            out += static_cast<char>(0xF0 | (cp >> 18));
            out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
            out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        }
    }

    // XML 1.0's Char production.
    static bool is_xml_char(std::uint32_t cp) {
        return cp == 0x9 || cp == 0xA || cp == 0xD || (cp >= 0x20 && cp <= 0xD7FF) || (cp >= 0xE000 && cp <= 0xFFFD) ||
               (cp >= 0x10000 && cp <= 0x10FFFF);
    }

    // At '&': one entity or character reference, appended to `out`.
    void read_reference(std::string& out) {
        const std::size_t semicolon = xml_.find(';', pos_);
        if (semicolon == std::string_view::npos || semicolon - pos_ > 12) fail("'&' that starts no entity");
        const std::string_view name = xml_.substr(pos_ + 1, semicolon - pos_ - 1);
        if (name == "amp") out += '&';
        else if (name == "lt") out += '<';
        else if (name == "gt") out += '>';
        else if (name == "quot") out += '"';
        else if (name == "apos") out += '\'';
        else if (name.size() >= 2 && name[0] == '#') {
            const bool hexadecimal = name[1] == 'x';
            const std::string_view digits = name.substr(hexadecimal ? 2 : 1);
            if (digits.empty() || digits.size() > 7) fail("a bad character reference");
            std::uint32_t cp = 0;
            for (const char c : digits) {
                int value = -1;
                if (c >= '0' && c <= '9') value = c - '0';
                else if (hexadecimal && c >= 'a' && c <= 'f') value = c - 'a' + 10;
                else if (hexadecimal && c >= 'A' && c <= 'F') value = c - 'A' + 10;
                if (value < 0) fail("a bad character reference");
                cp = cp * (hexadecimal ? 16 : 10) + static_cast<std::uint32_t>(value);
            }
            if (!is_xml_char(cp)) fail("a character reference to a character XML does not allow");
            append_utf8(out, cp);
        } else {
            fail("an unknown entity '&" + std::string(name.substr(0, 40)) + ";'");
        }
        pos_ = semicolon + 1;
    }

    // Character data up to the next '<', unescaped and with line ends normalised, into `out`.
    void read_text(std::string& out) {
        while (!at_end() && xml_[pos_] != '<') {
            const char c = xml_[pos_];
            const auto u = static_cast<unsigned char>(c);
            if (c == '&') {
                read_reference(out);
            } else if (c == '\r') {
                out += '\n';
                ++pos_;
                if (!at_end() && xml_[pos_] == '\n') ++pos_;
            } else if ((u < 0x20 && c != '\t' && c != '\n') || u == 0x7F) {
                fail("a control character in the text");
            } else {
                out += c;
                ++pos_;
            }
        }
    }

    static bool only_spaces(const std::string& text) {
        for (const char c : text)
            if (!is_space(c)) return false;
        return true;
    }

    void read_element_tree() {
        std::vector<frame> stack;
        do {
            if (at_end()) fail("the body ends inside <" + stack.back().name + ">");
            if (xml_[pos_] != '<') {
                read_text(stack.back().text);
                continue;
            }
            if (starts_with("</")) {
                if (stack.empty()) fail("an end tag before the root element");
                pos_ += 2;
                const std::string_view name = read_name();
                skip_spaces();
                if (at_end() || xml_[pos_] != '>') fail("unterminated end tag");
                ++pos_;
                if (name != stack.back().name)
                    fail("</" + std::string(name.substr(0, 40)) + "> closes <" + stack.back().name + ">");
                close(stack);
                continue;
            }
            if (starts_with("<![CDATA[")) {
                if (stack.empty()) fail("CDATA outside the root element");
                pos_ += 9;
                const std::size_t end = xml_.find("]]>", pos_);
                if (end == std::string_view::npos) fail("unterminated CDATA section");
                stack.back().text.append(xml_.substr(pos_, end - pos_));
                pos_ = end + 3;
                continue;
            }
            if (skip_comment_or_pi()) continue;
            if (starts_with("<!")) fail("an unexpected '<!' declaration");
            ++pos_;
            frame opened;
            opened.name = std::string(read_name());
            const bool empty = read_attributes();
            if (stack.empty() && opened.name != "ListBucketResult")
                fail("the root element is <" + opened.name.substr(0, 40) + ">, not <ListBucketResult>");
            if (stack.size() >= max_depth) fail("elements nested too deep");
            if (!stack.empty()) stack.back().has_children = true;
            stack.push_back(std::move(opened));
            if (empty) close(stack);
        } while (!stack.empty());
    }

    // The element on top of `stack` has ended: take what the page needs from it.
    void close(std::vector<frame>& stack) {
        frame done = std::move(stack.back());
        stack.pop_back();
        if (done.has_children && !only_spaces(done.text)) fail("text mixed with elements in <" + done.name + ">");
        if (stack.empty()) return;  // the root
        frame& parent = stack.back();
        if (stack.size() == 1) {  // a child of ListBucketResult
            if (done.name == "IsTruncated") {
                if (++truncated_count_ > 1) fail("more than one <IsTruncated>");
                std::string_view value = done.text;
                while (!value.empty() && is_space(value.front())) value.remove_prefix(1);
                while (!value.empty() && is_space(value.back())) value.remove_suffix(1);
                if (value == "true") page_.truncated = true;
                else if (value == "false") page_.truncated = false;
                else fail("<IsTruncated> is neither true nor false");
            } else if (done.name == "NextContinuationToken") {
                if (++token_count_ > 1) fail("more than one <NextContinuationToken>");
                page_.next_token = std::move(done.text);
            } else if (done.name == "Contents") {
                if (done.keys != 1) fail("a <Contents> with " + std::to_string(done.keys) + " <Key> elements");
            } else if (done.name == "CommonPrefixes") {
                fail("<CommonPrefixes> in a listing asked for without a delimiter");
            } else if (done.name == "EncodingType") {
                if (!only_spaces(done.text)) fail("keys encoded as '" + done.text.substr(0, 40) + "', which was not asked for");
            }
        } else if (stack.size() == 2 && parent.name == "Contents" && done.name == "Key") {
            if (done.has_children) fail("a <Key> with elements inside");
            if (done.text.empty()) fail("an empty <Key>");
            ++parent.keys;
            page_.keys.push_back(std::move(done.text));
        }
    }

    std::string_view xml_;
    std::size_t pos_ = 0;
    s3_list_page page_;
    int truncated_count_ = 0;
    int token_count_ = 0;
};

// One page of a ListObjectsV2 answer. Throws tilekit::error (errc::storage_error) for a body
// larger than `max_bytes` or one that is not a well-formed ListBucketResult with an IsTruncated
// (and a NextContinuationToken when truncated).
inline s3_list_page parse_list_objects_v2(std::string_view xml, std::size_t max_bytes = std::size_t{64} << 20) {
    if (xml.size() > max_bytes)
        throw error(errc::storage_error, "ListObjectsV2 response of " + std::to_string(xml.size()) +
                                             " bytes is larger than the limit of " + std::to_string(max_bytes));
    return s3_list_reader(xml).read();
}

}  // namespace detail
TILEKIT_NAMESPACE_END
