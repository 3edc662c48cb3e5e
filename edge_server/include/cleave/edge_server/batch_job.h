// What the edge's scheduler and executor pass between them: one admitted request as a job,
// without its protobuf message. The service turns a message into a BatchJob (batch_job.h) and
// its JobResult back into an answer; the DynamicBatcher queues jobs and forms batches; the
// BatchRunner decodes, computes and encodes them.
#ifndef CLEAVE_EDGE_SERVER_BATCH_JOB_H_
#define CLEAVE_EDGE_SERVER_BATCH_JOB_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace cleave::common {
class Bundle;
}  // namespace cleave::common

namespace cleave::edge_server {

class BundleMetrics;

// What a request carries besides its message: when it arrived, when it must have started
// computing, and whether its caller has gone away.
struct RequestContext {
  using Clock = std::chrono::steady_clock;
  Clock::time_point arrival = Clock::now();
  Clock::time_point deadline = Clock::time_point::max();
  std::function<bool()> cancelled = [] { return false; };
};

// Where a request's time on the edge went (the answer's cleave.v1.ServerTimings).
struct JobTimings {
  uint64_t queue_us = 0;
  uint64_t decode_us = 0;
  uint64_t compute_us = 0;
  uint64_t encode_us = 0;
  uint32_t batch_size = 0;
};

// What the runner writes for a job before it calls `done`.
struct JobResult {
  std::vector<std::string> outputs;  // encoded frames, the model's outputs flattened
  JobTimings timings;
};

// One admitted request. The views and `result` belong to the caller and stay valid until
// `done` is called, exactly once, with the request's outcome.
struct BatchJob {
  std::shared_ptr<const common::Bundle> bundle;
  std::shared_ptr<const BundleMetrics> metrics;  // the bundle's metric children; may be null
  int cut = 0;                                   // the cut the activation resumes from
  uint64_t request_id = 0;                       // for messages
  absl::string_view activation;                  // the encoded frame
  RequestContext context;
  JobResult* result = nullptr;
  std::function<void(absl::Status)> done;
};

}  // namespace cleave::edge_server

#endif  // CLEAVE_EDGE_SERVER_BATCH_JOB_H_
