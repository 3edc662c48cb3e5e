#include "cleave/common/trust.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <algorithm>
#include <filesystem>
#include <memory>
#include <set>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cleave/common/files.h"
#include "cleave/common/log.h"
#include "cleave/common/sha256.h"
#include "cleave/common/status_macros.h"
#include "nlohmann/json.hpp"

namespace cleave::common {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr size_t kEd25519KeyBytes = 32;
constexpr size_t kEd25519SignatureBytes = 64;
constexpr char kStateFormat[] = "cleave.trust-state";

struct PkeyDeleter {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
struct BioDeleter {
  void operator()(BIO* bio) const { BIO_free(bio); }
};
struct MdCtxDeleter {
  void operator()(EVP_MD_CTX* ctx) const { EVP_MD_CTX_free(ctx); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyDeleter>;
using Bio = std::unique_ptr<BIO, BioDeleter>;

Bio MemoryBio(absl::string_view bytes) {
  return Bio(BIO_new_mem_buf(bytes.data(), static_cast<int>(bytes.size())));
}

std::string BioContents(BIO* bio) {
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(size));
}

// The 32 raw bytes of an Ed25519 key's public half.
absl::StatusOr<std::string> RawPublicKeyOf(EVP_PKEY* key, absl::string_view origin) {
  std::string raw(kEd25519KeyBytes, '\0');
  size_t length = raw.size();
  if (EVP_PKEY_get_raw_public_key(key, reinterpret_cast<unsigned char*>(raw.data()), &length) !=
          1 ||
      length != kEd25519KeyBytes) {
    return absl::InvalidArgumentError(absl::StrCat(origin, ": cannot read the Ed25519 key"));
  }
  return raw;
}

// The same for a public key in SubjectPublicKeyInfo PEM.
absl::StatusOr<std::string> RawPublicKey(absl::string_view pem, absl::string_view origin) {
  Bio bio = MemoryBio(pem);
  Pkey key(PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr));
  if (key == nullptr || EVP_PKEY_get_base_id(key.get()) != EVP_PKEY_ED25519) {
    return absl::InvalidArgumentError(
        absl::StrCat(origin, " is not an Ed25519 public key (SubjectPublicKeyInfo PEM)"));
  }
  return RawPublicKeyOf(key.get(), origin);
}

bool VerifySignature(const std::string& raw_public_key, absl::string_view message,
                     absl::string_view signature) {
  if (signature.size() != kEd25519SignatureBytes) return false;
  Pkey key(EVP_PKEY_new_raw_public_key(
      EVP_PKEY_ED25519, nullptr, reinterpret_cast<const unsigned char*>(raw_public_key.data()),
      raw_public_key.size()));
  std::unique_ptr<EVP_MD_CTX, MdCtxDeleter> ctx(EVP_MD_CTX_new());
  if (key == nullptr || ctx == nullptr ||
      EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, key.get()) != 1) {
    return false;
  }
  return EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()),
                          signature.size(), reinterpret_cast<const unsigned char*>(message.data()),
                          message.size()) == 1;
}

// The folder's entries relative to it, with a symlink or anything but a file or folder refused.
absl::StatusOr<std::vector<std::string>> ListBundleFolder(const std::string& dir) {
  std::vector<std::string> files;
  std::error_code error;
  for (auto it = fs::recursive_directory_iterator(dir, error);
       !error && it != fs::recursive_directory_iterator(); it.increment(error)) {
    const std::string relative = it->path().lexically_relative(dir).string();
    const fs::file_status status = it->symlink_status(error);
    if (fs::is_symlink(status)) {
      return absl::FailedPreconditionError(
          absl::StrCat("bundle ", dir, " holds a symlink, ", relative,
                       ": a trusted bundle holds its files themselves"));
    }
    if (fs::is_directory(status)) continue;
    if (!fs::is_regular_file(status)) {
      return absl::FailedPreconditionError(
          absl::StrCat("bundle ", dir, " holds ", relative, ", which is not a regular file"));
    }
    files.push_back(relative);
  }
  if (error) return absl::InternalError(absl::StrCat("cannot list ", dir, ": ", error.message()));
  return files;
}

}  // namespace

std::string SignedMessage(absl::string_view manifest_json) {
  return absl::StrCat(kSignatureDomain, manifest_json);
}

absl::StatusOr<std::string> KeyIdOfPublicKeyPem(absl::string_view pem, absl::string_view origin) {
  CLEAVE_ASSIGN_OR_RETURN(std::string raw, RawPublicKey(pem, origin));
  return Sha256Hex(raw);
}

