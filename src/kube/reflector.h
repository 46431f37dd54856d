// kube/reflector.h
//
// Keeps a handler in step with one collection of the Kubernetes API, as client-go's
// reflector does: a paged LIST, then a WATCH from its resourceVersion with bookmarks,
// resumed from the last version seen when the server ends it, relisted on 410 Gone,
// retried with backoff (WatchMachine) on any failure, logging each distinct failure once
// with the collection and cause.
//
// After a relist the handler sees an upsert for every object and a remove for each one
// that vanished meanwhile, then synced(). Memory is bounded by the collection: the
// reflector keeps only each object's key and resourceVersion, a watch line is bounded
// (16 MiB, as the apiserver's own limit on an object is 1.5 MiB in etcd), and a list is
// read in pages of 500.
//
// Threading: one executor; run() until the executor stops or stop() is called.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "core/random.h"
#include "core/time_source.h"
#include "kube/client.h"
#include "kube/watch.h"

namespace sluice::kube {

struct Collection {
  std::string path;            // e.g. "/api/v1/endpoints", "/apis/apps/v1/namespaces/x/deployments"
  std::string label_selector;  // empty: all
  std::string field_selector;  // empty: all
  std::string describe() const;
};

struct ReflectorHandler {
  std::function<void(const nlohmann::json& object)> upsert;
  std::function<void(const std::string& namespace_, const std::string& name)> remove;
  std::function<void()> synced;  // after each (re)list has been applied
};

// Parses one watch line; the object (for Added/Modified/Deleted) goes to `object`.
WatchEvent parse_watch_event(std::string_view line, nlohmann::json& object);

// "a=b,c" -> "a%3Db%2Cc": query-string escaping for selectors and continue tokens.
std::string query_escape(std::string_view s);

class Reflector {
 public:
  Reflector(Client& client,
            core::TimeSource& time,
            core::Random& random,
            Collection collection,
            ReflectorHandler handler,
            WatchPolicy policy = {});

  Task<void> run();
  void stop() { stopped_ = true; }
  bool synced() const { return machine_.has_listed(); }

 private:
  Task<void> list();
  Task<void> watch(std::string resource_version);
  void apply(const WatchEvent& event, const nlohmann::json& object);
  void report(std::string cause);

  Client& client_;
  core::TimeSource& time_;
  core::Random& random_;
  Collection collection_;
  ReflectorHandler handler_;
  WatchMachine machine_;
  std::map<std::pair<std::string, std::string>, std::string> known_;  // (ns, name) -> rv
  bool stopped_ = false;
};

}  // namespace sluice::kube
