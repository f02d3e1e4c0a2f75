// LoadOptions::framing in-process: the load engine against troupe's own
// echo actor with the lines and length codecs (what echo-cluster --codec
// runs), and against a server that breaks frames on purpose.
#include "load/framing.h"

#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "actors/builtin.h"
#include "core/server.h"
#include "gtest/gtest.h"
#include "load/load_client.h"
#include "load/report.h"
#include "tests/support/faulty_echo_server.h"
#include "tests/support/start_server.h"
#include "tests/support/wait.h"

namespace troupe {
namespace {

using ::troupe::testing::EchoFaultPlan;
using ::troupe::testing::FaultyEchoServer;

// An echo server of troupe's, as echo-cluster --mode echo --codec `codec`.
std::unique_ptr<Server> StartEchoServer(const std::string& codec) {
  BuiltinOptions builtin;
  builtin.mode = "echo";
  builtin.codec = codec;
  absl::StatusOr<HandlerFactory> factory = MakeBuiltinFactory(builtin);
  EXPECT_TRUE(factory.ok()) << factory.status();
  if (!factory.ok()) return nullptr;
  ServerOptions options;
  options.workers = 2;
  return ::troupe::testing::StartServer(options, *std::move(factory));
}

LoadOptions FramedRun(const Address& target, LoadFraming framing, size_t size) {
  LoadOptions options;
  options.target = target;
  options.framing = framing;
  options.message_size = size;
  options.connections = 4;
  options.threads = 2;
  options.pipeline = 8;  // Several frames in one read, on both sides.
  options.warmup = absl::ZeroDuration();
  options.duration = absl::Milliseconds(500);
  return options;
}

TEST(LoadFramingTest, LinesAgainstTheLinesCodecHaveNoErrors) {
  const int fds_before = ::troupe::testing::CountOpenFds();
  {
    std::unique_ptr<Server> server = StartEchoServer("lines");
    ASSERT_NE(server, nullptr);
    // 2: one byte and "\n", the smallest line; 60,000: lines that arrive in
    // many reads (the codec's limit is 64 KiB of text).
    for (const size_t size : {size_t{2}, size_t{100}, size_t{60000}}) {
      absl::StatusOr<LoadReport> report =
          RunLoad(FramedRun(server->address(), LoadFraming::kLines, size));
      ASSERT_TRUE(report.ok()) << report.status();
      EXPECT_TRUE(report->ok()) << size << "\n" << FormatReportText(*report);
      EXPECT_GT(report->messages, 0u) << size;
      EXPECT_EQ(report->framing, LoadFraming::kLines);
    }
  }
  EXPECT_EQ(::troupe::testing::CountOpenFds(), fds_before);
}

TEST(LoadFramingTest, LengthFramesAgainstTheLengthCodecHaveNoErrors) {
  std::unique_ptr<Server> server = StartEchoServer("length");
  ASSERT_NE(server, nullptr);
  for (const size_t size : {size_t{5}, size_t{100}, size_t{300000}}) {
    absl::StatusOr<LoadReport> report =
        RunLoad(FramedRun(server->address(), LoadFraming::kLength, size));
    ASSERT_TRUE(report.ok()) << report.status();
    EXPECT_TRUE(report->ok()) << size << "\n" << FormatReportText(*report);
    EXPECT_GT(report->messages, 0u) << size;
  }
}

TEST(LoadFramingTest, TheReportNamesTheFraming) {
  std::unique_ptr<Server> server = StartEchoServer("length");
  ASSERT_NE(server, nullptr);
  absl::StatusOr<LoadReport> report =
      RunLoad(FramedRun(server->address(), LoadFraming::kLength, 64));
  ASSERT_TRUE(report.ok()) << report.status();
  const std::string text = FormatReportText(*report);
  EXPECT_TRUE(absl::StrContains(text, "64-byte messages, pipeline 8, length framing)")) << text;
  EXPECT_TRUE(absl::StrContains(FormatReportJson(*report), "\"framing\":\"length\""));
  EXPECT_TRUE(absl::StrContains(FormatReportCsv(*report), ",framing,"));
}

// A server that loses, repeats or corrupts one frame of every connection is
// caught by the byte check, at that frame, not only when echoes run out.
TEST(LoadFramingTest, ABrokenFrameIsCaughtAtThatFrame) {
  constexpr int64_t kSize = 50;
  const struct {
    const char* what;
    EchoFaultPlan plan;
    int64_t frame;  // Where the first wrong byte must be.
  } cases[] = {
      {"dropped", {.drop_at = 5 * kSize, .drop_length = kSize}, 5},
      {"repeated", {.repeat_at = 5 * kSize, .repeat_length = kSize}, 6},
      {"corrupted", {.corrupt_at = 5 * kSize + 7}, 5},
  };
  for (const LoadFraming framing : {LoadFraming::kLines, LoadFraming::kLength}) {
    for (const auto& c : cases) {
      FaultyEchoServer server(c.plan);
      LoadOptions options = FramedRun(server.address(), framing, kSize);
      options.connections = 2;
      options.duration = absl::Milliseconds(300);
      absl::StatusOr<LoadReport> report = RunLoad(options);
      ASSERT_TRUE(report.ok()) << report.status();
      const std::string what = absl::StrCat(LoadFramingName(framing), " ", c.what);
      EXPECT_EQ(report->verification_errors, 2u) << what << "\n" << FormatReportText(*report);
      EXPECT_EQ(report->connections_stalled, 0u) << what;
      // After the run's own "no message completed" when the broken frame
      // came in the very first read.
      ASSERT_FALSE(report->first_errors.empty()) << what;
      const std::string& error = report->first_errors.back();
      const size_t at = error.find("stream offset ");
      ASSERT_NE(at, std::string::npos) << error;
      const int64_t offset = std::stoll(error.substr(at + 14));
      EXPECT_GE(offset, c.frame * kSize) << what << ": " << error;
      EXPECT_LT(offset, (c.frame + 1) * kSize) << what << ": " << error;
    }
  }
}

TEST(LoadFramingTest, ImpossibleFramingsAreRejected) {
  LoadOptions good;
  good.target = *Address::FromHostPort("127.0.0.1", 9);
  good.framing = LoadFraming::kLines;
  good.message_size = 2;
  EXPECT_TRUE(ValidateLoadOptions(good).ok());
  good.framing = LoadFraming::kLength;
  good.message_size = 5;
  EXPECT_TRUE(ValidateLoadOptions(good).ok());
  auto expect_invalid = [&](auto mutate, absl::string_view says) {
    LoadOptions o = good;
    mutate(o);
    const absl::Status s = ValidateLoadOptions(o);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_TRUE(absl::StrContains(s.message(), says)) << s;
  };
  expect_invalid(
      [](LoadOptions& o) {
        o.framing = LoadFraming::kLines;
        o.message_size = 1;
      },
      "lines framing needs a message size of 2 bytes at least");
  expect_invalid([](LoadOptions& o) { o.message_size = 4; },
                 "length framing needs a message size of 5 bytes at least");
  expect_invalid([](LoadOptions& o) { o.message_size = kMaxFramedMessageSize + 1; },
                 "at most 16777216 bytes");
  expect_invalid([](LoadOptions& o) { o.messages = {"a"}; }, "message list (script mode)");
  EXPECT_EQ(ParseLoadFraming("line").status().message(),
            "unknown framing 'line' (known: raw, lines, length)");
}

}  // namespace
}  // namespace troupe
