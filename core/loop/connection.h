// Connection: one TCP socket, its buffers and its handler, owned by exactly
// one reactor. The socket was accepted (Reactor::AdoptInLoop) or dialed out
// by an actor of the reactor (Reactor::Connect); once open, the two are
// served alike (buffers, watermarks, limits, mailbox).
//
// The life of a connection's bytes, all on the owning reactor's thread:
//
//   socket ──recv──► reactor scratch (64 KiB, shared) ──► handler->OnData()
//                          │ bytes the handler did not consume
//                          ▼
//                      input_ Buffer (allocated only while a frame is partial)
//
//   handler: conn.Send(bytes)
//                 │ inside OnData or a mail hand-over: gathered in the
//                 │ reactor's cork (64 KiB, shared), written when the
//                 ▼ callback returns; elsewhere (a timer, a task): at once
//             send (write-through) ──► socket
//                 │ what the kernel did not take
//                 ▼
//             output_ Buffer ──on EPOLLOUT──► socket
//
// Coalescing: a handler that answers 16 pipelined requests with 16 Sends in
// one OnData, or a chat member handed 10 lines of mail in one turn, makes one
// send() for them all, not one each, and a lone reply leaves as soon as the
// callback that made it returns (no timer, no Nagle). A Send that would
// overflow the cork goes out at once together with what was gathered (one
// writev, no copy of the large piece). Close() gives what was gathered the one
// try write-through would have (an error line sent just before it still goes
// out) and drops only output the kernel refused; CloseAfterFlush() and
// ShutdownWrite() write it first.
// With a transport (TLS) Sends are not corked: the transport batches records
// itself.
//
// States (CloseAfterFlush follows invariant 7, docs/architecture.md):
//
//   kConnecting (outbound only: connect() in progress; Send() queues, mail
//     │         waits, nothing is read; the connect timeout is its deadline)
//     ├──SO_ERROR 0──► result callback(id), then OnOpen ──► kOpen
//     └──SO_ERROR set / timeout / Close()──► closed (kConnectFailed,
//                    kConnectTimeout, the Close reason); at the reap the
//                    result callback gets the error, and the handler hears
//                    nothing: no OnOpen, OnPeerClosed or OnClose
//
//   kOpen ──peer EOF──► kFlushing (peer_eof) ──output empty──► closed
//     │
//     └──CloseAfterFlush()──► [pending work > 0: stays kOpen, stops reading,
//                              until the work owed has replied]
//                         ──► kFlushing ──output empty: shutdown(SHUT_WR)──►
//                             kLingering (read and discard) ──EOF or deadline──► closed
//
//   With a transport (ServerOptions::transport, core/net/transport.h: TLS),
//   an accepted connection is kOpen but handshaking() first: bytes go to the
//   transport only, mail waits, and the handler hears nothing until the
//   handshake completes, when it gets OnOpen (so it only ever meets a peer
//   whose handshake is done). A failed handshake (kTlsHandshakeFailed) or
//   none within `handshake_timeout` (kTlsHandshakeTimeout) closes it with no
//   OnOpen and no OnClose, as for an outbound connection that never opened.
//   From OnOpen on, the handler reads and Sends plaintext; the transport sits
//   between the socket and the scratch/output buffers, so the watermarks and
//   max_output_bytes count the bytes on the wire. Each plaintext Send is
//   admitted once, as a plaintext write is (its size plus a per-record
//   overhead bound, against max_output_bytes if already behind); the many
//   record batches it becomes then queue without another check, so one
//   large reply to a peer that keeps up is not cut over TLS either. A Send
//   made while the handshake is under way is held by the transport until it
//   completes; those bytes count against max_output_bytes too (beyond it:
//   kSlowConsumer). The peer's close_notify is its EOF (OnPeerClosed);
//   CloseAfterFlush queues our close_notify behind the output before the
//   FIN; ShutdownWrite sends close_notify, then FIN. CloseAfterFlush (a
//   drain) on a connection still handshaking sends no FIN inside the
//   handshake: the handshake goes on (handshake_timeout still bounds it),
//   the handler gets OnOpen and the first bytes that follow, and once it has
//   consumed them (no partial frame left) the CloseAfterFlush applies; a
//   peer that sends nothing after its handshake is cut at flush_timeout from
//   the handshake's end (kFlushTimeout), and the drain's own deadline bounds
//   it all.
//
//   Close() from any state closes at once (output still queued is lost).
//   OnClose runs at the end of the reactor's turn, never inside another
//   callback of the same handler.
//   Deadlines: CloseAfterFlush() is bounded by `flush_timeout` from the call
//   (owed work and flushing together: kFlushTimeout), lingering by
//   `linger_timeout` from the FIN (kLingerTimeout), so neither a peer that
//   never reads nor work that never replies can hold a closing connection
//   forever.
//
// Pending work: a handler that owes the peer a reply from asynchronous work
// (offload, a timer, a reply mail) counts it with AddPendingWork() and
// FinishPendingWork(). CloseAfterFlush(), the server's drain included, waits
// for that count to reach zero before it flushes and sends FIN;
// `flush_timeout` from the call (and the drain's own deadline) bound the wait.
// Pending work is bounded too: at `max_pending_work` the connection stops
// handing input to the handler (and reading) until some of it has replied, so
// a client pipelining requests for slow work queues at most that much.
//
// Output limits: above `high_watermark` bytes of queued output the connection
// stops reading (the peer's sends then fill the kernel buffers and block it);
// once the output drains below `low_watermark` reading resumes. Output that
// does not come from reading (mail, timers, offload results) cannot be paused
// that way, so a write to a connection already above the high watermark that
// would queue more than `max_output_bytes` closes it as kSlowConsumer (queued
// output stays below max_output_bytes plus one write); a handler that
// prefers to shed can test behind() first. A single large reply to a peer
// that keeps up (a 16 MiB frame echoed) is never cut.
//
// Thread safety: loop-affine (owning reactor).
// Ownership: the reactor's connection table owns each Connection; handlers
// get references that are valid until OnClose returns.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string_view>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/base/fd.h"
#include "core/loop/close_reason.h"
#include "core/loop/connection_host.h"
#include "core/loop/connection_id.h"
#include "core/loop/mail.h"
#include "core/loop/mailbox.h"
#include "core/net/address.h"
#include "core/net/buffer.h"
#include "core/net/transport.h"

