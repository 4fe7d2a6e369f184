// Tests of the real-process harness itself (tests/testing/process.h, tcp_proxy.h): the proxy
// forwards, cuts, heals and delays; child processes are started, killed, terminated and reaped;
// the log checker finds what it must. None of this needs dsm-node.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <set>
#include <thread>

#include "common/local_ports.h"
#include "tests/testing/process.h"
#include "tests/testing/tcp_proxy.h"

namespace dsm::testing {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

// A TCP echo server on 127.0.0.1:<ephemeral>, one thread per connection.
class EchoServer {
 public:
  EchoServer() {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    EXPECT_EQ(listen(fd_, 64), 0);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { Accept(); });
  }
  ~EchoServer() {
    stop_ = true;
    shutdown(fd_, SHUT_RDWR);
    thread_.join();
    close(fd_);
    for (auto& t : conns_) t.join();
  }
  uint16_t port() const { return port_; }

 private:
  void Accept() {
    for (;;) {
      int c = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0 || stop_) {
        if (c >= 0) close(c);
        return;
      }
      conns_.emplace_back([this, c] {
        char buf[4096];
        for (;;) {
          pollfd p{c, POLLIN, 0};
          if (poll(&p, 1, 100) == 0) {
            if (stop_) break;
            continue;
          }
          ssize_t n = recv(c, buf, sizeof(buf), 0);
          if (n <= 0) break;
          if (send(c, buf, static_cast<size_t>(n), MSG_NOSIGNAL) != n) break;
        }
        close(c);
      });
    }
  }
  int fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::vector<std::thread> conns_;
};

// Sends `msg` on `fd` and reads up to msg.size() bytes within `timeout`.
std::string EchoOnce(int fd, const std::string& msg, milliseconds timeout) {
  if (send(fd, msg.data(), msg.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(msg.size())) return "";
  std::string got;
  auto deadline = Clock::now() + timeout;
  while (got.size() < msg.size()) {
    auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) break;
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left)) <= 0) break;
    char buf[4096];
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
  }
  return got;
}

TEST(TcpProxyTest, ForwardsBothWays) {
  EchoServer echo;
  TcpProxy proxy(echo.port());
  int fd = ConnectLocal(proxy.port());
  ASSERT_GE(fd, 0);
  EXPECT_EQ(EchoOnce(fd, "hello", milliseconds(5000)), "hello");
  std::string big(300000, 'x');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('a' + i % 26);
  EXPECT_EQ(EchoOnce(fd, big, milliseconds(10000)), big);
  close(fd);
  EXPECT_EQ(proxy.accepted(), 1u);
}

TEST(TcpProxyTest, BlackholeFreezesAndHealResumes) {
  EchoServer echo;
  TcpProxy proxy(echo.port());
  int established = ConnectLocal(proxy.port());
  ASSERT_GE(established, 0);
  ASSERT_EQ(EchoOnce(established, "one", milliseconds(5000)), "one");

  proxy.Cut();
  EXPECT_TRUE(proxy.IsCut());
  // Nothing crosses while cut: neither on the established connection nor on a new one.
  EXPECT_EQ(EchoOnce(established, "two", milliseconds(300)), "");
  int fresh = ConnectLocal(proxy.port());
  ASSERT_GE(fresh, 0);  // accepted, held silent
  EXPECT_EQ(EchoOnce(fresh, "three", milliseconds(300)), "");

  proxy.Heal();
  EXPECT_FALSE(proxy.IsCut());
  // The frozen connection delivers what was held back.
  std::string rest;
  ASSERT_TRUE(WaitFor(
      [&] {
        char buf[64];
        pollfd p{established, POLLIN, 0};
        if (poll(&p, 1, 0) > 0) {
          ssize_t n = recv(established, buf, sizeof(buf), 0);
          if (n > 0) rest.append(buf, static_cast<size_t>(n));
        }
        return rest == "two";
      },
      milliseconds(5000)));
  // The connection accepted while cut was reset so that its client reconnects.
  char buf[16];
  pollfd p{fresh, POLLIN, 0};
  ASSERT_GT(poll(&p, 1, 5000), 0);
  EXPECT_LE(recv(fresh, buf, sizeof(buf), 0), 0);
  close(fresh);
  int again = ConnectLocal(proxy.port());
  ASSERT_GE(again, 0);
  EXPECT_EQ(EchoOnce(again, "four", milliseconds(5000)), "four");
  close(again);
  close(established);
}