absl::StatusOr<std::string> GenerateSigningKey(const std::string& out_prefix) {
  const std::string key_path = out_prefix + ".key", pub_path = out_prefix + ".pub";
  for (const std::string& path : {key_path, pub_path}) {
    std::error_code error;
    if (fs::exists(fs::symlink_status(path, error))) {
      return absl::AlreadyExistsError(absl::StrCat(path, " exists; refusing to overwrite it"));
    }
  }
  Pkey key(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"));
  Bio private_pem(BIO_new(BIO_s_mem())), public_pem(BIO_new(BIO_s_mem()));
  if (key == nullptr || private_pem == nullptr || public_pem == nullptr ||
      PEM_write_bio_PrivateKey(private_pem.get(), key.get(), nullptr, nullptr, 0, nullptr,
                               nullptr) != 1 ||
      PEM_write_bio_PUBKEY(public_pem.get(), key.get()) != 1) {
    return absl::InternalError("OpenSSL could not generate an Ed25519 key");
  }
  const std::string public_text = BioContents(public_pem.get());
  std::string private_text = BioContents(private_pem.get());
  absl::Status written = WriteNewFile(key_path, private_text, 0600);
  OPENSSL_cleanse(private_text.data(), private_text.size());
  CLEAVE_RETURN_IF_ERROR(written);
  CLEAVE_RETURN_IF_ERROR(WriteNewFile(pub_path, public_text, 0644));
  return KeyIdOfPublicKeyPem(public_text, pub_path);
}

absl::StatusOr<BundleSignature> SignManifest(absl::string_view manifest_json,
                                             const std::string& key_path) {
  CLEAVE_RETURN_IF_ERROR(CheckPrivateFile(key_path, "signing key"));
  CLEAVE_ASSIGN_OR_RETURN(std::string pem, ReadFile(key_path, kMaxSignaturesFileBytes));
  Bio bio = MemoryBio(pem);
  Pkey key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (key == nullptr || EVP_PKEY_get_base_id(key.get()) != EVP_PKEY_ED25519) {
    return absl::InvalidArgumentError(
        absl::StrCat(key_path, " is not an Ed25519 private key (PKCS#8 PEM, `cleave keygen`)"));
  }
  OPENSSL_cleanse(pem.data(), pem.size());
  CLEAVE_ASSIGN_OR_RETURN(std::string raw_public, RawPublicKeyOf(key.get(), key_path));
  std::string signature(kEd25519SignatureBytes, '\0');
  size_t signature_length = signature.size();
  const std::string message = SignedMessage(manifest_json);
  std::unique_ptr<EVP_MD_CTX, MdCtxDeleter> ctx(EVP_MD_CTX_new());
  if (ctx == nullptr || EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, key.get()) != 1 ||
      EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(signature.data()),
                     &signature_length, reinterpret_cast<const unsigned char*>(message.data()),
                     message.size()) != 1 ||
      signature_length != kEd25519SignatureBytes) {
    return absl::InternalError(absl::StrCat("OpenSSL could not sign with ", key_path));
  }
  return BundleSignature{Sha256Hex(raw_public), std::move(signature)};
}

absl::StatusOr<std::vector<BundleSignature>> ParseSignatures(absl::string_view text,
                                                             absl::string_view origin) {
  std::vector<BundleSignature> signatures;
  try {
    const json j = json::parse(text.begin(), text.end());
    const json& list = j.at("signatures");
    if (!list.is_array()) throw std::invalid_argument("\"signatures\" must be a list");
    if (list.size() > kMaxSignatures) {
      return absl::InvalidArgumentError(
          absl::StrCat(origin, ": ", list.size(), " signatures; at most ", kMaxSignatures));
    }
    for (const json& entry : list) {
      BundleSignature signature;
      signature.keyid = entry.at("keyid").get<std::string>();
      if (!absl::Base64Unescape(entry.at("sig").get<std::string>(), &signature.signature)) {
        throw std::invalid_argument("\"sig\" is not base64");
      }
      signatures.push_back(std::move(signature));
    }
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(origin, ": malformed signatures: ", e.what()));
  }
  return signatures;
}

std::string SignaturesToJson(const std::vector<BundleSignature>& signatures) {
  json list = json::array();
  for (const BundleSignature& signature : signatures) {
    list.push_back({{"keyid", signature.keyid}, {"sig", absl::Base64Escape(signature.signature)}});
  }
  return json{{"signatures", list}}.dump(2) + "\n";
}

