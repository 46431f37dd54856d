#include "config/yaml_tree.h"

#include <fmt/format.h>
#include <yaml.h>

#include <algorithm>
#include <memory>
#include <unordered_map>
#include <unordered_set>

namespace sluice::config {

namespace {

const std::string kEmpty;

struct Open {
  YamlData* node = nullptr;
  size_t weight = 1;  // nodes the subtree stands for once aliases are expanded (saturating)
  std::optional<YamlNode> key;                // a mapping's key waiting for its value
  std::unordered_set<std::string_view> keys;  // a mapping's scalar keys (duplicates)
};

std::string c_text(const yaml_char_t* p) {
  return p != nullptr ? std::string(reinterpret_cast<const char*>(p)) : std::string();
}

bool null_word(std::string_view s) {
  return s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL";
}

// libyaml's parser and event, released however the parse ends.
struct Parser {
  Parser() { ok = yaml_parser_initialize(&p) != 0; }
  ~Parser() {
    if (ok)
      yaml_parser_delete(&p);
  }
  yaml_parser_t p;
  bool ok = false;
};
struct Event {
  ~Event() {
    if (held)
      yaml_event_delete(&e);
  }
  yaml_event_t e;
  bool held = false;
};

class Builder {
 public:
  explicit Builder(const YamlLimits& limits) : limits_(limits) {}

  // False (with error set) when the document must be refused.
  bool on_event(const yaml_event_t& ev) {
    const int line = static_cast<int>(ev.start_mark.line) + 1;
    switch (ev.type) {
      case YAML_DOCUMENT_START_EVENT:
        anchors_.clear();  // anchors are local to their document
        aliased_ = false;
        return true;
      case YAML_SCALAR_EVENT: {
        YamlData& d = make(line);
        d.text.assign(reinterpret_cast<const char*>(ev.data.scalar.value), ev.data.scalar.length);
        d.plain = ev.data.scalar.tag == nullptr && ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
        d.kind = d.plain && null_word(d.text) ? YamlData::Kind::Null : YamlData::Kind::Scalar;
        if (ev.data.scalar.anchor != nullptr)
          anchors_[c_text(ev.data.scalar.anchor)] = {&d, 1};
        return add(&d, 1, line);
      }
      case YAML_ALIAS_EVENT: {
        const std::string name = c_text(ev.data.alias.anchor);
        auto it = anchors_.find(name);
        if (it == anchors_.end())
          return fail(line, fmt::format("alias *{} names no complete anchor before it", name));
        aliased_ = true;
        return add(it->second.first, it->second.second, line);
      }
      case YAML_SEQUENCE_START_EVENT:
      case YAML_MAPPING_START_EVENT: {
        if (static_cast<int>(open_.size()) >= limits_.max_depth)
          return fail(line, fmt::format("nested deeper than {} levels", limits_.max_depth));
        YamlData& d = make(line);
        const bool map = ev.type == YAML_MAPPING_START_EVENT;
        d.kind = map ? YamlData::Kind::Map : YamlData::Kind::Sequence;
        open_.emplace_back().node = &d;
        pending_anchor_.push_back(
            c_text(map ? ev.data.mapping_start.anchor : ev.data.sequence_start.anchor));
        return true;
      }
      case YAML_SEQUENCE_END_EVENT:
      case YAML_MAPPING_END_EVENT: {
        Open done = std::move(open_.back());
        open_.pop_back();
        const std::string name = std::move(pending_anchor_.back());
        pending_anchor_.pop_back();
        if (!name.empty())
          anchors_[name] = {done.node, done.weight};
        return add(done.node, done.weight, done.node->line);
      }
      default:
        return true;
    }
  }

  YamlResult finish() {
    YamlResult r;
    r.stream = std::move(stream_);
    return r;
  }
  int error_line = 1;
  std::string error;

 private:
  YamlData& make(int line) {
    YamlData& d = stream_.arena.emplace_back();
    d.line = line;
    return d;
  }

  bool fail(int line, std::string what) {
    error_line = std::max(1, line);
    error = "YAML error: " + std::move(what);
    return false;
  }

