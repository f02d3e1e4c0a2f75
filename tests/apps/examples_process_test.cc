// Runs the out-of-tree examples (built against the installed package by the
// "examples" ctest fixture) and talks to them over loopback.
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "core/base/fd.h"
#include "gtest/gtest.h"
#include "tests/support/cluster_process.h"
#include "tests/support/line_client.h"
#include "tests/support/proc.h"
#include "tests/support/subprocess.h"
#include "tests/support/wait.h"

#ifndef TROUPE_EXAMPLES_BIN_DIR
#error "TROUPE_EXAMPLES_BIN_DIR must name the examples' build directory"
#endif

namespace troupe {
namespace {

using ::troupe::testing::LineClient;
using ::troupe::testing::Subprocess;

constexpr absl::Duration kTimeout = absl::Seconds(60);

// Starts an example and returns its loopback address from "... listening on HOST:PORT".
// `prefix` runs before it (an env(1) that sets variables for it alone).
std::unique_ptr<Subprocess> StartExample(const std::string& name, Address* address,
                                         const std::vector<std::string>& args = {},
                                         const std::vector<std::string>& prefix = {}) {
  std::vector<std::string> argv = prefix;
  argv.push_back(std::string(TROUPE_EXAMPLES_BIN_DIR) + "/" + name);
  argv.insert(argv.end(), args.begin(), args.end());
  auto p = Subprocess::Start(argv);
  EXPECT_TRUE(p.ok()) << p.status();
  if (!p.ok()) return nullptr;
  absl::StatusOr<std::string> line = (*p)->ReadLine(kTimeout);
  EXPECT_TRUE(line.ok()) << line.status();
  if (!line.ok()) return nullptr;
  const size_t at = line->rfind(' ');
  absl::StatusOr<Address> parsed = Address::Parse(line->substr(at + 1));
  EXPECT_TRUE(parsed.ok()) << *line;
  if (parsed.ok()) *address = *parsed;
  return std::move(*p);
}

void StopAndExpectZero(Subprocess& p) {
  ASSERT_TRUE(p.Signal(SIGTERM).ok());
  absl::StatusOr<int> code = p.Wait(kTimeout);
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0);
}

TEST(ExamplesTest, CounterServerCountsLines) {
  Address address;
  auto server = StartExample("counter-server", &address);
  ASSERT_NE(server, nullptr);
  LineClient client(address);
  ASSERT_TRUE(client.Send("apple\npear\r\n"));
  EXPECT_EQ(client.ReadLine(), "1 apple");
  EXPECT_EQ(client.ReadLine(), "2 pear");
  client.Close();
  StopAndExpectZero(*server);
}

TEST(ExamplesTest, ChatRoomRelaysWithNicknames) {
  Address address;
  auto server = StartExample("chat-room", &address);
  ASSERT_NE(server, nullptr);
  // Each client first renames itself and waits for its own notice, which
  // proves it has joined the room before anyone else's line can be sent.
  LineClient ann(address);
  ASSERT_TRUE(ann.Send("/nick ann\n"));
  std::optional<std::string> renamed = ann.ReadLine();
  ASSERT_TRUE(renamed.has_value());
  EXPECT_TRUE(absl::EndsWith(*renamed, " is now ann")) << *renamed;
  LineClient bob(address);
  std::optional<std::string> joined = ann.ReadLine();
  ASSERT_TRUE(joined.has_value());
  EXPECT_TRUE(absl::EndsWith(*joined, " joined")) << *joined;
  ASSERT_TRUE(bob.Send("/nick bob\nhello\n"));
  EXPECT_TRUE(absl::EndsWith(*ann.ReadLine(), " is now bob"));
  EXPECT_EQ(ann.ReadLine(), "bob: hello");
  bob.Close();
  EXPECT_EQ(ann.ReadLine(), "* bob left");
  ann.Close();
  StopAndExpectZero(*server);
}

TEST(ExamplesTest, KvStoreSharesKeysAcrossReactors) {
  Address address;
  auto server = StartExample("kv-store", &address);
  ASSERT_NE(server, nullptr);
  // Several clients (spread over the reactors) see one another's keys.
  LineClient writer(address);
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(writer.Send("set key" + std::to_string(i) + " value " + std::to_string(i) + "\n"));
    ASSERT_EQ(writer.ReadLine(), "ok");
  }
  for (int reader_index = 0; reader_index < 4; ++reader_index) {
    LineClient reader(address);
    for (int i = 0; i < 20; ++i) {
      ASSERT_TRUE(reader.Send("get key" + std::to_string(i) + "\n"));
      EXPECT_EQ(reader.ReadLine(), "key" + std::to_string(i) + "=value " + std::to_string(i));
    }
  }
  // Pipelined requests for keys on every reactor are answered in request
  // order, though the answers come back from different reactors.
  LineClient pipeliner(address);
  std::string batch;
  for (int i = 0; i < 200; ++i) {
    absl::StrAppend(&batch, "set p", i, " v", i, "\nget p", i, "\n");
    if (i % 50 == 0) batch += "bogus\n";
  }
  ASSERT_TRUE(pipeliner.Send(batch));
  for (int i = 0; i < 200; ++i) {
    ASSERT_EQ(pipeliner.ReadLine(), "ok") << "request " << i;
    ASSERT_EQ(pipeliner.ReadLine(), absl::StrCat("p", i, "=v", i));
    if (i % 50 == 0) {
      std::optional<std::string> error = pipeliner.ReadLine();
      ASSERT_TRUE(error.has_value() && absl::StartsWith(*error, "error:"));
    }
  }
  LineClient confused(address);
  ASSERT_TRUE(confused.Send("delete everything\n"));
  EXPECT_TRUE(absl::StartsWith(*confused.ReadLine(), "error:"));
  StopAndExpectZero(*server);
}

