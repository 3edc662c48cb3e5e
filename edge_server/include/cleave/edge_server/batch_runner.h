// The edge's executor: runs a batch the DynamicBatcher formed. Jobs whose caller has gone away
// or whose deadline passed while queued are answered CANCELLED / DEADLINE_EXCEEDED and never
// computed; the rest are decoded, checked against the cut, concatenated into one forward and
// split back (one forward each when an output has no batch dimension), and their outputs
// encoded. Each job is answered exactly once, and counted in its bundle's metrics.
//
// Thread-safety: Run may be called from many threads at once.
#ifndef CLEAVE_EDGE_SERVER_BATCH_RUNNER_H_
#define CLEAVE_EDGE_SERVER_BATCH_RUNNER_H_

#include <vector>

#include "cleave/common/frame_codec.h"
#include "cleave/edge_server/batch_job.h"

namespace cleave::edge_server {

class BatchRunner {
 public:
  // `limits` bound what decoding a frame may allocate.
  explicit BatchRunner(common::DecodeLimits limits) : limits_(limits) {}

  // Prepares the calling thread to run batches: LibTorch's (OpenMP's) thread count is per
  // thread, and without this a worker's convolutions would use every core, not
  // --intra-op-threads, and fight the other workers and gRPC for them.
  static void PrepareThread();

  // Runs `batch`: jobs of one bundle and cut, each answered exactly once.
  void Run(std::vector<BatchJob> batch) const;

 private:
  const common::DecodeLimits limits_;
};

}  // namespace cleave::edge_server

#endif  // CLEAVE_EDGE_SERVER_BATCH_RUNNER_H_
