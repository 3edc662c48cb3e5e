// Tensor frames: the only way a tensor crosses the wire in cleave. A frame is a small
// self-describing header (magic, version, codec, dtype, shape, sizes, CRC-32) followed by the
// payload; docs/FRAME_FORMAT.md specifies the bytes. torch::save is never used on the wire.
#ifndef CLEAVE_COMMON_TENSOR_FRAME_H_
#define CLEAVE_COMMON_TENSOR_FRAME_H_

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace cleave::common {

// How the payload represents the tensor's values.
enum class Codec : uint8_t {
  kRaw = 0,  // the tensor's own bytes, bit-exact
};

struct CodecSpec {
  Codec codec = Codec::kRaw;
  // 0 stores the payload as is; 1..22 compresses it with zstd at that level.
  int zstd_level = 0;
};

// Bounds a decoder enforces before allocating anything, so a hostile frame cannot make it
// allocate or read more than the caller allows.
struct DecodeLimits {
  uint64_t max_elements = uint64_t{1} << 28;  // 1 GiB of fp32
  uint32_t max_rank = 8;
};

// Encodes `tensor` (any layout; made contiguous) as a frame.
// Returns INVALID_ARGUMENT for dtypes the codec cannot carry.
[[nodiscard]] absl::StatusOr<std::string> EncodeFrame(const at::Tensor& tensor,
                                                      const CodecSpec& spec = {});

// Decodes a frame into a new CPU tensor. Returns INVALID_ARGUMENT naming the problem for a
// truncated, corrupted or oversized frame; never reads outside `frame`.
[[nodiscard]] absl::StatusOr<at::Tensor> DecodeFrame(absl::string_view frame,
                                                     const DecodeLimits& limits = {});

}  // namespace cleave::common

#endif  // CLEAVE_COMMON_TENSOR_FRAME_H_
