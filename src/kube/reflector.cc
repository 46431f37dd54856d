#include "kube/reflector.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "core/timer.h"

namespace sluice::kube {

using nlohmann::json;

namespace {

std::string str(const json& j, const char* a, const char* b) {
  const auto ia = j.find(a);
  if (ia == j.end() || !ia->is_object())
    return {};
  const auto ib = ia->find(b);
  return ib != ia->end() && ib->is_string() ? ib->get<std::string>() : std::string();
}

std::pair<std::string, std::string> key_of(const json& object) {
  return {str(object, "metadata", "namespace"), str(object, "metadata", "name")};
}

}  // namespace

std::string Collection::describe() const {
  std::string s = path;
  if (!label_selector.empty())
    s += " labels " + label_selector;
  if (!field_selector.empty())
    s += " fields " + field_selector;
  return s;
}

std::string query_escape(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~')
      out += static_cast<char>(c);
    else
      out += fmt::format("%{:02X}", c);
  }
  return out;
}

WatchEvent parse_watch_event(std::string_view line, json& object) {
  WatchEvent ev;
  json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string() || !j.contains("object") ||
      !j["object"].is_object()) {
    ev.message = "not a watch event";
    return ev;
  }
  const std::string type = j["type"].get<std::string>();
  object = std::move(j["object"]);
  if (type == "ERROR") {
    ev.type = WatchEvent::Type::Error;
    if (auto c = object.find("code"); c != object.end() && c->is_number_integer())
      ev.code = c->get<int>();
    if (auto m = object.find("message"); m != object.end() && m->is_string())
      ev.message = m->get<std::string>();
    return ev;
  }
  ev.resource_version = str(object, "metadata", "resourceVersion");
  if (type == "ADDED")
    ev.type = WatchEvent::Type::Added;
  else if (type == "MODIFIED")
    ev.type = WatchEvent::Type::Modified;
  else if (type == "DELETED")
    ev.type = WatchEvent::Type::Deleted;
  else if (type == "BOOKMARK")
    ev.type = WatchEvent::Type::Bookmark;
  else
    ev.message = "unknown event type " + type;
  return ev;
}

Reflector::Reflector(Client& client,
                     core::TimeSource& time,
                     core::Random& random,
                     Collection collection,
                     ReflectorHandler handler,
                     WatchPolicy policy)
    : client_(client),
      time_(time),
      random_(random),
      collection_(std::move(collection)),
      handler_(std::move(handler)),
      machine_(policy, random) {}

void Reflector::report(std::string cause) {
  const auto now = time_.now();
  if (machine_.failed(now, cause))
    spdlog::warn("kube: {}: {}; retrying with backoff", collection_.describe(), cause);
}

Task<void> Reflector::run() {
  auto ex = co_await asio::this_coro::executor;
  core::Timer timer(time_, ex);
  while (!stopped_) {
    const auto next = machine_.next(time_.now());
    switch (next.step) {
      case WatchMachine::Step::Wait: {
        timer.expires_at(next.until);
        co_await timer.async_wait(http::kUseTuple);
        break;
      }
      case WatchMachine::Step::List: {
        co_await list();
        break;
      }
      case WatchMachine::Step::Watch: {
        co_await watch(next.resource_version);
        break;
      }
    }
  }
}

Task<void> Reflector::list() {
  std::string cont;
  std::string rv;
  std::map<std::pair<std::string, std::string>, std::string> seen;
  std::vector<json> items;
  do {
    std::string target = collection_.path + "?limit=500";
    if (!collection_.label_selector.empty())
      target += "&labelSelector=" + query_escape(collection_.label_selector);
    if (!collection_.field_selector.empty())
      target += "&fieldSelector=" + query_escape(collection_.field_selector);
    if (!cont.empty())
      target += "&continue=" + query_escape(cont);
    Response r = co_await client_.request("GET", target);
    if (!r.ok()) {
      report("list failed: " + r.describe());
      co_return;
    }
    json page = json::parse(r.body, nullptr, false);
    if (!page.is_object() || !page.contains("items") || !page["items"].is_array()) {
      report("list failed: the answer is not a list");
      co_return;
    }
    rv = str(page, "metadata", "resourceVersion");
    cont = str(page, "metadata", "continue");
    for (json& item : page["items"]) items.push_back(std::move(item));
  } while (!cont.empty());
  for (json& item : items) {
    auto key = key_of(item);
    std::string item_rv = str(item, "metadata", "resourceVersion");
    auto it = known_.find(key);
    if (it == known_.end() || it->second != item_rv)
      handler_.upsert(item);
    seen.emplace(std::move(key), std::move(item_rv));
  }
  for (const auto& [key, old_rv] : known_)
    if (!seen.contains(key))
      handler_.remove(key.first, key.second);
  known_ = std::move(seen);
  machine_.listed(rv);
  if (handler_.synced)
    handler_.synced();
}

void Reflector::apply(const WatchEvent& event, const json& object) {
  auto key = key_of(object);
  switch (event.type) {
    case WatchEvent::Type::Added:
    case WatchEvent::Type::Modified:
      known_[key] = event.resource_version;
      handler_.upsert(object);
      break;
    case WatchEvent::Type::Deleted:
      if (known_.erase(key) > 0)
        handler_.remove(key.first, key.second);
      break;
    default:
      break;
  }
}

Task<void> Reflector::watch(std::string resource_version) {
  // Like client-go: the server ends each watch after 5-10 minutes, so connections
  // rebalance across apiservers; bookmarks keep the resource version fresh meanwhile.
  const int timeout_s = 300 + static_cast<int>(random_.uniform(300));
  std::string target = fmt::format("{}?watch=1&allowWatchBookmarks=true&timeoutSeconds={}",
                                   collection_.path, timeout_s);
  if (!resource_version.empty())
    target += "&resourceVersion=" + query_escape(resource_version);
  if (!collection_.label_selector.empty())
    target += "&labelSelector=" + query_escape(collection_.label_selector);
  if (!collection_.field_selector.empty())
    target += "&fieldSelector=" + query_escape(collection_.field_selector);
  bool expired = false;
  std::string error;
  auto on_line = [&](std::string_view line) {
    if (expired || !error.empty())
      return;
    json object;
    const WatchEvent ev = parse_watch_event(line, object);
    if (ev.type == WatchEvent::Type::Error) {
      if (ev.code == 410)
        expired = true;
      else
        error = fmt::format("watch error event: {} {}", ev.code, ev.message);
      return;
    }
    if (ev.type == WatchEvent::Type::Malformed) {
      error = "watch failed: " + ev.message;
      return;
    }
    apply(ev, object);
    machine_.event(ev.resource_version);
  };
  Response r = co_await client_.stream_lines(target, on_line, std::chrono::seconds(timeout_s + 30));
  if (expired || r.status == 410) {
    spdlog::info("kube: watch of {} expired (410): relisting", collection_.describe());
    machine_.expired();
  } else if (!error.empty()) {
    report(error);
  } else if (r.error || r.status != 200) {
    report("watch failed: " + r.describe());
  } else {
    machine_.ended();
  }
}

}  // namespace sluice::kube
