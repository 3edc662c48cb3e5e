// One file for the whole wire format of a frame (header, every codec's encode and decode,
// zstd, the checksum), longer than 500 lines on purpose: the frame fuzzer compiles exactly this
// file (tests/fuzz), and docs/FRAME_FORMAT.md can be checked against one place.
#include "cleave/common/frame_codec.h"

#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "frames are little-endian; a big-endian port must byte-swap here");

namespace cleave::common {
namespace {

constexpr char kMagic[4] = {'C', 'L', 'V', 'F'};
constexpr uint8_t kVersion = 1;
constexpr size_t kFixedHeaderBytes = 32;
constexpr size_t kChecksumOffset = 12;
constexpr uint8_t kNoCompression = 0;
constexpr uint8_t kZstd = 1;

constexpr std::array<std::pair<const char*, Codec>, 6> kCodecNames = {{
    {"raw", Codec::kRaw},
    {"fp16", Codec::kFloat16},
    {"bf16", Codec::kBFloat16},
    {"int8", Codec::kInt8},
    {"int8-channel", Codec::kInt8PerChannel},
    {"int4", Codec::kInt4},
}};

// ---- Header access ------------------------------------------------------------------------

template <typename T>
void Put(char* out, T value) {
  std::memcpy(out, &value, sizeof(T));
}

template <typename T>
T Get(absl::string_view in, size_t offset) {
  T value;
  std::memcpy(&value, in.data() + offset, sizeof(T));
  return value;
}

absl::Status FrameError(absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("bad tensor frame: ", what));
}

// ---- Symbol sizes ---------------------------------------------------------------------------

// Bytes of the codec's symbols for `elements` values of `dtype` (before compression).
uint64_t SymbolBytes(Codec codec, FrameDtype dtype, uint64_t elements) {
  switch (codec) {
    case Codec::kRaw:
      return elements * FrameDtypeSize(dtype);
    case Codec::kFloat16:
    case Codec::kBFloat16:
      return elements * 2;
    case Codec::kInt8:
    case Codec::kInt8PerChannel:
      return elements;
    case Codec::kInt4:
      return (elements + 1) / 2;
  }
  return 0;
}

int Levels(Codec codec) { return codec == Codec::kInt4 ? 15 : 255; }

// ---- Half and bfloat16 ----------------------------------------------------------------------

uint32_t Bits(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, 4);
  return bits;
}

float FromBits(uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, 4);
  return value;
}

