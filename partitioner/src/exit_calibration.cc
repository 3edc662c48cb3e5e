#include "cleave/partitioner/exit_calibration.h"

#include <ATen/ATen.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>

#include "absl/strings/str_cat.h"
#include "cleave/common/status_macros.h"
#include "cleave/common/torchscript_io.h"
#include "cleave/partitioner/exit_heads.h"

namespace cleave::partitioner {
namespace {

double NegativeLogLikelihood(const at::Tensor& logits, const at::Tensor& labels,
                             double temperature) {
  return at::nll_loss(at::log_softmax(logits / temperature, 1), labels).item<double>();
}

// Candidate thresholds for one exit: the distinct confidence quantiles, plus "never".
std::vector<double> Candidates(const at::Tensor& confidence) {
  std::vector<double> candidates;
  const at::Tensor sorted = std::get<0>(confidence.sort());
  const int64_t count = sorted.size(0);
  constexpr int kSteps = 200;
  for (int i = 0; i < kSteps; ++i) {
    candidates.push_back(sorted[count * i / kSteps].item<double>());
  }
  candidates.push_back(2.0);  // disabled
  std::sort(candidates.begin(), candidates.end());
  candidates.erase(std::unique(candidates.begin(), candidates.end()), candidates.end());
  return candidates;
}

}  // namespace

absl::StatusOr<ExitPredictions> PredictWithExits(const common::Bundle& bundle,
                                                 const common::LabeledImages& data,
                                                 int64_t batch_size) {
  const auto& manifest = bundle.manifest();
  if (manifest.exits.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("bundle ", manifest.name, " has no exits: run `cleave exits train` first"));
  }
  ExitPredictions predictions;
  std::vector<std::vector<at::Tensor>> exit_parts(manifest.exits.size());
  std::vector<at::Tensor> final_parts;
  for (const auto& exit : manifest.exits) predictions.exit_cuts.push_back(exit.cut_id);
  const int64_t count = data.images.size(0);
  for (int64_t begin = 0; begin < count; begin += batch_size) {
    c10::IValue value = data.images.slice(0, begin, std::min(count, begin + batch_size));
    for (size_t segment = 0; segment < manifest.segments.size(); ++segment) {
      CLEAVE_ASSIGN_OR_RETURN(value, bundle.RunSegments(segment, segment, {value}));
      const std::optional<int> end = manifest.segments[segment].end_cut;
      for (size_t e = 0; e < manifest.exits.size(); ++e) {
        if (end && manifest.exits[e].cut_id == *end) {
          CLEAVE_ASSIGN_OR_RETURN(at::Tensor logits, bundle.RunExit(*end, value.toTensor()));
          exit_parts[e].push_back(logits);
        }
      }
    }
    std::vector<at::Tensor> outputs;
    CLEAVE_RETURN_IF_ERROR(common::FlattenTensors(value, &outputs));
    final_parts.push_back(outputs.at(0));
  }
  for (const auto& parts : exit_parts) predictions.exit_logits.push_back(at::cat(parts, 0));
  predictions.final_logits = at::cat(final_parts, 0);
  predictions.labels = data.labels;
  return predictions;
}

double FitTemperature(const at::Tensor& logits, const at::Tensor& labels) {
  c10::InferenceMode inference;
  const at::Tensor values = logits.to(at::kDouble);
  // The NLL is convex in 1/T; golden-section search over log T in [-3, 3] is robust and needs
  // no gradient.
  double low = -3.0, high = 3.0;
  const double ratio = (std::sqrt(5.0) - 1.0) / 2.0;
  double a = high - ratio * (high - low), b = low + ratio * (high - low);
  double fa = NegativeLogLikelihood(values, labels, std::exp(a));
  double fb = NegativeLogLikelihood(values, labels, std::exp(b));
  for (int i = 0; i < 60; ++i) {
    if (fa < fb) {
      high = b;
      b = a;
      fb = fa;
      a = high - ratio * (high - low);
      fa = NegativeLogLikelihood(values, labels, std::exp(a));
    } else {
      low = a;
      a = b;
      fa = fb;
      b = low + ratio * (high - low);
      fb = NegativeLogLikelihood(values, labels, std::exp(b));
    }
  }
  return std::exp((low + high) / 2.0);
}

double ExpectedCalibrationError(const at::Tensor& logits, const at::Tensor& labels,
                                double temperature, int bins) {
  c10::InferenceMode inference;
  const at::Tensor probabilities = at::softmax(logits.to(at::kDouble) / temperature, 1);
  const auto [confidence, predicted] = probabilities.max(1);
  const at::Tensor correct = predicted.eq(labels).to(at::kDouble);
  const double count = static_cast<double>(labels.size(0));
  double error = 0.0;
  for (int bin = 0; bin < bins; ++bin) {
    const double low = static_cast<double>(bin) / bins, high = static_cast<double>(bin + 1) / bins;
    const at::Tensor in_bin = (confidence > low) & (confidence <= high);
    const double size = in_bin.sum().item<double>();
    if (size == 0) continue;
    const double gap = confidence.masked_select(in_bin).mean().item<double>() -
                       correct.masked_select(in_bin).mean().item<double>();
    error += size / count * std::abs(gap);
  }
  return error;
}