namespace troupe {

class Reactor;
class Connection;

// How an outbound connection's attempt ended (Reactor::Connect): its id once
// it is open, else why it never opened. Called once, on the reactor thread.
using ConnectCallback = absl::AnyInvocable<void(absl::StatusOr<ConnectionId>) &&>;

struct ConnectionOptions {
  // Unconsumed input above this closes the connection (kInputTooLarge): a
  // handler waiting for a frame end cannot be made to buffer without bound.
  size_t max_input_bytes = 16 << 20;
  // How long CloseAfterFlush waits for the peer to close after our FIN.
  absl::Duration linger_timeout = absl::Seconds(5);
  // How long CloseAfterFlush may take, from the call, for owed work to reply
  // and queued output to drain before the connection is cut (kFlushTimeout).
  absl::Duration flush_timeout = absl::Seconds(30);
  // Output backpressure thresholds (bytes queued in the output buffer).
  size_t high_watermark = 1 << 20;
  size_t low_watermark = 256 << 10;
  // Hard cap on queued output: a write to a connection already above the
  // high watermark that would pass it closes the connection (kSlowConsumer).
  // Four times the watermark: reading stops at the watermark, so only output
  // that does not come from reading (mail, timers, offload results) piles up
  // that far. Must exceed high_watermark.
  size_t max_output_bytes = 4 << 20;
  // Replies owed by asynchronous work (offload, pending work) per connection
  // beyond which no more input is handed to the handler until some reply.
  // 1,024: deep enough for any pipelining client, small enough that one
  // client cannot queue unbounded work on the offload pool.
  uint32_t max_pending_work = 1024;
  // User mail waiting for the actor beyond this is handled by the policy
  // (core/loop/mailbox.h). 1,024: far above what a turn delivers to one actor in
  // steady traffic, small enough (tens of KiB) to hold for every connection.
  size_t mailbox_capacity = 1024;
  MailboxOverflow mailbox_overflow = MailboxOverflow::kDropNewest;
  // With a transport (ServerOptions::transport): how long an accepted
  // connection may take to complete its handshake before it is closed
  // (kTlsHandshakeTimeout). Infinite: no limit (the idle timeout, if any,
  // still applies).
  absl::Duration handshake_timeout = absl::Seconds(10);
  // An emptied buffer keeps up to this much capacity for the next message;
  // a larger one is freed, so idle connections hold no large buffers.
  size_t retained_buffer_bytes = 64 << 10;
};

// The callbacks a connection drives; implemented by the actor layer, or by a
// user of core alone. All calls happen on the owning reactor, one at a time.
class ConnectionHandler {
 public:
  virtual ~ConnectionHandler() = default;
  // The first call. An outbound connection that never opens gets no call at
  // all; only its Reactor::Connect result callback hears of it.
  virtual void OnOpen(Connection& /*conn*/) {}
  // `data` is every unconsumed byte received so far. Returns how many bytes
  // were consumed; the rest is offered again, with more, on the next read.
  virtual size_t OnData(Connection& conn, std::string_view data) = 0;
  // Mail sent to this connection (Reactor::SendMail), in per-sender order.
  virtual void OnMail(Connection& /*conn*/, Mail /*mail*/) {}
  // The peer shut down its sending side (EOF). Every byte it sent has been
  // through OnData. The default flushes what is queued and closes; a handler
  // with replies still to come (offloaded work) may keep the connection open
  // and call CloseAfterFlush() later.
  virtual void OnPeerClosed(Connection& conn);
  // Queued output fell to the low watermark after the peer had been behind
  // (behind() was true): a handler holding back output (a proxy, a file
  // sender) may write again.
  virtual void OnOutputDrained(Connection& /*conn*/) {}
  // The last call, made only if OnOpen was; the connection is gone when it
  // returns.
  virtual void OnClose(Connection& /*conn*/, CloseReason /*reason*/) {}
  // The most unconsumed input this handler may legitimately leave waiting
  // (a framing codec's largest partial frame); the connection's limit is the
  // larger of this and ConnectionOptions::max_input_bytes. 0: no opinion.
  virtual size_t input_limit() const { return 0; }
};

class Connection {
 public:
  enum class State : uint8_t { kConnecting, kOpen, kFlushing, kLingering, kClosed };