TEST(ExamplesTest, KvStoreRestartsAPoisonedShardEmptyAndStopsItPastItsLimit) {
  Address address;
  auto server = StartExample("kv-store", &address);
  ASSERT_NE(server, nullptr);
  LineClient client(address);
  // Two keys; "victim" and "bystander" may share a shard or not, so the
  // test reads each key's own shard through its own requests.
  ASSERT_TRUE(client.Send("set victim 1\nget victim\n"));
  EXPECT_EQ(client.ReadLine(), "ok");
  EXPECT_EQ(client.ReadLine(), "victim=1");
  // The poisoned shard answers with an error, restarts empty, and serves on.
  ASSERT_TRUE(client.Send("poison victim\nget victim\nset victim 2\nget victim\n"));
  std::optional<std::string> error = client.ReadLine();
  ASSERT_TRUE(error.has_value());
  EXPECT_TRUE(absl::StartsWith(*error, "error: INTERNAL")) << *error;
  EXPECT_EQ(client.ReadLine(), "victim=");  // its state went with the failed object
  EXPECT_EQ(client.ReadLine(), "ok");
  EXPECT_EQ(client.ReadLine(), "victim=2");
  // Three restarts in 10 s are allowed; the fourth failure stops the shard
  // for good, and its keys answer "no such actor" from then on.
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(client.Send("poison victim\n"));
    error = client.ReadLine();
    ASSERT_TRUE(error.has_value());
    EXPECT_TRUE(absl::StartsWith(*error, "error: INTERNAL")) << i << ": " << *error;
  }
  ASSERT_TRUE(client.Send("get victim\n"));
  error = client.ReadLine();
  ASSERT_TRUE(error.has_value());
  EXPECT_TRUE(absl::StartsWith(*error, "error: NOT_FOUND")) << *error;
  StopAndExpectZero(*server);
}

// --- file-server ---------------------------------------------------------------

// A directory for one test's files, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern =
        std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/file-server-test-XXXXXX";
    if (::mkdtemp(pattern.data()) != nullptr) path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    if (!path_.empty()) std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  // The names in the directory, sorted.
  std::vector<std::string> Names() const {
    std::vector<std::string> names;
    std::error_code error;
    for (const auto& entry : std::filesystem::directory_iterator(path_, error)) {
      names.push_back(entry.path().filename().string());
    }
    std::sort(names.begin(), names.end());
    return names;
  }

 private:
  std::string path_;
};

// Deterministic bytes that differ per seed (splitmix64).
std::string PseudoRandomBytes(uint64_t seed, size_t size) {
  std::string bytes(size, '\0');
  uint64_t state = seed;
  for (size_t i = 0; i < size; i += 8) {
    state += 0x9e3779b97f4a7c15ull;
    uint64_t z = state;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    for (size_t j = 0; j < 8 && i + j < size; ++j) {
      bytes[i + j] = static_cast<char>(z >> (8 * j));
    }
  }
  return bytes;
}

