// Token authentication (src/http/auth.h): the pure checks, then the HttpServer over real sockets
// with a cluster token and a client token configured (a real Node on the in-memory log, a
// FakeTransport, a ManualClock). Every refused request must get 401 JSON and store nothing.
#include "src/http/auth.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "core/node.h"
#include "src/http/server.h"
#include "tests/testing/fake_transport.h"
#include "tests/testing/manual_clock.h"
#include "tests/testing/memory_log_store.h"
#include "tests/testing/process.h"

namespace dsm {
namespace {

using http::AuthPolicy;
using http::PresentedToken;
using http::Scope;
using http::ScopeOf;
using http::TokenEquals;
using http::ValidateToken;
using testing::HttpRequest;
using testing::HttpResponse;
using testing::Millis;

constexpr char kClusterToken[] = "cluster-SECRET-0123456789";
constexpr char kClientToken[] = "client-SECRET-9876543210";

TEST(TokenEqualsTest, MatchesOnlyTheSameBytes) {
  EXPECT_TRUE(TokenEquals("abc", "abc"));
  EXPECT_FALSE(TokenEquals("abc", "abd"));
  EXPECT_FALSE(TokenEquals("abc", "ab"));
  EXPECT_FALSE(TokenEquals("abc", "abcd"));
  EXPECT_FALSE(TokenEquals("abc", ""));
  EXPECT_FALSE(TokenEquals("", ""));  // an empty expected token never matches
  EXPECT_FALSE(TokenEquals("abc", std::string("abc\0", 4)));
  EXPECT_FALSE(TokenEquals("ABC", "abc"));
}

TEST(ValidateTokenTest, RefusesWhatCannotTravelInAHeaderWithoutEchoingIt) {
  EXPECT_TRUE(ValidateToken("s3cr3t!~", "--cluster-token").ok());
  for (const std::string& bad : {std::string(), std::string("has space"),
                                std::string("line\r\nX-Injected: 1"), std::string("tab\there"),
                                std::string("nul\0x", 5), std::string("caf\xc3\xa9"),
                                std::string(http::kMaxTokenBytes + 1, 'a')}) {
    Status s = ValidateToken(bad, "--cluster-token");
    EXPECT_EQ(s.code(), Code::kInvalidArgument) << bad;
    EXPECT_NE(s.message().find("--cluster-token"), std::string::npos) << s.message();
    if (bad.size() > 3) {
      EXPECT_EQ(s.message().find(bad), std::string::npos) << "the token leaked: " << s.message();
    }
  }
}

TEST(PresentedTokenTest, ReadsBearerThenTheDsmHeader) {
  EXPECT_EQ(PresentedToken("Bearer abc", std::nullopt), "abc");
  EXPECT_EQ(PresentedToken("bearer   abc  ", std::nullopt), "abc");
  EXPECT_EQ(PresentedToken("BEARER\tabc", std::nullopt), "abc");
  EXPECT_EQ(PresentedToken(std::nullopt, "xyz"), "xyz");
  EXPECT_EQ(PresentedToken("Basic dXNlcjpwYXNz", "xyz"), "xyz");  // not a bearer token
  EXPECT_EQ(PresentedToken("Bearer abc", "xyz"), "abc");
  EXPECT_EQ(PresentedToken("Bearer", std::nullopt), std::nullopt);
  EXPECT_EQ(PresentedToken("Bearerabc", std::nullopt), std::nullopt);
  EXPECT_EQ(PresentedToken(std::nullopt, std::nullopt), std::nullopt);
}

TEST(ScopeOfTest, InternalEndpointsWhateverTheirSpelling) {
  for (const char* p : {"/replicate", "/sync", "/heartbeat", "/replicate/", "//sync",
                        "/heartbeat?x=1", "///replicate//"}) {
    EXPECT_EQ(ScopeOf(p), Scope::kCluster) << p;
  }
  for (const char* p : {"/send", "/messages", "/status", "/metrics", "/", "", "/replicatex",
                        "/Replicate", "/sync/more"}) {
    EXPECT_EQ(ScopeOf(p), Scope::kClient) << p;
  }
}

TEST(AuthPolicyTest, ScopesAndTokens) {
  AuthPolicy open("", "");
  EXPECT_TRUE(open.open());
  EXPECT_TRUE(open.Check("/replicate", std::nullopt).ok());
  EXPECT_TRUE(open.Check("/send", std::nullopt).ok());

  AuthPolicy cluster_only(kClusterToken, "");
  EXPECT_FALSE(cluster_only.open());
  EXPECT_EQ(cluster_only.Check("/replicate", std::nullopt).message(), "cluster token required");
  EXPECT_EQ(cluster_only.Check("/sync", std::string_view("wrong")).message(),
            "invalid cluster token");
  EXPECT_TRUE(cluster_only.Check("/heartbeat", std::string_view(kClusterToken)).ok());
  EXPECT_TRUE(cluster_only.Check("/send", std::nullopt).ok());  // clients stay open

  AuthPolicy both(kClusterToken, kClientToken);
  EXPECT_EQ(both.Check("/send", std::nullopt).message(), "client token required");
  EXPECT_EQ(both.Check("/messages", std::string_view("wrong")).message(), "invalid client token");
  EXPECT_TRUE(both.Check("/send", std::string_view(kClientToken)).ok());
  EXPECT_TRUE(both.Check("/status", std::string_view(kClusterToken)).ok());
  // The client token does not open the internal endpoints.
  EXPECT_FALSE(both.Check("/replicate", std::string_view(kClientToken)).ok());
}

// ---------------------------------------------------------------------------------------------
// The server.

class AuthServerTest : public ::testing::Test {
 protected:
  void Start(const std::string& cluster_token, const std::string& client_token) {
    NodeOptions o;
    o.id = "node1";
    o.port = 0;
    o.max_message_bytes = 1000;
    node_ = std::make_unique<Node>(o, &store_, &transport_, &clock_);
    HttpServerOptions so;
    so.threads = 2;
    so.cluster_token = cluster_token;
    so.client_token = client_token;
    server_ = std::make_unique<HttpServer>(o, node_.get(), &store_, &clock_, so);
    Status s = server_->Start();
    ASSERT_TRUE(s.ok()) << s.ToString();
    url_ = "http://127.0.0.1:" + std::to_string(server_->port());
    node_->Start();
  }

