// The process that storage_crash_test kills: opens a RocksLogStore (fsync on) and appends unique
// msg_ids from 8 threads as fast as it can, writing "ACK <msg_id> <seq>\n" to stdout with one
// write(2) per line (atomic on a pipe) after each Append returned OK. Prints "READY\n" once the
// store is open. Runs until killed (or for at most a minute).
//
// Usage: storage_crash_child <data dir> <node id> <msg_id prefix> [--power-loss] [--no-sync]
//   --power-loss  all file I/O goes through a PowerLossFs (tests/storage/power_loss_fs.h)
//                 journaling to PowerJournalPath(<data dir>): after a SIGKILL, ApplyPowerCut
//                 turns the kill into a power cut (every byte not fsynced is lost).
//   --no-sync     opens the store with sync = false (a planted bug: acknowledges before fsync),
//                 so the power-cut test can show that it notices.
#include <rocksdb/env.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "storage/rocks_log_store.h"
#include "tests/storage/power_loss_fs.h"

namespace {

// Writes all of `line` with one write(2); exits when the reader is gone.
void WriteLine(const std::string& line) {
  if (::write(STDOUT_FILENO, line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
    std::_Exit(4);
  }
}

}  // namespace

int main(int argc, char** argv) {
  bool power_loss = false;
  bool sync = true;
  bool usage = argc < 4;
  for (int i = 4; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--power-loss") {
      power_loss = true;
    } else if (flag == "--no-sync") {
      sync = false;
    } else {
      usage = true;
    }
  }
  if (usage) {
    std::fprintf(stderr,
                 "usage: %s <data dir> <node id> <msg_id prefix> [--power-loss] [--no-sync]\n",
                 argv[0]);
    return 2;
  }
  dsm::RocksLogStoreOptions options;
  options.path = argv[1];
  options.node_id = argv[2];
  options.sync = sync;
  const std::string prefix = argv[3];
  std::unique_ptr<dsm::storage_test::PowerLossEnv> power_loss_env;
  if (power_loss) {
    power_loss_env = std::make_unique<dsm::storage_test::PowerLossEnv>(
        dsm::storage_test::PowerJournalPath(options.path));
    options.env = power_loss_env->env.get();
  }
  auto opened = dsm::RocksLogStore::Open(options);
  if (!opened.ok()) {
    std::fprintf(stderr, "crash child: %s\n", opened.status().ToString().c_str());
    return 3;
  }
  std::unique_ptr<dsm::RocksLogStore> store = std::move(*opened);
  WriteLine("READY\n");

  constexpr int kThreads = 8;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(1);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      // Odd threads append three messages per call, even threads one.
      const int per_call = t % 2 ? 3 : 1;
      for (uint64_t n = 0; std::chrono::steady_clock::now() < deadline;) {
        std::vector<dsm::Message> msgs;
        for (int k = 0; k < per_call; ++k, ++n) {
          dsm::Message m;
          m.msg_id = prefix + "-" + std::to_string(t) + "-" + std::to_string(n);
          m.sender = "crash";
          m.recipient = "all";
          m.payload = std::string(64 + (n % 7) * 100, 'a' + t);
          m.ts = 1700000000.0 + static_cast<double>(n);
          msgs.push_back(std::move(m));
        }
        auto r = store->Append(msgs);
        if (!r.ok()) {
          std::fprintf(stderr, "crash child: append failed: %s\n", r.status().ToString().c_str());
          std::_Exit(5);
        }
        for (size_t k = 0; k < msgs.size(); ++k) {
          WriteLine("ACK " + msgs[k].msg_id + " " + std::to_string((*r)[k].seq) + "\n");
        }
      }
    });
  }
  for (std::thread& th : threads) th.join();
  return 0;
}
