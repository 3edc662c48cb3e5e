// `cleave profile MODEL --input-shape S -o PROFILE [...]`: time every segment between candidate
// cuts on this machine, for `cleave plan`.
#include <iostream>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cleave/common/files.h"
#include "cleave/common/progress.h"
#include "cleave/common/status_macros.h"
#include "cleave/common/tensor_spec.h"
#include "cleave/common/text_table.h"
#include "cleave/partitioner/model_graph.h"
#include "cleave/partitioner/profiler.h"
#include "partitioner/tools/commands.h"

namespace cleave::cli {
namespace {

using partitioner::Granularity;

struct ProfileFlags {
  std::string model, input_shape, out, granularity = "module";
  std::vector<int64_t> batch_sizes = {1, 4, 16};
  int runs = 20, warmup = 3, threads = 1;
  bool no_optimize = false;
};

absl::Status Profile(const ProfileFlags& flags) {
  CLEAVE_ASSIGN_OR_RETURN(auto shapes, common::ParseShapes(flags.input_shape));
  CLEAVE_ASSIGN_OR_RETURN(auto model, partitioner::ModelGraph::Load(flags.model, shapes));
  partitioner::ProfileOptions options;
  options.granularity = flags.granularity == "node" ? Granularity::kNode : Granularity::kModule;
  options.runs = flags.runs;
  options.warmup = flags.warmup;
  options.batch_sizes = flags.batch_sizes;
  options.intra_op_threads = flags.threads;
  options.optimize = !flags.no_optimize;
  std::unique_ptr<common::ProgressBar> bar;
  options.on_progress = [&](int64_t done, int64_t total) {
    if (bar == nullptr) bar = std::make_unique<common::ProgressBar>("profiling", total);
    bar->Update(done);
  };
  CLEAVE_ASSIGN_OR_RETURN(partitioner::ModelProfile profile,
                          partitioner::ProfileModel(*model, options));
  if (bar != nullptr) bar->Finish();
  CLEAVE_RETURN_IF_ERROR(common::WriteFileAtomically(flags.out, profile.ToJson()));

  std::vector<std::string> header = {"segment", "MMACs"};
  for (const auto& [batch, stats] : profile.segments.front().by_batch) {
    header.push_back(absl::StrCat("batch ", batch, " median ms (p10-p90)"));
  }
  common::TextTable table(header);
  for (size_t i = 0; i < profile.segments.size(); ++i) {
    const partitioner::SegmentProfile& segment = profile.segments[i];
    const std::string end =
        i + 1 < profile.cuts.size() ? profile.cuts[i + 1].name : std::string("output");
    std::vector<std::string> row = {absl::StrCat(profile.cuts[i].name, " -> ", end),
                                    absl::StrFormat("%.2f", segment.macs / 1e6)};
    for (const auto& [batch, stats] : segment.by_batch) {
      row.push_back(
          absl::StrFormat("%.3f (%.3f-%.3f)", stats.median_ms, stats.p10_ms, stats.p90_ms));
    }
    table.AddRow(row);
  }
  std::cout << flags.model << " on " << profile.machine << ", " << flags.threads
            << " intra-op thread(s), " << flags.runs << " runs after " << flags.warmup
            << " warm-up\n"
            << table.Render() << "wrote " << flags.out << "\n";
  return absl::OkStatus();
}

}  // namespace

void AddProfileCommand(CLI::App& app, absl::Status* status) {
  auto flags = std::make_shared<ProfileFlags>();
  CLI::App* command =
      app.add_subcommand("profile", "time every segment between candidate cuts on this machine");
  command->add_option("model", flags->model, "TorchScript file")->required();
  command->add_option("--input-shape", flags->input_shape, "input shape, e.g. 1,3,224,224")
      ->required();
  command->add_option("-o,--output", flags->out, "profile JSON to write")->required();
  command->add_option("--runs", flags->runs, "timed runs per batch size")
      ->default_val(flags->runs)
      ->check(CLI::PositiveNumber);
  command->add_option("--warmup", flags->warmup, "untimed runs first")
      ->default_val(flags->warmup)
      ->check(CLI::NonNegativeNumber);
  command->add_option("--batch-sizes", flags->batch_sizes, "batch sizes, e.g. 1,4,16")
      ->delimiter(',')
      ->default_str("1,4,16")
      ->check(CLI::PositiveNumber);
  command->add_option("--threads", flags->threads, "LibTorch intra-op threads (as deployed)")
      ->default_val(flags->threads)
      ->check(CLI::PositiveNumber);
  command->add_option("--granularity", flags->granularity, "candidate cuts: module or node")
      ->default_val(flags->granularity)
      ->check(CLI::IsMember({"module", "node"}));
  command->add_flag("--no-optimize", flags->no_optimize,
                    "time segments as stored, not optimized for inference as device and edge "
                    "run them");
  command->callback([flags, status] { *status = Profile(*flags); });
}

}  // namespace cleave::cli
