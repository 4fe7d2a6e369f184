#include "storage/write_plan.h"

#include <unordered_map>

#include "common/planted_bugs.h"
#include "storage/record.h"

namespace dsm {
namespace {

using Kind = WriteOutcome::Kind;

// Checks a request's input before anything of it is planned.
Status Validate(const WriteRequest& req) {
  const std::vector<Message>& msgs = *req.msgs;
  for (size_t i = 0; i < msgs.size(); ++i) {
    const Message& m = msgs[i];
    if (m.msg_id.empty()) {
      return Status::InvalidArgument("message " + std::to_string(i) + ": empty msg_id");
    }
    if (req.kind == WriteRequest::Kind::kApply && !m.origin.empty()) {
      if (m.origin_seq == 0) {
        return Status::InvalidArgument("message " + std::to_string(i) + " (" + m.msg_id +
                                       "): origin without origin_seq");
      }
      if (m.origin.find('\0') != std::string::npos) {
        return Status::InvalidArgument("message " + std::to_string(i) + " (" + m.msg_id +
                                       "): NUL byte in origin");
      }
    }
  }
  if (req.cursor != nullptr && req.peer_url.empty()) {
    return Status::InvalidArgument("pull cursor without a peer url");
  }
  return Status::Ok();
}

class Planner {
 public:
  Planner(const WritePlanState& state, const WritePlanLookups& lookups, size_t total_msgs)
      : state_(state), lookups_(lookups) {
    plan_.last_seq = state.last_seq;
    plan_.records.reserve(total_msgs);
    plan_.msg_ids.reserve(total_msgs);
    plan_.origins.reserve(total_msgs);
    plan_.appended.reserve(total_msgs);
    planned_ids_.reserve(total_msgs);
  }

  // Plans one request. A non-OK status is a lookup failure or a corrupt store: the whole plan
  // is void.
  Status Plan(const WriteRequest& req) {
    if (Status s = Validate(req); !s.ok()) {
      plan_.results.emplace_back(std::move(s));
      return Status::Ok();
    }
    const std::vector<Message>& msgs = *req.msgs;
    std::vector<WriteOutcome> outcomes(msgs.size());
    // Origins stopped by a gap are stopped for the rest of this request only.
    std::vector<OriginState*> stopped;
    // The peer seq of the first message refused as a gap (0: none).
    uint64_t first_gap_seq = 0;
    for (size_t i = 0; i < msgs.size(); ++i) {
      const Message& m = msgs[i];
      Status s;
      if (req.kind == WriteRequest::Kind::kAppend || m.origin.empty()) {
        s = PlanAdopt(m, &outcomes[i]);
      } else {
        s = PlanWithOrigin(m, &stopped, &outcomes[i]);
      }
      if (!s.ok()) return s;
      if (outcomes[i].kind == Kind::kGap && m.seq > 0 &&
          (first_gap_seq == 0 || m.seq < first_gap_seq)) {
        first_gap_seq = m.seq;
      }
    }
    for (OriginState* o : stopped) o->stopped = false;
    if (req.cursor != nullptr) {
      const PullCursor* cursor = req.cursor;
      if (first_gap_seq != 0 && first_gap_seq - 1 < cursor->seq &&
          !Planted(PlantedBug::kSkipCursorWrite)) {
        cursor = &plan_.adjusted_cursors.emplace_back(
            PullCursor{cursor->peer_stream, first_gap_seq - 1});
      }
      plan_.pull_cursors.push_back({req.peer_url, cursor});
    }
    plan_.results.emplace_back(std::move(outcomes));
    return Status::Ok();
  }

  WritePlan Finish() && {
    for (const auto& [origin, o] : origins_) {
      if (o.high_water != o.base_high_water) plan_.high_waters.emplace_back(origin, o.high_water);
    }
    return std::move(plan_);
  }

 private:
  // A stream as seen by this plan: its published high water and the positions planned since.
  struct OriginState {
    uint64_t base_high_water = 0;
    uint64_t high_water = 0;
    uint64_t trimmed = 0;  // positions at or below it are no longer held
    std::vector<uint64_t> planned_seqs;  // seqs of positions base_high_water + 1 .. high_water
    bool stopped = false;                // a gap was met earlier in the current request
  };
  // A message planned in this group.
  struct PlannedId {
    uint64_t seq;
    std::string_view origin;
    uint64_t origin_seq;
  };

  OriginState& Origin(std::string_view origin) {
    auto it = origins_.find(origin);
    if (it == origins_.end()) {
      OriginState o;
      auto hw = state_.high_waters->find(origin);
      if (hw != state_.high_waters->end()) o.base_high_water = o.high_water = hw->second;
      if (state_.trimmed != nullptr) {
        auto t = state_.trimmed->find(origin);
        if (t != state_.trimmed->end()) o.trimmed = t->second;
      }
      it = origins_.emplace(origin, std::move(o)).first;
    }
    return it->second;
  }

  // The seq holding `msg_id`, planned or stored.
  Result<std::optional<uint64_t>> FindMsgId(std::string_view msg_id) const {
    auto it = planned_ids_.find(msg_id);
    if (it != planned_ids_.end()) return std::optional<uint64_t>(it->second.seq);
    return lookups_.find_msg_id(msg_id);
  }

  // Writes `m` at the next seq as position high_water + 1 of `origin`.
  void PlanRecord(const Message& m, std::string_view origin, OriginState& o, WriteOutcome* out) {
    const uint64_t seq = ++plan_.last_seq;
    const uint64_t origin_seq = ++o.high_water;
    o.planned_seqs.push_back(seq);
    WritePlan::Record& rec = plan_.records.emplace_back();
    rec.seq = seq;
    AppendRecord(&rec.value, m, origin, origin_seq);
    rec.origin_seq = origin_seq;
    rec.own = origin == state_.stream_id;
    plan_.msg_ids.push_back({m.msg_id, seq});
    plan_.origins.push_back({origin, origin_seq, seq});
    plan_.appended.push_back({seq, m.sender, m.recipient});
    planned_ids_.emplace(m.msg_id, PlannedId{seq, origin, origin_seq});
    *out = WriteOutcome{Kind::kAppended, seq, std::string(origin), origin_seq, 0};
  }

