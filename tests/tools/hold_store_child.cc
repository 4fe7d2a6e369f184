// Holds a dsm data directory open as a running node would, for the LogReader tests: opens a
// RocksLogStore on argv[1] (node id "node1"), appends the message "held", prints "ready" and
// keeps the store open until its stdin reaches end of file. Exits 0 on success, 2 on failure.
#include <sys/prctl.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <iostream>
#include <memory>

#include "storage/rocks_log_store.h"

int main(int argc, char** argv) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the test
  if (argc != 2) {
    std::cerr << "usage: hold_store_child DIR\n";
    return 2;
  }
  dsm::RocksLogStoreOptions options;
  options.path = argv[1];
  options.node_id = "node1";
  dsm::Result<std::unique_ptr<dsm::RocksLogStore>> store = dsm::RocksLogStore::Open(options);
  if (!store.ok()) {
    std::cerr << store.status().ToString() << '\n';
    return 2;
  }
  dsm::Message m;
  m.msg_id = "held";
  m.sender = "alice";
  m.recipient = "bob";
  m.payload = "kept open";
  m.ts = 1700000000;
  if (!(*store)->Append({m}).ok()) return 2;
  std::cout << "ready" << std::endl;
  char buf[64];
  while (::read(STDIN_FILENO, buf, sizeof(buf)) > 0) {
  }
  return 0;
}
