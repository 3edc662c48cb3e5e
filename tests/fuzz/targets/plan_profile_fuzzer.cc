// libFuzzer target: bytes as profile.json (first byte even) or plan.json (odd) through
// ModelProfile::FromJson and SplitPlan::FromJson. What parses must survive its canonical round
// trip; nothing may crash.
#include <cstdint>
#include <string>

#include "cleave/partitioner/profiler.h"
#include "cleave/partitioner/split_planner.h"

namespace {

template <typename Parsed>
void RoundTrip(const std::string& json) {
  auto parsed = Parsed::FromJson(json, "fuzz");
  if (!parsed.ok()) return;
  const std::string canonical = parsed->ToJson();
  auto again = Parsed::FromJson(canonical, "fuzz canonical");
  if (!again.ok() || again->ToJson() != canonical) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string json(reinterpret_cast<const char*>(data + 1), size - 1);
  if (data[0] & 1) {
    RoundTrip<cleave::partitioner::SplitPlan>(json);
  } else {
    RoundTrip<cleave::partitioner::ModelProfile>(json);
  }
  return 0;
}
