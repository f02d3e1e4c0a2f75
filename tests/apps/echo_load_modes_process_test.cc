// echo-load --framing and --churn as a user runs them: against echo-cluster
// --codec lines and length, against raw-epoll-server --codec (the benchmark
// baseline, bench/peers/raw_epoll_server.cc, when it was built), and the
// usage errors of impossible combinations.
#include <signal.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/support/cluster_process.h"
#include "tests/support/subprocess.h"

namespace troupe {
namespace {

using ::troupe::testing::BinPath;
using ::troupe::testing::ClusterProcess;
using ::troupe::testing::ProgramResult;
using ::troupe::testing::Subprocess;

// Generous: these bound a hang, they do not measure anything.
constexpr absl::Duration kTimeout = absl::Seconds(60);

ProgramResult RunEchoLoad(int port, std::vector<std::string> args) {
  args.insert(args.begin(), {BinPath("echo-load"), absl::StrCat("--port=", port), "--threads=1",
                             "--warmup=0s", "--duration=500ms", "--progress-interval=0"});
  return ::troupe::testing::RunProgram(args, kTimeout);
}

TEST(EchoLoadModesProcessTest, FramedAndChurnRunsAgainstEchoClusterCodecsAreClean) {
  for (const std::string codec : {"lines", "length"}) {
    ClusterProcess cluster({"--workers=1", "--codec=" + codec});
    ASSERT_GT(cluster.port(), 0);
    for (const std::vector<std::string>& mode :
         {std::vector<std::string>{"--connections=4", "--pipeline=4"},
          std::vector<std::string>{"--churn", "--connections=4"},
          std::vector<std::string>{"--churn", "--churn-close=reset", "--connections=2"}}) {
      std::vector<std::string> args = {"--framing=" + codec, "--size=64", "--json"};
      args.insert(args.end(), mode.begin(), mode.end());
      const ProgramResult r = RunEchoLoad(cluster.port(), args);
      const std::string what = absl::StrCat(codec, " ", mode[0]);
      EXPECT_EQ(r.code, 0) << what << "\n" << r.output;
      EXPECT_TRUE(absl::StrContains(r.output, "\"errors\":{\"total\":0")) << what << r.output;
      EXPECT_TRUE(absl::StrContains(r.output, "\"framing\":\"" + codec + "\"")) << r.output;
    }
    ASSERT_TRUE(cluster.process().Signal(SIGTERM).ok());
    EXPECT_EQ(cluster.process().Wait(kTimeout).value_or(-1), 0);
  }
}

// Raw pattern bytes hold "\r\n" now and then, which the lines codec turns
// into "\n": raw framing against a lines server is caught, as it must be.
TEST(EchoLoadModesProcessTest, RawBytesAgainstALinesServerFail) {
  ClusterProcess cluster({"--workers=1", "--codec=lines"});
  ASSERT_GT(cluster.port(), 0);
  const ProgramResult r = RunEchoLoad(cluster.port(), {"--size=1000", "--stall-timeout=300ms"});
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, "run failed")) << r.output;
}

TEST(EchoLoadModesProcessTest, RawEpollServerAnswersFramesForFramedAndChurnRuns) {
  const std::string server_path = BinPath("raw-epoll-server");
  if (::access(server_path.c_str(), X_OK) != 0) {
    GTEST_SKIP() << "raw-epoll-server not built (TROUPE_BUILD_BENCH off or no Google Benchmark)";
  }
  for (const std::string codec : {"lines", "length"}) {
    absl::StatusOr<std::unique_ptr<Subprocess>> server =
        Subprocess::Start({server_path, "--port", "0", "--codec", codec});
    ASSERT_TRUE(server.ok()) << server.status();
    // "listening on 127.0.0.1:PORT"
    absl::StatusOr<std::string> line = (*server)->ReadLine(kTimeout);
    ASSERT_TRUE(line.ok()) << line.status();
    int port = 0;
    ASSERT_TRUE(absl::SimpleAtoi(line->substr(line->rfind(':') + 1), &port)) << *line;
    // The smallest frame; and frames longer than the server's 64 KiB reads,
    // which it answers only once their rest came (a line up to its 64 KiB
    // limit).
    const std::vector<std::string> sizes = codec == "lines"
                                               ? std::vector<std::string>{"2", "65000"}
                                               : std::vector<std::string>{"5", "65000", "200000"};
    for (const std::string& size : sizes) {
      const ProgramResult r = RunEchoLoad(
          port, {"--framing=" + codec, "--size=" + size, "--connections=4", "--pipeline=4"});
      EXPECT_EQ(r.code, 0) << codec << " " << size << "\n" << r.output;
    }
    const ProgramResult churn =
        RunEchoLoad(port, {"--framing=" + codec, "--size=100", "--churn", "--connections=4"});
    EXPECT_EQ(churn.code, 0) << codec << " churn\n" << churn.output;
    ASSERT_TRUE((*server)->Signal(SIGTERM).ok());
    EXPECT_EQ((*server)->Wait(kTimeout).value_or(-1), 0);
  }
}

TEST(EchoLoadModesProcessTest, ImpossibleCombinationsAreUsageErrors) {
  const struct {
    std::vector<std::string> args;
    const char* says;
  } cases[] = {
      {{"--framing=lines", "--size=1"}, "lines framing needs a message size of 2 bytes at least"},
      {{"--framing=length", "--size=4"}, "length framing needs a message size of 5 bytes"},
      {{"--framing=line"}, "--framing: unknown framing 'line' (known: raw, lines, length)"},
      {{"--framing=lines", "--messages", "hello"}, "does not apply to a message list"},
      {{"--churn", "--messages", "hello"}, "churn does not apply to a message list"},
      {{"--churn", "--rate=100"}, "no fixed rate"},
      {{"--churn", "--reconnect"}, "reconnect does not apply"},
      {{"--churn", "--tls", "--tls-insecure"}, "churn does not speak TLS"},
      {{"--churn", "--pipeline=2"}, "pipeline must be 1, got 2"},
      {{"--churn-close=reset"}, "needs churn"},
      {{"--churn", "--churn-close=rst"}, "--churn-close must be fin or reset, got 'rst'"},
  };
  for (const auto& c : cases) {
    std::vector<std::string> args = {BinPath("echo-load")};
    args.insert(args.end(), c.args.begin(), c.args.end());
    const ProgramResult r = ::troupe::testing::RunProgram(args, kTimeout);
    EXPECT_EQ(r.code, 2) << c.args[0] << "\n" << r.output;
    EXPECT_TRUE(absl::StrContains(r.output, c.says)) << r.output;
  }
}

}  // namespace
}  // namespace troupe