  Status PlanAdopt(const Message& m, WriteOutcome* out) {
    if (Planted(PlantedBug::kSkipMsgIdIndex)) {
      PlanRecord(m, state_.stream_id, Origin(state_.stream_id), out);
      return Status::Ok();
    }
    auto planned = planned_ids_.find(m.msg_id);
    if (planned != planned_ids_.end()) {
      const PlannedId& p = planned->second;
      *out = WriteOutcome{Kind::kDuplicate, p.seq, std::string(p.origin), p.origin_seq, 0};
      return Status::Ok();
    }
    Result<std::optional<uint64_t>> stored = lookups_.find_msg_id(m.msg_id);
    if (!stored.ok()) return stored.status();
    if (stored->has_value()) {
      const uint64_t seq = **stored;
      if (seq < state_.first_seq) {
        // A retry of a message that was trimmed: still a duplicate, its position is gone.
        *out = WriteOutcome{Kind::kDuplicate, seq, std::string(), 0, 0};
        return Status::Ok();
      }
      Result<StoredPosition> pos = lookups_.stored_position(seq);
      if (!pos.ok()) return pos.status();
      *out = WriteOutcome{Kind::kDuplicate, seq, std::move(pos->origin), pos->origin_seq, 0};
      return Status::Ok();
    }
    PlanRecord(m, state_.stream_id, Origin(state_.stream_id), out);
    return Status::Ok();
  }

  Status PlanWithOrigin(const Message& m, std::vector<OriginState*>* stopped, WriteOutcome* out) {
    OriginState& o = Origin(m.origin);
    const uint64_t p = m.origin_seq;
    if (o.stopped || (p > o.high_water + 1 && !Planted(PlantedBug::kAcceptGap))) {
      if (!o.stopped) {
        o.stopped = true;
        stopped->push_back(&o);
      }
      *out = WriteOutcome{Kind::kGap, 0, m.origin, p, o.high_water + 1};
      return Status::Ok();
    }
    if (p <= o.high_water) {
      if (p <= o.trimmed) {
        // No longer held here: what it held cannot be compared any more.
        *out = WriteOutcome{Kind::kDuplicate, 0, m.origin, p, 0};
        return Status::Ok();
      }
      Result<uint64_t> seq = PositionSeq(m.origin, o, p);
      if (!seq.ok()) return seq.status();
      if (*seq != 0 && *seq < state_.first_seq) {
        *out = WriteOutcome{Kind::kDuplicate, *seq, m.origin, p, 0};
        return Status::Ok();
      }
      // A duplicate only when the position holds this very msg_id.
      Result<std::optional<uint64_t>> held = FindMsgId(m.msg_id);
      if (!held.ok()) return held.status();
      const bool same = held->has_value() && **held == *seq;
      const Kind kind =
          same || Planted(PlantedBug::kConflictAsDuplicate) ? Kind::kDuplicate : Kind::kConflict;
      *out = WriteOutcome{kind, *seq, m.origin, p, 0};
      return Status::Ok();
    }
    if (p > o.high_water + 1) {
      // Planted bug kAcceptGap: the message is stored, leaving a hole before it.
      while (o.high_water + 1 < p) {
        ++o.high_water;
        o.planned_seqs.push_back(0);
      }
    }
    // p == high_water + 1.
    Result<std::optional<uint64_t>> existing = FindMsgId(m.msg_id);
    if (!existing.ok()) return existing.status();
    if (!existing->has_value()) {
      PlanRecord(m, m.origin, o, out);
      return Status::Ok();
    }
    // The msg_id is stored under another origin: the position is consumed, pointing at it.
    const uint64_t seq = **existing;
    o.high_water = p;
    o.planned_seqs.push_back(seq);
    plan_.origins.push_back({m.origin, p, seq});
    *out = WriteOutcome{Kind::kDuplicate, seq, m.origin, p, 0};
    return Status::Ok();
  }

  // The local seq holding position `p` of `origin`. REQUIRES: p <= o.high_water.
  Result<uint64_t> PositionSeq(std::string_view origin, const OriginState& o, uint64_t p) const {
    if (p > o.base_high_water) return o.planned_seqs[p - o.base_high_water - 1];
    Result<std::optional<uint64_t>> seq = lookups_.find_origin_seq(origin, p);
    if (!seq.ok()) return seq.status();
    if (!seq->has_value()) {
      return Status::Corruption("origin index has no entry for position " + std::to_string(p) +
                                " of " + std::string(origin) + " below its high water " +
                                std::to_string(o.base_high_water));
    }
    return **seq;
  }

  const WritePlanState& state_;
  const WritePlanLookups& lookups_;
  WritePlan plan_;
  std::map<std::string_view, OriginState, std::less<>> origins_;
  std::unordered_map<std::string_view, PlannedId> planned_ids_;
};

}  // namespace

Result<WritePlan> PlanWrites(std::span<const WriteRequest* const> requests,
                             const WritePlanState& state, const WritePlanLookups& lookups) {
  size_t total = 0;
  for (const WriteRequest* r : requests) total += r->msgs->size();
  Planner planner(state, lookups, total);
  for (const WriteRequest* r : requests) {
    if (Status s = planner.Plan(*r); !s.ok()) return s;
  }
  return std::move(planner).Finish();
}

}  // namespace dsm
