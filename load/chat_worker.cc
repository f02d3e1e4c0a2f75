#include "load/chat_worker.h"

#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "core/base/check.h"
#include "core/net/socket.h"
#include "load/chat_line.h"

namespace troupe::load {
namespace {

static_assert(ChatTracker::kAll == ChatRoom::kAll, "a done of kAll means the same in both");

// The join's hellos: the first at once, then 1 ms apart, doubling to 100 ms.
// Each costs the server a broadcast to every member, so they thin out fast;
// a room that fills within a few milliseconds is seen within one or two.
constexpr int64_t kFirstHelloIntervalNs = 1'000'000;
constexpr int64_t kMaxHelloIntervalNs = 100'000'000;
// The end of the run waits this long at least for lines still in flight
// (the stall timeout when longer), as the echo load's drain does.
constexpr int64_t kMinDrainNs = 1'000'000'000;
// While it drains, a thread looks again this often for the other threads'
// talkers to stop (a flag, which raises no event).
constexpr int64_t kDrainPollNs = 1'000'000;
// Stall checks run every stall timeout / 4, at most every millisecond (the
// echo load's rule, load/worker.cc).
constexpr int64_t kStallChecksPerTimeout = 4;
constexpr int64_t kMinStallCheckIntervalNs = 1'000'000;
// Open loop: timer slack, as load/worker.cc sets it.
constexpr unsigned long kRateTimerSlackNs = 1000;
// What a name (the sender's address as the server writes it) and a line's
// header may add to `line_size`: a line longer than that cannot be right.
constexpr size_t kMaxNameAndHeader = 512;
// recv() size: many lines of a busy member per syscall.
constexpr size_t kReadChunk = 64 * 1024;
// A corrupt line is quoted in the error message up to this many bytes.
constexpr size_t kQuoteBytes = 80;

std::string ErrnoMessage(int error, absl::string_view what) {
  // strerror_r rather than absl's StrError: see load/session.cc.
  char text[256];
  return absl::StrCat(what, ": ", ::strerror_r(error, text, sizeof(text)));
}

std::string Quote(absl::string_view line) {
  std::string q = absl::CEscape(line.substr(0, kQuoteBytes));
  if (line.size() > kQuoteBytes) q += "...";
  return q;
}

}  // namespace

int TalkerMember(int talker, int members, int talkers) {
  return static_cast<int>(int64_t{talker} * members / talkers);
}

absl::StatusOr<std::unique_ptr<ChatWorker>> ChatWorker::Create(const ChatOptions& options,
                                                               ChatRoom& room,
                                                               const std::vector<Address>& sources,
                                                               int thread, int first_member,
                                                               int count) {
  Fd epoll(::epoll_create1(EPOLL_CLOEXEC));
  if (!epoll.valid()) return absl::ErrnoToStatus(errno, "epoll_create1");
  epoll_event ev{};
  ev.events = EPOLLIN;  // Level-triggered: read by DrainWake.
  ev.data.u64 = kWakeTag;
  if (::epoll_ctl(epoll.get(), EPOLL_CTL_ADD, room.wake_fd(thread), &ev) != 0) {
    return absl::ErrnoToStatus(errno, "epoll_ctl ADD eventfd");
  }
  return std::unique_ptr<ChatWorker>(
      new ChatWorker(options, room, sources, std::move(epoll), thread, first_member, count));
}

ChatWorker::ChatWorker(const ChatOptions& options, ChatRoom& room,
                       const std::vector<Address>& sources, Fd epoll, int thread, int first_member,
                       int count)
    : options_(options),
      room_(room),
      sources_(sources),
      epoll_(std::move(epoll)),
      thread_(thread),
      talkers_(options.talkers),
      pipeline_(static_cast<uint64_t>(options.pipeline)),
      members_total_(options.members),
      members_(static_cast<size_t>(count)),
      tracker_(static_cast<size_t>(count), options.talkers,
               static_cast<uint64_t>(options.pipeline)),
      names_(static_cast<size_t>(options.talkers)),
      wake_threads_(static_cast<size_t>(room.threads()), false) {
  for (size_t i = 0; i < members_.size(); ++i) {
    members_[i].index = first_member + static_cast<int>(i);
  }
  for (int t = 0; t < talkers_; ++t) {
    const int m = TalkerMember(t, members_total_, talkers_);
    if (m < first_member || m >= first_member + count) continue;
    const size_t local = static_cast<size_t>(m - first_member);
    members_[local].talker = t;
    own_.push_back(Talker{.talker = t, .member = local});
    room_.SetOwner(t, thread_);
  }
  if (options.rate > 0 && !own_.empty()) {
    // This thread's share of the rate, spread over its talkers.
    open_loop_ =
        OpenLoopSchedule(options.rate * static_cast<double>(own_.size()) / talkers_, own_.size());
  }
  if (options.stall_timeout > absl::ZeroDuration() &&
      options.stall_timeout != absl::InfiniteDuration()) {
    stall_ns_ = absl::ToInt64Nanoseconds(options.stall_timeout);
  }
  max_line_ = options.line_size + kMaxNameAndHeader;
  read_capacity_ = max_line_ + kReadChunk;
  read_buffer_.reset(new char[read_capacity_]);
  result_.counts.latency_buckets.assign(LatencyHistogram::BucketCount(), 0);
}

template <typename MakeMessage>
void ChatWorker::Error(uint64_t& counter, uint64_t n, MakeMessage make_message) {
  counter += n;
  if (result_.errors.size() < ChatReport::kMaxErrorMessages) {
    result_.errors.push_back(make_message());
  }
}

template <typename Handler>
void ChatWorker::Poll(int64_t deadline_ns, Handler handle) {
  const int n = WaitForEvents(epoll_.get(), events_, kMaxEvents, deadline_ns);
  if (n < 0) {
    TROUPE_CHECK(errno == EINTR, "epoll_wait failed on a valid epoll fd");
    return;
  }
  for (int i = 0; i < n; ++i) {
    if (events_[i].data.u64 == kWakeTag) {
      room_.DrainWake(thread_);
      continue;
    }
    handle(members_[events_[i].data.u64], events_[i].events);
  }
  PublishDone();
}

// ---------------------------------------------------------------------------
// Phase 1: connect.

void ChatWorker::ConnectFailed(Member& m, absl::string_view why) {
  if (result_.first_connect_error.empty()) {
    result_.first_connect_error = absl::StrCat("member ", m.index, ": ", why);
  }
  m.fd.Reset();
  m.state = State::kClosed;
}

void ChatWorker::Connect(int64_t deadline_ns, int window) {
  int pending = 0;
  size_t next = 0;
  auto start_more = [&] {
    while (pending < window && next < members_.size()) {
      Member& m = members_[next++];
      const Address* source =
          sources_.empty() ? nullptr : &sources_[static_cast<size_t>(m.index) % sources_.size()];
      absl::StatusOr<Fd> fd = ConnectTcpNonBlocking(options_.target, source);  // TCP_NODELAY
      if (!fd.ok()) {
        ConnectFailed(m, fd.status().message());
        continue;
      }
      m.fd = *std::move(fd);
      // Edge-triggered: a member always reads and writes until the kernel
      // says EAGAIN (or a short read says as much), so it never needs
      // epoll_ctl again.
      epoll_event ev{};
      ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
      ev.data.u64 = Local(m);
      if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, m.fd.get(), &ev) != 0) {
        ConnectFailed(m, ErrnoMessage(errno, "epoll_ctl ADD"));
        continue;
      }
      m.state = State::kConnecting;
      ++pending;
    }
  };
  start_more();
  while (pending > 0 && MonotonicNanos() < deadline_ns) {
    Poll(deadline_ns, [&](Member& m, uint32_t events) {
      if (m.state != State::kConnecting) return;
      int code = 0;
      socklen_t len = sizeof(code);
      if (::getsockopt(m.fd.get(), SOL_SOCKET, SO_ERROR, &code, &len) != 0) code = errno;
      if (code == 0 && (events & EPOLLOUT) == 0) return;  // Still under way.
      --pending;
      if (code != 0) {
        ConnectFailed(m, ErrnoMessage(code, absl::StrCat("connect ", options_.target.ToString())));
        return;
      }
      m.state = State::kOpen;
      ++result_.connected;
    });
    start_more();
  }
  for (size_t i = 0; i < members_.size(); ++i) {
    Member& m = members_[i];
    if (m.state == State::kConnecting || i >= next) {
      ConnectFailed(m, absl::StrCat("connect ", options_.target.ToString(), ": timed out after ",
                                    absl::FormatDuration(options_.connect_timeout),
                                    i >= next ? " (not attempted)" : ""));
    }
  }
}

