#include "tools/dbdump/dump.h"

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <array>
#include <string>
#include <utility>
#include <vector>

#include "src/http/utf8.h"
#include "tools/dbdump/consumers.h"
#include "storage/schema.h"
#include "tools/dbdump/text.h"

namespace dsm::dbdump {
namespace {

using JsonWriter = rapidjson::Writer<rapidjson::StringBuffer>;

// Table columns, in order. The payload is last and takes what the line width leaves.
enum Column { kSeq, kMsgId, kOrigin, kSender, kRecipient, kTs, kPayload, kColumns };

constexpr std::array<const char*, kColumns> kHeaders = {
    "seq", "msg_id", "origin:origin_seq", "sender", "recipient", "ts", "payload"};
// Widest a column other than the payload gets when the table has a width (longer cells are cut).
constexpr std::array<size_t, kColumns> kMaxWidths = {20, 40, 44, 16, 16, 30, 0};
constexpr size_t kMinPayloadWidth = 16;
constexpr std::string_view kSeparator = "  ";

using Row = std::array<std::string, kColumns>;
using Widths = std::array<size_t, kColumns>;

Row MakeRow(const Message& m) {
  Row row;
  row[kSeq] = std::to_string(m.seq);
  row[kMsgId] = Escape(m.msg_id);
  row[kOrigin] = Escape(m.origin) + ":" + std::to_string(m.origin_seq);
  row[kSender] = Escape(m.sender);
  row[kRecipient] = Escape(m.recipient);
  row[kTs] = FormatTimestamp(m.ts);
  row[kPayload] = Escape(m.payload);
  return row;
}

class Table {
 public:
  explicit Table(size_t line_width) : line_width_(line_width) {
    for (int c = 0; c < kColumns; ++c) widths_[c] = DisplayWidth(kHeaders[c]);
  }

  void Widen(const Row& row) {
    for (int c = 0; c < kPayload; ++c) {
      size_t w = DisplayWidth(row[c]);
      if (line_width_ != 0) w = std::min(w, kMaxWidths[c]);
      widths_[c] = std::max(widths_[c], w);
    }
  }

  void PrintHeader(std::ostream& out) const {
    Row header;
    for (int c = 0; c < kColumns; ++c) header[c] = kHeaders[c];
    Print(header, out, /*right_align_seq=*/false);
  }

  void Print(const Row& row, std::ostream& out, bool right_align_seq = true) const {
    std::string line;
    for (int c = 0; c < kColumns; ++c) {
      if (c > 0) line.append(kSeparator);
      if (c == kPayload) {
        line.append(Fit(row[c], PayloadWidth()));
        break;
      }
      const std::string cell = Fit(row[c], line_width_ == 0 ? 0 : widths_[c]);
      const size_t pad = widths_[c] - std::min(widths_[c], DisplayWidth(cell));
      if (c == kSeq && right_align_seq) {
        line.append(pad, ' ');
        line.append(cell);
      } else {
        line.append(cell);
        line.append(pad, ' ');
      }
    }
    out << line << '\n';
  }

 private:
  size_t PayloadWidth() const {
    if (line_width_ == 0) return 0;
    size_t used = 0;
    for (int c = 0; c < kPayload; ++c) used += widths_[c] + kSeparator.size();
    return used + kMinPayloadWidth >= line_width_ ? kMinPayloadWidth : line_width_ - used;
  }