TEST(TcpProxyTest, ResetModeClosesConnections) {
  EchoServer echo;
  TcpProxy proxy(echo.port());
  int fd = ConnectLocal(proxy.port());
  ASSERT_GE(fd, 0);
  ASSERT_EQ(EchoOnce(fd, "x", milliseconds(5000)), "x");
  proxy.Cut(TcpProxy::CutMode::kReset);
  char buf[16];
  pollfd p{fd, POLLIN, 0};
  ASSERT_GT(poll(&p, 1, 5000), 0);
  EXPECT_LE(recv(fd, buf, sizeof(buf), 0), 0);
  close(fd);
  // New connections are closed at once, and an HTTP client sees no answer.
  HttpResponse r = HttpGet("http://127.0.0.1:" + std::to_string(proxy.port()) + "/heartbeat",
                           milliseconds(3000));
  EXPECT_EQ(r.status, 0);
  proxy.Heal();
  fd = ConnectLocal(proxy.port());
  ASSERT_GE(fd, 0);
  EXPECT_EQ(EchoOnce(fd, "y", milliseconds(5000)), "y");
  close(fd);
}

TEST(TcpProxyTest, DelayHoldsData) {
  EchoServer echo;
  TcpProxy proxy(echo.port());
  proxy.SetDelay(milliseconds(150));
  int fd = ConnectLocal(proxy.port());
  ASSERT_GE(fd, 0);
  auto t0 = Clock::now();
  EXPECT_EQ(EchoOnce(fd, "slow", milliseconds(10000)), "slow");
  // Held once on the way in and once on the way out.
  EXPECT_GE(Clock::now() - t0, milliseconds(300));
  close(fd);
}

TEST(TcpProxyTest, TargetDownMeansRefused) {
  uint16_t dead_port = FreePort();
  TcpProxy proxy(dead_port);
  HttpResponse r =
      HttpGet("http://127.0.0.1:" + std::to_string(proxy.port()) + "/", milliseconds(3000));
  EXPECT_EQ(r.status, 0);
}

// Ports handed to child processes come from below the kernel's ephemeral range, where no
// outgoing connection can take them before the child binds them, and are distinct and free.
TEST(FreePortsTest, AreDistinctFreeAndBelowTheEphemeralRange) {
  unsigned range_start = 32768, range_end = 60999;
  FILE* f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(fscanf(f, "%u %u", &range_start, &range_end), 2);
  fclose(f);
  const std::vector<uint16_t> ports = FreePorts(8);
  ASSERT_EQ(ports.size(), 8u);
  std::set<uint16_t> distinct(ports.begin(), ports.end());
  EXPECT_EQ(distinct.size(), 8u);
  for (uint16_t port : ports) {
    EXPECT_GE(port, kLowestPickedPort);
    EXPECT_LT(port, range_start) << "a port of the ephemeral range";
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(port);
    EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0) << port;
    close(fd);
  }
}

TEST(NodeProcessTest, StartKillAndLog) {
  TempDir dir;
  NodeProcess p("sh", "/bin/sh", {"-c", "echo started-$0; exec sleep 1000"}, dir.Sub("sh.log"), 0);
  ASSERT_TRUE(p.Start().ok());
  EXPECT_TRUE(p.Running());
  // The log starts with a banner holding the command line; the output itself follows.
  ASSERT_TRUE(WaitFor([&] { return p.LogTail().find("started-/bin/sh") != std::string::npos; },
                      milliseconds(10000)));
  pid_t pid = p.Pid();
  ExitInfo e = p.Kill();
  EXPECT_FALSE(e.exited);
  EXPECT_EQ(e.signal, SIGKILL);
  EXPECT_FALSE(p.Running());
  EXPECT_NE(kill(pid, 0), 0);  // reaped: the pid is gone
  // Restarting appends to the same log.
  ASSERT_TRUE(p.Start().ok());
  ASSERT_TRUE(WaitFor(
      [&] {
        std::string log = p.LogTail();
        return log.find("started-/bin/sh") != log.rfind("started-/bin/sh");
      },
      milliseconds(10000)));
}

TEST(NodeProcessTest, TerminateReportsExitCode) {
  TempDir dir;
  NodeProcess p("sh", "/bin/sh",
                {"-c", "trap 'exit 7' TERM; echo re''ady; while :; do sleep 0.05; done"},
                dir.Sub("sh.log"), 0);
  ASSERT_TRUE(p.Start().ok());
  ASSERT_TRUE(
      WaitFor([&] { return p.LogTail().find("ready") != std::string::npos; }, milliseconds(10000)));
  ExitInfo e = p.Terminate();
  EXPECT_TRUE(e.exited);
  EXPECT_EQ(e.exit_code, 7);
}

TEST(NodeProcessTest, WaitUpFailsWhenTheProcessExits) {
  TempDir dir;
  NodeProcess p("sh", "/bin/sh", {"-c", "echo bad option >&2; exit 2"}, dir.Sub("sh.log"),
                FreePort());
  Status s = p.StartAndWait(milliseconds(20000));
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("exit 2"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("bad option"), std::string::npos) << s.message();
}

