// Real-process test harness: temporary directories, free ports, a small blocking HTTP client on
// libcurl, raw-socket helpers, `NodeProcess` (one dsm-node child process with its log file),
// `TestCluster` (a topology of nodes, optionally wired through fault-injecting TCP proxies) and
// condition polling with deadlines.
//
// Every process a NodeProcess starts is killed and reaped by its destructor, also when a test
// fails; children additionally die with the thread that spawned them (PR_SET_PDEATHSIG), so a
// test binary killed by a timeout leaves nothing behind. Spawn nodes from the test's main thread:
// a node spawned from a worker thread dies when that thread exits.
//
// Thread safety: the free functions are thread-safe. A NodeProcess or TestCluster is used from one
// thread, except Url()/Port()/Name() which are immutable after construction and may be read from
// any thread (client threads may send to nodes while the main thread kills and restarts them).
#pragma once

#include <rapidjson/document.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "dsm/status.h"

namespace dsm::testing {

class TcpProxy;

using Millis = std::chrono::milliseconds;

// A fresh directory under $TMPDIR (or /tmp), removed recursively with its contents on
// destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  // path() + "/" + name (not created).
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Removes a file or directory tree; missing paths are fine.
void RemoveTree(const std::string& path);

// A TCP port on 127.0.0.1 that was free a moment ago, below the kernel's ephemeral range
// (common/local_ports.h).
uint16_t FreePort();
// `n` distinct such ports; all 0 when they could not be found.
std::vector<uint16_t> FreePorts(size_t n);

// Directory of the built executables: $DSM_BIN_DIR (set by ctest through dsm_add_test), else
// "../bin" next to the running test executable.
std::string BinDir();
// BinDir() + "/" + name.
std::string BinaryPath(const std::string& name);

// The value of environment variable DSM_TEST_SEED when set, else a random seed. Prints the seed
// so that a failing run can be replayed.
uint64_t TestSeed();

// ---------------------------------------------------------------------------------------------
// HTTP client (libcurl easy interface, one connection per request).

struct HttpResponse {
  long status = 0;    // 0 = no HTTP answer (refused, reset, timeout)
  std::string error;  // libcurl's error text when status == 0
  std::string body;
  std::map<std::string, std::string> headers;  // names lower-cased; last value wins
  rapidjson::Document json;                    // parsed body; json_ok tells whether it parsed
  bool json_ok = false;

