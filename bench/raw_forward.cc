#include "bench/raw_forward.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "channel/frame.h"

namespace hostd::bench {
namespace {

constexpr size_t kBatch = 256 * 1024;  // the writer's batches
constexpr size_t kBuffer = 1 << 20;    // the sink's and the forwarder's read buffer

bool Fail(const char* what) {
  std::fprintf(stderr, "raw reference: %s: %s\n", what, std::strerror(errno));
  return false;
}

// Finds frame boundaries in a byte stream, in place: only a header cut by a read
// boundary is copied (16 bytes at most).
class FrameCounter {
 public:
  void Feed(const char* p, size_t n) {
    while (n > 0) {
      if (body_left_ > 0) {
        size_t k = std::min<uint64_t>(body_left_, n);
        body_left_ -= k;
        p += k;
        n -= k;
        if (body_left_ == 0) ++frames_;
        continue;
      }
      uint32_t length;
      if (have_ == 0 && n >= channel::kFrameHeaderSize) {
        length = channel::GetLe32(p + 4);
        p += channel::kFrameHeaderSize;
        n -= channel::kFrameHeaderSize;
      } else {
        size_t k = std::min(channel::kFrameHeaderSize - have_, n);
        std::memcpy(header_ + have_, p, k);
        have_ += k;
        p += k;
        n -= k;
        if (have_ < channel::kFrameHeaderSize) return;
        have_ = 0;
        length = channel::GetLe32(header_ + 4);
      }
      if (length == 0) {
        ++frames_;
      } else {
        body_left_ = length;
      }
    }
  }
  int64_t frames() const { return frames_; }

