#include "daemon/router.h"

#include <algorithm>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/log.h"
#include "boost/asio/steady_timer.hpp"
#include "proc/proc_runtime.h"

namespace hostd::daemon {

using channel::Message;
using channel::ReturnReason;

// What a listener hands its messages to: the frontend's or the backend's side.
class Router::Entrance final : public channel::Receiver {
 public:
  Entrance(Router& router, bool frontend) : router_(router), frontend_(frontend) {}
  bool Deliver(Message& msg, const Wake& wake) override {
    return router_.RouteMessage(msg, wake, frontend_);
  }

 private:
  Router& router_;
  const bool frontend_;
};

struct Router::Route {
  enum class State { kStarting, kReady, kNoAddress, kRestarting, kEnded };
  State state = State::kStarting;
  uint64_t gen = 0;
  std::optional<channel::ChannelAddr> addr;  // kReady
  std::shared_ptr<channel::Sender> link;     // kReady, dialed with the first message
  Held held;                                 // kStarting, kRestarting: with their ack hooks
  size_t held_bytes = 0;
  size_t held_front = 0;  // entries at the front placed out of arrival order (signals, requeued)
  std::string end_note;   // kEnded

  bool waiting() const { return state == State::kStarting || state == State::kRestarting; }
  // Holds `m` ahead of what arrived in order, behind what was placed ahead before.
  void HoldAhead(Message m) {
    held_bytes += m.wire_size();
    held.emplace(held.begin() + static_cast<std::ptrdiff_t>(held_front++), std::move(m), nullptr);
  }
  Held TakeHeld() {
    held_bytes = 0;
    held_front = 0;
    return std::exchange(held, {});
  }
};

Router::Router(channel::EventLoop& loop, Options options)
    : loop_(loop),
      opts_(std::move(options)),
      front_(std::make_unique<Entrance>(*this, true)),
      back_(std::make_unique<Entrance>(*this, false)),
      adopting_(opts_.hold_until_adopted) {}

Router::~Router() = default;

channel::Receiver& Router::frontend_receiver() { return *front_; }
channel::Receiver& Router::backend_receiver() { return *back_; }

void Router::SetAddresses(std::string frontend, std::string backend) {
  frontend_text_ = std::move(frontend);
  backend_text_ = std::move(backend);
}

Router::Counters Router::counters() const {
  Counters c;
  c.returned = returned_.load(std::memory_order_relaxed);
  c.dropped = dropped_.load(std::memory_order_relaxed);
  for (size_t k = 0; k < kLinkKinds; ++k) {
    c.forwarded_by_kind[k] = forwarded_[k].load(std::memory_order_relaxed);
    c.forwarded_bytes_by_kind[k] = forwarded_bytes_[k].load(std::memory_order_relaxed);
    c.blocked_by_kind[k] = blocked_[k].load(std::memory_order_relaxed);
    c.forwarded += c.forwarded_by_kind[k];
  }
  for (size_t r = 0; r < kReturnReasons; ++r)
    c.returned_by_reason[r] = returned_by_reason_[r].load(std::memory_order_relaxed);
  return c;
}

namespace {

// Adds the cumulative counters of `from` to `to`; with `now`, the gauges too.
void AddStats(channel::SenderStats& to, const channel::SenderStats& from, bool now) {
  to.messages_sent += from.messages_sent;
  to.bytes_sent += from.bytes_sent;
  to.messages_acked += from.messages_acked;
  to.messages_returned += from.messages_returned;
  to.retransmits += from.retransmits;
  to.sends_waited += from.sends_waited;
  to.sends_rejected += from.sends_rejected;
  to.queue_time_total += from.queue_time_total;
  to.queue_time_max = std::max(to.queue_time_max, from.queue_time_max);
  to.connects += from.connects;
  to.connect_failures += from.connect_failures;
  to.session_resets += from.session_resets;
  if (now) {
    to.queue_depth += from.queue_depth;
    to.queue_bytes += from.queue_bytes;
    to.max_queue_depth = std::max(to.max_queue_depth, from.max_queue_depth);
  }
}

}  // namespace

std::array<Router::LinkTotals, Router::kLinkKinds> Router::LinkStats() const {
  loop_.AssertInLoop("Router::LinkStats");
  std::array<LinkTotals, kLinkKinds> out{};
  for (size_t k = 0; k < kLinkKinds; ++k) AddStats(out[k].stats, retired_[k], /*now=*/false);
  LinkTotals& procs = out[static_cast<size_t>(LinkKind::kProc)];
  for (const auto& [name, r] : routes_) {
    if (r->link == nullptr) continue;
    ++procs.open_links;
    AddStats(procs.stats, r->link->stats(), /*now=*/true);
  }
  LinkTotals& remotes = out[static_cast<size_t>(LinkKind::kRemote)];
  for (const auto& [addr, l] : remotes_) {
    ++remotes.open_links;
    AddStats(remotes.stats, l->stats(), /*now=*/true);
  }
  return out;
}

void Router::Retire(LinkKind kind, channel::Sender& link) {
  link.Close();
  AddStats(retired_[static_cast<size_t>(kind)], link.stats(), /*now=*/false);
}

// ---- The route table ------------------------------------------------------------

void Router::Open(const std::string& name, uint64_t gen) {
  loop_.AssertInLoop("Router::Open");
  std::unique_ptr<Route>& slot = routes_[name];
  if (slot != nullptr && slot->link) Retire(LinkKind::kProc, *slot->link);
  slot = std::make_unique<Route>();
  slot->gen = gen;
}

// Runs before any later message is routed (both on the loop), so order holds.
void Router::Activate(const std::string& name, uint64_t gen, std::optional<channel::ChannelAddr> addr) {
  loop_.AssertInLoop("Router::Activate");
  auto it = routes_.find(name);
  if (it == routes_.end() || !it->second->waiting()) return;
  Route& r = *it->second;
  r.gen = gen;
  r.addr = std::move(addr);
  r.state = r.addr.has_value() ? Route::State::kReady : Route::State::kNoAddress;
  Held held = r.TakeHeld();
  if (held.empty()) return;
  if (r.state == Route::State::kNoAddress) {
    Bounce(std::move(held), ReturnReason::kUnroutable, absl::StrCat("proc \"", name, "\" takes no messages"));
    return;
  }
  LinkOf(name, r);
  const std::shared_ptr<channel::Sender> link = r.link;  // kept while the loop below runs
  for (auto& [m, hook] : held) {
    // The buffer is smaller than a fresh link's queue, so this never waits.
    (void)Forward(
        *link, LinkKind::kProc, m, [] {}, hook ? &hook : nullptr);
  }
}

void Router::Restart(const std::string& name) {
  loop_.AssertInLoop("Router::Restart");
  auto it = routes_.find(name);
  if (it == routes_.end()) return;
  Route& r = *it->second;
  r.state = Route::State::kRestarting;
  r.addr.reset();
  // What is still queued comes back through ForwardFailed, into the buffer.
  if (std::shared_ptr<channel::Sender> link = std::move(r.link)) Retire(LinkKind::kProc, *link);
}

void Router::End(const std::string& name, std::string note) {
  loop_.AssertInLoop("Router::End");
  auto it = routes_.find(name);
  if (it == routes_.end()) return;
  Route& r = *it->second;
  r.state = Route::State::kEnded;
  r.end_note = std::move(note);
  r.addr.reset();
  Held held = r.TakeHeld();
  // What is still queued comes back through ForwardFailed as kProcExited.
  if (std::shared_ptr<channel::Sender> link = std::move(r.link)) Retire(LinkKind::kProc, *link);
  Bounce(std::move(held), ReturnReason::kProcExited, r.end_note);
}

void Router::Abandon(const std::string& name, uint64_t gen, std::string note) {
  loop_.AssertInLoop("Router::Abandon");
  auto it = routes_.find(name);
  if (it == routes_.end() || it->second->gen != gen) return;
  Held held = it->second->TakeHeld();
  routes_.erase(it);
  Bounce(std::move(held), ReturnReason::kProcExited, note);
}

void Router::Forget(const std::string& name) {
  loop_.AssertInLoop("Router::Forget");
  auto it = routes_.find(name);
  if (it == routes_.end() || it->second->state != Route::State::kEnded) return;
  routes_.erase(it);
}

void Router::Adopted() {
  loop_.AssertInLoop("Router::Adopted");
  adopting_ = false;
  for (channel::Receiver::Wake& wake : std::exchange(adoption_wakes_, {})) wake();
}

void Router::Bounce(Held held, ReturnReason reason, const std::string& note) {
  for (auto& [m, hook] : held) Return(std::move(m), reason, note);
}

// A proc's link is dialed when the first message for it arrives: most procs of a
// big host are never messaged, and an idle link costs memory.
channel::Sender& Router::LinkOf(const std::string& name, Route& r) {
  if (r.link == nullptr) {
    channel::SenderOptions o = opts_.proc_link;
    o.on_peer_restart = channel::OnPeerRestart::kReturn;
    r.link = channel::Sender::Dial(loop_, *r.addr, o, ReturnsTo(name, r.gen));
  }
  return *r.link;
}

// ---- Routing ------------------------------------------------------------------------

bool Router::RouteMessage(Message& msg, const channel::Receiver::Wake& wake, bool from_frontend) {
  absl::string_view dest = msg.dest();
  size_t comma = dest.rfind(',');
  if (comma == absl::string_view::npos) {
    Return(std::move(msg), ReturnReason::kUnroutable,
           absl::StrCat("destination \"", absl::CHexEscape(dest.substr(0, 200)), "\" is not <address>,<proc name>"));
    return true;
  }
  absl::string_view addr = dest.substr(0, comma);
  absl::string_view name = dest.substr(comma + 1);
  if (addr == frontend_text_ && !(from_frontend && (name == kStateMailbox || name == kLivenessMailbox))) {
    if (adopting_ && !absl::StartsWith(name, kMailboxPrefix) && !routes_.contains(name)) {
      // Perhaps a proc about to be re-adopted: not taken, so it waits in its link.
      adoption_wakes_.push_back(wake);
      return false;
    }
    return RouteLocal(msg, name, wake);
  }
  if (from_frontend || addr == backend_text_) {
    Return(std::move(msg), ReturnReason::kUnroutable,
           absl::StrCat("host ", frontend_text_, " routes only to its own procs, not to ", addr));
    return true;
  }
  return RouteRemote(msg, addr, wake);
}

bool Router::RouteLocal(Message& msg, absl::string_view name, const channel::Receiver::Wake& wake,
                        channel::Sender::Done* hook) {
  if (absl::StartsWith(name, kMailboxPrefix)) {
    auto it = mailboxes_.find(name);
    if (it == mailboxes_.end()) {
      // A late reply to an exchange that is over: nobody waits for it.
      dropped_.fetch_add(1, std::memory_order_relaxed);
    } else {
      Mailbox fn = it->second;  // it may unregister itself
      fn(std::move(msg));
    }
    return true;
  }
  auto it = routes_.find(name);
  if (it == routes_.end()) {
    Return(std::move(msg), ReturnReason::kUnknownProc,
           absl::StrCat("no proc named \"", name, "\" on host ", frontend_text_));
    return true;
  }
  Route& r = *it->second;
  switch (r.state) {
    case Route::State::kStarting:
    case Route::State::kRestarting:
      if (r.held.size() >= opts_.starting_buffer_messages ||
          r.held_bytes + msg.wire_size() > opts_.starting_buffer_bytes) {
        Return(std::move(msg), ReturnReason::kBufferFull,
               absl::StrFormat("proc \"%s\" is %s and %d messages (%d bytes) already wait for it", name,
                               r.state == Route::State::kStarting ? "starting" : "restarting", r.held.size(),
                               r.held_bytes));
        return true;
      }
      r.held_bytes += msg.wire_size();
      r.held.emplace_back(std::move(msg), hook ? std::move(*hook) : nullptr);
      return true;
    case Route::State::kReady: return Forward(LinkOf(it->first, r), LinkKind::kProc, msg, wake, hook);
    case Route::State::kNoAddress:
      Return(std::move(msg), ReturnReason::kUnroutable,
             absl::StrCat("proc \"", name, "\" takes no messages (it reported no address)"));
      return true;
    case Route::State::kEnded: Return(std::move(msg), ReturnReason::kProcExited, r.end_note); return true;
  }
  return true;
}

bool Router::RouteRemote(Message& msg, absl::string_view addr, const channel::Receiver::Wake& wake) {
  auto it = remotes_.find(addr);
  if (it == remotes_.end()) {
    absl::StatusOr<channel::ChannelAddr> parsed = channel::ChannelAddr::Parse(addr);
    if (!parsed.ok()) {
      Return(std::move(msg), ReturnReason::kUnroutable, parsed.status().message());
      return true;
    }
    it = remotes_
             .emplace(std::string(addr),
                      channel::Sender::Dial(loop_, *parsed, opts_.remote_link, ReturnsTo("", 0)))
             .first;
  }
  return Forward(*it->second, LinkKind::kRemote, msg, wake);
}

// The return handler of a link (see router.h).
channel::Sender::Done Router::ReturnsTo(std::string name, uint64_t gen) {
  return [this, name = std::move(name), gen](absl::Status s, Message m) { ForwardFailed(name, gen, s, std::move(m)); };
}

bool Router::Forward(channel::Sender& link, LinkKind link_kind, Message& msg, const channel::Receiver::Wake& wake,
                     channel::Sender::Done* hook) {
  size_t size = msg.wire_size();
  const size_t kind = static_cast<size_t>(link_kind);
  // Without a hook the link's return handler takes the message if it comes back.
  absl::Status posted =
      link.Post(std::move(msg), hook != nullptr ? std::move(*hook) : nullptr, channel::WhenFull::kFail);
  if (posted.ok()) {
    forwarded_[kind].fetch_add(1, std::memory_order_relaxed);
    forwarded_bytes_[kind].fetch_add(size, std::memory_order_relaxed);
    return true;
  }
  if (absl::IsResourceExhausted(posted)) {
    blocked_[kind].fetch_add(1, std::memory_order_relaxed);
    link.NotifyWhenRoom(size, wake);
    return false;
  }
  Return(std::move(msg), absl::IsInvalidArgument(posted) ? ReturnReason::kTooLarge : ReturnReason::kProcExited,
         posted.message());
  return true;
}

// A link handed a message back.
void Router::ForwardFailed(const std::string& name, uint64_t gen, const absl::Status& status, Message msg) {
  loop_.AssertInLoop("Router::ForwardFailed");
  if (closing_) return;
  auto it = name.empty() ? routes_.end() : routes_.find(name);
  if (it != routes_.end() && it->second->state == Route::State::kRestarting) {
    // Sent before what arrived since: ahead of it, for the next incarnation.
    it->second->HoldAhead(std::move(msg));
    return;
  }
  ReturnReason reason = channel::ReturnReasonOf(status);
  std::string note(status.message());
  if (!name.empty()) {
    // The link closed because the proc ended: say so, with its status.
    if (it != routes_.end() && it->second->state == Route::State::kEnded) {
      reason = ReturnReason::kProcExited;
      note = it->second->end_note;
    } else if (it == routes_.end() || (gen != 0 && it->second->gen != gen)) {
      reason = ReturnReason::kProcExited;
      note = absl::StrCat("proc \"", name, "\" has ended");
    }
  }
  if (reason == ReturnReason::kNone) reason = ReturnReason::kUnroutable;
  Return(std::move(msg), reason, note);
}

void Router::Return(Message msg, ReturnReason reason, absl::string_view note) {
  loop_.AssertInLoop("Router::Return");
  if (closing_) return;
  if (msg.kind() == Message::Kind::kReturned || msg.src().empty()) {
    dropped_.fetch_add(1, std::memory_order_relaxed);
    base::Log().debug("dropped undeliverable message to {} ({}): {}", msg.dest(), ReturnReasonName(reason), note);
    return;
  }
  returned_.fetch_add(1, std::memory_order_relaxed);
  returned_by_reason_[std::min(static_cast<size_t>(reason), kReturnReasons - 1)].fetch_add(1,
                                                                                           std::memory_order_relaxed);
  Message back = msg.ToReturned(reason, note);
  // A returned message that finds no room is dropped rather than waited for.
  bool taken = RouteMessage(
      back, [] {}, /*from_frontend=*/false);
  if (!taken) {
    dropped_.fetch_add(1, std::memory_order_relaxed);
    base::Log().debug("dropped returned message to {}: its link is full", back.dest());
  }
}

void Router::AddMailbox(std::string name, Mailbox fn) {
  loop_.AssertInLoop("Router::AddMailbox");
  mailboxes_[std::move(name)] = std::move(fn);
}

void Router::Close() {
  loop_.AssertInLoop("Router::Close");
  closing_ = true;
  for (auto& [name, r] : routes_) {
    if (std::shared_ptr<channel::Sender> link = std::move(r->link)) link->Close();
  }
  routes_.clear();
  for (auto& [addr, l] : remotes_) l->Close();
  remotes_.clear();  // on the loop: their last callbacks run inline
}

// ---- Messages from the host itself ------------------------------------------------

void Router::SendToProc(const std::string& name, const std::string& port, std::string payload, absl::Duration timeout,
                        absl::Duration reply_timeout, absl::AnyInvocable<void(absl::StatusOr<Reply>)> done) {
  struct Exchange {
    absl::AnyInvocable<void(absl::StatusOr<Reply>)> done;
    std::string mailbox;
    std::unique_ptr<boost::asio::steady_timer> timer;
  };
  loop_.Post(
      [this, name, port, payload = std::move(payload), timeout, reply_timeout, done = std::move(done)]() mutable {
        auto x = std::make_shared<Exchange>();
        x->done = std::move(done);
        x->mailbox = absl::StrCat(kMailboxPrefix, next_mailbox_++);
        x->timer = std::make_unique<boost::asio::steady_timer>(loop_.context());
        auto finish = [this, x](absl::StatusOr<Reply> r) {
          if (!x->done) return;
          mailboxes_.erase(x->mailbox);
          x->timer->cancel();
          auto fn = std::move(x->done);
          x->done = nullptr;
          fn(std::move(r));
        };
        absl::StatusOr<Message> msg = Message::Create(absl::StrCat(frontend_text_, ",", name), port,
                                                      absl::StrCat(frontend_text_, ",", x->mailbox), payload);
        if (!msg.ok()) {
          finish(msg.status());
          return;
        }
        mailboxes_[x->mailbox] = [finish, name, reply_timeout](Message m) {
          if (m.kind() == Message::Kind::kReturned) {
            finish(absl::Status(m.reason() == ReturnReason::kUnknownProc ? absl::StatusCode::kNotFound
                                                                         : absl::StatusCode::kFailedPrecondition,
                                absl::StrCat("message to proc \"", name, "\" port \"", m.port(), "\" came back (",
                                             ReturnReasonName(m.reason()), "): ", m.note())));
            return;
          }
          if (reply_timeout > absl::ZeroDuration()) {
            finish(Reply{.replied = true, .port = std::string(m.port()), .payload = std::string(m.payload())});
          }
        };
        x->timer->expires_after(absl::ToChronoNanoseconds(timeout + reply_timeout));
        x->timer->async_wait([finish, name](const boost::system::error_code& ec) {
          if (ec) return;
          finish(absl::DeadlineExceededError(absl::StrCat("no delivery or reply from proc \"", name, "\" in time")));
        });
        // Routed like any message to the proc, with a hook on its acknowledgement.
        channel::Sender::Done hook = [this, finish, name, reply_timeout](absl::Status s, Message m) {
          if (!s.ok()) {
            ForwardFailed(name, 0, s, std::move(m));  // comes back to the mailbox with the reason
            return;
          }
          if (reply_timeout <= absl::ZeroDuration()) finish(Reply{});
        };
        if (!RouteLocal(
                *msg, name, [] {}, &hook)) {
          finish(absl::ResourceExhaustedError(absl::StrCat("the link to proc \"", name, "\" is full; retry later")));
        }
      });
}

void Router::Signal(const std::vector<std::string>& names, const std::string& payload,
                    absl::AnyInvocable<void(BroadcastResult)> done) {
  loop_.AssertInLoop("Router::Signal");
  struct Tally {
    BroadcastResult result;
    int pending = 1;  // the loop below holds one
    absl::AnyInvocable<void(BroadcastResult)> done;
    void Settle() {
      if (--pending == 0) done(result);
    }
  };
  auto tally = std::make_shared<Tally>();
  tally->done = std::move(done);
  const std::string src = absl::StrCat(frontend_text_, ",", kSignalMailbox);
  for (const std::string& n : names) {
    auto it = routes_.find(n);
    if (it == routes_.end()) continue;
    Route& r = *it->second;
    if (r.state != Route::State::kReady && !r.waiting()) continue;
    absl::StatusOr<Message> msg =
        Message::Create(absl::StrCat(frontend_text_, ",", n), proc::kSignalPort, src, payload);
    if (!msg.ok()) continue;  // names and payload are validated: cannot happen
    ++tally->result.targeted;
    if (r.waiting()) {
      // First once it is ready: ahead of what waits, behind earlier signals.
      r.HoldAhead(*std::move(msg));
      ++tally->result.queued;
      continue;
    }
    ++tally->pending;
    absl::Status posted = LinkOf(n, r).PostControl(*std::move(msg), [tally](absl::Status s, Message) {
      ++(s.ok() ? tally->result.delivered : tally->result.failed);
      tally->Settle();
    });
    if (!posted.ok()) {
      ++tally->result.failed;
      --tally->pending;
    }
  }
  tally->Settle();
}

size_t Router::Unacked() const {
  loop_.AssertInLoop("Router::Unacked");
  size_t n = 0;
  for (const auto& [name, r] : routes_) {
    n += r->held.size();
    if (r->link) n += r->link->stats().queue_depth;
  }
  for (const auto& [addr, link] : remotes_) n += link->stats().queue_depth;
  return n;
}

}  // namespace hostd::daemon
