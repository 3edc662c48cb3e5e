// `cleave verify BUNDLE [--trust DIR --threshold K --trust-state F --clock-slack D] [--bundle-key
// F]`: re-check a
// bundle's sizes, hashes and that its segments reproduce the model; with a trust folder, its
// signatures, expiry and version the way device and edge check them.
#include <iostream>

#include "absl/strings/str_format.h"
#include "cleave/common/bundle.h"
#include "cleave/common/status_macros.h"
#include "common/src/trust_flags.h"
#include "partitioner/tools/commands.h"

namespace cleave::cli {
namespace {

absl::Status Verify(const std::string& dir, const common::TrustOptions& trust,
                    const std::string& key_file) {
  common::Bundle::LoadOptions load;
  if (!key_file.empty()) {
    CLEAVE_ASSIGN_OR_RETURN(load.key, common::BundleKey::Read(key_file));
  }
  if (trust.enabled()) {
    CLEAVE_ASSIGN_OR_RETURN(load.trust, common::TrustPolicy::Create(trust));
  }
  CLEAVE_ASSIGN_OR_RETURN(auto bundle, common::Bundle::Load(dir, load));
  CLEAVE_ASSIGN_OR_RETURN(double max_diff, bundle->Verify());
  std::cout << dir << ": bundle " << bundle->manifest().name << " version "
            << bundle->manifest().version << " id " << bundle->id() << "\n";
  if (load.key != nullptr) {
    std::cout << "encrypted files opened with key id " << load.key->id() << "\n";
  }
  if (load.trust != nullptr) {
    std::cout << "signatures ok (threshold " << load.trust->threshold() << " of "
              << load.trust->num_keys() << " trusted keys), expires "
              << common::FormatExpiry(*bundle->manifest().expires) << "\n";
  }
  std::cout << "hashes ok (" << bundle->manifest().segments.size() << " segments), max abs "
            << "difference " << absl::StrFormat("%.3g", max_diff) << " vs the original model\n";
  return absl::OkStatus();
}

}  // namespace

void AddVerifyCommand(CLI::App& app, absl::Status* status) {
  auto dir = std::make_shared<std::string>();
  auto flags = std::make_shared<common::TrustFlags>();
  auto* verify =
      app.add_subcommand("verify", "re-check a bundle's hashes, equivalence and signatures");
  verify->add_option("bundle", *dir, "bundle folder")->required();
  flags->AddTo(*verify);
  verify->callback([verify, dir, flags, status] {
    common::TrustOptions trust;
    std::string key_file;
    *status = flags->ApplyTo(*verify, &trust, &key_file);
    if (status->ok()) *status = Verify(*dir, trust, key_file);
  });
}

}  // namespace cleave::cli