 private:
  char header_[channel::kFrameHeaderSize];
  size_t have_ = 0;
  uint64_t body_left_ = 0;
  int64_t frames_ = 0;
};

// A connected stream: fds[0] writes to fds[1] (and back).
bool Connect(RawTransport t, int fds[2]) {
  if (t == RawTransport::kUnix) {
    return ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0 || Fail("socketpair");
  }
  int l = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  if (l < 0 || ::bind(l, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 || ::listen(l, 1) != 0 ||
      ::getsockname(l, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    if (l >= 0) ::close(l);
    return Fail("tcp listen");
  }
  fds[0] = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fds[0] < 0 || ::connect(fds[0], reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    if (fds[0] >= 0) ::close(fds[0]);
    ::close(l);
    return Fail("tcp connect");
  }
  fds[1] = ::accept4(l, nullptr, nullptr, SOCK_CLOEXEC);
  ::close(l);
  if (fds[1] < 0) {
    ::close(fds[0]);
    return Fail("tcp accept");
  }
  int one = 1;
  for (int i = 0; i < 2; ++i) ::setsockopt(fds[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return true;
}

void CloseBoth(int fds[2]) {
  ::close(fds[0]);
  ::close(fds[1]);
}

// Writes `n` frames in batches of about kBatch bytes, then ends the stream.
void Write(int fd, const std::string& frame, int n) {
  const int per = static_cast<int>(std::max<size_t>(1, kBatch / frame.size()));
  std::string batch;
  for (int i = 0; i < per; ++i) batch += frame;
  for (int sent = 0; sent < n;) {
    int k = std::min(per, n - sent);
    const char* p = batch.data();
    for (size_t left = k * frame.size(); left > 0;) {
      ssize_t w = ::write(fd, p, left);
      if (w <= 0) return (void)Fail("write");
      p += w;
      left -= static_cast<size_t>(w);
    }
    sent += k;
  }
  ::shutdown(fd, SHUT_WR);
}

// Reads until `n` frames have arrived or the stream ends; the frames counted.
int64_t Sink(int fd, int64_t n) {
  std::vector<char> buf(kBuffer);
  FrameCounter c;
  while (c.frames() < n) {
    ssize_t r = ::read(fd, buf.data(), buf.size());
    if (r <= 0) break;
    c.Feed(buf.data(), static_cast<size_t>(r));
  }
  return c.frames();
}

// Moves everything from `in` to `out` until `in` ends and all of it is written.
// Returns the frames it saw, or -1 on a socket error.
int64_t Forward(int in, int out) {
  for (int fd : {in, out}) ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  int ep = ::epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) {
    Fail("epoll_create1");
    ::shutdown(out, SHUT_WR);
    return -1;
  }
  uint32_t in_events = 0, out_events = 0;
  auto want = [ep](int fd, uint32_t& have, uint32_t events) {
    if (events == have) return;
    epoll_event e{};
    e.events = events;
    e.data.fd = fd;
    ::epoll_ctl(ep, have == 0 ? EPOLL_CTL_ADD : (events == 0 ? EPOLL_CTL_DEL : EPOLL_CTL_MOD), fd, &e);
    have = events;
  };
  std::vector<char> buf(kBuffer);
  size_t rpos = 0, wpos = 0;
  bool eof = false;
  FrameCounter route;
  // False on a socket error.
  auto run = [&]() -> bool {
    while (true) {
      for (bool progress = true; progress;) {
        progress = false;
        if (wpos == buf.size() && rpos > 0) {
          std::memmove(buf.data(), buf.data() + rpos, wpos - rpos);
          wpos -= rpos;
          rpos = 0;
        }
        if (!eof && wpos < buf.size()) {
          ssize_t r = ::read(in, buf.data() + wpos, buf.size() - wpos);
          if (r > 0) {
            route.Feed(buf.data() + wpos, static_cast<size_t>(r));
            wpos += static_cast<size_t>(r);
            progress = true;
          } else if (r == 0) {
            eof = true;
          } else if (errno != EAGAIN) {
            return Fail("forwarder read");
          }
        }
        if (rpos < wpos) {
          ssize_t w = ::write(out, buf.data() + rpos, wpos - rpos);
          if (w > 0) {
            rpos += static_cast<size_t>(w);
            progress = true;
          } else if (errno != EAGAIN) {
            return Fail("forwarder write");
          }
        }
        if (rpos == wpos) rpos = wpos = 0;
      }
      if (eof && rpos == wpos) return true;
      want(in, in_events, !eof && wpos < buf.size() ? uint32_t{EPOLLIN} : 0u);
      want(out, out_events, rpos < wpos ? uint32_t{EPOLLOUT} : 0u);
      epoll_event ev[2];
      if (::epoll_wait(ep, ev, 2, -1) < 0 && errno != EINTR) return Fail("epoll_wait");
    }
  };
  int64_t result = run() ? route.frames() : -1;
  ::shutdown(out, SHUT_WR);  // the sink stops reading either way
  ::close(ep);
  return result;
}

double Rate(int n, absl::Time t0, int64_t got) {
  if (got != n) {
    std::fprintf(stderr, "raw reference: %lld of %d frames arrived\n", static_cast<long long>(got), n);
    return 0;
  }
  return n / absl::ToDoubleSeconds(absl::Now() - t0);
}

}  // namespace

double DirectRate(RawTransport t, const std::string& frame, int n) {
  int s[2];
  if (!Connect(t, s)) return 0;
  int64_t got = 0;
  absl::Time t0 = absl::Now();
  std::thread sink([&] { got = Sink(s[1], n); });
  Write(s[0], frame, n);
  sink.join();
  double rate = Rate(n, t0, got);
  CloseBoth(s);
  return rate;
}

double ForwarderRate(RawTransport t, const std::string& frame, int n) {
  int a[2], b[2];
  if (!Connect(t, a)) return 0;
  if (!Connect(t, b)) {
    CloseBoth(a);
    return 0;
  }
  int64_t got = 0, forwarded = 0;
  absl::Time t0 = absl::Now();
  std::thread sink([&] { got = Sink(b[1], n); });
  std::thread forwarder([&] { forwarded = Forward(a[1], b[0]); });
  Write(a[0], frame, n);
  sink.join();
  forwarder.join();
  double rate = forwarded == n ? Rate(n, t0, got) : 0;
  CloseBoth(a);
  CloseBoth(b);
  return rate;
}

}  // namespace hostd::bench
