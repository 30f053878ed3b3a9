// The two server-streaming calls of HostService: WatchProcs and StreamLogs.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/errno_status.h"
#include "base/unique_fd.h"
#include "boost/asio/steady_timer.hpp"
#include "daemon/host_service.h"
#include "daemon/proto_convert.h"

namespace hostd::daemon {
namespace {

constexpr size_t kLogChunk = 64 << 10;
constexpr absl::Duration kLogPoll = absl::Milliseconds(100);

// A server stream written one message at a time from a bounded queue, finished
// exactly once (a Finish asked for during a write waits for that write). With a
// budget, the queued bytes count against every stream's total (WatchBudget).
// Registered in `open` from construction until Detach, which OnDone calls first;
// the same slot lets events and timers reach the stream while it lives (IfAlive).
template <typename T>
class QueuedWriter : public grpc::ServerWriteReactor<T>, public OpenStreams::Endable {
 public:
  QueuedWriter(OpenStreams& open, size_t max_queued, std::shared_ptr<WatchBudget> budget = nullptr)
      : max_queued_(max_queued), budget_(std::move(budget)), slot_(std::make_shared<OpenStreams::Slot>()) {
    {
      absl::MutexLock lock(&slot_->mu);
      slot_->stream = this;
    }
    open.Add(slot_);
  }

  // False when the stream is over or ending. Finishes with RESOURCE_EXHAUSTED on overflow.
  bool Enqueue(T msg) {
    absl::MutexLock lock(&mu_);
    if (finished_ || ending_) return false;
    if (queue_.size() >= max_queued_) {
      FinishLocked(
          grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                       absl::StrFormat("the client fell %d messages behind, the limit (hostd --watch-backlog); "
                                       "read faster, or start again",
                                       queue_.size())));
      return false;
    }
    const size_t size = msg.ByteSizeLong() + sizeof(T);
    if (budget_ != nullptr) {
      const size_t total = budget_->bytes.load(std::memory_order_relaxed);
      const size_t fair = budget_->max_bytes / std::max<size_t>(1, budget_->streams.load(std::memory_order_relaxed));
      if (total + size > budget_->max_bytes && queued_bytes_ + size > fair) {
        FinishLocked(grpc::Status(
            grpc::StatusCode::RESOURCE_EXHAUSTED,
            absl::StrFormat("the client fell %d events (%d bytes) behind while all WatchProcs streams together hold "
                            "%d bytes (max_watch_bytes %d); read faster, or start again",
                            queue_.size(), queued_bytes_, total, budget_->max_bytes)));
        return false;
      }
      budget_->bytes.fetch_add(size, std::memory_order_relaxed);
    }
    queued_bytes_ += size;
    queue_.emplace_back(std::move(msg), size);
    StartNextLocked();
    return true;
  }

  void FinishOnce(const grpc::Status& s) {
    absl::MutexLock lock(&mu_);
    FinishLocked(s);
  }

  void EndWhenDrained(const grpc::Status& s) override {
    absl::MutexLock lock(&mu_);
    if (finished_ || ending_) return;
    ending_ = true;
    end_status_ = s;
    if (!writing_ && queue_.empty()) FinishLocked(s);
  }

