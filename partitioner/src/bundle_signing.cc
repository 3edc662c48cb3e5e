#include "cleave/partitioner/bundle_signing.h"

#include <algorithm>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "cleave/common/bundle.h"
#include "cleave/common/files.h"
#include "cleave/common/sha256.h"
#include "cleave/common/status_macros.h"
#include "cleave/common/trust.h"

namespace cleave::partitioner {

namespace fs = std::filesystem;

namespace {

// Every file the manifest names carries its size (bundles written before sizes were recorded
// do not).
absl::Status CheckSizesRecorded(const std::string& dir, const common::BundleManifest& manifest,
                                absl::string_view before) {
  for (const common::FileRef* ref : manifest.FileRefs()) {
    if (!ref->size.has_value()) {
      return absl::FailedPreconditionError(
          absl::StrCat(dir, " was written before file sizes were recorded (", ref->file,
                       " has none): split it again before ", before));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<EncryptedBundle> EncryptBundle(const std::string& dir,
                                              const common::BundleKey& key) {
  // Every file must match the manifest before it is sealed under its hash.
  CLEAVE_ASSIGN_OR_RETURN(auto bundle, common::Bundle::Load(dir));
  common::BundleManifest manifest = bundle->manifest();
  if (!manifest.encryption_key_id.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat(dir, " is already encrypted (key id ", manifest.encryption_key_id, ")"));
  }
  CLEAVE_RETURN_IF_ERROR(CheckSizesRecorded(dir, manifest, "encrypting"));
  CLEAVE_ASSIGN_OR_RETURN(common::StagedFolder staged, common::StagedFolder::Begin(dir));
  std::vector<common::FileRef*> sealed;
  for (common::SegmentInfo& segment : manifest.segments) sealed.push_back(&segment.module);
  for (common::ExitInfo& exit : manifest.exits) sealed.push_back(&exit.head);
  for (common::FileRef* ref : sealed) {
    CLEAVE_ASSIGN_OR_RETURN(
        std::string bytes,
        common::ReadFile((fs::path(dir) / ref->file).string(), static_cast<uint64_t>(*ref->size)));
    if (common::Sha256Hex(bytes) != ref->sha256) {
      return absl::DataLossError(absl::StrCat(ref->file, " changed while encrypting"));
    }
    CLEAVE_ASSIGN_OR_RETURN(std::string ciphertext, key.Seal(bytes, ref->file, ref->sha256));
    CLEAVE_RETURN_IF_ERROR(staged.Write(ref->file, ciphertext));
    ref->encrypted_size = static_cast<int64_t>(ciphertext.size());
  }
  for (const common::FileRef& ref : manifest.verification.inputs) {
    CLEAVE_RETURN_IF_ERROR(staged.Keep(ref.file));
  }
  for (const common::FileRef& ref : manifest.verification.outputs) {
    CLEAVE_RETURN_IF_ERROR(staged.Keep(ref.file));
  }
  manifest.encryption_key_id = key.id();
  CLEAVE_RETURN_IF_ERROR(manifest.Validate());
  const std::string json = manifest.ToJson();
  CLEAVE_RETURN_IF_ERROR(staged.Write("manifest.json", json));
  CLEAVE_RETURN_IF_ERROR(staged.Commit());
  return EncryptedBundle{common::BundleIdOf(json), sealed.size()};
}

absl::StatusOr<SignedBundle> SignBundle(const std::string& dir, const SignOptions& options) {
  const std::string manifest_path = (fs::path(dir) / "manifest.json").string();
  const std::string signatures_path = (fs::path(dir) / common::kSignaturesFile).string();
  // Every file must match the manifest before anyone vouches for it: an encrypted bundle is
  // checked with its key.
  common::Bundle::LoadOptions load;
  load.key = options.key;
  CLEAVE_ASSIGN_OR_RETURN(auto bundle, common::Bundle::Load(dir, load));
  common::BundleManifest manifest = bundle->manifest();
  CLEAVE_RETURN_IF_ERROR(CheckSizesRecorded(dir, manifest, "signing"));
  if (options.version) manifest.version = *options.version;
  if (options.expires)
    manifest.expires = absl::FromUnixSeconds(absl::ToUnixSeconds(*options.expires));
  if (!manifest.expires.has_value()) {
    return absl::FailedPreconditionError(
        absl::StrCat(dir, " has no expiry: give one (`cleave sign --expires-in 90d`)"));
  }
  CLEAVE_ASSIGN_OR_RETURN(std::string json,
                          common::ReadFile(manifest_path, common::kMaxTextFileBytes));
  if (common::BundleIdOf(json) != bundle->id()) {
    return absl::AbortedError(absl::StrCat(manifest_path, " changed while signing; sign again"));
  }
  std::vector<common::BundleSignature> signatures;
  if (auto existing = common::ReadFile(signatures_path, common::kMaxSignaturesFileBytes);
      existing.ok()) {
    CLEAVE_ASSIGN_OR_RETURN(signatures, common::ParseSignatures(*existing, signatures_path));
  }
  SignedBundle signed_bundle;
  if (const std::string stamped = manifest.ToJson(); stamped != json) {
    // Earlier signatures go first, so a crash in between leaves an unsigned bundle, never one
    // signed for bytes nobody signed.
    signed_bundle.dropped_signatures = signatures.size();
    signatures.clear();
    std::error_code error;
    fs::remove(signatures_path, error);
    CLEAVE_RETURN_IF_ERROR(common::WriteFileAtomically(manifest_path, stamped));
    json = stamped;
  }
  for (const std::string& key : options.key_files) {
    CLEAVE_ASSIGN_OR_RETURN(common::BundleSignature signature, common::SignManifest(json, key));
    signatures.erase(std::remove_if(signatures.begin(), signatures.end(),
                                    [&](const common::BundleSignature& earlier) {
                                      return earlier.keyid == signature.keyid;
                                    }),
                     signatures.end());
    signed_bundle.keyids.push_back(signature.keyid);
    signatures.push_back(std::move(signature));
  }
  if (signatures.size() > common::kMaxSignatures) {
    return absl::InvalidArgumentError(
        absl::StrCat("at most ", common::kMaxSignatures, " signatures per bundle"));
  }
  CLEAVE_RETURN_IF_ERROR(
      common::WriteFileAtomically(signatures_path, common::SignaturesToJson(signatures)));
  signed_bundle.id = common::BundleIdOf(json);
  signed_bundle.version = manifest.version;
  signed_bundle.expires = *manifest.expires;
  signed_bundle.num_signatures = signatures.size();
  return signed_bundle;
}

}  // namespace cleave::partitioner
