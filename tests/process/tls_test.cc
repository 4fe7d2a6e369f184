// TLS between real dsm-node processes, with a CA and certificates made by `openssl` at run time:
// a cluster of three HTTPS nodes replicates and answers quorum writes; a peer whose certificate
// comes from another CA is refused and shown dead in /status, with the reason; plain HTTP,
// garbage and silent connections on an HTTPS port are closed without disturbing the node (a
// silent one at the header timeout, a failed or abandoned handshake at once); with
// --tls-client-ca a client without an accepted certificate is refused while peers presenting
// theirs replicate; and bad TLS options stop the node with exit code 2.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tests/testing/process.h"

namespace dsm::testing {
namespace {

using std::chrono::milliseconds;

// Runs openssl with `args` in `dir`; fails the test when it does not exit 0.
void OpenSsl(const std::string& dir, std::vector<std::string> args) {
  args.insert(args.begin(), "/usr/bin/openssl");
  RunResult r = RunToExit(args, milliseconds(60000), dir);
  ASSERT_TRUE(r.exit.exited && r.exit.exit_code == 0)
      << args[1] << ": " << r.exit.ToString() << " " << r.err;
}

// Connects to `port`, writes `bytes`, and waits up to `timeout` for the node to close the
// connection (end of stream or reset). True when it did.
bool NodeClosesAfter(uint16_t port, const std::string& bytes, milliseconds timeout) {
  const int fd = ConnectLocal(port);
  if (fd < 0) return false;
  bool closed = false;
  if (send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL) < 0) {
    closed = true;  // already reset
  } else {
    closed = WaitFor(
        [&] {
          char buf[4096];
          const ssize_t got = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
          return got == 0 || (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
        },
        timeout);
  }
  close(fd);
  return closed;
}

// A CA (`name`.pem, `name`.key) in `dir`.
void MakeCa(const std::string& dir, const std::string& name) {
  OpenSsl(dir, {"req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", name + ".key", "-out",
                name + ".pem", "-days", "2", "-subj", "/CN=" + name});
}

// A certificate for 127.0.0.1 and localhost (`name`.pem, `name`.key) signed by CA `ca`, usable by
// a server and as a client certificate.
void MakeCert(const std::string& dir, const std::string& ca, const std::string& name) {
  {
    std::ofstream ext(dir + "/" + name + ".ext");
    ext << "subjectAltName=IP:127.0.0.1,DNS:localhost\n";
  }
  OpenSsl(dir, {"req", "-newkey", "rsa:2048", "-nodes", "-keyout", name + ".key", "-out",
                name + ".csr", "-subj", "/CN=" + name});
  OpenSsl(dir, {"x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem", "-CAkey", ca + ".key",
                "-CAcreateserial", "-out", name + ".pem", "-days", "2", "-extfile", name + ".ext"});
}

class TlsProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(access("/usr/bin/openssl", X_OK), 0) << "openssl is needed (Debian package openssl)";
    MakeCa(dir_.path(), "ca");
    MakeCa(dir_.path(), "other-ca");
    for (const char* name : {"node", "client"}) MakeCert(dir_.path(), "ca", name);
    MakeCert(dir_.path(), "other-ca", "stranger");
  }

  std::string File(const std::string& name) const { return dir_.path() + "/" + name; }
  TlsClient Client(bool with_cert = false) const {
    TlsClient c{File("ca.pem"), "", ""};
    if (with_cert) {
      c.cert_file = File("client.pem");
      c.key_file = File("client.key");
    }
    return c;
  }

  // A node on `port` serving HTTPS with certificate `cert` (of "ca" unless said otherwise),
  // verifying https peers with ca.pem. Not started.
  std::unique_ptr<NodeProcess> Node(const std::string& id, uint16_t port,
                                    const std::vector<uint16_t>& peer_ports,
                                    std::vector<std::string> extra = {},
                                    const std::string& cert = "node") {
    std::string peers;
    for (uint16_t p : peer_ports) {
      peers += (peers.empty() ? "" : ",") + std::string("https://127.0.0.1:") + std::to_string(p);
    }
    // Options given in `extra` replace these defaults.
    const std::vector<std::pair<std::string, std::string>> defaults = {
        {"--heartbeat-interval-ms", "200"},
        {"--heartbeat-timeout-ms", "800"},
        {"--quorum-timeout-ms", "5000"},
        {"--request-timeout-ms", "2000"},
        {"--tls-ca", File("ca.pem")}};
    std::vector<std::string> args = {
        "--host",     "127.0.0.1",         "--port",    std::to_string(port), "--id",
        id,           "--peers",           peers,       "--data-dir",         File("data-" + id),
        "--tls-cert", File(cert + ".pem"), "--tls-key", File(cert + ".key")};
    for (const auto& [name, value] : defaults) {
      if (std::find(extra.begin(), extra.end(), name) != extra.end()) continue;
      args.push_back(name);
      args.push_back(value);
    }
    args.insert(args.end(), extra.begin(), extra.end());
    auto n =
        std::make_unique<NodeProcess>(id, BinaryPath("dsm-node"), args, File(id + ".log"), port);
    n->UseTls(Client());
    return n;
  }

