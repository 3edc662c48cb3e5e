// libFuzzer target: bytes as manifest.json through BundleManifest::FromJson and Validate. A
// manifest that parses must survive its canonical round trip (ToJson, FromJson again, the same
// bytes), so what a loader accepts is exactly what it would write.
#include <cstdint>
#include <string>

#include "cleave/common/files.h"
#include "cleave/common/manifest.h"
#include "tests/fuzz/targets/fuzz_support.h"

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  auto manifest = cleave::common::ReadFile(cleave::fuzz::ResidualBundleDir() + "/manifest.json");
  if (manifest.ok()) cleave::fuzz::AddSeed("manifest.json", *manifest);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string json(reinterpret_cast<const char*>(data), size);
  auto manifest = cleave::common::BundleManifest::FromJson(json, "fuzz");
  if (!manifest.ok()) return 0;
  (void)manifest->Validate();
  (void)manifest->Files();
  (void)manifest->DescribeResumableCuts();
  const std::string canonical = manifest->ToJson();
  auto again = cleave::common::BundleManifest::FromJson(canonical, "fuzz canonical");
  if (!again.ok() || again->ToJson() != canonical) __builtin_trap();
  return 0;
}