  // The connection reaches its loop through `host` alone; `owner` is only
  // handed back to handlers (reactor()), and may be null where there is no
  // Reactor (a unit test drives the connection over a socketpair).
  Connection(ConnectionHost& host, Reactor* owner, ConnectionId id, Fd fd, Address peer);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  ConnectionId id() const { return id_; }
  int fd() const { return fd_.get(); }
  const Address& peer() const { return peer_; }
  // Replaces the peer address with the client's, as a proxy in front
  // reported it (the PROXY protocol header, core/loop/proxy_header.h). Only
  // before the handler that serves the connection has had OnOpen or any
  // byte, so that it, its log lines and its actor see one address for life.
  void set_peer_in_loop(Address peer);
  // Puts `transport` (TLS) between the socket and the handler. Accepted
  // connections only, before OpenInLoop: the reactor does it when
  // ReactorOptions::transport is set.
  void set_transport_in_loop(std::unique_ptr<Transport> transport);
  // True while the transport's handshake is under way (the handler has not
  // had OnOpen yet).
  bool handshaking() const { return transport_ != nullptr && !opened_ && state_ == State::kOpen; }
  // The reactor that owns this connection, for handlers (to post, send mail
  // or set timers); the connection itself never calls it.
  Reactor& reactor() const;
  State state() const { return state_; }
  bool closed() const { return state_ == State::kClosed; }
  // An outbound connection whose connect() has not completed yet.
  bool connecting() const { return state_ == State::kConnecting; }
  // Dialed out by Reactor::Connect (counted apart from accepted ones).
  bool outbound() const { return outbound_; }
  // Output the kernel has not taken yet: queued, plus what the callback now
  // running has gathered in the cork.
  size_t pending_output() const { return output_.size() + (corked_ ? host_.cork().size : 0); }
  // Mail waiting for the handler (user and system).
  size_t mailbox_depth() const { return mailbox_.size(); }
  // When bytes last moved either way (the loop's per-turn clock).
  std::chrono::steady_clock::time_point last_active() const { return last_active_; }
  // True while queued output is above the high watermark: the peer is not
  // keeping up, and a handler that can shed (drop a chat line, skip an
  // update) should rather than queue more.
  bool behind() const { return pending_output() > options_.high_watermark; }

