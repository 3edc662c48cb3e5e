#include "tests/support/test_support.h"

#include <ATen/CPUGeneratorImpl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <memory>
#include <random>
#include <sstream>
#include <thread>

#include "cleave/common/bundle.h"
#include "cleave/common/files.h"
#include "cleave/common/frame_codec.h"
#include "cleave/common/torchscript_io.h"
#include "cleave/partitioner/bundle_writer.h"
#include "cleave/partitioner/exit_heads.h"
#include "cleave/partitioner/script_modules.h"
#include "gtest/gtest.h"
#include "zstd.h"

namespace cleave::test {
namespace {

namespace fs = std::filesystem;
using torch::jit::Module;

at::Generator& Generator() {
  static at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(7);
  return generator;
}

Module Conv(int64_t in, int64_t out, bool relu) {
  return partitioner::ScriptConvBn(in, out, 3, 1, relu, Generator());
}

Module Residual(int64_t channels) {
  return partitioner::ScriptResidualBlock(channels, channels, 1, Generator());
}

Module Linear(int64_t in, int64_t out) { return partitioner::ScriptLinear(in, out, Generator()); }

// A model with the standard stem (3 -> 8 channels) and classifier (8 -> 10), whose middle is
// `source`.
Module WithStemAndHead(const std::string& name, const std::string& source) {
  Module module = partitioner::NewScriptModule(name);
  module.register_module("stem", Conv(3, 8, true));
  module.register_module("fc", Linear(8, 10));
  module.define(source);
  module.eval();
  return module;
}

}  // namespace

TempDir::TempDir() {
  static std::mt19937_64 random(std::random_device{}());
  const fs::path base = fs::temp_directory_path();
  do {
    path_ = (base / ("cleave_test_" + std::to_string(getpid()) + "_" +
                     std::to_string(random() % 1000000000)))
                .string();
  } while (fs::exists(path_));
  fs::create_directories(path_);
}

TempDir::~TempDir() {
  std::error_code error;
  fs::remove_all(path_, error);
}

std::string TempDir::File(const std::string& name) const {
  return (fs::path(path_) / name).string();
}

Module ResidualModel() {
  Module module = partitioner::NewScriptModule("ResidualNet");
  module.register_module("stem", Conv(3, 8, true));
  module.register_module("block1", Residual(8));
  module.register_module("block2", Residual(8));
  module.register_module("fc", Linear(8, 10));
  module.define(R"(
def forward(self, x):
    x = self.stem.forward(x)
    x = self.block1.forward(x)
    x = self.block2.forward(x)
    return self.fc.forward(torch.mean(x, [2, 3]))
)");
  module.eval();
  return module;
}

Module ConcatModel() {
  Module module = partitioner::NewScriptModule("ConcatNet");
  module.register_module("stem", Conv(3, 8, true));
  module.register_module("left", Conv(8, 4, true));
  module.register_module("right", Conv(8, 4, true));
  module.register_module("mix", Conv(8, 8, true));
  module.register_module("fc", Linear(8, 10));
  module.define(R"(
def forward(self, x):
    h = self.stem.forward(x)
    a = self.left.forward(h)
    b = self.right.forward(h)
    y = self.mix.forward(torch.cat([a, b], 1))
    return self.fc.forward(torch.mean(y, [2, 3]))
)");
  module.eval();
  return module;
}

Module TupleOutputModel() {
  return WithStemAndHead("TupleNet", R"(
def forward(self, x):
    h = self.stem.forward(x)
    features = torch.mean(h, [2, 3])
    return (self.fc.forward(features), (features, features.sum()))
)");
}

Module DictOutputModel() {
  return WithStemAndHead("DictNet", R"(
def forward(self, x) -> Dict[str, Tensor]:
    h = self.stem.forward(x)
    features = torch.mean(h, [2, 3])
    return {"logits": self.fc.forward(features), "features": features}
)");
}

Module ControlFlowModel() {
  return WithStemAndHead("BranchNet", R"(
def forward(self, x):
    h = self.stem.forward(x)
    if bool(h.mean() > 0.5):
        y = h * 2.0
    else:
        y = h - 1.0
    return self.fc.forward(torch.mean(y, [2, 3]))
)");
}

Module ShapeCheckModel() {
  return WithStemAndHead("CheckNet", R"(
def forward(self, x):
    assert x.dim() == 4, "want NCHW"
    h = self.stem.forward(x)
    assert h.dim() >= 3, "want spatial dimensions"
    return self.fc.forward(torch.mean(h, [2, 3]))
)");
}

Module SingleOpModel() {
  Module module = partitioner::NewScriptModule("SingleOp");
  module.define(R"(
def forward(self, x):
    return x * 2.0
)");
  module.eval();
  return module;
}

Module FunnelModel() {
  Module module = partitioner::NewScriptModule("FunnelNet");
  module.register_module("stem", Conv(3, 32, true));
  module.register_module("mid", Conv(32, 32, true));
  module.register_module("fc", Linear(32, 10));
  module.define(R"(
def forward(self, x):
    h = self.stem.forward(x)
    p = torch.max_pool2d(h, [4, 4])
    y = self.mid.forward(p)
    return self.fc.forward(torch.mean(y, [2, 3]))
)");
  module.eval();
  return module;
}

std::string WriteTestBundle(const Module& module, const std::string& dir, const std::string& bundle,
                            const std::vector<std::string>& cut_names,
                            const std::vector<int64_t>& input_shape) {
  const std::string model_path = SaveModel(module, (fs::path(dir) / "model.pt").string());
  auto model = partitioner::ModelGraph::Load(model_path, {input_shape});
  EXPECT_TRUE(model.ok()) << model.status();
  if (!model.ok()) return "";
  std::vector<int> ids;
  for (const std::string& name : cut_names) {
    for (const auto& cut : (*model)->Cuts(partitioner::Granularity::kNode)) {
      if (cut.info.name == name) ids.push_back(cut.info.id);
    }
  }
  EXPECT_EQ(ids.size(), cut_names.size()) << "unknown cut name";
  // Bundles are named after their folder, skipping a version folder: "bundles/residual/1" is
  // model "residual".
  fs::path folder(bundle);
  std::string name = folder.filename().string();
  if (!name.empty() && std::all_of(name.begin(), name.end(), ::isdigit)) {
    name = folder.parent_path().filename().string();
  }
  partitioner::BundleOptions options;
  options.name = name;
  auto written = partitioner::WriteBundle(**model, ids, (fs::path(dir) / bundle).string(), options);
  EXPECT_TRUE(written.ok()) << written.status();
  return written.ok() ? written->id : "";
}

common::BundleManifest ReadManifest(const std::string& bundle_dir) {
  const std::string path = (fs::path(bundle_dir) / "manifest.json").string();
  auto text = common::ReadFile(path);
  EXPECT_TRUE(text.ok()) << text.status();
  if (!text.ok()) return {};
  auto manifest = common::BundleManifest::FromJson(*text, path);
  EXPECT_TRUE(manifest.ok()) << manifest.status();
  return manifest.ok() ? *std::move(manifest) : common::BundleManifest();
}

void AddUntrainedExit(const std::string& bundle_dir, double threshold) {
  const common::CutInfo cut = ReadManifest(bundle_dir).cuts.front();
  at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(3);
  auto head = partitioner::BuildExitHead(partitioner::HeadKind::kPoolLinear, cut.tensor.shape, 10,
                                         generator);
  ASSERT_TRUE(head.ok()) << head.status();
  ASSERT_TRUE(partitioner::AddExitsToBundle(bundle_dir, {cut.id}, {*head},
                                            partitioner::HeadKind::kPoolLinear)
                  .ok());
  common::BundleManifest manifest = ReadManifest(bundle_dir);
  manifest.exits.front().threshold = threshold;
  ASSERT_TRUE(partitioner::RewriteManifest(bundle_dir, manifest).ok());
}

std::string SaveModel(const Module& module, const std::string& path) {
  module.save(path);
  return path;
}

std::vector<at::Tensor> RunFlat(Module module, const at::Tensor& input) {
  c10::InferenceMode inference;
  std::vector<at::Tensor> tensors;
  const absl::Status status = common::FlattenTensors(module.forward({input}), &tensors);
  TORCH_CHECK(status.ok(), std::string(status.message()));
  return tensors;
}

CommandResult RunCommand(const std::string& command, bool merge_stderr) {
  CommandResult result;
  FILE* pipe = popen((merge_stderr ? command + " 2>&1" : command).c_str(), "r");
  if (pipe == nullptr) return result;
  char buffer[4096];
  size_t read = 0;
  while ((read = fread(buffer, 1, sizeof(buffer), pipe)) > 0) result.output.append(buffer, read);
  const int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

std::string BinaryPath(const std::string& name) {
  return (fs::path(CLEAVE_BINARY_DIR) / name).string();
}

std::chrono::milliseconds SchedulingMargin() {
  static const std::chrono::milliseconds margin = [] {
    std::chrono::steady_clock::duration latest{0};
    for (int i = 0; i < 200; ++i) {
      const auto start = std::chrono::steady_clock::now();
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      latest =
          std::max(latest, std::chrono::steady_clock::now() - start - std::chrono::milliseconds(1));
    }
    const auto computed =
        std::chrono::milliseconds(20) + 10 * std::chrono::ceil<std::chrono::milliseconds>(latest);
    std::cerr << "scheduling margin " << computed.count() << " ms (latest 1 ms sleep woke "
              << std::chrono::duration<double, std::milli>(latest).count() << " ms late)\n";
    return computed;
  }();
  return margin;
}

void AbortStuckTest(const std::string& why) {
  ADD_FAILURE() << why;
  std::cout << std::flush;
  std::cerr << "aborting the test process: " << why << std::endl;
  std::_Exit(1);
}

std::string CompressedZerosFrame(const std::vector<int64_t>& shape) {
  uint64_t elements = 1;
  for (int64_t dim : shape) elements *= static_cast<uint64_t>(dim);
  const uint64_t symbol_bytes = 4 * elements;
  std::unique_ptr<ZSTD_CCtx, size_t (*)(ZSTD_CCtx*)> context(ZSTD_createCCtx(), ZSTD_freeCCtx);
  ZSTD_CCtx_setParameter(context.get(), ZSTD_c_compressionLevel, 1);
  ZSTD_CCtx_setPledgedSrcSize(context.get(), symbol_bytes);  // declares the content size
  const std::string zeros(1 << 20, '\0');
  std::string payload;
  std::string buffer(ZSTD_CStreamOutSize(), '\0');
  for (uint64_t done = 0; done < symbol_bytes || payload.empty();) {
    const size_t piece = static_cast<size_t>(std::min<uint64_t>(zeros.size(), symbol_bytes - done));
    done += piece;
    ZSTD_inBuffer in{zeros.data(), piece, 0};
    const ZSTD_EndDirective mode = done == symbol_bytes ? ZSTD_e_end : ZSTD_e_continue;
    size_t left = 0;
    do {
      ZSTD_outBuffer out{buffer.data(), buffer.size(), 0};
      left = ZSTD_compressStream2(context.get(), &out, &in, mode);
      EXPECT_FALSE(ZSTD_isError(left)) << ZSTD_getErrorName(left);
      if (ZSTD_isError(left)) return "";
      payload.append(buffer.data(), out.pos);
    } while (mode == ZSTD_e_end ? left != 0 : in.pos < in.size);
  }
  // The header as docs/FRAME_FORMAT.md gives it: raw codec, zstd, float32.
  std::string frame(32 + 8 * shape.size(), '\0');
  auto put = [&](size_t offset, auto value) { std::memcpy(&frame[offset], &value, sizeof(value)); };
  frame.replace(0, 4, "CLVF");
  put(4, uint8_t{1});
  put(5, static_cast<uint8_t>(common::Codec::kRaw));
  put(6, uint8_t{1});
  put(7, static_cast<uint8_t>(common::FrameDtype::kFloat32));
  put(8, static_cast<uint8_t>(shape.size()));
  put(16, symbol_bytes);
  put(24, static_cast<uint64_t>(payload.size()));
  for (size_t i = 0; i < shape.size(); ++i) put(32 + 8 * i, shape[i]);
  frame += payload;
  put(12, common::FrameChecksum(frame));
  return frame;
}

ProcessMemory ReadProcessMemory(int pid) {
  ProcessMemory memory;
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string key;
  uint64_t kib = 0;
  while (in >> key) {
    uint64_t* field = key == "VmRSS:"    ? &memory.rss
                      : key == "VmHWM:"  ? &memory.peak_rss
                      : key == "VmSize:" ? &memory.size
                      : key == "VmPeak:" ? &memory.peak_size
                                         : nullptr;
    if (field != nullptr && in >> kib) *field = kib * 1024;
    in.ignore(std::numeric_limits<std::streamsize>::max(), '\n');
  }
  return memory;
}

void ResetPeakRss(int pid) {
  std::ofstream clear("/proc/" + std::to_string(pid) + "/clear_refs");
  clear << "5";  // resets VmHWM to VmRSS (Linux 4.0+)
  EXPECT_TRUE(clear.good()) << "cannot reset the peak resident size of process " << pid;
}

int StartProcess(std::vector<std::string> args, const std::string& log_file,
                 uint64_t address_space_limit) {
  const int parent = getpid();
  const int pid = fork();
  if (pid == 0) {
    // The child dies with the test (the forking thread, which is the test's), also when a
    // stuck test ends itself with AbortStuckTest or the watchdog: no edge outlives its test.
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent) _exit(125);
    FILE* log = std::freopen(log_file.c_str(), "w", stdout);
    if (log == nullptr) _exit(127);
    dup2(fileno(stdout), fileno(stderr));
    if (address_space_limit > 0) {
      const rlimit limit{address_space_limit, address_space_limit};
      if (setrlimit(RLIMIT_AS, &limit) != 0) _exit(126);
    }
    std::vector<char*> argv;
    for (std::string& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  EXPECT_GT(pid, 0) << "cannot fork for " << args[0];
  return pid;
}

void KillProcess(int pid) {
  if (pid <= 0) return;
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
}

EdgeProcess::EdgeProcess(const std::string& bundles_dir, const std::vector<std::string>& flags,
                         uint64_t address_space_limit) {
  const std::string port_file = dir_.File("port");
  std::vector<std::string> args = {BinaryPath("cleave-edge"),
                                   "--bundles",
                                   bundles_dir,
                                   "--listen",
                                   "127.0.0.1:0",
                                   "--port-file",
                                   port_file};
  args.insert(args.end(), flags.begin(), flags.end());
  pid_ = StartProcess(std::move(args), dir_.File("log"), address_space_limit);
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < give_up) {
    std::ifstream in(port_file);
    if (in >> port_ && port_ > 0) return;
    port_ = 0;
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

EdgeProcess::~EdgeProcess() { Stop(); }

int EdgeProcess::Stop() {
  if (pid_ <= 0) return -1;
  kill(pid_, SIGTERM);
  int status = 0;
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < give_up) {
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      port_ = 0;
      return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  kill(pid_, SIGKILL);
  waitpid(pid_, &status, 0);
  pid_ = -1;
  return -1;
}

void EdgeProcess::Kill() {
  KillProcess(pid_);
  pid_ = -1;
  port_ = 0;
}

std::string EdgeProcess::Log() const {
  std::ifstream in(dir_.File("log"));
  std::stringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

}  // namespace cleave::test