  void OnWriteDone(bool ok) override {
    bool drained = false;
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (!ok) FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "the client went away"));
      if (finishing_) {
        finishing_ = false;
        this->Finish(final_);
        return;
      }
      if (finished_) return;
      StartNextLocked();
      if (ending_ && !writing_) {
        FinishLocked(end_status_);
        return;
      }
      drained = !writing_;
    }
    if (drained) OnDrained();
  }
  void OnCancel() override { FinishOnce(grpc::Status::CANCELLED); }

 protected:
  // Out of the open streams, and out of reach of IfAlive: the first thing OnDone does.
  void Detach() {
    absl::MutexLock lock(&slot_->mu);
    slot_->stream = nullptr;
  }

  // Calls fn(stream) under the slot's lock unless the stream (a D) has been detached:
  // how an event or a timer on another thread reaches it.
  template <typename D, typename Fn>
  static void IfAlive(const std::shared_ptr<OpenStreams::Slot>& slot, Fn fn) {
    absl::MutexLock lock(&slot->mu);
    if (slot->stream != nullptr) fn(static_cast<D&>(*slot->stream));
  }
  const std::shared_ptr<OpenStreams::Slot>& slot() const { return slot_; }

  // The queue emptied after a write (called without the lock).
  virtual void OnDrained() {}

 private:
  void StartNextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (writing_ || finished_ || queue_.empty()) return;
    Unqueued(queue_.front().second);
    current_ = std::move(queue_.front().first);
    queue_.pop_front();
    writing_ = true;
    this->StartWrite(&current_);
  }
  void FinishLocked(const grpc::Status& s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) return;
    finished_ = true;
    // What was never going to be written goes now, not when gRPC is done with the
    // stream.
    Unqueued(queued_bytes_);
    std::deque<std::pair<T, size_t>>().swap(queue_);
    if (writing_) {  // OnWriteDone finishes
      finishing_ = true;
      final_ = s;
      return;
    }
    this->Finish(s);
  }
  void Unqueued(size_t bytes) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    queued_bytes_ -= bytes;
    if (budget_ != nullptr) budget_->bytes.fetch_sub(bytes, std::memory_order_relaxed);
  }

  const size_t max_queued_;
  const std::shared_ptr<WatchBudget> budget_;
  absl::Mutex mu_;
  std::deque<std::pair<T, size_t>> queue_ ABSL_GUARDED_BY(mu_);  // each with its counted size
  size_t queued_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  T current_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool finishing_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status final_ ABSL_GUARDED_BY(mu_);
  bool ending_ ABSL_GUARDED_BY(mu_) = false;  // EndWhenDrained: finish once the queue is written
  grpc::Status end_status_ ABSL_GUARDED_BY(mu_);
  const std::shared_ptr<OpenStreams::Slot> slot_;
};

// WatchProcs: the host's events, filtered by name.
class EventStream final : public QueuedWriter<v1::ProcEvent> {
 public:
  // The caller has counted it in budget->streams already. `lease_hold`: the
  // HoldLease of the owner the request names, released when the stream ends.
  EventStream(OpenStreams& open, Host& host, channel::EventLoop& loop, const v1::WatchProcsRequest& req,
              size_t max_backlog, std::shared_ptr<WatchBudget> budget, std::optional<uint64_t> lease_hold)
      : QueuedWriter(open, max_backlog, budget),
        budget_(std::move(budget)),
        host_(host),
        loop_(loop),
        names_(req.names().begin(), req.names().end()),
        group_(req.group()),
        lease_hold_(lease_hold) {
    sub_ = host_.Subscribe(
        [slot = slot(), names = names_, group = group_](const HostEvent& e) {
          if (!names.empty() && (e.is_group || !names.contains(e.name))) return;
          if (!group.empty() && std::find(e.groups.begin(), e.groups.end(), group) == e.groups.end()) return;
          v1::ProcEvent pe;
          ToProto(e, &pe);
          IfAlive<EventStream>(slot, [&](EventStream& s) { s.Enqueue(std::move(pe)); });
        },
        req.snapshot());
  }

  void OnDone() override {
    Detach();
    // Not inline: this may run under the host's lock, in an event's delivery.
    loop_.Post([&host = host_, id = sub_, hold = lease_hold_] {
      host.Unsubscribe(id);
      if (hold) host.ReleaseLease(*hold);
    });
    budget_->streams.fetch_sub(1, std::memory_order_relaxed);
    delete this;
  }

 private:
  const std::shared_ptr<WatchBudget> budget_;
  Host& host_;
  channel::EventLoop& loop_;
  const absl::flat_hash_set<std::string> names_;
  const std::string group_;
  const std::optional<uint64_t> lease_hold_;
  uint64_t sub_ = 0;
};

// Where the last `lines` lines of `files` (older first, read as one text) begin:
// the index of the first file to read and the offset in it. A final newline ends
// the last line rather than starting another.
std::pair<size_t, off_t> TailLineStart(const std::vector<base::UniqueFd>& files, int64_t lines) {
  std::string buf(kLogChunk, '\0');
  int64_t seen = 0;
  bool at_end = true;
  for (size_t i = files.size(); i-- > 0;) {
    struct stat st {};
    if (fstat(files[i].get(), &st) != 0) continue;
    for (off_t pos = st.st_size; pos > 0;) {
      off_t len = std::min<off_t>(pos, static_cast<off_t>(buf.size()));
      pos -= len;
      ssize_t n = pread(files[i].get(), buf.data(), static_cast<size_t>(len), pos);
      if (n != len) return {0, 0};  // cannot read it backwards: send it all
      for (off_t j = len; j-- > 0;) {
        bool newline = buf[static_cast<size_t>(j)] == '\n';
        if (newline && !at_end && ++seen == lines) return {i, pos + j + 1};
        at_end = false;
      }
    }
  }
  return {0, 0};
}

