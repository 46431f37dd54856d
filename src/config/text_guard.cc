#include "config/text_guard.h"

#include <algorithm>

namespace sluice::config {

size_t line_of(std::string_view text, size_t offset) {
  offset = std::min(offset, text.size());
  return 1 + static_cast<size_t>(std::count(text.begin(), text.begin() + offset, '\n'));
}

std::optional<size_t> invalid_utf8_at(std::string_view text) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  for (size_t i = 0; i < n;) {
    const unsigned char c = s[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len = 0;
    uint32_t cp = 0;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
      cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      cp = c & 0x07;
    } else {
      return i;
    }
    if (i + len > n)
      return i;
    for (size_t k = 1; k < len; ++k) {
      if ((s[i + k] & 0xC0) != 0x80)
        return i;
      cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    const bool overlong = (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000);
    if (overlong || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
      return i;
    i += len;
  }
  return std::nullopt;
}

std::optional<size_t> too_deep_at(std::string_view text, int max_depth, bool yaml) {
  int depth = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '"' || (yaml && c == '\'')) {
      // Skip the quoted string ("\" escapes in double quotes; '' in single quotes).
      for (++i; i < text.size() && text[i] != c; ++i) {
        if (c == '"' && text[i] == '\\')
          ++i;
      }
    } else if (yaml && c == '#' &&
               (i == 0 || text[i - 1] == ' ' || text[i - 1] == '\t' || text[i - 1] == '\n')) {
      while (i < text.size() && text[i] != '\n') ++i;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth)
        return i;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return std::nullopt;
}

std::optional<TextError> check_config_text(std::string_view text, size_t max_bytes, bool yaml) {
  if (text.size() > max_bytes) {
    return TextError{1, "larger than " + std::to_string(max_bytes) + " bytes (" +
                            std::to_string(text.size()) + ")"};
  }
  if (auto at = invalid_utf8_at(text))
    return TextError{line_of(text, *at), "not valid UTF-8"};
  if (auto at = too_deep_at(text, kMaxNesting, yaml))
    return TextError{line_of(text, *at),
                     "nested more than " + std::to_string(kMaxNesting) + " levels deep"};
  return std::nullopt;
}

}  // namespace sluice::config
