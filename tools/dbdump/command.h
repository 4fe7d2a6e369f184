// One dsm-dbdump invocation, already parsed: which directories, which actions, which format.
// RunCommand checks the combination, opens the directories and runs the actions, writing results
// to `out` and one-line errors ("dsm-dbdump: <reason>") to `err`. main.cc only parses the
// command line (CLI11) into a Command.
//
// Exit codes: kExitOk; kExitDamage when --verify finds damage, --compare finds differences, the
// metadata has problems, a dumped record does not decode, or --msg-id is not stored;
// kExitUsage for a wrong combination of options or a directory that cannot be opened or read.
//
// Thread-compatible.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "tools/dbdump/dump.h"

namespace dsm::dbdump {

inline constexpr int kExitOk = 0;
inline constexpr int kExitDamage = 1;
inline constexpr int kExitUsage = 2;

struct Command {
  std::string data_dir;                   // --data-dir
  std::vector<std::string> compare_dirs;  // --compare (2 or more); excludes every other action
  bool meta = false;                      // --meta (the default when no action is given)
  std::optional<uint64_t> from;           // --from, inclusive (default 1)
  std::optional<uint64_t> to;             // --to, inclusive (default: the last seq)
  bool all = false;                       // --all: the whole log
  std::optional<std::string> msg_id;      // --msg-id
  bool verify = false;                    // --verify
  bool follow_running = false;            // --follow-running: open as a RocksDB secondary
  DumpOptions dump;                       // --format, --width
};

// Runs `cmd`. Actions run in this order: --meta, --msg-id, the range, --verify. Returns the exit
// code (the highest of the actions').
int RunCommand(const Command& cmd, std::ostream& out, std::ostream& err);

}  // namespace dsm::dbdump
