// A loaded bundle: its manifest, its id and the TorchScript segments, checked against their
// hashes. Device and edge both load bundles through this class; the device may load only the
// first segments it can afford.
//
// Thread-safety: a Bundle is immutable after Load; every const method may be called from many
// threads at once (TorchScript inference is re-entrant).
#ifndef CLEAVE_COMMON_BUNDLE_H_
#define CLEAVE_COMMON_BUNDLE_H_

#include <torch/script.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "cleave/common/bundle_crypto.h"
#include "cleave/common/manifest.h"
#include "cleave/common/trust.h"

namespace cleave::common {

class Bundle {
 public:
  struct LoadOptions {
    // Load only the first `max_segments` segments (a device that runs the front of the model);
    // all segments when empty.
    std::optional<size_t> max_segments;
    // Optimize segments and exit heads for inference after loading (OptimizeForInference in
    // torchscript_io.h): what device and edge run. Off for tools that check bit-exactness.
    bool optimize_for_inference = false;
    // Measure what a forward from each cut allocates, on the verification sample at its batch
    // and at twice it (ForwardBytes): what an edge charges requests for. Needs every segment.
    bool measure_forward_memory = false;
    // When set, the bundle must pass this policy's checks (signatures before its manifest is
    // parsed; expiry, version and the folder's contents before any other file is read) and
    // every file it lists must match its hash (trust.h). Recording its version as accepted is
    // the caller's, once it activates the bundle (TrustPolicy::Accept).
    std::shared_ptr<TrustPolicy> trust;
    // The key an encrypted bundle's files are opened with, in memory (bundle_crypto.h);
    // FAILED_PRECONDITION for an encrypted bundle without it or with another key.
    std::shared_ptr<const BundleKey> key;
  };

  // Reads DIR/manifest.json, checks every segment file it loads against its size and SHA-256
  // and loads it. Returns NOT_FOUND when DIR has no manifest, DATA_LOSS on a size or hash
  // mismatch, INVALID_ARGUMENT for a malformed manifest or segment and FAILED_PRECONDITION
  // when the trust policy refuses the bundle.
  [[nodiscard]] static absl::StatusOr<std::shared_ptr<const Bundle>> Load(
      const std::string& dir, const LoadOptions& options);
  [[nodiscard]] static absl::StatusOr<std::shared_ptr<const Bundle>> Load(const std::string& dir) {
    return Load(dir, LoadOptions{});
  }

  const std::string& id() const { return id_; }
  const std::string& dir() const { return dir_; }
  const BundleManifest& manifest() const { return manifest_; }
  size_t num_loaded_segments() const { return segments_.size(); }

  // Returns the index of the segment that starts at `cut_id`; INVALID_ARGUMENT listing the
  // cuts the bundle can resume from otherwise.
  [[nodiscard]] absl::StatusOr<size_t> SegmentStartingAt(int cut_id) const;

  // Returns OK when a tensor of type `declared` can enter the segment starting at `cut_id`:
  // the dtype and rank the manifest records, the same size in every dimension except
  // dimension 0, the batch, and a batch from 1 to `max_batch`. INVALID_ARGUMENT naming the
  // dimension and both shapes otherwise. What an edge checks on a frame's header before it
  // decodes anything.
  [[nodiscard]] absl::Status CheckActivation(int cut_id, const TensorSpec& declared,
                                             int64_t max_batch) const;
  // The same for a decoded tensor, with any batch.
  [[nodiscard]] absl::Status CheckActivation(int cut_id, const at::Tensor& activation) const;

  // The model's outputs (flattened) for an input of `batch` samples: the manifest's outputs
  // with dimension 0 scaled from the sample's batch to `batch` where it is the batch. What a
  // device accepts from an edge, and what an edge charges a request for its answer.
  [[nodiscard]] std::vector<TensorSpec> OutputsFor(int64_t batch) const;
  // Bytes of OutputsFor(batch), without building it.
  [[nodiscard]] int64_t OutputBytes(int64_t batch) const;

  // The most bytes of tensors a forward from `cut_id` to the output holds at once for an input
  // of `batch` samples, the input itself not counted: measured at load
  // (LoadOptions::measure_forward_memory) as a part that does not grow with the batch (weights
  // reordered per call) plus a part per sample; without a measurement, twice the largest
  // tensor crossing a cut from `cut_id` on (a layer's input and output).
  [[nodiscard]] int64_t ForwardBytes(int cut_id, int64_t batch) const;

  // Runs segments first..last (inclusive, loaded) in order on `inputs` and returns what the
  // last one returns. Errors from LibTorch come back as INVALID_ARGUMENT.
  [[nodiscard]] absl::StatusOr<c10::IValue> RunSegments(size_t first, size_t last,
                                                        std::vector<c10::IValue> inputs) const;

  // Runs the exit head at `cut_id` on `activation` and returns its logits [N, classes].
  // NOT_FOUND when the bundle has no exit there.
  [[nodiscard]] absl::StatusOr<at::Tensor> RunExit(int cut_id, const at::Tensor& activation) const;

  // The stored verification sample's inputs, read and checked against their size and hash now.
  [[nodiscard]] absl::StatusOr<std::vector<at::Tensor>> ReadVerificationInputs() const;

  // Runs the stored verification sample through every segment and compares with the original
  // model's stored output. Returns the max abs difference, or FAILED_PRECONDITION when it
  // exceeds the manifest's tolerance. REQUIRES: all segments loaded.
  [[nodiscard]] absl::StatusOr<double> Verify() const;

 private:
  Bundle() = default;

  // Dimension 0 of the model's input in the manifest: the batch its shapes were recorded at.
  int64_t SampleBatch() const;
  // Fills forward_memory_ from runs of the verification sample. REQUIRES: all segments loaded.
  absl::Status MeasureForwardMemory();
  // Bytes of the largest tensor crossing a cut from `cut_id` on, for `batch` samples.
  int64_t LargestActivationBytes(int cut_id, int64_t batch) const;

  struct ForwardMemory {
    int64_t fixed = 0;       // bytes whatever the batch
    int64_t per_sample = 0;  // bytes per sample
  };

  std::string dir_;
  std::string id_;
  std::shared_ptr<const BundleKey> key_;  // null for a bundle stored in plaintext
  BundleManifest manifest_;
  std::vector<torch::jit::Module> segments_;
  std::map<int, torch::jit::Module> exit_heads_;  // by cut id
  std::map<int, ForwardMemory> forward_memory_;   // by the cut a forward starts at
};

// Returns the largest |a - b| over the flattened outputs, or INVALID_ARGUMENT when their
// number, shapes or dtypes differ. `tolerance_exceeded` is set when some element breaks
// |a - b| <= atol + rtol * |b|.
[[nodiscard]] absl::StatusOr<double> CompareOutputs(const std::vector<at::Tensor>& actual,
                                                    const std::vector<at::Tensor>& expected,
                                                    double rtol, double atol,
                                                    bool* tolerance_exceeded);

}  // namespace cleave::common

#endif  // CLEAVE_COMMON_BUNDLE_H_
