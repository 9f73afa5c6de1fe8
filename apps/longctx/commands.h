// The CLI's subcommands. Each registers its options on a CLI11 subcommand and
// returns the function that runs it.
#pragma once
#include <CLI/CLI.hpp>
#include <functional>

namespace longctx::cli {

using Run = std::function<int()>;
Run add_init(CLI::App& app);
Run add_grad(CLI::App& app);
Run add_info(CLI::App& app);
Run add_train(CLI::App& app);
Run add_eval(CLI::App& app);
Run add_generate(CLI::App& app);
Run add_plan(CLI::App& app);
Run add_merge(CLI::App& app);
Run add_export(CLI::App& app);
Run add_comm_check(CLI::App& app);

}  // namespace longctx::cli
