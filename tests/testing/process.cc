#include "tests/testing/process.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <rapidjson/error/en.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "common/local_ports.h"
#include "tests/testing/tcp_proxy.h"

namespace dsm::testing {

namespace {

using Clock = std::chrono::steady_clock;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

std::string Tail(const std::string& s, size_t max_bytes) {
  return s.size() <= max_bytes ? s : s.substr(s.size() - max_bytes);
}

ExitInfo DecodeWaitStatus(int st) {
  ExitInfo e;
  if (WIFEXITED(st)) {
    e.exited = true;
    e.exit_code = WEXITSTATUS(st);
  } else if (WIFSIGNALED(st)) {
    e.signal = WTERMSIG(st);
  }
  return e;
}

// waitpid without WNOHANG, retried on EINTR. Returns the raw status or -1.
int WaitBlocking(pid_t pid) {
  int st = 0;
  for (;;) {
    pid_t r = waitpid(pid, &st, 0);
    if (r == pid) return st;
    if (r < 0 && errno != EINTR) return -1;
  }
}

// Forks and execs argv with stdin from /dev/null, stdout to out_fd and stderr to err_fd, working
// directory `cwd`. The child gets SIGKILL when the spawning thread dies. Returns the pid or -1.
pid_t Spawn(const std::vector<std::string>& argv, int out_fd, int err_fd, const std::string& cwd) {
  std::vector<char*> cargv;
  for (const std::string& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid != 0) return pid;
  // Child: async-signal-safe calls only.
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) _exit(127);
  int devnull = open("/dev/null", O_RDONLY);
  if (devnull >= 0) dup2(devnull, 0);
  dup2(out_fd, 1);
  dup2(err_fd, 2);
  close_range(3, ~0U, 0);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  sigaction(SIGPIPE, &dfl, nullptr);
  if (!cwd.empty() && chdir(cwd.c_str()) != 0) _exit(127);
  execv(cargv[0], cargv.data());
  static const char kMsg[] = "exec failed\n";
  ssize_t n = write(2, kMsg, sizeof(kMsg) - 1);
  (void)n;
  _exit(127);
}

void CurlGlobalInit() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

size_t AppendBody(char* ptr, size_t size, size_t nmemb, void* userdata) {
  static_cast<std::string*>(userdata)->append(ptr, size * nmemb);
  return size * nmemb;
}

size_t CollectHeader(char* ptr, size_t size, size_t nitems, void* userdata) {
  auto* headers = static_cast<std::map<std::string, std::string>*>(userdata);
  std::string line(ptr, size * nitems);
  size_t colon = line.find(':');
  if (colon != std::string::npos) {
    std::string name = line.substr(0, colon);
    std::transform(name.begin(), name.end(), name.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    std::string value = line.substr(colon + 1);
    while (!value.empty() && std::isspace(static_cast<unsigned char>(value.front())))
      value.erase(0, 1);
    while (!value.empty() && std::isspace(static_cast<unsigned char>(value.back())))
      value.pop_back();
    (*headers)[name] = value;
  }
  return size * nitems;
}

}  // namespace

// ---------------------------------------------------------------------------------------------

TempDir::TempDir() {
  const char* base = getenv("TMPDIR");
  std::string tmpl = std::string(base && *base ? base : "/tmp") + "/dsm-test-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (mkdtemp(buf.data()) == nullptr) {
    ADD_FAILURE() << "mkdtemp(" << tmpl << ") failed: " << strerror(errno);
    return;
  }
  path_ = buf.data();
}

TempDir::~TempDir() {
  if (!path_.empty()) RemoveTree(path_);
}

void RemoveTree(const std::string& path) {
  std::error_code ec;
  std::filesystem::remove_all(path, ec);
}

std::vector<uint16_t> FreePorts(size_t n) {
  Result<std::vector<uint16_t>> ports = PickLoopbackPorts(n);
  if (!ports.ok()) return std::vector<uint16_t>(n, 0);
  return std::move(ports).value();
}

uint16_t FreePort() { return FreePorts(1).front(); }

std::string BinDir() {
  const char* env = getenv("DSM_BIN_DIR");
  if (env && *env) return env;
  std::error_code ec;
  auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  return (self.parent_path().parent_path() / "bin").string();
}

