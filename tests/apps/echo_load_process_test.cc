// Runs the echo-load program as a user would, against the standalone
// lossy-echo-server fixture (lossy and corrupting modes), and checks its exit
// status and output.

#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <memory>
#include <ostream>
#include <sstream>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/base/fd.h"
#include "core/net/address.h"
#include "core/net/socket.h"
#include "gtest/gtest.h"
#include "tests/support/subprocess.h"

namespace troupe {
namespace {

using ::troupe::testing::BinPath;
using ::troupe::testing::Subprocess;

// Generous: these bound a hang, they do not measure anything.
constexpr absl::Duration kTimeout = absl::Seconds(60);

using Result = ::troupe::testing::ProgramResult;

Result RunEchoLoad(std::vector<std::string> args) {
  args.insert(args.begin(), BinPath("echo-load"));
  return ::troupe::testing::RunProgram(args, kTimeout);
}

// Runs echo-load with stdin, stdout and stderr on a pseudo-terminal in raw
// mode (so the terminal adds no '\r' of its own), as a user at a terminal
// would. Returns everything written to the terminal.
Result RunEchoLoadOnTerminal(std::vector<std::string> args) {
  args.insert(args.begin(), BinPath("echo-load"));
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  termios raw{};
  ::cfmakeraw(&raw);
  int master = -1;
  const pid_t pid = ::forkpty(&master, nullptr, &raw, nullptr);
  Result result;
  if (pid < 0) {
    ADD_FAILURE() << "forkpty: " << std::strerror(errno);
    return result;
  }
  if (pid == 0) {
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  Fd terminal(master);
  const absl::Time deadline = absl::Now() + kTimeout;
  char buffer[4096];
  for (;;) {
    pollfd p{terminal.get(), POLLIN, 0};
    const int timeout_ms = static_cast<int>(absl::ToInt64Milliseconds(deadline - absl::Now()));
    if (timeout_ms <= 0 || ::poll(&p, 1, timeout_ms) == 0) {
      ADD_FAILURE() << "echo-load on a terminal did not finish";
      ::kill(pid, SIGKILL);
      break;
    }
    const ssize_t n = ::read(terminal.get(), buffer, sizeof(buffer));
    if (n > 0) {
      result.output.append(buffer, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    break;  // EIO: the child closed the terminal's last slave descriptor.
  }
  int status = 0;
  if (::waitpid(pid, &status, 0) == pid && WIFEXITED(status)) {
    result.code = WEXITSTATUS(status);
  }
  return result;
}

// Runs echo-load with stdout and stderr on separate pipes.
struct SplitResult {
  int code = -1000;
  std::string out;
  std::string err;
};

SplitResult RunEchoLoadSplit(std::vector<std::string> args) {
  args.insert(args.begin(), BinPath("echo-load"));
  absl::StatusOr<std::unique_ptr<Subprocess>> p = Subprocess::Start(args);
  SplitResult result;
  if (!p.ok()) {
    ADD_FAILURE() << p.status();
    return result;
  }
  absl::StatusOr<std::string> out = (*p)->ReadAllStdout(kTimeout);
  absl::StatusOr<std::string> err = (*p)->ReadAllStderr(kTimeout);
  absl::StatusOr<int> code = (*p)->Wait(kTimeout);
  EXPECT_TRUE(out.ok() && err.ok() && code.ok());
  if (out.ok()) result.out = *out;
  if (err.ok()) result.err = *err;
  if (code.ok()) result.code = *code;
  return result;
}

// A fresh directory under $TMPDIR (or /tmp), removed with its files.
class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string pattern = absl::StrCat(base != nullptr ? base : "/tmp", "/echo-load-test-XXXXXX");
    if (::mkdtemp(pattern.data()) != nullptr) path_ = pattern;
  }
  ~TempDir() {
    for (const std::string& f : files_) ::unlink(f.c_str());
    if (!path_.empty()) ::rmdir(path_.c_str());
  }
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) {
    files_.push_back(absl::StrCat(path_, "/", name));
    return files_.back();
  }

 private:
  std::string path_;
  std::vector<std::string> files_;
};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Starts a fixture server (`argv`) and reads the port from its first line.
class FixtureServer {
 public:
  explicit FixtureServer(const std::vector<std::string>& argv) {
    absl::StatusOr<std::unique_ptr<Subprocess>> p = Subprocess::Start(argv);
    if (!p.ok()) {
      ADD_FAILURE() << p.status();
      return;
    }
    process_ = *std::move(p);
    absl::StatusOr<std::string> line = process_->ReadLine(kTimeout);
    if (!line.ok()) {
      ADD_FAILURE() << line.status();
      return;
    }
    constexpr absl::string_view kPrefix = "listening on 127.0.0.1:";
    uint32_t port = 0;
    if (!absl::StartsWith(*line, kPrefix) ||
        !absl::SimpleAtoi(line->substr(kPrefix.size()), &port)) {
      ADD_FAILURE() << "unexpected first line: " << *line;
      return;
    }
    port_ = static_cast<uint16_t>(port);
  }

