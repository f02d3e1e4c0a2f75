// file-server: stores and serves whole files over TCP, streaming both ways,
// with every disk operation on an offload pool so that no reactor ever waits
// for the disk.
//
// Protocol (bytes on the wire; "\r\n" is accepted for "\n" after a header):
//   PUT <name> <size>\n<size raw bytes>  ->  "OK <size>\n" once the file is in
//                                            place, or "ERR <reason>\n"
//   GET <name>\n                          ->  "OK <size>\n" then <size> raw
//                                            bytes, or "ERR not found\n"
// A connection carries any number of requests; a client may pipeline them,
// and the replies come back in request order.
//   - <name>: 1 to 128 of [A-Za-z0-9._-], neither "." nor containing "..";
//     anything else is "ERR bad name" (a PUT's body is still read and
//     dropped, so the stream stays framed and the connection goes on). A name
//     can never hold a "/", so no request reaches outside --root.
//   - <size>: decimal digits, at most --max-file-bytes.
//   - A header that is not one of the two forms, a bad or too large size, or
//     a header line longer than 512 bytes: "ERR <reason>\n", then the
//     connection closes, since where the next request would start is unknown.
//   - A PUT is written to a temporary name (its name, "~" and a serial: no
//     valid name contains "~") and renamed into place once its last byte is
//     written (and, with --fsync, synced), so a GET sees the old file or the
//     new one, never half of one. An upload the peer abandons (it closes
//     before the last byte) leaves nothing behind.
//   - A disk error (no space, no permission) answers "ERR <strerror>" for that
//     request; the connection and the server go on.
//
// Memory stays bounded whatever the file sizes. A PUT body is cut into 256 KiB
// chunks, each written by its own offloaded pwrite; above 1 MiB of body read
// but not yet written the actor stops reading (PauseReading), so a client
// faster than the disk waits in TCP flow control rather than in our memory. A
// GET reads the next 256 KiB chunk only while the peer keeps up
// (!peer_behind()) and goes on when its output drains (OnOutputDrained), so a
// slow reader holds back the disk reads rather than growing the output queue.
//
// Usage: file-server [--listen HOST:PORT] [--workers N] [--root DIR]
//                    [--max-file-bytes N] [--io-threads N] [--fsync=true|false]
//                    [--drain-timeout DURATION]
// Prints "file-server listening on HOST:PORT" first; SIGINT/SIGTERM drain (a
// transfer in progress gets to finish, bounded by --drain-timeout).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "actors/actor.h"
#include "actors/offload_pool.h"
#include "core/base/fd.h"
#include "core/base/log.h"
#include "core/ops/signals.h"
#include "core/server.h"

namespace {

constexpr size_t kChunkBytes = 256 << 10;      // one offloaded pwrite or pread
constexpr size_t kMaxBufferedBytes = 1 << 20;  // PUT body read but not yet on disk
constexpr size_t kMaxHeaderBytes = 512;        // a header line, without its "\n"
constexpr size_t kMaxNameBytes = 128;

struct Config {
  std::string root;
  uint64_t max_file_bytes = uint64_t{1} << 30;
  bool fsync = true;
};

// strerror is not thread-safe for every code; reactors and pool threads
// format errors at once.
std::string ErrnoText(int error) {
  char buffer[128];
  return std::string(strerror_r(error, buffer, sizeof(buffer)));
}

bool ValidName(std::string_view name) {
  if (name.empty() || name.size() > kMaxNameBytes) return false;
  if (name == "." || name.find("..") != std::string_view::npos) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
  });
}

// Digits only (no sign, no spaces), without overflow.
bool ParseSize(std::string_view text, uint64_t* size) {
  if (text.empty() || text.size() > 20) return false;
  uint64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    const auto digit = static_cast<uint64_t>(c - '0');
    if (value > (UINT64_MAX - digit) / 10) return false;
    value = value * 10 + digit;
  }
  *size = value;
  return true;
}

// Each upload's temporary name is unique within this process.
std::atomic<uint64_t> upload_serial{0};

