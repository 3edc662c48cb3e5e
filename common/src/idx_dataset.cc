#include "cleave/common/idx_dataset.h"

#include <ATen/ATen.h>
#include <zlib.h>

#include <filesystem>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "cleave/common/status_macros.h"

namespace cleave::common {
namespace {

constexpr uint8_t kUnsignedByteType = 0x08;

// Reads a whole file through zlib, which passes plain files through unchanged.
absl::StatusOr<std::string> ReadMaybeGzip(const std::string& path) {
  if (!std::filesystem::exists(path)) {
    return absl::NotFoundError(absl::StrCat("file not found: ", path));
  }
  std::unique_ptr<gzFile_s, int (*)(gzFile)> file(gzopen(path.c_str(), "rb"), gzclose);
  if (file == nullptr) return absl::PermissionDeniedError(absl::StrCat("cannot open ", path));
  std::string bytes;
  char buffer[1 << 16];
  while (true) {
    const int read = gzread(file.get(), buffer, sizeof(buffer));
    if (read < 0) {
      int code = 0;
      return absl::DataLossError(
          absl::StrCat(path, ": corrupt gzip data: ", gzerror(file.get(), &code)));
    }
    if (read == 0) break;
    bytes.append(buffer, static_cast<size_t>(read));
  }
  return bytes;
}

uint32_t BigEndian32(const std::string& bytes, size_t offset) {
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data() + offset);
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

// Returns "<dir>/<name>.gz" or "<dir>/<name>", whichever exists (the .gz one by default, so a
// missing file is reported under the name Debian installs).
std::string FindDataFile(const std::string& dir, const std::string& name) {
  const auto plain = std::filesystem::path(dir) / name;
  if (std::filesystem::exists(plain)) return plain.string();
  return plain.string() + ".gz";
}

}  // namespace

absl::StatusOr<at::Tensor> ReadIdxFile(const std::string& path) {
  CLEAVE_ASSIGN_OR_RETURN(std::string bytes, ReadMaybeGzip(path));
  if (bytes.size() < 4 || bytes[0] != 0 || bytes[1] != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": bad magic: not an IDX file (must start with two zero bytes)"));
  }
  const auto type = static_cast<uint8_t>(bytes[2]);
  const auto rank = static_cast<uint8_t>(bytes[3]);
  if (type != kUnsignedByteType) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": IDX element type 0x", absl::Hex(type),
                                                   " is not supported; only ",
                                                   "unsigned byte (0x08)"));
  }
  if (rank == 0 || rank > 4) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": IDX rank ", rank, " out of range 1..4"));
  }
  const size_t header = 4 + 4 * size_t{rank};
  if (bytes.size() < header) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": truncated IDX header"));
  }
  std::vector<int64_t> shape;
  uint64_t elements = 1;
  for (size_t i = 0; i < rank; ++i) {
    const uint32_t dim = BigEndian32(bytes, 4 + 4 * i);
    if (dim == 0 || dim > (1u << 28)) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": IDX dimension ", i, " is ", dim, ", out of range"));
    }
    shape.push_back(dim);
    elements *= dim;
  }
  if (bytes.size() - header != elements) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, bytes.size() - header < elements ? ": truncated" : ": trailing bytes",
        ": header promises ", elements, " bytes of data, file holds ", bytes.size() - header));
  }
  at::Tensor tensor = at::empty(shape, at::kByte);
  std::memcpy(tensor.data_ptr(), bytes.data() + header, elements);
  return tensor;
}

absl::StatusOr<LabeledImages> LoadFashionMnist(const std::string& dir, absl::string_view split,
                                               std::optional<int64_t> limit) {
  const std::string prefix(split);
  const std::string images_path = FindDataFile(dir, prefix + "-images-idx3-ubyte");
  const std::string labels_path = FindDataFile(dir, prefix + "-labels-idx1-ubyte");
  CLEAVE_ASSIGN_OR_RETURN(at::Tensor images, ReadIdxFile(images_path));
  CLEAVE_ASSIGN_OR_RETURN(at::Tensor labels, ReadIdxFile(labels_path));
  if (images.dim() != 3) {
    return absl::InvalidArgumentError(absl::StrCat(
        images_path, ": expected 3 dimensions (count, rows, columns), found ", images.dim()));
  }
  if (labels.dim() != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(labels_path, ": expected 1 dimension (count), found ", labels.dim()));
  }
  if (images.size(0) != labels.size(0)) {
    return absl::InvalidArgumentError(absl::StrCat("count mismatch: ", images_path, " holds ",
                                                   images.size(0), " images but ", labels_path,
                                                   " holds ", labels.size(0), " labels"));
  }
  if (limit.has_value() && *limit < images.size(0)) {
    images = images.slice(0, 0, *limit);
    labels = labels.slice(0, 0, *limit);
  }
  LabeledImages data;
  data.images = images.unsqueeze(1).to(at::kFloat).div_(255.0).contiguous();
  data.labels = labels.to(at::kLong).contiguous();
  return data;
}

}  // namespace cleave::common