  uint16_t port() const { return port_; }

  // SIGTERM must make the fixture exit 0.
  void Stop() {
    ASSERT_NE(process_, nullptr);
    ASSERT_TRUE(process_->Signal(SIGTERM).ok());
    absl::StatusOr<int> code = process_->Wait(kTimeout);
    ASSERT_TRUE(code.ok()) << code.status();
    EXPECT_EQ(*code, 0);
  }

 private:
  std::unique_ptr<Subprocess> process_;  // Killed and reaped if still alive.
  uint16_t port_ = 0;
};

// lossy-echo-server --mode corrupt-after: flips the byte at `corrupt_after`
// of each connection.
class CorruptServer : public FixtureServer {
 public:
  explicit CorruptServer(uint64_t corrupt_after)
      : FixtureServer({BinPath("lossy-echo-server"), "--mode", "corrupt-after",
                       absl::StrCat(corrupt_after)}) {}
};

// lossy-echo-server in `mode`, e.g. {"drop-after", "1000"}.
class LossyServer : public FixtureServer {
 public:
  explicit LossyServer(const std::vector<std::string>& mode) : FixtureServer(WithMode(mode)) {}

 private:
  static std::vector<std::string> WithMode(const std::vector<std::string>& mode) {
    std::vector<std::string> argv = {BinPath("lossy-echo-server"), "--mode"};
    argv.insert(argv.end(), mode.begin(), mode.end());
    return argv;
  }
};

// The count under "errors" named `key` in a JSON report in `output`; -1 when
// absent.
int64_t JsonErrorCount(const std::string& output, absl::string_view key) {
  const size_t errors = output.find("\"errors\":{");
  if (errors == std::string::npos) return -1;
  const std::string quoted = absl::StrCat("\"", key, "\":");
  const size_t at = output.find(quoted, errors);
  if (at == std::string::npos) return -1;
  const size_t begin = at + quoted.size();
  const size_t end = output.find_first_not_of("0123456789", begin);
  int64_t n = -1;
  if (!absl::SimpleAtoi(output.substr(begin, end - begin), &n)) return -1;
  return n;
}

TEST(EchoLoadProcessTest, MismatchFailsTheRunWithExitOne) {
  CorruptServer server(/*corrupt_after=*/500);
  ASSERT_NE(server.port(), 0);
  const Result r = RunEchoLoad({"--port", absl::StrCat(server.port()), "--connections", "2",
                                "--duration", "1s", "--warmup", "0s"});
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, "echo mismatch at stream offset 500")) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, "echo-load: run failed")) << r.output;
  server.Stop();
}

TEST(EchoLoadProcessTest, CleanRunExitsZeroAndPrintsJson) {
  CorruptServer server(/*corrupt_after=*/uint64_t{1} << 62);  // Never reached.
  ASSERT_NE(server.port(), 0);
  const Result r = RunEchoLoad({"--port", absl::StrCat(server.port()), "--connections", "3",
                                "--pipeline", "4", "--duration", "1s", "--warmup", "0s", "--json"});
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(absl::StartsWith(r.output, "{\"target\":\"127.0.0.1:")) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, "\"ok\":true")) << r.output;
  server.Stop();
}

