#include "bench/dsm_bench/scale_probe.h"

#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "bench/dsm_bench/stats.h"

namespace dsm::bench {

namespace fs = std::filesystem;

namespace {

// A shell word holding `s` literally.
std::string ShellQuote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

}  // namespace

Result<ResidentMemory> ReadResidentMemory(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  if (!in) return Status::Unavailable("no /proc/" + std::to_string(pid) + "/status");
  ResidentMemory m;
  std::string line;
  bool found = false;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string name;
    uint64_t kib = 0;
    fields >> name >> kib;
    if (name == "VmRSS:") {
      m.rss_bytes = kib << 10;
      found = true;
    } else if (name == "VmHWM:") {
      m.peak_bytes = kib << 10;
    }
  }
  if (!found) return Status::Unavailable("no VmRSS in /proc/" + std::to_string(pid) + "/status");
  return m;
}

uint64_t DirectoryBytes(const std::string& dir) {
  uint64_t total = 0;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::error_code size_ec;
    if (it->is_regular_file(size_ec)) {
      const uintmax_t size = it->file_size(size_ec);
      if (!size_ec) total += size;
    }
  }
  return total;
}

Result<VerifyRun> TimeVerify(const std::string& dbdump, const std::string& dir) {
  const std::string command =
      ShellQuote(dbdump) + " --data-dir " + ShellQuote(dir) + " --verify 2>&1";
  const int64_t start = NowNs();
  std::FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return Status::IOError("cannot run " + dbdump);
  std::string output;
  char buf[4096];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, pipe)) > 0) output.append(buf, n);
  const int status = ::pclose(pipe);
  VerifyRun run;
  run.seconds = static_cast<double>(NowNs() - start) / 1e9;
  const size_t ok = output.rfind("OK: ");
  if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0 || ok == std::string::npos) {
    return Status::Unavailable("dsm-dbdump --verify of " + dir + " failed: " +
                               output.substr(0, 500));
  }
  run.summary = output.substr(ok, output.find('\n', ok) - ok);
  run.records = std::strtoull(run.summary.c_str() + 4, nullptr, 10);
  return run;
}

}  // namespace dsm::bench
