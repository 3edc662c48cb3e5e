// Tensor frames for at::Tensor: the only way a tensor crosses the wire in cleave. Adapts the
// LibTorch-free codec in frame_codec.h (codecs, header, validation) to tensors;
// docs/FRAME_FORMAT.md specifies the bytes. torch::save is never used on the wire.
#ifndef CLEAVE_COMMON_TENSOR_FRAME_H_
#define CLEAVE_COMMON_TENSOR_FRAME_H_

#include <ATen/core/Tensor.h>

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "cleave/common/frame_codec.h"
#include "cleave/common/tensor_spec.h"

namespace cleave::common {

// Encodes `tensor` (any layout or device; made contiguous on the CPU) as a frame.
// INVALID_ARGUMENT for dtypes or ranges the codec cannot carry.
[[nodiscard]] absl::StatusOr<std::string> EncodeFrame(const at::Tensor& tensor,
                                                      const CodecSpec& spec = {});

// The dtype and shape a parsed frame declares, from its header alone: what a receiver checks
// against what it accepts before it decodes (and allocates for) the frame.
[[nodiscard]] TensorSpec DeclaredTensor(const ParsedFrame& frame);

// Decodes a frame into a new CPU tensor, straight into its memory. Returns INVALID_ARGUMENT
// naming the problem for a truncated, corrupted or oversized frame; never reads outside
// `frame` and never allocates beyond `limits`.
[[nodiscard]] absl::StatusOr<at::Tensor> DecodeFrame(absl::string_view frame,
                                                     const DecodeLimits& limits = {});

}  // namespace cleave::common

#endif  // CLEAVE_COMMON_TENSOR_FRAME_H_
