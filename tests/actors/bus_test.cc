// The group bus seam (actors/bus.h) with a fake transport: what an actor
// broadcasts is published once, and what the bus delivers reaches every
// member on every reactor, the local sender's own broadcast never twice.
#include "actors/bus.h"

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "actors/builtin.h"
#include "core/server.h"
#include "gtest/gtest.h"
#include "tests/support/line_client.h"
#include "tests/support/start_server.h"
#include "tests/support/wait.h"

namespace troupe {
namespace {

using testing::LineClient;
using testing::WaitFor;

class FakeBus final : public GroupBus {
 public:
  void Start(Deliver deliver) override { deliver_ = std::move(deliver); }
  void Stop() override {}
  void Publish(std::string_view group, std::string_view text) override {
    std::lock_guard<std::mutex> lock(mu_);
    published_.emplace_back(std::string(group), std::string(text));
  }
  std::vector<std::pair<std::string, std::string>> published() {
    std::lock_guard<std::mutex> lock(mu_);
    return published_;
  }
  bool Deliver(std::string_view group, std::string_view text) { return deliver_(group, text); }

 private:
  GroupBus::Deliver deliver_;
  std::mutex mu_;
  std::vector<std::pair<std::string, std::string>> published_;
};

TEST(BusTest, BroadcastsArePublishedOnceAndDeliveriesReachEveryReactor) {
  BuiltinOptions options;
  options.mode = "chat";
  FakeBus bus;
  ServerOptions server_options;
  server_options.address = *Address::Parse("127.0.0.1:0");
  server_options.workers = 2;
  auto server = testing::StartServer(server_options, *MakeBuiltinFactory(options),
                                     [&](Server& s) { AttachBus(s, bus); });
  ASSERT_NE(server, nullptr);
  // Round robin: one member on each reactor.
  LineClient a(server->address());
  LineClient b(server->address());
  ASSERT_TRUE(WaitFor([&] { return server->Stats().Total().accepted == 2; }));

  ASSERT_TRUE(a.Send("hi\n"));
  const std::optional<std::string> local = b.ReadLine();
  ASSERT_TRUE(local.has_value());
  EXPECT_TRUE(local->ends_with(": hi")) << *local;
  ASSERT_TRUE(WaitFor([&] { return !bus.published().empty(); }));
  ASSERT_EQ(bus.published().size(), 1u);
  EXPECT_EQ(bus.published()[0].first, ChatActor::kRoom);
  EXPECT_EQ(bus.published()[0].second, *local);

  // From another node: every member gets it, the would-be sender too.
  EXPECT_TRUE(bus.Deliver(ChatActor::kRoom, "elsewhere: yo"));
  EXPECT_EQ(a.ReadLine(), "elsewhere: yo");
  EXPECT_EQ(b.ReadLine(), "elsewhere: yo");
  // A delivery is not published again (no echo between nodes), and a group
  // with no members here costs nothing.
  EXPECT_TRUE(bus.Deliver("nobody", "x"));
  EXPECT_FALSE(a.ReadLine(absl::Milliseconds(100)).has_value());
  EXPECT_EQ(bus.published().size(), 1u);
}

}  // namespace
}  // namespace troupe
