// Table-driven tests of the dsm-node command line: the seed's command lines, defaults, every new
// option, and the invalid combinations that must stop the node with a one-line reason.
#include "common/peer_url.h"
#include "src/node/command_line.h"

#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <string>
#include <vector>

namespace dsm {
namespace {

using std::chrono::milliseconds;

Result<NodeConfig> Parse(std::vector<std::string> args) {
  std::vector<const char*> argv = {"dsm-node"};
  for (const std::string& a : args) argv.push_back(a.c_str());
  return ParseCommandLine(static_cast<int>(argv.size()), argv.data());
}

struct ValidCase {
  const char* name;
  std::vector<std::string> args;
  std::function<void(const NodeConfig&)> check;
};

TEST(CommandLineTest, ValidCommandLines) {
  const ValidCase cases[] = {
      {"seed node1",
       {"--port", "8000", "--id", "node1", "--peers",
        "http://127.0.0.1:8001,http://127.0.0.1:8002"},
       [](const NodeConfig& c) {
         const NodeOptions& o = c.node;
         EXPECT_EQ(o.id, "node1");
         EXPECT_EQ(o.port, 8000);
         EXPECT_EQ(o.host, "127.0.0.1");
         EXPECT_EQ(o.peers,
                   (std::vector<std::string>{"http://127.0.0.1:8001", "http://127.0.0.1:8002"}));
         EXPECT_EQ(o.mode, ReplicationMode::kAsync);
         EXPECT_EQ(o.quorum, 2);
         EXPECT_EQ(o.data_dir, "./data/node1");
         EXPECT_TRUE(o.fsync);
         EXPECT_EQ(o.max_message_bytes, 1048576u);
         EXPECT_EQ(o.heartbeat_interval, milliseconds(2000));
         EXPECT_EQ(o.heartbeat_timeout, milliseconds(6000));
         EXPECT_EQ(o.quorum_timeout, milliseconds(5000));
         EXPECT_EQ(o.anti_entropy_interval, milliseconds(10000));
         EXPECT_EQ(o.request_timeout, milliseconds(5000));
         EXPECT_EQ(c.http_threads, 4);
         EXPECT_EQ(c.log_level, "info");
         EXPECT_FALSE(c.help);
       }},
      {"seed node4 quorum",
       {"--port", "8003", "--id", "node4", "--peers",
        "http://127.0.0.1:8000,http://127.0.0.1:8001,http://127.0.0.1:8002", "--replication_mode",
        "sync_quorum", "--quorum", "3"},
       [](const NodeConfig& c) {
         EXPECT_EQ(c.node.mode, ReplicationMode::kSyncQuorum);
         EXPECT_EQ(c.node.quorum, 3);
         EXPECT_EQ(c.node.peers.size(), 3u);
       }},
      {"quorum equal to the cluster size",
       {"--id", "n", "--peers", "http://127.0.0.1:9001", "--replication_mode", "sync_quorum",
        "--quorum", "2"},
       [](const NodeConfig& c) { EXPECT_EQ(c.node.quorum, 2); }},
      {"sync_quorum of one without peers",
       {"--id", "n", "--replication_mode", "sync_quorum", "--quorum", "1"},
       [](const NodeConfig& c) { EXPECT_EQ(c.node.quorum, 1); }},
      {"solo async node keeps the default quorum",
       {"--id", "solo", "--peers", ""},
       [](const NodeConfig& c) {
         EXPECT_TRUE(c.node.peers.empty());
         EXPECT_EQ(c.node.quorum, 2);
       }},
      {"no --peers at all",
       {"--id", "solo"},
       [](const NodeConfig& c) { EXPECT_TRUE(c.node.peers.empty()); }},
      {"dashed mode alias and equals syntax",
       {"--id=n", "--replication-mode=sync_quorum", "--quorum=1"},
       [](const NodeConfig& c) { EXPECT_EQ(c.node.mode, ReplicationMode::kSyncQuorum); }},
      {"peer list with spaces, stray commas and a trailing slash",
       {"--id", "n", "--peers", " http://127.0.0.1:8001/ , ,http://localhost:8002,"},
       [](const NodeConfig& c) {
         EXPECT_EQ(c.node.peers,
                   (std::vector<std::string>{"http://127.0.0.1:8001", "http://localhost:8002"}));
       }},
      {"peer host names and IPv6",
       {"--id", "n", "--peers", "http://node-2.example.com:80,http://[::1]:9000"},
       [](const NodeConfig& c) {
         EXPECT_EQ(c.node.peers,
                   (std::vector<std::string>{"http://node-2.example.com:80", "http://[::1]:9000"}));
       }},
      {"same port on another host is not this node",
       {"--id", "n", "--port", "8000", "--peers", "http://10.0.0.2:8000"},
       [](const NodeConfig& c) { EXPECT_EQ(c.node.peers.size(), 1u); }},
      {"every new option",
       {"--id",
        "n",
        "--host",
        "0.0.0.0",
        "--port",
        "9100",
        "--data-dir",
        "/tmp/x",
        "--fsync",
        "never",
        "--max-message-bytes",
        "2048",
        "--heartbeat-interval-ms",
        "100",
        "--heartbeat-timeout-ms",
        "300",
        "--quorum-timeout-ms",
        "700",
        "--anti-entropy-interval-ms",
        "900",
        "--request-timeout-ms",
        "500",
        "--push-window",
        "8",
        "--push-window-mb",
        "64",
        "--http-threads",
        "2",
        "--memory-mb",
        "64",
        "--log-level",
        "debug"},
       [](const NodeConfig& c) {
         const NodeOptions& o = c.node;
         EXPECT_EQ(o.host, "0.0.0.0");
         EXPECT_EQ(o.port, 9100);
         EXPECT_EQ(o.data_dir, "/tmp/x");
         EXPECT_FALSE(o.fsync);
         EXPECT_EQ(o.max_message_bytes, 2048u);
         EXPECT_EQ(o.heartbeat_interval, milliseconds(100));
         EXPECT_EQ(o.heartbeat_timeout, milliseconds(300));
         EXPECT_EQ(o.quorum_timeout, milliseconds(700));
         EXPECT_EQ(o.anti_entropy_interval, milliseconds(900));
         EXPECT_EQ(o.request_timeout, milliseconds(500));
         EXPECT_EQ(o.connect_timeout, milliseconds(500));  // never longer than a request
         EXPECT_EQ(o.push_window, 8u);
         EXPECT_EQ(o.push_window_bytes, size_t{64} << 20);
         EXPECT_EQ(c.http_threads, 2);
         EXPECT_EQ(c.log_level, "debug");
         EXPECT_EQ(c.memory_budget_bytes, uint64_t{64} << 20);
       }},
      {"help",
       {"--help"},
       [](const NodeConfig& c) {
         EXPECT_TRUE(c.help);
         EXPECT_NE(c.help_text.find("--replication_mode"), std::string::npos);
         EXPECT_NE(c.help_text.find("--data-dir"), std::string::npos);
       }},
  };
  for (const ValidCase& c : cases) {
    SCOPED_TRACE(c.name);
    Result<NodeConfig> r = Parse(c.args);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    c.check(*r);
  }
}

struct InvalidCase {
  const char* name;
  std::vector<std::string> args;
  const char* reason_part;  // expected inside the one-line reason
};

TEST(CommandLineTest, EdgeOptions) {
  Result<NodeConfig> d = Parse({"--id", "n"});
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->max_connections_per_ip, 64);
  EXPECT_EQ(d->max_header_bytes, size_t{16384});
  EXPECT_EQ(d->max_inflight_body_bytes, uint64_t{128} << 20);
  EXPECT_EQ(d->memory_budget_bytes, uint64_t{256} << 20);
  EXPECT_TRUE(d->allowed_hosts.empty());
  Result<NodeConfig> r =
      Parse({"--id", "n", "--max-connections-per-ip", "0", "--max-header-bytes", "4096",
             "--max-inflight-body-mb", "16", "--allowed-hosts", " dsm.Example ,[::1],, b-2 "});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->max_connections_per_ip, 0);
  EXPECT_EQ(r->max_header_bytes, size_t{4096});
  EXPECT_EQ(r->max_inflight_body_bytes, uint64_t{16} << 20);
  EXPECT_EQ(r->allowed_hosts, (std::vector<std::string>{"dsm.example", "::1", "b-2"}));
}

