// The flags for signed and encrypted bundles every cleave executable takes the same way
// (--trust, --threshold, --trust-state, --clock-slack, --bundle-key): `cleave verify`,
// cleave-edge and cleave-device. Private to the tools (header-only, CLI11).
#ifndef CLEAVE_COMMON_SRC_TRUST_FLAGS_H_
#define CLEAVE_COMMON_SRC_TRUST_FLAGS_H_

#include <string>

#include "CLI/CLI.hpp"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "cleave/common/trust.h"
#include "cleave/common/units.h"

namespace cleave::common {

struct TrustFlags {
  std::string dir, state_file, clock_slack = "0", bundle_key;
  int threshold = 1;

  // Registers the flags on `app`.
  void AddTo(CLI::App& app) {
    app.add_option("--trust", dir,
                   "folder of trusted public keys (*.pub): refuse unsigned bundles");
    app.add_option("--threshold", threshold, "distinct trusted keys that must have signed")
        ->default_val(threshold)
        ->check(CLI::PositiveNumber);
    app.add_option("--trust-state", state_file,
                   "file recording the highest version accepted per bundle name (rollback)");
    app.add_option("--clock-slack", clock_slack,
                   "accept a bundle expired less than this long ago (e.g. 1h)")
        ->default_val(clock_slack);
    app.add_option("--bundle-key", bundle_key,
                   "key file opening encrypted bundles (cleave keygen --bundle-key, mode 0600)");
  }

  // Folds the flags into `options` and `bundle_key_file` (those not given on the command line
  // keep what they hold).
  absl::Status ApplyTo(const CLI::App& app, TrustOptions* options,
                       std::string* bundle_key_file) const {
    if (app.count("--bundle-key") > 0) *bundle_key_file = bundle_key;
    if (app.count("--trust") > 0) options->dir = dir;
    if (app.count("--threshold") > 0) options->threshold = threshold;
    if (app.count("--trust-state") > 0) options->state_file = state_file;
    if (app.count("--clock-slack") > 0) {
      auto slack = ParseDuration(clock_slack);
      if (!slack.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("--clock-slack: ", slack.status().message()));
      }
      options->clock_slack = absl::FromChrono(*slack);
    }
    if (!options->enabled() && (app.count("--threshold") > 0 || app.count("--trust-state") > 0)) {
      return absl::InvalidArgumentError("--threshold and --trust-state need --trust");
    }
    return absl::OkStatus();
  }
};

}  // namespace cleave::common

#endif  // CLEAVE_COMMON_SRC_TRUST_FLAGS_H_