  // Convenience accessors on the parsed body (an absent or mistyped member gives the default).
  std::string Str(const char* member) const;
  int64_t Int(const char* member, int64_t dflt = -1) const;
  bool IsError() const;  // {"status":"error","reason":<non-empty string>}
  // "503 {...}" (body cut to 300 bytes), for assertion messages.
  std::string Describe() const;
};

// What an https:// request verifies the server with and presents to it (PEM files; empty = none).
struct TlsClient {
  std::string ca_file;  // the server's certificate must be signed by this CA
  std::string cert_file;
  std::string key_file;
};

struct HttpRequest {
  std::string method = "GET";
  std::string url;
  std::optional<std::string> body;  // sent verbatim (may hold any bytes) when set
  Millis timeout{10000};
  std::vector<std::string> headers;  // extra "Name: value" lines
  TlsClient tls;                     // https:// URLs
};

HttpResponse Http(const HttpRequest& request);
HttpResponse HttpGet(const std::string& url, Millis timeout = Millis(10000));
HttpResponse HttpPost(const std::string& url, const std::string& body,
                      Millis timeout = Millis(10000));

// Percent-encodes every byte outside [A-Za-z0-9-._~].
std::string UrlEncode(const std::string& s);
// A JSON string literal (with quotes) for `s`.
std::string JsonQuote(const std::string& s);

// ---------------------------------------------------------------------------------------------
// Raw sockets.

// Connects to 127.0.0.1:port; returns the fd or -1. The caller closes it.
// From `source` (an address of 127.0.0.0/8); a zero timeout leaves sends and receives blocking.
int ConnectLocal(uint16_t port, Millis timeout = Millis(3000), const char* source = "127.0.0.1");
// Connects, writes `bytes` (as much as the peer accepts), then reads until the peer closes, the
// timeout passes, or `max_read` bytes arrived. Returns what was read (empty if nothing).
std::string RawExchange(uint16_t port, const std::string& bytes, Millis timeout = Millis(3000),
                        size_t max_read = 1 << 20);

// ---------------------------------------------------------------------------------------------
// Polling.

// Calls `pred` every `step` until it returns true (-> true) or `timeout` passed (-> false).
bool WaitFor(const std::function<bool()>& pred, Millis timeout, Millis step = Millis(50));

// ---------------------------------------------------------------------------------------------
// One dsm-node (or any executable) as a child process.

struct ExitInfo {
  bool exited = false;  // exited normally (then exit_code) or by a signal (then signal)
  int exit_code = -1;
  int signal = 0;
  std::string ToString() const;  // "exit 0", "signal 9"
};

struct RunResult {
  ExitInfo exit;
  bool timed_out = false;  // killed after the deadline
  std::string out;
  std::string err;
};

// Runs `argv` (argv[0] is the executable path) to completion with stdout and stderr captured
// separately, killing it after `timeout`, in the working directory `cwd` (empty: a scratch
// directory of its own, removed afterwards).
RunResult RunToExit(const std::vector<std::string>& argv, Millis timeout = Millis(20000),
                    const std::string& cwd = "");

class NodeProcess {
 public:
  // `args` follow the executable path (e.g. {"--port","8000","--id","node1",...}). stdout and
  // stderr of every incarnation are appended to `log_path`.
  NodeProcess(std::string name, std::string executable, std::vector<std::string> args,
              std::string log_path, uint16_t port);
  ~NodeProcess();  // kills (SIGKILL) and reaps; dumps the log tail if the test has failed
  NodeProcess(const NodeProcess&) = delete;
  NodeProcess& operator=(const NodeProcess&) = delete;

  const std::string& Name() const { return name_; }
  uint16_t Port() const { return port_; }
  const std::string& Url() const { return url_; }  // "http://127.0.0.1:<port>"
  // The node serves HTTPS: Url() becomes "https://127.0.0.1:<port>", and WaitUp, Get and Post
  // verify it (and present a certificate) with `client`.
  void UseTls(TlsClient client);
  const std::string& LogPath() const { return log_path_; }
  std::vector<std::string>& Args() { return args_; }  // changes apply to the next Start()

  // Spawns the process. REQUIRES: not running.
  Status Start();
  // Polls GET /heartbeat until it answers 200. Fails early (with the log tail) if the process
  // exits, and at the deadline.
  Status WaitUp(Millis timeout = Millis(20000));
  // Start() + WaitUp().
  Status StartAndWait(Millis timeout = Millis(20000));

  // True while the child has not exited (reaps it if it has).
  bool Running();
  pid_t Pid() const { return pid_; }

  // SIGKILL, then waits for the exit. No-op when not running.
  ExitInfo Kill();
  // SIGTERM, then waits up to `grace`; SIGKILL after that (ExitInfo then shows signal 9).
  ExitInfo Terminate(Millis grace = Millis(15000));
  // Waits up to `timeout` for the child to exit by itself.
  std::optional<ExitInfo> WaitExit(Millis timeout);
  // Kill() + StartAndWait().
  Status Restart(Millis timeout = Millis(20000));
  // The exit of the last incarnation that ended.
  const ExitInfo& LastExit() const { return last_exit_; }

  // The last `max_bytes` of the log file.
  std::string LogTail(size_t max_bytes = 4096) const;

  // HTTP helpers on this node.
  HttpResponse Get(const std::string& path, Millis timeout = Millis(10000)) const;
  HttpResponse Post(const std::string& path, const std::string& body,
                    Millis timeout = Millis(10000)) const;

 private:
  void Reap(int wait_status);

