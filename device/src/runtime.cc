#include "cleave/device/runtime.h"

#include <future>

#include "absl/strings/str_cat.h"
#include "cleave/common/confidence.h"
#include "cleave/common/status_macros.h"
#include "cleave/common/torchscript_io.h"
#include "cleave/device/edge_client.h"

namespace cleave::device {
namespace {

using Clock = std::chrono::steady_clock;

double MillisSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

}  // namespace

const char* PlacementName(Placement placement) {
  switch (placement) {
    case Placement::kDevice:
      return "device";
    case Placement::kEdge:
      return "edge";
    case Placement::kDeviceFallback:
      return "device-fallback";
    case Placement::kDeviceExit:
      return "device-exit";
  }
  return "unknown";
}

absl::StatusOr<std::unique_ptr<Runtime>> Runtime::Create(const std::string& bundle_dir,
                                                         const RuntimeOptions& options) {
  std::unique_ptr<Runtime> runtime(new Runtime());
  runtime->options_ = options;
  CLEAVE_ASSIGN_OR_RETURN(runtime->bundle_, common::Bundle::Load(bundle_dir));
  const common::BundleManifest& manifest = runtime->bundle_->manifest();
  if (!runtime->options_.offload_cut.has_value()) {
    runtime->options_.offload_cut =
        manifest.cuts.empty() ? common::kInputCutId : manifest.cuts.front().id;
  }
  CLEAVE_RETURN_IF_ERROR(
      runtime->bundle_->SegmentStartingAt(*runtime->options_.offload_cut).status());
  if (!options.edge.empty()) runtime->edge_ = std::make_unique<EdgeClient>(options.edge);
  return runtime;
}

Runtime::~Runtime() = default;

absl::StatusOr<Result> Runtime::Infer(const at::Tensor& input, const InferOptions& options) {
  const Clock::time_point start = Clock::now();
  const Clock::time_point deadline = start + options.deadline.value_or(options_.deadline);
  Result result;
  result.cut_id = options.offload_cut.value_or(*options_.offload_cut);
  CLEAVE_ASSIGN_OR_RETURN(const size_t split, bundle_->SegmentStartingAt(result.cut_id));
  const size_t last = bundle_->num_loaded_segments() - 1;

  // Device part: the segments before the offload cut, with their exits.
  c10::IValue value = input;
  if (split > 0) {
    CLEAVE_ASSIGN_OR_RETURN(const bool exited, RunOnDevice(0, split - 1, &value, &result));
    if (exited) {
      result.timings.total_ms = MillisSince(start);
      return result;
    }
  }

  if (edge_ != nullptr) {
    const Clock::time_point encode_start = Clock::now();
    const common::CutInfo* cut = bundle_->manifest().FindCut(result.cut_id);
    const common::CodecSpec codec =
        options_.codec.value_or(cut != nullptr ? cut->codec : common::CodecSpec{});
    CLEAVE_ASSIGN_OR_RETURN(std::string frame, common::EncodeFrame(value.toTensor(), codec));
    result.timings.encode_ms = MillisSince(encode_start);
    result.bytes_sent = frame.size();
    auto outputs = CallEdge(result.cut_id, frame, deadline, &result.timings);
    if (outputs.ok()) {
      result.outputs = *std::move(outputs);
      result.placement = Placement::kEdge;
      result.timings.total_ms = MillisSince(start);
      return result;
    }
    if (!options_.local_fallback) return outputs.status();
    result.placement = Placement::kDeviceFallback;
    result.fallback_reason = std::string(outputs.status().message());
  }

  // Device finishes the model: no edge configured, or the edge failed.
  CLEAVE_ASSIGN_OR_RETURN(const bool exited, RunOnDevice(split, last, &value, &result));
  if (!exited) CLEAVE_RETURN_IF_ERROR(common::FlattenTensors(value, &result.outputs));
  result.timings.total_ms = MillisSince(start);
  return result;
}

absl::StatusOr<bool> Runtime::RunOnDevice(size_t first, size_t last, c10::IValue* value,
                                          Result* result) const {
  const common::BundleManifest& manifest = bundle_->manifest();
  for (size_t segment = first; segment <= last; ++segment) {
    const Clock::time_point compute_start = Clock::now();
    CLEAVE_ASSIGN_OR_RETURN(*value, bundle_->RunSegments(segment, segment, {*value}));
    result->timings.device_compute_ms += MillisSince(compute_start);
    const std::optional<int> end = manifest.segments[segment].end_cut;
    const common::ExitInfo* exit = end ? manifest.FindExit(*end) : nullptr;
    if (exit == nullptr || !exit->threshold.has_value()) continue;
    const Clock::time_point exit_start = Clock::now();
    CLEAVE_ASSIGN_OR_RETURN(at::Tensor logits, bundle_->RunExit(*end, value->toTensor()));
    CLEAVE_ASSIGN_OR_RETURN(common::ExitScore score, common::ParseExitScore(exit->score));
    // A batch leaves only when every sample in it is confident enough.
    const double confidence =
        common::Confidence(logits, exit->temperature, score).min().item<double>();
    result->timings.device_compute_ms += MillisSince(exit_start);
    result->confidence = confidence;
    if (confidence >= *exit->threshold) {
      result->outputs = {logits};
      result->exit_cut = *end;
      result->placement = Placement::kDeviceExit;
      return true;
    }
  }
  return false;
}

absl::StatusOr<std::vector<at::Tensor>> Runtime::CallEdge(int cut_id, const std::string& frame,
                                                          Clock::time_point deadline,
                                                          Timings* timings) {
  const Clock::time_point now = Clock::now();
  if (now >= deadline) {
    return absl::DeadlineExceededError("no time left for the edge after device compute");
  }
  v1::InferRequest request;
  request.set_request_id(next_request_id_.fetch_add(1));
  request.set_bundle_id(bundle_->id());
  request.set_cut_id(cut_id);
  request.set_activation(frame);
  request.set_timeout_us(static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(deadline - now).count()));
  const uint64_t id = request.request_id();

