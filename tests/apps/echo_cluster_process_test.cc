// Runs build/bin/echo-cluster as a user would: start, read the port from its
// first line, load it with build/bin/echo-load, stop it with SIGTERM; plus
// its usage and runtime errors and exit statuses.
#include <signal.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/support/cluster_process.h"
#include "tests/support/line_client.h"
#include "tests/support/subprocess.h"

namespace troupe {
namespace {

using ::troupe::testing::BinPath;
using ::troupe::testing::LineClient;
using ::troupe::testing::Subprocess;

constexpr absl::Duration kTimeout = absl::Seconds(60);

using Result = ::troupe::testing::ProgramResult;
using ::troupe::testing::RunProgram;

using Cluster = ::troupe::testing::ClusterProcess;

TEST(EchoClusterProcessTest, ServesEchoLoadWithZeroErrorsAndStopsOnSigterm) {
  Cluster cluster({"--workers=2"});
  ASSERT_GT(cluster.port(), 0);
  EXPECT_TRUE(absl::StrContains(cluster.first_line(), "with 2 workers")) << cluster.first_line();
  Result load =
      RunProgram({BinPath("echo-load"), absl::StrCat("--port=", cluster.port()), "--connections=20",
                  "--pipeline=4", "--size=512", "--duration=2s", "--warmup=0s", "--json"});
  EXPECT_EQ(load.code, 0) << load.output;
  EXPECT_TRUE(absl::StrContains(load.output, "\"verification\":0")) << load.output;
  EXPECT_TRUE(absl::StrContains(load.output, "\"established\":20")) << load.output;
  EXPECT_FALSE(absl::StrContains(load.output, "\"messages\":0,")) << load.output;

  ASSERT_TRUE(cluster.process().Signal(SIGTERM).ok());
  absl::StatusOr<int> code = cluster.process().Wait(kTimeout);
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0);
}

// echo-load's stall check, drain and no-messages rule must not fail a
// correct server, in any traffic mode, even with a short stall timeout.
TEST(EchoClusterProcessTest, EchoLoadPassesEveryModeWithAShortStallTimeout) {
  Cluster cluster({"--workers=2"});
  ASSERT_GT(cluster.port(), 0);
  for (const std::vector<std::string>& traffic :
       std::vector<std::vector<std::string>>{{"--pipeline=1"}, {"--pipeline=8"}, {"--rate=2000"}}) {
    std::vector<std::string> args = {BinPath("echo-load"),
                                     absl::StrCat("--port=", cluster.port()),
                                     "--connections=4",
                                     "--duration=1s",
                                     "--warmup=0s",
                                     "--stall-timeout=1s",
                                     "--json"};
    args.insert(args.end(), traffic.begin(), traffic.end());
    Result load = RunProgram(args, kTimeout);
    EXPECT_EQ(load.code, 0) << traffic[0] << ": " << load.output;
    EXPECT_TRUE(absl::StrContains(load.output, "\"ok\":true")) << traffic[0] << ": " << load.output;
  }
  ASSERT_TRUE(cluster.process().Signal(SIGTERM).ok());
  absl::StatusOr<int> code = cluster.process().Wait(kTimeout);
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0);
}

TEST(EchoClusterProcessTest, ChatModeRelaysBetweenClients) {
  Cluster cluster({"--workers=2", "--mode=chat"});
  ASSERT_GT(cluster.port(), 0);
  const Address address =
      *Address::FromHostPort("127.0.0.1", static_cast<uint16_t>(cluster.port()));
  LineClient alice(address);
  LineClient bob(address);
  // Bob's line can only reach Alice once both have joined; resend until the
  // relay is seen (bounded), since joining happens on the server's threads.
  std::optional<std::string> got;
  for (int attempt = 0; attempt < 50 && !got; ++attempt) {
    ASSERT_TRUE(bob.Send("hi alice\n"));
    got = alice.ReadLine(absl::Milliseconds(200));
  }
  ASSERT_TRUE(got.has_value());
  EXPECT_TRUE(absl::EndsWith(*got, ": hi alice")) << *got;
}

TEST(EchoClusterProcessTest, UsageErrorsExitTwo) {
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{{"--bogus"},
                                             {"--port=abc"},
                                             {"--port=70000"},
                                             {"--workers=-1"},
                                             {"--mode=nope"},
                                             {"--mode=chat", "--codec=raw"},
                                             {"--codec=json"},
                                             {"--max-output=100"},  // below the watermark
                                             {"--max-output=-1"},
                                             {"--mailbox-capacity=-1"},
                                             {"--mailbox-overflow=drop-all"},
                                             {"--inbox-capacity=-5"},
                                             {"--flush-timeout=-1s"},
                                             {"--linger-timeout=-1s"},
                                             {"--flush-timeout=0"},
                                             {"--max-pending-work=0"},
                                             {"--max-frame=4294967296"},
                                             {"--agent-port=0"},  // needs --metrics-port
                                             {"--metrics-port=0", "--agent-port=70000"},
                                             {"--drain-grace=-1s"},
                                             {"--drain-grace=inf"},
                                             {"stray"}}) {
    std::vector<std::string> full = {BinPath("echo-cluster")};
    full.insert(full.end(), args.begin(), args.end());
    Result r = RunProgram(full);
    EXPECT_EQ(r.code, 2) << args[0] << ": " << r.output;
    EXPECT_FALSE(r.output.empty()) << args[0];
  }
}