  std::string name_;
  std::string executable_;
  std::vector<std::string> args_;
  std::string log_path_;
  uint16_t port_;
  std::string url_;
  TlsClient tls_;
  pid_t pid_ = -1;
  ExitInfo last_exit_;
};

// ---------------------------------------------------------------------------------------------
// Log checks.

// What one node's full listing shows, and what is wrong with it.
struct LogCheck {
  std::vector<std::string> msg_ids;        // in log order
  std::map<std::string, uint64_t> seq_of;  // msg_id -> seq (first occurrence)
  // Problems: seqs not dense from 1, repeated msg_ids, an origin stream out of order
  // (origin_seq not increasing), missing fields.
  std::vector<std::string> problems;
  // An origin stream whose visible origin_seqs skip a number or do not start at 1. Always a
  // defect, except where one msg_id was accepted by two nodes: the copy that arrives second only
  // consumes its stream position, which then shows as a hole.
  std::vector<std::string> origin_gaps;
  std::map<std::string, uint64_t> origin_high;  // origin -> highest origin_seq listed

  bool Clean() const { return problems.empty() && origin_gaps.empty(); }
  std::string Summary() const;  // the first problems, for assertion messages
};
// Checks the "messages" array of a /messages answer.
LogCheck CheckLog(const rapidjson::Value& messages);

// GET /messages (full streamed listing) of `url`; problems gets a note when the listing fails.
LogCheck FetchAndCheckLog(const std::string& url, Millis timeout = Millis(60000));

// ---------------------------------------------------------------------------------------------
// A cluster of dsm-nodes.

struct NodeSpec {
  std::string id;
  std::vector<int> peers;      // indexes into the cluster's node list
  std::string mode = "async";  // "async" | "sync_quorum"
  int quorum = 2;
  std::vector<std::string> extra_args;
};

struct ClusterOptions {
  // Route every peer link i -> j through its own TcpProxy so links can be cut one way.
  bool use_proxies = false;
  // Fast failure detection and repair for tests.
  int heartbeat_interval_ms = 200;
  int heartbeat_timeout_ms = 800;
  int anti_entropy_interval_ms = 1000;
  int quorum_timeout_ms = 2000;
  int request_timeout_ms = 1000;
  std::vector<std::string> extra_args;  // appended to every node's arguments
};

class TestCluster {
 public:
  // Picks ports and data directories (under a TempDir) and builds the argument lists; starts
  // nothing.
  TestCluster(std::vector<NodeSpec> specs, ClusterOptions options = {});
  ~TestCluster();  // kills every node and proxy

  size_t size() const { return nodes_.size(); }
  NodeProcess& node(size_t i) { return *nodes_[i]; }
  const NodeSpec& spec(size_t i) const { return specs_[i]; }
  std::string DataDir(size_t i) const;
  const std::string& root() const { return dir_.path(); }

  // Starts all nodes, then waits until each answers /heartbeat.
  Status StartAll(Millis timeout = Millis(30000));
  // Restarts every node that is not running.
  Status StartStopped(Millis timeout = Millis(30000));
  void KillAll();

  // The URL node `from` uses for peer `to` (a proxy's URL when proxies are on).
  std::string PeerUrl(size_t from, size_t to) const;
  // REQUIRES: use_proxies. The proxy that carries from's requests to `to`.
  TcpProxy& Link(size_t from, size_t to);
  // Cuts (or heals) both directions between every node of `a` and every node of `b`.
  void Partition(const std::vector<size_t>& a, const std::vector<size_t>& b);
  void HealAll();

  // True when node `from`'s /status shows peer `to` with the given liveness.
  bool PeerAliveIs(size_t from, size_t to, bool alive);

  // Waits until every listed node (default: all running) holds every msg_id of `ids`.
  bool WaitConverged(const std::vector<std::string>& ids, Millis timeout,
                     std::vector<size_t> nodes = {});

 private:
  TempDir dir_;
  std::vector<NodeSpec> specs_;
  ClusterOptions options_;
  std::vector<std::unique_ptr<NodeProcess>> nodes_;
  std::map<std::pair<size_t, size_t>, std::unique_ptr<TcpProxy>> links_;
};

}  // namespace dsm::testing
