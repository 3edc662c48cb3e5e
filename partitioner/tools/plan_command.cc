// `cleave plan MODEL --input-shape S --device-profile D --edge-profile E --bandwidth B [...]`:
// choose where to split for a device, an edge and one or several links; and what `cleave split
// --plan` reads back from the plan it writes.
#include <iostream>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "cleave/common/files.h"
#include "cleave/common/manifest.h"
#include "cleave/common/progress.h"
#include "cleave/common/status_macros.h"
#include "cleave/common/text_table.h"
#include "cleave/common/units.h"
#include "cleave/partitioner/calibration.h"
#include "cleave/partitioner/profiler.h"
#include "cleave/partitioner/split_planner.h"
#include "partitioner/tools/commands.h"

namespace cleave::cli {
namespace {

struct PlanFlags {
  std::string model, input_shape, device_profile, edge_profile, bandwidth, rtt = "10ms";
  std::string codec = "int8", calibration_data, deadline, exits_bundle, out, cuts;
  int zstd_level = 1;
  int64_t samples = 64;
  double clip_percentile = 99.99, device_scale = 1.0;
  bool json = false;
};

absl::StatusOr<partitioner::ModelProfile> ReadProfile(const std::string& path) {
  CLEAVE_ASSIGN_OR_RETURN(std::string text, common::ReadFile(path, common::kMaxTextFileBytes));
  return partitioner::ModelProfile::FromJson(text, path);
}

// The exits a calibrated bundle carries, with the share of inputs expected to leave at each.
absl::StatusOr<std::vector<partitioner::ExitExpectation>> ReadExits(const std::string& dir) {
  CLEAVE_ASSIGN_OR_RETURN(std::string text,
                          common::ReadFile(dir + "/manifest.json", common::kMaxTextFileBytes));
  CLEAVE_ASSIGN_OR_RETURN(auto manifest, common::BundleManifest::FromJson(text, dir));
  std::vector<partitioner::ExitExpectation> exits;
  for (const common::ExitInfo& exit : manifest.exits) {
    if (!exit.threshold || !exit.exit_rate) continue;  // not calibrated, or never exits
    exits.push_back({exit.cut_id, *exit.exit_rate, exit.macs});
  }
  if (exits.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--exits ", dir, " has no calibrated exit (run cleave exits calibrate on it first)"));
  }
  return exits;
}

// Long on purpose: the command's steps in the order a user reads its output (check flags, read
// profiles, measure frames, plan, print and write); the planning is PlanSplit's.
absl::Status Plan(const PlanFlags& flags) {
  CLEAVE_ASSIGN_OR_RETURN(auto device, ReadProfile(flags.device_profile));
  CLEAVE_ASSIGN_OR_RETURN(auto edge, ReadProfile(flags.edge_profile));
  CLEAVE_ASSIGN_OR_RETURN(auto shapes, common::ParseShapes(flags.input_shape));
  // Flags first: they are cheap to check, loading the model is not.
  partitioner::PlanOptions options;
  auto rtt = common::ParseDuration(flags.rtt);
  if (!rtt.ok()) return absl::InvalidArgumentError(absl::StrCat("--rtt: ", rtt.status().message()));
  for (absl::string_view text : absl::StrSplit(flags.bandwidth, ',', absl::SkipWhitespace())) {
    auto rate = common::ParseBitRate(text);
    if (!rate.ok())
      return absl::InvalidArgumentError(absl::StrCat("--bandwidth: ", rate.status().message()));
    if (*rate == 0) {
      return absl::InvalidArgumentError("--bandwidth must be a finite rate such as 20mbit");
    }
    options.links.push_back(
        {static_cast<double>(*rate), std::chrono::duration<double, std::milli>(*rtt).count()});
  }
  if (options.links.empty()) return absl::InvalidArgumentError("--bandwidth lists no rate");
  if (!flags.deadline.empty()) {
    auto deadline = common::ParseDuration(flags.deadline);
    if (!deadline.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--deadline: ", deadline.status().message()));
    }
    options.deadline_ms = std::chrono::duration<double, std::milli>(*deadline).count();
  }
  options.device_scale = flags.device_scale;
  CLEAVE_ASSIGN_OR_RETURN(options.codec.codec, common::ParseCodec(flags.codec));
  options.codec.zstd_level = flags.zstd_level;
  if (!flags.exits_bundle.empty()) {
    CLEAVE_ASSIGN_OR_RETURN(options.exits, ReadExits(flags.exits_bundle));
  }
  CLEAVE_ASSIGN_OR_RETURN(auto model, partitioner::ModelGraph::Load(flags.model, shapes));
  if (model->source_sha256() != device.model_sha256) {
    return absl::InvalidArgumentError(absl::StrCat(flags.device_profile, " was made for ",
                                                   device.model_file, ", not for ", flags.model,
                                                   " (model hashes differ)"));
  }
  if (!flags.cuts.empty()) {
    CLEAVE_ASSIGN_OR_RETURN(options.allowed_cuts, model->ResolveCuts(absl::StrSplit(
                                                      flags.cuts, ',', absl::SkipWhitespace())));
  }

  // Frame sizes come from real activations when there is calibration data, with the clip
  // ranges a bundle would get; otherwise from the seeded sample.
  std::vector<c10::IValue> samples = partitioner::SampleBatch(*model, 1);
  std::map<int, std::vector<common::ClipRange>> ranges;
  if (!flags.calibration_data.empty()) {
    CLEAVE_ASSIGN_OR_RETURN(
        at::Tensor images,
        partitioner::LoadCalibrationImages(flags.calibration_data, flags.samples, shapes.at(0)));
    samples = {images};
    if (common::IsAffineCodec(options.codec.codec)) {
      std::vector<int> ids;  // every candidate, the input (0) included
      for (const common::CutInfo& cut : device.cuts) ids.push_back(cut.id);
      partitioner::ClipCalibrationOptions calibration;
      calibration.clip_percentile = flags.clip_percentile;
      CLEAVE_ASSIGN_OR_RETURN(
          auto calibrated,
          partitioner::CalibrateClipRanges(*model, ids, images, options.codec.codec, calibration));
      for (size_t i = 0; i < ids.size(); ++i) ranges[ids[i]] = calibrated[i];
    }
  }
  CLEAVE_ASSIGN_OR_RETURN(auto transfers,
                          partitioner::MeasureCutTransfers(*model, device, samples, [&](int cut) {
                            common::CodecSpec spec = options.codec;
                            if (auto found = ranges.find(cut); found != ranges.end())
                              spec.ranges = found->second;
                            return spec;
                          }));
  CLEAVE_ASSIGN_OR_RETURN(partitioner::SplitPlan plan,
                          partitioner::PlanSplit(device, edge, transfers, options));
  plan.calibrated = !ranges.empty();
  if (!flags.out.empty()) {
    CLEAVE_RETURN_IF_ERROR(common::WriteFileAtomically(flags.out, plan.ToJson()));
  }
  if (flags.json) {
    std::cout << plan.ToJson();
    return absl::OkStatus();
  }
  std::cout << "device: " << device.machine
            << (flags.device_scale != 1.0
                    ? absl::StrFormat(" (compute scaled x%.3g)", flags.device_scale)
                    : "")
            << "\nedge:   " << edge.machine
            << "\ncodec:  " << common::CodecLabel(options.codec.codec, flags.zstd_level)
            << ", frame sizes measured on "
            << (flags.calibration_data.empty()
                    ? std::string("the seeded sample input")
                    : absl::StrCat(flags.samples, " images from ", flags.calibration_data))
            << "\n";
  common::TextTable summary({"bandwidth", "rtt", "chosen", "latency ms", "all-device ms",
                             "all-edge ms", "vs best baseline"});
  for (const partitioner::LinkPlan& link : plan.links) {
    std::cout << "\n== " << common::FormatBitRate(static_cast<uint64_t>(link.link.bits_per_second))
              << ", rtt " << link.link.rtt_ms << " ms\n"
              << partitioner::LinkPlanTable(link, !options.exits.empty());
    const double best_baseline = std::min(link.all_device_ms, link.all_edge_ms);
    summary.AddRow(
        {common::FormatBitRate(static_cast<uint64_t>(link.link.bits_per_second)),
         absl::StrFormat("%.1f ms", link.link.rtt_ms),
         link.chosen.cut_id ? absl::StrCat("cut ", *link.chosen.cut_id, " ", link.chosen.name)
                            : std::string("all on device"),
         absl::StrFormat("%.3f", link.chosen.expected_ms),
         absl::StrFormat("%.3f", link.all_device_ms), absl::StrFormat("%.3f", link.all_edge_ms),
         absl::StrFormat("%.2fx", best_baseline / link.chosen.expected_ms)});
  }
  std::cout << "\n" << summary.Render() << "bundle cuts: ";
  for (size_t i = 0; i < plan.bundle_cuts.size(); ++i) {
    std::cout << (i ? "," : "") << plan.bundle_cuts[i];
  }
  std::cout << (plan.note.empty() ? "" : absl::StrCat(" (", plan.note, ")")) << "\n";
  if (!flags.out.empty()) {
    std::cout << "wrote " << flags.out << "; next: cleave split " << flags.model
              << " --input-shape " << flags.input_shape << " --plan " << flags.out
              << " -o BUNDLE\n";
  }
  return absl::OkStatus();
}

}  // namespace

void AddPlanCommand(CLI::App& app, absl::Status* status) {
  auto flags = std::make_shared<PlanFlags>();
  CLI::App* command = app.add_subcommand(
      "plan", "choose where to split for a device, an edge and a link (or several links)");
  command->add_option("model", flags->model, "TorchScript file")->required();
  command->add_option("--input-shape", flags->input_shape, "input shape, e.g. 1,3,224,224")
      ->required();
  command->add_option("--device-profile", flags->device_profile, "cleave profile of the device")
      ->required();
  command->add_option("--edge-profile", flags->edge_profile, "cleave profile of the edge")
      ->required();
  command
      ->add_option("--bandwidth", flags->bandwidth,
                   "link bandwidth, or several: 1mbit,5mbit,20mbit,100mbit")
      ->required();
  command->add_option("--rtt", flags->rtt, "round-trip time, e.g. 10ms")->default_val(flags->rtt);
  command
      ->add_option("--codec", flags->codec,
                   "activation codec: raw, fp16, bf16, int8, int8-channel, int4")
      ->default_val(flags->codec);
  command
      ->add_option("--zstd-level", flags->zstd_level,
                   "zstd after the codec (0: off; -7..-1: zstd's fast modes)")
      ->default_val(flags->zstd_level)
      ->check(CLI::Range(common::kMinZstdLevel, common::kMaxZstdLevel));
  command->add_option("--calibration-data", flags->calibration_data,
                      "Fashion-MNIST folder: measure frame sizes on real images");
  command->add_option("--samples", flags->samples, "images to measure frame sizes on")
      ->default_val(flags->samples)
      ->check(CLI::PositiveNumber);
  command->add_option("--clip-percentile", flags->clip_percentile, "as for cleave split")
      ->default_val(flags->clip_percentile);
  command->add_option("--deadline", flags->deadline, "per-request deadline, e.g. 50ms");
  command->add_option("--cuts", flags->cuts,
                      "choose only among these cuts (ids or names; default: every candidate)");
  command
      ->add_option("--device-scale", flags->device_scale,
                   "multiply device times (emulate a slower device; stated in the output)")
      ->default_val(flags->device_scale)
      ->check(CLI::PositiveNumber);
  command->add_option("--exits", flags->exits_bundle,
                      "calibrated bundle whose exit heads (and exit rates) to count in");
  command->add_option("-o,--output", flags->out, "plan JSON for cleave split --plan");
  command->add_flag("--json", flags->json, "print the plan as JSON");
  command->callback([flags, status] { *status = Plan(*flags); });
}

absl::StatusOr<PlannedSplit> ReadPlanFor(const std::string& plan_path,
                                         const std::string& model_sha256) {
  CLEAVE_ASSIGN_OR_RETURN(std::string text, common::ReadFile(plan_path, common::kMaxTextFileBytes));
  CLEAVE_ASSIGN_OR_RETURN(partitioner::SplitPlan plan,
                          partitioner::SplitPlan::FromJson(text, plan_path));
  if (plan.model_sha256 != model_sha256) {
    return absl::InvalidArgumentError(absl::StrCat(plan_path, " was made for ", plan.model_file,
                                                   ", a different model (hashes differ)"));
  }
  return PlannedSplit{plan.bundle_cuts, plan.codec};
}

}  // namespace cleave::cli
