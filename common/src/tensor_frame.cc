#include "cleave/common/tensor_frame.h"

#include <ATen/ATen.h>

#include <array>
#include <utility>

#include "absl/strings/str_cat.h"
#include "cleave/common/status_macros.h"

namespace cleave::common {
namespace {

constexpr std::array<std::pair<FrameDtype, c10::ScalarType>, 10> kDtypes = {{
    {FrameDtype::kFloat32, c10::ScalarType::Float},
    {FrameDtype::kFloat16, c10::ScalarType::Half},
    {FrameDtype::kBFloat16, c10::ScalarType::BFloat16},
    {FrameDtype::kFloat64, c10::ScalarType::Double},
    {FrameDtype::kInt64, c10::ScalarType::Long},
    {FrameDtype::kInt32, c10::ScalarType::Int},
    {FrameDtype::kInt16, c10::ScalarType::Short},
    {FrameDtype::kInt8, c10::ScalarType::Char},
    {FrameDtype::kUInt8, c10::ScalarType::Byte},
    {FrameDtype::kBool, c10::ScalarType::Bool},
}};

c10::ScalarType ScalarTypeOf(FrameDtype dtype) {
  for (const auto& [frame_dtype, scalar_type] : kDtypes) {
    if (frame_dtype == dtype) return scalar_type;
  }
  return c10::ScalarType::Undefined;  // ParseFrameHeader admits only the dtypes above
}

}  // namespace

absl::StatusOr<std::string> EncodeFrame(const at::Tensor& tensor, const CodecSpec& spec) {
  if (!tensor.defined()) return absl::InvalidArgumentError("cannot encode an undefined tensor");
  TensorView view;
  bool known = false;
  for (const auto& [frame_dtype, scalar_type] : kDtypes) {
    if (scalar_type == tensor.scalar_type()) {
      view.dtype = frame_dtype;
      known = true;
    }
  }
  if (!known) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot encode a tensor of dtype ", c10::toString(tensor.scalar_type())));
  }
  const at::Tensor contiguous = tensor.cpu().contiguous();
  view.data = contiguous.data_ptr();
  view.shape.assign(contiguous.sizes().begin(), contiguous.sizes().end());
  return EncodeFrameBytes(view, spec);
}

TensorSpec DeclaredTensor(const ParsedFrame& frame) {
  return TensorSpec{frame.shape, ScalarTypeOf(frame.dtype)};
}

absl::StatusOr<at::Tensor> DecodeFrame(absl::string_view frame, const DecodeLimits& limits) {
  auto parsed = ParseFrame(frame, limits);
  if (!parsed.ok()) return parsed.status();
  const c10::ScalarType scalar_type = ScalarTypeOf(parsed->dtype);
  // A frame within the limits may still be more than this machine can allocate.
  CLEAVE_ASSIGN_OR_RETURN(
      at::Tensor tensor,
      GuardTorch(absl::StatusCode::kResourceExhausted, "allocating the decoded tensor",
                 [&] { return at::empty(parsed->shape, at::TensorOptions().dtype(scalar_type)); }));
  if (parsed->elements > 0) {
    if (absl::Status status = DecodePayload(*parsed, tensor.data_ptr()); !status.ok()) {
      return status;
    }
  }
  return tensor;
}

}  // namespace cleave::common
