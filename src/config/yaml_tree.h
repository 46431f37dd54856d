// config/yaml_tree.h
//
// YAML documents as small read-only trees, built from libyaml's event stream with an
// explicit stack (no recursion), for the Service loader. libyaml is the reference C
// parser that go-yaml (so Kubernetes' own YAML decoding) is a port of, and is fuzzed
// continuously. The others in Debian 12 failed our fuzzer: yaml-cpp 0.7 allocates
// without limit on some inputs (the one-byte file ",": 1.9 GB in 4 s; "!v ;;;,;;v") and
// throws for lookups of the wrong shape; libfyaml 0.7.12 crashes in fy_parser_destroy()
// after some syntax errors and leaks in fy_token_get_text().
//
// What the tree refuses, each as "LINE: YAML ...: what": syntax errors; nesting deeper
// than `max_depth`; a duplicate key in a mapping (Kubernetes refuses them too); and
// aliases that would expand a document past `max_alias_expansion` nodes (the "billion
// laughs"). Aliases share the anchored node (the tree is a DAG), so walking it is
// bounded by that budget. Merge keys (`<<`) are ordinary keys.
//
// A plain scalar with no tag that is empty, `~` or `null` (any case form YAML 1.2
// allows) is a Null node, as in Kubernetes' YAML decoder.
//
// Threading: none; a YamlStream is immutable once parsed and may be read from any thread.
#pragma once

#include <cstddef>
#include <deque>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sluice::config {

struct YamlData;

// A handle to a node, or to nothing (a key that is missing): every accessor is safe on
// both, so lookups of the wrong shape are values to report, never exceptions.
class YamlNode {
 public:
  YamlNode() = default;
  explicit YamlNode(const YamlData* d) : d_(d) {}

  explicit operator bool() const { return d_ != nullptr; }
  bool is_null() const;
  bool is_scalar() const;
  bool is_map() const;
  bool is_sequence() const;
  // A scalar's text; "" for anything else.
  const std::string& text() const;
  // A plain (unquoted, untagged) scalar: may stand for a number or a boolean.
  bool plain() const;
  // 1-based line where the node starts; 1 for a missing node.
  int line() const;

  // A mapping's value for `key` (first scalar key equal to it), else a missing node.
  YamlNode get(std::string_view key) const;
  // A sequence's items, a mapping's entries; empty for anything else.
  std::span<const YamlNode> items() const;
  std::span<const std::pair<YamlNode, YamlNode>> entries() const;
  size_t size() const;

 private:
  const YamlData* d_ = nullptr;
};

struct YamlData {
  enum class Kind { Null, Scalar, Map, Sequence };
  Kind kind = Kind::Null;
  bool plain = false;
  int line = 1;
  std::string text;
  std::vector<YamlNode> items;
  std::vector<std::pair<YamlNode, YamlNode>> entries;
};

struct YamlStream {
  std::vector<YamlNode> documents;  // roots, in file order
  std::deque<YamlData> arena;       // owns every node (stable addresses)
};

struct YamlLimits {
  int max_depth = 64;
  size_t max_alias_expansion = 100'000;
};

struct YamlResult {
  std::optional<YamlStream> stream;
  int error_line = 1;
  std::string error;  // "YAML syntax error: ... (column C)", set when !stream
};

YamlResult parse_yaml(std::string_view text, const YamlLimits& limits = {});

}  // namespace sluice::config