TEST(EchoLoadProcessTest, ZeroSizeIsAUsageError) {
  const Result r = RunEchoLoad({"--size", "0"});
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_TRUE(absl::StartsWith(r.output, "echo-load: ")) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, "size")) << r.output;
}

TEST(EchoLoadProcessTest, BadFlagsAreUsageErrors) {
  EXPECT_EQ(RunEchoLoad({"--no-such-flag"}).code, 2);
  EXPECT_EQ(RunEchoLoad({"--connections", "many"}).code, 2);
  EXPECT_EQ(RunEchoLoad({"--connections", "0"}).code, 2);
  EXPECT_EQ(RunEchoLoad({"--duration", "10"}).code, 2);  // Needs a unit.
  EXPECT_EQ(RunEchoLoad({"stray-argument"}).code, 2);
  EXPECT_EQ(RunEchoLoad({"--host="}).code, 2);
  EXPECT_EQ(RunEchoLoad({"--port", "70000"}).code, 2);
}

TEST(EchoLoadProcessTest, RefusedTargetExitsOneNamingIt) {
  // Bound but not listening: connects are refused while we hold the port.
  Fd holder(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(holder.valid());
  const Address any = *Address::FromHostPort("127.0.0.1", 0);
  ASSERT_EQ(::bind(holder.get(), any.sockaddr_ptr(), any.length()), 0);
  const uint16_t port = LocalAddress(holder.get())->port();
  const Result r =
      RunEchoLoad({"--port", absl::StrCat(port), "--connections", "2", "--duration", "1s"});
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, absl::StrCat("127.0.0.1:", port))) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, "refused")) << r.output;
}

// A server that never corrupts anything: a plain echo server.
constexpr uint64_t kNever = uint64_t{1} << 62;

TEST(EchoLoadProcessTest, ProgressLineIsRedrawnOnATerminal) {
  CorruptServer server(kNever);
  ASSERT_NE(server.port(), 0);
  const Result r = RunEchoLoadOnTerminal({"--port", absl::StrCat(server.port()), "--connections",
                                          "2", "--duration", "1500ms", "--warmup", "0s"});
  EXPECT_EQ(r.code, 0) << r.output;
  // "\r0.5s/1.5s  12345 msg/s  p99 ...\033[K", redrawn in place. Which
  // tick comes first depends on the machine's load (a stalled second one
  // printed "1.0s/1.5s" first), so the time is not pinned.
  const size_t line = r.output.find("s/1.5s  ");
  ASSERT_NE(line, std::string::npos) << r.output;
  const size_t start = r.output.rfind('\r', line);
  ASSERT_NE(start, std::string::npos) << r.output;
  EXPECT_TRUE(absl::ascii_isdigit(static_cast<unsigned char>(r.output[start + 1]))) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, " msg/s  p99 ")) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, "\033[K")) << r.output;
  // The line is wiped before the report.
  EXPECT_TRUE(absl::StrContains(r.output, "\r\033[Ktarget ")) << r.output;
  EXPECT_FALSE(absl::StrContains(r.output, "echo-load: progress")) << r.output;
  server.Stop();
}

TEST(EchoLoadProcessTest, WithoutATerminalProgressIsPlainLines) {
  CorruptServer server(kNever);
  ASSERT_NE(server.port(), 0);
  const SplitResult r =
      RunEchoLoadSplit({"--port", absl::StrCat(server.port()), "--connections", "2", "--duration",
                        "1s", "--warmup", "0s", "--progress-interval", "200ms", "--json"});
  EXPECT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_EQ(r.out.find('\r'), std::string::npos) << r.out;
  EXPECT_EQ(r.err.find('\r'), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find('\033'), std::string::npos) << r.err;
  EXPECT_TRUE(absl::StartsWith(r.err, "echo-load: progress ")) << r.err;
  for (absl::string_view line : absl::StrSplit(r.err, '\n', absl::SkipEmpty())) {
    EXPECT_TRUE(absl::StartsWith(line, "echo-load: progress ")) << line;
  }
  // stdout holds the report alone.
  EXPECT_TRUE(absl::StartsWith(r.out, "{\"target\":")) << r.out;
  EXPECT_EQ(r.out.find('\n'), r.out.size() - 1) << r.out;
}

