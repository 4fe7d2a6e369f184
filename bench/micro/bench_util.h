// Helpers shared by the micro-benchmarks of dsm-microbench: scratch directories for RocksDB
// stores (on the build directory's disk, so fsync costs what the node pays) and message makers.
//
// Thread safety: ScratchDir is used by one thread; the message makers are thread-safe (ids come
// from an atomic counter).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "dsm/message.h"

namespace dsm::bench {

// A fresh directory under ScratchRoot(), removed with its contents on destruction.
class ScratchDir {
 public:
  ScratchDir();
  ~ScratchDir();
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// $DSM_BENCH_DIR when set, else "bench-tmp" in the directory above the running executable (the
// build directory). Created when missing.
std::string ScratchRoot();

// A client-style message (no origin, no seq) with a process-unique msg_id and a payload of
// `payload_bytes` bytes.
Message MakeMessage(size_t payload_bytes);
// `n` of them.
std::vector<Message> MakeMessages(size_t n, size_t payload_bytes);
// A message as a peer ships it: with origin `origin` and the given origin_seq and seq.
Message MakePeerMessage(size_t payload_bytes, const std::string& origin, uint64_t origin_seq);

}  // namespace dsm::bench