// ---------------------------------------------------------------------------
// Phase 2: join.

void ChatWorker::Join(int64_t deadline_ns) {
  // Under edge triggering, bytes that came with a connect's edge would wait
  // for the next one: read each member once (nothing, from a chat server).
  for (Member& m : members_) {
    if (m.state == State::kOpen) Read(m, EPOLLIN);
  }
  Member* prober = nullptr;
  if (!members_.empty() && members_[0].index == 0 && members_[0].state == State::kOpen) {
    prober = &members_[0];
    // The server joins a member before it handles the member's first line,
    // so member 0 is in the room once its hello is broadcast.
    prober->joined = true;
    ++joined_;
  }
  int64_t interval = kFirstHelloIntervalNs;
  int64_t next_hello = MonotonicNanos();
  uint64_t round = 0;
  for (;;) {
    const int64_t now = MonotonicNanos();
    const bool complete = prober != nullptr ? room_.joined() >= members_total_ - 1
                                            : joined_ == static_cast<int>(members_.size());
    if (complete || now >= deadline_ns) break;
    int64_t wake = deadline_ns;
    if (prober != nullptr && prober->state == State::kOpen) {
      if (now >= next_hello) {
        AppendHelloLine(round++, &prober->out);
        Flush(*prober);
        next_hello = now + interval;
        interval = std::min(interval * 2, kMaxHelloIntervalNs);
      }
      wake = std::min(wake, next_hello);
    }
    Poll(wake, [this](Member& m, uint32_t events) { HandleEvent(m, events); });
  }
  // Flow control from here on: who listens to whom on this thread. A
  // thread where nobody listens to talker t never holds t back.
  for (int t = 0; t < talkers_; ++t) {
    int listeners = 0;
    for (const Member& m : members_) {
      if (m.state == State::kOpen && m.talker != t) ++listeners;
    }
    tracker_.SetListeners(t, listeners);
  }
  tracker_.TakeChanged([this](int t, uint64_t done) { room_.PublishDone(thread_, t, done); });
}

