// `cleave exits train|calibrate|evaluate`: early-exit heads at bundle cuts — trained on the
// frozen backbone, calibrated (temperatures and thresholds) on held-out data, and measured on
// the test set (Fashion-MNIST).
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <memory>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cleave/common/bundle.h"
#include "cleave/common/idx_dataset.h"
#include "cleave/common/progress.h"
#include "cleave/common/status_macros.h"
#include "cleave/common/text_table.h"
#include "cleave/partitioner/exit_calibration.h"
#include "cleave/partitioner/exit_heads.h"
#include "nlohmann/json.hpp"
#include "partitioner/tools/commands.h"

namespace cleave::cli {
namespace {

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

void AddExitsCommand(CLI::App& app, absl::Status* status) {
  auto flags = std::make_shared<ExitFlags>();
  auto* exits = app.add_subcommand("exits", "early-exit heads: train, calibrate, evaluate");
  exits->require_subcommand(1);
  auto* exits_train = exits->add_subcommand(
      "train", "train exit heads at bundle cuts on the frozen backbone (Fashion-MNIST)");
  exits_train
      ->add_option("target", flags->target,
                   "bundle folder (heads are added to it) or a model file with -o")
      ->required();
  exits_train->add_option("--cuts", flags->cuts, "cuts to attach heads at (names or ids)")
      ->required();
  exits_train->add_option("-o,--output", flags->out, "bundle to write when TARGET is a model");
  exits_train->add_option("--input-shape", flags->input_shape, "model input shape (with -o)");
  exits_train->add_option("--head", flags->head, "pool-linear or conv-pool-linear")
      ->default_val(flags->head);
  exits_train->add_option("--epochs", flags->epochs, "training epochs")
      ->default_val(flags->epochs)
      ->check(CLI::PositiveNumber);
  exits_train->add_option("--limit", flags->limit, "train on the first N images (0: all)")
      ->default_val(0);
  auto* exits_calibrate =
      exits->add_subcommand("calibrate", "fit temperatures and choose thresholds on held-out data");
  exits_calibrate->add_option("bundle", flags->target, "bundle folder with exits")->required();
  exits_calibrate
      ->add_option("--max-accuracy-drop", flags->max_drop,
                   "accuracy drop allowed vs the full model, percentage points")
      ->default_val(flags->max_drop);
  exits_calibrate->add_option("--score", flags->score, "max_prob or entropy")
      ->default_val(flags->score);
  exits_calibrate->add_option("--plot", flags->plot, "draw the trade-off curve to this PNG");
  exits_calibrate->add_flag("--json", flags->json, "print JSON");
  auto* exits_evaluate =
      exits->add_subcommand("evaluate", "measure a calibrated bundle's exits on the test set");
  exits_evaluate->add_option("bundle", flags->target, "bundle folder with exits")->required();
  exits_evaluate->add_flag("--json", flags->json, "print JSON");
  for (CLI::App* command : {exits_train, exits_calibrate, exits_evaluate}) {
    command->add_option("--data", flags->data, "Fashion-MNIST folder")->default_val(flags->data);
  }
  for (CLI::App* command : {exits_train, exits_calibrate}) {
    command
        ->add_option("--held-out", flags->held_out,
                     "last N training images held out for calibration")
        ->default_val(flags->held_out);
  }
  exits_train->callback([flags, status] { *status = TrainExits(*flags); });
  exits_calibrate->callback([flags, status] { *status = CalibrateExits(*flags); });
  exits_evaluate->callback([flags, status] { *status = EvaluateExits(*flags); });
}

}  // namespace cleave::cli
