// cleave: the model engineer's CLI. Argument parsing and printing only; the work is in
// cleave_partitioner.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "cleave/common/bundle.h"
#include "cleave/common/files.h"
#include "cleave/common/idx_dataset.h"
#include "cleave/common/progress.h"
#include "cleave/common/status_macros.h"
#include "cleave/common/text_table.h"
#include "cleave/common/torchscript_io.h"
#include "cleave/partitioner/bundle_writer.h"
#include "cleave/partitioner/calibration.h"
#include "cleave/partitioner/cut_report.h"
#include "cleave/partitioner/exit_calibration.h"
#include "cleave/partitioner/exit_heads.h"
#include "cleave/partitioner/model_graph.h"
#include "cleave/partitioner/reference_model.h"
#include "nlohmann/json.hpp"
#include "partitioner/tools/plan_commands.h"

namespace {

using cleave::partitioner::Granularity;

std::vector<std::string> SplitList(const std::string& text) {
  return absl::StrSplit(text, ',', absl::SkipWhitespace());
}

absl::Status Inspect(const std::string& model_path, const std::string& input_shapes, bool json,
                     const std::string& granularity) {
  CLEAVE_ASSIGN_OR_RETURN(auto shapes, cleave::common::ParseShapes(input_shapes));
  CLEAVE_ASSIGN_OR_RETURN(auto model, cleave::partitioner::ModelGraph::Load(model_path, shapes));
  const auto cuts = model->Cuts(granularity == "node" ? Granularity::kNode : Granularity::kModule);
  if (json) {
    std::cout << cleave::partitioner::CutsToJson(*model, cuts);
    return absl::OkStatus();
  }
  std::cout << model_path << ": " << cuts.size() << " cut points (" << granularity
            << " granularity)\n"
            << cleave::partitioner::CutsToTable(cuts);
  if (cuts.size() <= 1) {
    std::cout << "no cut inside the model at " << granularity << " granularity"
              << (granularity == "module" ? "; try --granularity node" : "") << "\n";
  }
  return absl::OkStatus();
}

struct SplitFlags {
  std::string model, input_shape, cuts, plan, out, name;
  std::string codec = "raw";
  bool codec_given = false;  // --codec or --zstd-level on the command line (beat the plan's)
  int zstd_level = 0;
  std::string calibration_data;
  int64_t calibration_samples = 512;
  double clip_percentile = 99.99;
};

absl::Status Split(const SplitFlags& flags) {
  CLEAVE_ASSIGN_OR_RETURN(auto shapes, cleave::common::ParseShapes(flags.input_shape));
  // Flags first: they are cheap to check, loading the model is not.
  if (flags.plan.empty() == flags.cuts.empty()) {
    return absl::InvalidArgumentError("give either --cuts or --plan");
  }
  cleave::partitioner::BundleOptions options;
  options.name = flags.name;
  CLEAVE_ASSIGN_OR_RETURN(options.codec.codec, cleave::common::ParseCodec(flags.codec));
  options.codec.zstd_level = flags.zstd_level;
  CLEAVE_ASSIGN_OR_RETURN(auto model, cleave::partitioner::ModelGraph::Load(flags.model, shapes));
  std::vector<int> ids;
  if (!flags.plan.empty()) {
    CLEAVE_ASSIGN_OR_RETURN(auto planned,
                            cleave::tools::ReadPlanFor(flags.plan, model->source_sha256()));
    ids = planned.cuts;
    if (!flags.codec_given) options.codec = planned.codec;
  } else {
    CLEAVE_ASSIGN_OR_RETURN(ids, model->ResolveCuts(SplitList(flags.cuts)));
  }
  options.calibration.clip_percentile = flags.clip_percentile;
  if (!flags.calibration_data.empty()) {
    if (!cleave::common::IsAffineCodec(options.codec.codec)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--calibration-data calibrates clip ranges, which codec ",
                       cleave::common::CodecName(options.codec.codec), " has none of"));
    }
    CLEAVE_ASSIGN_OR_RETURN(options.calibration_samples,
                            cleave::partitioner::LoadCalibrationImages(
                                flags.calibration_data, flags.calibration_samples, shapes.at(0)));
  }
  CLEAVE_ASSIGN_OR_RETURN(auto written,
                          cleave::partitioner::WriteBundle(*model, ids, flags.out, options));
  std::cout << "wrote bundle " << written.dir << " (" << written.num_segments << " segments, "
            << "codec " << cleave::common::CodecLabel(options.codec.codec, options.codec.zstd_level)
            << (options.calibration_samples.defined()
                    ? absl::StrCat(", clip ranges from ", options.calibration_samples.size(0),
                                   " samples")
                    : "")
            << ")\n"
            << "bundle id " << written.id << "\n"
            << "verified: segments in order reproduce " << flags.model << ", max abs difference "
            << absl::StrFormat("%.3g", written.max_abs_diff) << "\n";
  return absl::OkStatus();
}

