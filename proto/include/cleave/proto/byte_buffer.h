// A message as gRPC's raw bytes and back, for the services and clients that read and write raw
// grpc::ByteBuffers so that a message which does not parse gets a precise status of ours
// instead of gRPC's generic deserialization failure.
#ifndef CLEAVE_PROTO_BYTE_BUFFER_H_
#define CLEAVE_PROTO_BYTE_BUFFER_H_

#include <google/protobuf/message.h>
#include <grpcpp/support/byte_buffer.h>

namespace cleave::proto {

// Serializes `message` (a message we built: that cannot fail short of memory exhaustion).
[[nodiscard]] grpc::ByteBuffer ToByteBuffer(const google::protobuf::Message& message);
// Parses `bytes` into `message`; false when they are not one. Shares the slices, copies nothing
// more than the parse needs; bounded by the channel's or server's receive limit.
[[nodiscard]] bool ParseByteBuffer(const grpc::ByteBuffer& bytes,
                                   google::protobuf::Message* message);

}  // namespace cleave::proto

#endif  // CLEAVE_PROTO_BYTE_BUFFER_H_