std::string BinaryPath(const std::string& name) { return BinDir() + "/" + name; }

uint64_t TestSeed() {
  uint64_t seed;
  const char* env = getenv("DSM_TEST_SEED");
  if (env && *env) {
    seed = std::strtoull(env, nullptr, 10);
  } else {
    std::random_device rd;
    seed = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  }
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::cerr << "[ seed ] " << (info ? info->name() : "") << ": replay with DSM_TEST_SEED=" << seed
            << std::endl;
  return seed;
}

// ---------------------------------------------------------------------------------------------

std::string HttpResponse::Str(const char* member) const {
  if (!json_ok || !json.IsObject()) return "";
  auto it = json.FindMember(member);
  if (it == json.MemberEnd() || !it->value.IsString()) return "";
  return std::string(it->value.GetString(), it->value.GetStringLength());
}

int64_t HttpResponse::Int(const char* member, int64_t dflt) const {
  if (!json_ok || !json.IsObject()) return dflt;
  auto it = json.FindMember(member);
  if (it == json.MemberEnd() || !it->value.IsInt64()) return dflt;
  return it->value.GetInt64();
}

bool HttpResponse::IsError() const { return Str("status") == "error" && !Str("reason").empty(); }

std::string HttpResponse::Describe() const {
  std::string s = std::to_string(status) + " ";
  if (status == 0) return s + "(no answer: " + error + ")";
  return s + Tail(body.substr(0, 300), 300);
}

HttpResponse Http(const HttpRequest& request) {
  CurlGlobalInit();
  HttpResponse r;
  CURL* curl = curl_easy_init();
  if (!curl) {
    r.error = "curl_easy_init failed";
    return r;
  }
  char errbuf[CURL_ERROR_SIZE] = {0};
  curl_slist* headers = nullptr;
  headers = curl_slist_append(headers, "Expect:");
  if (request.body) headers = curl_slist_append(headers, "Content-Type: application/json");
  for (const std::string& h : request.headers) headers = curl_slist_append(headers, h.c_str());
  curl_easy_setopt(curl, CURLOPT_URL, request.url.c_str());
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_PROXY, "");  // no proxy of the environment
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(request.timeout.count()));
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(std::min<int64_t>(request.timeout.count(), 3000)));
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, AppendBody);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &r.body);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, CollectHeader);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &r.headers);
  curl_easy_setopt(curl, CURLOPT_FORBID_REUSE, 1L);
  if (!request.tls.ca_file.empty())
    curl_easy_setopt(curl, CURLOPT_CAINFO, request.tls.ca_file.c_str());
  if (!request.tls.cert_file.empty()) {
    curl_easy_setopt(curl, CURLOPT_SSLCERT, request.tls.cert_file.c_str());
    curl_easy_setopt(curl, CURLOPT_SSLKEY, request.tls.key_file.c_str());
  }
  if (request.body) {
    curl_easy_setopt(curl, CURLOPT_POST, 1L);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, request.body->data());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE,
                     static_cast<curl_off_t>(request.body->size()));
  }
  if (request.method != "GET" && request.method != "POST") {
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, request.method.c_str());
  } else if (request.method == "GET" && request.body) {
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, "GET");
  } else if (request.method == "POST" && !request.body) {
    curl_easy_setopt(curl, CURLOPT_POST, 1L);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, 0L);
  }
  CURLcode rc = curl_easy_perform(curl);
  if (rc == CURLE_OK) {
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &r.status);
  } else {
    r.status = 0;
    r.error = errbuf[0] ? errbuf : curl_easy_strerror(rc);
  }
  curl_slist_free_all(headers);
  curl_easy_cleanup(curl);
  if (r.status != 0) {
    r.json.Parse<rapidjson::kParseIterativeFlag | rapidjson::kParseValidateEncodingFlag>(
        r.body.data(), r.body.size());
    r.json_ok = !r.json.HasParseError();
  }
  return r;
}

HttpResponse HttpGet(const std::string& url, Millis timeout) {
  HttpRequest req;
  req.url = url;
  req.timeout = timeout;
  return Http(req);
}