TEST(EchoLoadProcessTest, ProgressIntervalZeroIsSilent) {
  CorruptServer server(kNever);
  ASSERT_NE(server.port(), 0);
  const SplitResult r =
      RunEchoLoadSplit({"--port", absl::StrCat(server.port()), "--connections", "2", "--duration",
                        "600ms", "--warmup", "0s", "--progress-interval", "0"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.err, "");
}

TEST(EchoLoadProcessTest, CsvIsAHeaderAndOneValueLine) {
  CorruptServer server(kNever);
  ASSERT_NE(server.port(), 0);
  const SplitResult r = RunEchoLoadSplit({"--port", absl::StrCat(server.port()), "--connections",
                                          "2", "--duration", "500ms", "--warmup", "0s", "--csv"});
  EXPECT_EQ(r.code, 0) << r.err;
  const std::vector<std::string> lines = absl::StrSplit(r.out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 2u) << r.out;
  const std::vector<std::string> names = absl::StrSplit(lines[0], ',');
  const std::vector<std::string> values = absl::StrSplit(lines[1], ',');
  ASSERT_EQ(names.size(), values.size()) << r.out;
  EXPECT_EQ(names[0], "target");
  for (size_t i = 0; i < names.size(); ++i) {
    if (names[i] == "ok") {
      EXPECT_EQ(values[i], "true");
    } else if (names[i] == "connections_established") {
      EXPECT_EQ(values[i], "2");
    } else if (names[i] == "mode") {
      EXPECT_EQ(values[i], "closed");
    }
  }
}

TEST(EchoLoadProcessTest, HistogramOutWritesThePercentileDistribution) {
  CorruptServer server(kNever);
  ASSERT_NE(server.port(), 0);
  TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  const std::string file = dir.File("latency.hgrm");
  const Result r = RunEchoLoad({"--port", absl::StrCat(server.port()), "--connections", "2",
                                "--duration", "500ms", "--warmup", "0s", "--histogram-out", file});
  EXPECT_EQ(r.code, 0) << r.output;
  const std::string text = ReadFile(file);
  EXPECT_TRUE(
      absl::StrContains(text, "       Value     Percentile TotalCount 1/(1-Percentile)\n\n"))
      << text;
  EXPECT_TRUE(absl::StrContains(text, " 1.000000000000 ")) << text;
  EXPECT_TRUE(absl::StrContains(text, "#[Mean    = ")) << text;
  server.Stop();
}

TEST(EchoLoadProcessTest, UnwritableHistogramOutExitsOneNamingTheFile) {
  const Result r = RunEchoLoad({"--port", "9", "--histogram-out", "/nonexistent-dir/latency.hgrm"});
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, "/nonexistent-dir/latency.hgrm")) << r.output;
}

TEST(EchoLoadProcessTest, MessagesAreSentOnceEachAndVerified) {
  CorruptServer server(kNever);
  ASSERT_NE(server.port(), 0);
  const Result r =
      RunEchoLoad({"--port", absl::StrCat(server.port()), "--connections", "3", "--messages", "--",
                   "Message 1 from client.", "-starts with a dash"});
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, "2 messages of 41 bytes in all")) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, "messages      6 ")) << r.output;
  server.Stop();
}

TEST(EchoLoadProcessTest, MessagesModeCatchesACorruptEcho) {
  CorruptServer server(/*corrupt_after=*/30);
  ASSERT_NE(server.port(), 0);
  const Result r = RunEchoLoad({"--port", absl::StrCat(server.port()), "--connections", "1",
                                "--messages", "Message 1 from client.", "Message 2 from client."});
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, "echo mismatch at stream offset 30")) << r.output;
  server.Stop();
}

