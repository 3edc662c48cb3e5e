#include "tests/fuzz/targets/fuzz_support.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>

#include "tests/support/test_support.h"

namespace cleave::fuzz {

const std::string& FuzzWorkDir() {
  // Lives for the process: the fuzzer exits through exit(), which runs static destructors.
  static const std::unique_ptr<test::TempDir> dir = [] {
    auto made = std::make_unique<test::TempDir>();
    test::WriteTestBundle(test::ResidualModel(), made->path(), "bundles/residual/1",
                          {"stem", "block1"});
    return made;
  }();
  return dir->path();
}

std::string ResidualBundleDir() { return FuzzWorkDir() + "/bundles/residual/1"; }

void AddSeed(const std::string& name, const std::string& bytes) {
  const char* dir = std::getenv("CLEAVE_FUZZ_SEED_DIR");
  if (dir == nullptr) return;
  std::ofstream(std::filesystem::path(dir) / name, std::ios::binary) << bytes;
}

}  // namespace cleave::fuzz