HttpResponse HttpPost(const std::string& url, const std::string& body, Millis timeout) {
  HttpRequest req;
  req.method = "POST";
  req.url = url;
  req.body = body;
  req.timeout = timeout;
  return Http(req);
}

std::string UrlEncode(const std::string& s) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

std::string JsonQuote(const std::string& s) {
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w(buf);
  w.String(s.data(), static_cast<rapidjson::SizeType>(s.size()));
  return std::string(buf.GetString(), buf.GetSize());
}

// ---------------------------------------------------------------------------------------------

int ConnectLocal(uint16_t port, Millis timeout, const char* source) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (timeout.count() > 0) {
    timeval tv{};
    tv.tv_sec = timeout.count() / 1000;
    tv.tv_usec = (timeout.count() % 1000) * 1000;
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  }
  sockaddr_in from{};
  from.sin_family = AF_INET;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (inet_pton(AF_INET, source, &from.sin_addr) != 1 ||
      bind(fd, reinterpret_cast<sockaddr*>(&from), sizeof(from)) != 0 ||
      connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

std::string RawExchange(uint16_t port, const std::string& bytes, Millis timeout, size_t max_read) {
  int fd = ConnectLocal(port, timeout);
  if (fd < 0) return "";
  auto deadline = Clock::now() + timeout;
  size_t sent = 0;
  while (sent < bytes.size() && Clock::now() < deadline) {
    ssize_t n = send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;  // the peer closed or reset: fine, read what it said
    sent += static_cast<size_t>(n);
  }
  std::string got;
  while (got.size() < max_read) {
    auto left = std::chrono::duration_cast<Millis>(deadline - Clock::now()).count();
    if (left <= 0) break;
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left)) <= 0) break;
    char buf[16384];
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return got;
}

bool WaitFor(const std::function<bool()>& pred, Millis timeout, Millis step) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    if (pred()) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(step);
  }
}

// ---------------------------------------------------------------------------------------------

std::string ExitInfo::ToString() const {
  if (exited) return "exit " + std::to_string(exit_code);
  if (signal) return "signal " + std::to_string(signal);
  return "not exited";
}

RunResult RunToExit(const std::vector<std::string>& argv, Millis timeout, const std::string& cwd) {
  RunResult r;
  TempDir dir;
  std::string out_path = dir.Sub("stdout"), err_path = dir.Sub("stderr");
  int out_fd = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  int err_fd = open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  pid_t pid = Spawn(argv, out_fd, err_fd, cwd.empty() ? dir.path() : cwd);
  close(out_fd);
  close(err_fd);
  if (pid < 0) {
    r.err = "fork failed";
    return r;
  }
  auto deadline = Clock::now() + timeout;
  int st = 0;
  for (;;) {
    pid_t w = waitpid(pid, &st, WNOHANG);
    if (w == pid) break;
    if (Clock::now() >= deadline) {
      kill(pid, SIGKILL);
      st = WaitBlocking(pid);
      r.timed_out = true;
      break;
    }
    std::this_thread::sleep_for(Millis(10));
  }
  r.exit = DecodeWaitStatus(st);
  r.out = ReadFile(out_path);
  r.err = ReadFile(err_path);
  return r;
}

NodeProcess::NodeProcess(std::string name, std::string executable, std::vector<std::string> args,
                         std::string log_path, uint16_t port)
    : name_(std::move(name)),
      executable_(std::move(executable)),
      args_(std::move(args)),
      log_path_(std::move(log_path)),
      port_(port),
      url_("http://127.0.0.1:" + std::to_string(port)) {}

NodeProcess::~NodeProcess() {
  Kill();
  const ::testing::UnitTest* ut = ::testing::UnitTest::GetInstance();
  const ::testing::TestSuite* suite = ut->current_test_suite();
  if (::testing::Test::HasFailure() || (suite && suite->Failed())) {
    std::cerr << "----- last lines of " << name_ << "'s log (" << log_path_ << ") -----\n"
              << LogTail(3000) << "\n----- end of " << name_ << "'s log -----" << std::endl;
  }
}

