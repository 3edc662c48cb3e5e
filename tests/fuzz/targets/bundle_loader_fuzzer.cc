// libFuzzer target: the bundle loader on a real bundle folder whose manifest.json (first byte
// 0 mod 3), second segment file (1 mod 3: the manifest then carries its hash and size, so the
// loader reaches the TorchScript reader) or signatures.json (2 mod 3, loaded under a trust
// policy whose key signed the real manifest) is the fuzz input. The folder also holds a symlink
// to a file outside it and a subfolder, for manifests that name them. Bundle::Load (and Verify
// when it loads) must refuse, never crash or read outside the folder.
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "cleave/common/bundle.h"
#include "cleave/common/files.h"
#include "cleave/common/manifest.h"
#include "cleave/common/sha256.h"
#include "cleave/common/trust.h"
#include "tests/fuzz/targets/fuzz_support.h"

namespace {

namespace fs = std::filesystem;

// A copy of the real bundle the inputs are written into, and its own manifest.
struct Folder {
  Folder() : dir(cleave::fuzz::FuzzWorkDir() + "/loader") {
    fs::remove_all(dir);
    fs::copy(cleave::fuzz::ResidualBundleDir(), dir, fs::copy_options::recursive);
    std::ofstream(cleave::fuzz::FuzzWorkDir() + "/outside.pt") << "outside the bundle";
    fs::create_symlink(cleave::fuzz::FuzzWorkDir() + "/outside.pt", dir + "/link.pt");
    manifest = *cleave::common::ReadFile(dir + "/manifest.json");
    segment = *cleave::common::ReadFile(dir + "/segment_1.pt");
    // A signed copy without the symlink, and a policy trusting its key.
    fs::remove_all(signed_dir);
    fs::copy(cleave::fuzz::ResidualBundleDir(), signed_dir, fs::copy_options::recursive);
    auto parsed = cleave::common::BundleManifest::FromJson(manifest, "seed");
    parsed->expires = absl::Now() + absl::Hours(24 * 365);
    const std::string signed_manifest = parsed->ToJson();
    std::ofstream(signed_dir + "/manifest.json", std::ios::binary) << signed_manifest;
    const std::string keys = cleave::fuzz::FuzzWorkDir() + "/keys";
    fs::remove_all(keys);
    fs::create_directories(keys + "/trust");
    (void)cleave::common::GenerateSigningKey(keys + "/fuzz");
    fs::copy_file(keys + "/fuzz.pub", keys + "/trust/fuzz.pub");
    signatures = cleave::common::SignaturesToJson(
        {*cleave::common::SignManifest(signed_manifest, keys + "/fuzz.key")});
    trust = *cleave::common::TrustPolicy::Create({keys + "/trust", 1, "", absl::ZeroDuration()});
  }
  std::string dir, manifest, segment;
  std::string signed_dir = cleave::fuzz::FuzzWorkDir() + "/signed", signatures;
  std::shared_ptr<cleave::common::TrustPolicy> trust;
};

Folder& TheFolder() {
  static Folder* folder = new Folder();
  return *folder;
}

void Write(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  Folder& folder = TheFolder();
  cleave::fuzz::AddSeed("manifest", std::string(1, '\0') + folder.manifest);
  cleave::fuzz::AddSeed("segment", std::string(1, '\1') + folder.segment);
  cleave::fuzz::AddSeed("signatures", std::string(1, '\2') + folder.signatures);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  Folder& folder = TheFolder();
  const std::string input(reinterpret_cast<const char*>(data + 1), size - 1);
  if (data[0] % 3 == 2) {
    Write(folder.signed_dir + "/signatures.json", input);
    cleave::common::Bundle::LoadOptions load;
    load.trust = folder.trust;
    (void)cleave::common::Bundle::Load(folder.signed_dir, load);
    return 0;
  }
  std::string manifest = input;
  if (data[0] % 3 == 1) {
    // The fuzzed bytes as segment 1, named with their hash: past the hash check, into LibTorch.
    Write(folder.dir + "/segment_1.pt", input);
    auto parsed = cleave::common::BundleManifest::FromJson(folder.manifest, "seed");
    if (!parsed.ok()) return 0;
    parsed->segments.at(1).module.sha256 = cleave::common::Sha256Hex(input);
    parsed->segments.at(1).module.size = static_cast<int64_t>(input.size());
    manifest = parsed->ToJson();
  } else {
    Write(folder.dir + "/segment_1.pt", folder.segment);
  }
  Write(folder.dir + "/manifest.json", manifest);
  auto bundle = cleave::common::Bundle::Load(folder.dir);
  if (bundle.ok()) (void)(*bundle)->Verify();
  return 0;
}
