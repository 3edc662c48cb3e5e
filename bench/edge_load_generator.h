// Load against a running cleave-edge, as many devices would produce it: one InferStream per
// simulated device, each on its own TCP connection, carrying pre-encoded activation frames.
// Closed loop (every stream keeps K requests in flight, sending the next as soon as one is
// answered) or open loop (requests paced at a fixed total rate, latency counted from the
// scheduled send time so a slow server cannot hide its backlog). Requests are serialised once
// up front and only the request id is written per request, so the generator spends its CPU on
// the transport, not on copying frames: it shares the machine with the server it measures.
//
// Thread-safety: a LoadGenerator runs one load at a time; Run is not reentrant.
#ifndef CLEAVE_BENCH_EDGE_LOAD_GENERATOR_H_
#define CLEAVE_BENCH_EDGE_LOAD_GENERATOR_H_

#include <grpcpp/channel.h>
#include <grpcpp/support/slice.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace cleave::bench {

// How a run drives the streams.
struct LoadSpec {
  int streams = 1;
  int in_flight = 1;  // closed loop: requests each stream keeps outstanding
  double rate = 0;    // open loop when > 0: requests per second over all streams

  // "16x2" (16 streams, 2 in flight each) or "16@500" (16 streams, 500 requests/s in total).
  [[nodiscard]] static absl::StatusOr<LoadSpec> Parse(absl::string_view text);
  // The same notation, for tables.
  [[nodiscard]] std::string Label() const;
};

// One answered request: what the client saw and what the edge reported in ServerTimings.
struct RequestSample {
  double latency_us = 0;  // send (open loop: scheduled send) to response received
  double queue_us = 0;
  double decode_us = 0;
  double compute_us = 0;  // the whole forward the request ran in
  double encode_us = 0;
  uint32_t batch_size = 0;
};

struct LoadResult {
  double seconds = 0;                  // length of the measurement window
  std::vector<RequestSample> samples;  // OK responses received inside the window
  int64_t errors = 0;                  // non-OK responses inside the window
  std::string first_error;             // the first non-OK status message, if any
};

class LoadGenerator {
 public:
  struct Request {
    std::string bundle_id;
    int cut_id = 0;
    std::vector<std::string> frames;  // activations; request n of a stream carries one in turn
    // The status an answer must carry to count as a sample (others are errors). A request for
    // an unknown bundle, answered NOT_FOUND (5) without decoding or compute, measures the
    // transport alone.
    int expected_status = 0;
  };

  // Opens `max_streams` connections to `target` (host:port) for `request`'s frames and waits
  // until they are up. UNAVAILABLE when the edge cannot be reached within 10 s.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<LoadGenerator>> Connect(
      const std::string& target, int max_streams, const Request& request);

  // Drives the edge with `spec` for `warmup` (not measured) and then `measure`, waits for
  // every outstanding answer and returns what arrived inside the measurement window.
  // UNAVAILABLE when a stream breaks or the edge does not answer within 60 s of the end;
  // INVALID_ARGUMENT when `spec` needs more streams than were opened.
  [[nodiscard]] absl::StatusOr<LoadResult> Run(const LoadSpec& spec,
                                               std::chrono::milliseconds warmup,
                                               std::chrono::milliseconds measure);

 private:
  LoadGenerator() = default;

  std::string target_;
  std::vector<std::shared_ptr<grpc::Channel>> channels_;
  std::vector<grpc::Slice> bodies_;  // serialised requests without their id, one per frame
  int expected_status_ = 0;
};

}  // namespace cleave::bench

#endif  // CLEAVE_BENCH_EDGE_LOAD_GENERATOR_H_
