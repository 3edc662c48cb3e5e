// libFuzzer target: the edge's request path in process, against a real small bundle. Bytes
// become an InferRequest — parsed as one (first byte odd), or a request for one of the
// bundle's cuts carrying the rest as its activation frame (checksum resealed, so the fuzzer
// gets past it) — and go through InferenceService::Submit: the header checks, admission
// against a small memory budget, the batcher, the decode and a real forward. Every request
// must be answered exactly once and within seconds; a crash, a sanitizer report, a second
// answer or a missing one is a bug.
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <future>
#include <memory>
#include <string>

#include "cleave/common/bundle.h"
#include "cleave/common/frame_codec.h"
#include "cleave/common/metrics.h"
#include "cleave/common/tensor_frame.h"
#include "cleave/edge_server/admission_control.h"
#include "cleave/edge_server/batch_runner.h"
#include "cleave/edge_server/bundle_registry.h"
#include "cleave/edge_server/dynamic_batcher.h"
#include "cleave/edge_server/edge_metrics.h"
#include "cleave/edge_server/inference_service.h"
#include "tests/fuzz/targets/fuzz_support.h"

namespace cleave::fuzz {
namespace {

using namespace cleave::edge_server;

// The edge's request path without its transport: what Submit needs, set up once.
struct Edge {
  Edge()
      : metrics(*EdgeMetrics::Create(&registry_metrics)),
        registry(*BundleRegistry::LoadFrom(FuzzWorkDir() + "/bundles", {}, metrics.get())),
        admission(AdmissionOptions{64 << 20, 0}, metrics.get()),
        runner(Limits()),
        batcher(BatcherOptions(),
                [this](std::vector<BatchJob> batch) { runner.Run(std::move(batch)); }),
        service(InferenceServiceOptions{}, registry.get(), &batcher, &admission, metrics.get()),
        peer(admission.PeerFor("fuzz")),
        bundle(registry->List().at(0)) {}

  static DynamicBatcher::Options BatcherOptions() {
    DynamicBatcher::Options options;
    options.workers = 1;
    options.idle_spin = std::chrono::microseconds(0);
    options.prepare_worker = &BatchRunner::PrepareThread;
    return options;
  }
  static common::DecodeLimits Limits() {
    common::DecodeLimits limits;
    limits.max_elements = 1 << 22;
    return limits;
  }

  common::MetricsRegistry registry_metrics;
  std::unique_ptr<EdgeMetrics> metrics;
  std::unique_ptr<BundleRegistry> registry;
  AdmissionControl admission;
  BatchRunner runner;
  DynamicBatcher batcher;
  InferenceService service;
  std::shared_ptr<AdmissionControl::Peer> peer;
  std::shared_ptr<const common::Bundle> bundle;
};

Edge& TheEdge() {
  static Edge* edge = new Edge();  // never destroyed: workers may outlive static teardown
  return *edge;
}

// The cuts a request may name: the input and every cut of the bundle.
int CutFor(const common::Bundle& bundle, uint8_t selector) {
  const auto& cuts = bundle.manifest().cuts;
  const size_t index = selector % (cuts.size() + 1);
  return index == 0 ? common::kInputCutId : cuts[index - 1].id;
}

void WriteSeeds() {
  const Edge& edge = TheEdge();
  const auto& manifest = edge.bundle->manifest();
  at::Tensor value = at::rand({1, 3, 8, 8});
  for (size_t index = 0; index <= manifest.cuts.size(); ++index) {
    if (index > 0) value = edge.bundle->RunSegments(index - 1, index - 1, {value})->toTensor();
    for (const common::CodecSpec& spec :
         {common::CodecSpec{}, common::CodecSpec{common::Codec::kInt8, 1, {}},
          common::CodecSpec{common::Codec::kFloat16, 0, {}}}) {
      const std::string frame = *common::EncodeFrame(value, spec);
      AddSeed("cut" + std::to_string(index) + "-" + common::CodecLabel(spec.codec, spec.zstd_level),
              std::string(1, static_cast<char>(2 * index)) + frame);
      v1::InferRequest request;
      request.set_request_id(7);
      request.set_bundle_id(edge.bundle->id());
      request.set_cut_id(CutFor(*edge.bundle, static_cast<uint8_t>(index)));
      request.set_activation(frame);
      AddSeed("proto-cut" + std::to_string(index) + "-" + common::CodecName(spec.codec),
              std::string(1, '\x01') + request.SerializeAsString());
    }
  }
}

}  // namespace
}  // namespace cleave::fuzz

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  cleave::fuzz::WriteSeeds();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace cleave::fuzz;
  using namespace cleave::edge_server;
  if (size == 0) return 0;
  Edge& edge = TheEdge();
  auto call = std::make_shared<InferCall>();
  const uint8_t selector = data[0];
  const std::string rest(reinterpret_cast<const char*>(data + 1), size - 1);
  if (selector & 1) {
    if (!call->request.ParseFromString(rest)) return 0;
  } else {
    std::string frame = rest;
    if (frame.size() >= 16) {
      const uint32_t checksum = cleave::common::FrameChecksum(frame);
      std::memcpy(frame.data() + 12, &checksum, 4);
    }
    call->request.set_request_id(selector);
    call->request.set_bundle_id(edge.bundle->id());
    call->request.set_cut_id(CutFor(*edge.bundle, static_cast<uint8_t>(selector >> 1)));
    call->request.set_activation(std::move(frame));
  }
  auto answered = std::make_shared<std::promise<absl::Status>>();
  auto calls = std::make_shared<std::atomic<int>>(0);
  // The answer holds the call, as the service's reactors do: the batcher uses its request and
  // response until it answers.
  edge.service.Submit(call, edge.peer, RequestContext{},
                      [answered, calls, call](absl::Status status) {
                        if (calls->fetch_add(1) > 0) __builtin_trap();  // answered twice
                        answered->set_value(std::move(status));
                      });
  auto future = answered->get_future();
  if (future.wait_for(std::chrono::seconds(20)) != std::future_status::ready) {
    __builtin_trap();  // never answered
  }
  const absl::Status status = future.get();
  // OK only with outputs of the shapes the bundle declares.
  if (status.ok()) {
    const int64_t batch = 1;
    if (static_cast<size_t>(call->response.outputs_size()) !=
        edge.bundle->OutputsFor(batch).size()) {
      __builtin_trap();
    }
  }
  return 0;
}
