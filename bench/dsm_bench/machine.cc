#include "bench/dsm_bench/machine.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace dsm::bench {

namespace fs = std::filesystem;

namespace {

std::string ReadFirstLine(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

std::string Errno(const std::string& what) { return what + ": " + std::strerror(errno); }

}  // namespace

std::string LoadAverage() {
  std::istringstream in(ReadFirstLine("/proc/loadavg"));
  std::string a, b, c;
  in >> a >> b >> c;
  return a + " " + b + " " + c;
}

MachineInfo DescribeMachine(const std::string& data_dir) {
  MachineInfo m;
  m.cores = std::thread::hardware_concurrency();
  {
    std::ifstream in("/proc/cpuinfo");
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind("model name", 0) == 0) {
        const size_t colon = line.find(':');
        if (colon != std::string::npos) m.cpu_model = line.substr(colon + 2);
        break;
      }
    }
  }
  utsname u{};
  if (uname(&u) == 0) m.kernel = std::string(u.sysname) + " " + u.release + " " + u.machine;
  m.loadavg = LoadAverage();

  struct stat st {};
  if (stat(data_dir.c_str(), &st) != 0) return m;
  const unsigned maj = major(st.st_dev), min = minor(st.st_dev);
  const std::string devno = std::to_string(maj) + ":" + std::to_string(min);
  // The mount whose device is the directory's, with the longest mount point that prefixes it.
  std::error_code ec;
  const std::string abs = fs::weakly_canonical(data_dir, ec).string();
  std::ifstream mounts("/proc/self/mountinfo");
  std::string line;
  size_t best = 0;
  while (std::getline(mounts, line)) {
    std::istringstream in(line);
    std::string id, parent, dev, root, point;
    in >> id >> parent >> dev >> root >> point;
    if (dev != devno) continue;
    const size_t dash = line.find(" - ");
    if (dash == std::string::npos) continue;
    std::istringstream tail(line.substr(dash + 3));
    std::string fstype, source;
    tail >> fstype >> source;
    if (abs.rfind(point, 0) == 0 && point.size() >= best) {
      best = point.size();
      m.filesystem = fstype + " on " + source + " mounted at " + point;
    }
  }
  const fs::path sys = fs::path("/sys/dev/block") / devno;
  fs::path dev = fs::canonical(sys, ec);
  if (!ec) {
    fs::path queue = dev / "queue";
    if (!fs::exists(queue)) queue = dev.parent_path() / "queue";  // a partition
    m.disk = dev.filename().string();
    const std::string rot = ReadFirstLine((queue / "rotational").string());
    if (!rot.empty()) m.disk += ", rotational=" + rot;
    const std::string sched = ReadFirstLine((queue / "scheduler").string());
    if (!sched.empty()) m.disk += ", scheduler: " + sched;
    std::string model = ReadFirstLine((dev / "device" / "model").string());
    if (model.empty()) model = ReadFirstLine((dev.parent_path() / "device" / "model").string());
    if (!model.empty()) m.disk += ", model " + model;
  }
  return m;
}

CpuSnapshot TakeCpuSnapshot(const std::vector<pid_t>& pids) {
  static const double kTick = static_cast<double>(sysconf(_SC_CLK_TCK));
  CpuSnapshot s;
  s.wall_ns = NowNs();
  {
    std::istringstream in(ReadFirstLine("/proc/stat"));
    std::string cpu;
    in >> cpu;
    double v[10] = {0};
    for (double& x : v) in >> x;
    // user nice system idle iowait irq softirq steal guest guest_nice
    double total = 0;
    for (int i = 0; i < 8; ++i) total += v[i];
    s.machine_total_s = total / kTick;
    s.machine_busy_s = (total - v[3] - v[4]) / kTick;
  }
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  s.self_s = static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
             static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
  for (pid_t pid : pids) {
    const std::string stat = ReadFirstLine("/proc/" + std::to_string(pid) + "/stat");
    double cpu = 0;
    const size_t paren = stat.rfind(')');
    if (paren != std::string::npos) {
      std::istringstream in(stat.substr(paren + 2));
      std::string field;
      // Fields after the command: state(3) ... utime(14) stime(15).
      for (int i = 3; i <= 15 && in >> field; ++i) {
        if (i == 14 || i == 15) cpu += std::atof(field.c_str()) / kTick;
      }
    }
    s.pids_s.push_back(cpu);
  }
  return s;
}

