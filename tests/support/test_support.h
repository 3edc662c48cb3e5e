// Shared test fixtures: small TorchScript models with the graph shapes cut discovery must
// handle (residual, concat, tuple/dict outputs, control flow, no cut at all), temporary
// folders, and running the project's executables as real processes.
#ifndef CLEAVE_TESTS_SUPPORT_TEST_SUPPORT_H_
#define CLEAVE_TESTS_SUPPORT_TEST_SUPPORT_H_

#include <torch/script.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "cleave/common/manifest.h"

namespace cleave::test {

// A fresh folder under the test temp dir, removed on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  // Returns path()/name.
  std::string File(const std::string& name) const;

 private:
  std::string path_;
};

// Model builders. Each takes float32 [N, 3, 8, 8] images (seeded weights).
torch::jit::Module ResidualModel();     // stem, two residual blocks, pooled linear -> [N, 10]
torch::jit::Module ConcatModel();       // two branches from one tensor, concatenated -> [N, 10]
torch::jit::Module TupleOutputModel();  // -> (logits [N, 10], (features [N, 8], scalar))
torch::jit::Module DictOutputModel();   // -> {"logits": [N, 10], "features": [N, 8]}
torch::jit::Module ControlFlowModel();  // an if/else on a tensor value inside the model
// Shape checks (an If that raises) on the input and between stem and head, as functionals
// such as adaptive_avg_pool2d inline them.
torch::jit::Module ShapeCheckModel();
torch::jit::Module SingleOpModel();  // x * 2: no cut inside
// Takes [N, 3, 32, 32]: a wide stem (32 x 32 x 32, larger than the input), a pool that
// shrinks it 16-fold ("pool"), a conv ("mid") and a pooled linear -> [N, 10]. Where to split
// it depends on the link, as for real CNNs.
torch::jit::Module FunnelModel();

// Saves `module` to `dir`/model.pt, splits it at the cuts named `cut_names` (node
// granularity names such as "stem", "block1") into the bundle folder `dir`/`bundle`, and
// returns the bundle id. Fails the current test on error.
std::string WriteTestBundle(const torch::jit::Module& module, const std::string& dir,
                            const std::string& bundle, const std::vector<std::string>& cut_names,
                            const std::vector<int64_t>& input_shape = {1, 3, 8, 8});

// Attaches an untrained pool-linear exit head after the bundle's first cut and sets its
// threshold (0: every sample exits there; 1: none does). Fails the current test on error.
void AddUntrainedExit(const std::string& bundle_dir, double threshold);

// The manifest of the bundle in `bundle_dir`, read without loading its segments (fails the
// test and returns an empty manifest when it cannot be read).
common::BundleManifest ReadManifest(const std::string& bundle_dir);

// Saves `module` to `path` and returns `path`.
std::string SaveModel(const torch::jit::Module& module, const std::string& path);

// Runs `module` on `input` (InferenceMode) and flattens the output to tensors.
std::vector<at::Tensor> RunFlat(torch::jit::Module module, const at::Tensor& input);

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr interleaved
};

// Runs `command` through /bin/sh and waits for it. With `merge_stderr` false, stderr goes to
// the test's own stderr and `output` holds stdout only (for commands that print JSON).
CommandResult RunCommand(const std::string& command, bool merge_stderr = true);

// Path of a project executable ("cleave", "cleave-edge", "cleave-device") in the build tree.
std::string BinaryPath(const std::string& name);

// How late a deadline-bound answer may be on this machine, from its measured scheduling
// jitter: 20 ms plus ten times the latest wake-up of 200 sleeps of 1 ms (measured once per
// process, printed once). Tens of milliseconds on a quiet machine, more on a loaded one; a
// runtime that waited for a late edge instead of its own timer misses it by far more.
std::chrono::milliseconds SchedulingMargin();

// Records `why` as a failure and ends the test process at once: for a test whose answer did
// not come and whose destructors would wait for it, so that it fails by name now instead of
// at CTest's timeout.
[[noreturn]] void AbortStuckTest(const std::string& why);

// A well-formed raw float32 frame of `shape` whose payload is zstd-compressed zeros that
// declare their decoded size: a few KB that ask the receiver for the whole tensor. Built in
// pieces, never holding the declared tensor, so a test can declare gigabytes.
std::string CompressedZerosFrame(const std::vector<int64_t>& shape);

// A process's memory from /proc/PID/status, in bytes: resident now and at its peak, and its
// address space now and at its peak.
struct ProcessMemory {
  uint64_t rss = 0, peak_rss = 0, size = 0, peak_size = 0;
};
ProcessMemory ReadProcessMemory(int pid);
// Resets the process's peak resident size (VmHWM) to its current one.
void ResetPeakRss(int pid);

// Starts `args` (args[0] is the executable's path) as a child process with stdout and stderr
// going to `log_file`, under an address-space limit when `address_space_limit` (bytes) is
// nonzero. Returns its pid, or -1 (and fails the test) when it cannot start.
int StartProcess(std::vector<std::string> args, const std::string& log_file,
                 uint64_t address_space_limit = 0);

// Sends SIGKILL to `pid` and reaps it.
void KillProcess(int pid);

// A cleave-edge process on an ephemeral loopback port, stopped (SIGTERM) on destruction.
class EdgeProcess {
 public:
  // Starts cleave-edge over `bundles_dir` and waits until it reports its port. A nonzero
  // `address_space_limit` (bytes, RLIMIT_AS) makes an allocation beyond it fail inside the
  // edge instead of exhausting the machine.
  explicit EdgeProcess(const std::string& bundles_dir, const std::vector<std::string>& flags = {},
                       uint64_t address_space_limit = 0);
  ~EdgeProcess();
  EdgeProcess(const EdgeProcess&) = delete;
  EdgeProcess& operator=(const EdgeProcess&) = delete;

  bool running() const { return port_ > 0; }
  int pid() const { return pid_; }
  int port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  // Sends SIGTERM and returns the exit code (or -1 if it did not exit within 20 s).
  int Stop();
  // Sends SIGKILL (a crash: nothing drains) and reaps the process.
  void Kill();
  // What the process wrote to stdout/stderr so far.
  std::string Log() const;

 private:
  TempDir dir_;
  int pid_ = -1;
  int port_ = 0;
};

}  // namespace cleave::test

#endif  // CLEAVE_TESTS_SUPPORT_TEST_SUPPORT_H_
