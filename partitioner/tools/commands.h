// The `cleave` subcommands: argument parsing and printing only, the work is in
// cleave_partitioner. One file per subcommand (inspect_command.cc, split_command.cc, ...); each
// Add*Command registers its subcommand on `app`, which stores its outcome in `*status` when it
// runs. docs/CLI.md documents the commands and their flags.
#ifndef CLEAVE_PARTITIONER_TOOLS_COMMANDS_H_
#define CLEAVE_PARTITIONER_TOOLS_COMMANDS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "cleave/common/frame_codec.h"

namespace cleave::cli {

void AddInspectCommand(CLI::App& app, absl::Status* status);
void AddSplitCommand(CLI::App& app, absl::Status* status);
void AddProfileCommand(CLI::App& app, absl::Status* status);
void AddPlanCommand(CLI::App& app, absl::Status* status);
void AddVerifyCommand(CLI::App& app, absl::Status* status);
void AddTrainReferenceCommand(CLI::App& app, absl::Status* status);
void AddExitsCommand(CLI::App& app, absl::Status* status);
void AddKeygenCommand(CLI::App& app, absl::Status* status);
void AddSignCommand(CLI::App& app, absl::Status* status);
void AddEncryptCommand(CLI::App& app, absl::Status* status);

// What `cleave split` takes; `cleave exits train` on a model file splits it the same way.
struct SplitFlags {
  std::string model, input_shape, cuts, plan, out, name;
  std::string codec = "raw";
  bool codec_given = false;  // --codec or --zstd-level on the command line (beat the plan's)
  int zstd_level = 0;
  std::string calibration_data;
  int64_t calibration_samples = 512;
  double clip_percentile = 99.99;
};
[[nodiscard]] absl::Status Split(const SplitFlags& flags);

// "a, b,c" as {"a", "b", "c"}: the comma lists of --cuts.
[[nodiscard]] std::vector<std::string> SplitList(const std::string& text);

// What `cleave split --plan FILE` takes from a plan: its cuts and codec, after checking that
// the plan was made for the model whose SHA-256 is `model_sha256`.
struct PlannedSplit {
  std::vector<int> cuts;
  common::CodecSpec codec;
};
[[nodiscard]] absl::StatusOr<PlannedSplit> ReadPlanFor(const std::string& plan_path,
                                                       const std::string& model_sha256);

}  // namespace cleave::cli

#endif  // CLEAVE_PARTITIONER_TOOLS_COMMANDS_H_