Status NodeProcess::Start() {
  if (pid_ > 0 && Running()) return Status::InvalidArgument(name_ + " is already running");
  int log_fd = open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) return Status::IOError("cannot open " + log_path_ + ": " + strerror(errno));
  std::vector<std::string> argv = {executable_};
  argv.insert(argv.end(), args_.begin(), args_.end());
  std::string banner = "===== start " + name_ + ":";
  for (const std::string& a : argv) banner += " '" + a + "'";
  banner += "\n";
  ssize_t n = write(log_fd, banner.data(), banner.size());
  (void)n;
  std::string cwd = std::filesystem::path(log_path_).parent_path().string();
  pid_ = Spawn(argv, log_fd, log_fd, cwd);
  close(log_fd);
  if (pid_ < 0) return Status::IOError("fork failed: " + std::string(strerror(errno)));
  return Status::Ok();
}

Status NodeProcess::WaitUp(Millis timeout) {
  auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    if (!Running()) {
      return Status::Unavailable(name_ + " exited (" + last_exit_.ToString() +
                                 ") before answering /heartbeat; log tail:\n" + LogTail(2000));
    }
    HttpResponse r = Get("/heartbeat", Millis(1000));
    // 401: the node requires a cluster token on /heartbeat; it answers, so it is up.
    if (r.status == 200 || r.status == 401) return Status::Ok();
    std::this_thread::sleep_for(Millis(50));
  }
  return Status::Timeout(name_ + " did not answer /heartbeat within " +
                         std::to_string(timeout.count()) + " ms; log tail:\n" + LogTail(2000));
}

Status NodeProcess::StartAndWait(Millis timeout) {
  Status s = Start();
  if (!s.ok()) return s;
  return WaitUp(timeout);
}

bool NodeProcess::Running() {
  if (pid_ <= 0) return false;
  int st = 0;
  pid_t r = waitpid(pid_, &st, WNOHANG);
  if (r == 0) return true;
  if (r == pid_)
    Reap(st);
  else
    pid_ = -1;  // not our child any more (cannot happen unless reaped elsewhere)
  return false;
}

void NodeProcess::Reap(int wait_status) {
  last_exit_ = DecodeWaitStatus(wait_status);
  pid_ = -1;
}

ExitInfo NodeProcess::Kill() {
  if (!Running()) return last_exit_;
  kill(pid_, SIGKILL);
  int st = WaitBlocking(pid_);
  Reap(st);
  return last_exit_;
}

ExitInfo NodeProcess::Terminate(Millis grace) {
  if (!Running()) return last_exit_;
  kill(pid_, SIGTERM);
  if (WaitExit(grace)) return last_exit_;
  return Kill();
}

std::optional<ExitInfo> NodeProcess::WaitExit(Millis timeout) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    if (!Running()) return last_exit_;
    if (Clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(Millis(10));
  }
}

Status NodeProcess::Restart(Millis timeout) {
  Kill();
  return StartAndWait(timeout);
}

std::string NodeProcess::LogTail(size_t max_bytes) const {
  return Tail(ReadFile(log_path_), max_bytes);
}

void NodeProcess::UseTls(TlsClient client) {
  url_ = "https://127.0.0.1:" + std::to_string(port_);
  tls_ = std::move(client);
}

HttpResponse NodeProcess::Get(const std::string& path, Millis timeout) const {
  HttpRequest req;
  req.url = url_ + path;
  req.timeout = timeout;
  req.tls = tls_;
  return Http(req);
}

HttpResponse NodeProcess::Post(const std::string& path, const std::string& body,
                               Millis timeout) const {
  HttpRequest req;
  req.method = "POST";
  req.url = url_ + path;
  req.body = body;
  req.timeout = timeout;
  req.tls = tls_;
  return Http(req);
}

// ---------------------------------------------------------------------------------------------

