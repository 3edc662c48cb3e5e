// What signing and encryption add to loading a bundle (docs/SECURITY.md; docs/PERFORMANCE.md,
// "Signed and encrypted bundle loads"): copies a plain bundle, signs one copy, encrypts
// another and signs it too, and loads each the way an edge does (optimized for inference, its
// forward memory measured) and the way `cleave verify` does (as stored), alternating runs so
// that drift hits every variant alike. Reports the median load time of each against the plain
// bundle's measured in the same run, and the time of the trust checks and of the decryption
// alone. Prints a table and writes JSON.
//
//   bundle_load_bench --bundle DIR --work DIR [--runs 15] [--json FILE]
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <map>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_format.h"
#include "bench/bench_report.h"
#include "cleave/common/bundle.h"
#include "cleave/common/bundle_crypto.h"
#include "cleave/common/files.h"
#include "cleave/common/text_table.h"
#include "cleave/common/trust.h"
#include "cleave/partitioner/bundle_signing.h"

namespace cleave::bench {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double MillisSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

double Median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values.empty() ? 0 : values[values.size() / 2];
}

struct Variant {
  std::string name, dir;
  bool trusted = false, encrypted = false;
};

int Run(int argc, char** argv) {
  CLI::App app{"bundle_load_bench: what signatures and encryption add to a bundle load"};
  std::string bundle, work, json_path;
  int runs = 15;
  app.add_option("--bundle", bundle, "plain bundle folder")->required();
  app.add_option("--work", work, "scratch folder (replaced)")->required();
  app.add_option("--runs", runs, "loads per variant and mode")->check(CLI::PositiveNumber);
  app.add_option("--json", json_path, "write the results here");
  CLI11_PARSE(app, argc, argv);

  fs::remove_all(work);
  fs::create_directories(work + "/trust");
  auto fail = [](const absl::Status& status) {
    std::cerr << "bundle_load_bench: " << status.message() << "\n";
    return 1;
  };
  if (auto key = common::GenerateSigningKey(work + "/signer"); !key.ok()) return fail(key.status());
  fs::copy_file(work + "/signer.pub", work + "/trust/signer.pub");
  auto bundle_key = common::BundleKey::Generate(work + "/bundle.aeskey");
  if (!bundle_key.ok()) return fail(bundle_key.status());
  std::vector<Variant> variants = {{"plain", work + "/plain", false, false},
                                   {"signed", work + "/signed", true, false},
                                   {"encrypted", work + "/encrypted", false, true},
                                   {"signed+encrypted", work + "/both", true, true}};
  for (const Variant& variant : variants) {
    fs::copy(bundle, variant.dir, fs::copy_options::recursive);
    fs::remove(variant.dir + "/" + common::kSignaturesFile);
    if (variant.encrypted) {
      if (auto done = partitioner::EncryptBundle(variant.dir, **bundle_key); !done.ok()) {
        return fail(done.status());
      }
    }
    if (variant.trusted) {
      partitioner::SignOptions sign;
      sign.key_files = {work + "/signer.key"};
      sign.expires = absl::Now() + absl::Hours(24);
      if (variant.encrypted) sign.key = *bundle_key;
      if (auto done = partitioner::SignBundle(variant.dir, sign); !done.ok()) {
        return fail(done.status());
      }
    }
  }
  auto policy = common::TrustPolicy::Create({work + "/trust", 1, "", absl::ZeroDuration()});
  if (!policy.ok()) return fail(policy.status());

  // (mode, variant) -> load times in ms.
  const std::vector<std::string> modes = {"edge", "verify"};
  std::map<std::pair<std::string, std::string>, std::vector<double>> times;
  for (int run = 0; run < runs + 1; ++run) {  // the first run warms caches and is dropped
    for (const std::string& mode : modes) {
      for (const Variant& variant : variants) {
        common::Bundle::LoadOptions load;
        load.optimize_for_inference = mode == "edge";
        load.measure_forward_memory = mode == "edge";
        if (variant.trusted) load.trust = *policy;
        if (variant.encrypted) load.key = *bundle_key;
        const Clock::time_point start = Clock::now();
        auto loaded = common::Bundle::Load(variant.dir, load);
        const double ms = MillisSince(start);
        if (!loaded.ok()) return fail(loaded.status());
        if (run > 0) times[{mode, variant.name}].push_back(ms);
      }
    }
  }
  // The checks alone: signatures and folder (TrustPolicy::Check), and opening every sealed file.
  auto manifest_json = common::ReadFile(variants[3].dir + "/manifest.json");
  auto manifest = common::BundleManifest::FromJson(*manifest_json, "bench");
  std::vector<double> check_ms, decrypt_ms;
  for (int run = 0; run < runs; ++run) {
    Clock::time_point start = Clock::now();
    if (auto checked = (*policy)->Check(variants[3].dir, *manifest_json, *manifest);
        !checked.ok()) {
      return fail(checked);
    }
    check_ms.push_back(MillisSince(start));
    start = Clock::now();
    for (const common::FileRef* ref : manifest->FileRefs()) {
      if (!ref->encrypted_size) continue;
      auto sealed = common::ReadFile(variants[3].dir + "/" + ref->file);
      auto opened = (*bundle_key)->Open(*sealed, ref->file, ref->sha256);
      if (!opened.ok()) return fail(opened.status());
    }
    decrypt_ms.push_back(MillisSince(start));
  }

  nlohmann::json report = ReportHeader("bundle_load_bench", argc, argv);
  report["bundle"] = bundle;
  report["runs"] = runs;
  common::TextTable table({"load", "variant", "median ms", "vs plain"});
  for (const std::string& mode : modes) {
    const double plain = Median(times[{mode, "plain"}]);
    for (const Variant& variant : variants) {
      const double median = Median(times[{mode, variant.name}]);
      table.AddRow({mode, variant.name, absl::StrFormat("%.2f", median),
                    absl::StrFormat("%.3fx", median / plain)});
      report["loads"].push_back({{"mode", mode},
                                 {"variant", variant.name},
                                 {"median_ms", median},
                                 {"ratio_vs_plain", median / plain},
                                 {"times_ms", times[{mode, variant.name}]}});
    }
  }
  std::cout << table.Render();
  std::cout << absl::StrFormat(
      "trust checks alone (signature, expiry, version, folder): median %.3f ms\n"
      "decrypting every sealed file alone: median %.3f ms\n",
      Median(check_ms), Median(decrypt_ms));
  report["trust_check_ms"] = Median(check_ms);
  report["decrypt_ms"] = Median(decrypt_ms);
  if (!json_path.empty() && !WriteJsonReport(report, json_path)) return 1;
  return 0;
}

}  // namespace
}  // namespace cleave::bench

int main(int argc, char** argv) { return cleave::bench::Run(argc, argv); }