absl::StatusOr<std::shared_ptr<TrustPolicy>> TrustPolicy::Create(const TrustOptions& options) {
  std::error_code error;
  if (!fs::is_directory(options.dir, error)) {
    return absl::NotFoundError(absl::StrCat("trust folder not found: ", options.dir));
  }
  std::shared_ptr<TrustPolicy> policy(new TrustPolicy());
  std::vector<std::string> key_files;
  for (const fs::directory_entry& entry : fs::directory_iterator(options.dir, error)) {
    if (entry.path().extension() == ".pub" && entry.is_regular_file(error)) {
      key_files.push_back(entry.path().string());
    }
  }
  std::sort(key_files.begin(), key_files.end());
  for (const std::string& file : key_files) {
    CLEAVE_ASSIGN_OR_RETURN(std::string pem, ReadFile(file, kMaxSignaturesFileBytes));
    CLEAVE_ASSIGN_OR_RETURN(std::string raw, RawPublicKey(pem, file));
    const std::string id = Sha256Hex(raw);
    policy->keys_.emplace(id, std::move(raw));  // a key under a second name counts once
    policy->key_files_.emplace(id, file);
  }
  if (policy->keys_.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("trust folder ", options.dir, " holds no public key (*.pub)"));
  }
  if (options.threshold < 1 || static_cast<size_t>(options.threshold) > policy->keys_.size()) {
    return absl::InvalidArgumentError(absl::StrCat("threshold ", options.threshold,
                                                   " must be from 1 to the ", policy->keys_.size(),
                                                   " distinct keys in ", options.dir));
  }
  policy->threshold_ = options.threshold;
  policy->clock_slack_ = options.clock_slack;
  policy->state_file_ = options.state_file;
  if (options.state_file.empty()) {
    Log(LogLevel::kWarning, "trust_state_in_memory",
        {{"why", "no --trust-state: rollback protection lasts as long as this process"}});
  } else if (fs::exists(options.state_file, error)) {
    CLEAVE_ASSIGN_OR_RETURN(std::string text, ReadFile(options.state_file, kMaxTextFileBytes));
    try {
      const json j = json::parse(text);
      if (j.value("format", "") != kStateFormat) throw std::invalid_argument("not a trust state");
      common::MutexLock lock(&policy->mutex_);
      for (const auto& [name, release] : j.at("versions").items()) {
        policy->accepted_[name] = {release.at("version").get<uint64_t>(),
                                   release.at("id").get<std::string>()};
      }
    } catch (const std::exception& e) {
      return absl::InvalidArgumentError(
          absl::StrCat(options.state_file, ": malformed trust state: ", e.what()));
    }
  }
  return policy;
}

uint64_t TrustPolicy::AcceptedVersion(absl::string_view name) const {
  common::MutexLock lock(&mutex_);
  auto it = accepted_.find(name);
  return it == accepted_.end() ? 0 : it->second.version;
}

absl::Status TrustPolicy::CheckSignatures(const std::string& dir,
                                          absl::string_view manifest_json) const {
  const std::string path = (fs::path(dir) / kSignaturesFile).string();
  auto text = ReadFile(path, kMaxSignaturesFileBytes);
  if (absl::IsNotFound(text.status())) {
    return absl::FailedPreconditionError(
        absl::StrCat("bundle ", dir, " is not signed (no ", kSignaturesFile, ")"));
  }
  CLEAVE_RETURN_IF_ERROR(text.status());
  auto signatures = ParseSignatures(*text, path);
  if (!signatures.ok()) return absl::FailedPreconditionError(signatures.status().message());
  if (signatures->empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("bundle ", dir, " is not signed (", path, " lists no signature)"));
  }
  const std::string message = SignedMessage(manifest_json);
  std::set<std::string> verified;  // distinct key ids
  std::vector<std::string> unknown, invalid;
  for (const BundleSignature& signature : *signatures) {
    auto key = keys_.find(signature.keyid);
    if (key == keys_.end()) {
      unknown.push_back(signature.keyid.substr(0, 16));
    } else if (VerifySignature(key->second, message, signature.signature)) {
      verified.insert(signature.keyid);
    } else {
      invalid.push_back(signature.keyid.substr(0, 16));
    }
  }
  // As in TUF: signatures that do not count are ignored once enough do.
  if (verified.size() >= static_cast<size_t>(threshold_)) return absl::OkStatus();
  std::string why =
      absl::StrCat("bundle ", dir, " has ", verified.size(),
                   " valid signature(s) by distinct trusted keys; ", threshold_, " required");
  if (!invalid.empty()) {
    absl::StrAppend(&why, "; the signature(s) by key ", absl::StrJoin(invalid, ", "),
                    " do not verify (the manifest changed after signing?)");
  }
  if (!unknown.empty()) {
    absl::StrAppend(&why, "; signed by unknown key ", absl::StrJoin(unknown, ", "),
                    " (not in the trust folder)");
  }
  if (invalid.empty() && unknown.empty() && verified.size() < signatures->size()) {
    absl::StrAppend(&why, "; repeated signatures by one key count once");
  }
  return absl::FailedPreconditionError(why);
}

