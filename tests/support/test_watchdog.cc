// A watchdog in every test binary: a test that runs longer than CLEAVE_TEST_WATCHDOG_S seconds
// (default 240) fails by name and ends the process, instead of hanging until CTest's timeout
// with nothing said — a request never answered, a destructor waiting for it. The longest test
// takes about 40 s here; the sanitizer builds and the mutation check set their own limit.

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "gtest/gtest.h"

namespace cleave::test {
namespace {

using Clock = std::chrono::steady_clock;

std::chrono::seconds WatchdogLimit() {
  const char* value = std::getenv("CLEAVE_TEST_WATCHDOG_S");
  if (value == nullptr || *value == '\0') return std::chrono::seconds(240);
  char* end = nullptr;
  const long seconds = std::strtol(value, &end, 10);
  if (*end != '\0' || seconds <= 0) {
    std::fprintf(stderr, "CLEAVE_TEST_WATCHDOG_S=%s is not a positive number of seconds\n", value);
    std::_Exit(2);
  }
  return std::chrono::seconds(seconds);
}

class Watchdog : public ::testing::EmptyTestEventListener {
 public:
  Watchdog() : limit_(WatchdogLimit()), thread_([this] { Watch(); }) {}

  ~Watchdog() override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    changed_.notify_all();
    thread_.join();
  }

  void OnTestStart(const ::testing::TestInfo& test) override {
    std::lock_guard<std::mutex> lock(mutex_);
    running_ = std::string(test.test_suite_name()) + "." + test.name();
    started_ = Clock::now();
    changed_.notify_all();
  }

  void OnTestEnd(const ::testing::TestInfo&) override {
    std::lock_guard<std::mutex> lock(mutex_);
    running_.reset();
    changed_.notify_all();
  }

 private:
  void Watch() {
    std::unique_lock<std::mutex> lock(mutex_);
    while (!stopping_) {
      if (!running_.has_value()) {
        changed_.wait(lock);
        continue;
      }
      const std::string name = *running_;
      const Clock::time_point started = started_;
      if (changed_.wait_until(lock, started + limit_, [&] {
            return stopping_ || !running_.has_value() || started_ != started;
          })) {
        continue;
      }
      std::fprintf(stderr, "[  FAILED  ] %s: still running after %lld s (watchdog): aborting\n",
                   name.c_str(), static_cast<long long>(limit_.count()));
      std::fflush(stderr);
      std::_Exit(1);
    }
  }

  const std::chrono::seconds limit_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::optional<std::string> running_;
  Clock::time_point started_;
  bool stopping_ = false;
  std::thread thread_;  // last: it starts once the rest is constructed
};

// Registered before main: GoogleTest owns and deletes the listener at exit.
const bool kRegistered = [] {
  ::testing::UnitTest::GetInstance()->listeners().Append(new Watchdog());
  return true;
}();

}  // namespace
}  // namespace cleave::test