// ---------------------------------------------------------------------------
// Reading and checking.

void ChatWorker::HandleEvent(Member& m, uint32_t events) {
  if (m.state != State::kOpen) return;
  if ((events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0) Read(m, events);
  if (m.state == State::kOpen && (events & EPOLLOUT) != 0 && m.out_sent < m.out.size()) {
    Flush(m);
  }
}

void ChatWorker::Read(Member& m, uint32_t events) {
  char* const buffer = read_buffer_.get();
  // The unfinished line from the last read goes first, then what comes.
  size_t have = m.in.size();
  std::memcpy(buffer, m.in.data(), have);
  m.in.clear();
  // A short read means the socket is empty, and edge triggering raises a
  // new edge for whatever comes next; but a FIN or an error seen with this
  // edge raises none, so then read on until recv() says so.
  const bool to_the_end = (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0;
  for (;;) {
    const size_t room = read_capacity_ - have;
    const ssize_t r = ::recv(m.fd.get(), buffer + have, room, 0);
    if (r == 0) {
      Lose(m, "closed by the server");
      return;
    }
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) break;
      Lose(m, ErrnoMessage(errno, "recv"));
      return;
    }
    const int64_t now = MonotonicNanos();
    const size_t end = have + static_cast<size_t>(r);
    size_t start = 0;
    for (;;) {
      const void* nl = std::memchr(buffer + start, '\n', end - start);
      if (nl == nullptr) break;
      const size_t stop = static_cast<size_t>(static_cast<const char*>(nl) - buffer);
      OnLine(m, absl::string_view(buffer + start, stop - start), now);
      if (m.state != State::kOpen) return;
      start = stop + 1;
    }
    have = end - start;
    std::memmove(buffer, buffer + start, have);
    if (have > max_line_) {
      Error(result_.counts.corrupt, 1, [&] {
        return absl::StrFormat("member %d got a line longer than %d bytes: \"%s\"", m.index,
                               max_line_, Quote(absl::string_view(buffer, have)));
      });
      Drop(m);
      return;
    }
    if (static_cast<size_t>(r) < room && !to_the_end) break;
  }
  m.in.assign(buffer, have);
}

