// Signed and encrypted bundles end to end: keys and signatures (OpenSSL, and the openssl
// command line as an independent checker), every refusal of a trust policy and every error of
// an encrypted bundle — each on its own, on the device runtime and on the edge's registry —
// rollback state that survives a restart, a hot reload that keeps the old version serving, and
// real cleave-edge and cleave processes.
#include "cleave/common/trust.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <functional>

#include "cleave/common/bundle.h"
#include "cleave/common/bundle_crypto.h"
#include "cleave/common/files.h"
#include "cleave/common/frame_codec.h"
#include "cleave/common/tensor_frame.h"
#include "cleave/device/runtime.h"
#include "cleave/edge_server/bundle_registry.h"
#include "cleave/partitioner/bundle_signing.h"
#include "tests/support/test_support.h"

namespace cleave {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

// Appends `bytes` to the file at `path`.
void Append(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::app) << bytes;
}

std::string Read(const std::string& path) {
  auto bytes = common::ReadFile(path);
  EXPECT_TRUE(bytes.ok()) << bytes.status();
  return bytes.ok() ? *bytes : std::string();
}

void Write(const std::string& path, const std::string& bytes) {
  ASSERT_TRUE(common::WriteFileAtomically(path, bytes).ok()) << path;
}

// One ResidualModel bundle written once per test binary; each test signs a fresh copy.
class TrustTest : public ::testing::Test {
 public:
  static void SetUpTestSuite() {
    source_ = new test::TempDir();
    test::WriteTestBundle(test::ResidualModel(), source_->path(), "bundle", {"stem", "block1"});
  }
  static void TearDownTestSuite() {
    delete source_;
    source_ = nullptr;
  }

  void SetUp() override {
    fs::create_directories(dir_.File("keys"));
    for (const char* name : {"alice", "bob", "carol"}) {
      auto keyid = common::GenerateSigningKey(dir_.File(std::string("keys/") + name));
      ASSERT_TRUE(keyid.ok()) << keyid.status();
    }
    fs::create_directories(dir_.File("trust"));
    Trust("alice");
    Trust("bob");
  }

  // Copies the bundle to `relative` (under the test folder) and returns its path.
  std::string CopyBundle(const std::string& relative) {
    const std::string target = dir_.File(relative);
    fs::create_directories(fs::path(target).parent_path());
    fs::copy(source_->File("bundle"), target, fs::copy_options::recursive);
    return target;
  }

  // Signs `bundle` with the named keys as `version`, valid for `validity` from now.
  void Sign(const std::string& bundle, const std::vector<std::string>& keys, uint64_t version = 1,
            absl::Duration validity = absl::Hours(24)) {
    partitioner::SignOptions options;
    for (const std::string& key : keys) options.key_files.push_back(KeyFile(key));
    options.version = version;
    options.expires = absl::Now() + validity;
    auto signed_bundle = partitioner::SignBundle(bundle, options);
    ASSERT_TRUE(signed_bundle.ok()) << signed_bundle.status();
  }

  std::string KeyFile(const std::string& name) { return dir_.File("keys/" + name + ".key"); }
  void Trust(const std::string& name, const std::string& as = "") {
    fs::copy_file(dir_.File("keys/" + name + ".pub"),
                  dir_.File("trust/" + (as.empty() ? name : as) + ".pub"),
                  fs::copy_options::overwrite_existing);
  }

  common::TrustOptions Options(int threshold = 1) {
    common::TrustOptions options;
    options.dir = dir_.File("trust");
    options.threshold = threshold;
    options.state_file = dir_.File("state/versions.json");
    fs::create_directories(dir_.File("state"));
    return options;
  }

  // A bundle key made for the test ("keys/NAME.aeskey").
  std::shared_ptr<const common::BundleKey> BundleKey(const std::string& name = "bundle") {
    const std::string path = dir_.File("keys/" + name + ".aeskey");
    auto key = fs::exists(path) ? common::BundleKey::Read(path) : common::BundleKey::Generate(path);
    EXPECT_TRUE(key.ok()) << key.status();
    return key.ok() ? *key : nullptr;
  }

  // Copies the bundle to `relative` and encrypts it with BundleKey().
  std::string EncryptedBundle(const std::string& relative) {
    const std::string bundle = CopyBundle(relative);
    auto encrypted = partitioner::EncryptBundle(bundle, *BundleKey());
    EXPECT_TRUE(encrypted.ok()) << encrypted.status();
    return bundle;
  }

  // The edge's registry over the test's bundles/ folder, loading under `options`' policy.
  std::unique_ptr<edge_server::BundleRegistry> TrustingRegistry(
      const common::TrustOptions& options) {
    auto policy = common::TrustPolicy::Create(options);
    EXPECT_TRUE(policy.ok()) << policy.status();
    if (!policy.ok()) return nullptr;
    common::Bundle::LoadOptions load;
    load.trust = *policy;
    auto registry = edge_server::BundleRegistry::LoadFrom(dir_.File("bundles"), load);
    EXPECT_TRUE(registry.ok()) << registry.status();
    return registry.ok() ? *std::move(registry) : nullptr;
  }

