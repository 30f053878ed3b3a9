// Builds against an installed hostd and sends one message over a local link.
#include <cstdio>

#include "channel/event_loop.h"
#include "channel/listener.h"
#include "channel/sender.h"

int main() {
  using namespace hostd::channel;
  auto loop = EventLoop::Start("consumer");
  Inbox inbox;
  auto listener = Listener::Serve(*loop, ChannelAddr::Local(0), inbox);
  if (!listener.ok()) return 1;
  auto sender = Sender::Dial(*loop, (*listener)->addr());
  absl::Status sent = sender->Send(*Message::Create("d", "p", "s", "hi"), absl::Now() + absl::Seconds(30));
  absl::StatusOr<Message> got = inbox.Receive(absl::Now() + absl::Seconds(30));
  if (!sent.ok() || !got.ok() || got->payload() != "hi") return 1;
  std::printf("installed hostd: message delivered over %s\n", (*listener)->addr().ToString().c_str());
  return 0;
}
