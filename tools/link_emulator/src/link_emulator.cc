#include "cleave/link_emulator/link_emulator.h"

#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "cleave/common/mutex.h"
#include "cleave/link_emulator/control_command.h"
#include "common/src/socket_address.h"
#include "tools/link_emulator/src/control_server.h"
#include "tools/link_emulator/src/relay_connection.h"
#include "tools/link_emulator/src/transmitter.h"

namespace cleave::link_emulator {

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

// How long Start waits for the upstream to accept the check connection.
constexpr std::chrono::seconds kUpstreamCheckTimeout{2};
// How long Stop waits for the I/O thread to finish its handlers before abandoning them.
constexpr std::chrono::seconds kStopTimeout{5};
// Pause before accepting again after accept failed (e.g. out of file descriptors).
constexpr std::chrono::milliseconds kAcceptRetryDelay{100};

}  // namespace

// Everything lives on the single I/O thread except what the public setters touch: the
// shapers (internally locked) and the atomics. Setters change those at once and then post
// a nudge to the I/O thread so queued bytes see the change.
class LinkEmulator::Impl {
 public:
  explicit Impl(const LinkEmulatorOptions& options)
      : options_(options),
        work_(asio::make_work_guard(io_)),
        acceptor_(io_),
        accept_retry_timer_(io_),
        upstream_(io_, options.upstream_shape, options.jitter_distribution, options.seed,
                  partitioned_),
        downstream_(io_, options.downstream_shape, options.jitter_distribution, options.seed + 1,
                    partitioned_),
        trace_timer_(io_) {}

  ~Impl() { Stop(); }

  absl::Status Open(LinkEmulator& owner) {
    auto upstream = common::ResolveAddress(io_, options_.upstream, "upstream", /*passive=*/false);
    if (!upstream.ok()) return upstream.status();
    upstream_endpoints_ = *std::move(upstream);
    if (options_.check_upstream) {
      auto reachable =
          common::CheckReachable(upstream_endpoints_, options_.upstream, kUpstreamCheckTimeout);
      if (!reachable.ok()) return reachable;
    }
    auto listening = common::Listen(io_, acceptor_, options_.listen, "listen");
    if (!listening.ok()) return listening;
    port_ = acceptor_.local_endpoint().port();
    if (!options_.control_listen.empty()) {
      control_ = std::make_unique<ControlServer>(io_, [&owner](absl::string_view line) {
        auto reply = ExecuteControlCommand(owner, line);
        return reply.ok() ? *std::move(reply) : absl::StrCat("error: ", reply.status().message());
      });
      auto control_listening = control_->Listen(options_.control_listen);
      if (!control_listening.ok()) return control_listening;
      control_port_ = control_->port();
      control_->Start();
    }
    Accept();
    std::promise<void> finished;
    io_finished_ = finished.get_future();
    thread_ = std::thread([this, finished = std::move(finished)]() mutable {
      io_.run();
      finished.set_value();
    });
    return absl::OkStatus();
  }

  void Stop() {
    common::MutexLock lock(&stop_mutex_);
    if (!thread_.joinable()) return;
    asio::post(io_, [this] { CloseEverything(); });
    work_.reset();
    // Every handler ends once its socket or timer is closed, so run() returns on its own;
    // the deadline only guards against a bug leaving work behind.
    if (io_finished_.wait_for(kStopTimeout) != std::future_status::ready) io_.stop();
    thread_.join();
  }

  int port() const { return port_; }
  int control_port() const { return control_port_; }

  void SetBandwidth(Direction direction, uint64_t bits_per_second) {
    for (DirectionLink* link : Links(direction)) link->shaper.SetBandwidth(bits_per_second);
    asio::post(io_, [this, direction] {
      for (DirectionLink* link : Links(direction)) link->transmitter.Wake();
    });
  }

  void SetDelay(Direction direction, std::chrono::nanoseconds delay,
                std::chrono::nanoseconds jitter) {
    for (DirectionLink* link : Links(direction)) link->shaper.SetDelay(delay, jitter);
  }

