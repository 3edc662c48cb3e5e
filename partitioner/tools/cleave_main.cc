// cleave: the model engineer's CLI. Argument parsing and printing only; the work is in
// cleave_partitioner.
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "cleave/common/bundle.h"
#include "cleave/common/files.h"
#include "cleave/common/idx_dataset.h"
#include "cleave/common/progress.h"
#include "cleave/common/status_macros.h"
#include "cleave/common/torchscript_io.h"
#include "cleave/partitioner/bundle_writer.h"
#include "cleave/partitioner/cut_report.h"
#include "cleave/partitioner/model_graph.h"
#include "cleave/partitioner/reference_model.h"

namespace {

using cleave::partitioner::Granularity;

std::vector<std::string> SplitList(const std::string& text) {
  return absl::StrSplit(text, ',', absl::SkipWhitespace());
}

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

absl::Status Split(const std::string& model_path, const std::string& input_shapes,
                   const std::string& cuts, const std::string& out_dir, const std::string& name) {
  CLEAVE_ASSIGN_OR_RETURN(auto shapes, cleave::common::ParseShapes(input_shapes));
  CLEAVE_ASSIGN_OR_RETURN(auto model, cleave::partitioner::ModelGraph::Load(model_path, shapes));
  CLEAVE_ASSIGN_OR_RETURN(std::vector<int> ids, model->ResolveCuts(SplitList(cuts)));
  cleave::partitioner::BundleOptions options;
  options.name = name;
  CLEAVE_ASSIGN_OR_RETURN(auto written,
                          cleave::partitioner::WriteBundle(*model, ids, out_dir, options));
  std::cout << "wrote bundle " << written.dir << " (" << written.num_segments << " segments)\n"
            << "bundle id " << written.id << "\n"
            << "verified: segments in order reproduce " << model_path << ", max abs difference "
            << absl::StrFormat("%.3g", written.max_abs_diff) << "\n";
  return absl::OkStatus();
}

absl::Status Verify(const std::string& dir) {
  CLEAVE_ASSIGN_OR_RETURN(auto bundle, cleave::common::Bundle::Load(dir));
  CLEAVE_ASSIGN_OR_RETURN(double max_diff, bundle->Verify());
  std::cout << dir << ": bundle " << bundle->manifest().name << " id " << bundle->id() << "\n"
            << "hashes ok (" << bundle->manifest().segments.size() << " segments), max abs "
            << "difference " << absl::StrFormat("%.3g", max_diff) << " vs the original model\n";
  return absl::OkStatus();
}

absl::Status TrainReference(const std::string& data_dir, const std::string& out_path, int epochs,
                            uint64_t seed, int64_t limit) {
  CLEAVE_ASSIGN_OR_RETURN(
      auto train, cleave::common::LoadFashionMnist(
                      data_dir, "train", limit > 0 ? std::optional<int64_t>(limit) : std::nullopt));
  CLEAVE_ASSIGN_OR_RETURN(auto test, cleave::common::LoadFashionMnist(data_dir, "t10k"));
  torch::jit::Module model = cleave::partitioner::BuildReferenceModel(seed);
  cleave::partitioner::TrainOptions options;
  options.epochs = epochs;
  options.seed = seed;
  std::unique_ptr<cleave::common::ProgressBar> bar;
  options.on_batch = [&](int epoch, int64_t batch, int64_t batches, double loss, double accuracy) {
    if (batch == 1) {
      bar = std::make_unique<cleave::common::ProgressBar>(
          absl::StrCat("epoch ", epoch + 1, "/", epochs), batches);
    }
    bar->Update(batch, absl::StrFormat("loss %.4f  train acc %.2f%%", loss, 100 * accuracy));
    if (batch == batches) bar->Finish();
  };
  CLEAVE_RETURN_IF_ERROR(cleave::partitioner::TrainClassifier(model, train, options).status());
  CLEAVE_ASSIGN_OR_RETURN(double accuracy, cleave::partitioner::EvaluateAccuracy(model, test));
  CLEAVE_ASSIGN_OR_RETURN(std::string bytes, cleave::common::SaveTorchScriptToBytes(model));
  CLEAVE_RETURN_IF_ERROR(cleave::common::WriteFileAtomically(out_path, bytes));
  std::cout << "test accuracy " << absl::StrFormat("%.2f%%", 100 * accuracy) << " on "
            << test.labels.size(0) << " images; wrote " << out_path << "\n";
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"cleave: cut TorchScript models into segments for split device/edge execution"};
  app.require_subcommand(1);
  absl::Status status;

  std::string model, input_shape, granularity = "module", cuts, out, name, dir, data;
  bool json = false;
  int epochs = 4;
  uint64_t seed = 1;
  int64_t limit = 0;

  auto* inspect = app.add_subcommand("inspect", "list the cut points of a TorchScript model");
  inspect->add_option("model", model, "TorchScript file")->required();
  inspect
      ->add_option("--input-shape", input_shape,
                   "input shape, e.g. 1,3,224,224 (';' between "
                   "several inputs)")
      ->required();
  inspect->add_flag("--json", json, "print JSON for tools");
  inspect->add_option("--granularity", granularity, "module (default) or node")
      ->check(CLI::IsMember({"module", "node"}));
  inspect->callback([&] { status = Inspect(model, input_shape, json, granularity); });

  auto* split = app.add_subcommand("split", "cut a model into a verified bundle");
  split->add_option("model", model, "TorchScript file")->required();
  split->add_option("--input-shape", input_shape, "input shape, e.g. 1,3,224,224")->required();
  split
      ->add_option("--cuts", cuts,
                   "cut ids or names from `cleave inspect`, e.g. 3,7 or "
                   "layer1,layer2")
      ->required();
  split->add_option("-o,--output", out, "bundle folder to write")->required();
  split->add_option("--name", name, "bundle name (default: the model file's stem)");
  split->callback([&] { status = Split(model, input_shape, cuts, out, name); });

  auto* verify = app.add_subcommand("verify", "re-check a bundle's hashes and equivalence");
  verify->add_option("bundle", dir, "bundle folder")->required();
  verify->callback([&] { status = Verify(dir); });

  auto* train = app.add_subcommand("train-reference",
                                   "train the reference Fashion-MNIST model (residual CNN)");
  train->add_option("--data", data, "folder with the Fashion-MNIST IDX files")
      ->default_val(cleave::common::kFashionMnistDir);
  train->add_option("-o,--output", out, "TorchScript file to write")->required();
  train->add_option("--epochs", epochs, "training epochs")
      ->default_val(4)
      ->check(CLI::PositiveNumber);
  train->add_option("--seed", seed, "random seed")->default_val(1);
  train->add_option("--limit", limit, "train on the first N images only (0: all)")->default_val(0);
  train->callback([&] { status = TrainReference(data, out, epochs, seed, limit); });

  CLI11_PARSE(app, argc, argv);
  if (!status.ok()) {
    std::cerr << "cleave: error: " << status.message() << "\n";
    return 1;
  }
  return 0;
}