absl::Status Verify(const std::string& dir) {
  CLEAVE_ASSIGN_OR_RETURN(auto bundle, cleave::common::Bundle::Load(dir));
  CLEAVE_ASSIGN_OR_RETURN(double max_diff, bundle->Verify());
  std::cout << dir << ": bundle " << bundle->manifest().name << " id " << bundle->id() << "\n"
            << "hashes ok (" << bundle->manifest().segments.size() << " segments), max abs "
            << "difference " << absl::StrFormat("%.3g", max_diff) << " vs the original model\n";
  return absl::OkStatus();
}

absl::Status TrainReference(const std::string& data_dir, const std::string& out_path, int epochs,
                            uint64_t seed, int64_t limit) {
  CLEAVE_ASSIGN_OR_RETURN(
      auto train, cleave::common::LoadFashionMnist(
                      data_dir, "train", limit > 0 ? std::optional<int64_t>(limit) : std::nullopt));
  CLEAVE_ASSIGN_OR_RETURN(auto test, cleave::common::LoadFashionMnist(data_dir, "t10k"));
  torch::jit::Module model = cleave::partitioner::BuildReferenceModel(seed);
  cleave::partitioner::TrainOptions options;
  options.epochs = epochs;
  options.seed = seed;
  std::unique_ptr<cleave::common::ProgressBar> bar;
  options.on_batch = [&](int epoch, int64_t batch, int64_t batches, double loss, double accuracy) {
    if (batch == 1) {
      bar = std::make_unique<cleave::common::ProgressBar>(
          absl::StrCat("epoch ", epoch + 1, "/", epochs), batches);
    }
    bar->Update(batch, absl::StrFormat("loss %.4f  train acc %.2f%%", loss, 100 * accuracy));
    if (batch == batches) bar->Finish();
  };
  CLEAVE_RETURN_IF_ERROR(cleave::partitioner::TrainClassifier(model, train, options).status());
  CLEAVE_ASSIGN_OR_RETURN(double accuracy, cleave::partitioner::EvaluateAccuracy(model, test));
  CLEAVE_ASSIGN_OR_RETURN(std::string bytes, cleave::common::SaveTorchScriptToBytes(model));
  CLEAVE_RETURN_IF_ERROR(cleave::common::WriteFileAtomically(out_path, bytes));
  std::cout << "test accuracy " << absl::StrFormat("%.2f%%", 100 * accuracy) << " on "
            << test.labels.size(0) << " images; wrote " << out_path << "\n";
  return absl::OkStatus();
}

// Splits Fashion-MNIST's 60k training images into the part heads train on and the held-out
// part temperatures and thresholds are fitted on (the last `held_out` images).
absl::StatusOr<std::pair<cleave::common::LabeledImages, cleave::common::LabeledImages>>
LoadTrainAndHeldOut(const std::string& dir, int64_t held_out, int64_t limit) {
  CLEAVE_ASSIGN_OR_RETURN(auto all, cleave::common::LoadFashionMnist(dir, "train"));
  const int64_t count = all.labels.size(0);
  if (held_out <= 0 || held_out >= count) {
    return absl::InvalidArgumentError(
        absl::StrCat("--held-out ", held_out, " must be in 1..", count - 1));
  }
  const int64_t train_end = limit > 0 ? std::min(limit, count - held_out) : count - held_out;
  cleave::common::LabeledImages train{all.images.slice(0, 0, train_end),
                                      all.labels.slice(0, 0, train_end)};
  cleave::common::LabeledImages rest{all.images.slice(0, count - held_out, count),
                                     all.labels.slice(0, count - held_out, count)};
  return std::make_pair(train, rest);
}

struct ExitFlags {
  std::string target, out, input_shape, cuts, data = cleave::common::kFashionMnistDir;
  std::string head = "pool-linear", score = "max_prob", plot;
  int epochs = 4;
  int64_t held_out = 5000, limit = 0;
  double max_drop = 0.5;
  bool json = false;
};

