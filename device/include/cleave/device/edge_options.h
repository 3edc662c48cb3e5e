// How the device runtime talks to its edges: message limits, load balancing over the
// addresses a target resolves to, and how long a failed edge is skipped.
#ifndef CLEAVE_DEVICE_EDGE_OPTIONS_H_
#define CLEAVE_DEVICE_EDGE_OPTIONS_H_

#include <chrono>
#include <string>

namespace cleave::device {

struct EdgeClientOptions {
  int max_message_bytes = 64 << 20;
  // "" (gRPC's pick_first) or "round_robin", for targets that resolve to several addresses
  // ("ipv4:10.0.0.2:50051,10.0.0.3:50051", "dns:///edge.local:50051").
  std::string load_balancing;
  // After a failure the edge is skipped for a backoff that doubles per consecutive failure
  // (with +-20% jitter, so a fleet does not reconnect in lockstep); after `failure_threshold`
  // consecutive failures the circuit opens for `open_for`. A success closes it.
  std::chrono::milliseconds min_backoff{100};
  std::chrono::milliseconds max_backoff{2000};
  int failure_threshold = 3;
  std::chrono::milliseconds open_for{3000};
};

}  // namespace cleave::device

#endif  // CLEAVE_DEVICE_EDGE_OPTIONS_H_
