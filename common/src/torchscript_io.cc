#include "cleave/common/torchscript_io.h"

#include <c10/core/Allocator.h>
#include <c10/util/ThreadLocalDebugInfo.h>

#include <algorithm>
#include <filesystem>
#include <memory>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "cleave/common/files.h"
#include "cleave/common/status_macros.h"

namespace cleave::common {

absl::StatusOr<torch::jit::Module> LoadTorchScript(const std::string& path) {
  CLEAVE_ASSIGN_OR_RETURN(std::string bytes, ReadFile(path));
  return LoadTorchScriptFromBytes(bytes, path);
}

absl::StatusOr<torch::jit::Module> LoadTorchScriptFromBytes(const std::string& bytes,
                                                            absl::string_view name) {
  if (bytes.size() < 4 || bytes.compare(0, 2, "PK") != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        name, " is not a TorchScript file: expected a zip archive written by torch.jit.save"));
  }
  return GuardTorch(absl::StatusCode::kInvalidArgument,
                    absl::StrCat(name, " is not a loadable TorchScript file"), [&] {
                      std::istringstream in(bytes);
                      torch::jit::Module module = torch::jit::load(in, torch::kCPU);
                      module.eval();
                      return module;
                    });
}

absl::StatusOr<std::string> SaveTorchScriptToBytes(const torch::jit::Module& module) {
  return GuardTorch(absl::StatusCode::kInternal, "saving TorchScript module", [&] {
    std::ostringstream out;
    module.save(out);
    return std::move(out).str();
  });
}

torch::jit::Module OptimizeForInference(torch::jit::Module module) {
  try {
    // The passes rewrite the module's graph in place: work on a copy so a failure half-way
    // leaves the original untouched.
    torch::jit::Module copy = module.clone();
    return torch::jit::optimize_for_inference(copy);
  } catch (const std::exception&) {  // c10::Error included: keep the module as it was
    return module;
  }
}

absl::Status FlattenTensors(const c10::IValue& value, std::vector<at::Tensor>* tensors) {
  if (value.isTensor()) {
    tensors->push_back(value.toTensor());
  } else if (value.isTuple()) {
    for (const c10::IValue& element : value.toTupleRef().elements()) {
      CLEAVE_RETURN_IF_ERROR(FlattenTensors(element, tensors));
    }
  } else if (value.isList()) {
    for (const c10::IValue& element : value.toListRef()) {
      CLEAVE_RETURN_IF_ERROR(FlattenTensors(element, tensors));
    }
  } else if (value.isGenericDict()) {
    for (const auto& entry : value.toGenericDict()) {
      CLEAVE_RETURN_IF_ERROR(FlattenTensors(entry.value(), tensors));
    }
  } else if (value.isInt()) {
    tensors->push_back(at::scalar_tensor(value.toInt(), at::kLong));
  } else if (value.isDouble()) {
    tensors->push_back(at::scalar_tensor(value.toDouble(), at::kDouble));
  } else if (value.isBool()) {
    tensors->push_back(at::scalar_tensor(value.toBool(), at::kBool));
  } else if (!value.isNone()) {
    return absl::InvalidArgumentError(
        absl::StrCat("model output of type ", value.tagKind(), " has no tensor form"));
  }
  return absl::OkStatus();
}

namespace {

// Receives this thread's allocations and frees (negative sizes) while installed.
class PeakMeter final : public c10::MemoryReportingInfoBase {
 public:
  void reportMemoryUsage(void* /*ptr*/, int64_t bytes, int64_t /*total_allocated*/,
                         int64_t /*total_reserved*/, c10::Device /*device*/) override {
    live_ += bytes;
    peak_ = std::max(peak_, live_);
  }
  bool memoryProfilingEnabled() const override { return true; }
  int64_t peak() const { return peak_; }

 private:
  int64_t live_ = 0;
  int64_t peak_ = 0;
};

}  // namespace

int64_t PeakTensorBytes(const std::function<void()>& work) {
  auto meter = std::make_shared<PeakMeter>();
  {
    c10::DebugInfoGuard guard(c10::DebugInfoKind::PROFILER_STATE, meter);
    work();
  }
  return meter->peak();
}

}  // namespace cleave::common