absl::Status TrainExits(const ExitFlags& flags) {
  namespace fs = std::filesystem;
  std::string bundle_dir = flags.target;
  std::vector<std::string> cut_names = SplitList(flags.cuts);
  if (!fs::is_directory(flags.target)) {
    // A model file: split it at the exit cuts first.
    if (flags.out.empty() || flags.input_shape.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(flags.target,
                       " is not a bundle folder; to start from a model file give "
                       "--input-shape and -o BUNDLE"));
    }
    SplitFlags split;
    split.model = flags.target;
    split.input_shape = flags.input_shape;
    split.cuts = flags.cuts;
    split.out = flags.out;
    CLEAVE_RETURN_IF_ERROR(Split(split));
    bundle_dir = flags.out;
  }
  CLEAVE_ASSIGN_OR_RETURN(auto bundle, cleave::common::Bundle::Load(bundle_dir));
  std::vector<int> cut_ids;
  for (const std::string& name : cut_names) {
    const cleave::common::BundleManifest& manifest = bundle->manifest();
    const cleave::common::CutInfo* cut = manifest.FindCutNamed(name);
    if (int id = 0; cut == nullptr && absl::SimpleAtoi(name, &id)) cut = manifest.FindCut(id);
    if (cut == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          "cut '", name, "' is not a cut of bundle ", bundle_dir, " (its cuts: ",
          bundle->manifest().DescribeResumableCuts(), "); exits go where segments end"));
    }
    cut_ids.push_back(cut->id);
  }
  CLEAVE_ASSIGN_OR_RETURN(auto data, LoadTrainAndHeldOut(flags.data, flags.held_out, flags.limit));
  cleave::partitioner::ExitTrainingOptions options;
  CLEAVE_ASSIGN_OR_RETURN(options.kind, cleave::partitioner::ParseHeadKind(flags.head));
  options.epochs = flags.epochs;
  std::unique_ptr<cleave::common::ProgressBar> bar;
  options.on_batch = [&](int epoch, int64_t batch, int64_t batches, double loss, double accuracy) {
    if (batch == 1) {
      bar = std::make_unique<cleave::common::ProgressBar>(
          absl::StrCat("exit heads epoch ", epoch + 1, "/", flags.epochs), batches);
    }
    bar->Update(batch, absl::StrFormat("loss %.4f  head acc %.2f%%", loss, 100 * accuracy));
    if (batch == batches) bar->Finish();
  };
  CLEAVE_ASSIGN_OR_RETURN(
      auto heads, cleave::partitioner::TrainExitHeads(*bundle, cut_ids, data.first, options));
  CLEAVE_ASSIGN_OR_RETURN(std::string id, cleave::partitioner::AddExitsToBundle(
                                              bundle_dir, cut_ids, heads, options.kind));
  // Report each head's accuracy on the held-out images.
  CLEAVE_ASSIGN_OR_RETURN(auto updated, cleave::common::Bundle::Load(bundle_dir));
  CLEAVE_ASSIGN_OR_RETURN(auto predictions,
                          cleave::partitioner::PredictWithExits(*updated, data.second));
  cleave::common::TextTable table({"exit at cut", "name", "held-out accuracy"});
  for (size_t e = 0; e < predictions.exit_cuts.size(); ++e) {
    const double accuracy = predictions.exit_logits[e]
                                .argmax(1)
                                .eq(predictions.labels)
                                .to(at::kDouble)
                                .mean()
                                .item<double>();
    table.AddRow({absl::StrCat(predictions.exit_cuts[e]),
                  updated->manifest().FindCut(predictions.exit_cuts[e])->name,
                  absl::StrFormat("%.2f%%", 100 * accuracy)});
  }
  const double full = predictions.final_logits.argmax(1)
                          .eq(predictions.labels)
                          .to(at::kDouble)
                          .mean()
                          .item<double>();
  table.AddRow({"full model", "", absl::StrFormat("%.2f%%", 100 * full)});
  std::cout << table.Render() << "bundle id " << id
            << "\nsegments unchanged; next: cleave exits calibrate " << bundle_dir << "\n";
  return absl::OkStatus();
}

std::string Percent(double value) {
  return std::isnan(value) ? "-" : absl::StrFormat("%.2f%%", 100 * value);
}

