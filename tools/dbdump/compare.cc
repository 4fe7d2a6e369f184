#include "tools/dbdump/compare.h"

#include <functional>
#include <memory>
#include <optional>
#include <string_view>

#include "tools/dbdump/text.h"

namespace dsm::dbdump {
namespace {

std::string Label(size_t i) { return "[" + std::to_string(i + 1) + "]"; }

// Walks the msg_id indexes of `readers` together, in key order. `visit` gets each distinct
// msg_id with, per reader, whether that reader holds it.
Status MergeMsgIds(
    const std::vector<const LogReader*>& readers,
    const std::function<void(std::string_view msg_id, const std::vector<bool>& held)>& visit) {
  std::vector<std::unique_ptr<LogReader::RawCursor>> cursors;
  for (const LogReader* r : readers) {
    cursors.push_back(r->NewRawCursor(LogFamily::kMsgId));
    cursors.back()->SeekToFirst();
  }
  std::vector<bool> held(readers.size());
  while (true) {
    std::optional<std::string_view> smallest;
    for (const auto& c : cursors) {
      if (c->Valid() && (!smallest || c->key() < *smallest)) smallest = c->key();
    }
    if (!smallest) break;
    // The key's bytes belong to a cursor: copy before advancing.
    const std::string msg_id(*smallest);
    for (size_t i = 0; i < cursors.size(); ++i) {
      held[i] = cursors[i]->Valid() && cursors[i]->key() == msg_id;
    }
    visit(msg_id, held);
    for (size_t i = 0; i < cursors.size(); ++i) {
      if (held[i]) cursors[i]->Next();
    }
  }
  for (const auto& c : cursors) {
    if (Status s = c->status(); !s.ok()) return s;
  }
  return Status::Ok();
}

}  // namespace

bool CompareReport::same() const {
  for (const CompareDir& d : dirs) {
    if (d.missing != 0) return false;
  }
  return true;
}

std::string CompareReport::Summary() const {
  if (same()) {
    return "the " + std::to_string(dirs.size()) + " directories hold the same " +
           std::to_string(distinct) + " msg_ids";
  }
  std::string s = "the directories differ:";
  for (size_t i = 0; i < dirs.size(); ++i) {
    s += (i == 0 ? " " : ", ") + Label(i) + " misses " + std::to_string(dirs[i].missing);
  }
  return s + " (of " + std::to_string(distinct) + " distinct msg_ids)";
}

Result<CompareReport> Compare(const std::vector<const LogReader*>& readers, std::ostream& out) {
  CompareReport report;
  for (const LogReader* r : readers) {
    Result<LogMetadata> meta = r->ReadMetadata();
    if (!meta.ok()) return meta.status();
    report.dirs.push_back(CompareDir{r->path(), meta->stream_id(), 0, 0});
  }
  Status s = MergeMsgIds(readers, [&](std::string_view, const std::vector<bool>& held) {
    ++report.distinct;
    for (size_t i = 0; i < held.size(); ++i) {
      ++(held[i] ? report.dirs[i].msg_ids : report.dirs[i].missing);
    }
  });
  if (!s.ok()) return s;

  for (size_t i = 0; i < report.dirs.size(); ++i) {
    const CompareDir& d = report.dirs[i];
    out << Label(i) << ' ' << d.path << "  "
        << (d.stream_id.empty() ? std::string("(no stream id)") : Escape(d.stream_id)) << "  "
        << d.msg_ids << " msg_ids\n";
  }
  for (size_t i = 0; i < report.dirs.size(); ++i) {
    if (report.dirs[i].missing == 0) continue;
    out << Label(i) << " misses " << report.dirs[i].missing << " msg_ids that others hold:\n";
    s = MergeMsgIds(readers, [&](std::string_view msg_id, const std::vector<bool>& held) {
      if (held[i]) return;
      std::string line = "  '" + Escape(msg_id) + "'  held by";
      for (size_t j = 0; j < held.size(); ++j) {
        if (held[j]) line += " " + Label(j);
      }
      out << line << '\n';
    });
    if (!s.ok()) return s;
  }
  return report;
}

}  // namespace dsm::dbdump