  void SetPartitioned(bool partitioned) {
    partitioned_ = partitioned;
    if (partitioned) return;
    asio::post(io_, [this] {
      for (DirectionLink* link : Links(Direction::kBoth)) link->transmitter.Wake();
      for (const auto& [raw, connection] : Snapshot()) connection->ResumeDelivery();
    });
  }

  void DropAll() {
    asio::post(io_, [this] { CloseAll(RelayConnection::CloseReason::kReset); });
  }

  void SetDropping(bool dropping) {
    dropping_ = dropping;
    if (dropping) DropAll();
  }

  void PlayTrace(LinkTrace trace) {
    asio::post(io_, [this, trace = std::move(trace)]() mutable {
      trace_ = std::move(trace);
      trace_next_ = 0;
      trace_start_ = std::chrono::steady_clock::now();
      ++trace_generation_;
      trace_timer_.cancel();
      StepTrace(trace_generation_);
    });
  }

  DirectionShape shape(Direction direction) const {
    return (direction == Direction::kDownstream ? downstream_ : upstream_).shaper.shape();
  }
  bool partitioned() const { return partitioned_; }
  bool dropping() const { return dropping_; }

  LinkCounters counters() const {
    LinkCounters counters;
    counters.upstream = {upstream_.bytes_received, upstream_.bytes_delivered};
    counters.downstream = {downstream_.bytes_received, downstream_.bytes_delivered};
    counters.connections_accepted = connections_accepted_;
    counters.connections_open = connections_open_;
    counters.connections_reset = connections_reset_;
    counters.connections_refused = connections_refused_;
    counters.upstream_connect_failures = upstream_connect_failures_;
    return counters;
  }

 private:
  using ConnectionMap = std::map<RelayConnection*, std::shared_ptr<RelayConnection>>;

  std::vector<DirectionLink*> Links(Direction direction) {
    switch (direction) {
      case Direction::kUpstream:
        return {&upstream_};
      case Direction::kDownstream:
        return {&downstream_};
      case Direction::kBoth:
        break;
    }
    return {&upstream_, &downstream_};
  }

  // A copy to iterate over: closing a connection removes it from connections_.
  ConnectionMap Snapshot() const { return connections_; }

  void Accept() {
    acceptor_.async_accept([this](const boost::system::error_code& error, tcp::socket client) {
      if (error == asio::error::operation_aborted || !acceptor_.is_open()) return;
      if (error) {
        accept_retry_timer_.expires_after(kAcceptRetryDelay);
        accept_retry_timer_.async_wait([this](const boost::system::error_code& wait_error) {
          if (!wait_error) Accept();
        });
        return;
      }
      ++connections_accepted_;
      if (dropping_) {
        // Refused the way a rebooting peer refuses: reset at once.
        boost::system::error_code ignored;
        client.set_option(asio::socket_base::linger(true, 0), ignored);
        client.close(ignored);
        ++connections_refused_;
      } else {
        Relay(std::move(client));
      }
      Accept();
    });
  }

  void Relay(tcp::socket client) {
    const RelayConnection::Link link{upstream_, downstream_, partitioned_,
                                     options_.max_buffered_bytes};
    auto connection = std::make_shared<RelayConnection>(
        std::move(client), link,
        [this](RelayConnection* closed, RelayConnection::CloseReason reason) {
          if (reason == RelayConnection::CloseReason::kReset) ++connections_reset_;
          if (reason == RelayConnection::CloseReason::kUpstreamUnreachable) {
            ++upstream_connect_failures_;
          }
          connections_.erase(closed);
          connections_open_ = connections_.size();
        });
    connections_.emplace(connection.get(), connection);
    connections_open_ = connections_.size();
    connection->Start(upstream_endpoints_);
  }

  void CloseAll(RelayConnection::CloseReason reason) {
    for (const auto& [raw, connection] : Snapshot()) connection->Close(reason);
  }

  void CloseEverything() {
    boost::system::error_code ignored;
    acceptor_.close(ignored);
    accept_retry_timer_.cancel();
    if (control_ != nullptr) control_->Stop();
    trace_timer_.cancel();
    ++trace_generation_;
    upstream_.transmitter.Stop();
    downstream_.transmitter.Stop();
    CloseAll(RelayConnection::CloseReason::kStopped);
  }

