// cleave-link: a shaping TCP proxy between a device and an edge server. Flags and signal
// wiring only; the emulator is cleave_link_emulator.
#include <signal.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <optional>
#include <string>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "cleave/common/units.h"
#include "cleave/link_emulator/control_command.h"
#include "cleave/link_emulator/link_emulator.h"
#include "cleave/link_emulator/link_trace.h"

namespace {

namespace link_emulator = cleave::link_emulator;

// The flags as typed; turned into LinkEmulatorOptions by BuildOptions.
struct Flags {
  std::string bandwidth = "unlimited";
  std::string up_bandwidth;
  std::string down_bandwidth;
  std::string delay = "0";
  std::string jitter = "0";
  std::string jitter_distribution = "uniform";
  std::string trace;
  std::string partition_at;
  std::string partition_for;
  size_t max_buffered_kib = 4096;
  bool no_check_upstream = false;
};

// Prefixes a flag's parse error with the flag's name.
template <typename T>
absl::StatusOr<T> ForFlag(absl::string_view flag, absl::StatusOr<T> parsed) {
  if (parsed.ok()) return parsed;
  return absl::InvalidArgumentError(absl::StrCat(flag, ": ", parsed.status().message()));
}

// The rate for one direction: its own flag when given, --bandwidth otherwise.
absl::StatusOr<uint64_t> DirectionRate(const Flags& flags, absl::string_view flag,
                                       const std::string& value) {
  if (value.empty()) return ForFlag("--bandwidth", cleave::common::ParseBitRate(flags.bandwidth));
  return ForFlag(flag, cleave::common::ParseBitRate(value));
}

absl::Status BuildOptions(const Flags& flags, link_emulator::LinkEmulatorOptions& options) {
  auto up_rate = DirectionRate(flags, "--up-bandwidth", flags.up_bandwidth);
  if (!up_rate.ok()) return up_rate.status();
  auto down_rate = DirectionRate(flags, "--down-bandwidth", flags.down_bandwidth);
  if (!down_rate.ok()) return down_rate.status();
  auto delay = ForFlag("--delay", cleave::common::ParseDuration(flags.delay));
  if (!delay.ok()) return delay.status();
  auto jitter = ForFlag("--jitter", cleave::common::ParseDuration(flags.jitter));
  if (!jitter.ok()) return jitter.status();
  options.upstream_shape = {*up_rate, *delay, *jitter};
  options.downstream_shape = {*down_rate, *delay, *jitter};
  options.jitter_distribution = flags.jitter_distribution == "normal"
                                    ? link_emulator::JitterDistribution::kNormal
                                    : link_emulator::JitterDistribution::kUniform;
  options.max_buffered_bytes = flags.max_buffered_kib << 10;
  options.check_upstream = !flags.no_check_upstream;
  return absl::OkStatus();
}

// The trace to replay: --trace plus the --partition-at/--partition-for window; nullopt if none.
absl::StatusOr<std::optional<link_emulator::LinkTrace>> BuildTrace(const Flags& flags) {
  std::optional<link_emulator::LinkTrace> trace;
  if (!flags.trace.empty()) {
    auto read = link_emulator::ReadLinkTrace(flags.trace);
    if (!read.ok()) return read.status();
    trace = *std::move(read);
  }
  if (flags.partition_at.empty() != flags.partition_for.empty()) {
    return absl::InvalidArgumentError("--partition-at and --partition-for go together");
  }
  if (!flags.partition_at.empty()) {
    auto start = ForFlag("--partition-at", cleave::common::ParseDuration(flags.partition_at));
    if (!start.ok()) return start.status();
    auto duration = ForFlag("--partition-for", cleave::common::ParseDuration(flags.partition_for));
    if (!duration.ok()) return duration.status();
    if (!trace.has_value()) trace.emplace();
    trace->AddPartition(*start, *duration);
  }
  return trace;
}

// Writes "<port>\n" to `path` through a rename, so a script polling for it never reads half.
absl::Status WritePortFile(const std::string& path, int port) {
  const std::string temporary = path + ".tmp";
  {
    std::ofstream out(temporary, std::ios::trunc);
    out << port << "\n";
    if (!out.flush()) {
      return absl::PermissionDeniedError(
          absl::StrCat("cannot write ", temporary, ": ", std::strerror(errno)));
    }
  }
  if (std::rename(temporary.c_str(), path.c_str()) != 0) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot rename ", temporary, " to ", path, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

int Fail(const absl::Status& status) {
  std::cerr << "cleave-link: error: " << status.message() << "\n";
  return 1;
}

}  // namespace

// Long on purpose: one statement per flag, declared in the order --help lists them and
// copied into LinkEmulatorOptions right there; the emulation itself is LinkEmulator's.
int main(int argc, char** argv) {
  CLI::App app{
      "cleave-link: relay TCP connections to an upstream server through an emulated link "
      "(bandwidth, delay, jitter, partitions)"};
  link_emulator::LinkEmulatorOptions options;
  Flags flags;
  std::string port_file;
  std::string control_port_file;
  app.add_option("--listen", options.listen, "host:port to accept on (port 0: any free port)")
      ->default_val(options.listen);
  app.add_option("--upstream", options.upstream, "host:port of the server to relay to")->required();
  app.add_option("--bandwidth", flags.bandwidth,
                 "both directions, e.g. 20mbit, 500kbit, 1gbit, unlimited")
      ->default_val(flags.bandwidth);
  app.add_option("--up-bandwidth", flags.up_bandwidth, "client->server, overrides --bandwidth");
  app.add_option("--down-bandwidth", flags.down_bandwidth, "server->client, overrides --bandwidth");
  app.add_option("--delay", flags.delay, "one-way delay each direction, e.g. 10ms")
      ->default_val(flags.delay);
  app.add_option("--jitter", flags.jitter, "delay spread, e.g. 2ms")->default_val(flags.jitter);
  app.add_option("--jitter-distribution", flags.jitter_distribution, "uniform or normal")
      ->default_val(flags.jitter_distribution)
      ->check(CLI::IsMember({"uniform", "normal"}));
  app.add_option("--seed", options.seed, "seed of the jitter samples")->default_val(options.seed);
  app.add_option("--trace", flags.trace, "bandwidth/partition trace to replay from start");
  app.add_option("--partition-at", flags.partition_at, "start a partition this long after start");
  app.add_option("--partition-for", flags.partition_for, "length of that partition, e.g. 2s");
  app.add_option("--max-buffered-kib", flags.max_buffered_kib,
                 "bytes held per connection and direction before reading pauses, KiB")
      ->default_val(flags.max_buffered_kib)
      ->check(CLI::PositiveNumber);
  app.add_flag("--no-check-upstream", flags.no_check_upstream,
               "start even when the upstream does not accept connections yet");
  app.add_option("--control", options.control_listen,
                 "host:port of a line-based control socket (e.g. 127.0.0.1:0)");
  app.add_option("--port-file", port_file, "write the bound port to this file once listening");
  app.add_option("--control-port-file", control_port_file,
                 "write the bound control port to this file once listening");
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    return Fail(absl::InvalidArgumentError(e.what()));
  }
  if (!control_port_file.empty() && options.control_listen.empty()) {
    return Fail(absl::InvalidArgumentError("--control-port-file needs --control"));
  }
  if (auto built = BuildOptions(flags, options); !built.ok()) return Fail(built);
  auto trace = BuildTrace(flags);
  if (!trace.ok()) return Fail(trace.status());