  size_t line_width_;
  Widths widths_{};
};

void WriteJsonString(JsonWriter& w, std::string_view s) {
  const std::string clean = http::SanitizeUtf8(s);
  w.String(clean.data(), static_cast<rapidjson::SizeType>(clean.size()));
}

std::string ViewName(const LogReader& reader) {
  return reader.mode() == LogReaderOptions::Mode::kSecondary
             ? "secondary (following a running node, as of the last catch-up)"
             : "read-only (frozen at open)";
}

// "family 'log': damaged, read only up to the damage (scan of log: Corruption: ...)".
std::string UnreadableText(const LogMetadata::Unreadable& u) {
  return std::string("family '") + LogFamilyName(u.family) +
         "': damaged, read only up to the damage (" + u.error + ")";
}

// Whether retention ever left a mark in the directory (storage/format.md, "Retention").
bool Trimmed(const LogMetadata& meta) {
  return meta.first_seq_kept || meta.dedup_head || !meta.trim_marks.empty() ||
         !meta.trimmed_through.empty();
}

void PrintMetadataTable(const LogReader& reader, const LogMetadata& meta, std::ostream& out) {
  std::vector<std::pair<std::string, std::string>> lines;
  auto optional_text = [](const std::optional<std::string>& v) {
    return v ? Escape(*v) : std::string("(missing)");
  };
  lines.emplace_back("data_dir", reader.path());
  lines.emplace_back("view", ViewName(reader));
  lines.emplace_back("format_version", meta.format_version ? std::to_string(*meta.format_version)
                                                           : std::string("(missing)"));
  lines.emplace_back("node_id", optional_text(meta.node_id));
  lines.emplace_back("incarnation", optional_text(meta.incarnation));
  const std::string stream = meta.stream_id();
  lines.emplace_back("stream_id", stream.empty() ? std::string("(unknown)") : Escape(stream));
  // A damaged log is counted up to the damage only.
  const bool log_damaged =
      std::any_of(meta.unreadable.begin(), meta.unreadable.end(),
                  [](const LogMetadata::Unreadable& u) { return u.family == LogFamily::kLog; });
  const std::string partial = log_damaged ? " (up to the damage; see 'unreadable')" : "";
  lines.emplace_back("messages", std::to_string(meta.message_count) + partial);
  lines.emplace_back("first_seq", std::to_string(meta.first_seq) + partial);
  lines.emplace_back("last_seq", std::to_string(meta.last_seq) + partial);
  if (Trimmed(meta)) {
    const uint64_t first = meta.FirstSeqKept();
    lines.emplace_back("first_seq_kept",
                       std::to_string(first) +
                           (first > 1 ? " (seqs 1.." + std::to_string(first - 1) + " trimmed)"
                                      : std::string(" (no message trimmed)")));
    lines.emplace_back("dedup_head",
                       meta.dedup_head ? std::to_string(*meta.dedup_head) + " (msg_ids of seqs 1.." +
                                             std::to_string(*meta.dedup_head) + " forgotten)"
                                       : std::string("(none: every trimmed msg_id is kept)"));
    std::string steps = std::to_string(meta.trim_marks.size());
    if (!meta.trim_marks.empty()) {
      const auto& [seq, ts] = *meta.trim_marks.rbegin();
      steps += " (msg_ids kept for dedup; the last step ends at seq " + std::to_string(seq) +
               ", its newest message " + FormatTimestamp(ts) + ")";
    }
    lines.emplace_back("trim_steps_pending", std::move(steps));
    for (const auto& [origin, through] : meta.trimmed_through) {
      lines.emplace_back("trimmed_through " + Escape(origin), std::to_string(through));
    }
  }
  if (meta.high_waters.empty()) lines.emplace_back("high_waters", "(none)");
  for (const auto& [origin, hw] : meta.high_waters) {
    std::string value = std::to_string(hw);
    if (origin == stream) value += " (own stream)";
    lines.emplace_back("high_water " + Escape(origin), std::move(value));
  }
  if (meta.push_cursors.empty()) lines.emplace_back("push_cursors", "(none)");
  for (const auto& [peer, cursor] : meta.push_cursors) {
    std::string value = std::to_string(cursor.origin_seq);
    if (!cursor.peer_stream.empty()) value += " (acknowledged by " + Escape(cursor.peer_stream) + ")";
    lines.emplace_back("push_cursor " + Escape(peer), std::move(value));
  }
  if (meta.pull_cursors.empty()) lines.emplace_back("pull_cursors", "(none)");
  for (const auto& [peer, cursor] : meta.pull_cursors) {
    lines.emplace_back(
        "pull_cursor " + Escape(peer),
        "seq " + std::to_string(cursor.seq) + " of stream " +
            (cursor.peer_stream.empty() ? std::string("(none)") : Escape(cursor.peer_stream)));
  }
  std::vector<StoredConsumer> consumers;
  Status cs = ReadConsumers(reader, &consumers, [&](std::string where, std::string problem) {
    lines.emplace_back("problem", where + ": " + problem);
  });
  if (consumers.empty()) lines.emplace_back("consumers", "(none)");
  for (const StoredConsumer& c : consumers) {
    lines.emplace_back("consumer " + Escape(c.name), ConsumerSummary(c));
  }
  if (!cs.ok()) lines.emplace_back("unreadable", "family 'consumers': " + cs.message());
  for (const MetaProblem& p : meta.problems) {
    lines.emplace_back("problem", DescribeKey(LogFamily::kMeta, p.key) + ": " + p.problem);
  }
  for (const LogMetadata::Unreadable& u : meta.unreadable) {
    lines.emplace_back("unreadable", UnreadableText(u));
  }
  size_t key_width = 0;
  for (const auto& [key, value] : lines) key_width = std::max(key_width, DisplayWidth(key));
  for (const auto& [key, value] : lines) {
    out << key << ':' << std::string(key_width - DisplayWidth(key) + 1, ' ') << value << '\n';
  }
}

void PrintMetadataJson(const LogReader& reader, const LogMetadata& meta, std::ostream& out) {
  rapidjson::StringBuffer buf;
  JsonWriter w(buf);
  auto optional_string = [&w](const std::optional<std::string>& v) {
    if (v) {
      WriteJsonString(w, *v);
    } else {
      w.Null();
    }
  };
  w.StartObject();
  w.Key("data_dir");
  WriteJsonString(w, reader.path());
  w.Key("view");
  w.String(reader.mode() == LogReaderOptions::Mode::kSecondary ? "secondary" : "read-only");
  w.Key("format_version");
  if (meta.format_version) {
    w.Uint64(*meta.format_version);
  } else {
    w.Null();
  }
  w.Key("node_id");
  optional_string(meta.node_id);
  w.Key("incarnation");
  optional_string(meta.incarnation);
  w.Key("stream_id");
  const std::string stream = meta.stream_id();
  optional_string(stream.empty() ? std::nullopt : std::optional<std::string>(stream));
  w.Key("messages");
  w.Uint64(meta.message_count);
  w.Key("first_seq");
  w.Uint64(meta.first_seq);
  w.Key("last_seq");
  w.Uint64(meta.last_seq);
  w.Key("first_seq_kept");
  w.Uint64(meta.FirstSeqKept());
  w.Key("dedup_head");
  if (meta.dedup_head) {
    w.Uint64(*meta.dedup_head);
  } else {
    w.Null();
  }
  w.Key("trim_steps_pending");
  w.StartArray();
  for (const auto& [seq, ts] : meta.trim_marks) {
    w.StartObject();
    w.Key("through_seq");
    w.Uint64(seq);
    w.Key("newest_ts");
    w.Double(ts);
    w.EndObject();
  }
  w.EndArray();
  w.Key("trimmed_through");
  w.StartObject();
  for (const auto& [origin, through] : meta.trimmed_through) {
    WriteJsonString(w, origin);
    w.Uint64(through);
  }
  w.EndObject();
  w.Key("high_waters");
  w.StartObject();
  for (const auto& [origin, hw] : meta.high_waters) {
    WriteJsonString(w, origin);
    w.Uint64(hw);
  }
  w.EndObject();
  w.Key("push_cursors");
  w.StartObject();
  for (const auto& [peer, cursor] : meta.push_cursors) {
    WriteJsonString(w, peer);
    w.Uint64(cursor.origin_seq);
  }
  w.EndObject();
  // The incarnation of each peer that acknowledged its push cursor ("" when not recorded).
  w.Key("push_cursor_streams");
  w.StartObject();
  for (const auto& [peer, cursor] : meta.push_cursors) {
    WriteJsonString(w, peer);
    WriteJsonString(w, cursor.peer_stream);
  }
  w.EndObject();
  w.Key("pull_cursors");
  w.StartObject();
  for (const auto& [peer, cursor] : meta.pull_cursors) {
    WriteJsonString(w, peer);
    w.StartObject();
    w.Key("stream");
    WriteJsonString(w, cursor.peer_stream);
    w.Key("seq");
    w.Uint64(cursor.seq);
    w.EndObject();
  }
  w.EndObject();
  // Durable consumers: name, definition facts, floor, acknowledgements above it, dead letters.
  std::vector<StoredConsumer> consumers;
  std::vector<std::pair<std::string, std::string>> consumer_problems;
  Status cs = ReadConsumers(reader, &consumers, [&](std::string where, std::string problem) {
    consumer_problems.emplace_back(std::move(where), std::move(problem));
  });
  if (!cs.ok()) consumer_problems.emplace_back("family 'consumers'", cs.message());
  w.Key("consumers");
  w.StartArray();
  for (const StoredConsumer& c : consumers) {
    w.StartObject();
    w.Key("name");
    WriteJsonString(w, c.name);
    w.Key("recipient");
    optional_string(c.definition.recipient);
    w.Key("sender");
    optional_string(c.definition.sender);
    w.Key("started_after");
    w.Uint64(c.initial);
    w.Key("ack_floor");
    w.Uint64(c.floor);
    w.Key("acked_above_floor");
    w.Uint64(c.acked.size());
    w.Key("dead_letters");
    w.Uint64(c.dead.size());
    w.Key("session");
    w.Uint64(c.session);
    w.EndObject();
  }
  w.EndArray();
  w.Key("problems");
  w.StartArray();
  for (const auto& [where, problem] : consumer_problems) {
    w.StartObject();
    w.Key("key");
    WriteJsonString(w, where);
    w.Key("problem");
    WriteJsonString(w, problem);
    w.EndObject();
  }
  for (const MetaProblem& p : meta.problems) {
    w.StartObject();
    w.Key("key");
    WriteJsonString(w, DescribeKey(LogFamily::kMeta, p.key));
    w.Key("problem");
    WriteJsonString(w, p.problem);
    w.EndObject();
  }
  w.EndArray();
  w.Key("unreadable");
  w.StartArray();
  for (const LogMetadata::Unreadable& u : meta.unreadable) {
    w.StartObject();
    w.Key("family");
    w.String(LogFamilyName(u.family));
    w.Key("error");
    WriteJsonString(w, u.error);
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
  out << std::string_view(buf.GetString(), buf.GetSize()) << '\n';
}

}  // namespace

Status DumpMetadata(const LogReader& reader, const DumpOptions& options, std::ostream& out,
                    size_t* problems) {
  Result<LogMetadata> meta = reader.ReadMetadata();
  if (!meta.ok()) return meta.status();
  if (options.format == OutputFormat::kJsonLines) {
    PrintMetadataJson(reader, *meta, out);
  } else {
    PrintMetadataTable(reader, *meta, out);
  }
  if (problems != nullptr) *problems = meta->problems.size() + meta->unreadable.size();
  return Status::Ok();
}

Status DumpRange(const LogReader& reader, uint64_t from, uint64_t to, const DumpOptions& options,
                 std::ostream& out, uint64_t* count) {
  uint64_t printed = 0;
  if (count != nullptr) *count = 0;
  if (options.format == OutputFormat::kJsonLines) {
    Status s = reader.ScanLog(from, to, [&](const Message& m) {
      out << MessageJson(m) << '\n';
      ++printed;
      return true;
    });
    if (count != nullptr) *count = printed;
    return s;
  }
  // First pass: column widths, so that rows align without holding the range in memory. The
  // reader's view does not change between the passes. A damaged record ends both passes at the
  // same seq; the second one reports it.
  Table table(options.width);
  static_cast<void>(reader.ScanLog(from, to, [&](const Message& m) {
    table.Widen(MakeRow(m));
    return true;
  }));
  table.PrintHeader(out);
  Status s = reader.ScanLog(from, to, [&](const Message& m) {
    table.Print(MakeRow(m), out);
    ++printed;
    return true;
  });
  if (count != nullptr) *count = printed;
  return s;
}

Status DumpMsgId(const LogReader& reader, std::string_view msg_id, const DumpOptions& options,
                 std::ostream& out) {
  Result<std::optional<uint64_t>> seq = reader.LookupMsgId(msg_id);
  if (!seq.ok()) return seq.status();
  const std::string shown = "'" + Escape(msg_id) + "'";
  if (!seq->has_value()) {
    return Status::NotFound("msg_id " + shown + " is not in data directory " + reader.path());
  }
  if (Result<std::optional<std::string>> first = reader.GetRaw(LogFamily::kMeta,
                                                             schema::kFirstSeqKey);
      first.ok() && first->has_value()) {
    uint64_t first_seq = 0;
    Result<std::optional<std::string>> head = reader.GetRaw(LogFamily::kMeta, schema::kDedupHeadKey);
    uint64_t dedup_head = 0;
    if (head.ok() && head->has_value()) schema::DecodeSeqValue(**head, &dedup_head);
    if (schema::DecodeSeqValue(**first, &first_seq) && **seq < first_seq) {
      return Status::NotFound("msg_id " + shown + " was at seq " + std::to_string(**seq) +
                              ", trimmed by retention (first seq kept " +
                              std::to_string(first_seq) + "); its msg_id is " +
                              (**seq <= dedup_head ? "forgotten (dedup head " +
                                                         std::to_string(dedup_head) + ")"
                                                   : std::string("still kept for dedup")));
    }
  }
  Result<std::optional<Message>> m = reader.Get(**seq);
  if (!m.ok()) return m.status();
  if (!m->has_value()) {
    return Status::Corruption("msg_id " + shown + " is indexed at seq " + std::to_string(**seq) +
                              ", which is not in the log");
  }
  const Message& msg = **m;
  if (msg.msg_id != msg_id) {
    return Status::Corruption("msg_id " + shown + " is indexed at seq " + std::to_string(**seq) +
                              ", which holds msg_id '" + Escape(msg.msg_id) + "'");
  }
  if (options.format == OutputFormat::kJsonLines) {
    out << MessageJson(msg) << '\n';
    return Status::Ok();
  }
  Table table(options.width);
  const Row row = MakeRow(msg);
  table.Widen(row);
  table.PrintHeader(out);
  table.Print(row, out);
  return Status::Ok();
}

}  // namespace dsm::dbdump
