// Encryption of bundle files at rest: AES-256-GCM under a key file the device or edge holds,
// decrypted into memory only when a bundle is loaded (plaintext never touches their disks).
// docs/SECURITY.md documents the file layout and the commands.
//
// A sealed file is "CLVENC01" | a 12-byte random nonce | the ciphertext | a 16-byte tag. The
// associated data binds it to its place in the bundle: kSealDomain, the file's name in the
// manifest and the plaintext SHA-256 the (signed) manifest gives for it, so a sealed file
// cannot be swapped for another file's or another version's.
#ifndef CLEAVE_COMMON_BUNDLE_CRYPTO_H_
#define CLEAVE_COMMON_BUNDLE_CRYPTO_H_

#include <cstddef>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace cleave::common {

inline constexpr size_t kBundleKeyBytes = 32;
inline constexpr absl::string_view kSealMagic = "CLVENC01";
inline constexpr size_t kSealNonceBytes = 12, kSealTagBytes = 16;
// Bytes a sealed file adds to its plaintext.
inline constexpr size_t kSealOverhead = 8 + kSealNonceBytes + kSealTagBytes;
inline constexpr absl::string_view kSealDomain = "cleave bundle file v1\n";

// An AES-256 key for bundle files. Immutable; thread-safe.
class BundleKey {
 public:
  // Reads a key file: 64 hex digits, optionally followed by a newline. FAILED_PRECONDITION when
  // the file is accessible to its group or others, INVALID_ARGUMENT when it is malformed.
  [[nodiscard]] static absl::StatusOr<std::shared_ptr<const BundleKey>> Read(
      const std::string& path);
  // Writes a new random key file (mode 0600). ALREADY_EXISTS when `path` exists.
  [[nodiscard]] static absl::StatusOr<std::shared_ptr<const BundleKey>> Generate(
      const std::string& path);
  ~BundleKey();  // wipes the key from memory
  BundleKey(const BundleKey&) = delete;
  BundleKey& operator=(const BundleKey&) = delete;

  // What the manifest records to name its key (never the key): 32 hex digits of
  // SHA-256("cleave bundle key id v1\n" || key). A wrong key is told from a damaged file by it.
  const std::string& id() const { return id_; }
  const std::string& path() const { return path_; }

  // Seals `plaintext`, the bundle file `file` whose plaintext SHA-256 is `sha256`.
  [[nodiscard]] absl::StatusOr<std::string> Seal(absl::string_view plaintext,
                                                 absl::string_view file,
                                                 absl::string_view sha256) const;
  // Opens what Seal wrote. DATA_LOSS naming `file` when it is not a sealed file or fails
  // authentication (a changed or damaged byte, or a file sealed for another place).
  [[nodiscard]] absl::StatusOr<std::string> Open(absl::string_view sealed, absl::string_view file,
                                                 absl::string_view sha256) const;

 private:
  BundleKey(std::string key, std::string path);

  std::string key_, id_, path_;
};

}  // namespace cleave::common

#endif  // CLEAVE_COMMON_BUNDLE_CRYPTO_H_