// StreamLogs: the files from an offset (the newest rotated one, then the log),
// then (following) what is appended to the log until the proc has ended for good
// (not restarting: the logs of a supervised proc hold every incarnation's output)
// and everything it wrote was sent. When a rotation truncates the log while it is
// followed, the stream goes on from the log's new start (what was written between
// the last read and the rotation is in <log>.1, not in the stream).
class LogStream final : public QueuedWriter<v1::LogChunk> {
 public:
  // `ended`: whether the proc has ended for good; any thread.
  // `files`: older first, each at the offset to read from; the last is the log.
  LogStream(OpenStreams& open, channel::EventLoop& loop, std::vector<base::UniqueFd> files, bool follow,
            std::function<bool()> ended)
      : QueuedWriter(open, 2),
        loop_(loop),
        files_(std::move(files)),
        follow_(follow),
        ended_(std::move(ended)) {}

  void Start() { ReadMore(); }

  void OnDone() override {
    Detach();
    delete this;
  }

 protected:
  void OnDrained() override { ReadMore(); }

 private:
  // One at a time: from Start, OnDrained or the poll timer.
  void ReadMore() {
    v1::LogChunk chunk;
    std::string* data = chunk.mutable_data();
    data->resize(kLogChunk);
    int fd = files_[current_].get();
    ssize_t n = read(fd, data->data(), data->size());
    if (n > 0) {
      data->resize(static_cast<size_t>(n));
      Enqueue(std::move(chunk));
      return;
    }
    if (n == 0 && current_ + 1 < files_.size()) {
      ++current_;
      ReadMore();
      return;
    }
    struct stat st {};
    if (n == 0 && fstat(fd, &st) == 0 && st.st_size < lseek(fd, 0, SEEK_CUR)) {
      (void)lseek(fd, 0, SEEK_SET);  // rotated under us
      ReadMore();
      return;
    }
    if (n < 0) {
      FinishOnce(ToGrpc(base::ErrnoError(absl::StatusCode::kInternal, errno, "reading the log failed")));
      return;
    }
    // At the end of the file. The proc is asked about only here (not per chunk);
    // once it has ended, one more read takes what it wrote before, and then the
    // stream is complete.
    if (!follow_ || saw_end_) {
      FinishOnce(grpc::Status::OK);
      return;
    }
    if (ended_()) {
      saw_end_ = true;
      ReadMore();
      return;
    }
    auto timer = std::make_shared<boost::asio::steady_timer>(loop_.context());
    loop_.Post([timer, slot = slot()] {
      timer->expires_after(absl::ToChronoNanoseconds(kLogPoll));
      timer->async_wait([timer, slot](const boost::system::error_code&) {
        IfAlive<LogStream>(slot, [](LogStream& s) { s.ReadMore(); });
      });
    });
  }

  channel::EventLoop& loop_;
  std::vector<base::UniqueFd> files_;
  size_t current_ = 0;
  const bool follow_;
  const std::function<bool()> ended_;
  bool saw_end_ = false;
};

template <typename T>
grpc::ServerWriteReactor<T>* Refuse(const absl::Status& s) {
  class Refused final : public grpc::ServerWriteReactor<T> {
   public:
    explicit Refused(const absl::Status& s) { this->Finish(ToGrpc(s)); }
    void OnDone() override { delete this; }
  };
  return new Refused(s);
}

}  // namespace

void OpenStreams::Add(const std::shared_ptr<Slot>& slot) {
  std::optional<absl::Status> ended;
  {
    absl::MutexLock lock(&mu_);
    ended = ended_;
    if (!ended) {
      // Entries of finished streams go in batches: the list stays within twice the open ones.
      if (slots_.size() >= prune_at_) {
        std::erase_if(slots_, [](const std::weak_ptr<Slot>& w) { return w.expired(); });
        prune_at_ = std::max<size_t>(64, 2 * slots_.size());
      }
      slots_.push_back(slot);
      return;
    }
  }
  End(slot, *ended);
}

void OpenStreams::EndAll(const absl::Status& s) {
  std::vector<std::weak_ptr<Slot>> slots;
  {
    absl::MutexLock lock(&mu_);
    if (ended_) return;
    ended_ = s;
    slots.swap(slots_);
  }
  for (const std::weak_ptr<Slot>& w : slots) {
    if (std::shared_ptr<Slot> slot = w.lock()) End(slot, s);
  }
}

std::optional<absl::Status> OpenStreams::ended() const {
  absl::MutexLock lock(&mu_);
  return ended_;
}

