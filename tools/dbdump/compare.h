// dsm-dbdump --compare: how several data directories disagree. Two kinds of difference:
//  - missing msg_ids: msg_ids one directory lacks that another one holds. Convergence
//    (README.md, contract 4) means that, once a cluster is quiet, no directory misses any.
//  - conflicting positions: an origin position (origin, origin_seq) that two directories hold
//    with different msg_ids. Every node must agree which msg_id sits at each position
//    (README.md, contract 10); a conflict is never a duplicate, whatever the msg_id sets say.
//
// The comparison reads the msg_id and origin indexes (run --verify first to trust them). It
// merges the indexes, which RocksDB keeps sorted, so memory stays bounded: one pass counts the
// msg_ids, one pass per directory that misses something lists what it misses, and one pass over
// the origin indexes reads, for every position held by two directories or more, the msg_id of the
// record each one's index points at (one point read per directory holding the position).
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
  std::vector<CompareDir> dirs;   // in the order given
  uint64_t distinct = 0;          // msg_ids held by at least one directory
  uint64_t shared_positions = 0;  // origin positions held by at least two directories
  uint64_t conflicts = 0;         // shared positions whose holders store different msg_ids

  bool same() const;  // no directory misses anything and no position conflicts
  // "the 3 directories hold the same 120 msg_ids" or
  // "the directories differ: [1] misses 0, [2] misses 2 (of 120 distinct msg_ids)", followed by
  // " and 1 conflicting position" ("... positions") when positions conflict.
  std::string Summary() const;
};

// Writes to `out`: one line per directory ("[1] <path>  <stream id>  <n> msg_ids"), then for each
// directory that misses something a line "[2] misses 2 msg_ids that others hold:" and one line
// per missing msg_id ("  '<msg_id>'  held by [1] [3]"), then, if any position conflicts, a line
// "positions held with different msg_ids:" and one line per conflicting position, in key order,
// naming the msg_id of every directory that holds it
// ("  conflict at <origin>:<origin_seq>: [1] '<msg_id>'  [3] '<other msg_id>'").
// Errors: Corruption naming the directory when an origin index entry shared with another
// directory is malformed, points at a seq missing from the log or at a record that does not
// decode (--verify describes such damage); IOError for failed reads. REQUIRES: at least one
// reader.
Result<CompareReport> Compare(const std::vector<const LogReader*>& readers, std::ostream& out);

}  // namespace dsm::dbdump
