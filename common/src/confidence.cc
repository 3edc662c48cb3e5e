#include "cleave/common/confidence.h"

#include <ATen/ATen.h>

#include <cmath>

#include "absl/strings/str_cat.h"

namespace cleave::common {

absl::StatusOr<ExitScore> ParseExitScore(absl::string_view name) {
  if (name == "max_prob") return ExitScore::kMaxProbability;
  if (name == "entropy") return ExitScore::kEntropy;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown exit score '", name, "': expected max_prob or entropy"));
}

const char* ExitScoreName(ExitScore score) {
  return score == ExitScore::kEntropy ? "entropy" : "max_prob";
}

at::Tensor Confidence(const at::Tensor& logits, double temperature, ExitScore score) {
  const at::Tensor log_probabilities = at::log_softmax(logits.to(at::kFloat) / temperature, 1);
  if (score == ExitScore::kMaxProbability) return std::get<0>(log_probabilities.max(1)).exp();
  const at::Tensor entropy = -(log_probabilities.exp() * log_probabilities).sum(1);
  const double classes = static_cast<double>(logits.size(1));
  return classes > 1 ? 1.0 - entropy / std::log(classes) : at::ones_like(entropy);
}

}  // namespace cleave::common
