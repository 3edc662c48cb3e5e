// `cleave inspect MODEL --input-shape S [--granularity module|node] [--json]`: the cut points
// of a TorchScript model.
#include <iostream>

#include "cleave/common/status_macros.h"
#include "cleave/common/tensor_spec.h"
#include "cleave/partitioner/cut_report.h"
#include "cleave/partitioner/model_graph.h"
#include "partitioner/tools/commands.h"

namespace cleave::cli {
namespace {

using partitioner::Granularity;

absl::Status Inspect(const std::string& model_path, const std::string& input_shapes, bool json,
                     const std::string& granularity) {
  CLEAVE_ASSIGN_OR_RETURN(auto shapes, cleave::common::ParseShapes(input_shapes));
  CLEAVE_ASSIGN_OR_RETURN(auto model, cleave::partitioner::ModelGraph::Load(model_path, shapes));
  const auto cuts = model->Cuts(granularity == "node" ? Granularity::kNode : Granularity::kModule);
  if (json) {
    std::cout << cleave::partitioner::CutsToJson(*model, cuts);
    return absl::OkStatus();
  }
  std::cout << model_path << ": " << cuts.size() << " cut points (" << granularity
            << " granularity)\n"
            << cleave::partitioner::CutsToTable(cuts);
  if (cuts.size() <= 1) {
    std::cout << "no cut inside the model at " << granularity << " granularity"
              << (granularity == "module" ? "; try --granularity node" : "") << "\n";
  }
  return absl::OkStatus();
}

}  // namespace

void AddInspectCommand(CLI::App& app, absl::Status* status) {
  struct Flags {
    std::string model, input_shape, granularity = "module";
    bool json = false;
  };
  auto flags = std::make_shared<Flags>();
  auto* inspect = app.add_subcommand("inspect", "list the cut points of a TorchScript model");
  inspect->add_option("model", flags->model, "TorchScript file")->required();
  inspect
      ->add_option("--input-shape", flags->input_shape,
                   "input shape, e.g. 1,3,224,224 (';' between "
                   "several inputs)")
      ->required();
  inspect->add_flag("--json", flags->json, "print JSON for tools");
  inspect->add_option("--granularity", flags->granularity, "module (default) or node")
      ->check(CLI::IsMember({"module", "node"}));
  inspect->callback([flags, status] {
    *status = Inspect(flags->model, flags->input_shape, flags->json, flags->granularity);
  });
}

}  // namespace cleave::cli