LogCheck CheckLog(const rapidjson::Value& messages) {
  LogCheck c;
  if (!messages.IsArray()) {
    c.problems.push_back("\"messages\" is not an array");
    return c;
  }
  std::map<std::string, uint64_t> last_origin_seq;
  std::set<std::string> seen;
  uint64_t expect_seq = 1;
  for (const auto& m : messages.GetArray()) {
    if (!m.IsObject() || !m.HasMember("seq") || !m["seq"].IsUint64() || !m.HasMember("msg_id") ||
        !m["msg_id"].IsString()) {
      c.problems.push_back("entry " + std::to_string(expect_seq) + " lacks seq or msg_id");
      return c;
    }
    uint64_t s = m["seq"].GetUint64();
    std::string msg_id = m["msg_id"].GetString();
    if (s != expect_seq && c.problems.size() < 20) {
      c.problems.push_back("seq " + std::to_string(s) + " where " + std::to_string(expect_seq) +
                           " was due (seqs not dense from 1)");
    }
    expect_seq = s + 1;
    if (!seen.insert(msg_id).second) {
      if (c.problems.size() < 20) c.problems.push_back("msg_id " + msg_id + " stored twice");
    } else {
      c.seq_of[msg_id] = s;
    }
    c.msg_ids.push_back(msg_id);
    auto origin = m.FindMember("origin");
    auto origin_seq = m.FindMember("origin_seq");
    if (origin == m.MemberEnd() || !origin->value.IsString() || origin_seq == m.MemberEnd() ||
        !origin_seq->value.IsUint64()) {
      if (c.problems.size() < 20)
        c.problems.push_back("seq " + std::to_string(s) + " lacks origin/origin_seq");
      continue;
    }
    uint64_t& last = last_origin_seq[origin->value.GetString()];
    uint64_t os = origin_seq->value.GetUint64();
    std::string where = "origin " + std::string(origin->value.GetString()) + ": origin_seq " +
                        std::to_string(os) + " after " + std::to_string(last) + " (seq " +
                        std::to_string(s) + ")";
    if (os <= last) {
      if (c.problems.size() < 20) c.problems.push_back(where);
    } else if (os != last + 1) {
      if (c.origin_gaps.size() < 20) c.origin_gaps.push_back(where);
    }
    last = std::max(last, os);
  }
  c.origin_high = std::move(last_origin_seq);
  return c;
}

std::string LogCheck::Summary() const {
  std::string s;
  for (const auto* list : {&problems, &origin_gaps}) {
    for (size_t i = 0; i < list->size() && i < 5; ++i) s += (*list)[i] + "; ";
  }
  return s.empty() ? "clean" : s;
}

LogCheck FetchAndCheckLog(const std::string& url, Millis timeout) {
  HttpResponse r = HttpGet(url + "/messages", timeout);
  if (r.status != 200 || !r.json_ok || !r.json.IsObject() || !r.json.HasMember("messages")) {
    LogCheck c;
    c.problems.push_back("GET " + url + "/messages -> " + r.Describe());
    return c;
  }
  return CheckLog(r.json["messages"]);
}

// ---------------------------------------------------------------------------------------------

TestCluster::TestCluster(std::vector<NodeSpec> specs, ClusterOptions options)
    : specs_(std::move(specs)), options_(std::move(options)) {
  const std::vector<uint16_t> ports = FreePorts(specs_.size());
  if (options_.use_proxies) {
    for (size_t i = 0; i < specs_.size(); ++i) {
      for (int j : specs_[i].peers) {
        links_[{i, static_cast<size_t>(j)}] = std::make_unique<TcpProxy>(ports[j]);
      }
    }
  }
  for (size_t i = 0; i < specs_.size(); ++i) {
    const NodeSpec& s = specs_[i];
    std::string peers;
    for (int j : s.peers) {
      if (!peers.empty()) peers += ",";
      peers +=
          options_.use_proxies
              ? "http://127.0.0.1:" + std::to_string(links_[{i, static_cast<size_t>(j)}]->port())
              : "http://127.0.0.1:" + std::to_string(ports[j]);
    }
    std::filesystem::create_directories(dir_.Sub(s.id));
    std::vector<std::string> args = {"--port",
                                     std::to_string(ports[i]),
                                     "--id",
                                     s.id,
                                     "--peers",
                                     peers,
                                     "--data-dir",
                                     DataDir(i),
                                     "--heartbeat-interval-ms",
                                     std::to_string(options_.heartbeat_interval_ms),
                                     "--heartbeat-timeout-ms",
                                     std::to_string(options_.heartbeat_timeout_ms),
                                     "--anti-entropy-interval-ms",
                                     std::to_string(options_.anti_entropy_interval_ms),
                                     "--quorum-timeout-ms",
                                     std::to_string(options_.quorum_timeout_ms),
                                     "--request-timeout-ms",
                                     std::to_string(options_.request_timeout_ms)};
    if (s.mode != "async") {
      args.insert(args.end(), {"--replication_mode", s.mode, "--quorum", std::to_string(s.quorum)});
    }
    args.insert(args.end(), options_.extra_args.begin(), options_.extra_args.end());
    args.insert(args.end(), s.extra_args.begin(), s.extra_args.end());
    nodes_.push_back(std::make_unique<NodeProcess>(s.id, BinaryPath("dsm-node"), std::move(args),
                                                   dir_.Sub(s.id + "/node.log"), ports[i]));
  }
}

