// Token authentication (src/http/auth.h): the pure checks (the dsm_token cookie's rules
// included), then the HttpServer over real sockets with a cluster token and a client token
// configured (a real Node on the in-memory log, a FakeTransport, a ManualClock). Every refused
// request must get 401 JSON and store nothing; the dashboard's files are public.
#include "src/http/auth.h"
#include "src/http/dashboard.h"

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
using http::CookieToken;
using http::FindDashboardAsset;
using http::Credentials;
using http::PresentedToken;
using http::RoutePath;
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
  for (const char* p :
       {"/send", "/messages", "/status", "/metrics", "", "/replicatex", "/Replicate", "/sync/more",
        "/messages/stream", "/dashboard/other.js", "/dashboard/app.jsx", "/Dashboard",
        "/dashboardx", "/dashboard/app.js/x", "/index.html", "/%64ashboard", "dashboard"}) {
    EXPECT_EQ(ScopeOf(p), Scope::kClient) << p;
  }
}

TEST(ScopeOfTest, TheDashboardFilesArePublicAsTheRouterMatchesThem) {
  for (const char* p : {"/", "//", "/dashboard", "/dashboard/", "//dashboard", "/dashboard/app.js",
                        "/dashboard//app.js", "/dashboard/style.css", "/dashboard/style.css/",
                        "/?token=x", "/dashboard?refresh_ms=300"}) {
    EXPECT_EQ(ScopeOf(p), Scope::kPublic) << p;
    // What is public is exactly what the dashboard serves, whatever the spelling.
    EXPECT_NE(FindDashboardAsset(p), nullptr) << p;
  }
  for (const char* p : {"/dashboard/other.js", "/dashboard/app.jsx", "/dashboardx", "/index.html",
                        "/dashboard/app.js/x"}) {
    EXPECT_EQ(FindDashboardAsset(p), nullptr) << p;
  }
  EXPECT_EQ(RoutePath("//dashboard//app.js/?x=1"), "/dashboard/app.js");
  EXPECT_EQ(RoutePath("///"), "/");
  EXPECT_EQ(RoutePath(""), "");
}

TEST(CookieTokenTest, ReadsTheFirstDsmTokenCookieStrictlyDecoded) {
  EXPECT_EQ(CookieToken("dsm_token=abc"), "abc");
  EXPECT_EQ(CookieToken("a=1; dsm_token=abc; b=2"), "abc");
  EXPECT_EQ(CookieToken("a=1;dsm_token=abc"), "abc");
  EXPECT_EQ(CookieToken("  a=1 ;\t dsm_token = abc \t; b=2"), "abc");
  EXPECT_EQ(CookieToken("dsm_token=a%21b%2Bc%7E"), "a!b+c~");
  EXPECT_EQ(CookieToken("dsm_token=a%2bb%2fc"), "a+b/c");  // lower-case hex
  EXPECT_EQ(CookieToken("dsm_token=a+b"), "a+b");          // '+' is not a space
  EXPECT_EQ(CookieToken("dsm_token=x=y"), "x=y");          // only the first '=' separates
  // The first dsm_token cookie decides.
  EXPECT_EQ(CookieToken("dsm_token=first; dsm_token=second"), "first");
  EXPECT_EQ(CookieToken("dsm_token=%zz; dsm_token=second"), std::nullopt);
  // Other cookies, however similar their names, are not the token.
  for (const char* other : {"", ";;", "a=1", "xdsm_token=abc", "dsm_tokenx=abc", "DSM_TOKEN=abc",
                            "dsm-token=abc", "x=dsm_token=abc", "dsm_token", "a=1; dsm_token",
                            "dsm_token abc", "dsm_token=", "dsm_token=  ; b=2"}) {
    EXPECT_EQ(CookieToken(other), std::nullopt) << other;
  }
  EXPECT_EQ(CookieToken("xdsm_token=abc; dsm_token=right"), "right");
  // Malformed values give no token at all.
  for (const char* bad :
       {"dsm_token=%", "dsm_token=abc%", "dsm_token=abc%2", "dsm_token=%zz", "dsm_token=%2G",
        "dsm_token=%%41", "dsm_token=a%20b", "dsm_token=a%00b", "dsm_token=%0d%0a",
        "dsm_token=caf%C3%A9", "dsm_token=a b", "dsm_token=\"abc\"", "dsm_token=a,b",
        "dsm_token=a\\b", "dsm_token=a\x7f"}) {
    EXPECT_EQ(CookieToken(bad), std::nullopt) << bad;
  }
  EXPECT_EQ(CookieToken("dsm_token=" + std::string(http::kMaxTokenBytes, 'a')),
            std::string(http::kMaxTokenBytes, 'a'));
  EXPECT_EQ(CookieToken("dsm_token=" + std::string(3 * http::kMaxTokenBytes + 1, 'a')),
            std::nullopt);
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
  // The dashboard's files need no token; an unknown path does.
  for (const char* p : {"/", "/dashboard", "/dashboard/app.js", "/dashboard/style.css"}) {
    EXPECT_TRUE(both.Check(p, std::nullopt).ok()) << p;
    EXPECT_TRUE(both.Check(p, std::string_view("wrong")).ok()) << p;
  }
  EXPECT_EQ(both.Check("/dashboard/secret", std::nullopt).message(), "client token required");
}