// One PUT's temporary file, shared by the actor and every pool job that
// touches it. Each job holds a reference, so the descriptor is never closed
// (and its number reused) under a write still running. The last owner to let
// go closes it and, unless it was committed or discarded, removes it: that is
// how an abandoned upload cleans up after the open or writes still in flight.
// The actor never drops an unsettled file on its reactor; it hands its
// reference to a pool job (Abandon), so that removal is disk work off the loop.
// Members are written by one job at a time (open, then writes to disjoint
// ranges, then commit or discard: each submitted after the one before
// reported back), so they need no lock.
class TempFile {
 public:
  TempFile(std::string temp_path, std::string final_path, std::string root)
      : temp_path_(std::move(temp_path)),
        final_path_(std::move(final_path)),
        root_(std::move(root)) {}
  ~TempFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!settled_) ::unlink(temp_path_.c_str());
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;

  // Pool. 0 or an errno.
  int Open() {
    fd_ = ::open(temp_path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    return fd_ >= 0 ? 0 : errno;
  }

  // Pool.
  int WriteAt(std::string_view data, uint64_t offset) const {
    while (!data.empty()) {
      const ssize_t n = ::pwrite(fd_, data.data(), data.size(), static_cast<off_t>(offset));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return errno;
      if (n == 0) return EIO;
      data.remove_prefix(static_cast<size_t>(n));
      offset += static_cast<uint64_t>(n);
    }
    return 0;
  }

  // Pool: puts the file in place (fsync, close, rename, then the directory
  // synced so the rename lasts too); on failure removes it instead.
  int Commit(bool sync) {
    int error = 0;
    if (sync && ::fsync(fd_) != 0) error = errno;
    // close() reports some write errors (quota, network file systems).
    if (::close(std::exchange(fd_, -1)) != 0 && error == 0) error = errno;
    if (error == 0 && ::rename(temp_path_.c_str(), final_path_.c_str()) != 0) error = errno;
    if (error != 0) {
      Discard();
      return error;
    }
    settled_ = true;
    if (sync) {
      troupe::Fd dir(::open(root_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      if (dir.valid() && ::fsync(dir.get()) != 0) return errno;
    }
    return 0;
  }

  // Pool: closes and removes the file (a failed upload).
  void Discard() {
    if (fd_ >= 0) ::close(std::exchange(fd_, -1));
    ::unlink(temp_path_.c_str());
    settled_ = true;
  }

 private:
  const std::string temp_path_;
  const std::string final_path_;
  const std::string root_;
  int fd_ = -1;
  bool settled_ = false;  // renamed into place or removed: nothing left to clean up
};

// What the offloaded open of a GET brings back.
struct OpenedFile {
  std::shared_ptr<troupe::Fd> fd;  // shared with the pread jobs: closed by the last user
  uint64_t size = 0;
  int error = 0;
};

OpenedFile OpenForReading(const std::string& path) {
  OpenedFile opened;
  troupe::Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  struct stat info {};
  if (!fd.valid() || ::fstat(fd.get(), &info) != 0) {
    opened.error = errno;
  } else if (!S_ISREG(info.st_mode)) {
    opened.error = ENOENT;  // a directory, a device: not a file this server serves
  } else {
    opened.size = static_cast<uint64_t>(info.st_size);
    opened.fd = std::make_shared<troupe::Fd>(std::move(fd));
  }
  return opened;
}

struct ReadChunk {
  std::string data;
  int error = 0;
};

ReadChunk ReadAt(int fd, uint64_t offset, size_t length) {
  ReadChunk chunk;
  chunk.data.resize(length);
  size_t done = 0;
  while (done < length) {
    const ssize_t n =
        ::pread(fd, chunk.data.data() + done, length - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      chunk.error = errno;
      break;
    }
    if (n == 0) break;  // the file shrank since it was opened
    done += static_cast<size_t>(n);
  }
  chunk.data.resize(done);
  return chunk;
}

// Serves one connection, one request at a time: bytes that arrive while a
// request is still in progress wait in `backlog_` (and reading pauses), so the
// replies come out in request order with no bookkeeping beyond that.
class FileActor final : public troupe::Actor {
 public:
  FileActor(const Config& config, troupe::OffloadPool& pool) : config_(config), pool_(pool) {}

  void OnMessage(troupe::Context& ctx, troupe::Bytes data) override {
    if (!backlog_.empty()) {
      // Bytes never overtake those already waiting (reading pauses while any
      // wait, so this is a guard, not a path taken).
      Stash(ctx, data);
      return;
    }
    Consume(ctx, data);
  }

  void OnPeerClosed(troupe::Context& ctx) override {
    // Every byte the peer sent has been through OnMessage. An upload still
    // short of its size can never complete: abandon it (what was read is not
    // a file). Requests already read are still answered: CloseAfterFlush
    // waits for the work in progress, and the backlog is served after it.
    if (phase_ == Phase::kPutBody) {
      Abandon();
      phase_ = Phase::kDone;
    }
    ctx.CloseAfterFlush();
  }

  void OnOutputDrained(troupe::Context& ctx) override {
    if (phase_ == Phase::kGet) PumpGet(ctx);
  }

  void OnClose(troupe::Context& /*ctx*/, troupe::CloseReason /*reason*/) override {
    phase_ = Phase::kDone;
    // Mid-upload: the temporary file goes (off the loop). Mid-download: the
    // descriptor closes now, or when a pread still running lets go of it;
    // closing a regular file's descriptor does not block.
    Abandon();
    get_ = GetState{};
    backlog_.clear();
  }

 private:
  enum class Phase : uint8_t {
    kHeader,        // waiting for a request line
    kPutBody,       // a PUT's body is arriving
    kDiscardBody,   // a rejected PUT's body is read and dropped
    kPutFinishing,  // body complete; writes, then the rename, still to report
    kGet,           // a GET's file is being sent
    kDone,          // nothing more is read (closing, or the stream lost its framing)
  };

  struct QueuedChunk {
    uint64_t offset;
    std::string data;
  };
  struct PutState {
    std::shared_ptr<TempFile> file;
    uint64_t id = 0;  // tells a late result of an abandoned upload from the current one
    uint64_t size = 0;
    uint64_t remaining = 0;  // body bytes still to read
    uint64_t next_offset = 0;
    bool opened = false;    // the open has reported success: writes may go
    bool settling = false;  // commit or discard submitted
    int error = 0;          // the first disk error; the rest of the body is dropped
    size_t writes_in_flight = 0;
    std::string chunk;               // body bytes not yet handed to a write
    std::deque<QueuedChunk> queued;  // chunks cut, waiting for the open
  };
  struct GetState {
    std::shared_ptr<troupe::Fd> fd;
    uint64_t size = 0;
    uint64_t offset = 0;   // bytes read and written so far
    bool reading = false;  // a pread is in flight
  };

  // Feeds bytes through the request parser until they run out or a request
  // needs time (disk work, a slow reader); then the rest waits in the backlog.
  void Consume(troupe::Context& ctx, std::string_view data) {
    while (!data.empty()) {
      switch (phase_) {
        case Phase::kHeader: {
          const size_t newline = data.find('\n');
          const size_t length = newline == std::string_view::npos ? data.size() : newline;
          if (header_.size() + length > kMaxHeaderBytes) {
            Fail(ctx, "header line too long");
            return;
          }
          header_.append(data.substr(0, length));
          if (newline == std::string_view::npos) return;
          data.remove_prefix(newline + 1);
          std::string line = std::move(header_);
          header_.clear();
          StartRequest(ctx, line);
          break;
        }
        case Phase::kPutBody: {
          const size_t take = static_cast<size_t>(std::min<uint64_t>(put_.remaining, data.size()));
          AcceptBody(ctx, data.substr(0, take));
          data.remove_prefix(take);
          break;
        }
        case Phase::kDiscardBody: {
          const size_t take = static_cast<size_t>(std::min<uint64_t>(discard_, data.size()));
          discard_ -= take;
          data.remove_prefix(take);
          if (discard_ == 0) {
            Reply(ctx, "ERR bad name");
            phase_ = Phase::kHeader;
          }
          break;
        }
        case Phase::kPutFinishing:
        case Phase::kGet:
          Stash(ctx, data);
          return;
        case Phase::kDone:
          return;
      }
    }
  }

  void Stash(troupe::Context& ctx, std::string_view data) {
    backlog_.append(data);
    // At most one read's worth piles up: no more is read until it is served.
    ctx.PauseReading();
  }

  void StartRequest(troupe::Context& ctx, std::string_view line) {
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    std::vector<std::string_view> words;
    for (size_t start = 0; start <= line.size();) {
      size_t space = line.find(' ', start);
      if (space == std::string_view::npos) space = line.size();
      words.push_back(line.substr(start, space - start));
      start = space + 1;
    }
    if (words.size() == 2 && words[0] == "GET") {
      if (!ValidName(words[1])) {
        Reply(ctx, "ERR bad name");
        return;
      }
      StartGet(ctx, words[1]);
      return;
    }
    if (words.size() != 3 || words[0] != "PUT") {
      Fail(ctx, "bad request: expected 'PUT <name> <size>' or 'GET <name>'");
      return;
    }
    uint64_t size = 0;
    if (!ParseSize(words[2], &size)) {
      Fail(ctx, "bad size");
      return;
    }
    if (size > config_.max_file_bytes) {
      Fail(ctx, absl::StrCat("too large: the limit is ", config_.max_file_bytes, " bytes"));
      return;
    }
    if (!ValidName(words[1])) {
      discard_ = size;
      phase_ = Phase::kDiscardBody;
      if (size == 0) {
        Reply(ctx, "ERR bad name");
        phase_ = Phase::kHeader;
      }
      return;
    }
    StartPut(ctx, words[1], size);
  }

  // The reply to a request the stream can no longer be trusted after.
  void Fail(troupe::Context& ctx, std::string_view reason) {
    Reply(ctx, std::string("ERR ").append(reason));
    phase_ = Phase::kDone;
    backlog_.clear();
    ctx.CloseAfterFlush();
  }

  void Reply(troupe::Context& ctx, std::string_view line) {
    std::string text(line);
    text += '\n';
    ctx.Write(text);
  }

  // --- PUT ------------------------------------------------------------------

  void StartPut(troupe::Context& ctx, std::string_view name, uint64_t size) {
    const std::string final_path = config_.root + "/" + std::string(name);
    put_ = PutState{};
    put_.id = ++put_serial_;
    put_.size = size;
    put_.remaining = size;
    put_.file = std::make_shared<TempFile>(
        absl::StrCat(final_path, "~", ::getpid(), "-", upload_serial.fetch_add(1)), final_path,
        config_.root);
    phase_ = Phase::kPutBody;
    const uint64_t id = put_.id;
    ctx.Offload([file = put_.file] { return file->Open(); },
                [this, id](troupe::Context& c, int error) {
                  if (put_.id != id || put_.file == nullptr) return;  // abandoned meanwhile
                  if (error != 0) {
                    SetError(error);
                  } else {
                    put_.opened = true;
                  }
                  SubmitWrites(c);
                  MaybeFinishPut(c);
                  UpdateReading(c);
                });
    if (size == 0) phase_ = Phase::kPutFinishing;
  }

  void AcceptBody(troupe::Context& ctx, std::string_view bytes) {
    put_.remaining -= bytes.size();
    while (put_.error == 0 && !bytes.empty()) {
      if (put_.chunk.empty()) put_.chunk.reserve(std::min<uint64_t>(kChunkBytes, put_.size));
      const size_t take = std::min(kChunkBytes - put_.chunk.size(), bytes.size());
      put_.chunk.append(bytes.substr(0, take));
      bytes.remove_prefix(take);
      buffered_ += take;
      if (put_.chunk.size() == kChunkBytes) QueueChunk();
    }
    if (put_.remaining == 0) {
      if (put_.error == 0 && !put_.chunk.empty()) QueueChunk();
      phase_ = Phase::kPutFinishing;
    }
    SubmitWrites(ctx);
    MaybeFinishPut(ctx);
    UpdateReading(ctx);
  }

  void QueueChunk() {
    const uint64_t offset = put_.next_offset;
    put_.next_offset += put_.chunk.size();
    put_.queued.push_back(QueuedChunk{offset, std::move(put_.chunk)});
    put_.chunk = std::string();
  }

  // Hands every full chunk to a pwrite of its own, once the file is open.
  void SubmitWrites(troupe::Context& ctx) {
    if (!put_.opened || put_.error != 0) return;
    while (!put_.queued.empty()) {
      QueuedChunk chunk = std::move(put_.queued.front());
      put_.queued.pop_front();
      const size_t length = chunk.data.size();
      const uint64_t id = put_.id;
      ++put_.writes_in_flight;
      // The chunk moves into the job and is freed on the pool thread once
      // written.
      ctx.Offload([file = put_.file,
                   chunk = std::move(chunk)] { return file->WriteAt(chunk.data, chunk.offset); },
                  [this, id, length](troupe::Context& c, int error) {
                    buffered_ -= length;
                    if (put_.id != id || put_.file == nullptr) {
                      UpdateReading(c);
                      return;
                    }
                    --put_.writes_in_flight;
                    if (error != 0) SetError(error);
                    MaybeFinishPut(c);
                    UpdateReading(c);
                  });
    }
  }

  // The first disk error decides the reply; the rest of the body is read and
  // dropped so that the connection stays framed.
  void SetError(int error) {
    if (put_.error == 0) put_.error = error;
    for (const QueuedChunk& chunk : put_.queued) buffered_ -= chunk.data.size();
    buffered_ -= put_.chunk.size();
    put_.queued.clear();
    put_.chunk = std::string();
  }

  // Once the body is complete and every write has reported: the rename (or,
  // after an error, the removal), then the reply.
  void MaybeFinishPut(troupe::Context& ctx) {
    if (phase_ != Phase::kPutFinishing || put_.settling || put_.writes_in_flight > 0) return;
    // An error implies the open has reported; without one, wait for it and
    // for the chunks queued behind it.
    if (put_.error == 0 && (!put_.opened || !put_.queued.empty())) return;
    put_.settling = true;
    const uint64_t id = put_.id;
    const int write_error = put_.error;
    auto done = [this, id](troupe::Context& c, int error) {
      if (put_.id != id || put_.file == nullptr) return;
      Reply(c,
            error != 0 ? absl::StrCat("ERR ", ErrnoText(error)) : absl::StrCat("OK ", put_.size));
      put_.file.reset();  // settled: its destructor does nothing
      EndRequest(c);
    };
    if (write_error != 0) {
      ctx.Offload(
          [file = put_.file, write_error] {
            file->Discard();
            return write_error;
          },
          std::move(done));
    } else {
      ctx.Offload([file = put_.file, sync = config_.fsync] { return file->Commit(sync); },
                  std::move(done));
    }
  }

  // Gives up the upload in progress, if any: the actor's reference goes to a
  // pool job, so whichever of it and the upload's own jobs lets go last
  // removes the temporary file, on a pool thread.
  void Abandon() {
    for (const QueuedChunk& chunk : put_.queued) buffered_ -= chunk.data.size();
    buffered_ -= put_.chunk.size();
    if (put_.file != nullptr) {
      pool_.Submit([file = std::move(put_.file)]() mutable { file.reset(); });
    }
    put_ = PutState{};
  }

  // --- GET ------------------------------------------------------------------

  void StartGet(troupe::Context& ctx, std::string_view name) {
    phase_ = Phase::kGet;
    // Owed to the peer from here to the last byte, also while no disk read
    // is in flight (waiting for a slow reader): the server's drain and a
    // half-close wait for the whole file, not just for the next chunk.
    HoldWork(ctx);
    ctx.Offload([path = config_.root + "/" + std::string(name)] { return OpenForReading(path); },
                [this](troupe::Context& c, OpenedFile opened) {
                  if (opened.error != 0) {
                    Reply(c, opened.error == ENOENT || opened.error == ENOTDIR
                                 ? "ERR not found"
                                 : absl::StrCat("ERR ", ErrnoText(opened.error)));
                    EndRequest(c);
                    return;
                  }
                  Reply(c, absl::StrCat("OK ", opened.size));
                  get_ = GetState{std::move(opened.fd), opened.size, 0, false};
                  PumpGet(c);
                });
  }

  // Reads the next chunk unless one is in flight or the peer is behind
  // (OnOutputDrained calls again).
  void PumpGet(troupe::Context& ctx) {
    if (get_.reading) return;
    if (get_.offset == get_.size) {
      // The close goes to the pool like the open did (the reply does not
      // wait for it; counted as owed work, the drain does).
      ctx.Offload([fd = std::move(get_.fd)]() mutable { fd.reset(); }, [](troupe::Context&) {});
      get_ = GetState{};
      EndRequest(ctx);
      return;
    }
    if (ctx.peer_behind()) return;
    const size_t length =
        static_cast<size_t>(std::min<uint64_t>(kChunkBytes, get_.size - get_.offset));
    get_.reading = true;
    ctx.Offload(
        [fd = get_.fd, offset = get_.offset, length] { return ReadAt(fd->get(), offset, length); },
        [this, length](troupe::Context& c, ReadChunk chunk) {
          get_.reading = false;
          if (chunk.error != 0 || chunk.data.size() != length) {
            // "OK <size>" is out and the file came up short: the peer can
            // only be told by the connection ending early.
            TROUPE_LOG_EVERY_SECOND(kWarning, "closing %s: file read failed mid-transfer: %s",
                                    c.peer().ToString(),
                                    chunk.error != 0 ? ErrnoText(chunk.error) : "file shrank");
            c.Close();
            return;
          }
          c.Write(chunk.data);
          get_.offset += length;
          PumpGet(c);
        });
  }

  // --- Between requests -----------------------------------------------------

  // A request that took time is done: serve what waited behind it.
  void EndRequest(troupe::Context& ctx) {
    phase_ = Phase::kHeader;
    if (!backlog_.empty()) {
      std::string waiting = std::move(backlog_);
      backlog_.clear();
      Consume(ctx, waiting);
    }
    UpdateReading(ctx);
    if (phase_ != Phase::kGet) ReleaseWork(ctx);
  }

  // Reading pauses while bytes wait behind a request in progress and while
  // more than kMaxBufferedBytes of body is on its way to the disk.
  void UpdateReading(troupe::Context& ctx) {
    const bool pause = !backlog_.empty() || buffered_ > kMaxBufferedBytes;
    if (pause && !ctx.reading_paused()) ctx.PauseReading();
    if (!pause && ctx.reading_paused()) ctx.ResumeReading();
  }

  void HoldWork(troupe::Context& ctx) {
    if (holding_work_) return;
    holding_work_ = true;
    ctx.AddPendingWork();
  }
  void ReleaseWork(troupe::Context& ctx) {
    if (!holding_work_) return;
    holding_work_ = false;
    ctx.FinishPendingWork();
  }

  const Config& config_;
  troupe::OffloadPool& pool_;
  Phase phase_ = Phase::kHeader;
  std::string header_;    // the request line so far
  std::string backlog_;   // bytes read behind a request still in progress
  uint64_t discard_ = 0;  // kDiscardBody: bytes still to drop
  uint64_t put_serial_ = 0;
  size_t buffered_ = 0;  // body bytes read and not yet written (all uploads)
  bool holding_work_ = false;
  PutState put_;
  GetState get_;
};

// --- Command line -------------------------------------------------------------

constexpr char kUsage[] =
    "usage: file-server [flags]\n"
    "  --listen HOST:PORT      address to listen on (default 127.0.0.1:0: any free port)\n"
    "  --workers N             reactors (default 0: one per CPU)\n"
    "  --root DIR              directory the files live in (default: a new temporary one)\n"
    "  --max-file-bytes N      largest PUT accepted (default 1073741824)\n"
    "  --io-threads N          threads doing the disk I/O (default 4)\n"
    "  --fsync=true|false      sync each file before its OK (default true)\n"
    "  --drain-timeout D       how long SIGTERM waits for transfers (default 10s)\n";

[[noreturn]] void UsageError(std::string_view message) {
  std::fprintf(stderr, "file-server: %.*s\n%s", static_cast<int>(message.size()), message.data(),
               kUsage);
  std::exit(2);
}

struct Flags {
  std::string listen = "127.0.0.1:0";
  int workers = 0;
  std::string root;
  uint64_t max_file_bytes = uint64_t{1} << 30;
  int io_threads = 4;
  bool fsync = true;
  absl::Duration drain_timeout = absl::Seconds(10);
};

// "--name value" or "--name=value"; dashes and underscores alike.
Flags ParseFlags(int argc, char* argv[]) {
  Flags flags;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    }
    if (arg.rfind("--", 0) != 0) UsageError(absl::StrCat("unexpected argument: ", arg));
    std::string name = arg.substr(2);
    std::string value;
    bool has_value = false;
    if (const size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name.resize(eq);
      has_value = true;
    }
    std::replace(name.begin(), name.end(), '_', '-');
    auto next = [&]() -> std::string {
      if (has_value) return value;
      if (i + 1 >= argc) UsageError(absl::StrCat("--", name, " needs a value"));
      return argv[++i];
    };
    if (name == "listen") {
      flags.listen = next();
    } else if (name == "root") {
      flags.root = next();
    } else if (name == "workers") {
      if (!absl::SimpleAtoi(next(), &flags.workers) || flags.workers < 0) {
        UsageError("--workers wants a count");
      }
    } else if (name == "io-threads") {
      if (!absl::SimpleAtoi(next(), &flags.io_threads) || flags.io_threads < 1) {
        UsageError("--io-threads wants a positive count");
      }
    } else if (name == "max-file-bytes") {
      if (!ParseSize(next(), &flags.max_file_bytes)) UsageError("--max-file-bytes wants bytes");
    } else if (name == "fsync") {
      if (!has_value) {
        flags.fsync = true;
      } else if (!absl::SimpleAtob(value, &flags.fsync)) {
        UsageError("--fsync wants true or false");
      }
    } else if (name == "no-fsync") {
      flags.fsync = false;
    } else if (name == "drain-timeout") {
      if (!absl::ParseDuration(next(), &flags.drain_timeout)) {
        UsageError("--drain-timeout wants a duration such as 10s");
      }
    } else {
      UsageError(absl::StrCat("unknown flag --", name));
    }
  }
  return flags;
}

}  // namespace