TEST(EchoLoadProcessTest, FixedRateRunReportsOpenLoop) {
  CorruptServer server(kNever);
  ASSERT_NE(server.port(), 0);
  const Result r = RunEchoLoad({"--port", absl::StrCat(server.port()), "--connections", "4",
                                "--duration", "1s", "--warmup", "0s", "--rate", "500", "--json"});
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, "\"mode\":\"open\",\"rate\":500.0")) << r.output;
  server.Stop();
}

TEST(EchoLoadProcessTest, NewFlagsCheckTheirUsage) {
  EXPECT_EQ(RunEchoLoad({"--json", "--csv"}).code, 2);
  EXPECT_EQ(RunEchoLoad({"--messages"}).code, 2);      // No message given.
  EXPECT_EQ(RunEchoLoad({"--messages", ""}).code, 2);  // An empty one.
  EXPECT_EQ(RunEchoLoad({"--rate", "-5"}).code, 2);
  EXPECT_EQ(RunEchoLoad({"--rate", "fast"}).code, 2);
  EXPECT_EQ(RunEchoLoad({"--messages", "--rate", "10", "a"}).code, 2);
  EXPECT_EQ(RunEchoLoad({"--progress-interval", "-1s"}).code, 2);
  EXPECT_EQ(RunEchoLoad({"--source-addresses", "-1"}).code, 2);
  EXPECT_EQ(RunEchoLoad({"--stall-timeout", "-1s"}).code, 2);
  EXPECT_EQ(RunEchoLoad({"--stall-timeout", "-inf"}).code, 2);
  EXPECT_EQ(RunEchoLoad({"--stall-timeout", "soon"}).code, 2);
  EXPECT_EQ(RunEchoLoad({"--stall-timeout", "300"}).code, 2);  // Needs a unit.
  const Result stall = RunEchoLoad({"--stall-timeout", "-1s"});
  EXPECT_TRUE(absl::StrContains(stall.output, "--stall-timeout")) << stall.output;
  const Result both = RunEchoLoad({"--json", "--csv"});
  EXPECT_TRUE(absl::StrContains(both.output, "mutually exclusive")) << both.output;
}

// The traffic shapes every lossy mode must be caught in.
struct Traffic {
  const char* name;
  std::vector<std::string> flags;
};

// Names, not bytes, when GoogleTest prints a failing parameter.
void PrintTo(const Traffic& t, std::ostream* os) { *os << t.name; }

const Traffic kClosedLoop{"ClosedLoop", {"--pipeline", "1"}};
const Traffic kPipelined{"Pipelined", {"--pipeline", "8"}};
const Traffic kOpenLoop{"OpenLoop", {"--rate", "2000"}};

// One lossy server mode, and what echo-load must make of it.
struct Loss {
  const char* name;
  std::vector<std::string> mode;  // lossy-echo-server --mode ...
  // The stall check's setting, and the kind that must count every
  // connection: with the check, the run catches the loss as it happens;
  // without it, the drain at the end still does.
  const char* stall_timeout;
  const char* kind;  // The key under "errors" in the JSON report.
  const char* text;  // How the kind reads in the error summary.
  // The first error message for connection 0 starts with this.
  const char* message;
  bool no_messages;  // Nothing at all came back.
};

void PrintTo(const Loss& l, std::ostream* os) { *os << l.name; }

constexpr int kLossConnections = 2;
constexpr const char* kShortStall = "300ms";

const Loss kLosses[] = {
    {"DropAfterIsStalled",
     {"drop-after", "1000"},
     kShortStall,
     "stalled",
     "stalled 2",
     "connection 0 stalled: no byte received in 300ms with 1000 of ",
     false},
    {"DropAfterIsIncompleteWithoutStallCheck",
     {"drop-after", "1000"},
     "0",
     "incomplete",
     "incomplete 2",
     "connection 0 incomplete: 1000 of ",
     false},
    {"NeverIsStalled",
     {"never"},
     kShortStall,
     "stalled",
     "stalled 2",
     "connection 0 stalled: no byte received in 300ms with 0 of ",
     true},
    {"NeverIsIncompleteWithoutStallCheck",
     {"never"},
     "0",
     "incomplete",
     "incomplete 2",
     "connection 0 incomplete: 0 of ",
     true},
    {"StallAfterIsStalled",
     {"stall-after", "1000"},
     kShortStall,
     "stalled",
     "stalled 2",
     "connection 0 stalled: no byte received in 300ms with 1000 of ",
     false},
    {"StallAfterIsIncompleteWithoutStallCheck",
     {"stall-after", "1000"},
     "0",
     "incomplete",
     "incomplete 2",
     "connection 0 incomplete: 1000 of ",
     false},
};