  bool add(const YamlData* d, size_t weight, int line) {
    if (open_.empty()) {
      stream_.documents.emplace_back(d);
      return true;
    }
    Open& top = open_.back();
    top.weight = top.weight + weight < top.weight ? SIZE_MAX : top.weight + weight;
    if (aliased_ && top.weight > limits_.max_alias_expansion)
      return fail(line, fmt::format("aliases expand this document to more than {} nodes",
                                    limits_.max_alias_expansion));
    if (top.node->kind == YamlData::Kind::Sequence) {
      top.node->items.emplace_back(d);
      return true;
    }
    if (!top.key) {
      top.key = YamlNode(d);
      if (d->kind == YamlData::Kind::Scalar || d->kind == YamlData::Kind::Null) {
        if (!top.keys.insert(d->text).second)
          return fail(line, fmt::format("duplicate key \"{}\" in a mapping", d->text));
      }
      return true;
    }
    top.node->entries.emplace_back(*top.key, YamlNode(d));
    top.key.reset();
    return true;
  }

  const YamlLimits& limits_;
  YamlStream stream_;
  std::vector<Open> open_;
  std::vector<std::string> pending_anchor_;
  std::unordered_map<std::string, std::pair<const YamlData*, size_t>> anchors_;
  bool aliased_ = false;
};

}  // namespace

bool YamlNode::is_null() const {
  return d_ != nullptr && d_->kind == YamlData::Kind::Null;
}
bool YamlNode::is_scalar() const {
  return d_ != nullptr && d_->kind == YamlData::Kind::Scalar;
}
bool YamlNode::is_map() const {
  return d_ != nullptr && d_->kind == YamlData::Kind::Map;
}
bool YamlNode::is_sequence() const {
  return d_ != nullptr && d_->kind == YamlData::Kind::Sequence;
}
const std::string& YamlNode::text() const {
  return is_scalar() ? d_->text : kEmpty;
}
bool YamlNode::plain() const {
  return d_ != nullptr && d_->plain;
}
int YamlNode::line() const {
  return d_ != nullptr ? std::max(1, d_->line) : 1;
}
YamlNode YamlNode::get(std::string_view key) const {
  for (const auto& [k, v] : entries()) {
    if (k.is_scalar() && k.text() == key)
      return v;
  }
  return YamlNode();
}
std::span<const YamlNode> YamlNode::items() const {
  if (d_ == nullptr)
    return {};
  return d_->items;
}
std::span<const std::pair<YamlNode, YamlNode>> YamlNode::entries() const {
  if (d_ == nullptr)
    return {};
  return d_->entries;
}
size_t YamlNode::size() const {
  return d_ == nullptr ? 0 : d_->items.size() + d_->entries.size();
}

YamlResult parse_yaml(std::string_view text, const YamlLimits& limits) {
  YamlResult bad;
  Parser parser;
  if (!parser.ok) {
    bad.error = "YAML syntax error: cannot start the YAML parser";
    return bad;
  }
  yaml_parser_set_input_string(&parser.p, reinterpret_cast<const unsigned char*>(text.data()),
                               text.size());
  Builder builder(limits);
  for (;;) {
    Event ev;
    if (yaml_parser_parse(&parser.p, &ev.e) == 0) {
      const yaml_mark_t& at = parser.p.problem_mark;
      bad.error_line = static_cast<int>(at.line) + 1;
      bad.error = fmt::format("YAML syntax error: {}{}{} (column {})",
                              parser.p.problem != nullptr ? parser.p.problem : "invalid YAML",
                              parser.p.context != nullptr ? " " : "",
                              parser.p.context != nullptr ? parser.p.context : "", at.column + 1);
      return bad;
    }
    ev.held = true;
    if (!builder.on_event(ev.e)) {
      bad.error_line = builder.error_line;
      bad.error = builder.error;
      return bad;
    }
    if (ev.e.type == YAML_STREAM_END_EVENT)
      return builder.finish();
  }
}

}  // namespace sluice::config
