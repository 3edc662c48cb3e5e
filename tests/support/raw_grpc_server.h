// A gRPC server on an ephemeral loopback port that answers every message of every call,
// whatever the method, with what `reply` makes of it: an echo, or bytes of a test's choosing
// (a peer that speaks no cleave protocol). Header-only: the test binaries that use it link
// gRPC already. Its reactor's hand-offs to gRPC are marked for TSan (tsan_annotations.h).
#ifndef CLEAVE_TESTS_SUPPORT_RAW_GRPC_SERVER_H_
#define CLEAVE_TESTS_SUPPORT_RAW_GRPC_SERVER_H_

#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <utility>

#include "cleave/common/tsan_annotations.h"

namespace cleave::test {

// The status a callback-API call ends with, for the test's thread to wait on. Callback() marks
// the hand-off to gRPC for TSan: call it last, right where the call starts.
class CallStatus {
 public:
  std::function<void(grpc::Status)> Callback() {
    CLEAVE_TSAN_RELEASE(this);
    return [this](grpc::Status status) {
      CLEAVE_TSAN_ACQUIRE(this);
      promise_.set_value(std::move(status));
    };
  }
  // Waits for the call to end (each call the tests make has a deadline).
  grpc::Status Wait() { return future_.get(); }

 private:
  std::promise<grpc::Status> promise_;
  std::future<grpc::Status> future_ = promise_.get_future();
};

class RawGrpcServer {
 public:
  using Reply = std::function<grpc::ByteBuffer(const grpc::ByteBuffer& message)>;

  // Echoes each message.
  static grpc::ByteBuffer Echo(const grpc::ByteBuffer& message) { return message; }
  // Answers each message with `bytes`.
  static Reply Constant(const std::string& bytes) {
    return [bytes](const grpc::ByteBuffer&) {
      const grpc::Slice slice(bytes);
      return grpc::ByteBuffer(&slice, 1);
    };
  }

  explicit RawGrpcServer(Reply reply, int max_message_bytes = 8 << 20)
      : service_(std::move(reply)) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterCallbackGenericService(&service_);
    builder.SetMaxReceiveMessageSize(max_message_bytes);
    builder.SetMaxSendMessageSize(max_message_bytes);
    server_ = builder.BuildAndStart();
  }
  ~RawGrpcServer() {
    if (server_ != nullptr) server_->Shutdown(std::chrono::system_clock::now());
  }

  bool started() const { return server_ != nullptr && port_ > 0; }
  int port() const { return port_; }
  std::string target() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  // Reads a message, writes its reply, reads the next, until the client is done.
  class Reactor final : public grpc::ServerGenericBidiReactor {
   public:
    explicit Reactor(const Reply* reply) : reply_(reply) {
      CLEAVE_TSAN_RELEASE(this);
      StartRead(&message_);
    }
    void OnReadDone(bool ok) override {
      CLEAVE_TSAN_ACQUIRE(this);
      if (!ok) return Done(grpc::Status::OK);
      answer_ = (*reply_)(message_);
      CLEAVE_TSAN_RELEASE(this);
      StartWrite(&answer_);
    }
    void OnWriteDone(bool ok) override {
      CLEAVE_TSAN_ACQUIRE(this);
      if (!ok) return Done(grpc::Status::CANCELLED);
      CLEAVE_TSAN_RELEASE(this);
      StartRead(&message_);
    }
    void OnDone() override {
      CLEAVE_TSAN_ACQUIRE(this);
      delete this;
    }

   private:
    void Done(const grpc::Status& status) {
      CLEAVE_TSAN_RELEASE(this);
      Finish(status);
    }

    const Reply* reply_;
    grpc::ByteBuffer message_, answer_;
  };

  class Service final : public grpc::CallbackGenericService {
   public:
    explicit Service(Reply reply) : reply_(std::move(reply)) {}
    grpc::ServerGenericBidiReactor* CreateReactor(grpc::GenericCallbackServerContext*) override {
      return new Reactor(&reply_);
    }

   private:
    const Reply reply_;
  };

  Service service_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

}  // namespace cleave::test

#endif  // CLEAVE_TESTS_SUPPORT_RAW_GRPC_SERVER_H_
