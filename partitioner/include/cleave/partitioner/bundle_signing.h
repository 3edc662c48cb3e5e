// Preparing a written bundle for release: encrypting its segment and exit files at rest
// (common/bundle_crypto.h), then stamping its release fields (version, expiry) into the
// manifest and adding one signature per key to signatures.json (common/trust.h). What
// `cleave encrypt` and `cleave sign` run; docs/SECURITY.md.
#ifndef CLEAVE_PARTITIONER_BUNDLE_SIGNING_H_
#define CLEAVE_PARTITIONER_BUNDLE_SIGNING_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "cleave/common/bundle_crypto.h"

namespace cleave::partitioner {

struct SignOptions {
  std::vector<std::string> key_files;  // Ed25519 private keys (`cleave keygen`), mode 0600
  std::optional<uint64_t> version;     // set the manifest's version
  std::optional<absl::Time> expires;   // set its expiry (whole seconds)
  // An encrypted bundle's key, to check its files before signing; null for a plaintext one.
  std::shared_ptr<const common::BundleKey> key;
};

struct SignedBundle {
  std::string id;  // the bundle id after stamping
  uint64_t version = 0;
  absl::Time expires;
  std::vector<std::string> keyids;  // the keys that signed now
  size_t num_signatures = 0;        // in signatures.json now
  size_t dropped_signatures = 0;    // earlier ones that no longer held (the manifest changed)
};

// Checks every file of the bundle in `dir` against the manifest, stamps the release fields
// (earlier signatures are dropped when that changes the manifest: they signed other bytes),
// and adds a signature per key, replacing an earlier one by the same key. FAILED_PRECONDITION
// when the bundle has no expiry and none is given, or records no file sizes (written before
// they were); errors of SignManifest for a key.
[[nodiscard]] absl::StatusOr<SignedBundle> SignBundle(const std::string& dir,
                                                      const SignOptions& options);

struct EncryptedBundle {
  std::string id;  // the bundle id after encryption
  size_t num_files = 0;
};

// Replaces the segment and exit files of the bundle in `dir` with their sealed form under `key`
// (the verification frames stay as they are), records the key's id in the manifest, and swaps
// the folder in whole (common::StagedFolder): the plaintext files are gone once it returns.
// Signatures are dropped (the manifest changed): sign afterwards. FAILED_PRECONDITION when the
// bundle is already encrypted or records no file sizes.
[[nodiscard]] absl::StatusOr<EncryptedBundle> EncryptBundle(const std::string& dir,
                                                            const common::BundleKey& key);

}  // namespace cleave::partitioner

#endif  // CLEAVE_PARTITIONER_BUNDLE_SIGNING_H_
