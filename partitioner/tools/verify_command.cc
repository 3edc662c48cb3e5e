// `cleave verify BUNDLE`: re-check a bundle's hashes and that its segments reproduce the model.
#include <iostream>

#include "absl/strings/str_format.h"
#include "cleave/common/bundle.h"
#include "cleave/common/status_macros.h"
#include "partitioner/tools/commands.h"

namespace cleave::cli {
namespace {

absl::Status Verify(const std::string& dir) {
  CLEAVE_ASSIGN_OR_RETURN(auto bundle, cleave::common::Bundle::Load(dir));
  CLEAVE_ASSIGN_OR_RETURN(double max_diff, bundle->Verify());
  std::cout << dir << ": bundle " << bundle->manifest().name << " id " << bundle->id() << "\n"
            << "hashes ok (" << bundle->manifest().segments.size() << " segments), max abs "
            << "difference " << absl::StrFormat("%.3g", max_diff) << " vs the original model\n";
  return absl::OkStatus();
}

}  // namespace

void AddVerifyCommand(CLI::App& app, absl::Status* status) {
  auto dir = std::make_shared<std::string>();
  auto* verify = app.add_subcommand("verify", "re-check a bundle's hashes and equivalence");
  verify->add_option("bundle", *dir, "bundle folder")->required();
  verify->callback([dir, status] { *status = Verify(*dir); });
}

}  // namespace cleave::cli
