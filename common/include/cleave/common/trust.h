// Signed bundles: Ed25519 signing keys, the signatures a bundle carries beside its manifest
// (signatures.json), and the trust policy device and edge check a bundle against before they
// run any of it. docs/SECURITY.md documents the formats, the threat model and the commands.
//
// What a signature covers is the domain-separated message SignedMessage(manifest.json): the
// manifest names every other file with its size and SHA-256, so one signature over its exact
// bytes covers the whole bundle. `openssl pkeyutl -verify -rawin` checks it on its own.
//
// The checks follow TUF's lessons: a threshold counts distinct public keys (the same signature
// twice, or one key under two file names, counts once); signatures by unknown keys and ones that
// do not verify are ignored and reported only when the threshold is not met; expired manifests
// and versions below the highest accepted for a bundle name (rollback), or another bundle under
// the accepted version, are refused; with a trust
// policy a bundle folder holds exactly its manifest, its signatures and the files the manifest
// lists, no symlink and no file of another size.
#ifndef CLEAVE_COMMON_TRUST_H_
#define CLEAVE_COMMON_TRUST_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "cleave/common/manifest.h"
#include "cleave/common/mutex.h"

namespace cleave::common {

inline constexpr char kSignaturesFile[] = "signatures.json";
// Bounds for signatures.json: checked before it is parsed.
inline constexpr uint64_t kMaxSignaturesFileBytes = 64 << 10;
inline constexpr size_t kMaxSignatures = 32;

// The bytes a bundle signature signs: this prefix, then manifest.json's exact bytes. The prefix
// keeps a bundle signature from being valid for any other message the same key might sign.
inline constexpr absl::string_view kSignatureDomain = "cleave bundle manifest v1\n";
[[nodiscard]] std::string SignedMessage(absl::string_view manifest_json);

// Writes `out_prefix`.key (the Ed25519 private key, PKCS#8 PEM, mode 0600) and `out_prefix`.pub
// (its public key, SubjectPublicKeyInfo PEM) and returns the key id. ALREADY_EXISTS when either
// file exists: a key is never overwritten.
[[nodiscard]] absl::StatusOr<std::string> GenerateSigningKey(const std::string& out_prefix);

// The id of a public key: the lowercase hex SHA-256 of its 32 raw bytes. What signatures.json
// names a signer by, and what makes one key under two file names count once.
[[nodiscard]] absl::StatusOr<std::string> KeyIdOfPublicKeyPem(absl::string_view pem,
                                                              absl::string_view origin);

// One entry of signatures.json.
struct BundleSignature {
  std::string keyid;      // KeyIdOfPublicKeyPem of the signer
  std::string signature;  // the raw 64-byte Ed25519 signature (base64 in the file)
};

// signatures.json: {"signatures": [{"keyid": HEX, "sig": BASE64}, ...]}. INVALID_ARGUMENT
// naming `origin` for malformed JSON, a malformed entry or more than kMaxSignatures entries.
[[nodiscard]] absl::StatusOr<std::vector<BundleSignature>> ParseSignatures(
    absl::string_view json, absl::string_view origin);
[[nodiscard]] std::string SignaturesToJson(const std::vector<BundleSignature>& signatures);

// Signs `manifest_json` with the private key in `key_path`. FAILED_PRECONDITION when the key
// file is readable by its group or others; INVALID_ARGUMENT when it holds no Ed25519 key.
[[nodiscard]] absl::StatusOr<BundleSignature> SignManifest(absl::string_view manifest_json,
                                                           const std::string& key_path);

// What device and edge are told to trust (--trust, --threshold, --trust-state, --clock-slack).
struct TrustOptions {
  // Folder of trusted public keys (*.pub, SubjectPublicKeyInfo PEM; links followed, so a
  // mounted Kubernetes Secret works). Empty: bundles are not verified.
  std::string dir;
  // Distinct trusted keys that must have signed a bundle.
  int threshold = 1;
  // File holding the highest version accepted per bundle name, replaced atomically before a
  // newer version is activated. Empty: kept in memory, so rollback protection ends with the
  // process.
  std::string state_file;
  // How far this machine's clock may be ahead of the real time: a manifest expired less than
  // this long ago is still accepted (robots without a real-time clock).
  absl::Duration clock_slack = absl::ZeroDuration();

  bool enabled() const { return !dir.empty(); }
};

// The checks a trusted bundle passes. Bundle::Load runs CheckSignatures on the manifest's bytes
// before it parses them and CheckManifest before it reads any other file; the edge's registry
// and the device runtime call Accept once the bundle passed every check of theirs, just before
// they activate it.
//
// Thread-safety: every method is thread-safe.
class TrustPolicy {
 public:
  // Reads the trusted keys and the version state. INVALID_ARGUMENT for an unreadable or
  // malformed key, a threshold below 1 or above the number of distinct keys, or a malformed
  // state file; NOT_FOUND when the folder does not exist.
  [[nodiscard]] static absl::StatusOr<std::shared_ptr<TrustPolicy>> Create(
      const TrustOptions& options);

  // Checks the signatures in `dir`/signatures.json over `manifest_json`, the exact bytes of
  // `dir`/manifest.json, against the threshold. FAILED_PRECONDITION naming why otherwise.
  [[nodiscard]] absl::Status CheckSignatures(const std::string& dir,
                                             absl::string_view manifest_json) const;

  // Checks what the signed manifest `manifest` (of the bundle in `dir`, with bundle id `id`)
  // claims: its expiry, its version against the release accepted for its name, and the
  // folder's contents against its file list. FAILED_PRECONDITION naming the reason.
  [[nodiscard]] absl::Status CheckManifest(const std::string& dir, const std::string& id,
                                           const BundleManifest& manifest) const;

  // Both, for a manifest already parsed from `manifest_json`.
  [[nodiscard]] absl::Status Check(const std::string& dir, absl::string_view manifest_json,
                                   const BundleManifest& manifest) const;

  // Records `manifest`'s version (bundle id `id`) as the release accepted for its name,
  // persisted to the state file before it returns. FAILED_PRECONDITION when a higher version,
  // or another bundle of the same version, was accepted meanwhile; the same release again
  // changes nothing.
  [[nodiscard]] absl::Status Accept(const BundleManifest& manifest, const std::string& id);

  size_t num_keys() const { return keys_.size(); }
  int threshold() const { return threshold_; }
  // The highest version accepted for `name`; 0 when none.
  [[nodiscard]] uint64_t AcceptedVersion(absl::string_view name) const;

 private:
  // What was accepted for a bundle name: the highest version and the id of its bundle.
  struct Release {
    uint64_t version = 0;
    std::string id;
  };

  TrustPolicy() = default;

  // OK when `manifest` (bundle id `id`, in `dir` when known) may follow `accepted`.
  static absl::Status CheckRelease(const std::string& dir, const std::string& id,
                                   const BundleManifest& manifest, const Release& accepted);
  absl::Status Persist() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);

  std::map<std::string, std::string> keys_;       // key id -> raw 32-byte public key
  std::map<std::string, std::string> key_files_;  // key id -> the first file it was read from
  int threshold_ = 1;
  std::string state_file_;
  absl::Duration clock_slack_;
  mutable Mutex mutex_;
  std::map<std::string, Release, std::less<>> accepted_ ABSL_GUARDED_BY(mutex_);
};

}  // namespace cleave::common

#endif  // CLEAVE_COMMON_TRUST_H_