ExitScores ScoreExits(const ExitPredictions& predictions, const std::vector<double>& temperatures,
                      common::ExitScore score) {
  c10::InferenceMode inference;
  ExitScores scores;
  for (size_t e = 0; e < predictions.exit_logits.size(); ++e) {
    scores.confidence.push_back(
        common::Confidence(predictions.exit_logits[e], temperatures.at(e), score));
    scores.correct.push_back(predictions.exit_logits[e].argmax(1).eq(predictions.labels));
  }
  scores.final_correct = predictions.final_logits.argmax(1).eq(predictions.labels);
  return scores;
}

ExitOutcome SimulateExits(const ExitScores& scores, const std::vector<double>& thresholds) {
  c10::InferenceMode inference;
  const int64_t count = scores.final_correct.size(0);
  const double total = static_cast<double>(count);
  at::Tensor remaining = at::ones({count}, at::kBool);
  ExitOutcome outcome;
  double correct = 0.0;
  for (size_t e = 0; e < scores.confidence.size(); ++e) {
    const at::Tensor leaves = remaining & (scores.confidence[e] >= thresholds.at(e));
    const double left = leaves.sum().item<double>();
    const double right = (leaves & scores.correct[e]).sum().item<double>();
    outcome.exit_rates.push_back(left / total);
    outcome.exit_accuracies.push_back(left > 0 ? right / left : std::nan(""));
    correct += right;
    remaining = remaining & ~leaves;
  }
  const double rest = remaining.sum().item<double>();
  const double rest_correct = (remaining & scores.final_correct).sum().item<double>();
  outcome.full_rate = rest / total;
  outcome.full_accuracy = rest > 0 ? rest_correct / rest : std::nan("");
  outcome.overall_accuracy = (correct + rest_correct) / total;
  outcome.early_exit_rate = 1.0 - outcome.full_rate;
  return outcome;
}

std::vector<double> ChooseThresholds(const ExitScores& scores, double max_drop_pp) {
  const size_t exits = scores.confidence.size();
  const double full_accuracy = scores.final_correct.to(at::kDouble).mean().item<double>();
  const double floor = full_accuracy - max_drop_pp / 100.0;
  std::vector<double> thresholds(exits, 2.0);  // start with every exit disabled
  std::vector<std::vector<double>> candidates;
  for (const at::Tensor& confidence : scores.confidence)
    candidates.push_back(Candidates(confidence));
  // Coordinate search: for each exit, earliest first, the lowest threshold that keeps the
  // accuracy floor given the others; two passes let later exits rebalance earlier ones.
  for (int pass = 0; pass < 2; ++pass) {
    for (size_t e = 0; e < exits; ++e) {
      double best = thresholds[e];
      double best_rate = SimulateExits(scores, thresholds).early_exit_rate;
      for (double candidate : candidates[e]) {
        std::vector<double> trial = thresholds;
        trial[e] = candidate;
        const ExitOutcome outcome = SimulateExits(scores, trial);
        if (outcome.overall_accuracy + 1e-12 >= floor && outcome.early_exit_rate > best_rate) {
          best = candidate;
          best_rate = outcome.early_exit_rate;
        }
      }
      thresholds[e] = best;
    }
  }
  return thresholds;
}

}  // namespace cleave::partitioner