void ChatWorker::OnLine(Member& m, absl::string_view line, int64_t now) {
  const ParsedChatLine p = ParseChatLine(line, options_.line_size);
  switch (p.kind) {
    case ChatLineKind::kHello:
      // Once the traffic runs, a hello is one that was still on its way.
      if (!m.joined) {
        m.joined = true;
        ++joined_;
        room_.Joined();
      }
      return;
    case ChatLineKind::kChat:
      if (traffic_) {
        OnChatLine(m, p.name, p.talker, p.seq, p.send_ns, now);
        return;
      }
      Error(result_.counts.corrupt, 1, [&] {
        return absl::StrFormat("member %d got a chat line before anyone talked: \"%s\"", m.index,
                               Quote(line));
      });
      return;
    case ChatLineKind::kBad:
      Error(result_.counts.corrupt, 1, [&] {
        return absl::StrFormat("member %d got %s: \"%s\"", m.index, p.error, Quote(line));
      });
      return;
  }
}

void ChatWorker::OnChatLine(Member& m, const absl::string_view name, uint32_t talker, uint64_t seq,
                            int64_t send_ns, int64_t now) {
  auto corrupt = [&](absl::string_view why) {
    Error(result_.counts.corrupt, 1, [&] {
      return absl::StrFormat("member %d got talker %d's line %d %s", m.index, talker, seq, why);
    });
  };
  if (talker >= static_cast<uint32_t>(talkers_)) {
    corrupt(absl::StrCat("but there are ", talkers_, " talkers"));
    return;
  }
  const int t = static_cast<int>(talker);
  if (m.talker == t) {
    corrupt("back: its own line");
    return;
  }
  std::string& known = names_[talker];
  if (known.empty()) {
    known = std::string(name);
  } else if (known != name) {
    corrupt(absl::StrCat("under the name \"", absl::CEscape(name), "\", not \"", known, "\""));
    return;
  }
  const size_t local = Local(m);
  // Both hold for every line a talker sent: it publishes its count before
  // the send, and stamps before it publishes.
  if (seq >= tracker_.next(local, t) && seq >= room_.Sent(t)) {
    corrupt("before it was sent");
    return;
  }
  if (send_ns > now) {
    corrupt("stamped in the future");
    return;
  }
  const ChatTracker::Receipt r = tracker_.Receive(local, t, seq);
  switch (r.kind) {
    case ChatTracker::kDuplicate:
      Error(result_.counts.duplicates, 1, [&] {
        return absl::StrFormat("member %d got talker %d's line %d again", m.index, t, seq);
      });
      return;
    case ChatTracker::kReordered:
      // Counted lost when the later line came: it was only late.
      --result_.counts.lost;
      Error(result_.counts.reordered, 1, [&] {
        return absl::StrFormat("member %d got talker %d's line %d after line %d", m.index, t, seq,
                               r.previous);
      });
      return;
    case ChatTracker::kDelivered:
      break;
  }
  if (r.skipped > 0) {
    Error(result_.counts.lost, r.skipped, [&] {
      return r.skipped == 1
                 ? absl::StrFormat("member %d missed talker %d's line %d (line %d came next)",
                                   m.index, t, seq - 1, seq)
                 : absl::StrFormat("member %d missed talker %d's lines %d..%d (line %d came next)",
                                   m.index, t, seq - r.skipped, seq - 1, seq);
    });
  }
  ++result_.counts.deliveries;
  if (now >= measure_start_ns_ && now < end_ns_) {
    ++result_.counts.deliveries_measured;
    const uint64_t latency = static_cast<uint64_t>(now - send_ns);
    result_.counts.latency_ns.Record(latency);
    ++result_.counts.latency_buckets[LatencyHistogram::BucketIndex(latency)];
  }
}

// ---------------------------------------------------------------------------
// Flow control.