  // Asynchronous work this connection's handler still owes the peer a reply
  // for. CloseAfterFlush() waits until it is zero (see the header comment).
  void AddPendingWork();
  void FinishPendingWork();
  uint32_t pending_work() const { return pending_work_; }
  // True while pending work is at max_pending_work: a handler parsing many
  // requests from one read should stop and leave the rest unconsumed (it is
  // handed over again once work replies).
  bool work_full() const { return pending_work_ >= options_.max_pending_work; }
  // True once CloseAfterFlush() was asked for (it may still wait for work).
  bool closing() const {
    return close_requested_ || flush_at_open_ ||
           (state_ != State::kOpen && state_ != State::kConnecting);
  }

  // Sends at once what the kernel takes; queues the rest. Partial writes are
  // normal. While connecting, queues it all (under max_output_bytes): a
  // client's greeting goes out as soon as the connection opens. Ignored once
  // the connection is flushing or closed.
  void Send(std::string_view bytes);
  // Sends several pieces as one write (sendmsg with an iovec per piece), e.g.
  // a frame header and its payload, without first copying them together.
  void Send(std::initializer_list<std::string_view> pieces);
  // The handler's own read pause (a proxy whose other side is behind, a
  // receiver whose disk writes lag): no bytes are read or handed over until
  // ResumeReading(); what the peer sends waits in the kernel, which then
  // blocks the peer (TCP flow control). Independent of the watermark pause.
  void PauseReading() { user_paused_ = true; }
  void ResumeReading();
  bool reading_paused() const { return user_paused_; }
  // Half-close: once the queued output is out, sends FIN (shutdown
  // SHUT_WR) while reading goes on, so the peer may still answer (a proxy
  // relaying its client's half-close). Send() is ignored from the call. The
  // connection ends as any other: at the peer's EOF (OnPeerClosed), Close()
  // or CloseAfterFlush().
  void ShutdownWrite();
  // A bound on an opening phase that a handler runs before it serves (the
  // PROXY protocol header, core/loop/proxy_header.h): unless
  // ClearOpeningDeadline() comes first, the connection is closed with
  // `reason` once `timeout` has passed. It takes the connection's one
  // deadline slot (the TimerWheel entry every connection has), so it costs
  // no timer of its own and ends with the connection. A CloseAfterFlush()
  // replaces it with the flush deadline. Zero or infinite: no bound.
  void SetOpeningDeadline(absl::Duration timeout, CloseReason reason);
  void ClearOpeningDeadline();
  bool write_shut() const { return write_shut_requested_; }

  // Closes now; queued output is dropped. While connecting, it cancels the
  // attempt: the result callback gets a Cancelled status at the reap.
  void Close(CloseReason reason = CloseReason::kLocalClose);
  // Once no work is pending, sends what is queued, then shuts down writing
  // and waits (bounded) for the peer to close. No new input is handed to the
  // handler from the call on; input arriving after the FIN is discarded.
  // While connecting, it takes effect at open, right after OnOpen (so a
  // queued greeting still goes out); the connect timeout still applies.
  void CloseAfterFlush();