  // Loads `bundle` under `options`' policy and, as a device or edge activating it does,
  // accepts its version.
  absl::StatusOr<std::shared_ptr<const common::Bundle>> LoadTrusted(
      const std::string& bundle, const common::TrustOptions& options) {
    auto policy = common::TrustPolicy::Create(options);
    if (!policy.ok()) return policy.status();
    common::Bundle::LoadOptions load;
    load.trust = *policy;
    auto loaded = common::Bundle::Load(bundle, load);
    if (!loaded.ok()) return loaded;
    if (absl::Status accepted = (*policy)->Accept((*loaded)->manifest(), (*loaded)->id());
        !accepted.ok()) {
      return accepted;
    }
    return loaded;
  }

  test::TempDir dir_;

 private:
  static test::TempDir* source_;
};

test::TempDir* TrustTest::source_ = nullptr;

TEST_F(TrustTest, KeygenWritesAPrivateKeyOnlyItsOwnerReadsAndRefusesToOverwrite) {
  struct stat info {};
  ASSERT_EQ(stat(KeyFile("alice").c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0600u);
  EXPECT_THAT(Read(KeyFile("alice")), HasSubstr("-----BEGIN PRIVATE KEY-----"));
  EXPECT_THAT(Read(dir_.File("keys/alice.pub")), HasSubstr("-----BEGIN PUBLIC KEY-----"));
  const std::string before = Read(KeyFile("alice"));
  auto again = common::GenerateSigningKey(dir_.File("keys/alice"));
  EXPECT_EQ(again.status().code(), absl::StatusCode::kAlreadyExists) << again.status();
  EXPECT_EQ(Read(KeyFile("alice")), before);
}

TEST_F(TrustTest, ASigningKeyOthersCanReadIsRefused) {
  const std::string bundle = CopyBundle("b");
  fs::permissions(KeyFile("alice"), fs::perms::group_read, fs::perm_options::add);
  partitioner::SignOptions options;
  options.key_files = {KeyFile("alice")};
  options.expires = absl::Now() + absl::Hours(1);
  auto signed_bundle = partitioner::SignBundle(bundle, options);
  EXPECT_EQ(signed_bundle.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(signed_bundle.status().message(), HasSubstr("accessible to its group or others"));
  EXPECT_THAT(signed_bundle.status().message(), HasSubstr("chmod 600"));
}

TEST_F(TrustTest, ASignedBundleLoadsAndItsVersionIsRecorded) {
  const std::string bundle = CopyBundle("b");
  Sign(bundle, {"alice"}, 3);
  auto loaded = LoadTrusted(bundle, Options());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ((*loaded)->manifest().version, 3u);
  const std::string state = Read(dir_.File("state/versions.json"));
  EXPECT_THAT(state, HasSubstr("\"" + test::ReadManifest(bundle).name + "\""));
  EXPECT_THAT(state, HasSubstr("\"version\": 3"));
  EXPECT_THAT(state, HasSubstr((*loaded)->id()));
  // The same release is accepted again and changes nothing.
  const auto written = fs::last_write_time(dir_.File("state/versions.json"));
  EXPECT_TRUE(LoadTrusted(bundle, Options()).ok());
  EXPECT_EQ(fs::last_write_time(dir_.File("state/versions.json")), written);
  // Another bundle under the same version is not the same release.
  const std::string other = CopyBundle("other");
  Sign(other, {"alice"}, 3, absl::Hours(2));
  auto same_version = LoadTrusted(other, Options());
  EXPECT_EQ(same_version.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(same_version.status().message(),
              HasSubstr("is version 3 but not the version 3 already accepted"));
}

TEST_F(TrustTest, AVersionThatFailsTheEdgesOwnChecksIsNotRecordedAsAccepted) {
  const std::string bundle = CopyBundle("bundles/model/current");
  Sign(bundle, {"alice"}, 1);
  auto registry = TrustingRegistry(Options());
  ASSERT_NE(registry, nullptr);
  ASSERT_EQ(registry->List().size(), 1u);
  // Version 2, properly signed, but its stored output is not what its segments compute: the
  // edge's equivalence check refuses it after every trust check passed.
  auto manifest = common::BundleManifest::FromJson(Read(bundle + "/manifest.json"), "test");
  ASSERT_TRUE(manifest.ok());
  common::FileRef& output = manifest->verification.outputs.at(0);
  auto frame = common::EncodeFrame(at::full({1, 10}, 7.0f), common::CodecSpec{});
  ASSERT_TRUE(frame.ok());
  Write(bundle + "/" + output.file, *frame);
  output = common::FileRefFor(output.file, *frame);
  Write(bundle + "/manifest.json", manifest->ToJson());
  fs::remove(bundle + "/signatures.json");
  Sign(bundle, {"alice"}, 2);
  const auto changes = registry->Rescan();
  EXPECT_EQ(changes.refused, 1);
  ASSERT_EQ(changes.refusals.size(), 1u);
  EXPECT_THAT(changes.refusals.begin()->second, HasSubstr("do not reproduce the original model"));
  EXPECT_EQ(registry->List().at(0)->manifest().version, 1u);
  EXPECT_THAT(Read(dir_.File("state/versions.json")), HasSubstr("\"version\": 1"));
}

TEST_F(TrustTest, ResigningWithNewReleaseFieldsDropsTheSignaturesOfTheOldBytes) {
  const std::string bundle = CopyBundle("b");
  Sign(bundle, {"alice", "bob"}, 1);
  partitioner::SignOptions options;
  options.key_files = {KeyFile("alice")};
  options.version = 2;
  auto signed_bundle = partitioner::SignBundle(bundle, options);
  ASSERT_TRUE(signed_bundle.ok()) << signed_bundle.status();
  EXPECT_EQ(signed_bundle->dropped_signatures, 2u);
  EXPECT_EQ(signed_bundle->num_signatures, 1u);
  EXPECT_TRUE(LoadTrusted(bundle, Options(1)).ok());
  EXPECT_FALSE(LoadTrusted(bundle, Options(2)).ok());
  // Without new release fields a second signer adds to the first.
  Sign(bundle, {"bob"}, 2);
  EXPECT_TRUE(LoadTrusted(bundle, Options(2)).ok());
}

TEST_F(TrustTest, OneKeyUnderTwoNamesCountsOnce) {
  Trust("alice", "alice-again");
  auto policy = common::TrustPolicy::Create(Options(3));
  EXPECT_EQ(policy.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(policy.status().message(), HasSubstr("2 distinct keys"));
  auto two = common::TrustPolicy::Create(Options(2));
  ASSERT_TRUE(two.ok()) << two.status();
  EXPECT_EQ((*two)->num_keys(), 2u);
}

TEST_F(TrustTest, AMalformedTrustSetupIsAClearError) {
  EXPECT_EQ(common::TrustPolicy::Create({dir_.File("missing"), 1, "", {}}).status().code(),
            absl::StatusCode::kNotFound);
  Write(dir_.File("trust/broken.pub"), "-----BEGIN PUBLIC KEY-----\nAAAA\n");
  auto broken = common::TrustPolicy::Create(Options());
  EXPECT_THAT(broken.status().message(), HasSubstr("broken.pub is not an Ed25519 public key"));
  fs::remove(dir_.File("trust/broken.pub"));
  Write(dir_.File("state/versions.json"), "{\"format\": \"cleave.trust-state\", \"versions\": [");
  auto state = common::TrustPolicy::Create(Options());
  EXPECT_THAT(state.status().message(), HasSubstr("malformed trust state"));
}

TEST_F(TrustTest, ClockSlackAcceptsARecentlyExpiredBundle) {
  const std::string bundle = CopyBundle("b");
  Sign(bundle, {"alice"}, 1, -absl::Minutes(10));
  common::TrustOptions options = Options();
  EXPECT_THAT(LoadTrusted(bundle, options).status().message(), HasSubstr("expired at"));
  options.clock_slack = absl::Hours(1);
  EXPECT_TRUE(LoadTrusted(bundle, options).ok());
}

TEST_F(TrustTest, RollbackStateSurvivesARestart) {
  const std::string v2 = CopyBundle("v2"), v1 = CopyBundle("v1");
  Sign(v2, {"alice"}, 2);
  Sign(v1, {"alice"}, 1);
  ASSERT_TRUE(LoadTrusted(v2, Options()).ok());
  // A new policy (a restarted process) reads the state file.
  auto refused = LoadTrusted(v1, Options());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.status().message(),
              HasSubstr("version 1, older than version 2 already accepted (rollback refused)"));
}

TEST_F(TrustTest, WithoutATrustFolderEverythingLoadsAsBefore) {
  const std::string bundle = CopyBundle("b");
  EXPECT_TRUE(common::Bundle::Load(bundle).ok());
  Append(bundle + "/notes.txt", "not listed");
  EXPECT_TRUE(common::Bundle::Load(bundle).ok());
}

// ---- Every refusal, on its own, on the device and on the edge.

struct Refusal {
  std::string name;
  // Prepares the signed bundle at `dir` so that the policy refuses it.
  std::function<void(TrustTest&, const std::string& dir)> spoil;
  std::string message;  // a substring of the refusal
  absl::StatusCode code = absl::StatusCode::kFailedPrecondition;
  int threshold = 1;
};

enum class Where { kDevice, kEdge };

// "NameOnDevice" or "NameOnEdge" for a (case, where) test parameter.
template <typename Case>
std::string CaseName(const ::testing::TestParamInfo<std::tuple<Case, Where>>& info) {
  return std::get<0>(info.param).name +
         (std::get<1>(info.param) == Where::kDevice ? "OnDevice" : "OnEdge");
}

class RefusalTest : public TrustTest,
                    public ::testing::WithParamInterface<std::tuple<Refusal, Where>> {};

// Writes `json` as the bundle's manifest, signed by Alice alone: for manifests no writer of
// ours produces.
void WriteSignedManifest(TrustTest& test, const std::string& dir, const std::string& json) {
  Write(dir + "/manifest.json", json);
  auto signature = common::SignManifest(json, test.KeyFile("alice"));
  ASSERT_TRUE(signature.ok()) << signature.status();
  Write(dir + "/signatures.json", common::SignaturesToJson({*signature}));
}

std::vector<Refusal> Refusals() {
  auto manifest = [](const std::string& dir) { return dir + "/manifest.json"; };
  return {
      {"Unsigned", [](TrustTest&, const std::string& dir) { fs::remove(dir + "/signatures.json"); },
       "is not signed (no signatures.json)"},
      {"EmptySignatureList",
       [](TrustTest&, const std::string& dir) {
         Write(dir + "/signatures.json", "{\"signatures\": []}\n");
       },
       "lists no signature"},
      {"SignatureDoesNotVerify",
       [manifest](TrustTest&, const std::string& dir) {
         // One byte of the manifest changed after signing (its own hashes still hold).
         std::string text = Read(manifest(dir));
         const size_t at = text.find("\"rtol\"");
         text.replace(at, 6, "\"rtol\" ");
         Write(manifest(dir), text);
       },
       "do not verify (the manifest changed after signing?)"},
      {"UnknownKey",
       [](TrustTest& test, const std::string& dir) {
         fs::remove(dir + "/signatures.json");
         test.Sign(dir, {"carol"});
       },
       "signed by unknown key"},
      {"SameSignatureTwiceCountsOnce",
       [](TrustTest&, const std::string& dir) {
         auto signatures = common::ParseSignatures(Read(dir + "/signatures.json"), "test");
         ASSERT_TRUE(signatures.ok());
         // Alice's signature twice, Bob's not at all.
         signatures->resize(1);
         signatures->push_back(signatures->front());
         Write(dir + "/signatures.json", common::SignaturesToJson(*signatures));
       },
       "has 1 valid signature(s) by distinct trusted keys; 2 required",
       absl::StatusCode::kFailedPrecondition, 2},
      {"Expired",
       [](TrustTest& test, const std::string& dir) {
         test.Sign(dir, {"alice"}, 1, -absl::Hours(1));
       },
       "expired at"},
      {"NoExpiry",
       [manifest](TrustTest& test, const std::string& dir) {
         auto parsed = common::BundleManifest::FromJson(Read(manifest(dir)), "test");
         ASSERT_TRUE(parsed.ok());
         parsed->expires.reset();
         WriteSignedManifest(test, dir, parsed->ToJson());
       },
       "has no expiry"},
      {"Rollback",
       [](TrustTest& test, const std::string& dir) {
         // Version 5 of the same name was accepted before.
         const std::string newer = test.CopyBundle("newer");
         test.Sign(newer, {"alice"}, 5);
         ASSERT_TRUE(test.LoadTrusted(newer, test.Options()).ok());
         fs::remove_all(newer);
       },
       "older than version 5 already accepted (rollback refused)"},
      {"FileNotInTheManifest",
       [](TrustTest&, const std::string& dir) {
         Write(dir + "/verify/extra.pt", "a file nobody signed");
       },
       "holds verify/extra.pt, which its manifest does not list"},
      {"Symlink",
       [](TrustTest&, const std::string& dir) {
         const std::string frame = dir + "/verify/input_0.frame";
         fs::copy_file(frame, dir + "/../outside.frame", fs::copy_options::overwrite_existing);
         fs::remove(frame);
         fs::create_symlink(fs::absolute(dir + "/../outside.frame"), frame);
       },
       "holds a symlink, verify/input_0.frame"},
      {"PathLeavingTheFolder",
       [manifest](TrustTest& test, const std::string& dir) {
         auto parsed = common::BundleManifest::FromJson(Read(manifest(dir)), "test");
         ASSERT_TRUE(parsed.ok());
         // Written by hand: no writer of ours produces it, and parsing refuses it.
         std::string json = parsed->ToJson();
         const std::string file = parsed->segments[1].module.file;
         json.replace(json.find("\"" + file + "\""), file.size() + 2, "\"../" + file + "\"");
         WriteSignedManifest(test, dir, json);
       },
       "must not leave the bundle folder", absl::StatusCode::kInvalidArgument},
      {"SizeMismatch",
       [](TrustTest&, const std::string& dir) { Append(dir + "/segment_1.pt", "x"); },
       "bytes does not match the manifest's", absl::StatusCode::kDataLoss},
      {"HashMismatch",
       [](TrustTest&, const std::string& dir) {
         std::string bytes = Read(dir + "/segment_1.pt");
         bytes[bytes.size() / 2] ^= 1;
         Write(dir + "/segment_1.pt", bytes);
       },
       "does not match the manifest's", absl::StatusCode::kDataLoss},
      {"HashMismatchInAVerificationFrame",
       [](TrustTest&, const std::string& dir) {
         std::string bytes = Read(dir + "/verify/output_0.frame");
         bytes.back() ^= 1;
         Write(dir + "/verify/output_0.frame", bytes);
       },
       "does not match the manifest's", absl::StatusCode::kDataLoss},
  };
}

TEST_P(RefusalTest, IsRefusedWithItsOwnError) {
  const auto& [refusal, where] = GetParam();
  const std::string bundle = CopyBundle("bundles/model/1");
  Sign(bundle, {"alice", "bob"});
  refusal.spoil(*this, bundle);
  if (HasFatalFailure()) return;
  const common::TrustOptions options = Options(refusal.threshold);
  if (where == Where::kDevice) {
    device::RuntimeOptions runtime_options;
    runtime_options.trust = options;
    auto runtime = device::Runtime::Create(bundle, runtime_options);
    ASSERT_FALSE(runtime.ok());
    EXPECT_EQ(runtime.status().code(), refusal.code) << runtime.status();
    EXPECT_THAT(runtime.status().message(), HasSubstr(refusal.message));
  } else {
    auto registry = TrustingRegistry(options);
    ASSERT_NE(registry, nullptr);
    EXPECT_TRUE(registry->List().empty());
    const auto changes = registry->Rescan();
    EXPECT_EQ(changes.refused, 1);
    ASSERT_EQ(changes.refusals.size(), 1u);
    EXPECT_THAT(changes.refusals.begin()->second, HasSubstr(refusal.message));
  }
}

INSTANTIATE_TEST_SUITE_P(Trust, RefusalTest,
                         ::testing::Combine(::testing::ValuesIn(Refusals()),
                                            ::testing::Values(Where::kDevice, Where::kEdge)),
                         CaseName<Refusal>);

// ---- Encryption at rest.

TEST_F(TrustTest, AnEncryptedBundleHoldsNoPlaintextAndRunsWithItsKey) {
  const std::string plain = CopyBundle("plain");
  const std::string bundle = EncryptedBundle("bundles/model/1");
  const common::BundleManifest manifest = test::ReadManifest(bundle);
  EXPECT_EQ(manifest.encryption_key_id, BundleKey()->id());
  std::vector<std::string> sealed;
  for (const auto& segment : manifest.segments) sealed.push_back(segment.module.file);
  for (const std::string& file : sealed) {
    const std::string bytes = Read(bundle + "/" + file);
    const std::string plaintext = Read(plain + "/" + file);
    EXPECT_EQ(bytes.substr(0, 8), "CLVENC01") << file;
    EXPECT_EQ(bytes.size(), plaintext.size() + common::kSealOverhead);
    // Nothing of the TorchScript archive shows: neither its zip header nor its file names.
    EXPECT_EQ(bytes.find("PK\x03\x04"), std::string::npos) << file;
    EXPECT_EQ(bytes.find("constants.pkl"), std::string::npos) << file;
  }
  for (const auto& entry : fs::recursive_directory_iterator(dir_.File("bundles"))) {
    EXPECT_EQ(entry.path().filename().string().rfind('.', 0), std::string::npos)
        << "left behind: " << entry.path();
  }
  // The same segments, the same hashes: what the bundle computes did not change.
  EXPECT_EQ(manifest.segments[0].module.sha256,
            test::ReadManifest(plain).segments[0].module.sha256);
  device::RuntimeOptions options;
  options.bundle_key_file = BundleKey()->path();
  auto runtime = device::Runtime::Create(bundle, options);
  ASSERT_TRUE(runtime.ok()) << runtime.status();
  auto reference = device::Runtime::Create(plain, {});
  ASSERT_TRUE(reference.ok()) << reference.status();
  const at::Tensor input = at::rand({1, 3, 8, 8});
  auto result = (*runtime)->Infer(input);
  auto expected = (*reference)->Infer(input);
  ASSERT_TRUE(result.ok() && expected.ok());
  EXPECT_TRUE(at::equal(result->outputs[0], expected->outputs[0]));
  common::Bundle::LoadOptions load;
  load.key = BundleKey();
  load.measure_forward_memory = true;
  auto registry = edge_server::BundleRegistry::LoadFrom(dir_.File("bundles"), load);
  ASSERT_TRUE(registry.ok());
  EXPECT_EQ((*registry)->List().size(), 1u);
}

TEST_F(TrustTest, EncryptingTwiceOrWithoutSizesIsRefused) {
  const std::string bundle = EncryptedBundle("b");
  auto again = partitioner::EncryptBundle(bundle, *BundleKey());
  EXPECT_EQ(again.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(again.status().message(), HasSubstr("is encrypted"));
}

TEST_F(TrustTest, ABundleKeyOthersCanReadOrThatIsMalformedIsRefused) {
  const std::string path = BundleKey()->path();
  fs::permissions(path, fs::perms::others_read, fs::perm_options::add);
  auto readable = common::BundleKey::Read(path);
  EXPECT_EQ(readable.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(readable.status().message(), HasSubstr("accessible to its group or others"));
  const std::string bad = dir_.File("keys/bad.aeskey");
  ASSERT_TRUE(common::WriteNewFile(bad, "not a key\n", 0600).ok());
  EXPECT_THAT(common::BundleKey::Read(bad).status().message(), HasSubstr("64 hex digits"));
  EXPECT_EQ(common::BundleKey::Generate(bad).status().code(), absl::StatusCode::kAlreadyExists);
}

struct KeyProblem {
  std::string name;
  std::function<void(const std::string& dir)> spoil;  // on the encrypted bundle
  std::string key;                                    // "bundle", another key's name, or none
  std::string message;
  absl::StatusCode code;
};

class KeyProblemTest : public TrustTest,
                       public ::testing::WithParamInterface<std::tuple<KeyProblem, Where>> {};

std::vector<KeyProblem> KeyProblems() {
  auto none = [](const std::string&) {};
  return {
      {"NoKey", none, "", "is encrypted (key id", absl::StatusCode::kFailedPrecondition},
      {"WrongKey", none, "other", "is not the key bundle", absl::StatusCode::kFailedPrecondition},
      {"FlippedByte",
       [](const std::string& dir) {
         std::string bytes = Read(dir + "/segment_1.pt");
         bytes[bytes.size() / 2] ^= 1;
         Write(dir + "/segment_1.pt", bytes);
       },
       "bundle", "fails authentication", absl::StatusCode::kDataLoss},
      {"Truncated",
       [](const std::string& dir) {
         const std::string bytes = Read(dir + "/segment_1.pt");
         Write(dir + "/segment_1.pt", bytes.substr(0, bytes.size() - 100));
       },
       "bundle", "(truncated?)", absl::StatusCode::kDataLoss},
      {"SwappedFiles",
       [](const std::string& dir) {
         // Each sealed file is bound to its name and hash: another file's ciphertext fails.
         const std::string first = Read(dir + "/segment_0.pt");
         const std::string second = Read(dir + "/segment_1.pt");
         Write(dir + "/segment_1.pt", first);
         Write(dir + "/segment_0.pt", second);
         auto manifest = common::BundleManifest::FromJson(Read(dir + "/manifest.json"), "test");
         ASSERT_TRUE(manifest.ok());
         std::swap(manifest->segments[0].module.encrypted_size,
                   manifest->segments[1].module.encrypted_size);
         std::swap(manifest->segments[0].module.size, manifest->segments[1].module.size);
         Write(dir + "/manifest.json", manifest->ToJson());
       },
       "bundle", "fails authentication", absl::StatusCode::kDataLoss},
  };
}

TEST_P(KeyProblemTest, IsRefusedWithItsOwnError) {
  const auto& [problem, where] = GetParam();
  BundleKey("other");
  const std::string bundle = EncryptedBundle("bundles/model/1");
  problem.spoil(bundle);
  if (HasFatalFailure()) return;
  const std::string key_file = problem.key.empty() ? "" : BundleKey(problem.key)->path();
  absl::Status status;
  if (where == Where::kDevice) {
    device::RuntimeOptions options;
    options.bundle_key_file = key_file;
    status = device::Runtime::Create(bundle, options).status();
  } else {
    common::Bundle::LoadOptions load;
    if (!key_file.empty()) load.key = *common::BundleKey::Read(key_file);
    auto registry = edge_server::BundleRegistry::LoadFrom(dir_.File("bundles"), load);
    ASSERT_TRUE(registry.ok()) << registry.status();
    EXPECT_TRUE((*registry)->List().empty());
    const auto changes = (*registry)->Rescan();
    ASSERT_EQ(changes.refusals.size(), 1u);
    EXPECT_THAT(changes.refusals.begin()->second, HasSubstr(problem.message));
    status = common::Bundle::Load(bundle, load).status();
  }
  EXPECT_EQ(status.code(), problem.code) << status;
  EXPECT_THAT(status.message(), HasSubstr(problem.message));
}

INSTANTIATE_TEST_SUITE_P(Encryption, KeyProblemTest,
                         ::testing::Combine(::testing::ValuesIn(KeyProblems()),
                                            ::testing::Values(Where::kDevice, Where::kEdge)),
                         CaseName<KeyProblem>);

// ---- The edge: hot reload keeps the accepted version; versions load newest first.

TEST_F(TrustTest, ATamperedUpdateIsRefusedAndThePreviousVersionKeepsServing) {
  const std::string bundle = CopyBundle("bundles/model/current");
  Sign(bundle, {"alice"}, 1);
  auto registry = TrustingRegistry(Options());
  ASSERT_NE(registry, nullptr);
  ASSERT_EQ(registry->List().size(), 1u);
  const std::string old_id = registry->List()[0]->id();
  // Version 2 arrives signed by nobody the edge trusts.
  Sign(bundle, {"carol"}, 2);
  EXPECT_EQ(registry->Rescan().refused, 1);
  ASSERT_EQ(registry->List().size(), 1u);
  EXPECT_EQ(registry->List()[0]->id(), old_id);
  EXPECT_NE(registry->Find(old_id).bundle, nullptr);
  // Signed properly, it replaces version 1.
  Sign(bundle, {"alice"}, 2);
  EXPECT_EQ(registry->Rescan().added, 1);
  ASSERT_EQ(registry->List().size(), 1u);
  EXPECT_EQ(registry->List()[0]->manifest().version, 2u);
}

TEST_F(TrustTest, TheEdgeLoadsTheNewestVersionFirstSoEveryStartRefusesTheSameFolders) {
  // Folder order ("1" before "2") is the opposite of version order.
  const std::string a = CopyBundle("bundles/model/1"), b = CopyBundle("bundles/model/2");
  Sign(a, {"alice"}, 1);
  Sign(b, {"alice"}, 2);
  for (int start = 0; start < 2; ++start) {
    auto registry = TrustingRegistry(Options());
    ASSERT_NE(registry, nullptr);
    ASSERT_EQ(registry->List().size(), 1u) << "start " << start;
    EXPECT_EQ(registry->List()[0]->manifest().version, 2u);
  }
}

// ---- Real processes: the openssl command line, cleave and cleave-edge.

TEST_F(TrustTest, TheOpensslCommandLineVerifiesASignatureAndRejectsATamperedManifest) {
  const std::string bundle = CopyBundle("b");
  Sign(bundle, {"alice"});
  // docs/SECURITY.md's commands, as an operator would type them.
  const std::string check =
      "cd '" + bundle +
      "' && { printf 'cleave bundle manifest v1\\n'; cat manifest.json; } > "
      "../message && sed -n 's/.*\"sig\": \"\\(.*\\)\".*/\\1/p' signatures.json | openssl base64 "
      "-d -A > ../signature && openssl pkeyutl -verify -pubin -inkey '" +
      dir_.File("keys/alice.pub") + "' -rawin -in ../message -sigfile ../signature";
  auto verified = test::RunCommand(check);
  EXPECT_EQ(verified.exit_code, 0) << verified.output;
  EXPECT_THAT(verified.output, HasSubstr("Signature Verified Successfully"));
  Append(bundle + "/manifest.json", " ");
  auto tampered = test::RunCommand(check);
  EXPECT_NE(tampered.exit_code, 0) << tampered.output;
  EXPECT_THAT(tampered.output, HasSubstr("Signature Verification Failure"));
}

TEST_F(TrustTest, CleaveKeygenSignAndVerifyOnTheCommandLine) {
  const std::string cleave = test::BinaryPath("cleave");
  const std::string bundle = CopyBundle("b");
  auto keygen = test::RunCommand(cleave + " keygen --out " + dir_.File("keys/dave"));
  ASSERT_EQ(keygen.exit_code, 0) << keygen.output;
  EXPECT_THAT(keygen.output, HasSubstr("key id "));
  fs::copy_file(dir_.File("keys/dave.pub"), dir_.File("trust/dave.pub"));
  const std::string verify = cleave + " verify " + bundle + " --trust " + dir_.File("trust");
  auto unsigned_bundle = test::RunCommand(verify);
  EXPECT_NE(unsigned_bundle.exit_code, 0);
  EXPECT_THAT(unsigned_bundle.output, HasSubstr("is not signed"));
  auto no_expiry =
      test::RunCommand(cleave + " sign " + bundle + " --key " + dir_.File("keys/dave.key"));
  EXPECT_NE(no_expiry.exit_code, 0);
  EXPECT_THAT(no_expiry.output, HasSubstr("has no expiry"));
  auto signed_bundle =
      test::RunCommand(cleave + " sign " + bundle + " --key " + dir_.File("keys/dave.key") +
                       " --version 4 --expires-in 30d");
  ASSERT_EQ(signed_bundle.exit_code, 0) << signed_bundle.output;
  EXPECT_THAT(signed_bundle.output, HasSubstr("version 4"));
  auto verified = test::RunCommand(verify + " --trust-state " + dir_.File("state.json"));
  EXPECT_EQ(verified.exit_code, 0) << verified.output;
  EXPECT_THAT(verified.output, HasSubstr("signatures ok (threshold 1 of 3 trusted keys)"));
  auto threshold = test::RunCommand(verify + " --threshold 2");
  EXPECT_NE(threshold.exit_code, 0);
  EXPECT_THAT(threshold.output, HasSubstr("2 required"));
  auto keygen_aes = test::RunCommand(cleave + " keygen --bundle-key --out " + dir_.File("keys/k"));
  ASSERT_EQ(keygen_aes.exit_code, 0) << keygen_aes.output;
  auto encrypted =
      test::RunCommand(cleave + " encrypt " + bundle + " --key-file " + dir_.File("keys/k.aeskey"));
  ASSERT_EQ(encrypted.exit_code, 0) << encrypted.output;
  EXPECT_THAT(encrypted.output, HasSubstr("3 files encrypted"));
  auto without_key = test::RunCommand(cleave + " verify " + bundle);
  EXPECT_NE(without_key.exit_code, 0);
  EXPECT_THAT(without_key.output, HasSubstr("is encrypted"));
  auto with_key = test::RunCommand(cleave + " verify " + bundle + " --bundle-key " +
                                   dir_.File("keys/k.aeskey"));
  EXPECT_EQ(with_key.exit_code, 0) << with_key.output;
  auto bad_slack = test::RunCommand(verify + " --clock-slack soon");
  EXPECT_NE(bad_slack.exit_code, 0);
  EXPECT_THAT(bad_slack.output, HasSubstr("--clock-slack"));
}

TEST_F(TrustTest, ARealEdgeServesOnlySignedBundlesToATrustingDevice) {
  const std::string good = CopyBundle("bundles/signed"), bad = CopyBundle("bundles/unsigned");
  Sign(good, {"alice"});
  test::EdgeProcess edge(dir_.File("bundles"), {"--trust", dir_.File("trust"), "--trust-state",
                                                dir_.File("edge-state.json")});
  ASSERT_TRUE(edge.running()) << edge.Log();
  EXPECT_THAT(edge.Log(), HasSubstr("event=bundles_verified"));
  EXPECT_THAT(edge.Log(), HasSubstr("is not signed"));
  device::RuntimeOptions options;
  options.trust = Options();
  options.edges = {edge.address()};
  options.offload_cut = test::ReadManifest(good).cuts[0].id;
  options.deadline = std::chrono::seconds(30);
  options.local_fallback = false;
  auto runtime = device::Runtime::Create(good, options);
  ASSERT_TRUE(runtime.ok()) << runtime.status();
  auto result = (*runtime)->Infer(at::rand({1, 3, 8, 8}));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->placement, device::Placement::kEdge) << result->fallback_reason;
  // The unsigned copy is the same model with another id: the edge does not serve it.
  options.trust = {};
  auto untrusted = device::Runtime::Create(bad, options);
  ASSERT_TRUE(untrusted.ok()) << untrusted.status();
  auto refused = (*untrusted)->Infer(at::rand({1, 3, 8, 8}));
  EXPECT_FALSE(refused.ok());
  EXPECT_THAT(refused.status().message(), HasSubstr("unknown bundle id")) << refused.status();
}

TEST_F(TrustTest, ARealEdgeServesAnEncryptedSignedBundleToADeviceWithTheKey) {
  const std::string bundle = EncryptedBundle("bundles/secret");
  partitioner::SignOptions sign;
  sign.key_files = {KeyFile("alice")};
  sign.expires = absl::Now() + absl::Hours(1);
  sign.key = BundleKey();
  ASSERT_TRUE(partitioner::SignBundle(bundle, sign).ok());
  const std::string key_file = BundleKey()->path();
  test::EdgeProcess edge(dir_.File("bundles"),
                         {"--trust", dir_.File("trust"), "--bundle-key", key_file});
  ASSERT_TRUE(edge.running()) << edge.Log();
  EXPECT_THAT(edge.Log(), HasSubstr("event=bundle_loaded"));
  EXPECT_THAT(edge.Log(), Not(HasSubstr(Read(key_file).substr(0, 16))));  // no key in a log
  device::RuntimeOptions options;
  options.trust = Options();
  options.bundle_key_file = key_file;
  options.edges = {edge.address()};
  options.offload_cut = test::ReadManifest(bundle).cuts[0].id;
  options.deadline = std::chrono::seconds(30);
  options.local_fallback = false;
  auto runtime = device::Runtime::Create(bundle, options);
  ASSERT_TRUE(runtime.ok()) << runtime.status();
  auto result = (*runtime)->Infer(at::rand({1, 3, 8, 8}));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->placement, device::Placement::kEdge) << result->fallback_reason;
  // Without the key the edge refuses the bundle at start and says why.
  test::EdgeProcess keyless(dir_.File("bundles"), {"--trust", dir_.File("trust")});
  ASSERT_TRUE(keyless.running()) << keyless.Log();
  EXPECT_THAT(keyless.Log(), HasSubstr("give its key (--bundle-key)"));
}

TEST_F(TrustTest, AnEdgeWithoutATrustFolderSaysOnceThatBundlesAreNotVerified) {
  CopyBundle("bundles/plain");
  test::EdgeProcess edge(dir_.File("bundles"));
  ASSERT_TRUE(edge.running()) << edge.Log();
  const std::string log = edge.Log();
  const size_t first = log.find("event=bundles_not_verified");
  ASSERT_NE(first, std::string::npos) << log;
  EXPECT_EQ(log.find("event=bundles_not_verified", first + 1), std::string::npos);
}

}  // namespace
}  // namespace cleave
