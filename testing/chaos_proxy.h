// ChaosProxy: forwards bytes between dialers and a listener, and lets a test break
// the path: cut every connection abruptly (mid-frame, no goodbye), refuse new ones,
// or point at a different upstream (a "restarted" server).
//
//   auto proxy = ChaosProxy::Start(*loop, *ChannelAddr::Parse("unix:"), listener->addr());
//   auto sender = Sender::Dial(*loop, (*proxy)->addr());
//   (*proxy)->CutAll();
//
// Thread-safe; runs on the given loop, which must outlive it.
#ifndef HOSTD_TESTING_CHAOS_PROXY_H_
#define HOSTD_TESTING_CHAOS_PROXY_H_

#include <memory>

#include "absl/status/statusor.h"
#include "channel/channel_addr.h"
#include "channel/event_loop.h"

namespace hostd::testing {

class ChaosProxy {
 public:
  static absl::StatusOr<std::unique_ptr<ChaosProxy>> Start(channel::EventLoop& loop, const channel::ChannelAddr& listen,
                                                           const channel::ChannelAddr& upstream);
  ~ChaosProxy();

  const channel::ChannelAddr& addr() const;
  // Closes every proxied connection now, wherever its byte streams are.
  void CutAll();
  // Connections accepted from now on are closed at once while refusing.
  void SetRefusing(bool refusing);
  void SetUpstream(const channel::ChannelAddr& upstream);
  // Connections cut by CutAll so far.
  uint64_t cuts() const;

  class Impl;

 private:
  explicit ChaosProxy(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<Impl> impl_;  // shared with in-flight handlers
};

}  // namespace hostd::testing

#endif  // HOSTD_TESTING_CHAOS_PROXY_H_