int main(int argc, char* argv[]) {
  // Before any thread starts (the I/O pool's below): threads inherit the
  // mask, so SIGTERM reaches the main thread's drain and nothing else.
  troupe::BlockStopSignals();
  const Flags flags = ParseFlags(argc, argv);
  Config config;
  config.max_file_bytes = flags.max_file_bytes;
  config.fsync = flags.fsync;
  config.root = flags.root;
  if (config.root.empty()) {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern =
        absl::StrCat(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp", "/file-server-XXXXXX");
    if (::mkdtemp(pattern.data()) == nullptr) {
      std::fprintf(stderr, "file-server: mkdtemp %s: %s\n", pattern.c_str(),
                   ErrnoText(errno).c_str());
      return 1;
    }
    config.root = pattern;
  }
  struct stat info {};
  if (::stat(config.root.c_str(), &info) != 0 || !S_ISDIR(info.st_mode)) {
    UsageError(absl::StrCat("--root ", config.root, " is not a directory"));
  }
  std::fprintf(stderr, "file-server: serving files from %s\n", config.root.c_str());

  troupe::ServerOptions options;
  absl::StatusOr<troupe::Address> address = troupe::Address::Parse(flags.listen);
  if (!address.ok()) UsageError(absl::StrCat("--listen: ", address.status().message()));
  options.address = *address;
  options.workers = flags.workers;
  options.drain_timeout = flags.drain_timeout;

  // Disk I/O blocks its thread, so it gets a pool of its own rather than the
  // default one (sized for CPU work). Declared before the server and so
  // destroyed after it: the jobs still queued then (an abandoned upload's
  // clean-up) run before the program exits.
  troupe::OffloadPool io_pool(flags.io_threads);
  troupe::ActorOptions actors;
  actors.codec.kind = troupe::CodecKind::kRaw;  // the actor frames the stream itself
  actors.offload = &io_pool;
  return troupe::ServeUntilStopSignal(
      "file-server", options,
      troupe::ActorFactory(
          [&config, &io_pool] { return std::make_unique<FileActor>(config, io_pool); }, actors));
}