CpuUse CpuBetween(const CpuSnapshot& a, const CpuSnapshot& b) {
  CpuUse u;
  const double wall = static_cast<double>(b.wall_ns - a.wall_ns) / 1e9;
  if (wall <= 0) return u;
  const double total = b.machine_total_s - a.machine_total_s;
  const double cores = static_cast<double>(std::thread::hardware_concurrency());
  if (total > 0) u.machine_pct = 100.0 * cores * (b.machine_busy_s - a.machine_busy_s) / total;
  u.self_pct = 100.0 * (b.self_s - a.self_s) / wall;
  for (size_t i = 0; i < a.pids_s.size() && i < b.pids_s.size(); ++i) {
    const double d = b.pids_s[i] - a.pids_s[i];
    u.pids_pct.push_back(d >= 0 ? 100.0 * d / wall : 0);
  }
  return u;
}

Result<FsyncWindow> MeasureFsync(const std::string& dir, std::chrono::milliseconds duration,
                                 size_t max_ops, std::vector<int64_t>* samples) {
  const std::string path = dir + "/fsync-baseline.tmp";
  int fd = ::open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
  if (fd < 0) return Status::IOError(Errno("open " + path));
  char block[4096];
  std::memset(block, 'f', sizeof block);
  std::vector<int64_t> window;
  const int64_t start = NowNs();
  const int64_t end =
      start + std::chrono::duration_cast<std::chrono::nanoseconds>(duration).count();
  Status status;
  off_t offset = 0;
  while (window.size() < max_ops && NowNs() < end) {
    const int64_t t0 = NowNs();
    if (::pwrite(fd, block, sizeof block, offset) != static_cast<ssize_t>(sizeof block)) {
      status = Status::IOError(Errno("write " + path));
      break;
    }
    if (::fdatasync(fd) != 0) {
      status = Status::IOError(Errno("fdatasync " + path));
      break;
    }
    window.push_back(NowNs() - t0);
    offset += static_cast<off_t>(sizeof block);
  }
  const int64_t elapsed = NowNs() - start;
  ::close(fd);
  ::unlink(path.c_str());
  if (!status.ok()) return status;
  samples->insert(samples->end(), window.begin(), window.end());
  FsyncWindow w;
  w.ops_per_s =
      elapsed > 0 ? static_cast<double>(window.size()) * 1e9 / static_cast<double>(elapsed) : 0;
  w.latency = Summarize(&window);
  return w;
}

}  // namespace dsm::bench

namespace dsm::bench {

FsyncProbe::FsyncProbe(std::string dir, std::chrono::milliseconds interval)
    : path_(std::move(dir) + "/fsync-probe.tmp"), interval_(interval) {
  thread_ = std::thread([this] { Run(); });
}

FsyncProbe::~FsyncProbe() { Stop(); }

std::vector<int64_t> FsyncProbe::Stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  return samples_;
}

void FsyncProbe::Run() {
  int fd = ::open(path_.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
  if (fd < 0) return;
  char block[4096];
  std::memset(block, 'p', sizeof block);
  off_t offset = 0;
  while (!stop_) {
    const int64_t t0 = NowNs();
    if (::pwrite(fd, block, sizeof block, offset) != static_cast<ssize_t>(sizeof block) ||
        ::fdatasync(fd) != 0) {
      break;
    }
    samples_.push_back(NowNs() - t0);
    offset += static_cast<off_t>(sizeof block);
    const auto due = std::chrono::steady_clock::now() + interval_;
    while (!stop_ && std::chrono::steady_clock::now() < due) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  ::close(fd);
  ::unlink(path_.c_str());
}

}  // namespace dsm::bench
