// Runs the out-of-tree examples (built against the installed package by the
// "examples" ctest fixture) and talks to them over loopback.
#include <signal.h>

#include <memory>
#include <optional>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/support/line_client.h"
#include "tests/support/subprocess.h"

#ifndef TROUPE_EXAMPLES_BIN_DIR
#error "TROUPE_EXAMPLES_BIN_DIR must name the examples' build directory"
#endif

namespace troupe {
namespace {

using ::troupe::testing::LineClient;
using ::troupe::testing::Subprocess;

constexpr absl::Duration kTimeout = absl::Seconds(60);

// Starts an example and returns its loopback address from "... listening on HOST:PORT".
std::unique_ptr<Subprocess> StartExample(const std::string& name, Address* address) {
  auto p = Subprocess::Start({std::string(TROUPE_EXAMPLES_BIN_DIR) + "/" + name});
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

}  // namespace
}  // namespace troupe
