// echo-cluster --tls-cert/--tls-key against clients nobody here wrote
// (`openssl s_client`) and against echo-load --tls, which verifies every
// echoed byte; and both programs' TLS flag errors.
#include <signal.h>

#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/support/cluster_process.h"
#include "tests/support/subprocess.h"
#include "tests/support/test_cert.h"

namespace troupe {
namespace {

using testing::BinPath;
using testing::ClusterProcess;
using testing::ProgramResult;
using testing::RunProgram;
using testing::Subprocess;
using testing::TestCert;

class TlsProcessTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(cert_.ok()) << cert_.error(); }

  std::vector<std::string> ServerFlags() const {
    return {"--workers=1", "--tls-cert=" + cert_.cert(), "--tls-key=" + cert_.key()};
  }
  ProgramResult Load(const ClusterProcess& server, std::vector<std::string> flags) const {
    std::vector<std::string> args = {BinPath("echo-load"),
                                     absl::StrCat("--port=", server.port()),
                                     "--tls",
                                     "--duration=1s",
                                     "--warmup=0s",
                                     "--progress-interval=0"};
    args.insert(args.end(), flags.begin(), flags.end());
    return RunProgram(args, absl::Seconds(60));
  }

  TestCert cert_;
};

TEST_F(TlsProcessTest, OpensslSClientGetsExactlyItsLinesBack) {
  ClusterProcess server(ServerFlags());
  ASSERT_GT(server.port(), 0);
  EXPECT_TRUE(absl::StrContains(server.first_line(), "(TLS)")) << server.first_line();
  const std::string input = cert_.dir() + "/input.txt";
  std::ofstream(input) << "first line\nsecond line\nthird\n";
  // -quiet keeps s_client running after its input ends (-ign_eof), so the
  // test reads the three echoes and then stops it.
  absl::StatusOr<std::unique_ptr<Subprocess>> client =
      Subprocess::Start({"/bin/sh", "-c",
                         absl::StrCat("exec openssl s_client -connect 127.0.0.1:", server.port(),
                                      " -servername localhost -quiet < ", input)});
  ASSERT_TRUE(client.ok()) << client.status();
  for (const char* want : {"first line", "second line", "third"}) {
    absl::StatusOr<std::string> line = (*client)->ReadLine(absl::Seconds(20));
    ASSERT_TRUE(line.ok()) << line.status() << "\n" << *(*client)->ReadAllStderr(absl::Seconds(1));
    EXPECT_EQ(*line, want);
  }
  ASSERT_TRUE((*client)->Signal(SIGTERM).ok());
  EXPECT_TRUE((*client)->Wait(absl::Seconds(10)).ok());
  ASSERT_TRUE(server.process().Signal(SIGTERM).ok());
  EXPECT_EQ(*server.process().Wait(absl::Seconds(20)), 0);
}

// Pipelined small messages, and 100,000-byte ones that span many records and
// pass a 64 KiB high watermark, all verified byte by byte.
TEST_F(TlsProcessTest, EchoLoadVerifiesEveryByteOverTls) {
  std::vector<std::string> flags = ServerFlags();
  flags.push_back("--high-watermark=65536");
  ClusterProcess server(flags);
  ASSERT_GT(server.port(), 0);
  for (const char* size : {"--size=64", "--size=100000"}) {
    const ProgramResult run =
        Load(server, {"--tls-ca=" + cert_.cert(), "--tls-server-name=localhost", "--connections=20",
                      "--pipeline=16", size});
    EXPECT_EQ(run.code, 0) << run.output;
    EXPECT_TRUE(absl::StrContains(run.output, "errors        none")) << run.output;
  }
  ASSERT_TRUE(server.process().Signal(SIGTERM).ok());
  EXPECT_EQ(*server.process().Wait(absl::Seconds(20)), 0);
}

TEST_F(TlsProcessTest, InsecureWorksAndAWrongCaFailsTheRun) {
  ClusterProcess server(ServerFlags());
  ASSERT_GT(server.port(), 0);
  const ProgramResult insecure = Load(server, {"--tls-insecure", "--connections=2"});
  EXPECT_EQ(insecure.code, 0) << insecure.output;

  TestCert other("localhost");
  ASSERT_TRUE(other.ok());
  const ProgramResult wrong =
      Load(server, {"--tls-ca=" + other.cert(), "--connections=2", "--tls-server-name=localhost"});
  EXPECT_EQ(wrong.code, 1) << wrong.output;
  EXPECT_TRUE(absl::StrContains(wrong.output, "certificate verify failed")) << wrong.output;

  // The name is checked too: the certificate says localhost, not this.
  const ProgramResult wrong_name = Load(
      server, {"--tls-ca=" + cert_.cert(), "--connections=1", "--tls-server-name=example.com"});
  EXPECT_EQ(wrong_name.code, 1) << wrong_name.output;
  EXPECT_TRUE(absl::StrContains(wrong_name.output, "hostname mismatch")) << wrong_name.output;
  ASSERT_TRUE(server.process().Signal(SIGTERM).ok());
  EXPECT_EQ(*server.process().Wait(absl::Seconds(20)), 0);
}

TEST_F(TlsProcessTest, FlagErrors) {
  // echo-load: --tls needs a way to treat the certificate (usage, 2).
  ProgramResult r = RunProgram({BinPath("echo-load"), "--tls", "--port=1"});
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, "--tls-ca")) << r.output;
  r = RunProgram({BinPath("echo-load"), "--tls-insecure", "--port=1"});
  EXPECT_EQ(r.code, 2) << r.output;

  // echo-cluster: an unreadable file, or a key that is not the
  // certificate's, is named (1); half the pair is a usage error (2).
  const std::string missing = cert_.dir() + "/missing.pem";
  r = RunProgram(
      {BinPath("echo-cluster"), "--port=0", "--tls-cert=" + missing, "--tls-key=" + cert_.key()});
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, missing)) << r.output;
  TestCert other("localhost");
  ASSERT_TRUE(other.ok());
  r = RunProgram({BinPath("echo-cluster"), "--port=0", "--tls-cert=" + cert_.cert(),
                  "--tls-key=" + other.key()});
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, other.key())) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, "does not match")) << r.output;
  r = RunProgram({BinPath("echo-cluster"), "--port=0", "--tls-cert=" + cert_.cert()});
  EXPECT_EQ(r.code, 2) << r.output;
  r = RunProgram({BinPath("echo-cluster"), "--port=0", "--tls-cert=" + cert_.cert(),
                  "--tls-key=" + cert_.key(), "--proxy-protocol"});
  EXPECT_EQ(r.code, 2) << r.output;
}

}  // namespace
}  // namespace troupe