  void TearDown() override {
    if (node_) node_->Stop();
    if (server_) server_->Shutdown();
  }

  HttpResponse Call(const std::string& method, const std::string& path,
                    std::optional<std::string> body, std::vector<std::string> headers = {}) {
    HttpRequest req;
    req.method = method;
    req.url = url_ + path;
    req.body = std::move(body);
    req.headers = std::move(headers);
    req.timeout = Millis(10000);
    return testing::Http(req);
  }

  // A 401 with the JSON error body and the Bearer challenge, not naming any token.
  void ExpectUnauthorized(const HttpResponse& r, const std::string& reason) {
    EXPECT_EQ(r.status, 401) << r.Describe();
    EXPECT_TRUE(r.IsError()) << r.Describe();
    EXPECT_EQ(r.Str("reason"), reason);
    EXPECT_EQ(r.headers.count("www-authenticate"), 1u);
    EXPECT_EQ(r.body.find("SECRET"), std::string::npos) << r.body;
  }

  ManualClock clock_;
  MemoryLogStore store_{"node1", "inc1"};
  FakeTransport transport_;
  std::unique_ptr<Node> node_;
  std::unique_ptr<HttpServer> server_;
  std::string url_;
};

const char kReplicateBody[] =
    R"({"msg":{"msg_id":"r1","sender":"a","recipient":"b","payload":"p","ts":1,)"
    R"("origin":"other@1","origin_seq":1}})";

TEST_F(AuthServerTest, InternalEndpointsRefuseMissingOrWrongClusterTokenAndStoreNothing) {
  Start(kClusterToken, "");
  const std::string wrong = "Authorization: Bearer cluster-SECRET-012345678X";
  ExpectUnauthorized(Call("POST", "/replicate", kReplicateBody), "cluster token required");
  ExpectUnauthorized(Call("POST", "/replicate", kReplicateBody, {wrong}), "invalid cluster token");
  ExpectUnauthorized(Call("POST", "/replicate", kReplicateBody, {"Authorization: Basic eDp5"}),
                     "cluster token required");
  ExpectUnauthorized(
      Call("POST", "/replicate", kReplicateBody, {std::string("X-Dsm-Token: ") + kClientToken}),
      "invalid cluster token");
  // Spellings the router also matches.
  ExpectUnauthorized(Call("POST", "//replicate", kReplicateBody), "cluster token required");
  ExpectUnauthorized(Call("POST", "/replicate/", kReplicateBody), "cluster token required");
  ExpectUnauthorized(Call("POST", "/sync", R"({"since":0})"), "cluster token required");
  ExpectUnauthorized(Call("GET", "/heartbeat", std::nullopt, {wrong}), "invalid cluster token");
  EXPECT_EQ(store_.LastSeq(), 0u);  // nothing was stored

  // The right token, in either header.
  HttpResponse ok = Call("POST", "/replicate", kReplicateBody,
                         {std::string("Authorization: Bearer ") + kClusterToken});
  ASSERT_EQ(ok.status, 200) << ok.Describe();
  EXPECT_EQ(store_.LastSeq(), 1u);
  HttpResponse hb =
      Call("GET", "/heartbeat", std::nullopt, {std::string("X-Dsm-Token: ") + kClusterToken});
  EXPECT_EQ(hb.status, 200) << hb.Describe();
  HttpResponse sync = Call("POST", "/sync", R"({"since":0})",
                           {std::string("authorization: bearer ") + kClusterToken});
  ASSERT_EQ(sync.status, 200) << sync.Describe();
  EXPECT_EQ(sync.json["messages"].Size(), 1u);

  // Without a client token the client endpoints stay open.
  HttpResponse sent = Call("POST", "/send", R"({"payload":"x"})");
  EXPECT_EQ(sent.status, 200) << sent.Describe();
  EXPECT_EQ(Call("GET", "/messages", std::nullopt).status, 200);
}

TEST_F(AuthServerTest, ClientTokenGuardsEveryOtherEndpoint) {
  Start(kClusterToken, kClientToken);
  ExpectUnauthorized(Call("POST", "/send", R"({"payload":"x"})"), "client token required");
  ExpectUnauthorized(Call("POST", "/send", R"({"payload":"x"})", {"X-Dsm-Token: nope"}),
                     "invalid client token");
  ExpectUnauthorized(Call("GET", "/messages", std::nullopt), "client token required");
  ExpectUnauthorized(Call("GET", "/status", std::nullopt), "client token required");
  ExpectUnauthorized(Call("GET", "/no-such-endpoint", std::nullopt), "client token required");
  EXPECT_EQ(store_.LastSeq(), 0u);

  const std::string client = std::string("Authorization: Bearer ") + kClientToken;
  HttpResponse sent = Call("POST", "/send", R"({"payload":"x","msg_id":"c1"})", {client});
  ASSERT_EQ(sent.status, 200) << sent.Describe();
  EXPECT_EQ(store_.LastSeq(), 1u);
  EXPECT_EQ(Call("GET", "/messages", std::nullopt, {client}).status, 200);
  HttpResponse status = Call("GET", "/status", std::nullopt, {client});
  ASSERT_EQ(status.status, 200);
  EXPECT_EQ(status.body.find("SECRET"), std::string::npos) << status.body;
  // The cluster token opens the client endpoints too.
  EXPECT_EQ(Call("GET", "/messages", std::nullopt,
                 {std::string("X-Dsm-Token: ") + kClusterToken})
                .status,
            200);
  // An unknown route with a valid token is an ordinary 404.
  EXPECT_EQ(Call("GET", "/no-such-endpoint", std::nullopt, {client}).status, 404);
}

}  // namespace
}  // namespace dsm