class EchoLoadLossyServerTest : public ::testing::TestWithParam<std::tuple<Loss, Traffic>> {};

TEST_P(EchoLoadLossyServerTest, FailsTheRunNamingTheKind) {
  const auto& [loss, traffic] = GetParam();
  LossyServer server(loss.mode);
  ASSERT_NE(server.port(), 0);
  std::vector<std::string> args = {"--port",          absl::StrCat(server.port()),
                                   "--connections",   absl::StrCat(kLossConnections),
                                   "--duration",      "1s",
                                   "--warmup",        "0s",
                                   "--stall-timeout", loss.stall_timeout,
                                   "--json"};
  args.insert(args.end(), traffic.flags.begin(), traffic.flags.end());
  const Result r = RunEchoLoad(args);
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, "\"ok\":false")) << r.output;
  // Every connection, each counted once, as this kind and no other.
  for (const char* kind :
       {"stalled", "incomplete", "lost", "verification", "connect", "timed_out"}) {
    EXPECT_EQ(JsonErrorCount(r.output, kind),
              kind == std::string_view(loss.kind) ? kLossConnections : 0)
        << kind << " in " << r.output;
  }
  EXPECT_EQ(JsonErrorCount(r.output, "no_messages"), loss.no_messages ? 1 : 0) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, loss.message)) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, "echo-load: run failed")) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, loss.text)) << r.output;
  if (loss.no_messages) {
    EXPECT_TRUE(absl::StrContains(r.output, "no messages completed")) << r.output;
  }
  server.Stop();
}

INSTANTIATE_TEST_SUITE_P(
    EveryMode, EchoLoadLossyServerTest,
    ::testing::Combine(::testing::ValuesIn(kLosses),
                       ::testing::Values(kClosedLoop, kPipelined, kOpenLoop)),
    // Not `info`: the macro's own function has a parameter of that name.
    [](const ::testing::TestParamInfo<EchoLoadLossyServerTest::ParamType>& test) {
      return absl::StrCat(std::get<0>(test.param).name, "In", std::get<1>(test.param).name);
    });

// The control: the same fixture and flags, echoing correctly, pass. Its
// stall bound is longer: on a loaded 2-core CI machine (the sanitizer trees)
// a correct echo was once 300 ms late, and the control must not flake.
class EchoLoadCorrectEchoTest : public ::testing::TestWithParam<Traffic> {};

TEST_P(EchoLoadCorrectEchoTest, ExitsZero) {
  LossyServer server({"echo"});
  ASSERT_NE(server.port(), 0);
  std::vector<std::string> args = {"--port",          absl::StrCat(server.port()),
                                   "--connections",   absl::StrCat(kLossConnections),
                                   "--duration",      "1s",
                                   "--warmup",        "0s",
                                   "--stall-timeout", "3s",
                                   "--json"};
  args.insert(args.end(), GetParam().flags.begin(), GetParam().flags.end());
  const Result r = RunEchoLoad(args);
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, "\"ok\":true")) << r.output;
  EXPECT_EQ(JsonErrorCount(r.output, "total"), 0) << r.output;
  server.Stop();
}

INSTANTIATE_TEST_SUITE_P(EveryMode, EchoLoadCorrectEchoTest,
                         ::testing::Values(kClosedLoop, kPipelined, kOpenLoop),
                         [](const ::testing::TestParamInfo<Traffic>& test) {
                           return std::string(test.param.name);
                         });

