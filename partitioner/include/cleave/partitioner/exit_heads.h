// Early-exit heads: small classifiers attached at bundle cuts and trained on the frozen
// backbone's activations, so the backbone — and every segment the edge holds — stays
// bit-identical. Heads are TorchScript modules stored in the bundle next to the segments.
#ifndef CLEAVE_PARTITIONER_EXIT_HEADS_H_
#define CLEAVE_PARTITIONER_EXIT_HEADS_H_

#include <torch/script.h>

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "cleave/common/bundle.h"
#include "cleave/common/idx_dataset.h"

namespace cleave::partitioner {

enum class HeadKind {
  kPoolLinear,      // "pool-linear": global average pool + linear (default)
  kConvPoolLinear,  // "conv-pool-linear": 3x3 conv + batch norm + ReLU, pool, linear
};

[[nodiscard]] absl::StatusOr<HeadKind> ParseHeadKind(absl::string_view name);
[[nodiscard]] const char* HeadKindName(HeadKind kind);

// Returns an untrained head mapping activations shaped like `activation` ([N, C, H, W] or
// [N, C]) to [N, classes] logits. INVALID_ARGUMENT for other ranks.
[[nodiscard]] absl::StatusOr<torch::jit::Module> BuildExitHead(HeadKind kind,
                                                               const common::Shape& activation,
                                                               int64_t classes,
                                                               at::Generator& generator);

// Estimated multiply-accumulates of one head evaluation on one sample of `activation`'s shape.
[[nodiscard]] int64_t EstimateExitHeadMacs(HeadKind kind, const common::Shape& activation,
                                           int64_t classes);

// Runs `images` through the bundle's segments in batches, up to and including the segment
// that ends at `last_cut`, and calls `visit` with the first image's index and the activation
// at each cut in `cuts`. Activations are ordinary (not inference-mode) tensors.
[[nodiscard]] absl::Status VisitActivations(
    const common::Bundle& bundle, const at::Tensor& images, const std::vector<int>& cuts,
    int64_t batch_size,
    const std::function<absl::Status(int64_t, const std::map<int, at::Tensor>&)>& visit);

struct ExitTrainingOptions {
  HeadKind kind = HeadKind::kPoolLinear;
  int epochs = 4;
  int64_t batch_size = 128;
  double learning_rate = 0.01;  // start of a cosine schedule (Adam)
  uint64_t seed = 1;
  int64_t classes = 10;
  // Called after every batch with (epoch, batch, batches, mean loss, mean head accuracy).
  std::function<void(int, int64_t, int64_t, double, double)> on_batch;
};

// Trains one head per cut in `cut_ids` (each a cut of `bundle`) on `data`; the bundle is only
// read. Returns the heads in eval mode, in `cut_ids` order.
[[nodiscard]] absl::StatusOr<std::vector<torch::jit::Module>> TrainExitHeads(
    const common::Bundle& bundle, const std::vector<int>& cut_ids,
    const common::LabeledImages& data, const ExitTrainingOptions& options);

// Writes `heads` into the bundle folder `dir` as exit_<cut>.pt and lists them in its
// manifest (replacing exits at the same cuts, uncalibrated: temperature 1, no threshold).
// Segment files are not touched. Returns the new bundle id.
[[nodiscard]] absl::StatusOr<std::string> AddExitsToBundle(
    const std::string& dir, const std::vector<int>& cut_ids,
    const std::vector<torch::jit::Module>& heads, HeadKind kind);

// Rewrites the manifest of the bundle in `dir` with `manifest` (after checking it) and
// returns the new bundle id.
[[nodiscard]] absl::StatusOr<std::string> RewriteManifest(const std::string& dir,
                                                          const common::BundleManifest& manifest);

}  // namespace cleave::partitioner

#endif  // CLEAVE_PARTITIONER_EXIT_HEADS_H_
