// `cleave profile` and `cleave plan`: argument parsing and printing for the planning commands
// (the work is in profiler.h and split_planner.h). Each Add* registers its subcommand on
// `app`; the subcommand stores its outcome in `*status` when it runs.
#ifndef CLEAVE_PARTITIONER_TOOLS_PLAN_COMMANDS_H_
#define CLEAVE_PARTITIONER_TOOLS_PLAN_COMMANDS_H_

#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "cleave/common/frame_codec.h"

namespace cleave::tools {

void AddProfileCommand(CLI::App& app, absl::Status* status);
void AddPlanCommand(CLI::App& app, absl::Status* status);

// What `cleave split --plan FILE` takes from a plan: its cuts and codec, after checking that
// the plan was made for the model at `model_path`.
struct PlannedSplit {
  std::vector<int> cuts;
  common::CodecSpec codec;
};
[[nodiscard]] absl::StatusOr<PlannedSplit> ReadPlanFor(const std::string& plan_path,
                                                       const std::string& model_sha256);

}  // namespace cleave::tools

#endif  // CLEAVE_PARTITIONER_TOOLS_PLAN_COMMANDS_H_