TEST(EchoLoadProcessTest, InfiniteStallTimeoutTurnsTheCheckOff) {
  LossyServer server({"echo"});
  ASSERT_NE(server.port(), 0);
  const Result r = RunEchoLoad({"--port", absl::StrCat(server.port()), "--connections", "2",
                                "--duration", "500ms", "--warmup", "0s", "--stall-timeout", "inf"});
  EXPECT_EQ(r.code, 0) << r.output;
  server.Stop();
}

TEST(EchoLoadProcessTest, MessagesModeFailsWhenNothingIsEchoed) {
  LossyServer server({"never"});
  ASSERT_NE(server.port(), 0);
  const Result r =
      RunEchoLoad({"--port", absl::StrCat(server.port()), "--connections", "2", "--stall-timeout",
                   kShortStall, "--timeout", "5s", "--messages", "hello", "world"});
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, "messages      0 ")) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, "stalled 2, no messages completed")) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, "no message of the script was echoed completely"))
      << r.output;
  server.Stop();
}

TEST(EchoLoadProcessTest, MessagesModeTimeoutIsNotAlsoIncomplete) {
  LossyServer server({"never"});
  ASSERT_NE(server.port(), 0);
  const Result r =
      RunEchoLoad({"--port", absl::StrCat(server.port()), "--connections", "2", "--stall-timeout",
                   "0", "--timeout", "300ms", "--json", "--messages", "hello"});
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_EQ(JsonErrorCount(r.output, "timed_out"), 2) << r.output;
  EXPECT_EQ(JsonErrorCount(r.output, "incomplete"), 0) << r.output;
  EXPECT_EQ(JsonErrorCount(r.output, "no_messages"), 1) << r.output;
  EXPECT_EQ(JsonErrorCount(r.output, "total"), 3) << r.output;
  server.Stop();
}

// A top-level count of a JSON report in `output`, e.g. "reconnections";
// -1 when absent.
int64_t JsonTopLevelCount(const std::string& output, absl::string_view key) {
  const std::string quoted = absl::StrCat(",\"", key, "\":");
  const size_t at = output.find(quoted);
  if (at == std::string::npos) return -1;
  const size_t begin = at + quoted.size();
  const size_t end = output.find_first_not_of("0123456789", begin);
  int64_t n = -1;
  if (!absl::SimpleAtoi(output.substr(begin, end - begin), &n)) return -1;
  return n;
}

// Each connection closed by the server after 20,000 bytes: many times a
// second.
const std::vector<std::string> kFinAfter = {"fin-after", "20000"};

TEST(EchoLoadProcessTest, ReconnectKeepsGoingAcrossCleanCloses) {
  LossyServer server(kFinAfter);
  ASSERT_NE(server.port(), 0);
  const SplitResult r = RunEchoLoadSplit({"--port", absl::StrCat(server.port()), "--connections",
                                          "2", "--duration", "1s", "--warmup", "0s", "--reconnect",
                                          "--progress-interval", "200ms", "--json"});
  EXPECT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_TRUE(absl::StrContains(r.out, "\"ok\":true")) << r.out;
  EXPECT_TRUE(absl::StrContains(r.out, ",\"reconnect\":true,")) << r.out;
  EXPECT_GT(JsonTopLevelCount(r.out, "reconnections"), 0) << r.out;
  EXPECT_EQ(JsonTopLevelCount(r.out, "down"), 0) << r.out;
  EXPECT_EQ(JsonErrorCount(r.out, "total"), 0) << r.out;
  EXPECT_TRUE(absl::StrContains(r.err, "  reconnects ")) << r.err;
  server.Stop();
}

TEST(EchoLoadProcessTest, WithoutReconnectACleanCloseFailsAsLost) {
  LossyServer server(kFinAfter);
  ASSERT_NE(server.port(), 0);
  const Result r = RunEchoLoad({"--port", absl::StrCat(server.port()), "--connections", "2",
                                "--duration", "1s", "--warmup", "0s", "--json"});
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_EQ(JsonErrorCount(r.output, "lost"), 2) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, ",\"reconnect\":false,")) << r.output;
  EXPECT_EQ(JsonTopLevelCount(r.output, "reconnections"), 0) << r.output;
  server.Stop();
}

