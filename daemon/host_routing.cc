// The Host's routing (daemon/host.h "Routing"): everything here runs on the
// Host's loop thread.
#include <algorithm>
#include <string>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/log.h"
#include "boost/asio/steady_timer.hpp"
#include "daemon/host.h"
#include "daemon/host_route.h"
#include "proc/proc_runtime.h"

namespace hostd::daemon {

using channel::Message;
using channel::ReturnReason;

// ---- Routing (loop thread) ---------------------------------------------------

bool Host::RouteMessage(Message& msg, const channel::Receiver::Wake& wake, bool from_frontend) {
  absl::string_view dest = msg.dest();
  size_t comma = dest.rfind(',');
  if (comma == absl::string_view::npos) {
    Return(std::move(msg), ReturnReason::kUnroutable,
           absl::StrCat("destination \"", absl::CHexEscape(dest.substr(0, 200)), "\" is not <address>,<proc name>"));
    return true;
  }
  absl::string_view addr = dest.substr(0, comma);
  absl::string_view name = dest.substr(comma + 1);
  if (addr == frontend_text_ && !(from_frontend && name == kStateMailbox)) return RouteLocal(msg, name, wake);
  if (from_frontend || addr == backend_text_) {
    Return(std::move(msg), ReturnReason::kUnroutable,
           absl::StrCat("host ", frontend_text_, " routes only to its own procs, not to ", addr));
    return true;
  }
  return RouteRemote(msg, addr, wake);
}

bool Host::RouteLocal(Message& msg, absl::string_view name, const channel::Receiver::Wake& wake,
                      channel::Sender::Done* hook) {
  if (absl::StartsWith(name, kMailboxPrefix)) {
    auto it = mailboxes_.find(name);
    if (it == mailboxes_.end()) {
      // A late reply to an exchange that is over: nobody waits for it.
      dropped_.fetch_add(1, std::memory_order_relaxed);
    } else {
      auto fn = it->second;  // it may unregister itself
      fn(std::move(msg));
    }
    return true;
  }
  std::shared_ptr<channel::Sender> link;
  uint64_t gen = 0;
  std::string note;
  ReturnReason reason = ReturnReason::kNone;
  {
    absl::MutexLock lock(&mu_);
    auto it = routes_.find(name);
    if (it == routes_.end()) {
      reason = ReturnReason::kUnknownProc;
      note = absl::StrCat("no proc named \"", name, "\" on host ", frontend_text_);
    } else {
      Route& r = *it->second;
      switch (r.state) {
        case Route::State::kStarting:
        case Route::State::kRestarting:
          if (r.buffer.size() >= opts_.starting_buffer_messages ||
              r.buffered_bytes + msg.wire_size() > opts_.starting_buffer_bytes) {
            reason = ReturnReason::kBufferFull;
            note = absl::StrFormat("proc \"%s\" is %s and %d messages (%d bytes) already wait for it", name,
                                   r.state == Route::State::kStarting ? "starting" : "restarting", r.buffer.size(),
                                   r.buffered_bytes);
            break;
          }
          r.buffered_bytes += msg.wire_size();
          r.buffer.emplace_back(std::move(msg), hook ? std::move(*hook) : nullptr);
          return true;
        case Route::State::kReady:
          link = LinkOf(r);
          gen = r.gen;
          break;
        case Route::State::kNoAddress:
          reason = ReturnReason::kUnroutable;
          note = absl::StrCat("proc \"", name, "\" takes no messages (it reported no address)");
          break;
        case Route::State::kEnded:
          reason = ReturnReason::kProcExited;
          note = absl::StrCat("proc \"", name, "\" has ended: ", r.status.ToString());
          break;
      }
    }
  }
  if (link) return Forward(*link, msg, wake, std::string(name), gen, hook);
  Return(std::move(msg), reason, note);
  return true;
}

bool Host::RouteRemote(Message& msg, absl::string_view addr, const channel::Receiver::Wake& wake) {
  auto it = remotes_.find(addr);
  if (it == remotes_.end()) {
    absl::StatusOr<channel::ChannelAddr> parsed = channel::ChannelAddr::Parse(addr);
    if (!parsed.ok()) {
      Return(std::move(msg), ReturnReason::kUnroutable, parsed.status().message());
      return true;
    }
    it = remotes_.emplace(std::string(addr), channel::Sender::Dial(*loop_, *parsed, opts_.remote_link)).first;
  }
  return Forward(*it->second, msg, wake, "", 0);
}

bool Host::Forward(channel::Sender& link, Message& msg, const channel::Receiver::Wake& wake, std::string route_name,
                   uint64_t gen, channel::Sender::Done* hook) {
  size_t size = msg.wire_size();
  channel::Sender::Done done;
  if (hook != nullptr && *hook) {
    done = std::move(*hook);
  } else {
    done = [this, route_name = std::move(route_name), gen](absl::Status s, Message m) {
      if (!s.ok()) ForwardFailed(route_name, gen, s, std::move(m));
    };
  }
  absl::Status posted = link.Post(std::move(msg), std::move(done), channel::WhenFull::kFail);
  if (posted.ok()) {
    forwarded_.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  if (absl::IsResourceExhausted(posted)) {
    link.NotifyWhenRoom(size, wake);
    return false;
  }
  Return(std::move(msg), absl::IsInvalidArgument(posted) ? ReturnReason::kTooLarge : ReturnReason::kProcExited,
         posted.message());
  return true;
}

// Loop thread: a link handed a message back.
void Host::ForwardFailed(const std::string& name, uint64_t gen, const absl::Status& status, Message msg) {
  if (closing_) return;
  if (!name.empty() && Requeue(name, msg)) return;
  ReturnReason reason = channel::ReturnReasonOf(status);
  std::string note(status.message());
  if (!name.empty()) {
    absl::MutexLock lock(&mu_);
    auto it = routes_.find(name);
    // The link closed because the proc ended: say so, with its status.
    if (it == routes_.end() || (gen != 0 && it->second->gen != gen) || it->second->state == Route::State::kEnded) {
      reason = ReturnReason::kProcExited;
      note = it != routes_.end() && it->second->state == Route::State::kEnded
                 ? absl::StrCat("proc \"", name, "\" has ended: ", it->second->status.ToString())
                 : absl::StrCat("proc \"", name, "\" has ended");
    }
  }
  if (reason == ReturnReason::kNone) reason = ReturnReason::kUnroutable;
  Return(std::move(msg), reason, note);
}

void Host::Return(Message msg, ReturnReason reason, absl::string_view note) {
  if (closing_) return;
  if (msg.kind() == Message::Kind::kReturned || msg.src().empty()) {
    dropped_.fetch_add(1, std::memory_order_relaxed);
    base::Log().debug("dropped undeliverable message to {} ({}): {}", msg.dest(), ReturnReasonName(reason), note);
    return;
  }
  returned_.fetch_add(1, std::memory_order_relaxed);
  Message back = msg.ToReturned(reason, note);
  // A returned message that finds no room is dropped rather than waited for.
  bool taken = RouteMessage(back, [] {}, /*from_frontend=*/false);
  if (!taken) {
    dropped_.fetch_add(1, std::memory_order_relaxed);
    base::Log().debug("dropped returned message to {}: its link is full", back.dest());
  }
}

// ---- Messages from the host itself ---------------------------------------------

void Host::SendToProc(const std::string& name, const std::string& port, std::string payload, absl::Duration timeout,
                      absl::Duration reply_timeout, absl::AnyInvocable<void(absl::StatusOr<Reply>)> done) {
  struct Exchange {
    absl::AnyInvocable<void(absl::StatusOr<Reply>)> done;
    std::string mailbox;
    std::unique_ptr<boost::asio::steady_timer> timer;
  };
  loop_->Post([this, name, port, payload = std::move(payload), timeout, reply_timeout,
               done = std::move(done)]() mutable {
    auto x = std::make_shared<Exchange>();
    x->done = std::move(done);
    x->mailbox = absl::StrCat(kMailboxPrefix, next_mailbox_++);
    auto finish = [this, x](absl::StatusOr<Reply> r) {
      if (!x->done) return;
      mailboxes_.erase(x->mailbox);
      x->timer->cancel();
      auto fn = std::move(x->done);
      x->done = nullptr;
      fn(std::move(r));
    };
    absl::StatusOr<Message> msg =
        Message::Create(absl::StrCat(frontend_text_, ",", name), port, absl::StrCat(frontend_text_, ",", x->mailbox),
                        payload);
    x->timer = std::make_unique<boost::asio::steady_timer>(loop_->context());
    if (!msg.ok()) {
      finish(msg.status());
      return;
    }
    mailboxes_[x->mailbox] = [x, finish, name, reply_timeout](Message m) {
      if (m.kind() == Message::Kind::kReturned) {
        finish(absl::Status(m.reason() == ReturnReason::kUnknownProc ? absl::StatusCode::kNotFound
                                                                     : absl::StatusCode::kFailedPrecondition,
                            absl::StrCat("message to proc \"", name, "\" port \"", m.port(),
                                         "\" came back (", ReturnReasonName(m.reason()), "): ", m.note())));
        return;
      }
      if (reply_timeout > absl::ZeroDuration()) {
        finish(Reply{.replied = true, .port = std::string(m.port()), .payload = std::string(m.payload())});
      }
    };
    x->timer->expires_after(absl::ToChronoNanoseconds(timeout + reply_timeout));
    x->timer->async_wait([finish, name](const boost::system::error_code& ec) {
      if (ec) return;
      finish(absl::DeadlineExceededError(absl::StrCat("no ", "delivery or reply from proc \"", name, "\" in time")));
    });
    // Routed like any message to the proc, with a hook on its acknowledgement.
    channel::Sender::Done hook = [this, finish, name, reply_timeout](absl::Status s, Message m) {
      if (!s.ok()) {
        ForwardFailed(name, 0, s, std::move(m));  // comes back to the mailbox with the reason
        return;
      }
      if (reply_timeout <= absl::ZeroDuration()) finish(Reply{});
    };
    if (!RouteLocal(*msg, name, [] {}, &hook)) {
      finish(absl::ResourceExhaustedError(absl::StrCat("the link to proc \"", name, "\" is full; retry later")));
    }
  });
}

// ---- Broadcast signals -----------------------------------------------------------

namespace {

absl::Status ValidateSignal(absl::string_view name, absl::string_view data) {
  constexpr size_t kMaxData = 64 << 10;
  bool ok = !name.empty() && name.size() <= 64;
  for (char c : name) ok = ok && (absl::ascii_isalnum(c) || c == '_' || c == '.' || c == '-');
  if (!ok) {
    return absl::InvalidArgumentError(absl::StrCat("invalid signal name \"", absl::CHexEscape(name.substr(0, 80)),
                                                   "\": use 1-64 letters, digits, '_', '.' and '-'"));
  }
  if (data.size() > kMaxData) {
    return absl::InvalidArgumentError(
        absl::StrCat("signal \"", name, "\": data is ", data.size(), " bytes; at most ", kMaxData));
  }
  return absl::OkStatus();
}

}  // namespace

void Host::Broadcast(const std::string& name, std::string data, const std::string& group,
                     absl::AnyInvocable<void(absl::StatusOr<BroadcastResult>)> done) {
  loop_->Post([this, name, data = std::move(data), group, done = std::move(done)]() mutable {
    if (absl::Status s = ValidateSignal(name, data); !s.ok()) {
      done(s);
      return;
    }
    struct Tally {
      BroadcastResult result;
      int pending = 1;  // the loop below holds one
      absl::AnyInvocable<void(absl::StatusOr<BroadcastResult>)> done;
      void Settle() {
        if (--pending == 0) done(result);
      }
    };
    auto tally = std::make_shared<Tally>();
    tally->done = std::move(done);
    const std::string payload = data.empty() ? name : absl::StrCat(name, "\n", data);
    const std::string src = absl::StrCat(frontend_text_, ",", kSignalMailbox);
    std::vector<std::pair<std::shared_ptr<channel::Sender>, Message>> posts;
    {
      absl::MutexLock lock(&mu_);
      if (!group.empty() && supervisor_.PathOfGroup(group).empty()) {
        tally->done(absl::NotFoundError(absl::StrCat("no group named \"", group, "\"")));
        return;
      }
      for (auto& [n, r] : routes_) {
        if (!group.empty()) {
          std::vector<std::string> path = supervisor_.GroupPath(n);
          if (std::find(path.begin(), path.end(), group) == path.end()) continue;
        }
        absl::StatusOr<Message> msg = Message::Create(absl::StrCat(frontend_text_, ",", n), proc::kSignalPort, src,
                                                      payload);
        if (!msg.ok()) continue;  // names and payload are validated: cannot happen
        switch (r->state) {
          case Route::State::kReady:
            posts.emplace_back(LinkOf(*r), *std::move(msg));
            break;
          case Route::State::kStarting:
          case Route::State::kRestarting:
            // First once it is ready: ahead of what waits, behind earlier signals.
            r->HoldAhead(*std::move(msg));
            ++tally->result.targeted;
            ++tally->result.queued;
            break;
          case Route::State::kNoAddress:
          case Route::State::kEnded:
            break;
        }
      }
    }
    for (auto& [link, msg] : posts) {
      ++tally->result.targeted;
      ++tally->pending;
      absl::Status posted = link->PostControl(std::move(msg), [tally](absl::Status s, Message) {
        ++(s.ok() ? tally->result.delivered : tally->result.failed);
        tally->Settle();
      });
      if (!posted.ok()) {
        ++tally->result.failed;
        --tally->pending;
      }
    }
    tally->Settle();
  });
}

}  // namespace hostd::daemon