  TempDir dir_;
};

std::string SendBody(const std::string& msg_id) {
  return "{\"msg_id\":" + JsonQuote(msg_id) +
         ",\"sender\":\"s\",\"recipient\":\"r\",\"payload\":\"over tls\"}";
}

bool Holds(const NodeProcess& n, const std::string& msg_id) {
  HttpResponse r = n.Get("/messages?limit=1000", milliseconds(3000));
  return r.status == 200 && r.body.find("\"" + msg_id + "\"") != std::string::npos;
}

// `from`'s /status entry for peer `url`: alive, consecutive_failures (-1 when unreadable) and the
// peer's node id as it last told (empty: it never answered).
struct PeerView {
  bool alive = true;
  int64_t failures = -1;
  std::string node_id = "?";
  std::string pull_problem;
};
PeerView PeerOf(const NodeProcess& from, const std::string& url) {
  PeerView v;
  HttpResponse r = from.Get("/status", milliseconds(3000));
  if (r.status != 200 || !r.json_ok || !r.json.HasMember("peer_status")) return v;
  const rapidjson::Value& ps = r.json["peer_status"];
  auto p = ps.FindMember(url.c_str());
  if (p == ps.MemberEnd() || !p->value.IsObject()) return v;
  v.alive = p->value["alive"].GetBool();
  v.failures = p->value["consecutive_failures"].GetInt64();
  v.node_id = p->value["node_id"].GetString();
  v.pull_problem = p->value["pull_problem"].GetString();
  return v;
}

TEST_F(TlsProcessTest, ClusterOfThreeReplicatesOverHttpsAndAnswersQuorumWrites) {
  std::vector<uint16_t> ports = FreePorts(3);
  std::vector<std::unique_ptr<NodeProcess>> nodes;
  for (size_t i = 0; i < 3; ++i) {
    std::vector<uint16_t> peers;
    for (size_t j = 0; j < 3; ++j) {
      if (j != i) peers.push_back(ports[j]);
    }
    // Quorum 3: a 200 means both peers stored the message, over HTTPS.
    nodes.push_back(Node("t" + std::to_string(i), ports[i], peers,
                         {"--replication_mode", "sync_quorum", "--quorum", "3"}));
  }
  for (auto& n : nodes) ASSERT_TRUE(n->Start().ok());
  for (auto& n : nodes) ASSERT_TRUE(n->WaitUp().ok());
  ASSERT_EQ(nodes[0]->Url().rfind("https://", 0), 0u);

  // Both writers must see both peers alive, or the quorum-3 write is refused at once.
  ASSERT_TRUE(WaitFor(
      [&] {
        return PeerOf(*nodes[0], nodes[1]->Url()).alive &&
               PeerOf(*nodes[0], nodes[2]->Url()).alive &&
               PeerOf(*nodes[2], nodes[0]->Url()).alive && PeerOf(*nodes[2], nodes[1]->Url()).alive;
      },
      milliseconds(20000)));
  HttpResponse sent = nodes[0]->Post("/send", SendBody("tls-q-1"));
  ASSERT_EQ(sent.status, 200) << sent.Describe();
  HttpResponse sent2 = nodes[2]->Post("/send", SendBody("tls-q-2"));
  ASSERT_EQ(sent2.status, 200) << sent2.Describe();
  for (auto& n : nodes) {
    EXPECT_TRUE(
        WaitFor([&] { return Holds(*n, "tls-q-1") && Holds(*n, "tls-q-2"); }, milliseconds(20000)))
        << n->Name();
  }
  // The API is not served in plain HTTP.
  EXPECT_EQ(HttpGet("http://127.0.0.1:" + std::to_string(ports[0]) + "/heartbeat").status, 0);
}