  // Block SIGTERM/SIGINT in every thread (the I/O thread inherits the mask) and take them in
  // main via sigwait: the orderly shutdown runs on a normal thread, not in a signal handler.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  auto emulator = link_emulator::LinkEmulator::Start(options);
  if (!emulator.ok()) return Fail(emulator.status());
  if (trace->has_value()) (*emulator)->PlayTrace(**std::move(trace));
  std::cout << "cleave-link listening on port " << (*emulator)->port() << ", relaying to "
            << options.upstream;
  if ((*emulator)->control_port() != 0) {
    std::cout << ", control port " << (*emulator)->control_port();
  }
  std::cout << std::endl;
  if (!port_file.empty()) {
    if (auto written = WritePortFile(port_file, (*emulator)->port()); !written.ok()) {
      return Fail(written);
    }
  }
  if (!control_port_file.empty()) {
    if (auto written = WritePortFile(control_port_file, (*emulator)->control_port());
        !written.ok()) {
      return Fail(written);
    }
  }
  int received = 0;
  sigwait(&signals, &received);
  (*emulator)->Stop();
  auto status = link_emulator::ExecuteControlCommand(**emulator, "status");
  std::cout << "cleave-link: signal " << received
            << ", stopped: " << (status.ok() ? *status : std::string(status.status().message()))
            << std::endl;
  return 0;
}
