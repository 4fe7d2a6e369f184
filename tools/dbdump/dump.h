// The dumping half of dsm-dbdump: metadata, a seq range of the log and one message by msg_id,
// written to a std::ostream as aligned text or JSON lines. The output formats are described in
// docs/dbdump.md.
//
// Functions of a LogReader; thread-compatible (each call reads the reader's current view).
#pragma once

#include <cstddef>
#include <cstdint>
#include <ostream>
#include <string_view>

#include "dsm/status.h"
#include "storage/log_reader.h"

namespace dsm::dbdump {

enum class OutputFormat {
  kTable,      // aligned text for people
  kJsonLines,  // one JSON object per line, for programs
};

struct DumpOptions {
  OutputFormat format = OutputFormat::kTable;
  // kTable: the line width the table is fitted to (the payload column is cut to fit, other
  // columns are cut at fixed maxima). 0 = no limit: nothing is cut.
  size_t width = 120;
};

// Table: aligned "key: value" lines (data_dir, view, format_version, node_id, incarnation,
// stream_id, messages, first_seq, last_seq; when retention trimmed anything first_seq_kept,
// dedup_head, trim_steps_pending and one trimmed_through line per origin; then one line per high
// water, push cursor and pull cursor, then one line per metadata problem and per family whose scan stopped on damage). JSON
// lines: one object with the same facts. Sets *problems (if not null) to the number of metadata
// problems and damaged families shown.
Status DumpMetadata(const LogReader& reader, const DumpOptions& options, std::ostream& out,
                    size_t* problems = nullptr);

// The messages with from <= seq <= to (inclusive), in seq order. Table: a header line, then one
// row per message (seq, msg_id, origin:origin_seq, sender, recipient, ts in ISO-8601, payload);
// the column widths fit the range (it is read twice). JSON lines: the message objects of
// GET /messages, full payload. Sets *count (if not null) to the number of messages printed.
// An undecodable record stops the dump with Corruption naming its seq, after what came before.
Status DumpRange(const LogReader& reader, uint64_t from, uint64_t to, const DumpOptions& options,
                 std::ostream& out, uint64_t* count = nullptr);

// The message the msg_id index holds for `msg_id`, in the chosen format (table: header + row).
// NotFound when the index has no such msg_id, or when its record was trimmed by retention (the
// message says so, and whether the msg_id is still kept for dedup); Corruption when the index
// points at a missing record at or above the first seq kept, or at a record holding another
// msg_id.
Status DumpMsgId(const LogReader& reader, std::string_view msg_id, const DumpOptions& options,
                 std::ostream& out);

}  // namespace dsm::dbdump