absl::Status CalibrateExits(const ExitFlags& flags) {
  CLEAVE_ASSIGN_OR_RETURN(auto data, LoadTrainAndHeldOut(flags.data, flags.held_out, 0));
  cleave::partitioner::ExitCalibrationOptions options;
  options.max_accuracy_drop_pp = flags.max_drop;
  CLEAVE_ASSIGN_OR_RETURN(options.score, cleave::common::ParseExitScore(flags.score));
  CLEAVE_ASSIGN_OR_RETURN(
      auto report, cleave::partitioner::CalibrateBundleExits(flags.target, data.second, options));
  nlohmann::json json = {{"bundle_id", report.bundle_id},
                         {"full_accuracy", report.full_accuracy},
                         {"max_accuracy_drop_pp", flags.max_drop},
                         {"score", flags.score}};
  cleave::common::TextTable exits({"exit at cut", "temperature", "ECE before", "ECE after",
                                   "threshold", "exit rate", "accuracy there"});
  for (size_t e = 0; e < report.exit_cuts.size(); ++e) {
    exits.AddRow(
        {absl::StrCat(report.exit_cuts[e]), absl::StrFormat("%.3f", report.temperatures[e]),
         absl::StrFormat("%.4f", report.ece_before[e]),
         absl::StrFormat("%.4f", report.ece_after[e]),
         report.thresholds[e] <= 1.0 ? absl::StrFormat("%.4f", report.thresholds[e]) : "never",
         Percent(report.chosen.exit_rates[e]), Percent(report.chosen.exit_accuracies[e])});
    json["exits"].push_back(
        {{"cut", report.exit_cuts[e]},
         {"temperature", report.temperatures[e]},
         {"ece_before", report.ece_before[e]},
         {"ece_after", report.ece_after[e]},
         {"threshold",
          report.thresholds[e] <= 1.0 ? nlohmann::json(report.thresholds[e]) : nlohmann::json()},
         {"exit_rate", report.chosen.exit_rates[e]}});
  }
  cleave::common::TextTable trade({"max drop (pp)", "early exits", "accuracy", "vs full (pp)"});
  for (const auto& trade_off : report.trade_offs) {
    trade.AddRow({absl::StrFormat("%.2f", trade_off.max_drop_pp),
                  Percent(trade_off.outcome.early_exit_rate),
                  Percent(trade_off.outcome.overall_accuracy),
                  absl::StrFormat(
                      "%+.2f", 100 * (trade_off.outcome.overall_accuracy - report.full_accuracy))});
    json["trade_off"].push_back({{"max_drop_pp", trade_off.max_drop_pp},
                                 {"early_exit_rate", trade_off.outcome.early_exit_rate},
                                 {"accuracy", trade_off.outcome.overall_accuracy}});
  }
  if (!flags.plot.empty())
    CLEAVE_RETURN_IF_ERROR(cleave::partitioner::PlotTradeOff(report, flags.plot));
  if (flags.json) {
    std::cout << json.dump(2) << "\n";
    return absl::OkStatus();
  }
  std::cout << "held-out: last " << flags.held_out << " training images; full model accuracy "
            << Percent(report.full_accuracy) << "\n\n"
            << exits.Render() << "\nchosen (max drop " << flags.max_drop
            << " pp): " << Percent(report.chosen.early_exit_rate) << " leave early, accuracy "
            << Percent(report.chosen.overall_accuracy) << "\n\ntrade-off:\n"
            << trade.Render() << "bundle id " << report.bundle_id << "\n";
  if (!flags.plot.empty()) std::cout << "plot: " << flags.plot << "\n";
  return absl::OkStatus();
}