TEST(CommandLineTest, TlsOptions) {
  Result<NodeConfig> d = Parse({"--id", "n"});
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_FALSE(d->tls.serving());
  Result<NodeConfig> r =
      Parse({"--id", "n", "--peers", "https://127.0.0.1:9001/,http://127.0.0.1:9002", "--tls-cert",
             "n.pem", "--tls-key", "n.key", "--tls-ca", "ca.pem", "--tls-client-ca", "cca.pem",
             "--tls-peer-cert", "p.pem", "--tls-peer-key", "p.key"});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->tls.serving());
  EXPECT_EQ(r->tls.cert_file, "n.pem");
  EXPECT_EQ(r->tls.key_file, "n.key");
  EXPECT_EQ(r->tls.ca_file, "ca.pem");
  EXPECT_EQ(r->tls.client_ca_file, "cca.pem");
  EXPECT_EQ(r->tls.peer_cert_file, "p.pem");
  EXPECT_EQ(r->tls.peer_key_file, "p.key");
  EXPECT_EQ(r->node.peers,
            (std::vector<std::string>{"https://127.0.0.1:9001", "http://127.0.0.1:9002"}));
}

TEST(CommandLineTest, InvalidCommandLines) {
  const std::vector<std::string> two_peers = {"--peers",
                                              "http://127.0.0.1:8001,http://127.0.0.1:8002"};
  auto with_peers = [&](std::vector<std::string> args) {
    args.insert(args.end(), two_peers.begin(), two_peers.end());
    return args;
  };
  const InvalidCase cases[] = {
      {"missing id", {"--port", "8000"}, "--id is required"},
      {"empty id", {"--id", ""}, "--id '' must be"},
      {"id with a slash", {"--id", "../x"}, "must be 1..64 letters"},
      {"id with @", {"--id", "a@b"}, "must be 1..64 letters"},
      {"port zero", {"--id", "n", "--port", "0"}, "--port 0 must be between 1 and 65535"},
      {"port too big", {"--id", "n", "--port", "70000"}, "--port 70000 must be between"},
      {"port not a number", {"--id", "n", "--port", "abc"}, "--port"},
      {"unknown mode",
       {"--id", "n", "--replication_mode", "eventual"},
       "--replication_mode 'eventual' is unknown"},
      {"quorum zero", {"--id", "n", "--quorum", "0"}, "--quorum 0 must be at least 1"},
      {"quorum negative", {"--id", "n", "--quorum", "-2"}, "--quorum -2 must be at least 1"},
      {"quorum above peers + 1",
       with_peers({"--id", "n", "--replication_mode", "sync_quorum", "--quorum", "4"}),
       "--quorum 4 is more than the 3 nodes of the cluster (2 peers + this one)"},
      {"sync_quorum default quorum without peers",
       {"--id", "n", "--replication_mode", "sync_quorum"},
       "--quorum 2 is more than the 1 node of the cluster (no peers)"},
      {"quorum above one peer + 1",
       {"--id", "n", "--peers", "http://127.0.0.1:9001", "--replication_mode", "sync_quorum",
        "--quorum", "3"},
       "--quorum 3 is more than the 2 nodes of the cluster (1 peer + this one)"},
      {"peer without scheme",
       {"--id", "n", "--peers", "127.0.0.1:8001"},
       "malformed peer URL '127.0.0.1:8001': expected http://host:port"},
      {"https peer without a CA",
       {"--id", "n", "--peers", "https://127.0.0.1:8001"},
       "peer https://127.0.0.1:8001 uses https: --tls-ca must name the CA"},
      {"other scheme", {"--id", "n", "--peers", "ftp://127.0.0.1:8001"}, "malformed peer URL"},
      {"certificate without key",
       {"--id", "n", "--tls-cert", "n.pem"},
       "--tls-cert and --tls-key must be given together"},
      {"key without certificate",
       {"--id", "n", "--tls-key", "n.key"},
       "--tls-cert and --tls-key must be given together"},
      {"peer certificate without key",
       {"--id", "n", "--tls-peer-cert", "p.pem"},
       "--tls-peer-cert and --tls-peer-key must be given together"},
      {"client CA without HTTPS",
       {"--id", "n", "--tls-client-ca", "ca.pem"},
       "--tls-client-ca needs --tls-cert and --tls-key"},
      {"peer without port", {"--id", "n", "--peers", "http://127.0.0.1"}, "malformed peer URL"},
      {"peer with path", {"--id", "n", "--peers", "http://127.0.0.1:8001/x"}, "malformed peer URL"},
      {"peer port zero", {"--id", "n", "--peers", "http://127.0.0.1:0"}, "malformed peer URL"},
      {"peer port too big",
       {"--id", "n", "--peers", "http://127.0.0.1:65536"},
       "malformed peer URL"},
      {"peer with user info",
       {"--id", "n", "--peers", "http://u@127.0.0.1:8001"},
       "malformed peer URL"},
      {"peer with a space inside",
       {"--id", "n", "--peers", "http://127.0.0.1 :8001"},
       "malformed peer URL"},
      {"peer is ourselves",
       {"--id", "n", "--port", "8000", "--peers", "http://127.0.0.1:8000"},
       "peer http://127.0.0.1:8000 is this node itself"},
      {"peer is ourselves via localhost",
       {"--id", "n", "--port", "8000", "--peers", "http://localhost:8000"},
       "is this node itself"},
      {"peer is ourselves on a wildcard host",
       {"--id", "n", "--host", "0.0.0.0", "--port", "8000", "--peers", "http://127.0.0.1:8000"},
       "is this node itself"},
      {"duplicate peer",
       {"--id", "n", "--peers", "http://127.0.0.1:8001,http://127.0.0.1:8001/"},
       "peer http://127.0.0.1:8001 is listed twice"},
      {"unknown fsync", {"--id", "n", "--fsync", "sometimes"}, "--fsync 'sometimes' is unknown"},
      {"max message bytes zero",
       {"--id", "n", "--max-message-bytes", "0"},
       "--max-message-bytes 0 must be between 1 and"},
      {"max message bytes huge",
       {"--id", "n", "--max-message-bytes", "1000000000"},
       "--max-message-bytes 1000000000 must be between"},
      {"heartbeat interval zero",
       {"--id", "n", "--heartbeat-interval-ms", "0"},
       "--heartbeat-interval-ms 0 must be between 1 and"},
      {"negative request timeout",
       {"--id", "n", "--request-timeout-ms", "-5"},
       "--request-timeout-ms -5 must be between"},
      {"heartbeat timeout below interval",
       {"--id", "n", "--heartbeat-interval-ms", "2000", "--heartbeat-timeout-ms", "1000"},
       "--heartbeat-timeout-ms 1000 must be at least --heartbeat-interval-ms 2000"},
      {"push window zero",
       {"--id", "n", "--push-window", "0"},
       "--push-window 0 must be between 1 and 64"},
      {"push window bytes zero",
       {"--id", "n", "--push-window-mb", "0"},
       "--push-window-mb 0 must be between 1 and 4096"},
      {"http threads zero",
       {"--id", "n", "--http-threads", "0"},
       "--http-threads 0 must be between 1 and 64"},
      {"unknown log level", {"--id", "n", "--log-level", "loud"}, "--log-level 'loud' is unknown"},
      {"unknown option", {"--id", "n", "--frobnicate", "1"}, "frobnicate"},
      {"positional argument", {"--id", "n", "extra"}, "extra"},
      {"empty host", {"--id", "n", "--host", " "}, "--host must not be empty"},
      // An empty token once silently turned authentication off.
      {"empty client token", {"--id", "n", "--client-token", ""}, "--client-token must not be empty"},
      {"empty cluster token",
       {"--id", "n", "--cluster-token", ""},
       "--cluster-token must not be empty"},
      {"max header bytes too small",
       {"--id", "n", "--max-header-bytes", "100"},
       "--max-header-bytes 100 must be between 1024 and 1048576"},
      {"negative per-address cap",
       {"--id", "n", "--max-connections-per-ip", "-1"},
       "--max-connections-per-ip -1 must be between 0"},
      {"negative body budget",
       {"--id", "n", "--max-inflight-body-mb", "-1"},
       "--max-inflight-body-mb -1 must be between 0"},
      {"allowed host with a scheme",
       {"--id", "n", "--allowed-hosts", "http://x"},
       "--allowed-hosts: 'http://x' is not a host name"},
      {"memory budget below the minimum",
       {"--id", "n", "--memory-mb", "31"},
       "--memory-mb 31 must be between 32 and 1048576"},
      {"memory budget zero", {"--id", "n", "--memory-mb", "0"}, "--memory-mb 0 must be between"},
      {"memory budget too large",
       {"--id", "n", "--memory-mb", "2000000"},
       "--memory-mb 2000000 must be between"},
      {"memory budget not a number", {"--id", "n", "--memory-mb", "lots"}, "--memory-mb"},
  };
  for (const InvalidCase& c : cases) {
    SCOPED_TRACE(c.name);
    Result<NodeConfig> r = Parse(c.args);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
    const std::string& msg = r.status().message();
    EXPECT_NE(msg.find(c.reason_part), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "reason must be one line: " << msg;
    EXPECT_FALSE(msg.empty());
  }
}

TEST(NormalizePeerUrlTest, Table) {
  struct Case {
    const char* in;
    const char* out;  // nullptr = malformed
  } cases[] = {
      {"http://127.0.0.1:8001", "http://127.0.0.1:8001"},
      {"http://127.0.0.1:8001/", "http://127.0.0.1:8001"},
      {"http://host_1.local:1", "http://host_1.local:1"},
      {"http://[fe80::1]:65535", "http://[fe80::1]:65535"},
      {"https://db1.example.com:8443/", "https://db1.example.com:8443"},
      {"https://[::1]:1", "https://[::1]:1"},
      {"https://:8001", nullptr},
      {"ftp://127.0.0.1:8001", nullptr},
      {"HTTPS://127.0.0.1:8001", nullptr},
      {"http://:8001", nullptr},
      {"http://[]:8001", nullptr},
      {"http://[::1]8001", nullptr},
      {"http://127.0.0.1:80a", nullptr},
      {"http://127.0.0.1:123456", nullptr},
      {"http://127.0.0.1:8001//", nullptr},
      {"HTTP://127.0.0.1:8001", nullptr},
      {"", nullptr},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.in);
    Result<std::string> r = NormalizePeerUrl(c.in);
    if (c.out == nullptr) {
      EXPECT_FALSE(r.ok());
    } else {
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      EXPECT_EQ(*r, c.out);
    }
  }
}

}  // namespace
}  // namespace dsm
