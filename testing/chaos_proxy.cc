#include "testing/chaos_proxy.h"

#include <array>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "base/status_macros.h"
#include "boost/asio/write.hpp"
#include "channel/transport.h"

namespace hostd::testing {
namespace {

namespace asio = boost::asio;
using channel::Socket;

// Two sockets spliced together; closing either end closes both.
struct Splice : std::enable_shared_from_this<Splice> {
  Splice(Socket a, Socket b) : down(std::move(a)), up(std::move(b)) {}
  Socket down;
  Socket up;
  std::array<char, 64 * 1024> down_buf;
  std::array<char, 64 * 1024> up_buf;
  std::function<void(Splice*)> on_close;
  bool closed = false;

  void Start() {
    Pump(down, up, down_buf);
    Pump(up, down, up_buf);
  }
  void Pump(Socket& from, Socket& to, std::array<char, 64 * 1024>& buf) {
    from.async_read_some(asio::buffer(buf),
                         [self = shared_from_this(), &from, &to, &buf](boost::system::error_code ec, size_t n) {
                           if (ec || self->closed) return self->Close();
                           asio::async_write(to, asio::buffer(buf.data(), n),
                                             [self, &from, &to, &buf](boost::system::error_code ec, size_t) {
                                               if (ec || self->closed) return self->Close();
                                               self->Pump(from, to, buf);
                                             });
                         });
  }
  void Close() {
    if (closed) return;
    closed = true;
    boost::system::error_code ignored;
    down.close(ignored);
    up.close(ignored);
    if (on_close) on_close(this);
  }
};

}  // namespace

class ChaosProxy::Impl : public std::enable_shared_from_this<ChaosProxy::Impl> {
 public:
  Impl(channel::EventLoop& loop, channel::ChannelAddr upstream) : loop(loop), upstream(std::move(upstream)) {}

  void OnAccept(Socket sock) {
    if (refusing) return;  // `sock` closes as it goes out of scope
    auto down = std::make_shared<Socket>(std::move(sock));
    channel::AsyncConnect(loop.context(), upstream, [self = shared_from_this(), down](absl::Status s, Socket up) {
      if (!s.ok() || self->refusing) return;
      auto splice = std::make_shared<Splice>(std::move(*down), std::move(up));
      std::weak_ptr<Impl> weak = self;
      splice->on_close = [weak](Splice* sp) {
        if (auto me = weak.lock()) {
          absl::erase_if(me->splices, [sp](const std::shared_ptr<Splice>& x) { return x.get() == sp; });
        }
      };
      self->splices.insert(splice);
      splice->Start();
    });
  }

  channel::EventLoop& loop;
  channel::ChannelAddr upstream;
  std::unique_ptr<channel::StreamAcceptor> acceptor;
  absl::flat_hash_set<std::shared_ptr<Splice>> splices;
  bool refusing = false;
  uint64_t cuts = 0;
};

absl::StatusOr<std::unique_ptr<ChaosProxy>> ChaosProxy::Start(channel::EventLoop& loop,
                                                              const channel::ChannelAddr& listen,
                                                              const channel::ChannelAddr& upstream) {
  auto impl = std::make_shared<Impl>(loop, upstream);
  absl::Status status;
  loop.RunSync([&] {
    absl::StatusOr<std::unique_ptr<channel::StreamAcceptor>> acc =
        channel::StreamAcceptor::Create(loop.context(), listen);
    if (!acc.ok()) {
      status = acc.status();
      return;
    }
    impl->acceptor = std::move(*acc);
    std::weak_ptr<Impl> weak = impl;
    impl->acceptor->Start([weak](Socket s) {
      if (auto self = weak.lock()) self->OnAccept(std::move(s));
    });
  });
  HOSTD_RETURN_IF_ERROR(status);
  return std::unique_ptr<ChaosProxy>(new ChaosProxy(std::move(impl)));
}

ChaosProxy::~ChaosProxy() {
  impl_->loop.RunSync([impl = impl_] {
    impl->acceptor->Close();
    impl->refusing = true;
    std::vector<std::shared_ptr<Splice>> all(impl->splices.begin(), impl->splices.end());
    for (auto& s : all) s->Close();
  });
}

const channel::ChannelAddr& ChaosProxy::addr() const { return impl_->acceptor->addr(); }

void ChaosProxy::CutAll() {
  impl_->loop.RunSync([impl = impl_] {
    std::vector<std::shared_ptr<Splice>> all(impl->splices.begin(), impl->splices.end());
    impl->cuts += all.size();
    for (auto& s : all) s->Close();
  });
}

void ChaosProxy::SetRefusing(bool refusing) {
  impl_->loop.RunSync([impl = impl_, refusing] { impl->refusing = refusing; });
}

void ChaosProxy::SetUpstream(const channel::ChannelAddr& upstream) {
  impl_->loop.RunSync([impl = impl_, upstream] { impl->upstream = upstream; });
}

uint64_t ChaosProxy::cuts() const {
  uint64_t n = 0;
  impl_->loop.RunSync([&] { n = impl_->cuts; });
  return n;
}

}  // namespace hostd::testing
