#include "daemon/grpc_acceptor.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "base/log.h"
#include "grpcpp/server_posix.h"

namespace hostd::daemon {

GrpcAcceptor::GrpcAcceptor(GrpcAcceptorOptions options, std::unique_ptr<channel::EventLoop> loop)
    : options_(options), loop_(std::move(loop)) {}

absl::StatusOr<std::unique_ptr<GrpcAcceptor>> GrpcAcceptor::Listen(const channel::ChannelAddr& addr,
                                                                   GrpcAcceptorOptions options) {
  if (addr.transport() != channel::Transport::kUnix) {
    return absl::InvalidArgumentError(
        absl::StrCat("the control API's own acceptor serves unix addresses, not ", addr.ToString()));
  }
  std::unique_ptr<GrpcAcceptor> self(new GrpcAcceptor(options, channel::EventLoop::Start("grpc-accept")));
  absl::Status bound;
  GrpcAcceptor* raw = self.get();
  self->loop_->RunSync([&] {
    absl::StatusOr<std::unique_ptr<channel::StreamAcceptor>> acc =
        channel::StreamAcceptor::Create(raw->loop_->context(), addr);
    if (!acc.ok()) {
      bound = acc.status();
      return;
    }
    raw->acceptor_ = *std::move(acc);
  });
  if (!bound.ok()) return bound;
  return self;
}

GrpcAcceptor::~GrpcAcceptor() {
  loop_->RunSync([this] {
    if (acceptor_ != nullptr) acceptor_->Close();
    acceptor_.reset();
  });
  loop_.reset();
}

void GrpcAcceptor::Start(grpc::Server* server) {
  loop_->RunSync([this, server] {
    server_ = server;
    acceptor_->Start([this](channel::Socket s) { OnAccept(std::move(s)); });
  });
}

void GrpcAcceptor::OnAccept(channel::Socket socket) {
  // Forget the connections gRPC has closed: their descriptor is gone, or names
  // another file now.
  std::erase_if(handed_, [](const std::pair<int, ino_t>& h) {
    struct stat st {};
    return ::fstat(h.first, &st) != 0 || !S_ISSOCK(st.st_mode) || st.st_ino != h.second;
  });
  connections_.store(handed_.size());
  boost::system::error_code ec;
  const int fd = socket.release(ec);
  if (ec || fd < 0) return;
  if (handed_.size() >= options_.max_connections) {
    ::close(fd);
    if (shed_.fetch_add(1) % 1000 == 0) {
      base::Log().warn("control API: {} connections are open (the cap); closing new ones until one goes",
                       handed_.size());
    }
    return;
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    return;
  }
  handed_.emplace_back(fd, st.st_ino);
  connections_.store(handed_.size());
  grpc::AddInsecureChannelFromFd(server_, fd);  // gRPC owns it from here
}

}  // namespace hostd::daemon
