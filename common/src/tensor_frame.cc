#include "cleave/common/tensor_frame.h"

#include <ATen/ATen.h>
#include <zlib.h>
#include <zstd.h>

#include <array>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "cleave/common/tensor_spec.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "frames are little-endian; a big-endian port must byte-swap here");

namespace cleave::common {
namespace {

constexpr char kMagic[4] = {'C', 'L', 'V', 'F'};
constexpr uint8_t kVersion = 1;
constexpr size_t kFixedHeaderBytes = 32;
constexpr size_t kChecksumOffset = 12;

enum class Compression : uint8_t { kNone = 0, kZstd = 1 };

// Frame dtype codes. Fixed by the format; independent of c10::ScalarType's numbering.
constexpr std::array<std::pair<uint8_t, c10::ScalarType>, 10> kDtypeCodes = {{
    {1, c10::ScalarType::Float},
    {2, c10::ScalarType::Half},
    {3, c10::ScalarType::BFloat16},
    {4, c10::ScalarType::Double},
    {5, c10::ScalarType::Long},
    {6, c10::ScalarType::Int},
    {7, c10::ScalarType::Short},
    {8, c10::ScalarType::Char},
    {9, c10::ScalarType::Byte},
    {10, c10::ScalarType::Bool},
}};

uint8_t DtypeCode(c10::ScalarType dtype) {
  for (const auto& [code, candidate] : kDtypeCodes) {
    if (candidate == dtype) return code;
  }
  return 0;
}

template <typename T>
void Put(std::string& out, size_t offset, T value) {
  std::memcpy(out.data() + offset, &value, sizeof(T));
}

template <typename T>
T Get(absl::string_view in, size_t offset) {
  T value;
  std::memcpy(&value, in.data() + offset, sizeof(T));
  return value;
}

// CRC-32 of the whole frame except the 4 checksum bytes themselves.
uint32_t FrameChecksum(absl::string_view frame) {
  uLong crc = crc32(0L, Z_NULL, 0);
  crc = crc32(crc, reinterpret_cast<const Bytef*>(frame.data()), kChecksumOffset);
  const size_t rest = kChecksumOffset + 4;
  // zlib's crc32 takes a uInt length; frames above 4 GiB are rejected long before this.
  crc = crc32(crc, reinterpret_cast<const Bytef*>(frame.data() + rest),
              static_cast<uInt>(frame.size() - rest));
  return static_cast<uint32_t>(crc);
}

absl::Status FrameError(absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("bad tensor frame: ", what));
}

}  // namespace

absl::StatusOr<std::string> EncodeFrame(const at::Tensor& tensor, const CodecSpec& spec) {
  if (!tensor.defined()) return absl::InvalidArgumentError("cannot encode an undefined tensor");
  const uint8_t dtype_code = DtypeCode(tensor.scalar_type());
  if (dtype_code == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot encode a tensor of dtype ", c10::toString(tensor.scalar_type())));
  }
  if (tensor.dim() > 255) return absl::InvalidArgumentError("cannot encode rank > 255");
  if (spec.zstd_level < 0 || spec.zstd_level > ZSTD_maxCLevel()) {
    return absl::InvalidArgumentError(
        absl::StrCat("zstd level ", spec.zstd_level, " out of range 0..", ZSTD_maxCLevel()));
  }
  const at::Tensor contiguous = tensor.cpu().contiguous();
  const auto* raw = static_cast<const char*>(contiguous.data_ptr());
  const uint64_t raw_bytes = contiguous.numel() * contiguous.element_size();
  const size_t rank = static_cast<size_t>(contiguous.dim());
  const size_t prefix = kFixedHeaderBytes + 8 * rank;
  const bool compress = spec.zstd_level > 0;

  std::string frame(prefix + (compress ? ZSTD_compressBound(raw_bytes) : raw_bytes), '\0');
  uint64_t payload_bytes = raw_bytes;
  if (compress) {
    const size_t written = ZSTD_compress(frame.data() + prefix, frame.size() - prefix, raw,
                                         raw_bytes, spec.zstd_level);
    if (ZSTD_isError(written)) {
      return absl::InternalError(absl::StrCat("zstd: ", ZSTD_getErrorName(written)));
    }
    payload_bytes = written;
    frame.resize(prefix + written);
  } else if (raw_bytes > 0) {
    std::memcpy(frame.data() + prefix, raw, raw_bytes);
  }

  std::memcpy(frame.data(), kMagic, sizeof(kMagic));
  Put<uint8_t>(frame, 4, kVersion);
  Put<uint8_t>(frame, 5, static_cast<uint8_t>(spec.codec));
  Put<uint8_t>(frame, 6, static_cast<uint8_t>(compress ? Compression::kZstd : Compression::kNone));
  Put<uint8_t>(frame, 7, dtype_code);
  Put<uint8_t>(frame, 8, static_cast<uint8_t>(rank));
  Put<uint8_t>(frame, 9, 0);    // channel axis (per-channel codecs)
  Put<uint16_t>(frame, 10, 0);  // quantization parameter count
  Put<uint64_t>(frame, 16, raw_bytes);
  Put<uint64_t>(frame, 24, payload_bytes);
  for (size_t i = 0; i < rank; ++i)
    Put<int64_t>(frame, kFixedHeaderBytes + 8 * i, contiguous.size(i));
  Put<uint32_t>(frame, kChecksumOffset, FrameChecksum(frame));
  return frame;
}

