// Runs the echo-load program as a user would, against the standalone
// corrupt-echo-server fixture, and checks its exit status and output.

#include <signal.h>
#include <sys/socket.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "core/address.h"
#include "core/fd.h"
#include "core/socket.h"
#include "gtest/gtest.h"
#include "tests/support/subprocess.h"

namespace troupe {
namespace {

using ::troupe::testing::BinPath;
using ::troupe::testing::Subprocess;

// Generous: these bound a hang, they do not measure anything.
constexpr absl::Duration kTimeout = absl::Seconds(60);

struct Result {
  int code = -1000;
  std::string output;  // stdout and stderr, merged.
};

Result RunEchoLoad(std::vector<std::string> args) {
  args.insert(args.begin(), BinPath("echo-load"));
  absl::StatusOr<std::unique_ptr<Subprocess>> p =
      Subprocess::Start(args, Subprocess::Stderr::kMergeIntoStdout);
  Result result;
  if (!p.ok()) {
    ADD_FAILURE() << p.status();
    return result;
  }
  absl::StatusOr<std::string> output = (*p)->ReadAllStdout(kTimeout);
  EXPECT_TRUE(output.ok()) << output.status();
  absl::StatusOr<int> code = (*p)->Wait(kTimeout);
  EXPECT_TRUE(code.ok()) << code.status();
  if (output.ok()) result.output = *output;
  if (code.ok()) result.code = *code;
  return result;
}

// Starts the fixture and reads the port from its first line.
class CorruptServer {
 public:
  explicit CorruptServer(uint64_t corrupt_after) {
    absl::StatusOr<std::unique_ptr<Subprocess>> p =
        Subprocess::Start({BinPath("corrupt-echo-server"), "--corrupt-after",
                           absl::StrCat(corrupt_after)});
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

TEST(EchoLoadProcessTest, MismatchFailsTheRunWithExitOne) {
  CorruptServer server(/*corrupt_after=*/500);
  ASSERT_NE(server.port(), 0);
  const Result r =
      RunEchoLoad({"--port", absl::StrCat(server.port()), "--connections", "2",
                   "--duration", "1s", "--warmup", "0s"});
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, "echo mismatch at stream offset 500"))
      << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, "echo-load: run failed")) << r.output;
  server.Stop();
}

TEST(EchoLoadProcessTest, CleanRunExitsZeroAndPrintsJson) {
  CorruptServer server(/*corrupt_after=*/uint64_t{1} << 62);  // Never reached.
  ASSERT_NE(server.port(), 0);
  const Result r = RunEchoLoad(
      {"--port", absl::StrCat(server.port()), "--connections", "3",
       "--pipeline", "4", "--duration", "1s", "--warmup", "0s", "--json"});
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(absl::StartsWith(r.output, "{\"target\":\"127.0.0.1:"))
      << r.output;
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
  const Result r = RunEchoLoad(
      {"--port", absl::StrCat(port), "--connections", "2", "--duration", "1s"});
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, absl::StrCat("127.0.0.1:", port)))
      << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, "refused")) << r.output;
}

}  // namespace
}  // namespace troupe
