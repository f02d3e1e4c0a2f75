// ParseProxyHeader (core/net/proxy_protocol.h): v1 and v2, every outcome,
// byte-at-a-time feeding, and the malformed headers it must reject.
#include "core/net/proxy_protocol.h"

#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "gtest/gtest.h"

namespace troupe {
namespace {

const std::string kV2Signature("\r\n\r\n\0\r\nQUIT\n", 12);

// A v2 header: signature, version/command, family/transport, length, body.
std::string V2(uint8_t version_command, uint8_t family_transport, std::string_view body) {
  std::string h = kV2Signature;
  h.push_back(static_cast<char>(version_command));
  h.push_back(static_cast<char>(family_transport));
  h.push_back(static_cast<char>(body.size() >> 8));
  h.push_back(static_cast<char>(body.size() & 0xFF));
  h.append(body);
  return h;
}

std::string Bytes(std::initializer_list<int> bytes) {
  std::string s;
  for (int b : bytes) s.push_back(static_cast<char>(b));
  return s;
}

// 192.0.2.1:56324 -> 198.51.100.2:443
const std::string kInetBlock =
    Bytes({192, 0, 2, 1, 198, 51, 100, 2, 56324 >> 8, 56324 & 0xFF, 443 >> 8, 443 & 0xFF});
// [2001:db8::1]:1 -> [::1]:65535
const std::string kInet6Block =
    Bytes({0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0,    0,
           0,    0,    0,    0,    0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0xFF, 0xFF});
// TLVs: PP2_TYPE_ALPN "h2", PP2_TYPE_NOOP empty, PP2_TYPE_AUTHORITY "example.com".
const std::string kTlvs = Bytes({0x01, 0, 2, 'h', '2', 0x04, 0, 0, 0x02, 0, 11}) + "example.com";

constexpr uint8_t kLocal = 0x20;
constexpr uint8_t kProxy = 0x21;

// Every well-formed header of the tests, for the feeding checks.
std::vector<std::string> ValidHeaders() {
  return {
      "PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n",
      "PROXY TCP6 2001:db8::1 ::1 1 65535\r\n",
      "PROXY UNKNOWN\r\n",
      "PROXY UNKNOWN ffff:f...:ffff ffff:f...:ffff 65535 65535\r\n",
      V2(kProxy, 0x11, kInetBlock),
      V2(kProxy, 0x21, kInet6Block + kTlvs),
      V2(kLocal, 0x00, ""),
      V2(kLocal, 0x12, "anything at all"),
  };
}

TEST(ProxyProtocolTest, EmptyInputNeedsMore) { EXPECT_TRUE(ParseProxyHeader("").need_more()); }

TEST(ProxyProtocolTest, V1Tcp4GivesBothAddresses) {
  const std::string header = "PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n";
  const ProxyHeaderResult r = ParseProxyHeader(header + "GET / HTTP/1.1\r\n");
  ASSERT_TRUE(r.done()) << r.error;
  EXPECT_EQ(r.version, 1);
  EXPECT_EQ(r.size, header.size());
  ASSERT_TRUE(r.source.has_value());
  ASSERT_TRUE(r.destination.has_value());
  EXPECT_FALSE(r.local());
  EXPECT_EQ(r.source->family(), AF_INET);
  EXPECT_EQ(r.source->ToString(), "192.0.2.1:56324");
  EXPECT_EQ(r.destination->ToString(), "198.51.100.2:443");
}

TEST(ProxyProtocolTest, V1Tcp6GivesBothAddresses) {
  const std::string header = "PROXY TCP6 2001:db8::1 ::1 1 65535\r\n";
  const ProxyHeaderResult r = ParseProxyHeader(header);
  ASSERT_TRUE(r.done()) << r.error;
  EXPECT_EQ(r.size, header.size());
  EXPECT_EQ(r.source->family(), AF_INET6);
  EXPECT_EQ(r.source->ToString(), "[2001:db8::1]:1");
  EXPECT_EQ(r.destination->ToString(), "[::1]:65535");
}

TEST(ProxyProtocolTest, V1PortZeroIsAccepted) {
  const ProxyHeaderResult r = ParseProxyHeader("PROXY TCP4 1.2.3.4 5.6.7.8 0 0\r\n");
  ASSERT_TRUE(r.done()) << r.error;
  EXPECT_EQ(r.source->port(), 0);
}

TEST(ProxyProtocolTest, V1UnknownIsLocalWhateverFollows) {
  for (const std::string header :
       {"PROXY UNKNOWN\r\n", "PROXY UNKNOWN 1.2.3.4 5.6.7.8 1 2\r\n", "PROXY UNKNOWN ??\r\n"}) {
    const ProxyHeaderResult r = ParseProxyHeader(header + "data");
    ASSERT_TRUE(r.done()) << header << ": " << r.error;
    EXPECT_TRUE(r.local());
    EXPECT_FALSE(r.destination.has_value());
    EXPECT_EQ(r.size, header.size());
  }
}

TEST(ProxyProtocolTest, V1LineOf107BytesIsTheLimit) {
  std::string line = "PROXY UNKNOWN ";
  line.append(kProxyV1MaxBytes - line.size() - 2, 'x');
  line += "\r\n";
  ASSERT_EQ(line.size(), 107u);
  EXPECT_TRUE(ParseProxyHeader(line).done());

  std::string longer = "PROXY UNKNOWN ";
  longer.append(kProxyV1MaxBytes - longer.size() - 1, 'x');
  longer += "\r\n";  // 108 bytes
  EXPECT_TRUE(ParseProxyHeader(longer).invalid());
  // Cut at 106: the CR is the last byte, and its LF would be the 108th.
  EXPECT_TRUE(ParseProxyHeader(longer.substr(0, 106)).need_more());
  EXPECT_TRUE(ParseProxyHeader(longer.substr(0, 107)).invalid());
}

TEST(ProxyProtocolTest, V1WithoutCrlfIsInvalidAt107Bytes) {
  std::string line = "PROXY UNKNOWN ";
  line.append(200, 'x');
  EXPECT_TRUE(ParseProxyHeader(line.substr(0, 106)).need_more());
  EXPECT_TRUE(ParseProxyHeader(line.substr(0, 107)).invalid());
  EXPECT_TRUE(ParseProxyHeader(line).invalid());
}

TEST(ProxyProtocolTest, V1MalformedLinesAreInvalid) {
  for (const std::string line : {
           "PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",      // double space
           "PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",      // double space
           "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n",      // trailing space
           "PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n",      // space before the protocol
           "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",         // a field missing
           "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",     // a field too many
           "PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",   // port too large
           "PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n",   // port too large
           "PROXY TCP4 1.2.3.4 5.6.7.8 123456 2\r\n",  // six digits
           "PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n",     // leading zero
           "PROXY TCP4 1.2.3.4 5.6.7.8 00 2\r\n",      // leading zero
           "PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",      // sign
           "PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n",      // sign
           "PROXY TCP4 1.2.3.4 5.6.7.8 0x10 2\r\n",    // hex
           "PROXY TCP4 ::1 ::1 1 2\r\n",               // IPv6 under TCP4
           "PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n",       // IPv4 under TCP6
           "PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n",         // three octets
           "PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n",     // octet too large
           "PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n",      // leading zero in an octet
           "PROXY TCP4 1.2.3.4 5.6.7.8. 1 2\r\n",      // trailing dot
           "PROXY TCP6 ::1 ::g 1 2\r\n",               // not hex
           "PROXY TCP6 1::2::3 ::1 1 2\r\n",           // two "::"
           "PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n",      // tab
           "PROXY TCP4 localhost 5.6.7.8 1 2\r\n",     // a name
           "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",         // LF without CR
           "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX",        // CR without LF
           "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n",     // CR CR LF
           "PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",       // no such protocol
           "PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n",       // lower case
           "PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",       // not TCP
           "proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n",       // lower case signature
           "PROXY\r\n",
           "PROXY \r\n",
           "PROXY TCP4\r\n",
           "PROXY TCP4 \r\n",
           "PROXY UNKN\r\n",
           "PROXY UNKNOWNX\r\n",
           "PROXY UNKNOWN\n",
           "PROXY UNKNOWN\r\r\n",
       }) {
    const ProxyHeaderResult r = ParseProxyHeader(line);
    EXPECT_TRUE(r.invalid()) << "accepted: " << line;
    if (r.invalid()) {
      EXPECT_NE(r.error, nullptr);
    }
  }
}

TEST(ProxyProtocolTest, PlainClientDataIsRejectedAtItsFirstByte) {
  const std::vector<std::string> plain = {"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
                                          "SSH-2.0-OpenSSH_9.2\r\n", "hello\n",
                                          std::string(1, '\0'), "\x16\x03\x01"};
  for (const std::string& data : plain) {
    EXPECT_TRUE(ParseProxyHeader(data.substr(0, 1)).invalid()) << data;
    EXPECT_TRUE(ParseProxyHeader(data).invalid()) << data;
  }
}

TEST(ProxyProtocolTest, ImpossiblePrefixesAreRejectedBeforeTheLineEnds) {
  EXPECT_TRUE(ParseProxyHeader("PROXX").invalid());
  EXPECT_TRUE(ParseProxyHeader("PRO").need_more());
  EXPECT_TRUE(ParseProxyHeader("PROXY X").invalid());
  EXPECT_TRUE(ParseProxyHeader("PROXY TC").need_more());
  EXPECT_TRUE(ParseProxyHeader("PROXY TCP4 1.2.3.4 x").invalid());
  EXPECT_TRUE(ParseProxyHeader("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3").invalid());
  EXPECT_TRUE(ParseProxyHeader("PROXY TCP4 1.2.3.4  ").invalid());
  EXPECT_TRUE(ParseProxyHeader("PROXY UNKNOWNX").invalid());
  EXPECT_TRUE(ParseProxyHeader("PROXY UNKNOWN anything").need_more());
  // v2: the first wrong byte of the signature, version, command or family,
  // and a length too short for its block, all before the block arrives.
  EXPECT_TRUE(ParseProxyHeader("\r\nGET").invalid());
  EXPECT_TRUE(ParseProxyHeader("\r\n\r\n").need_more());
  EXPECT_TRUE(ParseProxyHeader(kV2Signature.substr(0, 11) + "X").invalid());
  EXPECT_TRUE(ParseProxyHeader(kV2Signature + "\x11").invalid());
  EXPECT_TRUE(ParseProxyHeader(kV2Signature + "\x21").need_more());
  EXPECT_TRUE(ParseProxyHeader(kV2Signature + "\x21\x51").invalid());
  EXPECT_TRUE(ParseProxyHeader(V2(kProxy, 0x11, std::string(11, 'x')).substr(0, 16)).invalid());
  EXPECT_TRUE(ParseProxyHeader(V2(kProxy, 0x11, std::string(12, 'x')).substr(0, 16)).need_more());
}

TEST(ProxyProtocolTest, V2Inet) {
  const std::string header = V2(kProxy, 0x11, kInetBlock);
  const ProxyHeaderResult r = ParseProxyHeader(header + "hello");
  ASSERT_TRUE(r.done()) << r.error;
  EXPECT_EQ(r.version, 2);
  EXPECT_EQ(r.size, 28u);
  EXPECT_EQ(r.source->ToString(), "192.0.2.1:56324");
  EXPECT_EQ(r.destination->ToString(), "198.51.100.2:443");
}

TEST(ProxyProtocolTest, V2Inet6WithTlvsSkipsThem) {
  const std::string header = V2(kProxy, 0x21, kInet6Block + kTlvs);
  const ProxyHeaderResult r = ParseProxyHeader(header + "hello");
  ASSERT_TRUE(r.done()) << r.error;
  EXPECT_EQ(r.size, header.size());
  EXPECT_EQ(r.source->ToString(), "[2001:db8::1]:1");
  EXPECT_EQ(r.destination->ToString(), "[::1]:65535");
}

TEST(ProxyProtocolTest, V2LocalIgnoresItsBlock) {
  ProxyHeaderResult r = ParseProxyHeader(V2(kLocal, 0x00, "") + "data");
  ASSERT_TRUE(r.done()) << r.error;
  EXPECT_TRUE(r.local());
  EXPECT_EQ(r.size, 16u);
  // LOCAL with addresses, any family and transport, even a TLV cut short:
  // the block is discarded unread.
  // Undefined values too (0x13, 0x41): the spec has LOCAL's block ignored,
  // family byte included.
  const uint8_t families[] = {0x11, 0x12, 0x21, 0x22, 0x31, 0x32, 0x00, 0x13, 0x41, 0xFF};
  for (const uint8_t family : families) {
    r = ParseProxyHeader(V2(kLocal, family, kInetBlock + "\x01"));
    ASSERT_TRUE(r.done()) << r.error;
    EXPECT_TRUE(r.local());
    EXPECT_EQ(r.size, 16u + kInetBlock.size() + 1);
  }
}

TEST(ProxyProtocolTest, V2UnspecAndUnixStreamAreLocal) {
  ProxyHeaderResult r = ParseProxyHeader(V2(kProxy, 0x00, "ignored"));
  ASSERT_TRUE(r.done()) << r.error;
  EXPECT_TRUE(r.local());
  r = ParseProxyHeader(V2(kProxy, 0x31, std::string(216, '/') + kTlvs));
  ASSERT_TRUE(r.done()) << r.error;
  EXPECT_TRUE(r.local());
}

TEST(ProxyProtocolTest, V2LongestHeader) {
  ProxyHeaderResult r = ParseProxyHeader(V2(kLocal, 0x00, std::string(65535, 'x')));
  ASSERT_TRUE(r.done()) << r.error;
  EXPECT_EQ(r.size, kProxyV2MaxBytes);
  // One TLV filling everything after the addresses.
  const size_t value = 65535 - kInetBlock.size() - 3;
  const std::string tlv =
      Bytes({0xE0, static_cast<int>(value >> 8), static_cast<int>(value & 0xFF)});
  r = ParseProxyHeader(V2(kProxy, 0x11, kInetBlock + tlv + std::string(value, 'v')));
  ASSERT_TRUE(r.done()) << r.error;
  EXPECT_EQ(r.size, kProxyV2MaxBytes);
  EXPECT_EQ(r.source->ToString(), "192.0.2.1:56324");
}

TEST(ProxyProtocolTest, V2MalformedHeadersAreInvalid) {
  const std::vector<std::string> headers = {
      V2(0x11, 0x11, kInetBlock),                               // version 1
      V2(0x31, 0x11, kInetBlock),                               // version 3
      V2(0x01, 0x11, kInetBlock),                               // version 0
      V2(0x22, 0x11, kInetBlock),                               // command 2
      V2(0x2F, 0x11, kInetBlock),                               // command 15
      V2(kProxy, 0x41, kInetBlock),                             // family 4
      V2(kProxy, 0x13, kInetBlock),                             // transport 3
      V2(kProxy, 0x12, kInetBlock),                             // UDP over IPv4
      V2(kProxy, 0x22, kInet6Block),                            // UDP over IPv6
      V2(kProxy, 0x32, std::string(216, '/')),                  // AF_UNIX datagram
      V2(kProxy, 0x10, kInetBlock),                             // IPv4, transport unspecified
      V2(kProxy, 0x01, ""),                                     // AF_UNSPEC with a transport
      V2(kProxy, 0x11, kInetBlock.substr(0, 11)),               // length shorter than the block
      V2(kProxy, 0x21, kInetBlock),                             // IPv6 with an IPv4-sized block
      V2(kProxy, 0x31, std::string(215, '/')),                  // AF_UNIX block short
      V2(kProxy, 0x11, ""),                                     // no block at all
      V2(kProxy, 0x11, kInetBlock + "\x01"),                    // TLV header cut short
      V2(kProxy, 0x11, kInetBlock + "\x01\x00"),                // TLV header cut short
      V2(kProxy, 0x11, kInetBlock + Bytes({1, 0, 5}) + "abc"),  // TLV overruns
      V2(kProxy, 0x21, kInet6Block + kTlvs + "\x04"),           // trailing byte
  };
  for (size_t i = 0; i < headers.size(); ++i) {
    const ProxyHeaderResult r = ParseProxyHeader(headers[i] + "trailing data");
    EXPECT_TRUE(r.invalid()) << "case " << i;
    if (r.invalid()) {
      EXPECT_NE(r.error, nullptr);
    }
  }
}

TEST(ProxyProtocolTest, V2EverySignatureByteMatters) {
  const std::string header = V2(kProxy, 0x11, kInetBlock);
  for (size_t i = 0; i < 12; ++i) {
    std::string bad = header;
    bad[i] = static_cast<char>(bad[i] ^ 0x20);
    EXPECT_TRUE(ParseProxyHeader(bad).invalid()) << "byte " << i;
    EXPECT_TRUE(ParseProxyHeader(bad.substr(0, i + 1)).invalid()) << "byte " << i;
  }
}

TEST(ProxyProtocolTest, ByteAtATimeNeedsMoreUntilComplete) {
  for (const std::string& header : ValidHeaders()) {
    const std::string data = header + "after";
    for (size_t k = 0; k < header.size(); ++k) {
      ASSERT_TRUE(ParseProxyHeader(data.substr(0, k)).need_more())
          << "prefix of " << k << " bytes of a " << header.size() << "-byte header";
    }
    for (size_t k = header.size(); k <= data.size(); ++k) {
      const ProxyHeaderResult r = ParseProxyHeader(data.substr(0, k));
      ASSERT_TRUE(r.done()) << r.error;
      EXPECT_EQ(r.size, header.size());
    }
  }
}

TEST(ProxyProtocolTest, OnceInvalidAlwaysInvalid) {
  for (const std::string& data : {std::string("PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\nxyz"),
                                  V2(kProxy, 0x11, kInetBlock.substr(0, 11)) + "xyz",
                                  std::string("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n")}) {
    bool invalid = false;
    for (size_t k = 0; k <= data.size(); ++k) {
      const ProxyHeaderResult r = ParseProxyHeader(data.substr(0, k));
      ASSERT_FALSE(r.done()) << k;
      if (invalid) {
        ASSERT_TRUE(r.invalid()) << k;
      }
      invalid = r.invalid();
    }
    EXPECT_TRUE(invalid);
  }
}

}  // namespace
}  // namespace troupe
