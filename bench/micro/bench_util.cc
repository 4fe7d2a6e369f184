#include "bench/micro/bench_util.h"

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <system_error>

namespace dsm::bench {

namespace fs = std::filesystem;

std::string ScratchRoot() {
  fs::path root;
  if (const char* env = std::getenv("DSM_BENCH_DIR"); env != nullptr && env[0] != '\0') {
    root = env;
  } else {
    std::error_code ec;
    fs::path exe = fs::read_symlink("/proc/self/exe", ec);
    root = ec ? fs::temp_directory_path() : exe.parent_path().parent_path() / "bench-tmp";
  }
  std::error_code ec;
  fs::create_directories(root, ec);
  return root.string();
}

ScratchDir::ScratchDir() {
  std::string tmpl = ScratchRoot() + "/micro-XXXXXX";
  if (mkdtemp(tmpl.data()) == nullptr) {
    tmpl = (fs::temp_directory_path() / "dsm-micro-XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) std::abort();
  }
  path_ = tmpl;
}

ScratchDir::~ScratchDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

namespace {
std::atomic<uint64_t> next_id{1};
}  // namespace

Message MakeMessage(size_t payload_bytes) {
  Message m;
  m.msg_id = "bench-" + std::to_string(getpid()) + "-" +
             std::to_string(next_id.fetch_add(1, std::memory_order_relaxed));
  m.sender = "user1";
  m.recipient = "user2";
  m.payload.assign(payload_bytes, 'x');
  m.ts = 1795780145.325556;
  return m;
}

std::vector<Message> MakeMessages(size_t n, size_t payload_bytes) {
  std::vector<Message> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) out.push_back(MakeMessage(payload_bytes));
  return out;
}

Message MakePeerMessage(size_t payload_bytes, const std::string& origin, uint64_t origin_seq) {
  Message m = MakeMessage(payload_bytes);
  m.origin = origin;
  m.origin_seq = origin_seq;
  m.seq = origin_seq;
  return m;
}

}  // namespace dsm::bench
