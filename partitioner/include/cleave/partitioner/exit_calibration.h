// Making exit confidence trustworthy and choosing when to exit. Temperature scaling per head
// (fitted on held-out data by minimising the negative log-likelihood) makes a confidence of
// 0.9 mean about 90% correct; the expected calibration error (ECE) measures how well it does.
// Thresholds are then chosen per exit for a user's target: the largest share of early exits
// whose overall accuracy stays within a given drop of the full model's.
#ifndef CLEAVE_PARTITIONER_EXIT_CALIBRATION_H_
#define CLEAVE_PARTITIONER_EXIT_CALIBRATION_H_

#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cleave/common/bundle.h"
#include "cleave/common/confidence.h"
#include "cleave/common/idx_dataset.h"

namespace cleave::partitioner {

// Every exit's logits and the full model's logits over a data set, in the bundle's exit order.
struct ExitPredictions {
  std::vector<int> exit_cuts;
  std::vector<at::Tensor> exit_logits;  // [N, classes] per exit
  at::Tensor final_logits;              // [N, classes]
  at::Tensor labels;                    // [N]
};

// Runs `data` through the whole bundle, evaluating every exit head on the way.
// FAILED_PRECONDITION when the bundle has no exits.
[[nodiscard]] absl::StatusOr<ExitPredictions> PredictWithExits(const common::Bundle& bundle,
                                                               const common::LabeledImages& data,
                                                               int64_t batch_size = 500);

// Returns the temperature T > 0 minimising the NLL of softmax(logits / T) on `labels`.
[[nodiscard]] double FitTemperature(const at::Tensor& logits, const at::Tensor& labels);

// Expected calibration error of max-probability confidences over `bins` equal-width bins.
[[nodiscard]] double ExpectedCalibrationError(const at::Tensor& logits, const at::Tensor& labels,
                                              double temperature, int bins = 15);

// What a set of thresholds does on a data set: samples leave at the first exit whose
// confidence reaches its threshold, the rest run the full model.
struct ExitOutcome {
  std::vector<double> exit_rates;       // share of all samples leaving at each exit
  std::vector<double> exit_accuracies;  // accuracy of the samples leaving there (NaN if none)
  double full_rate = 0;                 // share running the full model
  double full_accuracy = 0;             // accuracy of those samples (NaN if none)
  double overall_accuracy = 0;
  double early_exit_rate = 0;  // sum of exit_rates
};

// Per-sample confidence and correctness of every exit, plus the full model's correctness.
struct ExitScores {
  std::vector<at::Tensor> confidence;  // [N] float per exit
  std::vector<at::Tensor> correct;     // [N] bool per exit
  at::Tensor final_correct;            // [N] bool
};

// Scores `predictions` with each exit's `temperatures` and `score`.
[[nodiscard]] ExitScores ScoreExits(const ExitPredictions& predictions,
                                    const std::vector<double>& temperatures,
                                    common::ExitScore score);

[[nodiscard]] ExitOutcome SimulateExits(const ExitScores& scores,
                                        const std::vector<double>& thresholds);

// Chooses per-exit thresholds that maximise the early-exit share while the overall accuracy
// stays at least `full accuracy - max_drop_pp / 100` (coordinate search over candidate
// thresholds, earliest exit first). A threshold above 1 disables an exit.
[[nodiscard]] std::vector<double> ChooseThresholds(const ExitScores& scores, double max_drop_pp);

// What `cleave exits calibrate` did: per exit the fitted temperature, ECE before and after
// and the chosen threshold, plus the exit-rate / accuracy trade-off for several drops.
struct CalibrationReport {
  std::string bundle_id;  // after the manifest was rewritten
  double full_accuracy = 0;
  std::vector<int> exit_cuts;
  std::vector<double> temperatures, ece_before, ece_after, thresholds;
  ExitOutcome chosen;
  struct TradeOff {
    double max_drop_pp = 0;
    std::vector<double> thresholds;
    ExitOutcome outcome;
  };
  std::vector<TradeOff> trade_offs;
};

struct ExitCalibrationOptions {
  double max_accuracy_drop_pp = 0.5;
  common::ExitScore score = common::ExitScore::kMaxProbability;
};

// Fits every exit's temperature on `held_out`, chooses thresholds for the target drop,
// stores both in the bundle manifest in `dir` (segments untouched) and reports.
[[nodiscard]] absl::StatusOr<CalibrationReport> CalibrateBundleExits(
    const std::string& dir, const common::LabeledImages& held_out,
    const ExitCalibrationOptions& options);

// Measures a calibrated bundle's exits on `data` with the manifest's temperatures and
// thresholds: the outcome, and the mean device MACs per sample against running the whole
// model on the device (samples that do not exit are offloaded at the last exit's cut).
struct ExitEvaluation {
  double full_accuracy = 0;
  std::vector<int> exit_cuts;
  ExitOutcome outcome;
  double device_macs_full = 0;        // whole model on the device, per sample
  double device_macs_with_exits = 0;  // with exits and offload, per sample
};
[[nodiscard]] absl::StatusOr<ExitEvaluation> EvaluateBundleExits(const common::Bundle& bundle,
                                                                 const common::LabeledImages& data);

// Writes the trade-off curve (early-exit share vs accuracy) as a PNG with gnuplot.
[[nodiscard]] absl::Status PlotTradeOff(const CalibrationReport& report, const std::string& png);

}  // namespace cleave::partitioner

#endif  // CLEAVE_PARTITIONER_EXIT_CALIBRATION_H_
