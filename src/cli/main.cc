// The one sluice binary: every subcommand is wired here (the composition root).
#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>
#include <map>
#include <string>

#include "cli/commands.h"
#include "core/malloc_tuning.h"

int main(int argc, char** argv) {
  sluice::core::tune_malloc(argv);  // may re-execute this process once (core/malloc_tuning.h)
  // A closed stdout (`sluice run ... | tee log`, tee gone at Ctrl-C) must not kill the
  // process mid-drain with SIGPIPE (exit 141); sockets already send with MSG_NOSIGNAL.
  // Children get the default back (runtime/process.cc).
  std::signal(SIGPIPE, SIG_IGN);
  CLI::App app{"Sluice: a serverless request data plane (queue-proxy, activator, autoscaler)"};
  app.require_subcommand(1);
  app.set_version_flag("--version", SLUICE_VERSION);

  std::map<CLI::App*, sluice::cli::Action> actions;
  auto* qp = app.add_subcommand("queue-proxy",
                                "Sidecar in front of one replica: concurrency limit, probes, "
                                "drain, autoscaler stats, metrics");
  actions[qp] = sluice::cli::add_queue_proxy_command(*qp);
  auto* act = app.add_subcommand("activator",
                                 "Shared front door: buffers requests while a revision has no "
                                 "ready replica, throttles, load-balances, tracks pod health");
  actions[act] = sluice::cli::add_activator_command(*act);
  auto* as = app.add_subcommand("autoscaler",
                                "Knative's autoscaler, replaced: the KPA with the scale buffer "
                                "and effective capacity, scaling Deployments in a cluster");
  actions[as] = sluice::cli::add_autoscaler_command(*as);
  auto* run = app.add_subcommand(
      "run",
      "Serverless on one machine: run Knative Service YAML with local replicas, the "
      "activator and the KPA autoscaler");
  actions[run] = sluice::cli::add_run_command(*run);
  auto* simulate = app.add_subcommand(
      "simulate",
      "Replay a traffic trace through the real autoscaler on a manual clock: cold starts and "
      "replica-seconds per scaling policy, before you deploy");
  actions[simulate] = sluice::cli::add_simulate_command(*simulate);
  auto* version = app.add_subcommand("version", "Print the version and exit");
  actions[version] = [] {
    std::printf("sluice %s\n", SLUICE_VERSION);
    return 0;
  };

  // CLI11 reads an unknown first word as a missing subcommand; name the typo instead.
  if (argc > 1 && argv[1][0] != '-') {
    std::string names;
    bool known = false;
    for (const auto* sub : app.get_subcommands({})) {
      known = known || sub->get_name() == argv[1];
      names += (names.empty() ? "" : ", ") + sub->get_name();
    }
    if (!known) {
      std::fprintf(stderr, "sluice: unknown subcommand \"%s\" (one of: %s)\n", argv[1],
                   names.c_str());
      return 2;
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  for (auto* sub : app.get_subcommands()) {
    auto it = actions.find(sub);
    if (it == actions.end())
      continue;
    try {
      return it->second();
    } catch (const std::exception& e) {
      // Every expected failure is reported where it happens; this names the rest instead
      // of leaving "terminate called" and a core dump.
      std::fprintf(stderr, "sluice %s: internal error: %s\n", sub->get_name().c_str(), e.what());
      return 70;  // EX_SOFTWARE
    }
  }
  return 2;
}
