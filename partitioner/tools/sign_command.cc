// `cleave keygen --out DIR/NAME [--bundle-key]`, `cleave encrypt BUNDLE --key-file F` and
// `cleave sign BUNDLE --key NAME.key [--version N] [--expires TIME | --expires-in DURATION]`:
// Ed25519 signing keys, bundle encryption keys, encrypted files and signatures
// (common/trust.h, common/bundle_crypto.h, partitioner/bundle_signing.h, docs/SECURITY.md).
#include <iostream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "cleave/common/manifest.h"
#include "cleave/common/status_macros.h"
#include "cleave/common/trust.h"
#include "cleave/common/units.h"
#include "cleave/partitioner/bundle_signing.h"
#include "partitioner/tools/commands.h"

namespace cleave::cli {
namespace {

absl::Status Keygen(const std::string& out, bool bundle_key) {
  if (bundle_key) {
    CLEAVE_ASSIGN_OR_RETURN(auto key, common::BundleKey::Generate(out + ".aeskey"));
    std::cout << "wrote " << key->path() << " (AES-256 bundle key, mode 0600)\nkey id " << key->id()
              << "\n";
    return absl::OkStatus();
  }
  CLEAVE_ASSIGN_OR_RETURN(std::string keyid, common::GenerateSigningKey(out));
  std::cout << "wrote " << out << ".key (private, mode 0600) and " << out << ".pub\n"
            << "key id " << keyid << "\n";
  return absl::OkStatus();
}

absl::Status Encrypt(const std::string& bundle, const std::string& key_file) {
  CLEAVE_ASSIGN_OR_RETURN(auto key, common::BundleKey::Read(key_file));
  CLEAVE_ASSIGN_OR_RETURN(partitioner::EncryptedBundle encrypted,
                          partitioner::EncryptBundle(bundle, *key));
  std::cout << bundle << ": " << encrypted.num_files << " files encrypted with key id " << key->id()
            << ", bundle id " << encrypted.id << "\n";
  return absl::OkStatus();
}

struct SignFlags {
  std::string bundle, bundle_key;
  std::vector<std::string> keys;
  uint64_t version = 0;  // 0: keep the manifest's
  std::string expires, expires_in;
};

// "90d" as days, anything else as ParseDuration reads it ("36h", "30m").
absl::StatusOr<absl::Duration> ParseValidity(const std::string& text) {
  int64_t days = 0;
  if (!text.empty() && text.back() == 'd' &&
      absl::SimpleAtoi(absl::string_view(text).substr(0, text.size() - 1), &days) && days > 0) {
    return absl::Hours(24 * days);
  }
  CLEAVE_ASSIGN_OR_RETURN(std::chrono::nanoseconds duration, common::ParseDuration(text));
  return absl::FromChrono(duration);
}

absl::Status Sign(const SignFlags& flags) {
  partitioner::SignOptions options;
  options.key_files = flags.keys;
  if (!flags.bundle_key.empty()) {
    CLEAVE_ASSIGN_OR_RETURN(options.key, common::BundleKey::Read(flags.bundle_key));
  }
  if (flags.version > 0) options.version = flags.version;
  if (!flags.expires.empty()) {
    absl::Time expires;
    std::string error;
    if (!absl::ParseTime(absl::RFC3339_full, flags.expires, &expires, &error)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--expires '", flags.expires, "' is not an RFC 3339 time such as 2027-06-01T00:00:00Z"));
    }
    options.expires = expires;
  }
  if (!flags.expires_in.empty()) {
    CLEAVE_ASSIGN_OR_RETURN(absl::Duration validity, ParseValidity(flags.expires_in));
    options.expires = absl::Now() + validity;
  }
  CLEAVE_ASSIGN_OR_RETURN(partitioner::SignedBundle signed_bundle,
                          partitioner::SignBundle(flags.bundle, options));
  if (signed_bundle.dropped_signatures > 0) {
    std::cout << "manifest changed: " << signed_bundle.dropped_signatures
              << " earlier signature(s) dropped (they signed the old bytes)\n";
  }
  for (const std::string& keyid : signed_bundle.keyids) {
    std::cout << "signed with key " << keyid.substr(0, 16) << "\n";
  }
  std::cout << flags.bundle << ": version " << signed_bundle.version << ", expires "
            << common::FormatExpiry(signed_bundle.expires) << ", " << signed_bundle.num_signatures
            << " signature(s), bundle id " << signed_bundle.id << "\n";
  return absl::OkStatus();
}

}  // namespace

void AddKeygenCommand(CLI::App& app, absl::Status* status) {
  auto out = std::make_shared<std::string>();
  auto bundle_key = std::make_shared<bool>(false);
  auto* keygen = app.add_subcommand("keygen", "make a signing key pair or a bundle key");
  keygen
      ->add_option("--out", *out,
                   "DIR/NAME: writes NAME.key (mode 0600) and NAME.pub, or NAME.aeskey")
      ->required();
  keygen->add_flag("--bundle-key", *bundle_key,
                   "an AES-256 key for cleave encrypt instead of a signing key");
  keygen->callback([out, bundle_key, status] { *status = Keygen(*out, *bundle_key); });
}

void AddEncryptCommand(CLI::App& app, absl::Status* status) {
  auto bundle = std::make_shared<std::string>();
  auto key_file = std::make_shared<std::string>();
  auto* encrypt = app.add_subcommand("encrypt", "encrypt a bundle's segment and exit files");
  encrypt->add_option("bundle", *bundle, "bundle folder")->required();
  encrypt->add_option("--key-file", *key_file, "bundle key (cleave keygen --bundle-key)")
      ->required();
  encrypt->callback([bundle, key_file, status] { *status = Encrypt(*bundle, *key_file); });
}

void AddSignCommand(CLI::App& app, absl::Status* status) {
  auto flags = std::make_shared<SignFlags>();
  auto* sign = app.add_subcommand("sign", "add signatures to a bundle's signatures.json");
  sign->add_option("bundle", flags->bundle, "bundle folder")->required();
  sign->add_option("--key", flags->keys, "private key (NAME.key); repeatable")->required();
  sign->add_option("--bundle-key", flags->bundle_key,
                   "key of an encrypted bundle, to check its files before signing");
  sign->add_option("--version", flags->version,
                   "set the bundle's version (only ever increases per bundle name)")
      ->check(CLI::PositiveNumber);
  auto* expires = sign->add_option("--expires", flags->expires,
                                   "set the expiry, RFC 3339 (2027-06-01T00:00:00Z)");
  sign->add_option("--expires-in", flags->expires_in, "set the expiry this far ahead (90d, 36h)")
      ->excludes(expires);
  sign->callback([flags, status] { *status = Sign(*flags); });
}

}  // namespace cleave::cli
