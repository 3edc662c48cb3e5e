// cleave::device::Runtime — what a robotics stack links against. It loads a bundle, runs the
// first segments on the device, sends the activation at the offload cut to the edge over one
// long-lived gRPC stream, and returns the edge's answer. After each segment that ends at a
// calibrated exit head it evaluates the head and answers locally when it is confident. When the
// edge fails or cannot answer within the deadline and the device holds the remaining segments, it
// finishes locally, so a control loop never waits on the network for longer than its deadline.
//
// Thread-safety: Infer may be called from many threads at once.
#ifndef CLEAVE_DEVICE_RUNTIME_H_
#define CLEAVE_DEVICE_RUNTIME_H_

#include <ATen/core/Tensor.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cleave/common/bundle.h"
#include "cleave/common/tensor_frame.h"

namespace cleave::device {

class EdgeClient;

struct RuntimeOptions {
  // Edge address host:port; empty runs every segment on the device.
  std::string edge;
  // The cut whose activation goes to the edge; defaults to the bundle's first cut. 0 sends
  // the raw input (everything runs on the edge).
  std::optional<int> offload_cut;
  // Default per-call budget for the edge round trip.
  std::chrono::milliseconds deadline{1000};
  // Finish on the device when the edge fails (needs every segment on the device).
  bool local_fallback = true;
  // How activations are encoded; defaults to the codec the bundle records for each cut
  // (raw for cut 0, the input).
  std::optional<common::CodecSpec> codec;
};

struct InferOptions {
  std::optional<std::chrono::milliseconds> deadline;  // overrides RuntimeOptions::deadline
  std::optional<int> offload_cut;                     // overrides RuntimeOptions::offload_cut
};

// Where a request's answer was computed.
enum class Placement {
  kDevice,          // every segment on the device (no edge configured)
  kEdge,            // the edge ran the segments after the offload cut
  kDeviceFallback,  // the edge failed or was too slow; the device finished the model
  kDeviceExit,      // an exit head on the device was confident enough: no network at all
};

// Returns "device", "edge", "device-fallback" or "device-exit".
[[nodiscard]] const char* PlacementName(Placement placement);

struct Timings {
  double device_compute_ms = 0;
  double encode_ms = 0;
  double network_ms = 0;  // round trip minus the edge's own time
  double edge_queue_ms = 0;
  double edge_compute_ms = 0;
  double total_ms = 0;
};

struct Result {
  std::vector<at::Tensor> outputs;  // the model's output, flattened depth-first
  int cut_id = 0;                   // the offload cut used
  Placement placement = Placement::kDevice;
  Timings timings;
  uint64_t bytes_sent = 0;
  std::string fallback_reason;  // why the edge was not used, for kDeviceFallback
  std::optional<int> exit_cut;  // the exit that answered, for kDeviceExit (outputs = its logits)
  double confidence = 0;        // of the last exit head evaluated (0 if none)
};

class Runtime {
 public:
  // Loads the bundle at `bundle_dir` (all segments, hash-checked). INVALID_ARGUMENT for an
  // offload cut the bundle cannot resume from.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Runtime>> Create(
      const std::string& bundle_dir, const RuntimeOptions& options);
  ~Runtime();

  // Runs one input ([N, ...] as the bundle's input) through the split model.
  // Returns INVALID_ARGUMENT for an input the model rejects, UNAVAILABLE / DEADLINE_EXCEEDED
  // when the edge fails and local fallback is off.
  [[nodiscard]] absl::StatusOr<Result> Infer(const at::Tensor& input,
                                             const InferOptions& options = {});

  const common::Bundle& bundle() const { return *bundle_; }

 private:
  Runtime() = default;

  // Runs segments first..last on the device, evaluating every calibrated exit on the way.
  // Returns true (result filled) when an exit was confident enough.
  absl::StatusOr<bool> RunOnDevice(size_t first, size_t last, c10::IValue* value,
                                   Result* result) const;

  // Sends `activation` for cut `cut_id` and waits until `deadline` for the outputs.
  absl::StatusOr<std::vector<at::Tensor>> CallEdge(int cut_id, const std::string& frame,
                                                   std::chrono::steady_clock::time_point deadline,
                                                   Timings* timings);

  RuntimeOptions options_;
  std::shared_ptr<const common::Bundle> bundle_;
  std::unique_ptr<EdgeClient> edge_;
  std::atomic<uint64_t> next_request_id_{1};
};

}  // namespace cleave::device

#endif  // CLEAVE_DEVICE_RUNTIME_H_