  // Applies every trace event that is due and waits for the next one.
  void StepTrace(uint64_t generation) {
    if (generation != trace_generation_) return;  // replaced or stopped
    const auto now = std::chrono::steady_clock::now();
    while (trace_next_ < trace_.events.size() &&
           trace_start_ + trace_.events[trace_next_].at <= now) {
      const LinkTraceEvent& event = trace_.events[trace_next_++];
      if (event.kind == LinkTraceEvent::Kind::kPartition) {
        SetPartitioned(event.partitioned);
      } else {
        SetBandwidth(event.direction, event.bits_per_second);
      }
    }
    if (trace_next_ == trace_.events.size()) return;
    trace_timer_.expires_at(trace_start_ + trace_.events[trace_next_].at);
    trace_timer_.async_wait(
        [this, generation](const boost::system::error_code&) { StepTrace(generation); });
  }

  const LinkEmulatorOptions options_;
  // Declared before every I/O object, so destroyed after them.
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  tcp::acceptor acceptor_;
  asio::steady_timer accept_retry_timer_;
  tcp::resolver::results_type upstream_endpoints_;
  std::unique_ptr<ControlServer> control_;
  int port_ = 0;
  int control_port_ = 0;

  std::atomic<bool> partitioned_{false};
  std::atomic<bool> dropping_{false};
  DirectionLink upstream_;
  DirectionLink downstream_;
  ConnectionMap connections_;  // I/O thread

  std::atomic<uint64_t> connections_accepted_{0};
  std::atomic<uint64_t> connections_open_{0};
  std::atomic<uint64_t> connections_reset_{0};
  std::atomic<uint64_t> connections_refused_{0};
  std::atomic<uint64_t> upstream_connect_failures_{0};

  // The trace being replayed (I/O thread).
  LinkTrace trace_;
  size_t trace_next_ = 0;
  std::chrono::steady_clock::time_point trace_start_;
  uint64_t trace_generation_ = 0;
  asio::steady_timer trace_timer_;

  // Serialises Stop. The thread and its future are not guarded: Start sets them before any
  // other thread can reach this, and afterwards only Stop touches them.
  common::Mutex stop_mutex_;
  std::future<void> io_finished_;
  std::thread thread_;
};

absl::StatusOr<std::unique_ptr<LinkEmulator>> LinkEmulator::Start(
    const LinkEmulatorOptions& options) {
  if (options.upstream.empty()) {
    return absl::InvalidArgumentError("no upstream address: expected host:port of the server");
  }
  if (options.max_buffered_bytes == 0) {
    return absl::InvalidArgumentError("max_buffered_bytes must be positive");
  }
  std::unique_ptr<LinkEmulator> emulator(new LinkEmulator(std::make_unique<Impl>(options)));
  auto opened = emulator->impl_->Open(*emulator);
  if (!opened.ok()) return opened;
  return emulator;
}

LinkEmulator::LinkEmulator(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
LinkEmulator::~LinkEmulator() { Stop(); }

void LinkEmulator::Stop() { impl_->Stop(); }
int LinkEmulator::port() const { return impl_->port(); }
int LinkEmulator::control_port() const { return impl_->control_port(); }

void LinkEmulator::SetBandwidth(Direction direction, uint64_t bits_per_second) {
  impl_->SetBandwidth(direction, bits_per_second);
}
void LinkEmulator::SetDelay(Direction direction, std::chrono::nanoseconds delay,
                            std::chrono::nanoseconds jitter) {
  impl_->SetDelay(direction, delay, jitter);
}
void LinkEmulator::SetPartitioned(bool partitioned) { impl_->SetPartitioned(partitioned); }
void LinkEmulator::DropAll() { impl_->DropAll(); }
void LinkEmulator::SetDropping(bool dropping) { impl_->SetDropping(dropping); }
void LinkEmulator::PlayTrace(LinkTrace trace) { impl_->PlayTrace(std::move(trace)); }

DirectionShape LinkEmulator::shape(Direction direction) const { return impl_->shape(direction); }
bool LinkEmulator::partitioned() const { return impl_->partitioned(); }
bool LinkEmulator::dropping() const { return impl_->dropping(); }
LinkCounters LinkEmulator::counters() const { return impl_->counters(); }

}  // namespace cleave::link_emulator