absl::Status TrustPolicy::CheckRelease(const std::string& dir, const std::string& id,
                                       const BundleManifest& manifest, const Release& accepted) {
  const std::string where = dir.empty() ? "" : absl::StrCat(" in ", dir);
  if (manifest.version < accepted.version) {
    return absl::FailedPreconditionError(absl::StrCat(
        "bundle ", manifest.name, where, " is version ", manifest.version, ", older than version ",
        accepted.version, " already accepted (rollback refused)"));
  }
  if (manifest.version == accepted.version && id != accepted.id) {
    return absl::FailedPreconditionError(
        absl::StrCat("bundle ", manifest.name, where, " is version ", manifest.version,
                     " but not the version ", accepted.version, " already accepted (bundle id ",
                     accepted.id.substr(0, 12), "): a new release needs a higher --version"));
  }
  return absl::OkStatus();
}

absl::Status TrustPolicy::CheckManifest(const std::string& dir, const std::string& id,
                                        const BundleManifest& manifest) const {
  if (!manifest.expires.has_value()) {
    return absl::FailedPreconditionError(
        absl::StrCat("bundle ", manifest.name, " in ", dir,
                     " has no expiry; sign it with `cleave sign --expires`"));
  }
  const absl::Time now = absl::Now();
  if (*manifest.expires + clock_slack_ < now) {
    return absl::FailedPreconditionError(absl::StrCat(
        "bundle ", manifest.name, " in ", dir, " expired at ", FormatExpiry(*manifest.expires),
        " (now ", FormatExpiry(now), ", clock slack ", absl::FormatDuration(clock_slack_), ")"));
  }
  {
    common::MutexLock lock(&mutex_);
    auto accepted = accepted_.find(manifest.name);
    if (accepted != accepted_.end()) {
      CLEAVE_RETURN_IF_ERROR(CheckRelease(dir, id, manifest, accepted->second));
    }
  }
  std::set<std::string> listed = {"manifest.json", kSignaturesFile};
  for (const FileRef* ref : manifest.FileRefs()) {
    if (!ref->size.has_value()) {
      return absl::FailedPreconditionError(
          absl::StrCat("bundle ", manifest.name, " in ", dir, ": the manifest gives no size for ",
                       ref->file, " (written before sizes were recorded: split it again)"));
    }
    listed.insert(fs::path(ref->file).lexically_normal().string());
  }
  CLEAVE_ASSIGN_OR_RETURN(std::vector<std::string> present, ListBundleFolder(dir));
  for (const std::string& file : present) {
    if (listed.count(file) == 0) {
      return absl::FailedPreconditionError(absl::StrCat("bundle ", manifest.name, " in ", dir,
                                                        " holds ", file,
                                                        ", which its manifest does not list"));
    }
  }
  return absl::OkStatus();
}

absl::Status TrustPolicy::Check(const std::string& dir, absl::string_view manifest_json,
                                const BundleManifest& manifest) const {
  CLEAVE_RETURN_IF_ERROR(CheckSignatures(dir, manifest_json));
  return CheckManifest(dir, BundleIdOf(manifest_json), manifest);
}

absl::Status TrustPolicy::Accept(const BundleManifest& manifest, const std::string& id) {
  common::MutexLock lock(&mutex_);
  Release& accepted = accepted_[manifest.name];
  if (accepted.version > 0) {
    absl::Status fits = CheckRelease("", id, manifest, accepted);
    if (!fits.ok()) {
      return absl::FailedPreconditionError(absl::StrCat(fits.message(), " (accepted meanwhile)"));
    }
    if (manifest.version == accepted.version) return absl::OkStatus();  // the same release
  }
  const Release previous = accepted;
  accepted = {manifest.version, id};
  if (absl::Status persisted = Persist(); !persisted.ok()) {
    accepted = previous;  // not persisted: not accepted
    if (accepted.version == 0) accepted_.erase(manifest.name);
    return absl::InternalError(absl::StrCat("cannot record bundle ", manifest.name, " version ",
                                            manifest.version, ": ", persisted.message()));
  }
  return absl::OkStatus();
}

absl::Status TrustPolicy::Persist() const {
  if (state_file_.empty()) return absl::OkStatus();
  json versions = json::object();
  for (const auto& [name, release] : accepted_) {
    versions[name] = {{"version", release.version}, {"id", release.id}};
  }
  return WriteFileAtomically(state_file_,
                             json{{"format", kStateFormat}, {"versions", versions}}.dump(2) + "\n");
}

}  // namespace cleave::common