absl::Status EvaluateExits(const ExitFlags& flags) {
  CLEAVE_ASSIGN_OR_RETURN(auto bundle, cleave::common::Bundle::Load(flags.target));
  CLEAVE_ASSIGN_OR_RETURN(auto test, cleave::common::LoadFashionMnist(flags.data, "t10k"));
  CLEAVE_ASSIGN_OR_RETURN(auto evaluation, cleave::partitioner::EvaluateBundleExits(*bundle, test));
  const auto& outcome = evaluation.outcome;
  nlohmann::json json = {{"bundle_id", bundle->id()},
                         {"images", test.labels.size(0)},
                         {"full_model_accuracy", evaluation.full_accuracy},
                         {"overall_accuracy", outcome.overall_accuracy},
                         {"early_exit_rate", outcome.early_exit_rate},
                         {"offloaded_share", outcome.full_rate},
                         {"device_macs_full_model", evaluation.device_macs_full},
                         {"device_macs_with_exits", evaluation.device_macs_with_exits}};
  cleave::common::TextTable table({"where", "share", "accuracy of those"});
  for (size_t e = 0; e < evaluation.exit_cuts.size(); ++e) {
    const std::string name = bundle->manifest().FindCut(evaluation.exit_cuts[e])->name;
    table.AddRow({absl::StrCat("exit at ", name, " (cut ", evaluation.exit_cuts[e], ")"),
                  Percent(outcome.exit_rates[e]), Percent(outcome.exit_accuracies[e])});
    json["exits"].push_back({{"cut", evaluation.exit_cuts[e]},
                             {"name", name},
                             {"exit_rate", outcome.exit_rates[e]},
                             {"accuracy", std::isnan(outcome.exit_accuracies[e])
                                              ? nlohmann::json()
                                              : nlohmann::json(outcome.exit_accuracies[e])}});
  }
  table.AddRow(
      {"offloaded (full model)", Percent(outcome.full_rate), Percent(outcome.full_accuracy)});
  if (flags.json) {
    std::cout << json.dump(2) << "\n";
    return absl::OkStatus();
  }
  const double saved = 1.0 - evaluation.device_macs_with_exits / evaluation.device_macs_full;
  std::cout << test.labels.size(0) << " test images, bundle " << bundle->manifest().name << "\n"
            << table.Render() << "full model accuracy " << Percent(evaluation.full_accuracy)
            << ", with exits " << Percent(outcome.overall_accuracy) << " ("
            << absl::StrFormat("%+.2f", 100 * (outcome.overall_accuracy - evaluation.full_accuracy))
            << " pp)\nearly exits " << Percent(outcome.early_exit_rate)
            << "; device MACs per image "
            << absl::StrFormat("%.2fM vs %.2fM all-on-device (%.1f%% saved)",
                               evaluation.device_macs_with_exits / 1e6,
                               evaluation.device_macs_full / 1e6, 100 * saved)
            << "\n";
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"cleave: cut TorchScript models into segments for split device/edge execution"};
  app.require_subcommand(1);
  absl::Status status;

  std::string model, input_shape, granularity = "module", out, dir, data;
  bool json = false;
  int epochs = 4;
  uint64_t seed = 1;
  int64_t limit = 0;

  auto* inspect = app.add_subcommand("inspect", "list the cut points of a TorchScript model");
  inspect->add_option("model", model, "TorchScript file")->required();
  inspect
      ->add_option("--input-shape", input_shape,
                   "input shape, e.g. 1,3,224,224 (';' between "
                   "several inputs)")
      ->required();
  inspect->add_flag("--json", json, "print JSON for tools");
  inspect->add_option("--granularity", granularity, "module (default) or node")
      ->check(CLI::IsMember({"module", "node"}));
  inspect->callback([&] { status = Inspect(model, input_shape, json, granularity); });

  SplitFlags split_flags;
  auto* split = app.add_subcommand("split", "cut a model into a verified bundle");
  split->add_option("model", split_flags.model, "TorchScript file")->required();
  split->add_option("--input-shape", split_flags.input_shape, "input shape, e.g. 1,3,224,224")
      ->required();
  split->add_option("--cuts", split_flags.cuts,
                    "cut ids or names from `cleave inspect`, e.g. 3,7 or layer1,layer2");
  split->add_option("--plan", split_flags.plan,
                    "split at the cuts (and with the codec) of a `cleave plan -o` file");
  split->add_option("-o,--output", split_flags.out, "bundle folder to write")->required();
  split->add_option("--name", split_flags.name, "bundle name (default: the model file's stem)");
  split
      ->add_option("--codec", split_flags.codec,
                   "activation codec: raw, fp16, bf16, int8, int8-channel, int4")
      ->default_val(split_flags.codec);
  split
      ->add_option("--zstd-level", split_flags.zstd_level,
                   "zstd after the codec (0: off; -7..-1: zstd's fast modes)")
      ->default_val(0)
      ->check(CLI::Range(cleave::common::kMinZstdLevel, cleave::common::kMaxZstdLevel));
  split->add_option("--calibration-data", split_flags.calibration_data,
                    "Fashion-MNIST folder whose training images calibrate clip ranges");
  split
      ->add_option("--calibration-samples", split_flags.calibration_samples,
                   "calibration images to use")
      ->default_val(split_flags.calibration_samples)
      ->check(CLI::PositiveNumber);
  split
      ->add_option("--clip-percentile", split_flags.clip_percentile,
                   "clip range keeps values between the (100-p)th and p-th percentile")
      ->default_val(split_flags.clip_percentile);
  split->callback([&] {
    split_flags.codec_given = split->count("--codec") + split->count("--zstd-level") > 0;
    status = Split(split_flags);
  });

  cleave::tools::AddProfileCommand(app, &status);
  cleave::tools::AddPlanCommand(app, &status);

  auto* verify = app.add_subcommand("verify", "re-check a bundle's hashes and equivalence");
  verify->add_option("bundle", dir, "bundle folder")->required();
  verify->callback([&] { status = Verify(dir); });

  auto* train = app.add_subcommand("train-reference",
                                   "train the reference Fashion-MNIST model (residual CNN)");
  train->add_option("--data", data, "folder with the Fashion-MNIST IDX files")
      ->default_val(cleave::common::kFashionMnistDir);
  train->add_option("-o,--output", out, "TorchScript file to write")->required();
  train->add_option("--epochs", epochs, "training epochs")
      ->default_val(4)
      ->check(CLI::PositiveNumber);
  train->add_option("--seed", seed, "random seed")->default_val(1);
  train->add_option("--limit", limit, "train on the first N images only (0: all)")->default_val(0);
  train->callback([&] { status = TrainReference(data, out, epochs, seed, limit); });

  ExitFlags exit_flags;
  auto* exits = app.add_subcommand("exits", "early-exit heads: train, calibrate, evaluate");
  exits->require_subcommand(1);
  auto* exits_train = exits->add_subcommand(
      "train", "train exit heads at bundle cuts on the frozen backbone (Fashion-MNIST)");
  exits_train
      ->add_option("target", exit_flags.target,
                   "bundle folder (heads are added to it) or a model file with -o")
      ->required();
  exits_train->add_option("--cuts", exit_flags.cuts, "cuts to attach heads at (names or ids)")
      ->required();
  exits_train->add_option("-o,--output", exit_flags.out, "bundle to write when TARGET is a model");
  exits_train->add_option("--input-shape", exit_flags.input_shape, "model input shape (with -o)");
  exits_train->add_option("--head", exit_flags.head, "pool-linear or conv-pool-linear")
      ->default_val(exit_flags.head);
  exits_train->add_option("--epochs", exit_flags.epochs, "training epochs")
      ->default_val(exit_flags.epochs)
      ->check(CLI::PositiveNumber);
  exits_train->add_option("--limit", exit_flags.limit, "train on the first N images (0: all)")
      ->default_val(0);
  auto* exits_calibrate =
      exits->add_subcommand("calibrate", "fit temperatures and choose thresholds on held-out data");
  exits_calibrate->add_option("bundle", exit_flags.target, "bundle folder with exits")->required();
  exits_calibrate
      ->add_option("--max-accuracy-drop", exit_flags.max_drop,
                   "accuracy drop allowed vs the full model, percentage points")
      ->default_val(exit_flags.max_drop);
  exits_calibrate->add_option("--score", exit_flags.score, "max_prob or entropy")
      ->default_val(exit_flags.score);
  exits_calibrate->add_option("--plot", exit_flags.plot, "draw the trade-off curve to this PNG");
  exits_calibrate->add_flag("--json", exit_flags.json, "print JSON");
  auto* exits_evaluate =
      exits->add_subcommand("evaluate", "measure a calibrated bundle's exits on the test set");
  exits_evaluate->add_option("bundle", exit_flags.target, "bundle folder with exits")->required();
  exits_evaluate->add_flag("--json", exit_flags.json, "print JSON");
  for (CLI::App* command : {exits_train, exits_calibrate, exits_evaluate}) {
    command->add_option("--data", exit_flags.data, "Fashion-MNIST folder")
        ->default_val(exit_flags.data);
  }
  for (CLI::App* command : {exits_train, exits_calibrate}) {
    command
        ->add_option("--held-out", exit_flags.held_out,
                     "last N training images held out for calibration")
        ->default_val(exit_flags.held_out);
  }
  exits_train->callback([&] { status = TrainExits(exit_flags); });
  exits_calibrate->callback([&] { status = CalibrateExits(exit_flags); });
  exits_evaluate->callback([&] { status = EvaluateExits(exit_flags); });

  CLI11_PARSE(app, argc, argv);
  if (!status.ok()) {
    std::cerr << "cleave: error: " << status.message() << "\n";
    return 1;
  }
  return 0;
}
