// The pure checks of the edge (src/http/edge.h): which Host values are loopback names, how a Host
// or authority is split, and when an Origin is the node's own site.
#include "src/http/edge.h"

#include <gtest/gtest.h>

namespace dsm::http {
namespace {

TEST(EdgeTest, LoopbackHosts) {
  for (const char* h : {"localhost", "LOCALHOST", "localhost.", "127.0.0.1", "127.255.0.9",
                        "::1", "[::1]", "0:0:0:0:0:0:0:1"}) {
    EXPECT_TRUE(IsLoopbackHost(h)) << h;
  }
  for (const char* h : {"", "attacker.example", "127.0.0.1.attacker.example", "127.0.0",
                        "127.0.0.256", "127.0.0.1.", "128.0.0.1", "10.0.0.1", "::2",
                        "localhost.attacker.example", "1270.0.0.1", "127.00001.0.1"}) {
    EXPECT_FALSE(IsLoopbackHost(h)) << h;
  }
}

TEST(EdgeTest, AuthorityHost) {
  int port = -1;
  EXPECT_EQ(AuthorityHost("Example.COM:8000", &port), "example.com");
  EXPECT_EQ(port, 8000);
  EXPECT_EQ(AuthorityHost("[::1]:9", &port), "::1");
  EXPECT_EQ(port, 9);
  EXPECT_EQ(AuthorityHost("[::1]", &port), "::1");
  EXPECT_EQ(port, 0);
  EXPECT_EQ(AuthorityHost("h", &port), "h");
  EXPECT_EQ(port, 0);
  // An empty port is the default one (RFC 3986 3.2.3).
  EXPECT_EQ(AuthorityHost("h:", &port), "h");
  EXPECT_EQ(port, 0);
  for (const char* bad : {"", ":80", "h:0", "h:65536", "h:8o", "::1", "[::1", "[::1]x",
                          "a b", "a/b", "a@b:1", "h:123456"}) {
    EXPECT_FALSE(AuthorityHost(bad, &port)) << bad;
  }
}

TEST(EdgeTest, SameOrigin) {
  EXPECT_TRUE(SameOrigin("http://127.0.0.1:8000", "127.0.0.1:8000"));
  EXPECT_TRUE(SameOrigin("http://LOCALHOST:8000", "localhost:8000"));
  EXPECT_TRUE(SameOrigin("http://localhost", "localhost:80"));
  EXPECT_TRUE(SameOrigin("http://localhost:80", "localhost"));
  EXPECT_TRUE(SameOrigin("https://dsm.example", "dsm.example:443"));
  EXPECT_TRUE(SameOrigin("http://[::1]:8000", "[::1]:8000"));
  EXPECT_FALSE(SameOrigin("http://attacker.example", "127.0.0.1:8000"));
  EXPECT_FALSE(SameOrigin("http://127.0.0.1:8001", "127.0.0.1:8000"));
  EXPECT_FALSE(SameOrigin("http://127.0.0.1", "127.0.0.1:8000"));
  EXPECT_FALSE(SameOrigin("https://127.0.0.1:8000", "127.0.0.1:80"));
  EXPECT_FALSE(SameOrigin("null", "127.0.0.1:8000"));
  EXPECT_FALSE(SameOrigin("file://", "127.0.0.1:8000"));
  EXPECT_FALSE(SameOrigin("http://127.0.0.1:8000/path", "127.0.0.1:8000"));
  EXPECT_FALSE(SameOrigin("", ""));
}

}  // namespace
}  // namespace dsm::http
