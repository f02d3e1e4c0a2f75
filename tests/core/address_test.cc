#include "core/net/address.h"

#include <sys/socket.h>

#include "gtest/gtest.h"

namespace troupe {
namespace {

TEST(AddressTest, ParsesIpv4HostPort) {
  absl::StatusOr<Address> a = Address::Parse("127.0.0.1:7007");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->family(), AF_INET);
  EXPECT_EQ(a->port(), 7007);
  EXPECT_EQ(a->ToString(), "127.0.0.1:7007");
  EXPECT_EQ(a->HostString(), "127.0.0.1");
}

TEST(AddressTest, ParsesBracketedIpv6) {
  absl::StatusOr<Address> a = Address::Parse("[::1]:80");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->family(), AF_INET6);
  EXPECT_EQ(a->port(), 80);
  EXPECT_EQ(a->ToString(), "[::1]:80");
}

TEST(AddressTest, FromHostPortAcceptsBareAndBracketedIpv6) {
  EXPECT_EQ(Address::FromHostPort("::1", 9)->ToString(), "[::1]:9");
  EXPECT_EQ(Address::FromHostPort("[::1]", 9)->ToString(), "[::1]:9");
  EXPECT_EQ(Address::FromHostPort("10.1.2.3", 0)->ToString(), "10.1.2.3:0");
}

TEST(AddressTest, ResolvesLocalhost) {
  absl::StatusOr<Address> a = Address::FromHostPort("localhost", 7);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->port(), 7);
}

TEST(AddressTest, SetPortRewritesPort) {
  Address a = *Address::Parse("127.0.0.1:1");
  a.set_port(65535);
  EXPECT_EQ(a.ToString(), "127.0.0.1:65535");
}

TEST(AddressTest, RejectsMalformedText) {
  for (const char* bad : {"127.0.0.1", "127.0.0.1:", "127.0.0.1:70000", ":80", "127.0.0.1:x",
                          "[::1]80", "[::1", "::1:80", "127.0.0.1:-1"}) {
    absl::StatusOr<Address> a = Address::Parse(bad);
    EXPECT_FALSE(a.ok()) << bad;
    if (!a.ok()) {
      EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument) << bad;
      EXPECT_NE(a.status().message().find("bad address"), std::string::npos) << a.status();
    }
  }
}

TEST(AddressTest, UnresolvableHostNamesTheHost) {
  absl::StatusOr<Address> a = Address::FromHostPort("no-such-host.invalid", 1);
  ASSERT_FALSE(a.ok());
  EXPECT_NE(a.status().message().find("no-such-host.invalid"), std::string::npos);
}

}  // namespace
}  // namespace troupe