  auto promise = std::make_shared<std::promise<absl::StatusOr<v1::InferResponse>>>();
  std::future<absl::StatusOr<v1::InferResponse>> future = promise->get_future();
  const Clock::time_point sent = Clock::now();
  edge_->Send(std::move(request), [promise](absl::StatusOr<v1::InferResponse> response) {
    promise->set_value(std::move(response));
  });
  if (future.wait_until(deadline) != std::future_status::ready) {
    edge_->Abandon(id);
    return absl::DeadlineExceededError(
        absl::StrCat("edge ", edge_->target(), " did not answer within the deadline"));
  }
  absl::StatusOr<v1::InferResponse> response = future.get();
  if (!response.ok()) return response.status();
  if (response->status_code() != 0) {
    return absl::Status(static_cast<absl::StatusCode>(response->status_code()),
                        absl::StrCat("edge: ", response->status_message()));
  }
  const v1::ServerTimings& server = response->timings();
  const double edge_ms = static_cast<double>(server.queue_us() + server.decode_us() +
                                             server.compute_us() + server.encode_us()) /
                         1000.0;
  timings->edge_queue_ms = static_cast<double>(server.queue_us()) / 1000.0;
  timings->edge_compute_ms = static_cast<double>(server.compute_us()) / 1000.0;
  timings->network_ms = std::max(0.0, MillisSince(sent) - edge_ms);
  std::vector<at::Tensor> outputs;
  for (const std::string& bytes : response->outputs()) {
    auto tensor = common::DecodeFrame(bytes);
    if (!tensor.ok()) {
      return absl::DataLossError(
          absl::StrCat("edge returned a bad output frame: ", tensor.status().message()));
    }
    outputs.push_back(*std::move(tensor));
  }
  return outputs;
}

}  // namespace cleave::device
