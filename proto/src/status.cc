#include "cleave/proto/status.h"

#include <string>

#include "absl/strings/str_cat.h"

namespace cleave::proto {

static_assert(static_cast<int>(absl::StatusCode::kResourceExhausted) ==
                  static_cast<int>(grpc::StatusCode::RESOURCE_EXHAUSTED),
              "absl and gRPC number status codes alike (google.rpc.Code)");
static_assert(static_cast<int>(absl::StatusCode::kUnauthenticated) ==
                  static_cast<int>(grpc::StatusCode::UNAUTHENTICATED),
              "absl and gRPC number status codes alike (google.rpc.Code)");

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

void SetResponseStatus(const absl::Status& status, v1::InferResponse* response) {
  if (status.ok()) {
    response->set_status_code(0);
    response->clear_status_message();
    return;
  }
  response->clear_outputs();
  response->set_status_code(static_cast<int>(status.code()));
  response->set_status_message(std::string(status.message()));
}

absl::Status ResponseStatus(const v1::InferResponse& response) {
  const int code = response.status_code();
  if (code == 0) return absl::OkStatus();
  if (code < 0 || code > static_cast<int>(absl::StatusCode::kUnauthenticated)) {
    return absl::UnknownError(
        absl::StrCat("status code ", code, " (unknown): ", response.status_message()));
  }
  return absl::Status(static_cast<absl::StatusCode>(code), response.status_message());
}

}  // namespace cleave::proto