TEST(NodeProcessTest, DestructorKillsTheChild) {
  TempDir dir;
  pid_t pid;
  {
    NodeProcess p("sh", "/bin/sh", {"-c", "exec sleep 1000"}, dir.Sub("sh.log"), 0);
    ASSERT_TRUE(p.Start().ok());
    pid = p.Pid();
    EXPECT_EQ(kill(pid, 0), 0);
  }
  EXPECT_NE(kill(pid, 0), 0);
}

TEST(RunToExitTest, CapturesOutputAndCode) {
  RunResult r = RunToExit({"/bin/sh", "-c", "echo out; echo err >&2; exit 3"});
  EXPECT_TRUE(r.exit.exited);
  EXPECT_EQ(r.exit.exit_code, 3);
  EXPECT_EQ(r.out, "out\n");
  EXPECT_EQ(r.err, "err\n");
  EXPECT_FALSE(r.timed_out);

  RunResult slow = RunToExit({"/bin/sh", "-c", "exec sleep 1000"}, milliseconds(200));
  EXPECT_TRUE(slow.timed_out);
  EXPECT_EQ(slow.exit.signal, SIGKILL);
}

TEST(HarnessTest, TempDirIsRemoved) {
  std::string path;
  {
    TempDir dir;
    path = dir.path();
    ASSERT_TRUE(std::filesystem::is_directory(path));
    std::filesystem::create_directories(dir.Sub("a/b"));
  }
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST(HarnessTest, HttpToAClosedPortIsNoAnswer) {
  HttpResponse r =
      HttpGet("http://127.0.0.1:" + std::to_string(FreePort()) + "/", milliseconds(2000));
  EXPECT_EQ(r.status, 0);
  EXPECT_FALSE(r.error.empty());
}

TEST(HarnessTest, UrlEncodeAndJsonQuote) {
  EXPECT_EQ(UrlEncode("a b&c/é~"), "a%20b%26c%2F%C3%A9~");
  EXPECT_EQ(JsonQuote("a\"b\n"), "\"a\\\"b\\n\"");
}

rapidjson::Document ParseJson(const char* text) {
  rapidjson::Document d;
  d.Parse(text);
  EXPECT_FALSE(d.HasParseError()) << text;
  return d;
}

TEST(CheckLogTest, CleanLog) {
  auto d = ParseJson(R"([{"seq":1,"msg_id":"a","origin":"n1@x","origin_seq":1},
                         {"seq":2,"msg_id":"b","origin":"n2@y","origin_seq":1},
                         {"seq":3,"msg_id":"c","origin":"n1@x","origin_seq":2}])");
  LogCheck c = CheckLog(d);
  EXPECT_TRUE(c.Clean()) << c.Summary();
  EXPECT_EQ(c.msg_ids, (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(c.seq_of.at("c"), 3u);
  EXPECT_EQ(c.origin_high.at("n1@x"), 2u);
}

TEST(CheckLogTest, FindsEachKindOfDamage) {
  auto gap_seq = ParseJson(R"([{"seq":1,"msg_id":"a","origin":"o","origin_seq":1},
                               {"seq":3,"msg_id":"b","origin":"o","origin_seq":2}])");
  EXPECT_EQ(CheckLog(gap_seq).problems.size(), 1u);
  auto dup = ParseJson(R"([{"seq":1,"msg_id":"a","origin":"o","origin_seq":1},
                           {"seq":2,"msg_id":"a","origin":"p","origin_seq":1}])");
  EXPECT_EQ(CheckLog(dup).problems.size(), 1u);
  auto reorder = ParseJson(R"([{"seq":1,"msg_id":"a","origin":"o","origin_seq":2},
                               {"seq":2,"msg_id":"b","origin":"o","origin_seq":1}])");
  LogCheck r = CheckLog(reorder);
  EXPECT_FALSE(r.problems.empty());
  EXPECT_FALSE(r.origin_gaps.empty());  // starts at 2
  auto hole = ParseJson(R"([{"seq":1,"msg_id":"a","origin":"o","origin_seq":1},
                            {"seq":2,"msg_id":"b","origin":"o","origin_seq":3}])");
  LogCheck h = CheckLog(hole);
  EXPECT_TRUE(h.problems.empty());
  EXPECT_EQ(h.origin_gaps.size(), 1u);
  auto missing = ParseJson(R"([{"seq":1,"msg_id":"a"}])");
  EXPECT_FALSE(CheckLog(missing).problems.empty());
}

}  // namespace
}  // namespace dsm::testing