void OpenStreams::End(const std::shared_ptr<Slot>& slot, const absl::Status& s) {
  absl::MutexLock lock(&slot->mu);
  if (slot->stream != nullptr) slot->stream->EndWhenDrained(ToGrpc(s));
}

void HostService::EndStreams(const absl::Status& why, bool logs) {
  open_watches_.EndAll(why);
  if (logs) open_logs_.EndAll(why);
}

grpc::ServerWriteReactor<v1::ProcEvent>* HostService::WatchProcs(grpc::CallbackServerContext*,
                                                                 const v1::WatchProcsRequest* req) {
  if (std::optional<absl::Status> ended = open_watches_.ended()) return Refuse<v1::ProcEvent>(*ended);
  for (const std::string& n : req->names()) {
    absl::Status valid = ValidateName(n);
    if (!valid.ok()) return Refuse<v1::ProcEvent>(valid);
  }
  if (watch_budget_->streams.fetch_add(1, std::memory_order_relaxed) >= watch_budget_->max_streams) {
    watch_budget_->streams.fetch_sub(1, std::memory_order_relaxed);
    return Refuse<v1::ProcEvent>(absl::ResourceExhaustedError(
        absl::StrCat("too many WatchProcs streams are open (max_watch_streams ", watch_budget_->max_streams,
                     "); close one, or raise --max-watch-streams")));
  }
  std::optional<uint64_t> hold;
  if (!req->lease_owner().empty()) {
    absl::StatusOr<uint64_t> h = host_.HoldLease(req->lease_owner());
    if (!h.ok()) {
      watch_budget_->streams.fetch_sub(1, std::memory_order_relaxed);
      return Refuse<v1::ProcEvent>(h.status());
    }
    hold = *h;
  }
  return new EventStream(open_watches_, host_, *timers_, *req, opts_.max_watch_backlog, watch_budget_, hold);
}

grpc::ServerWriteReactor<v1::LogChunk>* HostService::StreamLogs(grpc::CallbackServerContext*,
                                                                const v1::StreamLogsRequest* req) {
  absl::Status valid = ValidateName(req->name());
  if (valid.ok() && req->tail_bytes() < 0) valid = absl::InvalidArgumentError("tail_bytes: must not be negative");
  if (valid.ok() && req->tail_lines() < 0) valid = absl::InvalidArgumentError("tail_lines: must not be negative");
  if (!valid.ok()) return Refuse<v1::LogChunk>(valid);
  if (std::optional<absl::Status> ended = open_logs_.ended()) return Refuse<v1::LogChunk>(*ended);
  if (!opts_.log_path) {
    return Refuse<v1::LogChunk>(absl::UnimplementedError("this host's procs run in-process and have no log files"));
  }
  absl::StatusOr<ProcInfo> info = host_.Get(req->name());
  if (!info.ok()) return Refuse<v1::LogChunk>(info.status());
  std::string path = opts_.log_path(req->name(), req->stderr(), 0);
  base::UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    return Refuse<v1::LogChunk>(
        base::ErrnoError(absl::StatusCode::kNotFound, errno,
                         absl::StrCat("log of proc \"", req->name(), "\" (", path, ") cannot be opened")));
  }
  std::vector<base::UniqueFd> files;
  if (req->tail_lines() > 0) {
    // Lines are counted across the newest rotation too.
    base::UniqueFd rotated(open(opts_.log_path(req->name(), req->stderr(), 1).c_str(), O_RDONLY | O_CLOEXEC));
    if (rotated.valid()) files.push_back(std::move(rotated));
    files.push_back(std::move(fd));
    auto [first, offset] = TailLineStart(files, req->tail_lines());
    files.erase(files.begin(), files.begin() + static_cast<std::ptrdiff_t>(first));
    (void)lseek(files.front().get(), offset, SEEK_SET);
  } else {
    if (req->tail_bytes() > 0) {
      off_t end = lseek(fd.get(), 0, SEEK_END);
      (void)lseek(fd.get(), std::max<off_t>(0, end - req->tail_bytes()), SEEK_SET);
    }
    files.push_back(std::move(fd));
  }
  // Ended for good, or gone (a proc spawned again under the name has another
  // created_at).
  auto ended = [host = &host_, name = req->name(), created = info->created_at] {
    absl::StatusOr<ProcInfo> now = host->Get(name);
    return !now.ok() || now->created_at != created || now->ended;
  };
  auto* stream = new LogStream(open_logs_, *timers_, std::move(files), req->follow(), std::move(ended));
  stream->Start();
  return stream;
}

}  // namespace hostd::daemon