  void set_handler(std::unique_ptr<ConnectionHandler> handler) { handler_ = std::move(handler); }
  ConnectionHandler* handler() const { return handler_.get(); }

  // Loop entry points, called by the owning reactor only (…InLoop: loop-only,
  // after muduo).
  void OpenInLoop();
  // For an outbound socket whose connect() is in progress (or has already
  // completed): kConnecting until the first EPOLLOUT/EPOLLERR/EPOLLHUP, at
  // most `timeout` (zero, negative or infinite: only the kernel's own SYN
  // retries bound it). `on_result` is called once, on open or at the reap.
  void ConnectInLoop(absl::Duration timeout, ConnectCallback on_result);
  // A connect that failed before there was anything to wait for (no socket,
  // connect() refused at once, the reactor stopping): closes the connection
  // with `reason`; the reap hands `error` to the result callback.
  void FailConnectInLoop(absl::Status error, CloseReason reason);
  // The reap, at the end of the turn that closed it: OnClose if the handler
  // had OnOpen, else the result callback of an attempt that never opened.
  void FinishInLoop(CloseReason reason);
  void HandleEventsInLoop(uint32_t events);
  // The read the connection asked for with ConnectionHost::ReadAgain.
  void ReadAgainInLoop();
  // Queues mail under the mailbox policy; returns why it was dropped, if it was.
  std::optional<MailDrop> EnqueueMailInLoop(Mail mail, MailClass mail_class);
  // The hand-over the connection asked for with ConnectionHost::MailReady:
  // at most `max` of the mails waiting now go to the handler.
  void HandOverMailInLoop(size_t max);
  // Its deadline (ConnectionHost::timers) came due: closes the connection
  // if a timeout has really passed by `now`, else sets the next deadline.
  void DeadlineDueInLoop(std::chrono::steady_clock::time_point now);

 private:
  // Reads until EAGAIN or until `budget` bytes; returns true if the budget
  // ran out with the socket possibly still readable.
  bool ReadInLoop(size_t budget, bool until_eagain);
  void WriteInLoop();
  // Requests to the host, each at most once until served.
  void ScheduleReadInLoop();
  void ScheduleMailInLoop();
  // Puts the earliest of the idle and close deadlines on the host's timers.
  void ScheduleDeadlineInLoop();
  // Appends what the kernel did not take, under max_output_bytes; false when
  // that closed the connection.
  bool QueueOutput(size_t bytes);
  void StartFlushInLoop();

  // Hands freshly read bytes to the handler, keeping what it leaves.
  void DeliverInLoop(size_t n, bool into_input);
  // After a delivery: the pending-work pause and the input limit.
  void CheckInputInLoop();
  // The socket half of Send: write-through, the rest to output_, under
  // max_output_bytes unless `admitted` (a transport's sink: its plaintext
  // Send was admitted as a whole).
  void SendRawInLoop(std::string_view bytes, bool admitted);
  // `count` pieces, `total` bytes, as one write (sendmsg), the rest to
  // output_ under max_output_bytes. Only while output_ is empty and the
  // socket writable.
  void SendPiecesInLoop(const std::string_view* pieces, size_t count, size_t total);
  // Around a handler callback: borrow the reactor's cork (if no transport
  // and it is free), then write what was gathered, once. Uncork drops it
  // when the connection closed meanwhile.
  void CorkInLoop();
  void UncorkInLoop();
  // Corked Send: gathers `pieces` if they fit, else writes the gathered
  // bytes and them together (one writev). False: not corked here (output is
  // queued or the socket blocked); the caller sends as usual.
  bool SendCorkedInLoop(const std::string_view* pieces, size_t count, size_t total);
  // Writes what the cork gathered now (before a FIN or a state change).
  void FlushCorkInLoop();