uint64_t Fnv1a64(std::string_view bytes) {
  uint64_t hash = 0xcbf29ce484222325ull;
  for (char c : bytes) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 0x100000001b3ull;
  }
  return hash;
}

// Where two byte strings first differ ("" when they are equal): a failure
// names a position instead of printing megabytes.
std::string FirstDifference(std::string_view want, std::string_view got) {
  if (want == got) return "";
  const auto [w, g] = std::mismatch(want.begin(), want.end(), got.begin(), got.end());
  return absl::StrCat("sizes ", want.size(), " and ", got.size(), ", first difference at byte ",
                      w - want.begin());
}

// A blocking client whose every send and receive gives up after `timeout`
// (SO_SNDTIMEO/SO_RCVTIMEO), so a server that stops reading or writing fails
// the test instead of hanging it. `receive_buffer` > 0 shrinks the kernel's
// receive buffer (set before connecting, so the window is small from the start).
class FileClient {
 public:
  explicit FileClient(const Address& address, int receive_buffer = 0,
                      absl::Duration timeout = absl::Seconds(30)) {
    Fd fd(::socket(address.family(), SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd.valid()) return;
    if (receive_buffer > 0) {
      ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof(receive_buffer));
    }
    const timeval tv = absl::ToTimeval(timeout);
    ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (::connect(fd.get(), address.sockaddr_ptr(), address.length()) != 0) return;
    fd_ = std::move(fd);
  }
  bool connected() const { return fd_.valid(); }