absl::StatusOr<at::Tensor> DecodeFrame(absl::string_view frame, const DecodeLimits& limits) {
  if (frame.size() < kFixedHeaderBytes) {
    return FrameError(absl::StrCat("truncated header: ", frame.size(), " bytes, need at least ",
                                   kFixedHeaderBytes));
  }
  if (std::memcmp(frame.data(), kMagic, sizeof(kMagic)) != 0) {
    return FrameError("wrong magic: not a cleave tensor frame");
  }
  const auto version = Get<uint8_t>(frame, 4);
  if (version != kVersion) {
    return FrameError(
        absl::StrCat("unsupported version ", version, ", this build reads ", kVersion));
  }
  const auto codec = Get<uint8_t>(frame, 5);
  if (codec != static_cast<uint8_t>(Codec::kRaw)) {
    return FrameError(absl::StrCat("unknown codec ", codec));
  }
  const auto compression = Get<uint8_t>(frame, 6);
  if (compression > static_cast<uint8_t>(Compression::kZstd)) {
    return FrameError(absl::StrCat("unknown compression ", compression));
  }
  const auto dtype_code = Get<uint8_t>(frame, 7);
  c10::ScalarType dtype = c10::ScalarType::Undefined;
  for (const auto& [code, candidate] : kDtypeCodes) {
    if (code == dtype_code) dtype = candidate;
  }
  if (dtype == c10::ScalarType::Undefined) {
    return FrameError(absl::StrCat("unknown dtype code ", dtype_code));
  }
  const auto rank = Get<uint8_t>(frame, 8);
  if (rank > limits.max_rank) {
    return FrameError(absl::StrCat("rank ", rank, " exceeds the limit ", limits.max_rank));
  }
  if (Get<uint16_t>(frame, 10) != 0) return FrameError("raw codec takes no parameters");
  const size_t prefix = kFixedHeaderBytes + 8 * size_t{rank};
  if (frame.size() < prefix) {
    return FrameError(
        absl::StrCat("truncated shape: ", frame.size(), " bytes, header needs ", prefix));
  }
  const auto raw_bytes = Get<uint64_t>(frame, 16);
  const auto payload_bytes = Get<uint64_t>(frame, 24);
  if (payload_bytes != frame.size() - prefix) {
    return FrameError(absl::StrCat("payload size mismatch: header says ", payload_bytes,
                                   " bytes, frame carries ", frame.size() - prefix));
  }
  if (Get<uint32_t>(frame, kChecksumOffset) != FrameChecksum(frame)) {
    return FrameError("checksum mismatch: frame corrupted");
  }
  std::vector<int64_t> shape(rank);
  uint64_t elements = 1;
  for (size_t i = 0; i < rank; ++i) {
    shape[i] = Get<int64_t>(frame, kFixedHeaderBytes + 8 * i);
    if (shape[i] < 0) return FrameError(absl::StrCat("negative dimension ", shape[i]));
    if (shape[i] > 0 && elements > limits.max_elements / static_cast<uint64_t>(shape[i])) {
      return FrameError(absl::StrCat("shape ", FormatShape(shape), " exceeds the limit of ",
                                     limits.max_elements, " elements"));
    }
    elements *= static_cast<uint64_t>(shape[i]);
  }
  if (elements > limits.max_elements) {
    return FrameError(
        absl::StrCat("shape exceeds the limit of ", limits.max_elements, " elements"));
  }
  const uint64_t expected_raw = elements * c10::elementSize(dtype);
  if (raw_bytes != expected_raw) {
    return FrameError(absl::StrCat("size mismatch: shape ", FormatShape(shape), " of ",
                                   DtypeName(dtype), " needs ", expected_raw,
                                   " bytes, header says ", raw_bytes));
  }
  const char* payload = frame.data() + prefix;
  if (compression == static_cast<uint8_t>(Compression::kNone) && payload_bytes != raw_bytes) {
    return FrameError(
        absl::StrCat("payload of ", payload_bytes, " bytes for ", raw_bytes, " bytes of values"));
  }
  if (compression == static_cast<uint8_t>(Compression::kZstd)) {
    const unsigned long long content = ZSTD_getFrameContentSize(payload, payload_bytes);
    if (content != raw_bytes) {
      return FrameError("zstd payload does not declare the size the header gives");
    }
  }

  at::Tensor tensor = at::empty(shape, at::TensorOptions().dtype(dtype));
  if (raw_bytes == 0) return tensor;
  if (compression == static_cast<uint8_t>(Compression::kNone)) {
    std::memcpy(tensor.data_ptr(), payload, raw_bytes);
    return tensor;
  }
  const size_t written = ZSTD_decompress(tensor.data_ptr(), raw_bytes, payload, payload_bytes);
  if (ZSTD_isError(written) || written != raw_bytes) {
    return FrameError(absl::StrCat("zstd payload corrupt: ", ZSTD_isError(written)
                                                                 ? ZSTD_getErrorName(written)
                                                                 : "short output"));
  }
  return tensor;
}

}  // namespace cleave::common