TEST(EchoLoadProcessTest, ReconnectStillFailsOnResets) {
  LossyServer server({"reset-after", "20000"});
  ASSERT_NE(server.port(), 0);
  const Result r = RunEchoLoad({"--port", absl::StrCat(server.port()), "--connections", "2",
                                "--duration", "1s", "--warmup", "0s", "--reconnect", "--json"});
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_GT(JsonErrorCount(r.output, "lost"), 2) << r.output;
  EXPECT_GT(JsonTopLevelCount(r.output, "reconnections"), 0) << r.output;
  EXPECT_EQ(JsonErrorCount(r.output, "verification"), 0) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, "echo-load: run failed")) << r.output;
  server.Stop();
}

TEST(EchoLoadProcessTest, ReconnectWithMessagesIsAUsageError) {
  const Result r = RunEchoLoad({"--reconnect", "--messages", "hello"});
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_TRUE(absl::StartsWith(r.output, "echo-load: --reconnect")) << r.output;
}

TEST(EchoLoadProcessTest, FindRateChecksItsUsage) {
  const auto usage = [](std::vector<std::string> args, absl::string_view says) {
    const Result r = RunEchoLoad(std::move(args));
    EXPECT_EQ(r.code, 2) << r.output;
    EXPECT_TRUE(absl::StartsWith(r.output, "echo-load: ")) << r.output;
    EXPECT_TRUE(absl::StrContains(r.output, says)) << r.output;
  };
  usage({"--find-rate"}, "needs a positive --p99 bound");
  usage({"--find-rate", "--p99", "0s"}, "needs a positive --p99 bound");
  usage({"--find-rate", "--p99=-2ms"}, "needs a positive --p99 bound");
  usage({"--find-rate", "--p99", "2ms", "--rate", "1000"}, "does not take --rate");
  usage({"--find-rate", "--p99=500us", "--messages", "a"}, "does not apply to --messages");
  usage({"--find-rate", "--p99", "2ms", "--max-steps", "0"}, "--max-steps");
  usage({"--p99", "2ms"}, "need --find-rate");
  usage({"--max-steps", "3"}, "need --find-rate");
  EXPECT_EQ(RunEchoLoad({"--find-rate", "--p99", "2"}).code, 2);  // Needs a unit.
}

TEST(EchoLoadProcessTest, FindRateExitsOneWhenNoRateMeetsTheBound) {
  CorruptServer server(kNever);
  ASSERT_NE(server.port(), 0);
  // No loopback echo comes back within a nanosecond.
  const Result r = RunEchoLoad({"--port", absl::StrCat(server.port()), "--connections", "2",
                                "--find-rate", "--p99", "1ns", "--step-duration", "200ms",
                                "--max-steps", "2", "--warmup", "0s"});
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, "echo-load: find-rate probe (closed loop): "))
      << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, "echo-load: find-rate step 2/2: ")) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, "echo-load: find-rate: no rate kept p99 within 1ns"))
      << r.output;
  server.Stop();
}

TEST(EchoLoadProcessTest, FindRateReportsTheRateAsJson) {
  CorruptServer server(kNever);
  ASSERT_NE(server.port(), 0);
  // Eight halvings reach rates a client keeps up with even on a loaded
  // machine, where a step the client fell behind on (send lag: its thread
  // waited for a core) counts as a miss.
  const SplitResult r = RunEchoLoadSplit({"--port", absl::StrCat(server.port()), "--connections",
                                          "2", "--find-rate", "--p99=1s", "--step-duration",
                                          "200ms", "--max-steps", "8", "--warmup", "0s", "--json"});
  EXPECT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_TRUE(absl::StartsWith(r.out, "{\"target\":\"127.0.0.1:")) << r.out;
  EXPECT_TRUE(absl::StrContains(r.out, "\"find_rate\":{\"p99_bound_us\":1000000.0,\"found\":true,"))
      << r.out;
  EXPECT_TRUE(absl::StrContains(r.out, "\"verdict\":\"within\",")) << r.out;
  server.Stop();
}

}  // namespace
}  // namespace troupe
