// Confidence of an exit head's prediction, shared by the partitioner (which calibrates it)
// and the device runtime (which acts on it). Logits are divided by the head's temperature
// (fitted on held-out data so a confidence of 0.9 means about 90% correct) and scored by the
// largest softmax probability, or by one minus the normalised entropy of the softmax.
#ifndef CLEAVE_COMMON_CONFIDENCE_H_
#define CLEAVE_COMMON_CONFIDENCE_H_

#include <ATen/core/Tensor.h>

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace cleave::common {

enum class ExitScore {
  kMaxProbability,  // "max_prob": max softmax probability
  kEntropy,         // "entropy": 1 - H(softmax) / log(classes), in [0, 1]
};

// Manifest / CLI names: "max_prob", "entropy".
[[nodiscard]] absl::StatusOr<ExitScore> ParseExitScore(absl::string_view name);
[[nodiscard]] const char* ExitScoreName(ExitScore score);

// Returns the confidence in [0, 1] of each row of `logits` ([N, classes]) after dividing by
// `temperature` (> 0).
[[nodiscard]] at::Tensor Confidence(const at::Tensor& logits, double temperature, ExitScore score);

}  // namespace cleave::common

#endif  // CLEAVE_COMMON_CONFIDENCE_H_