TestCluster::~TestCluster() {
  KillAll();
  nodes_.clear();  // dumps logs on failure while the files still exist
  links_.clear();
}

std::string TestCluster::DataDir(size_t i) const { return dir_.Sub(specs_[i].id + "/data"); }

Status TestCluster::StartAll(Millis timeout) {
  for (auto& n : nodes_) {
    Status s = n->Start();
    if (!s.ok()) return s;
  }
  for (auto& n : nodes_) {
    Status s = n->WaitUp(timeout);
    if (!s.ok()) return s;
  }
  return Status::Ok();
}

Status TestCluster::StartStopped(Millis timeout) {
  std::vector<NodeProcess*> started;
  for (auto& n : nodes_) {
    if (n->Running()) continue;
    Status s = n->Start();
    if (!s.ok()) return s;
    started.push_back(n.get());
  }
  for (NodeProcess* n : started) {
    Status s = n->WaitUp(timeout);
    if (!s.ok()) return s;
  }
  return Status::Ok();
}

void TestCluster::KillAll() {
  for (auto& n : nodes_) n->Kill();
}

std::string TestCluster::PeerUrl(size_t from, size_t to) const {
  if (options_.use_proxies) {
    auto it = links_.find({from, to});
    if (it != links_.end()) return "http://127.0.0.1:" + std::to_string(it->second->port());
  }
  return nodes_[to]->Url();
}

TcpProxy& TestCluster::Link(size_t from, size_t to) { return *links_.at({from, to}); }

void TestCluster::Partition(const std::vector<size_t>& a, const std::vector<size_t>& b) {
  for (size_t i : a) {
    for (size_t j : b) {
      for (auto key : {std::make_pair(i, j), std::make_pair(j, i)}) {
        auto it = links_.find(key);
        if (it != links_.end()) it->second->Cut();
      }
    }
  }
}

void TestCluster::HealAll() {
  for (auto& [key, proxy] : links_) proxy->Heal();
}

bool TestCluster::PeerAliveIs(size_t from, size_t to, bool alive) {
  HttpResponse r = nodes_[from]->Get("/status", Millis(3000));
  if (r.status != 200 || !r.json_ok || !r.json.IsObject()) return false;
  auto ps = r.json.FindMember("peer_status");
  if (ps == r.json.MemberEnd() || !ps->value.IsObject()) return false;
  std::string url = PeerUrl(from, to);
  auto entry = ps->value.FindMember(url.c_str());
  if (entry == ps->value.MemberEnd() || !entry->value.IsObject()) return false;
  auto a = entry->value.FindMember("alive");
  return a != entry->value.MemberEnd() && a->value.IsBool() && a->value.GetBool() == alive;
}

bool TestCluster::WaitConverged(const std::vector<std::string>& ids, Millis timeout,
                                std::vector<size_t> nodes) {
  if (nodes.empty()) {
    for (size_t i = 0; i < nodes_.size(); ++i) {
      if (nodes_[i]->Running()) nodes.push_back(i);
    }
  }
  return WaitFor(
      [&] {
        for (size_t i : nodes) {
          LogCheck c = FetchAndCheckLog(nodes_[i]->Url());
          std::set<std::string> have(c.msg_ids.begin(), c.msg_ids.end());
          for (const std::string& id : ids) {
            if (!have.count(id)) return false;
          }
        }
        return true;
      },
      timeout, Millis(250));
}

}  // namespace dsm::testing
