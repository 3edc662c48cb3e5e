// `cleave train-reference -o MODEL [--data D] [--epochs N] [--seed S] [--limit N]`: train the
// reference Fashion-MNIST model (a residual CNN) and save it as TorchScript.
#include <iostream>
#include <memory>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cleave/common/files.h"
#include "cleave/common/idx_dataset.h"
#include "cleave/common/progress.h"
#include "cleave/common/status_macros.h"
#include "cleave/common/torchscript_io.h"
#include "cleave/partitioner/reference_model.h"
#include "partitioner/tools/commands.h"

namespace cleave::cli {
namespace {

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

void AddTrainReferenceCommand(CLI::App& app, absl::Status* status) {
  struct Flags {
    std::string data, out;
    int epochs = 4;
    uint64_t seed = 1;
    int64_t limit = 0;
  };
  auto flags = std::make_shared<Flags>();
  auto* train = app.add_subcommand("train-reference",
                                   "train the reference Fashion-MNIST model (residual CNN)");
  train->add_option("--data", flags->data, "folder with the Fashion-MNIST IDX files")
      ->default_val(cleave::common::kFashionMnistDir);
  train->add_option("-o,--output", flags->out, "TorchScript file to write")->required();
  train->add_option("--epochs", flags->epochs, "training epochs")
      ->default_val(4)
      ->check(CLI::PositiveNumber);
  train->add_option("--seed", flags->seed, "random seed")->default_val(1);
  train->add_option("--limit", flags->limit, "train on the first N images only (0: all)")
      ->default_val(0);
  train->callback([flags, status] {
    *status = TrainReference(flags->data, flags->out, flags->epochs, flags->seed, flags->limit);
  });
}

}  // namespace cleave::cli