void ChatWorker::PublishDone() {
  if (!traffic_) return;
  tracker_.TakeChanged([this](int t, uint64_t done) {
    room_.PublishDone(thread_, t, done);
    const int owner = room_.Owner(t);
    if (owner != thread_) wake_threads_[static_cast<size_t>(owner)] = true;
  });
  for (size_t w = 0; w < wake_threads_.size(); ++w) {
    if (!wake_threads_[w]) continue;
    wake_threads_[w] = false;
    room_.Wake(static_cast<int>(w));
  }
}

// ---------------------------------------------------------------------------
// Sending and closing.

void ChatWorker::Flush(Member& m) {
  while (m.out_sent < m.out.size()) {
    const ssize_t w =
        ::send(m.fd.get(), m.out.data() + m.out_sent, m.out.size() - m.out_sent, MSG_NOSIGNAL);
    if (w > 0) {
      m.out_sent += static_cast<size_t>(w);
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && errno == EAGAIN) return;  // EPOLLOUT's edge resumes it.
    Lose(m, ErrnoMessage(errno, "send"));
    return;
  }
  m.out.clear();
  m.out_sent = 0;
}

void ChatWorker::Lose(Member& m, absl::string_view why) {
  if (m.state != State::kOpen) return;
  Error(result_.counts.closed, 1, [&] {
    return absl::StrFormat("member %d%s lost: %s", m.index,
                           m.talker >= 0 ? absl::StrCat(" (talker ", m.talker, ")") : "", why);
  });
  Drop(m);
}

void ChatWorker::Drop(Member& m) {
  m.fd.Reset();  // Also leaves the epoll set.
  m.state = State::kClosed;
  if (m.talker >= 0) {
    for (Talker& t : own_) {
      if (t.talker == m.talker) StopTalker(t);
    }
  }
  if (!traffic_) return;  // Join() counts the listeners over the open ones.
  // Takes back what it counted in flight, so that the others' lines pass
  // without it.
  tracker_.Drop(Local(m), m.talker);
}

void ChatWorker::CloseAll() {
  for (Member& m : members_) {
    m.fd.Reset();
    m.state = State::kClosed;
  }
}

// ---------------------------------------------------------------------------
// Phases 3 and 4: talk, then drain.

void ChatWorker::StopTalker(Talker& t) {
  if (t.stopped) return;
  t.stopped = true;
  room_.PublishStopped(t.talker);
}

bool ChatWorker::Issue(int64_t now, int64_t* next_due_ns) {
  bool blocked = false;
  for (size_t slot = 0; slot < own_.size(); ++slot) {
    Talker& t = own_[slot];
    if (t.stopped) continue;
    const uint64_t done = room_.Done(t.talker);
    if (done == ChatRoom::kAll) {
      // Nobody is left to hear it (the others were lost: counted there).
      StopTalker(t);
      continue;
    }
    if (done != t.done) {
      t.done = done;
      t.progress_ns = now;
    }
    const bool owed = t.sent > done;
    const uint64_t window_end = done + pipeline_;
    // Closed loop: everything is due; the window alone holds a talker back.
    const uint64_t due = open_loop_.active() ? open_loop_.DueCount(slot, now) : UINT64_MAX;
    if (t.sent < due && t.sent < window_end) {
      Member& m = members_[t.member];
      const uint64_t first = t.sent;
      for (; t.sent < window_end && t.sent < due; ++t.sent) {
        const int64_t stamp = open_loop_.active() ? open_loop_.DueTime(slot, t.sent) : now;
        AppendChatLine(static_cast<uint32_t>(t.talker), t.sent, stamp, options_.line_size, &m.out);
        if (stamp >= measure_start_ns_ && stamp < end_ns_) ++result_.counts.lines_measured;
      }
      result_.counts.lines_sent += t.sent - first;
      if (!owed) t.progress_ns = now;
      // Published before the bytes go: a member that gets line n can rely on
      // Sent() > n (OnChatLine's check).
      room_.PublishSent(t.talker, t.sent);
      Flush(m);
    }
    if (t.sent >= due) {
      *next_due_ns = std::min(*next_due_ns, open_loop_.DueTime(slot, t.sent));
    } else {
      blocked = true;  // Something is due, and the window is full.
    }
  }
  return blocked;
}

