// cli/commands.h — each subcommand registers its flags and returns the action to run.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

namespace sluice::cli {

using Action = std::function<int()>;

Action add_queue_proxy_command(CLI::App& app);
Action add_activator_command(CLI::App& app);
Action add_run_command(CLI::App& app);
Action add_autoscaler_command(CLI::App& app);
Action add_simulate_command(CLI::App& app);

}  // namespace sluice::cli