// Credentials of a request with only the given Cookie header.
Credentials WithCookie(const std::string& cookie, bool read) {
  Credentials c;
  c.cookie = cookie;
  c.read = read;
  return c;
}

std::string TokenCookie(const std::string& token) {
  return std::string("theme=dark; dsm_token=") + testing::UrlEncode(token) + "; other=1";
}

TEST(AuthPolicyTest, TheCookieAuthenticatesOnlyReadsOfClientEndpoints) {
  AuthPolicy both(kClusterToken, kClientToken);
  const std::string cookie = TokenCookie(kClientToken);
  // Reads (GET, HEAD) of client endpoints.
  for (const char* p : {"/status", "/messages", "/messages/stream", "/metrics", "//status/"}) {
    EXPECT_TRUE(both.Check(p, WithCookie(cookie, true)).ok()) << p;
    EXPECT_EQ(http::EffectiveToken(p, WithCookie(cookie, true)), kClientToken) << p;
  }
  // A write carries the cookie too, but it does not count.
  Status post = both.Check("/send", WithCookie(cookie, false));
  EXPECT_EQ(post.message(), "client token required");
  EXPECT_EQ(http::EffectiveToken("/send", WithCookie(cookie, false)), std::nullopt);
  // Never for the internal endpoints, not even the cluster token, not even for reads.
  for (const char* p : {"/heartbeat", "/sync", "/replicate", "//heartbeat/"}) {
    EXPECT_EQ(both.Check(p, WithCookie(TokenCookie(kClusterToken), true)).message(),
              "cluster token required")
        << p;
    EXPECT_EQ(http::EffectiveToken(p, WithCookie(TokenCookie(kClusterToken), true)), std::nullopt);
  }
  // A wrong or malformed cookie.
  EXPECT_EQ(both.Check("/status", WithCookie(TokenCookie("wrong"), true)).message(),
            "invalid client token");
  EXPECT_EQ(both.Check("/status", WithCookie("dsm_token=client-SECRET-987654321%", true)).message(),
            "client token required");
  EXPECT_EQ(
      both.Check("/status", WithCookie(std::string("xdsm_token=") + kClientToken, true)).message(),
      "client token required");
  // A header token takes precedence over the cookie, right or wrong.
  Credentials header_wrong = WithCookie(cookie, true);
  header_wrong.header_token = "wrong";
  EXPECT_EQ(both.Check("/status", header_wrong).message(), "invalid client token");
  Credentials header_right = WithCookie(TokenCookie("wrong"), true);
  header_right.header_token = kClientToken;
  EXPECT_TRUE(both.Check("/status", header_right).ok());
  // Headers keep working for writes.
  Credentials header_post;
  header_post.header_token = kClientToken;
  EXPECT_TRUE(both.Check("/send", header_post).ok());
  // Public files need nothing, whatever the cookie says.
  EXPECT_TRUE(both.Check("/dashboard/app.js", WithCookie(TokenCookie("wrong"), true)).ok());
  EXPECT_TRUE(both.Check("/", Credentials{}).ok());
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

TEST_F(AuthServerTest, DashboardFilesArePublicAndTheCookieOpensOnlyReads) {
  Start(kClusterToken, kClientToken);
  // The page and its files, without any token.
  for (const char* p : {"/", "/dashboard", "/dashboard/app.js", "/dashboard/style.css"}) {
    HttpResponse r = Call("GET", p, std::nullopt);
    EXPECT_EQ(r.status, 200) << p << ": " << r.Describe();
    EXPECT_EQ(r.headers.count("www-authenticate"), 0u) << p;
  }
  EXPECT_NE(Call("GET", "/", std::nullopt).body.find("<html"), std::string::npos);
  // A wrong token does not matter there either.
  EXPECT_EQ(Call("GET", "/dashboard/app.js", std::nullopt, {"Authorization: Bearer wrong"}).status,
            200);
  // Everything else still needs the token.
  ExpectUnauthorized(Call("GET", "/status", std::nullopt), "client token required");
  ExpectUnauthorized(Call("GET", "/dashboard/other.js", std::nullopt), "client token required");

  const std::string cookie = "Cookie: theme=dark; dsm_token=" + testing::UrlEncode(kClientToken);
  HttpResponse status = Call("GET", "/status", std::nullopt, {cookie});
  ASSERT_EQ(status.status, 200) << status.Describe();
  EXPECT_EQ(status.body.find("SECRET"), std::string::npos) << status.body;
  EXPECT_EQ(Call("GET", "/messages", std::nullopt, {cookie}).status, 200);
  EXPECT_EQ(Call("GET", "//status/", std::nullopt, {cookie}).status, 200);
  EXPECT_EQ(Call("GET", "/no-such-endpoint", std::nullopt, {cookie}).status, 404);
  // Wrong, similarly named and malformed cookies.
  ExpectUnauthorized(Call("GET", "/status", std::nullopt, {"Cookie: dsm_token=wrong"}),
                     "invalid client token");
  ExpectUnauthorized(
      Call("GET", "/status", std::nullopt, {std::string("Cookie: xdsm_token=") + kClientToken}),
      "client token required");
  ExpectUnauthorized(
      Call("GET", "/status", std::nullopt, {std::string("Cookie: dsm_token=%") + kClientToken}),
      "client token required");
  // A header token wins over the cookie.
  ExpectUnauthorized(Call("GET", "/status", std::nullopt, {cookie, "X-Dsm-Token: wrong"}),
                     "invalid client token");
  EXPECT_EQ(Call("GET", "/status", std::nullopt,
                 {"Cookie: dsm_token=wrong", std::string("Authorization: Bearer ") + kClientToken})
                .status,
            200);

  // A write with only the cookie is refused and stores nothing.
  ExpectUnauthorized(Call("POST", "/send", R"({"payload":"x","msg_id":"cookie-1"})", {cookie}),
                     "client token required");
  EXPECT_EQ(store_.LastSeq(), 0u);
  // The internal endpoints never take the cookie, not even with the cluster token in it.
  const std::string cluster_cookie = "Cookie: dsm_token=" + testing::UrlEncode(kClusterToken);
  ExpectUnauthorized(Call("GET", "/heartbeat", std::nullopt, {cluster_cookie}),
                     "cluster token required");
  ExpectUnauthorized(Call("POST", "/sync", R"({"since":0})", {cluster_cookie}),
                     "cluster token required");
  ExpectUnauthorized(Call("POST", "/replicate", kReplicateBody, {cluster_cookie}),
                     "cluster token required");
  EXPECT_EQ(store_.LastSeq(), 0u);
}

}  // namespace
}  // namespace dsm
