// Our status on the wire, in one place for the device and the edge: as the gRPC status of a
// call, and in band, as the status of one answer on a stream that carries many requests.
// absl::StatusCode and grpc::StatusCode both number google.rpc.Code, so a code crosses the wire
// unchanged. The numbers are part of the wire format.
#ifndef CLEAVE_PROTO_STATUS_H_
#define CLEAVE_PROTO_STATUS_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"
#include "cleave/v1/inference.pb.h"

namespace cleave::proto {

// The gRPC status a handler finishes a call with.
[[nodiscard]] grpc::Status ToGrpcStatus(const absl::Status& status);
// The status of a call as gRPC reported it, for our callers.
[[nodiscard]] absl::Status FromGrpcStatus(const grpc::Status& status);

// Writes `status` into `response` as its in-band status; a failed answer carries no outputs.
void SetResponseStatus(const absl::Status& status, v1::InferResponse* response);
// The in-band status of `response`: OK, or its code and message. A code outside
// google.rpc.Code (from a peer we do not know) is UNKNOWN, naming the number.
[[nodiscard]] absl::Status ResponseStatus(const v1::InferResponse& response);

}  // namespace cleave::proto

#endif  // CLEAVE_PROTO_STATUS_H_