  bool Send(std::string_view bytes) {
    while (!bytes.empty()) {
      const ssize_t n = ::send(fd_.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      bytes.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }
  // The next line without its "\n"; nullopt on EOF, error or timeout.
  std::optional<std::string> ReadLine() {
    while (true) {
      const size_t newline = buffer_.find('\n');
      if (newline != std::string::npos) {
        std::string line = buffer_.substr(0, newline);
        buffer_.erase(0, newline + 1);
        return line;
      }
      if (!Fill(64 << 10)) return std::nullopt;
    }
  }
  // Exactly `n` bytes, or nullopt.
  std::optional<std::string> ReadExact(size_t n) {
    std::string out = std::move(buffer_);
    buffer_.clear();
    out.reserve(n);
    while (out.size() < n) {
      const size_t before = buffer_.size();
      if (!Fill(std::min<size_t>(n - out.size(), 256 << 10))) return std::nullopt;
      out.append(buffer_, before, std::string::npos);
      buffer_.clear();
    }
    buffer_ = out.substr(n);
    out.resize(n);
    return out;
  }
  // A reply line then, after "OK <size>", that many bytes: the GET answer.
  std::optional<std::string> ReadGetReply(std::string* status) {
    std::optional<std::string> line = ReadLine();
    if (!line.has_value()) return std::nullopt;
    *status = *line;
    uint64_t size = 0;
    if (!absl::StartsWith(*line, "OK ") || !absl::SimpleAtoi(line->substr(3), &size)) {
      return std::string();
    }
    return ReadExact(static_cast<size_t>(size));
  }
  // True once the server has closed the connection (bytes before the EOF are
  // dropped).
  bool WaitForEof() {
    while (Fill(64 << 10)) buffer_.clear();
    return eof_;
  }
  void Close() { fd_.Reset(); }
  bool ShutdownWrite() { return ::shutdown(fd_.get(), SHUT_WR) == 0; }

 private:
  // Appends one recv of at most `max` bytes; false on EOF, error or timeout.
  bool Fill(size_t max) {
    if (eof_) return false;
    char chunk[64 << 10];
    const ssize_t n = ::recv(fd_.get(), chunk, std::min(max, sizeof(chunk)), 0);
    if (n == 0) eof_ = true;
    if (n <= 0) return false;
    buffer_.append(chunk, static_cast<size_t>(n));
    return true;
  }

  Fd fd_;
  std::string buffer_;
  bool eof_ = false;
};

std::string PutHeader(const std::string& name, size_t size) {
  return absl::StrCat("PUT ", name, " ", size, "\n");
}

// Eight clients at once, each on one connection, pipelining two uploads of
// 3-5 MiB and the two downloads of what it uploaded: every byte comes back,
// in request order, and nothing but the files is left in the root.
TEST(ExamplesTest, FileServerRoundTripsConcurrentPipelinedClients) {
  TempDir root;
  ASSERT_FALSE(root.path().empty());
  Address address;
  auto server = StartExample("file-server", &address, {"--root", root.path(), "--workers", "2"});
  ASSERT_NE(server, nullptr);
  constexpr int kClients = 8;
  std::vector<std::string> failures(kClients);
  std::vector<std::thread> threads;
  for (int c = 0; c < kClients; ++c) {
    threads.emplace_back([&, c] {
      std::string& failure = failures[static_cast<size_t>(c)];
      std::string names[2];
      std::string files[2];
      for (int f = 0; f < 2; ++f) {
        const uint64_t seed = static_cast<uint64_t>(c * 2 + f + 1);
        names[f] = absl::StrCat("client", c, "-file", f, ".bin");
        // 3 MiB to 5 MiB, not a multiple of the server's 256 KiB chunks.
        const size_t size = (3u << 20) + static_cast<size_t>((seed * 0x9e3779b97f4a7c15ull) >> 43);
        files[f] = PseudoRandomBytes(seed, size);
      }
      FileClient client(address);
      if (!client.connected()) {
        failure = "connect failed";
        return;
      }
      // One stream: PUT, PUT, GET, GET. Each GET is answered only after the
      // PUT before it, so it must see the whole file.
      if (!client.Send(PutHeader(names[0], files[0].size())) || !client.Send(files[0]) ||
          !client.Send(PutHeader(names[1], files[1].size())) || !client.Send(files[1]) ||
          !client.Send(absl::StrCat("GET ", names[0], "\nGET ", names[1], "\n"))) {
        failure = "send failed";
        return;
      }
      for (int f = 0; f < 2; ++f) {
        const std::optional<std::string> reply = client.ReadLine();
        if (reply != absl::StrCat("OK ", files[f].size())) {
          failure = absl::StrCat("PUT ", names[f], ": ", reply.value_or("(no reply)"));
          return;
        }
      }
      for (int f = 0; f < 2; ++f) {
        std::string status;
        const std::optional<std::string> got = client.ReadGetReply(&status);
        if (!got.has_value() || status != absl::StrCat("OK ", files[f].size())) {
          failure = absl::StrCat("GET ", names[f], ": '", status, "'");
          return;
        }
        if (Fnv1a64(*got) != Fnv1a64(files[f])) {
          failure = absl::StrCat("GET ", names[f], ": checksum differs, ",
                                 FirstDifference(files[f], *got));
          return;
        }
        if (const std::string diff = FirstDifference(files[f], *got); !diff.empty()) {
          failure = absl::StrCat("GET ", names[f], ": ", diff);
          return;
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  for (int c = 0; c < kClients; ++c) {
    EXPECT_EQ(failures[static_cast<size_t>(c)], "") << "client " << c;
  }
  // Only the 16 files: no temporary name is left behind.
  const std::vector<std::string> names = root.Names();
  EXPECT_EQ(names.size(), 2u * kClients) << absl::StrJoin(names, " ");
  for (const std::string& name : names) {
    EXPECT_EQ(name.find('~'), std::string::npos) << name;
  }
  StopAndExpectZero(*server);
}

// Refused requests: a missing file, names that try to leave the root, a
// target that is a directory (a disk error for that request alone) leave the
// connection serving; a header the stream cannot be framed after (a size
// above the limit, a size that is no number, an unknown verb, a line with no
// end) gets its ERR and a close. The server serves on through all of it.
TEST(ExamplesTest, FileServerRejectsBadRequestsAndKeepsServing) {
  TempDir root;
  ASSERT_FALSE(root.path().empty());
  ASSERT_TRUE(std::filesystem::create_directory(root.path() + "/adir"));
  Address address;
  auto server = StartExample("file-server", &address, {"--root", root.path()});
  ASSERT_NE(server, nullptr);

  FileClient client(address);
  ASSERT_TRUE(client.connected());
  // All pipelined in one write; the replies come in request order.
  ASSERT_TRUE(
      client.Send("GET missing\n"
                  "GET ../etc/passwd\n"
                  "GET .\n"
                  "PUT ../file-server-test-escaped 5\nhello"
                  "PUT a/b 3\nabc"
                  "PUT adir 3\nabc"
                  "GET adir\n"
                  "PUT good 6\nhello\n"
                  "GET good\r\n"));
  EXPECT_EQ(client.ReadLine(), "ERR not found");
  EXPECT_EQ(client.ReadLine(), "ERR bad name");
  EXPECT_EQ(client.ReadLine(), "ERR bad name");
  EXPECT_EQ(client.ReadLine(), "ERR bad name");
  EXPECT_EQ(client.ReadLine(), "ERR bad name");
  const std::optional<std::string> onto_directory = client.ReadLine();
  ASSERT_TRUE(onto_directory.has_value());
  EXPECT_TRUE(absl::StartsWith(*onto_directory, "ERR ")) << *onto_directory;
  EXPECT_EQ(client.ReadLine(), "ERR not found");
  EXPECT_EQ(client.ReadLine(), "OK 6");
  std::string status;
  EXPECT_EQ(client.ReadGetReply(&status), "hello\n");
  EXPECT_EQ(status, "OK 6");
  EXPECT_EQ(root.Names(), (std::vector<std::string>{"adir", "good"}));
  EXPECT_FALSE(std::filesystem::exists(std::filesystem::path(root.path()).parent_path() /
                                       "file-server-test-escaped"));

  const std::string unframed[] = {
      "PUT huge 1099511627776\n",  // above the 1 GiB default limit
      "PUT huge 99999999999999999999999\n",
      "PUT name 12abc\n",
      "PUT name\n",
      "DELETE good\n",
      std::string(600, 'x'),  // no newline within 512 bytes
  };
  for (const std::string& request : unframed) {
    FileClient bad(address);
    ASSERT_TRUE(bad.connected());
    ASSERT_TRUE(bad.Send(request));
    const std::optional<std::string> reply = bad.ReadLine();
    ASSERT_TRUE(reply.has_value()) << request.substr(0, 40);
    EXPECT_TRUE(absl::StartsWith(*reply, "ERR ")) << *reply;
    EXPECT_TRUE(bad.WaitForEof()) << request.substr(0, 40);
  }

  FileClient after(address);
  ASSERT_TRUE(after.Send("GET good\n"));
  EXPECT_EQ(after.ReadGetReply(&status), "hello\n");
  // Closed first, so the drain's FIN is not left waiting (linger) for ours.
  client.Close();
  after.Close();
  StopAndExpectZero(*server);
}

// A client that announces 1 MiB, sends 100 KiB and closes: the upload is
// abandoned, its temporary file removed, and no file of that name appears.
TEST(ExamplesTest, FileServerRemovesAbandonedUpload) {
  TempDir root;
  ASSERT_FALSE(root.path().empty());
  Address address;
  auto server = StartExample("file-server", &address, {"--root", root.path()});
  ASSERT_NE(server, nullptr);
  {
    FileClient client(address);
    ASSERT_TRUE(client.connected());
    ASSERT_TRUE(client.Send(PutHeader("partial", 1 << 20)));
    ASSERT_TRUE(client.Send(PseudoRandomBytes(7, 100 << 10)));
    // The upload is really under way (its temporary file exists) before the
    // client walks away; otherwise an empty root would prove nothing.
    EXPECT_TRUE(testing::WaitFor([&] { return !root.Names().empty(); }, absl::Seconds(10)));
  }
  EXPECT_TRUE(testing::WaitFor([&] { return root.Names().empty(); }, absl::Seconds(10)))
      << absl::StrJoin(root.Names(), " ");
  FileClient check(address);
  ASSERT_TRUE(check.Send("GET partial\n"));
  EXPECT_EQ(check.ReadLine(), "ERR not found");
  check.Close();
  StopAndExpectZero(*server);
}

// A client that reads a 32 MiB file slowly must not make the server hold the
// file: the server reads the next chunk only while the peer keeps up, so its
// memory grows by about its output high watermark (1 MiB) and a chunk, not
// by the file. A server that read the whole file and wrote it at once would
// hold ~28 MiB of it in its output queue (all but what the kernel buffers:
// the client's receive buffer is kept small), far above the bound. Then a
// SIGTERM arrives mid-transfer: the drain lets the download finish, byte for
// byte, before the server exits 0.
TEST(ExamplesTest, FileServerStreamsToSlowReaderInBoundedMemory) {
  TempDir root;
  ASSERT_FALSE(root.path().empty());
  const std::string file = PseudoRandomBytes(42, 32u << 20);
  {
    std::ofstream out(root.path() + "/big", std::ios::binary);
    out.write(file.data(), static_cast<std::streamsize>(file.size()));
    ASSERT_TRUE(out.good());
  }
  std::vector<std::string> prefix;
#if defined(__SANITIZE_ADDRESS__)
  // ASan keeps freed blocks in a quarantine (256 MiB by default), which the
  // chunks streamed would fill: RSS would measure the quarantine, not what
  // the server holds. Shrink it for this server.
  const char* asan = std::getenv("ASAN_OPTIONS");
  prefix = {"/usr/bin/env",
            absl::StrCat("ASAN_OPTIONS=", asan != nullptr ? asan : "",
                         ":quarantine_size_mb=1:thread_local_quarantine_size_kb=64")};
#endif
  Address address;
  auto server =
      StartExample("file-server", &address, {"--root", root.path(), "--workers", "1"}, prefix);
  ASSERT_NE(server, nullptr);
  {
    // Warm up (threads started, allocator arenas in use) before the baseline.
    FileClient warm(address);
    ASSERT_TRUE(
        warm.Send(PutHeader("small", 300000) + PseudoRandomBytes(1, 300000) + "GET small\n"));
    EXPECT_EQ(warm.ReadLine(), "OK 300000");
    std::string status;
    EXPECT_TRUE(warm.ReadGetReply(&status).has_value());
  }
  const int64_t baseline_kib = testing::ResidentKiB(server->pid());
  ASSERT_GT(baseline_kib, 0);

  FileClient client(address, /*receive_buffer=*/64 << 10);
  ASSERT_TRUE(client.connected());
  ASSERT_TRUE(client.Send("GET big\n"));
  ASSERT_EQ(client.ReadLine(), absl::StrCat("OK ", file.size()));
  // Slowly: 64 KiB every 20 ms for about 1.5 s (a few MiB of the 32).
  std::string got;
  int64_t peak_kib = baseline_kib;
  const absl::Time slow_until = absl::Now() + absl::Milliseconds(1500);
  while (absl::Now() < slow_until) {
    std::optional<std::string> some = client.ReadExact(64 << 10);
    ASSERT_TRUE(some.has_value()) << "after " << got.size() << " bytes";
    got += *some;
    peak_kib = std::max(peak_kib, testing::ResidentKiB(server->pid()));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_LT(got.size(), file.size() / 2) << "the reader was not slow enough to test anything";
  const int64_t grown_kib = peak_kib - baseline_kib;
  std::printf(
      "file-server RSS: baseline %lld KiB, peak %lld KiB (+%lld KiB) after %zu of %zu "
      "bytes read\n",
      static_cast<long long>(baseline_kib), static_cast<long long>(peak_kib),
      static_cast<long long>(grown_kib), got.size(), file.size());
  EXPECT_LT(grown_kib, 24 * 1024) << "the server holds the file for a slow reader";

  // The drain waits for the transfer in progress.
  ASSERT_TRUE(server->Signal(SIGTERM).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  std::optional<std::string> rest = client.ReadExact(file.size() - got.size());
  ASSERT_TRUE(rest.has_value()) << "the download was cut after " << got.size() << " bytes";
  got += *rest;
  EXPECT_EQ(Fnv1a64(got), Fnv1a64(file));
  EXPECT_EQ(FirstDifference(file, got), "");
  EXPECT_TRUE(client.WaitForEof());
  client.Close();
  absl::StatusOr<int> code = server->Wait(kTimeout);
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0);
}

// --- tcp-proxy ---------------------------------------------------------------

TEST(ExamplesTest, TcpProxyCarriesEchoLoadToEchoClusterByteForByte) {
  testing::ClusterProcess cluster({"--workers=2"});
  ASSERT_GT(cluster.port(), 0);
  Address proxy;
  auto server = StartExample("tcp-proxy", &proxy, {cluster.address().ToString()});
  ASSERT_NE(server, nullptr);
  // Small pipelined messages, then messages larger than one read, so that
  // a message crosses the tunnel in several chunks: echo-load checks every
  // byte that comes back.
  for (const char* size : {"64", "100000"}) {
    const testing::ProgramResult r = testing::RunProgram(
        {testing::BinPath("echo-load"), "--port", absl::StrCat(proxy.port()), "--connections", "16",
         "--pipeline", "4", "--size", size, "--duration", "2s", "--warmup", "0s", "--json"},
        kTimeout);
    EXPECT_EQ(r.code, 0) << r.output;
    EXPECT_TRUE(absl::StrContains(r.output, "\"ok\":true")) << r.output;
  }
  // A client that sends everything, then shuts down writing, still gets the
  // whole echo: the half-close travels through as a FIN, not as the end.
  const std::string request = PseudoRandomBytes(11, 1 << 20);
  FileClient half(proxy);
  ASSERT_TRUE(half.connected());
  ASSERT_TRUE(half.Send(request));
  ASSERT_TRUE(half.ShutdownWrite());
  std::optional<std::string> echoed = half.ReadExact(request.size());
  ASSERT_TRUE(echoed.has_value());
  EXPECT_EQ(Fnv1a64(*echoed), Fnv1a64(request)) << FirstDifference(request, *echoed);
  EXPECT_TRUE(half.WaitForEof());  // and then the end, once both ways are done
  StopAndExpectZero(*server);
  ASSERT_TRUE(cluster.process().Signal(SIGTERM).ok());
  EXPECT_TRUE(cluster.process().Wait(kTimeout).ok());
}

TEST(ExamplesTest, TcpProxyHoldsAFastClientBackWhileItsBackendDoesNotRead) {
  // The backend: a socket of the test's own that accepts and, for a while,
  // does not read.
  Fd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(listener.valid());
  Address bind_to = *Address::Parse("127.0.0.1:0");
  ASSERT_EQ(::bind(listener.get(), bind_to.sockaddr_ptr(), bind_to.length()), 0);
  ASSERT_EQ(::listen(listener.get(), 4), 0);
  sockaddr_in bound{};
  socklen_t bound_len = sizeof(bound);
  ASSERT_EQ(::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&bound), &bound_len), 0);
  const std::string backend = absl::StrCat("127.0.0.1:", ntohs(bound.sin_port));

  Address proxy;
  auto server = StartExample("tcp-proxy", &proxy, {backend});
  ASSERT_NE(server, nullptr);
  const int64_t rss_before = testing::ResidentKiB(server->pid());
  ASSERT_GT(rss_before, 0);

  // 64 MiB: sixteen times the proxy's output cap (max_output_bytes, 4 MiB),
  // so without backpressure the tunnel would either grow by the whole
  // stream or be cut as a slow consumer.
  constexpr size_t kBytes = 64 << 20;
  const std::string data = PseudoRandomBytes(7, kBytes);
  FileClient client(proxy);
  ASSERT_TRUE(client.connected());
  std::atomic<bool> sent_all{false};
  std::thread sender([&] { sent_all.store(client.Send(data)); });
  Fd peer(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  ASSERT_TRUE(peer.valid());
  const timeval tv = absl::ToTimeval(absl::Seconds(30));
  ::setsockopt(peer.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));

  // Not reading for a while: the client must end up blocked, not the
  // proxy's memory filled.
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  const int64_t rss_held = testing::ResidentKiB(server->pid());
  EXPECT_FALSE(sent_all.load()) << "the client sent everything though nobody read";
  EXPECT_LT(rss_held - rss_before, 16 * 1024)
      << "RSS " << rss_before << " -> " << rss_held << " KiB";
  std::printf("tcp-proxy RSS while held back: %lld -> %lld KiB\n",
              static_cast<long long>(rss_before), static_cast<long long>(rss_held));

  // Now the backend reads everything: every byte, in order.
  std::string got;
  got.reserve(kBytes);
  char buf[256 << 10];
  while (got.size() < kBytes) {
    const ssize_t n = ::recv(peer.get(), buf, sizeof(buf), 0);
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
  }
  sender.join();
  EXPECT_TRUE(sent_all.load());
  ASSERT_EQ(got.size(), kBytes);
  EXPECT_EQ(Fnv1a64(got), Fnv1a64(data)) << FirstDifference(data, got);
  client.Close();
  StopAndExpectZero(*server);
}

}  // namespace
}  // namespace troupe