namespace cleave::partitioner {

absl::StatusOr<CalibrationReport> CalibrateBundleExits(const std::string& dir,
                                                       const common::LabeledImages& held_out,
                                                       const ExitCalibrationOptions& options) {
  CLEAVE_ASSIGN_OR_RETURN(auto bundle, common::Bundle::Load(dir));
  CLEAVE_ASSIGN_OR_RETURN(ExitPredictions predictions, PredictWithExits(*bundle, held_out));
  CalibrationReport report;
  report.exit_cuts = predictions.exit_cuts;
  for (const at::Tensor& logits : predictions.exit_logits) {
    const double temperature = FitTemperature(logits, predictions.labels);
    report.temperatures.push_back(temperature);
    report.ece_before.push_back(ExpectedCalibrationError(logits, predictions.labels, 1.0));
    report.ece_after.push_back(ExpectedCalibrationError(logits, predictions.labels, temperature));
  }
  const ExitScores scores = ScoreExits(predictions, report.temperatures, options.score);
  report.full_accuracy = scores.final_correct.to(at::kDouble).mean().item<double>();
  report.thresholds = ChooseThresholds(scores, options.max_accuracy_drop_pp);
  report.chosen = SimulateExits(scores, report.thresholds);
  for (double drop : {0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0}) {
    CalibrationReport::TradeOff trade_off;
    trade_off.max_drop_pp = drop;
    trade_off.thresholds = ChooseThresholds(scores, drop);
    trade_off.outcome = SimulateExits(scores, trade_off.thresholds);
    report.trade_offs.push_back(std::move(trade_off));
  }
  common::BundleManifest manifest = bundle->manifest();
  for (size_t e = 0; e < manifest.exits.size(); ++e) {
    manifest.exits[e].temperature = report.temperatures[e];
    manifest.exits[e].score = common::ExitScoreName(options.score);
    // A threshold above 1 means "never exit here": stored as no threshold.
    manifest.exits[e].threshold =
        report.thresholds[e] <= 1.0 ? std::optional<double>(report.thresholds[e]) : std::nullopt;
    manifest.exits[e].exit_rate = report.chosen.exit_rates[e];
  }
  CLEAVE_ASSIGN_OR_RETURN(report.bundle_id, RewriteManifest(dir, manifest));
  return report;
}

absl::StatusOr<ExitEvaluation> EvaluateBundleExits(const common::Bundle& bundle,
                                                   const common::LabeledImages& data) {
  const common::BundleManifest& manifest = bundle.manifest();
  CLEAVE_ASSIGN_OR_RETURN(ExitPredictions predictions, PredictWithExits(bundle, data));
  std::vector<double> temperatures, thresholds;
  common::ExitScore score = common::ExitScore::kMaxProbability;
  for (const common::ExitInfo& exit : manifest.exits) {
    temperatures.push_back(exit.temperature);
    thresholds.push_back(exit.threshold.value_or(2.0));
    CLEAVE_ASSIGN_OR_RETURN(score, common::ParseExitScore(exit.score));
  }
  const ExitScores scores = ScoreExits(predictions, temperatures, score);
  ExitEvaluation evaluation;
  evaluation.exit_cuts = predictions.exit_cuts;
  evaluation.full_accuracy = scores.final_correct.to(at::kDouble).mean().item<double>();
  evaluation.outcome = SimulateExits(scores, thresholds);
  // Device MACs per sample: the segments up to each exit plus every head evaluated on the way
  // (a sample leaving at exit e ran heads 0..e); samples that do not exit stop computing on
  // the device at the last exit. Manifest costs are at the sample batch size.
  const double batch = manifest.inputs.empty() || manifest.inputs[0].shape.empty()
                           ? 1.0
                           : static_cast<double>(manifest.inputs[0].shape[0]);
  std::vector<double> macs_to_cut;
  double running = 0, total = 0;
  for (const common::SegmentInfo& segment : manifest.segments) {
    total += static_cast<double>(segment.macs) / batch;
  }
  for (const common::SegmentInfo& segment : manifest.segments) {
    running += static_cast<double>(segment.macs) / batch;
    const common::ExitInfo* exit = segment.end_cut ? manifest.FindExit(*segment.end_cut) : nullptr;
    if (exit != nullptr) {
      running += static_cast<double>(exit->macs);
      macs_to_cut.push_back(running);
    }
  }
  evaluation.device_macs_full = total;
  double with_exits = evaluation.outcome.full_rate * macs_to_cut.back();
  for (size_t e = 0; e < macs_to_cut.size(); ++e) {
    with_exits += evaluation.outcome.exit_rates[e] * macs_to_cut[e];
  }
  evaluation.device_macs_with_exits = with_exits;
  return evaluation;
}

absl::Status PlotTradeOff(const CalibrationReport& report, const std::string& png) {
  const std::string data = png + ".dat";
  {
    std::ofstream out(data);
    out << "# max_drop_pp early_exit_rate accuracy\n";
    for (const auto& trade_off : report.trade_offs) {
      out << trade_off.max_drop_pp << " " << 100 * trade_off.outcome.early_exit_rate << " "
          << 100 * trade_off.outcome.overall_accuracy << "\n";
    }
    if (!out) return absl::PermissionDeniedError(absl::StrCat("cannot write ", data));
  }
  const std::string script = absl::StrCat(
      "set terminal pngcairo size 800,500; set output '", png, "';",
      "set title 'Early exits: share leaving early vs accuracy (held-out data)';",
      "set xlabel 'samples leaving at an exit (%)'; set ylabel 'overall accuracy (%)';",
      "set grid; set key bottom left;", "plot '", data,
      "' using 2:3 with linespoints lw 2 pt 7 title 'exits',", 100 * report.full_accuracy,
      " with lines dt 2 title 'full model'");
  const std::string command = absl::StrCat("gnuplot -e \"", script, "\" 2>&1");
  const int status = std::system(command.c_str());
  std::filesystem::remove(data);
  if (status != 0) {
    return absl::UnavailableError(absl::StrCat("gnuplot failed (exit ", status,
                                               "); install Debian's gnuplot-nox to draw --plot"));
  }
  return absl::OkStatus();
}

}  // namespace cleave::partitioner
