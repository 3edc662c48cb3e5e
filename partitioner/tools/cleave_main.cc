// cleave: the model engineer's CLI. Each subcommand is registered from its own file
// (commands.h); the work is in cleave_partitioner.
#include <iostream>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"
#include "partitioner/tools/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"cleave: cut TorchScript models into segments for split device/edge execution"};
  app.require_subcommand(1);
  absl::Status status;
  cleave::cli::AddInspectCommand(app, &status);
  cleave::cli::AddSplitCommand(app, &status);
  cleave::cli::AddProfileCommand(app, &status);
  cleave::cli::AddPlanCommand(app, &status);
  cleave::cli::AddVerifyCommand(app, &status);
  cleave::cli::AddTrainReferenceCommand(app, &status);
  cleave::cli::AddExitsCommand(app, &status);
  cleave::cli::AddKeygenCommand(app, &status);
  cleave::cli::AddEncryptCommand(app, &status);
  cleave::cli::AddSignCommand(app, &status);
  CLI11_PARSE(app, argc, argv);
  if (!status.ok()) {
    std::cerr << "cleave: error: " << status.message() << "\n";
    return 1;
  }
  return 0;
}
