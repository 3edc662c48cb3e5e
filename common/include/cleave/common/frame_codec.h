// The activation codec: turns a tensor's values into a self-describing frame and back,
// without LibTorch (so the decoder can be fuzzed on its own). Codecs trade bytes on the wire
// for precision — raw (bit-exact), fp16, bf16, 8-bit affine per tensor or per channel, 4-bit
// affine — and any of them may be followed by zstd. docs/FRAME_FORMAT.md specifies the bytes;
// tensor_frame.h adapts this to at::Tensor.
//
// Thread-safety: every function is thread-safe (zstd contexts are per thread).
#ifndef CLEAVE_COMMON_FRAME_CODEC_H_
#define CLEAVE_COMMON_FRAME_CODEC_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace cleave::common {

// How a frame's payload represents the values. The numbers are part of the wire format.
enum class Codec : uint8_t {
  kRaw = 0,             // the tensor's own bytes, any dtype, bit-exact
  kFloat16 = 1,         // float32 rounded to IEEE half (nearest even)
  kBFloat16 = 2,        // float32 rounded to bfloat16 (nearest even)
  kInt8 = 3,            // x ~ min + q * scale, q in 0..255, one (min, scale) per tensor
  kInt8PerChannel = 4,  // the same with one (min, scale) per channel (dimension 1)
  kInt4 = 5,            // q in 0..15, one (min, scale) per tensor, two values per byte
};

// Names used on command lines and in manifests: raw, fp16, bf16, int8, int8-channel, int4.
[[nodiscard]] absl::StatusOr<Codec> ParseCodec(absl::string_view name);
[[nodiscard]] const char* CodecName(Codec codec);

// "int8", "int8+zstd1", "int8+zstd-3": how tables and logs name a codec and its zstd level.
[[nodiscard]] std::string CodecLabel(Codec codec, int zstd_level);
// True for the codecs whose values are rounded to a grid (int8, int8-channel, int4).
[[nodiscard]] bool IsAffineCodec(Codec codec);

// A calibrated clipping range: values outside are clamped before quantization, which is what
// keeps 8 bits and below accurate on activations with rare outliers.
struct ClipRange {
  float min = 0.0f;
  float max = 0.0f;
  friend bool operator==(const ClipRange& a, const ClipRange& b) {
    return a.min == b.min && a.max == b.max;
  }
};

// zstd levels a CodecSpec may name: negative ones are zstd's fast modes (less compression,
// several times the speed), 0 is no zstd.
inline constexpr int kMinZstdLevel = -7;
inline constexpr int kMaxZstdLevel = 19;

struct CodecSpec {
  Codec codec = Codec::kRaw;
  // 0 stores the payload as is; 1..19 compresses it with zstd at that level, -7..-1 with
  // zstd's fast modes.
  int zstd_level = 0;
  // Affine codecs only. Empty: the range is each frame's own min and max (dynamic). One range
  // for kInt8 / kInt4; one per channel for kInt8PerChannel.
  std::vector<ClipRange> ranges;
};

// What a frame's fixed header takes (rank 2 to 4, no codec parameters): what a size estimate
// adds to a payload.
inline constexpr double kFrameHeaderBytes = 64;

// Bytes a frame of `elements` float32 values takes with `spec`, before any is encoded: the
// codec's symbols plus a header, and a guess at what zstd saves (40%). For the planner's and
// the device's estimates until a real frame has been measured.
[[nodiscard]] double EstimateFrameBytes(double elements, const CodecSpec& spec);

// Element types a frame carries. The numbers are part of the wire format.
enum class FrameDtype : uint8_t {
  kFloat32 = 1,
  kFloat16 = 2,
  kBFloat16 = 3,
  kFloat64 = 4,
  kInt64 = 5,
  kInt32 = 6,
  kInt16 = 7,
  kInt8 = 8,
  kUInt8 = 9,
  kBool = 10,
};

// Size in bytes of one element, or 0 for an unknown code.
[[nodiscard]] size_t FrameDtypeSize(FrameDtype dtype);

// Contiguous row-major values to encode.
struct TensorView {
  const void* data = nullptr;
  FrameDtype dtype = FrameDtype::kFloat32;
  std::vector<int64_t> shape;
};

// Bounds a decoder enforces before allocating anything, so a hostile frame cannot make it
// allocate or read more than the caller allows.
struct DecodeLimits {
  uint64_t max_elements = uint64_t{1} << 28;  // 1 GiB of fp32
  uint32_t max_rank = 8;
};

// Encodes `values` with `spec`. INVALID_ARGUMENT when the codec cannot carry the dtype (only
// raw carries non-float32 tensors), when ranges do not fit the codec or the channel count, or
// when a dynamic affine range would be infinite.
[[nodiscard]] absl::StatusOr<std::string> EncodeFrameBytes(const TensorView& values,
                                                           const CodecSpec& spec);

// A validated frame whose payload has not been decoded yet.
struct ParsedFrame {
  Codec codec = Codec::kRaw;
  bool zstd = false;
  FrameDtype dtype = FrameDtype::kFloat32;  // the decoded element type
  std::vector<int64_t> shape;
  uint64_t elements = 0;
  uint8_t channel_axis = 0;
  std::vector<float> params;  // (min, scale) pairs for affine codecs
  uint64_t symbol_bytes = 0;  // payload size before compression
  absl::string_view payload;  // points into the frame passed to ParseFrame
};

// Checks every header field and size against `limits`, but not the checksum: what a server
// reads on its transport thread to admit a request (its declared shape and decoded size)
// before the frame is checksummed, decompressed or allocated for. Never reads outside `frame`;
// INVALID_ARGUMENT naming the first problem.
[[nodiscard]] absl::StatusOr<ParsedFrame> ParseFrameHeader(absl::string_view frame,
                                                           const DecodeLimits& limits = {});

// ParseFrameHeader and the checksum: a frame that passes may be decoded.
[[nodiscard]] absl::StatusOr<ParsedFrame> ParseFrame(absl::string_view frame,
                                                     const DecodeLimits& limits = {});

// The CRC-32 a frame's header must carry: zlib's CRC-32 over bytes [0, 12) and [16, end).
// REQUIRES: frame.size() >= 16. For tools that edit frames (and the fuzzer, which re-seals
// its inputs to get past the checksum).
[[nodiscard]] uint32_t FrameChecksum(absl::string_view frame);

// Decodes the payload of `frame` into `out`, which must hold frame.elements elements of
// frame.dtype. INVALID_ARGUMENT when a compressed payload is corrupt.
[[nodiscard]] absl::Status DecodePayload(const ParsedFrame& frame, void* out);

}  // namespace cleave::common

#endif  // CLEAVE_COMMON_FRAME_CODEC_H_