TEST_F(TlsProcessTest, PeerWithCertificateOfAnotherCaIsRefused) {
  std::vector<uint16_t> ports = FreePorts(3);
  // a pushes to b (certificate of the cluster's CA) and to c (certificate of another CA). b and c
  // are up before a starts, so c is never dead for want of a process.
  auto a = Node("a", ports[0], {ports[1], ports[2]});
  auto b = Node("b", ports[1], {});
  auto c = Node("c", ports[2], {}, {}, "stranger");
  c->UseTls(TlsClient{File("other-ca.pem"), "", ""});
  for (auto* n : {b.get(), c.get(), a.get()}) ASSERT_TRUE(n->StartAndWait().ok());

  ASSERT_EQ(a->Post("/send", SendBody("tls-ca-1")).status, 200);
  EXPECT_TRUE(WaitFor([&] { return Holds(*b, "tls-ca-1"); }, milliseconds(20000)));
  EXPECT_TRUE(WaitFor([&] { return PeerOf(*a, b->Url()).alive; }, milliseconds(20000)));
  // Shown dead in a's /status, and why: the pull from c names the certificate (no push to c
  // starts before c has answered once).
  ASSERT_TRUE(WaitFor(
      [&] {
        PeerView v = PeerOf(*a, c->Url());
        return !v.alive && v.failures >= 3 &&
               v.pull_problem.find("TLS: SSL certificate problem") != std::string::npos;
      },
      milliseconds(20000)))
      << "a's /status: " << a->Get("/status").body;
  EXPECT_EQ(PeerOf(*a, b->Url()).pull_problem, "");
  // c never answered a (no node id learnt), so it never got the message.
  EXPECT_EQ(PeerOf(*a, c->Url()).node_id, "");
  EXPECT_FALSE(Holds(*c, "tls-ca-1"));
  // a's log says why.
  std::ifstream log(a->LogPath());
  std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find(c->Url() + ": TLS: SSL certificate problem"), std::string::npos)
      << a->LogTail();
}

