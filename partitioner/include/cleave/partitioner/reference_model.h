// The project's reference model: a small residual CNN for Fashion-MNIST (stem, three residual
// stages, pooled linear classifier), defined as TorchScript source and trained here in C++
// with LibTorch, so every number in the docs comes from a model this code built. Input is a
// float32 [N, 1, 28, 28] image scaled to [0, 1]; output is [N, 10] logits.
#ifndef CLEAVE_PARTITIONER_REFERENCE_MODEL_H_
#define CLEAVE_PARTITIONER_REFERENCE_MODEL_H_

#include <torch/script.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "cleave/common/idx_dataset.h"

namespace cleave::partitioner {

// Returns the untrained reference model with weights drawn from `seed`.
[[nodiscard]] torch::jit::Module BuildReferenceModel(uint64_t seed);

struct TrainOptions {
  int epochs = 4;
  int64_t batch_size = 128;
  double learning_rate = 0.05;  // peak of the warm-up + cosine schedule (SGD, Nesterov)
  double weight_decay = 5e-4;
  uint64_t seed = 1;
  // Called after every batch with (epoch, batch, batches per epoch, running loss, accuracy).
  std::function<void(int, int64_t, int64_t, double, double)> on_batch;
};

struct TrainReport {
  double final_loss = 0.0;
  double train_accuracy = 0.0;  // over the last epoch
};

// Trains every parameter of `model` (a classifier returning [N, classes] logits) on `data`
// with cross-entropy, then puts it in eval mode. Deterministic for a given seed and thread
// count.
[[nodiscard]] absl::StatusOr<TrainReport> TrainClassifier(torch::jit::Module& model,
                                                          const common::LabeledImages& data,
                                                          const TrainOptions& options);

// Returns the top-1 accuracy (0..1) of `model` in eval mode on `data`.
[[nodiscard]] absl::StatusOr<double> EvaluateAccuracy(torch::jit::Module& model,
                                                      const common::LabeledImages& data,
                                                      int64_t batch_size = 500);

}  // namespace cleave::partitioner

#endif  // CLEAVE_PARTITIONER_REFERENCE_MODEL_H_
