// dsm-dbdump: inspects a dsm data directory (see docs/dbdump.md). Parses the command line and
// hands it to RunCommand (tools/dbdump/command.h), which does the work.
#include <sys/ioctl.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <charconv>
#include <cstdint>
#include <iostream>
#include <string>

#include "tools/dbdump/command.h"

namespace {

// The terminal's width when stdout is one, else the default table width.
size_t DefaultWidth() {
  struct winsize ws {};
  if (::isatty(STDOUT_FILENO) && ::ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) {
    return ws.ws_col;
  }
  return dsm::dbdump::DumpOptions().width;
}

// Accepts a decimal unsigned 64-bit integer only (CLI11 would wrap "-3" around to a huge value).
const CLI::Validator kUnsigned(
    [](std::string& value) -> std::string {
      uint64_t parsed = 0;
      const char* end = value.data() + value.size();
      const auto [ptr, ec] = std::from_chars(value.data(), end, parsed);
      if (value.empty() || value.front() == '-' || value.front() == '+' || ec != std::errc() ||
          ptr != end) {
        return "'" + value + "' is not an integer from 0 to 18446744073709551615";
      }
      return std::string();
    },
    "");

}  // namespace

int main(int argc, char** argv) {
  dsm::dbdump::Command cmd;
  cmd.dump.width = DefaultWidth();
  uint64_t from = 0;
  uint64_t to = 0;
  std::string msg_id;
  std::string format = "table";

  CLI::App app(
      "Inspect a dsm data directory: metadata and cursors, a seq range of the log, one message by "
      "msg_id, a consistency check, or a comparison of several directories. Reads only; never "
      "changes a directory.\n\n"
      "  dsm-dbdump --data-dir DIR [--meta] [--from N] [--to M] [--msg-id ID] [--all]\n"
      "             [--format table|jsonl] [--width W] [--verify] [--follow-running]\n"
      "  dsm-dbdump --compare DIR DIR [DIR...] [--follow-running]\n",
      "dsm-dbdump");
  app.add_option("--data-dir", cmd.data_dir, "The data directory to read (a node's --data-dir)")
      ->type_name("DIR");
  app.add_flag("--meta", cmd.meta,
               "Print the metadata: node id, format version, stream id, message count, first and "
               "last seq, per-origin high waters, push and pull cursors (the default action)");
  CLI::Option* from_opt =
      app.add_option("--from", from, "Print messages from seq N on (inclusive; default 1)")
          ->type_name("N")
          ->check(kUnsigned);
  CLI::Option* to_opt =
      app.add_option("--to", to, "Print messages up to seq M (inclusive; default the last)")
          ->type_name("M")
          ->check(kUnsigned);
  CLI::Option* msg_id_opt =
      app.add_option("--msg-id", msg_id, "Print the message stored under this msg_id")
          ->type_name("ID");
  app.add_flag("--all", cmd.all, "Print every message of the log");
  app.add_option("--format", format,
                 "Output of messages and metadata: 'table' (aligned text; payload cut to fit the "
                 "width) or 'jsonl' (one JSON object per line, the fields of GET /messages, full "
                 "payload)")
      ->check(CLI::IsMember({"table", "jsonl"}))
      ->type_name("FORMAT");
  app.add_option("--width", cmd.dump.width,
                 "Line width the table is fitted to; 0 = cut nothing (default: the terminal's "
                 "width, else 120)")
      ->type_name("W")
      ->check(kUnsigned);
  app.add_flag("--verify", cmd.verify,
               "Check seq density, record decoding, the msg_id and origin indexes both ways, "
               "high waters, per-origin order and the metadata; print one line per damage");
  app.add_flag("--follow-running", cmd.follow_running,
               "Read next to a running node (a RocksDB secondary instance caught up with it) "
               "instead of a read-only view, which a running node's directory refuses");
  app.add_option("--compare", cmd.compare_dirs,
                 "Compare two or more data directories: list, for each, the msg_ids the "
                 "others hold that it misses, and every position (origin, origin_seq) they "
                 "hold with different msg_ids (a conflict)")
      ->expected(2, -1)
      ->type_name("DIR");
  app.footer(
      "Exit codes: 0 OK; 1 damage found (--verify), directories differ (--compare), metadata\n"
      "problems, an undecodable record, or --msg-id not stored; 2 usage error or a directory\n"
      "that cannot be opened (one line on stderr). Output formats: docs/dbdump.md.");

  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {
    return app.exit(e);  // --help
  } catch (const CLI::ParseError& e) {
    std::cerr << "dsm-dbdump: " << e.what() << "; see --help\n";
    return dsm::dbdump::kExitUsage;
  }
  if (from_opt->count() > 0) cmd.from = from;
  if (to_opt->count() > 0) cmd.to = to;
  if (msg_id_opt->count() > 0) cmd.msg_id = msg_id;
  cmd.dump.format =
      format == "jsonl" ? dsm::dbdump::OutputFormat::kJsonLines : dsm::dbdump::OutputFormat::kTable;

  const int code = dsm::dbdump::RunCommand(cmd, std::cout, std::cerr);
  std::cout.flush();
  return code;
}