void ChatWorker::CheckStalls(int64_t now) {
  for (Talker& t : own_) {
    if (t.stopped) continue;
    const Member& m = members_[t.member];
    const bool owes = t.sent > t.done || m.out_sent < m.out.size();
    if (!owes || now - t.progress_ns < stall_ns_) continue;
    Error(result_.counts.stalled, 1, [&] {
      return absl::StrFormat(
          "talker %d (member %d) stalled: line %d not with every member after %s (the members "
          "furthest behind are on client thread %d); it stops talking",
          t.talker, m.index, t.done, absl::FormatDuration(options_.stall_timeout),
          room_.LaggingThread(t.talker));
    });
    StopTalker(t);
  }
}

void ChatWorker::Run(const PhaseTimes& times) {
  traffic_ = true;
  measure_start_ns_ = times.measure_start_ns;
  end_ns_ = times.end_ns;
  open_loop_.Start(times.start_ns);
  if (open_loop_.active()) {
    // Best effort: without it, lines merely go out later, and count so.
    (void)::prctl(PR_SET_TIMERSLACK, kRateTimerSlackNs);
  }
  for (Talker& t : own_) {
    t.progress_ns = times.start_ns;
    if (members_[t.member].state != State::kOpen) StopTalker(t);
  }
  const int64_t stall_check_interval =
      std::max(stall_ns_ / kStallChecksPerTimeout, kMinStallCheckIntervalNs);
  int64_t next_stall_check = times.start_ns + stall_check_interval;
  const auto handle = [this](Member& m, uint32_t events) { HandleEvent(m, events); };
  for (;;) {
    int64_t now = MonotonicNanos();
    if (now >= times.end_ns) break;
    if (stall_ns_ > 0 && now >= next_stall_check) {
      CheckStalls(now);
      next_stall_check = now + stall_check_interval;
    }
    int64_t wake = times.end_ns;
    if (stall_ns_ > 0) wake = std::min(wake, next_stall_check);
    const bool blocked = Issue(now, &wake);
    if (blocked) {
      // Asleep from here on as far as the other threads know; then one more
      // look, so that a done published in between is not slept through
      // (load/chat_room.h).
      room_.PrepareToWait(thread_);
      Issue(MonotonicNanos(), &wake);
    }
    Poll(wake, handle);
    if (blocked) room_.FinishWaiting(thread_);
  }
  result_.loop_end_ns = MonotonicNanos();
  Drain(times.end_ns);
}

void ChatWorker::Drain(int64_t end_ns) {
  for (Talker& t : own_) StopTalker(t);
  const int64_t deadline = end_ns + std::max(kMinDrainNs, stall_ns_);
  const auto handle = [this](Member& m, uint32_t events) { HandleEvent(m, events); };
  for (;;) {
    bool complete = true;
    for (const Talker& t : own_) {
      const Member& m = members_[t.member];
      if (m.state == State::kOpen && m.out_sent < m.out.size()) complete = false;
    }
    for (int t = 0; t < talkers_ && complete; ++t) {
      const uint64_t done = tracker_.done(t);
      // Stopped() first: it makes Sent() final.
      if (done != ChatTracker::kAll && (!room_.Stopped(t) || done < room_.Sent(t)))
        complete = false;
    }
    const int64_t now = MonotonicNanos();
    if (complete || now >= deadline) break;
    Poll(std::min(deadline, now + kDrainPollNs), handle);
  }
  CountMissing();
  CloseAll();
}

void ChatWorker::CountMissing() {
  for (size_t local = 0; local < members_.size(); ++local) {
    const Member& m = members_[local];
    if (m.state != State::kOpen) continue;
    for (int t = 0; t < talkers_; ++t) {
      if (m.talker == t) continue;
      const uint64_t sent = room_.Sent(t);
      const uint64_t next = tracker_.next(local, t);
      if (next >= sent) continue;
      Error(result_.counts.lost, sent - next, [&] {
        return absl::StrFormat("member %d never got talker %d's lines %d..%d (of %d)", m.index, t,
                               next, sent - 1, sent);
      });
    }
  }
}

}  // namespace troupe::load
