// config/text_guard.h
//
// Checks a configuration text must pass before a parser sees it. JSON and YAML parsers
// and the trees they build recurse once per nesting level (nlohmann's copy and dump,
// a YAML parser's), so a file of 200k nested brackets overflows the stack; and a
// YAML or JSON text must be UTF-8 (Kubernetes requires it; nlohmann's dump throws on
// anything else). Pure functions over the text.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace sluice::config {

// Deeper than any real endpoints file, probe or Kubernetes object needs.
inline constexpr int kMaxNesting = 64;

// 1-based line of a byte offset.
size_t line_of(std::string_view text, size_t offset);

// Offset of the first byte that is not part of valid UTF-8 (overlongs, surrogates and
// code points above U+10FFFF included), or nullopt.
std::optional<size_t> invalid_utf8_at(std::string_view text);

// Offset where flow nesting ([ and {, outside quoted strings and comments) first goes
// deeper than max_depth, or nullopt. `yaml` also skips '...' strings and # comments.
std::optional<size_t> too_deep_at(std::string_view text, int max_depth, bool yaml);

// All three in one: size, UTF-8 and nesting; the error says which and on which line.
struct TextError {
  size_t line = 1;
  std::string what;
  std::string message() const { return "line " + std::to_string(line) + ": " + what; }
};
std::optional<TextError> check_config_text(std::string_view text, size_t max_bytes, bool yaml);

}  // namespace sluice::config
