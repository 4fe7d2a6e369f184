// dsm-dbdump --compare: which msg_ids each of several data directories lacks that another one
// holds. Convergence (DESIGN.md, contract 4) means that, once a cluster is quiet, its nodes'
// directories compare equal.
//
// The comparison reads the msg_id indexes (run --verify first to trust them). It merges the
// indexes, which RocksDB keeps sorted, so memory stays bounded: one pass counts, then one pass
// per directory that misses something lists what it misses.
//
// Thread-compatible; reads each reader's current view.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "dsm/status.h"
#include "storage/log_reader.h"

namespace dsm::dbdump {

struct CompareDir {
  std::string path;
  std::string stream_id;  // empty when its metadata lacks it
  uint64_t msg_ids = 0;   // entries in its msg_id index
  uint64_t missing = 0;   // msg_ids some other directory holds and this one does not
};

struct CompareReport {
  std::vector<CompareDir> dirs;  // in the order given
  uint64_t distinct = 0;         // msg_ids held by at least one directory

  bool same() const;  // no directory misses anything
  // "the 3 directories hold the same 120 msg_ids" or
  // "the directories differ: [1] misses 0, [2] misses 2 (of 120 distinct msg_ids)".
  std::string Summary() const;
};

// Writes to `out`: one line per directory ("[1] <path>  <stream id>  <n> msg_ids"), then for each
// directory that misses something a line "[2] misses 2 msg_ids that others hold:" and one line
// per missing msg_id ("  '<msg_id>'  held by [1] [3]"). REQUIRES: at least one reader.
Result<CompareReport> Compare(const std::vector<const LogReader*>& readers, std::ostream& out);

}  // namespace dsm::dbdump
