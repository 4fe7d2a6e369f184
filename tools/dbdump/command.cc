#include "tools/dbdump/command.h"

#include <algorithm>
#include <limits>
#include <memory>

#include "storage/log_reader.h"
#include "tools/dbdump/compare.h"
#include "tools/dbdump/verify.h"

namespace dsm::dbdump {
namespace {

constexpr char kTool[] = "dsm-dbdump: ";

// After damage was found: where the way back is described (dsm-node says the same when it
// refuses a damaged directory).
constexpr char kRecoveryHint[] =
    "to bring its node back, see docs/operations.md, \"Recovering a damaged or lost node\"";

int Fail(std::ostream& err, int code, const std::string& reason) {
  err << kTool << reason << '\n';
  return code;
}

// Exit code of a failed read: damage on disk is kExitDamage, anything else (I/O) kExitUsage.
int ReadFailure(std::ostream& err, const Status& s) {
  const int code =
      s.code() == Code::kCorruption || s.code() == Code::kNotFound ? kExitDamage : kExitUsage;
  return Fail(err, code, s.message());
}

Result<std::unique_ptr<LogReader>> OpenReader(const std::string& path, bool follow_running) {
  LogReaderOptions options;
  options.path = path;
  options.mode =
      follow_running ? LogReaderOptions::Mode::kSecondary : LogReaderOptions::Mode::kReadOnly;
  Result<std::unique_ptr<LogReader>> reader = LogReader::Open(options);
  if (!reader.ok() && reader.status().code() == Code::kUnavailable && !follow_running) {
    return Status::Unavailable(reader.status().message() +
                               "; use --follow-running to read it next to the running node");
  }
  return reader;
}

int RunCompare(const Command& cmd, std::ostream& out, std::ostream& err) {
  std::vector<std::unique_ptr<LogReader>> owned;
  std::vector<const LogReader*> readers;
  for (const std::string& dir : cmd.compare_dirs) {
    Result<std::unique_ptr<LogReader>> reader = OpenReader(dir, cmd.follow_running);
    if (!reader.ok()) return Fail(err, kExitUsage, reader.status().message());
    readers.push_back(reader->get());
    owned.push_back(std::move(*reader));
  }
  Result<CompareReport> report = Compare(readers, out);
  if (!report.ok()) return ReadFailure(err, report.status());
  out << "compare: " << report->Summary() << '\n';
  return report->same() ? kExitOk : kExitDamage;
}

}  // namespace

int RunCommand(const Command& cmd, std::ostream& out, std::ostream& err) {
  const bool range = cmd.all || cmd.from.has_value() || cmd.to.has_value();
  if (!cmd.compare_dirs.empty()) {
    if (!cmd.data_dir.empty() || cmd.meta || range || cmd.msg_id || cmd.verify) {
      return Fail(err, kExitUsage,
                  "--compare cannot be combined with --data-dir, --meta, --from, --to, --all, "
                  "--msg-id or --verify");
    }
    if (cmd.compare_dirs.size() < 2) {
      return Fail(err, kExitUsage, "--compare needs at least two data directories");
    }
    return RunCompare(cmd, out, err);
  }
  if (cmd.data_dir.empty()) {
    return Fail(err, kExitUsage, "give --data-dir DIR or --compare DIR DIR...; see --help");
  }
  if (cmd.all && (cmd.from || cmd.to)) {
    return Fail(err, kExitUsage, "--all cannot be combined with --from or --to");
  }
  if (cmd.from && cmd.to && *cmd.from > *cmd.to) {
    return Fail(
        err, kExitUsage,
        "--from " + std::to_string(*cmd.from) + " is after --to " + std::to_string(*cmd.to));
  }

  Result<std::unique_ptr<LogReader>> opened = OpenReader(cmd.data_dir, cmd.follow_running);
  if (!opened.ok()) return Fail(err, kExitUsage, opened.status().message());
  const LogReader& reader = **opened;

  const bool meta = cmd.meta || (!range && !cmd.msg_id && !cmd.verify);
  int exit_code = kExitOk;
  bool damaged = false;  // the directory itself is damaged (not: a msg_id is not stored)
  if (meta) {
    size_t problems = 0;
    if (Status s = DumpMetadata(reader, cmd.dump, out, &problems); !s.ok()) {
      return ReadFailure(err, s);
    }
    if (problems > 0) {
      exit_code = kExitDamage;
      damaged = true;
    }
  }
  if (cmd.msg_id) {
    if (Status s = DumpMsgId(reader, *cmd.msg_id, cmd.dump, out); !s.ok()) {
      exit_code = std::max(exit_code, ReadFailure(err, s));
      damaged = damaged || s.code() == Code::kCorruption;
    }
  }
  if (range) {
    const uint64_t from = cmd.from.value_or(1);
    const uint64_t to = cmd.to.value_or(std::numeric_limits<uint64_t>::max());
    if (Status s = DumpRange(reader, from, to, cmd.dump, out); !s.ok()) {
      exit_code = std::max(exit_code, ReadFailure(err, s));
      damaged = damaged || s.code() == Code::kCorruption;
    }
  }
  if (cmd.verify) {
    Result<VerifyReport> report =
        Verify(reader, [&out](const Damage& d) { out << "damage: " << d.ToString() << '\n'; });
    if (!report.ok()) return std::max(exit_code, ReadFailure(err, report.status()));
    out << "verify " << reader.path() << ": " << report->Summary() << '\n';
    if (!report->ok()) {
      exit_code = kExitDamage;
      damaged = true;
    }
  }
  if (damaged)
    Fail(err, kExitDamage, "data directory " + reader.path() + " is damaged; " + kRecoveryHint);
  return exit_code;
}

}  // namespace dsm::dbdump