// IEEE binary16, round to nearest even, overflow to infinity, NaN kept (branch-light: the
// common normal path is a couple of integer operations).
uint16_t FloatToHalf(float value) {
  const uint32_t bits = Bits(value);
  const uint32_t sign = (bits >> 16) & 0x8000u;
  const uint32_t magnitude = bits & 0x7fffffffu;
  if (magnitude >= 0x7f800000u) {  // inf or NaN
    return static_cast<uint16_t>(sign | 0x7c00u | (magnitude > 0x7f800000u ? 0x200u : 0u));
  }
  if (magnitude >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // overflow
  if (magnitude < 0x38800000u) {  // subnormal half (or zero): let the FPU round
    const float shifted = FromBits(magnitude) + 0.5f;  // 0.5 = 2^-1: aligns 2^-24 to 1 ulp
    return static_cast<uint16_t>(sign | (Bits(shifted) - 0x3f000000u));
  }
  const uint32_t odd = (magnitude >> 13) & 1u;
  const uint32_t rounded = magnitude + 0xc8000fffu + odd;  // rebias exponent, round
  return static_cast<uint16_t>(sign | (rounded >> 13));
}

float HalfToFloat(uint16_t half) {
  const uint32_t sign = static_cast<uint32_t>(half & 0x8000u) << 16;
  const uint32_t exponent = (half >> 10) & 0x1fu;
  const uint32_t mantissa = half & 0x3ffu;
  if (exponent == 0x1f) return FromBits(sign | 0x7f800000u | (mantissa << 13));
  if (exponent == 0) {  // zero or subnormal: mantissa * 2^-24
    const float value = static_cast<float>(mantissa) * 5.9604644775390625e-8f;
    return sign ? -value : value;
  }
  return FromBits(sign | ((exponent + 112) << 23) | (mantissa << 13));
}

uint16_t FloatToBFloat16(float value) {
  const uint32_t bits = Bits(value);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40u);
  return static_cast<uint16_t>((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

float BFloat16ToFloat(uint16_t value) { return FromBits(static_cast<uint32_t>(value) << 16); }

// ---- Affine quantization -------------------------------------------------------------------

// The (min, scale) of the grid min + q * scale, q in 0..levels, for the range [lo, hi].
std::pair<float, float> Grid(float lo, float hi, int levels) {
  const float scale = hi > lo ? (hi - lo) / static_cast<float>(levels) : 1.0f;
  return {lo, scale};
}

// Dynamic range of `count` values; non-finite ranges (inf inputs) are reported by the caller.
void MinMax(const float* values, size_t count, float* lo, float* hi) {
  float low = std::numeric_limits<float>::infinity();
  float high = -std::numeric_limits<float>::infinity();
  for (size_t i = 0; i < count; ++i) {
    low = values[i] < low ? values[i] : low;  // NaN never wins a comparison
    high = values[i] > high ? values[i] : high;
  }
  *lo = low;
  *hi = high;
}

// q = round((clamp(x) - min) / scale). Written so GCC vectorizes it; NaN clamps to min.
inline uint8_t Quantize(float x, float lo, float hi, float inverse_scale) {
  const float clamped = x > lo ? (x < hi ? x : hi) : lo;
  return static_cast<uint8_t>((clamped - lo) * inverse_scale + 0.5f);
}

void QuantizeBlock(const float* values, size_t count, float lo, float hi, float scale,
                   uint8_t* out) {
  const float inverse = 1.0f / scale;
  for (size_t i = 0; i < count; ++i) out[i] = Quantize(values[i], lo, hi, inverse);
}

void QuantizeBlock4(const float* values, size_t count, float lo, float hi, float scale,
                    uint8_t* out) {
  const float inverse = 1.0f / scale;
  const size_t pairs = count / 2;
  for (size_t i = 0; i < pairs; ++i) {
    out[i] = static_cast<uint8_t>(Quantize(values[2 * i], lo, hi, inverse) |
                                  (Quantize(values[2 * i + 1], lo, hi, inverse) << 4));
  }
  if (count % 2) out[pairs] = Quantize(values[count - 1], lo, hi, inverse);
}

void DequantizeBlock(const uint8_t* symbols, size_t count, float lo, float scale, float* out) {
  for (size_t i = 0; i < count; ++i) out[i] = lo + static_cast<float>(symbols[i]) * scale;
}

void DequantizeBlock4(const uint8_t* symbols, size_t count, float lo, float scale, float* out) {
  const size_t pairs = count / 2;
  for (size_t i = 0; i < pairs; ++i) {
    out[2 * i] = lo + static_cast<float>(symbols[i] & 0x0f) * scale;
    out[2 * i + 1] = lo + static_cast<float>(symbols[i] >> 4) * scale;
  }
  if (count % 2) out[count - 1] = lo + static_cast<float>(symbols[pairs] & 0x0f) * scale;
}

// Channel layout of an [N, C, ...] tensor for per-channel codecs.
struct ChannelLayout {
  uint64_t outer = 1;     // N
  uint64_t channels = 1;  // C
  uint64_t inner = 1;     // product of the remaining dimensions
};

ChannelLayout LayoutOf(const std::vector<int64_t>& shape, size_t axis) {
  ChannelLayout layout;
  for (size_t d = 0; d < shape.size(); ++d) {
    const auto dim = static_cast<uint64_t>(shape[d]);
    if (d < axis) layout.outer *= dim;
    if (d == axis) layout.channels = dim;
    if (d > axis) layout.inner *= dim;
  }
  return layout;
}

// ---- zstd with per-thread contexts -----------------------------------------------------------

struct ZstdContexts {
  std::unique_ptr<ZSTD_CCtx, size_t (*)(ZSTD_CCtx*)> compress{ZSTD_createCCtx(), ZSTD_freeCCtx};
  std::unique_ptr<ZSTD_DCtx, size_t (*)(ZSTD_DCtx*)> decompress{ZSTD_createDCtx(), ZSTD_freeDCtx};
};

ZstdContexts& ThreadZstd() {
  thread_local ZstdContexts contexts;
  return contexts;
}

// ---- Encoding -------------------------------------------------------------------------------

// Computes the affine parameters ((min, scale) pairs) for `values`.
absl::StatusOr<std::vector<float>> AffineParams(const float* values, const TensorView& view,
                                                const CodecSpec& spec, uint64_t elements) {
  const int levels = Levels(spec.codec);
  std::vector<float> params;
  auto add = [&](float lo, float hi) -> absl::Status {
    if (!std::isfinite(lo) || !std::isfinite(hi)) {
      if (lo > hi) {  // no finite values at all (empty, or all NaN): any grid will do
        lo = hi = 0.0f;
      } else {
        return absl::InvalidArgumentError(absl::StrCat(CodecName(spec.codec),
                                                       " codec: tensor holds infinite values; ",
                                                       "calibrate a clip range to quantize it"));
      }
    }
    auto [min, scale] = Grid(lo, hi, levels);
    params.push_back(min);
    params.push_back(scale);
    return absl::OkStatus();
  };
  if (spec.codec != Codec::kInt8PerChannel) {
    if (spec.ranges.size() > 1) {
      return absl::InvalidArgumentError(
          absl::StrCat(CodecName(spec.codec), " takes one clip range, got ", spec.ranges.size()));
    }
    float lo, hi;
    if (spec.ranges.empty()) {
      MinMax(values, elements, &lo, &hi);
    } else {
      lo = spec.ranges[0].min;
      hi = spec.ranges[0].max;
      if (!(lo <= hi)) return absl::InvalidArgumentError("clip range min exceeds max");
    }
    if (absl::Status status = add(lo, hi); !status.ok()) return status;
    return params;
  }
  const ChannelLayout layout = LayoutOf(view.shape, 1);
  if (!spec.ranges.empty() && spec.ranges.size() != layout.channels) {
    return absl::InvalidArgumentError(absl::StrCat(
        "int8-channel: ", spec.ranges.size(), " clip ranges for ", layout.channels, " channels"));
  }
  for (uint64_t c = 0; c < layout.channels; ++c) {
    float lo = std::numeric_limits<float>::infinity(), hi = -lo;
    if (!spec.ranges.empty()) {
      lo = spec.ranges[c].min;
      hi = spec.ranges[c].max;
      if (!(lo <= hi)) return absl::InvalidArgumentError("clip range min exceeds max");
    } else {
      for (uint64_t n = 0; n < layout.outer; ++n) {
        float block_lo, block_hi;
        MinMax(values + (n * layout.channels + c) * layout.inner, layout.inner, &block_lo,
               &block_hi);
        lo = std::min(lo, block_lo);
        hi = std::max(hi, block_hi);
      }
    }
    if (absl::Status status = add(lo, hi); !status.ok()) return status;
  }
  return params;
}

// Writes the codec's symbols for `values` into `out` (SymbolBytes long).
void WriteSymbols(const TensorView& view, Codec codec, const std::vector<float>& params,
                  uint64_t elements, char* out) {
  const auto* floats = static_cast<const float*>(view.data);
  auto* bytes = reinterpret_cast<uint8_t*>(out);
  switch (codec) {
    case Codec::kRaw:
      if (elements > 0) std::memcpy(out, view.data, elements * FrameDtypeSize(view.dtype));
      return;
    case Codec::kFloat16:
    case Codec::kBFloat16: {
      auto* halves = reinterpret_cast<uint16_t*>(out);
      for (uint64_t i = 0; i < elements; ++i) {
        const uint16_t half =
            codec == Codec::kFloat16 ? FloatToHalf(floats[i]) : FloatToBFloat16(floats[i]);
        std::memcpy(halves + i, &half, 2);
      }
      return;
    }
    case Codec::kInt8: {
      const float lo = params[0], scale = params[1];
      QuantizeBlock(floats, elements, lo, lo + scale * 255.0f, scale, bytes);
      return;
    }
    case Codec::kInt4: {
      const float lo = params[0], scale = params[1];
      QuantizeBlock4(floats, elements, lo, lo + scale * 15.0f, scale, bytes);
      return;
    }
    case Codec::kInt8PerChannel: {
      const ChannelLayout layout = LayoutOf(view.shape, 1);
      for (uint64_t n = 0; n < layout.outer; ++n) {
        for (uint64_t c = 0; c < layout.channels; ++c) {
          const uint64_t offset = (n * layout.channels + c) * layout.inner;
          const float lo = params[2 * c], scale = params[2 * c + 1];
          QuantizeBlock(floats + offset, layout.inner, lo, lo + scale * 255.0f, scale,
                        bytes + offset);
        }
      }
      return;
    }
  }
}

}  // namespace

uint32_t FrameChecksum(absl::string_view frame) {
  uLong crc = crc32(0L, Z_NULL, 0);
  crc = crc32(crc, reinterpret_cast<const Bytef*>(frame.data()), kChecksumOffset);
  const size_t rest = kChecksumOffset + 4;
  // zlib takes uInt lengths; feed large frames in pieces.
  for (size_t offset = rest; offset < frame.size();) {
    const size_t piece = std::min<size_t>(frame.size() - offset, size_t{1} << 30);
    crc =
        crc32(crc, reinterpret_cast<const Bytef*>(frame.data() + offset), static_cast<uInt>(piece));
    offset += piece;
  }
  return static_cast<uint32_t>(crc);
}

absl::StatusOr<Codec> ParseCodec(absl::string_view name) {
  for (const auto& [known, codec] : kCodecNames) {
    if (name == known) return codec;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown codec '", name, "': expected raw, fp16, bf16, int8, int8-channel or int4"));
}

const char* CodecName(Codec codec) {
  for (const auto& [name, known] : kCodecNames) {
    if (known == codec) return name;
  }
  return "unknown";
}

bool IsAffineCodec(Codec codec) {
  return codec == Codec::kInt8 || codec == Codec::kInt8PerChannel || codec == Codec::kInt4;
}

size_t FrameDtypeSize(FrameDtype dtype) {
  switch (dtype) {
    case FrameDtype::kFloat64:
    case FrameDtype::kInt64:
      return 8;
    case FrameDtype::kFloat32:
    case FrameDtype::kInt32:
      return 4;
    case FrameDtype::kFloat16:
    case FrameDtype::kBFloat16:
    case FrameDtype::kInt16:
      return 2;
    case FrameDtype::kInt8:
    case FrameDtype::kUInt8:
    case FrameDtype::kBool:
      return 1;
  }
  return 0;
}

std::string CodecLabel(Codec codec, int zstd_level) {
  return zstd_level == 0 ? std::string(CodecName(codec))
                         : absl::StrCat(CodecName(codec), "+zstd", zstd_level);
}

double EstimateFrameBytes(double elements, const CodecSpec& spec) {
  double per_element = 4.0;
  switch (spec.codec) {
    case Codec::kRaw:
      per_element = 4.0;
      break;
    case Codec::kFloat16:
    case Codec::kBFloat16:
      per_element = 2.0;
      break;
    case Codec::kInt8:
    case Codec::kInt8PerChannel:
      per_element = 1.0;
      break;
    case Codec::kInt4:
      per_element = 0.5;
      break;
  }
  return kFrameHeaderBytes + elements * per_element * (spec.zstd_level != 0 ? 0.6 : 1.0);
}

absl::StatusOr<std::string> EncodeFrameBytes(const TensorView& view, const CodecSpec& spec) {
  if (FrameDtypeSize(view.dtype) == 0) return absl::InvalidArgumentError("unknown dtype");
  if (view.shape.size() > 255) return absl::InvalidArgumentError("cannot encode rank > 255");
  if (spec.zstd_level < kMinZstdLevel || spec.zstd_level > kMaxZstdLevel) {
    return absl::InvalidArgumentError(absl::StrCat("zstd level ", spec.zstd_level, " out of range ",
                                                   kMinZstdLevel, "..", kMaxZstdLevel));
  }
  if (spec.codec != Codec::kRaw && view.dtype != FrameDtype::kFloat32) {
    return absl::InvalidArgumentError(
        absl::StrCat("codec ", CodecName(spec.codec), " encodes float32 tensors only"));
  }
  if (!IsAffineCodec(spec.codec) && !spec.ranges.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("codec ", CodecName(spec.codec), " takes no clip range"));
  }
  if (spec.codec == Codec::kInt8PerChannel && view.shape.size() < 2) {
    return absl::InvalidArgumentError("int8-channel needs a tensor of rank >= 2 ([N, C, ...])");
  }
  uint64_t elements = 1;
  for (int64_t dim : view.shape) {
    if (dim < 0) return absl::InvalidArgumentError("negative dimension");
    elements *= static_cast<uint64_t>(dim);
  }
  std::vector<float> params;
  if (IsAffineCodec(spec.codec)) {
    auto computed = AffineParams(static_cast<const float*>(view.data), view, spec, elements);
    if (!computed.ok()) return computed.status();
    params = *std::move(computed);
  }
  if (params.size() / 2 > 0xffff) return absl::InvalidArgumentError("too many channels");

  const uint64_t symbol_bytes = SymbolBytes(spec.codec, view.dtype, elements);
  const size_t prefix = kFixedHeaderBytes + 8 * view.shape.size() + 4 * params.size();
  const bool compress = spec.zstd_level != 0;
  std::string frame;
  if (compress) {
    thread_local std::string symbols;
    symbols.resize(symbol_bytes);
    WriteSymbols(view, spec.codec, params, elements, symbols.data());
    frame.resize(prefix + ZSTD_compressBound(symbol_bytes));
    ZSTD_CCtx* context = ThreadZstd().compress.get();
    const size_t written = ZSTD_compressCCtx(context, frame.data() + prefix, frame.size() - prefix,
                                             symbols.data(), symbol_bytes, spec.zstd_level);
    if (ZSTD_isError(written)) {
      return absl::InternalError(absl::StrCat("zstd: ", ZSTD_getErrorName(written)));
    }
    frame.resize(prefix + written);
  } else {
    frame.resize(prefix + symbol_bytes);
    WriteSymbols(view, spec.codec, params, elements, frame.data() + prefix);
  }

  char* header = frame.data();
  std::memcpy(header, kMagic, sizeof(kMagic));
  Put<uint8_t>(header + 4, kVersion);
  Put<uint8_t>(header + 5, static_cast<uint8_t>(spec.codec));
  Put<uint8_t>(header + 6, compress ? kZstd : kNoCompression);
  Put<uint8_t>(header + 7, static_cast<uint8_t>(view.dtype));
  Put<uint8_t>(header + 8, static_cast<uint8_t>(view.shape.size()));
  Put<uint8_t>(header + 9, spec.codec == Codec::kInt8PerChannel ? 1 : 0);
  Put<uint16_t>(header + 10, static_cast<uint16_t>(params.size()));
  Put<uint64_t>(header + 16, symbol_bytes);
  Put<uint64_t>(header + 24, frame.size() - prefix);
  for (size_t i = 0; i < view.shape.size(); ++i) {
    Put<int64_t>(header + kFixedHeaderBytes + 8 * i, view.shape[i]);
  }
  if (!params.empty()) {
    std::memcpy(header + kFixedHeaderBytes + 8 * view.shape.size(), params.data(),
                4 * params.size());
  }
  Put<uint32_t>(header + kChecksumOffset, FrameChecksum(frame));
  return frame;
}

absl::StatusOr<ParsedFrame> ParseFrameHeader(absl::string_view frame, const DecodeLimits& limits) {
  if (frame.size() < kFixedHeaderBytes) {
    return FrameError(absl::StrCat("truncated header: ", frame.size(), " bytes, need at least ",
                                   kFixedHeaderBytes));
  }
  if (std::memcmp(frame.data(), kMagic, sizeof(kMagic)) != 0) {
    return FrameError("wrong magic: not a cleave tensor frame");
  }
  ParsedFrame parsed;
  const auto version = Get<uint8_t>(frame, 4);
  if (version != kVersion) {
    return FrameError(
        absl::StrCat("unsupported version ", version, ", this build reads ", kVersion));
  }
  const auto codec = Get<uint8_t>(frame, 5);
  if (codec > static_cast<uint8_t>(Codec::kInt4)) {
    return FrameError(absl::StrCat("unknown codec ", codec));
  }
  parsed.codec = static_cast<Codec>(codec);
  const auto compression = Get<uint8_t>(frame, 6);
  if (compression > kZstd) return FrameError(absl::StrCat("unknown compression ", compression));
  parsed.zstd = compression == kZstd;
  const auto dtype = Get<uint8_t>(frame, 7);
  parsed.dtype = static_cast<FrameDtype>(dtype);
  if (FrameDtypeSize(parsed.dtype) == 0) {
    return FrameError(absl::StrCat("unknown dtype code ", dtype));
  }
  if (parsed.codec != Codec::kRaw && parsed.dtype != FrameDtype::kFloat32) {
    return FrameError(absl::StrCat("codec ", CodecName(parsed.codec), " decodes to float32 only"));
  }
  const auto rank = Get<uint8_t>(frame, 8);
  if (rank > limits.max_rank) {
    return FrameError(absl::StrCat("rank ", rank, " exceeds the limit ", limits.max_rank));
  }
  parsed.channel_axis = Get<uint8_t>(frame, 9);
  const auto param_count = Get<uint16_t>(frame, 10);
  const size_t prefix = kFixedHeaderBytes + 8 * size_t{rank} + 4 * size_t{param_count};
  if (frame.size() < prefix) {
    return FrameError(absl::StrCat("truncated header: ", frame.size(), " bytes, shape and ",
                                   "parameters need ", prefix));
  }
  parsed.symbol_bytes = Get<uint64_t>(frame, 16);
  const auto payload_bytes = Get<uint64_t>(frame, 24);
  if (payload_bytes != frame.size() - prefix) {
    return FrameError(absl::StrCat("payload size mismatch: header says ", payload_bytes,
                                   " bytes, frame carries ", frame.size() - prefix));
  }
  parsed.elements = 1;
  for (size_t i = 0; i < rank; ++i) {
    const auto dim = Get<int64_t>(frame, kFixedHeaderBytes + 8 * i);
    if (dim < 0) return FrameError(absl::StrCat("negative dimension ", dim));
    if (dim > 0 && parsed.elements > limits.max_elements / static_cast<uint64_t>(dim)) {
      return FrameError(
          absl::StrCat("shape exceeds the limit of ", limits.max_elements, " elements"));
    }
    parsed.elements *= static_cast<uint64_t>(dim);
    parsed.shape.push_back(dim);
  }
  if (parsed.elements > limits.max_elements) {
    return FrameError(
        absl::StrCat("shape exceeds the limit of ", limits.max_elements, " elements"));
  }
  // Parameters: none for raw/fp16/bf16; (min, scale) once, or per channel.
  size_t expected_params = 0;
  if (parsed.codec == Codec::kInt8 || parsed.codec == Codec::kInt4) expected_params = 2;
  if (parsed.codec == Codec::kInt8PerChannel) {
    if (rank < 2 || parsed.channel_axis != 1) {
      return FrameError("int8-channel needs rank >= 2 and channel axis 1");
    }
    expected_params = 2 * static_cast<size_t>(parsed.shape[1]);
  } else if (parsed.channel_axis != 0) {
    return FrameError(absl::StrCat("channel axis ", parsed.channel_axis, " set for codec ",
                                   CodecName(parsed.codec)));
  }
  if (param_count != expected_params) {
    return FrameError(absl::StrCat("codec ", CodecName(parsed.codec), " needs ", expected_params,
                                   " parameters, frame has ", param_count));
  }
  parsed.params.resize(param_count);
  if (param_count > 0) {
    std::memcpy(parsed.params.data(), frame.data() + kFixedHeaderBytes + 8 * size_t{rank},
                4 * size_t{param_count});
  }
  for (size_t i = 0; i < parsed.params.size(); i += 2) {
    if (!std::isfinite(parsed.params[i]) || !std::isfinite(parsed.params[i + 1]) ||
        parsed.params[i + 1] <= 0.0f) {
      return FrameError("quantization parameters must be finite with a positive scale");
    }
  }
  const uint64_t expected_symbols = SymbolBytes(parsed.codec, parsed.dtype, parsed.elements);
  if (parsed.symbol_bytes != expected_symbols) {
    return FrameError(absl::StrCat("size mismatch: ", parsed.elements, " values in codec ",
                                   CodecName(parsed.codec), " take ", expected_symbols,
                                   " bytes, header says ", parsed.symbol_bytes));
  }
  parsed.payload = frame.substr(prefix);
  if (!parsed.zstd && payload_bytes != parsed.symbol_bytes) {
    return FrameError(absl::StrCat("payload of ", payload_bytes, " bytes for ", parsed.symbol_bytes,
                                   " bytes of symbols"));
  }
  if (parsed.zstd && ZSTD_getFrameContentSize(parsed.payload.data(), parsed.payload.size()) !=
                         parsed.symbol_bytes) {
    return FrameError("zstd payload does not declare the size the header gives");
  }
  return parsed;
}

absl::StatusOr<ParsedFrame> ParseFrame(absl::string_view frame, const DecodeLimits& limits) {
  auto parsed = ParseFrameHeader(frame, limits);
  if (parsed.ok() && Get<uint32_t>(frame, kChecksumOffset) != FrameChecksum(frame)) {
    return FrameError("checksum mismatch: frame corrupted");
  }
  return parsed;
}

absl::Status DecodePayload(const ParsedFrame& frame, void* out) {
  // Symbols are decompressed straight into `out` when they are the values themselves (raw),
  // otherwise into a per-thread scratch buffer and expanded from there.
  const char* symbols = frame.payload.data();
  thread_local std::string scratch;
  if (frame.zstd) {
    char* target = static_cast<char*>(out);
    if (frame.codec != Codec::kRaw) {
      scratch.resize(frame.symbol_bytes);
      target = scratch.data();
    }
    const size_t written =
        ZSTD_decompressDCtx(ThreadZstd().decompress.get(), target, frame.symbol_bytes,
                            frame.payload.data(), frame.payload.size());
    if (ZSTD_isError(written) || written != frame.symbol_bytes) {
      return FrameError(absl::StrCat("zstd payload corrupt: ", ZSTD_isError(written)
                                                                   ? ZSTD_getErrorName(written)
                                                                   : "short output"));
    }
    if (frame.codec == Codec::kRaw) return absl::OkStatus();
    symbols = scratch.data();
  }
  auto* floats = static_cast<float*>(out);
  const auto* bytes = reinterpret_cast<const uint8_t*>(symbols);
  switch (frame.codec) {
    case Codec::kRaw:
      if (frame.symbol_bytes > 0) std::memcpy(out, symbols, frame.symbol_bytes);
      break;
    case Codec::kFloat16:
    case Codec::kBFloat16:
      for (uint64_t i = 0; i < frame.elements; ++i) {
        uint16_t half;
        std::memcpy(&half, symbols + 2 * i, 2);
        floats[i] = frame.codec == Codec::kFloat16 ? HalfToFloat(half) : BFloat16ToFloat(half);
      }
      break;
    case Codec::kInt8:
      DequantizeBlock(bytes, frame.elements, frame.params[0], frame.params[1], floats);
      break;
    case Codec::kInt4:
      DequantizeBlock4(bytes, frame.elements, frame.params[0], frame.params[1], floats);
      break;
    case Codec::kInt8PerChannel: {
      const ChannelLayout layout = LayoutOf(frame.shape, 1);
      for (uint64_t n = 0; n < layout.outer; ++n) {
        for (uint64_t c = 0; c < layout.channels; ++c) {
          const uint64_t offset = (n * layout.channels + c) * layout.inner;
          DequantizeBlock(bytes + offset, layout.inner, frame.params[2 * c],
                          frame.params[2 * c + 1], floats + offset);
        }
      }
      break;
    }
  }
  return absl::OkStatus();
}

}  // namespace cleave::common