TEST_F(TlsProcessTest, PlainHttpGarbageAndSilentConnectionsDoNotStopTheNode) {
  const uint16_t port = FreePort();
  auto n = Node("p", port, {});
  ASSERT_TRUE(n->StartAndWait().ok());

  // Plain HTTP on the HTTPS port: the connection is closed without an HTTP answer.
  std::string answer =
      RawExchange(port, "GET /heartbeat HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(answer.rfind("HTTP/", 0), std::string::npos) << answer;
  // A TLS record header followed by garbage.
  RawExchange(port, std::string("\x16\x03\x01\x00\x20", 5) + std::string(32, 'x'));

  // Connections that never start their handshake do not keep others out.
  std::vector<int> silent;
  for (int i = 0; i < 4; ++i) {
    int fd = ConnectLocal(port, milliseconds(0));
    ASSERT_GE(fd, 0);
    silent.push_back(fd);
  }
  HttpResponse r = n->Get("/heartbeat", milliseconds(5000));
  EXPECT_EQ(r.status, 200) << r.Describe();
  // A silent connection is closed at the header timeout (10 s here), as in plain HTTP.
  const int idle = silent.back();
  silent.pop_back();
  for (int fd : silent) close(fd);
  EXPECT_TRUE(WaitFor(
      [&] {
        char byte;
        const ssize_t got = recv(idle, &byte, 1, MSG_DONTWAIT);
        return got == 0 || (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
      },
      milliseconds(40000)));
  close(idle);

  EXPECT_TRUE(n->Running());
  EXPECT_EQ(n->Post("/send", SendBody("tls-p-1")).status, 200);
  EXPECT_TRUE(Holds(*n, "tls-p-1"));
}

TEST_F(TlsProcessTest, RefusedAndAbandonedHandshakesFreeTheirConnectionAtOnce) {
  const uint16_t port = FreePort();
  // Two connections at most, and a header timeout of 65 s (it is at least the quorum timeout plus
  // 5 s): a connection that the node does not end by itself holds one of the two slots for
  // longer than this test waits.
  auto n = Node("r", port, {}, {"--max-connections", "2", "--quorum-timeout-ms", "60000"});
  ASSERT_TRUE(n->StartAndWait().ok());

  const std::string plain = "GET /heartbeat HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
  // The first bytes of a ClientHello that announces 512 bytes.
  const std::string cut_hello("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11);
  for (int i = 0; i < 3; ++i) {
    // Plain HTTP: the handshake fails and the node closes the connection.
    EXPECT_TRUE(NodeClosesAfter(port, plain, milliseconds(15000))) << "attempt " << i;
    // A client that goes away in the middle of its handshake.
    const int fd = ConnectLocal(port);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(send(fd, cut_hello.data(), cut_hello.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(cut_hello.size()));
    close(fd);
  }
  // Both slots are free again (once the node has seen the last client go).
  EXPECT_TRUE(WaitFor([&] { return n->Get("/heartbeat", milliseconds(3000)).status == 200; },
                      milliseconds(20000)))
      << n->LogTail();
  EXPECT_TRUE(n->Running());
}

TEST_F(TlsProcessTest, MutualTlsRefusesClientsWithoutAnAcceptedCertificate) {
  std::vector<uint16_t> ports = FreePorts(2);
  const std::vector<std::string> mutual = {"--tls-client-ca",    File("ca.pem"),
                                           "--tls-peer-cert",    File("client.pem"),
                                           "--tls-peer-key",     File("client.key"),
                                           "--replication_mode", "sync_quorum",
                                           "--quorum",           "2"};
  auto a = Node("ma", ports[0], {ports[1]}, mutual);
  auto b = Node("mb", ports[1], {ports[0]}, mutual);
  a->UseTls(Client(true));
  b->UseTls(Client(true));
  ASSERT_TRUE(a->StartAndWait().ok());
  ASSERT_TRUE(b->StartAndWait().ok());

  // The peers present their certificates: quorum writes succeed.
  ASSERT_TRUE(WaitFor([&] { return PeerOf(*a, b->Url()).alive; }, milliseconds(20000)));
  HttpResponse sent = a->Post("/send", SendBody("tls-m-1"));
  ASSERT_EQ(sent.status, 200) << sent.Describe();
  EXPECT_TRUE(WaitFor([&] { return Holds(*b, "tls-m-1"); }, milliseconds(20000)));

  HttpRequest req;
  req.url = a->Url() + "/heartbeat";
  req.timeout = milliseconds(5000);
  req.tls = Client(false);
  HttpResponse no_cert = Http(req);
  EXPECT_EQ(no_cert.status, 0) << no_cert.Describe();
  req.tls = TlsClient{File("ca.pem"), File("stranger.pem"), File("stranger.key")};
  HttpResponse wrong_cert = Http(req);
  EXPECT_EQ(wrong_cert.status, 0) << wrong_cert.Describe();
  req.tls = Client(true);
  EXPECT_EQ(Http(req).status, 200);
  EXPECT_TRUE(a->Running());
}

TEST_F(TlsProcessTest, BadTlsOptionsExitWithCode2) {
  const std::string port = std::to_string(FreePort());
  struct Case {
    const char* name;
    std::vector<std::string> args;
    const char* expect;  // in the error line
  };
  const std::vector<Case> cases = {
      {"missing certificate",
       {"--tls-cert", File("absent.pem"), "--tls-key", File("node.key")},
       "--tls-cert"},
      {"key of another certificate",
       {"--tls-cert", File("node.pem"), "--tls-key", File("client.key")},
       "does not match"},
      {"certificate without key", {"--tls-cert", File("node.pem")}, "--tls-key"},
      {"https peer without CA", {"--peers", "https://127.0.0.1:1"}, "--tls-ca"},
      {"CA file that is not PEM", {"--tls-ca", File("node.ext")}, "--tls-ca"},
      {"client CA without certificate", {"--tls-client-ca", File("ca.pem")}, "--tls-cert"},
      {"peer certificate without key", {"--tls-peer-cert", File("client.pem")}, "--tls-peer-key"},
  };
  for (const Case& c : cases) {
    std::vector<std::string> argv = {
        BinaryPath("dsm-node"), "--host",        "127.0.0.1", "--port", port, "--id", "bad",
        "--data-dir",           File("data-bad")};
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    RunResult r = RunToExit(argv, milliseconds(20000));
    EXPECT_TRUE(r.exit.exited && r.exit.exit_code == 2) << c.name << ": " << r.exit.ToString();
    EXPECT_NE(r.err.find(c.expect), std::string::npos) << c.name << ": " << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << c.name << ": " << r.err;
  }
}

}  // namespace
}  // namespace dsm::testing
