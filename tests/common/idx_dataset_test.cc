#include "cleave/common/idx_dataset.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>

#include "tests/support/test_support.h"

namespace cleave::common {
namespace {

using ::testing::HasSubstr;

std::string IdxBytes(std::vector<uint32_t> dims, size_t data_bytes, uint8_t type = 0x08) {
  std::string bytes = {0, 0, static_cast<char>(type), static_cast<char>(dims.size())};
  for (uint32_t dim : dims) {
    for (int shift = 24; shift >= 0; shift -= 8) bytes.push_back(static_cast<char>(dim >> shift));
  }
  for (size_t i = 0; i < data_bytes; ++i) bytes.push_back(static_cast<char>(i % 251));
  return bytes;
}

void Write(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

void WriteGzip(const std::string& path, const std::string& bytes) {
  gzFile file = gzopen(path.c_str(), "wb");
  gzwrite(file, bytes.data(), static_cast<unsigned>(bytes.size()));
  gzclose(file);
}

TEST(IdxDatasetTest, ReadsPlainAndGzipFiles) {
  test::TempDir dir;
  Write(dir.File("plain"), IdxBytes({2, 3, 4}, 24));
  WriteGzip(dir.File("packed.gz"), IdxBytes({2, 3, 4}, 24));
  for (const char* name : {"plain", "packed.gz"}) {
    auto tensor = ReadIdxFile(dir.File(name));
    ASSERT_TRUE(tensor.ok()) << tensor.status();
    EXPECT_EQ(tensor->sizes(), (std::vector<int64_t>{2, 3, 4}));
    EXPECT_EQ(tensor->flatten()[23].item<int>(), 23);
  }
}

TEST(IdxDatasetTest, RejectsBadMagic) {
  test::TempDir dir;
  Write(dir.File("f"), "\x01\x02\x08\x01" + std::string(8, 'x'));
  auto tensor = ReadIdxFile(dir.File("f"));
  ASSERT_FALSE(tensor.ok());
  EXPECT_THAT(std::string(tensor.status().message()), HasSubstr("bad magic"));
}

TEST(IdxDatasetTest, RejectsUnsupportedElementType) {
  test::TempDir dir;
  Write(dir.File("f"), IdxBytes({4}, 16, 0x0D));
  EXPECT_THAT(std::string(ReadIdxFile(dir.File("f")).status().message()),
              HasSubstr("not supported"));
}

TEST(IdxDatasetTest, RejectsTruncatedData) {
  test::TempDir dir;
  Write(dir.File("f"), IdxBytes({10, 28, 28}, 10 * 28 * 28 - 1));
  auto tensor = ReadIdxFile(dir.File("f"));
  ASSERT_FALSE(tensor.ok());
  EXPECT_THAT(std::string(tensor.status().message()), HasSubstr("truncated"));
}

TEST(IdxDatasetTest, RejectsTrailingData) {
  test::TempDir dir;
  Write(dir.File("f"), IdxBytes({4}, 5));
  EXPECT_THAT(std::string(ReadIdxFile(dir.File("f")).status().message()),
              HasSubstr("trailing bytes"));
}

TEST(IdxDatasetTest, RejectsTruncatedHeader) {
  test::TempDir dir;
  Write(dir.File("f"), std::string("\0\0\x08\x03\0\0", 6));
  EXPECT_THAT(std::string(ReadIdxFile(dir.File("f")).status().message()),
              HasSubstr("truncated IDX header"));
}

TEST(IdxDatasetTest, RejectsCorruptGzip) {
  test::TempDir dir;
  std::string bytes = IdxBytes({100}, 100);
  WriteGzip(dir.File("f.gz"), bytes);
  std::string packed;
  {
    std::ifstream in(dir.File("f.gz"), std::ios::binary);
    packed.assign(std::istreambuf_iterator<char>(in), {});
  }
  Write(dir.File("f.gz"), packed.substr(0, packed.size() / 2));
  EXPECT_FALSE(ReadIdxFile(dir.File("f.gz")).ok());
}

TEST(IdxDatasetTest, MissingFileIsNotFound) {
  EXPECT_EQ(ReadIdxFile("/nonexistent/file").status().code(), absl::StatusCode::kNotFound);
}

TEST(IdxDatasetTest, RejectsImageLabelCountMismatch) {
  test::TempDir dir;
  Write(dir.File("t10k-images-idx3-ubyte"), IdxBytes({5, 28, 28}, 5 * 28 * 28));
  Write(dir.File("t10k-labels-idx1-ubyte"), IdxBytes({4}, 4));
  auto data = LoadFashionMnist(dir.path(), "t10k");
  ASSERT_FALSE(data.ok());
  EXPECT_THAT(std::string(data.status().message()), HasSubstr("count mismatch"));
}

TEST(IdxDatasetTest, LoadsTheRealFashionMnistTestSet) {
  auto data = LoadFashionMnist(kFashionMnistDir, "t10k");
  ASSERT_TRUE(data.ok()) << data.status() << " (install dataset-fashion-mnist)";
  EXPECT_EQ(data->images.sizes(), (std::vector<int64_t>{10000, 1, 28, 28}));
  EXPECT_EQ(data->labels.size(0), 10000);
  EXPECT_GE(data->images.min().item<float>(), 0.0f);
  EXPECT_LE(data->images.max().item<float>(), 1.0f);
  // Fashion-MNIST's test set is balanced: 1000 images per class.
  EXPECT_TRUE(at::equal(at::bincount(data->labels), at::full({10}, 1000, at::kLong)));
  auto limited = LoadFashionMnist(kFashionMnistDir, "t10k", 100);
  ASSERT_TRUE(limited.ok());
  EXPECT_EQ(limited->labels.size(0), 100);
}

}  // namespace
}  // namespace cleave::common
