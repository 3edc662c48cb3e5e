// What the in-tree fuzz targets share: a real small bundle written once per process, and the
// seed corpus a target adds to when CLEAVE_FUZZ_SEED_DIR names its corpus folder (libFuzzer
// calls LLVMFuzzerInitialize before it reads the corpus).
#ifndef CLEAVE_TESTS_FUZZ_TARGETS_FUZZ_SUPPORT_H_
#define CLEAVE_TESTS_FUZZ_TARGETS_FUZZ_SUPPORT_H_

#include <string>

namespace cleave::fuzz {

// A folder holding bundles/residual/1: the residual test model split after "stem" and
// "block1" (written on first use, removed at exit).
const std::string& FuzzWorkDir();
// FuzzWorkDir()/bundles/residual/1.
std::string ResidualBundleDir();

// Writes `bytes` as seed `name` into the corpus folder CLEAVE_FUZZ_SEED_DIR, if set.
void AddSeed(const std::string& name, const std::string& bytes);

}  // namespace cleave::fuzz

#endif  // CLEAVE_TESTS_FUZZ_TARGETS_FUZZ_SUPPORT_H_
