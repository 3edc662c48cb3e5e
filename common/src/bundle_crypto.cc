#include "cleave/common/bundle_crypto.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <limits>
#include <memory>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "cleave/common/files.h"
#include "cleave/common/sha256.h"
#include "cleave/common/status_macros.h"

namespace cleave::common {
namespace {

struct CipherCtxDeleter {
  void operator()(EVP_CIPHER_CTX* ctx) const { EVP_CIPHER_CTX_free(ctx); }
};
using CipherCtx = std::unique_ptr<EVP_CIPHER_CTX, CipherCtxDeleter>;

std::string AssociatedData(absl::string_view file, absl::string_view sha256) {
  return absl::StrCat(kSealDomain, file, "\n", sha256);
}

const unsigned char* Bytes(absl::string_view text) {
  return reinterpret_cast<const unsigned char*>(text.data());
}

// OpenSSL's EVP lengths are ints.
absl::Status CheckLength(size_t bytes, absl::string_view file) {
  if (bytes <= static_cast<size_t>(std::numeric_limits<int>::max()) - kSealOverhead) {
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat(file, " is too large to encrypt (2 GiB at most)"));
}

}  // namespace

BundleKey::BundleKey(std::string key, std::string path)
    : key_(std::move(key)),
      id_(Sha256Hex(absl::StrCat("cleave bundle key id v1\n", key_)).substr(0, 32)),
      path_(std::move(path)) {}

BundleKey::~BundleKey() { OPENSSL_cleanse(key_.data(), key_.size()); }

absl::StatusOr<std::shared_ptr<const BundleKey>> BundleKey::Read(const std::string& path) {
  CLEAVE_RETURN_IF_ERROR(CheckPrivateFile(path, "bundle key"));
  CLEAVE_ASSIGN_OR_RETURN(std::string text, ReadFile(path, 4 * kBundleKeyBytes));
  const absl::string_view hex = absl::StripTrailingAsciiWhitespace(text);
  const bool well_formed =
      hex.size() == 2 * kBundleKeyBytes && std::all_of(hex.begin(), hex.end(), [](char c) {
        return absl::ascii_isxdigit(static_cast<unsigned char>(c));
      });
  std::string key = well_formed ? absl::HexStringToBytes(hex) : std::string();
  OPENSSL_cleanse(text.data(), text.size());
  if (!well_formed) {
    return absl::InvalidArgumentError(absl::StrCat(
        "bundle key ", path, " must hold 64 hex digits (`cleave keygen --bundle-key`)"));
  }
  return std::shared_ptr<const BundleKey>(new BundleKey(std::move(key), path));
}

absl::StatusOr<std::shared_ptr<const BundleKey>> BundleKey::Generate(const std::string& path) {
  std::string key(kBundleKeyBytes, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(key.data()), static_cast<int>(key.size())) != 1) {
    return absl::InternalError("OpenSSL could not draw a random key");
  }
  std::string hex = absl::StrCat(absl::BytesToHexString(key), "\n");
  absl::Status written = WriteNewFile(path, hex, 0600);
  OPENSSL_cleanse(hex.data(), hex.size());
  CLEAVE_RETURN_IF_ERROR(written);
  return std::shared_ptr<const BundleKey>(new BundleKey(std::move(key), path));
}

absl::StatusOr<std::string> BundleKey::Seal(absl::string_view plaintext, absl::string_view file,
                                            absl::string_view sha256) const {
  CLEAVE_RETURN_IF_ERROR(CheckLength(plaintext.size(), file));
  std::string sealed(kSealOverhead + plaintext.size(), '\0');
  auto* out = reinterpret_cast<unsigned char*>(sealed.data());
  std::copy(kSealMagic.begin(), kSealMagic.end(), sealed.begin());
  unsigned char* nonce = out + kSealMagic.size();
  unsigned char* ciphertext = nonce + kSealNonceBytes;
  unsigned char* tag = ciphertext + plaintext.size();
  const std::string aad = AssociatedData(file, sha256);
  CipherCtx ctx(EVP_CIPHER_CTX_new());
  int length = 0, final_length = 0;
  if (RAND_bytes(nonce, kSealNonceBytes) != 1 || ctx == nullptr ||
      EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, Bytes(key_), nonce) != 1 ||
      EVP_EncryptUpdate(ctx.get(), nullptr, &length, Bytes(aad), static_cast<int>(aad.size())) !=
          1 ||
      EVP_EncryptUpdate(ctx.get(), ciphertext, &length, Bytes(plaintext),
                        static_cast<int>(plaintext.size())) != 1 ||
      EVP_EncryptFinal_ex(ctx.get(), ciphertext + length, &final_length) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kSealTagBytes, tag) != 1) {
    return absl::InternalError(absl::StrCat("OpenSSL could not encrypt ", file));
  }
  return sealed;
}

absl::StatusOr<std::string> BundleKey::Open(absl::string_view sealed, absl::string_view file,
                                            absl::string_view sha256) const {
  if (sealed.size() < kSealOverhead || sealed.substr(0, kSealMagic.size()) != kSealMagic) {
    return absl::DataLossError(
        absl::StrCat(file, " is not an encrypted bundle file (no ", kSealMagic, " header)"));
  }
  CLEAVE_RETURN_IF_ERROR(CheckLength(sealed.size(), file));
  const size_t length = sealed.size() - kSealOverhead;
  const unsigned char* nonce = Bytes(sealed) + kSealMagic.size();
  const unsigned char* ciphertext = nonce + kSealNonceBytes;
  std::string tag(reinterpret_cast<const char*>(ciphertext + length), kSealTagBytes);
  std::string plaintext(length, '\0');
  auto* out = reinterpret_cast<unsigned char*>(plaintext.data());
  const std::string aad = AssociatedData(file, sha256);
  CipherCtx ctx(EVP_CIPHER_CTX_new());
  int written = 0, final_length = 0;
  if (ctx == nullptr ||
      EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, Bytes(key_), nonce) != 1 ||
      EVP_DecryptUpdate(ctx.get(), nullptr, &written, Bytes(aad), static_cast<int>(aad.size())) !=
          1 ||
      EVP_DecryptUpdate(ctx.get(), out, &written, ciphertext, static_cast<int>(length)) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kSealTagBytes, tag.data()) != 1) {
    return absl::InternalError(absl::StrCat("OpenSSL could not decrypt ", file));
  }
  if (EVP_DecryptFinal_ex(ctx.get(), out + written, &final_length) != 1) {
    OPENSSL_cleanse(plaintext.data(), plaintext.size());
    return absl::DataLossError(
        absl::StrCat(file,
                     " fails authentication: its encrypted bytes were changed or damaged, "
                     "or it was sealed for another file or version"));
  }
  return plaintext;
}

}  // namespace cleave::common