TEST(EchoClusterProcessTest, HelpAndVersionExitZero) {
  Result help = RunProgram({BinPath("echo-cluster"), "--help"});
  EXPECT_EQ(help.code, 0);
  EXPECT_TRUE(absl::StrContains(help.output, "--workers")) << help.output;
  EXPECT_TRUE(absl::StrContains(help.output, "Example:")) << help.output;
  Result version = RunProgram({BinPath("echo-cluster"), "--version"});
  EXPECT_EQ(version.code, 0);
  EXPECT_TRUE(absl::StartsWith(version.output, "echo-cluster ")) << version.output;
}

TEST(EchoClusterProcessTest, PortInUseExitsOneNamingTheAddress) {
  Cluster first({"--workers=1"});
  ASSERT_GT(first.port(), 0);
  Result second = RunProgram({BinPath("echo-cluster"), absl::StrCat("--port=", first.port())});
  EXPECT_EQ(second.code, 1) << second.output;
  EXPECT_TRUE(absl::StrContains(second.output, absl::StrCat("bind 127.0.0.1:", first.port())))
      << second.output;
}

TEST(EchoClusterProcessTest, BadHostExitsOne) {
  Result r = RunProgram({BinPath("echo-cluster"), "--host=no-such-host.invalid", "--port=0"});
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, "no-such-host.invalid")) << r.output;
}

// The sum of every sample of a Prometheus counter in one scrape, or -1.
double Scrape(int metrics_port, std::string_view name) {
  LineClient client(*Address::FromHostPort("127.0.0.1", static_cast<uint16_t>(metrics_port)));
  if (!client.Send("GET /metrics HTTP/1.1\r\n\r\n")) return -1;
  double sum = -1;
  while (std::optional<std::string> line = client.ReadLine(absl::Seconds(5))) {
    if (!line->starts_with(name) || (*line)[name.size()] == '_') continue;
    double v = 0;
    if (absl::SimpleAtod(line->substr(line->rfind(' ') + 1), &v)) sum = (sum < 0 ? 0 : sum) + v;
  }
  return sum;
}

TEST(EchoClusterProcessTest, DrainDeliversRepliesStillOwedByOffloadedWork) {
  // Two lines whose work takes 200 ms each, SIGTERM while it runs: both
  // replies, in order, then FIN (the README's promise); with an infinite
  // drain timeout, which must not cut at once either.
  Cluster cluster({"--workers=1", "--mode=work", "--work-us=200000", "--offload-threads=2",
                   "--drain-timeout=inf", "--metrics-port=0"});
  ASSERT_GT(cluster.port(), 0);
  LineClient client(cluster.address());
  ASSERT_TRUE(client.Send("first\nsecond\n"));
  // Signal once the server has read both lines (not before: unread lines are
  // not owed anything).
  for (int i = 0; i < 2000 && Scrape(cluster.metrics_port(), "troupe_bytes_received_total") < 13;
       ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_TRUE(cluster.process().Signal(SIGTERM).ok());
  EXPECT_EQ(client.ReadLine(), "first");
  EXPECT_EQ(client.ReadLine(), "second");
  EXPECT_TRUE(client.WaitForEof());
  client.Close();
  absl::StatusOr<int> code = cluster.process().Wait(kTimeout);
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0);
}

TEST(EchoClusterProcessTest, WorkModeAnswersPipelinedLinesInOrder) {
  // Two offload threads finish in any order; the replies must not.
  Cluster cluster({"--workers=1", "--mode=work", "--work-us=100", "--offload-threads=2"});
  ASSERT_GT(cluster.port(), 0);
  LineClient client(cluster.address());
  std::string lines;
  for (int i = 0; i < 2000; ++i) absl::StrAppend(&lines, i, "\n");
  ASSERT_TRUE(client.Send(lines));
  int inversions = 0;
  for (int i = 0; i < 2000; ++i) {
    std::optional<std::string> line = client.ReadLine();
    ASSERT_TRUE(line.has_value()) << "after " << i << " replies";
    inversions += *line != absl::StrCat(i);
  }
  EXPECT_EQ(inversions, 0);
}

}  // namespace
}  // namespace troupe