  // With a transport (transport_ != nullptr) only.
  // ReadInLoop's counterpart: recv, Feed, then Read plaintext out.
  bool ReadTransportInLoop(size_t budget, bool until_eagain);
  // Reads what the transport can give and hands it over, as far as the
  // handler's pauses allow. False: stop reading (paused, closed, EOF).
  bool DecryptInLoop();
  // Hands plaintext to the handler, behind any partial frame in input_.
  void DeliverPlainInLoop(std::string_view plain);
  void SendTransportInLoop(std::string_view plain);
  // Queues the transport's close (close_notify) behind the output.
  void SendTransportCloseInLoop();
  // The handshake completed: the handler's OnOpen, then what waited.
  void FinishHandshakeInLoop();
  // The socket's EOF arrived (no close_notify, or during the handshake).
  void TransportEofInLoop();
  void TransportFailedInLoop(CloseReason reason, std::string_view why);
  void OnPeerEofInLoop();
  void FinishFlushInLoop();
  // Handles a failed recv/send (errno), closing with the matching reason.
  void FailInLoop(int error);
  // kConnecting: an event came. Returns true once the connection is open
  // (and still open after the result callback and OnOpen).
  bool FinishConnectInLoop(uint32_t events);

  // An attempt's own state, from Reactor::Connect until it opens or is
  // reaped; held apart so that accepted connections pay one pointer for it.
  struct Dial {
    absl::Duration timeout;
    ConnectCallback on_result;
    absl::Status error;  // why it failed, where more is known than the close reason
  };

  ConnectionHost& host_;
  Reactor* const owner_;  // for handlers only; may be null
  const ConnectionId id_;
  Fd fd_;
  Address peer_;                      // const but for set_peer_in_loop
  const ConnectionOptions& options_;  // the host's; outlives us
  State state_ = State::kOpen;
  bool peer_eof_ = false;              // the peer sent FIN; nothing more to read
  bool write_blocked_ = false;         // the kernel refused bytes; await EPOLLOUT
  bool in_read_backlog_ = false;       // queued for another read next turn
  bool read_paused_ = false;           // output above the high watermark
  bool in_mail_ready_ = false;         // queued for the reactor's mailbox phase
  bool close_requested_ = false;       // CloseAfterFlush() waits for pending work
  bool paused_for_work_ = false;       // at max_pending_work: input waits
  bool redeliver_input_ = false;       // hand input_ over again before reading
  bool user_paused_ = false;           // PauseReading(): the handler's own pause
  bool was_behind_ = false;            // output passed the high watermark: OnOutputDrained due
  bool drained_due_ = false;           // OnOutputDrained waits for the read-backlog phase
  bool write_shut_requested_ = false;  // ShutdownWrite(): FIN once output is out
  bool write_shut_ = false;            // ... and sent
  bool outbound_ = false;              // from Reactor::Connect
  bool opened_ = false;                // the handler had OnOpen, so it gets OnClose
  bool flush_at_open_ = false;         // CloseAfterFlush() while connecting
  bool corked_ = false;                // holds the host's cork (inside a callback)
  uint32_t pending_work_ = 0;          // replies owed by asynchronous work
  // Last time bytes moved either way (the host's per-turn clock); checked
  // when this connection's deadline comes due.
  std::chrono::steady_clock::time_point last_active_;
  // Connecting: when the connect times out; flushing: when the flush gives
  // up; lingering: when the linger does.
  std::chrono::steady_clock::time_point close_deadline_ =
      std::chrono::steady_clock::time_point::max();
  Buffer input_;     // unconsumed input (a partial frame)
  Buffer output_;    // bytes the kernel has not taken yet
  Mailbox mailbox_;  // mail not yet handed to the handler
  std::unique_ptr<ConnectionHandler> handler_;
  // Null: plaintext (the default). Else every byte goes through it.
  std::unique_ptr<Transport> transport_;
  bool transport_fed_ = false;     // bytes arrived for the handshake
  size_t early_bytes_ = 0;         // plaintext Sent during the handshake, held by the transport
  bool opening_deadline_ = false;  // close_deadline_ is SetOpeningDeadline's
  CloseReason opening_reason_ = CloseReason::kLocalClose;  // ... and this is why
  std::unique_ptr<Dial> dial_;                             // outbound, until open or reaped
};

}  // namespace troupe
