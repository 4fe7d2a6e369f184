#include "bench/dsm_bench/report.h"

#include <rapidjson/prettywriter.h>
#include <rapidjson/stringbuffer.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>

namespace dsm::bench {

namespace {

using JsonWriter = rapidjson::PrettyWriter<rapidjson::StringBuffer>;

double Ratio(double a, double b) { return b > 0 ? a / b : 0; }

// JSON numbers are finite; rounded to 4 decimals to keep the file readable.
void Num(JsonWriter& w, const char* key, double v) {
  w.Key(key);
  if (!std::isfinite(v)) v = 0;
  w.Double(std::round(v * 1e4) / 1e4);
}
void Int(JsonWriter& w, const char* key, uint64_t v) {
  w.Key(key);
  w.Uint64(v);
}
void Str(JsonWriter& w, const char* key, const std::string& v) {
  w.Key(key);
  w.String(v.c_str(), static_cast<rapidjson::SizeType>(v.size()));
}
void Bool(JsonWriter& w, const char* key, bool v) {
  w.Key(key);
  w.Bool(v);
}

void Latency(JsonWriter& w, const char* key, const LatencySummary& s) {
  w.Key(key);
  w.StartObject();
  Int(w, "count", s.count);
  Num(w, "min", s.min_ms);
  Num(w, "mean", s.mean_ms);
  Num(w, "p50", s.p50_ms);
  Num(w, "p90", s.p90_ms);
  Num(w, "p99", s.p99_ms);
  Num(w, "p99_9", s.p999_ms);
  Num(w, "max", s.max_ms);
  w.EndObject();
}

void Cpu(JsonWriter& w, const CpuUse& c) {
  w.Key("cpu_pct");
  w.StartObject();
  Num(w, "machine", c.machine_pct);
  Num(w, "dsm_bench", c.self_pct);
  w.Key("nodes");
  w.StartArray();
  for (double v : c.pids_pct) w.Double(std::round(v * 10) / 10);
  w.EndArray();
  w.EndObject();
}

void Errors(JsonWriter& w, const LoadResult& l) {
  w.Key("errors");
  w.StartObject();
  for (const auto& [what, count] : l.errors) {
    w.Key(what.c_str(), static_cast<rapidjson::SizeType>(what.size()));
    w.Uint64(count);
  }
  w.EndObject();
  Int(w, "error_count", l.total_errors());
}

void Replication(JsonWriter& w, const ReplicationResult& r, double base_ms) {
  w.Key("replication");
  w.StartObject();
  Int(w, "requests", r.requests);
  Int(w, "messages", r.messages);
  Int(w, "missing", r.missing);
  Latency(w, "e2e_ms", r.e2e);
  Num(w, "fully_replicated_per_s", r.fully_replicated_per_s);
  Num(w, "resolution_ms", r.resolution_ms);
  Num(w, "e2e_p50_to_base", Ratio(r.e2e.p50_ms, base_ms));
  Num(w, "e2e_p99_to_base", Ratio(r.e2e.p99_ms, base_ms));
  w.EndObject();
}

void Run(JsonWriter& w, const PublishRun& run, const BenchReport& rep) {
  const double base = rep.BaseLatencyMs();
  const double ceiling = rep.CeilingRps();
  w.StartObject();
  Str(w, "mode", run.mode);
  Str(w, "loop", run.open_loop ? "open" : "closed");
  Int(w, "clients", static_cast<uint64_t>(run.clients));
  if (run.open_loop) Num(w, "offered_per_s", run.load.offered_rate);
  Int(w, "messages", run.load.messages);
  Num(w, "window_s", run.load.window_s);
  Num(w, "throughput_per_s", run.load.messages_per_s);
  Errors(w, run.load);
  Latency(w, run.open_loop ? "latency_ms_from_intended" : "latency_ms", run.load.latency);
  if (run.open_loop) Latency(w, "service_ms", run.load.service);
  Replication(w, run.replication, base);
  Bool(w, "replicated_before_next_run", run.replicated_in_time);
  Latency(w, "disk_fsync_during_run_ms", run.fsync_probe);
  Cpu(w, run.load.cpu);
  w.Key("ratios");
  w.StartObject();
  Num(w, "p50_to_base", Ratio(run.load.latency.p50_ms, base));
  Num(w, "p99_to_base", Ratio(run.load.latency.p99_ms, base));
  Num(w, "throughput_to_ceiling", Ratio(run.load.messages_per_s, ceiling));
  w.EndObject();
  w.EndObject();
}

std::string Fmt(const char* fmt, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, fmt, v);
  return buf;
}

void Stage(JsonWriter& w, const char* key, const StageFigure& f) {
  w.Key(key);
  w.StartObject();
  Int(w, "count", f.count);
  Num(w, "mean_ms", f.mean_ms);
  Num(w, "p50_ms", f.p50_ms);
  w.EndObject();
}

void Stages(JsonWriter& w, const PublishRun& run) {
  const QuorumStages& q = run.stages;
  w.StartObject();
  Int(w, "clients", static_cast<uint64_t>(run.clients));
  Bool(w, "measured", q.measured);
  if (!q.measured) Str(w, "error", q.error);
  Stage(w, "log_write", q.log_write);
  Stage(w, "core_queue", q.core_queue);
  Stage(w, "quorum_wait", q.quorum_wait);
  Stage(w, "push_round_trip", q.push_round_trip);
  Stage(w, "peer_write", q.peer_write);
  Stage(w, "total_in_node", q.total);
  w.Key("client_round_trip");
  w.StartObject();
  Int(w, "count", run.load.latency.count);
  Num(w, "mean_ms", run.load.latency.mean_ms);
  Num(w, "p50_ms", run.load.latency.p50_ms);
  w.EndObject();
  w.EndObject();
}

// Resident memory a node may use beyond its --memory-mb whatever the log size: the HTTP server's
// threads and buffers, request bodies in flight, the own-stream tail cache, RocksDB's table
// readers and allocator slack (docs/operations.md, "Memory").
constexpr uint64_t kRssHeadroomMiB = 128;

void AddScaleTargets(BenchReport* rep) {
  const ScaleRun& sc = rep->scale;
  if (!sc.requested) return;
  const char* kAbsolute = "absolute";
  if (!sc.ran || sc.points.size() < 2) {
    TargetCheck t;
    t.kind = kAbsolute;
    t.name = "scale: flat cost as the log grows";
    t.goal = "see docs/benchmarks.md, \"Scale\"";
    t.value = sc.ran ? "no log size reached" : "not run: " + sc.skipped;
    rep->targets.push_back(t);
    return;
  }
  const ScalePoint& start = sc.points.front();
  const double payload = static_cast<double>(rep->config.payload_bytes);
  const uint64_t rss_goal = (static_cast<uint64_t>(rep->config.node_memory_mb) + kRssHeadroomMiB)
                            << 20;
  for (size_t i = 1; i < sc.points.size(); ++i) {
    const ScalePoint& p = sc.points[i];
    const std::string at = "scale at " + std::to_string(p.messages) + " messages: ";
    TargetCheck t;
    t.kind = kAbsolute;
    t.name = at + "a new empty peer catches up at >= 150,000 msgs/s";
    t.goal = ">= 150000 msgs/s";
    t.measured = p.catchup_ran && p.catchup_complete;
    t.value = !p.catchup_ran ? "not run"
              : t.measured   ? Fmt("%.0f msgs/s", p.catchup_per_s) + Fmt(" (%.1f s)", p.catchup_s)
                             : "did not complete";
    t.met = t.measured && p.catchup_per_s >= 150000;
    rep->targets.push_back(t);

    t = TargetCheck{};
    t.kind = kAbsolute;
    t.name = at + "dsm-dbdump --verify reads >= 200,000 records/s";
    t.goal = ">= 200000 records/s";
    t.measured = p.verify_ran && p.verify_error.empty();
    t.value = !p.verify_ran ? "not run"
              : t.measured  ? Fmt("%.0f records/s", p.verify_per_s) +
                                  Fmt(" (%.0f records", static_cast<double>(p.verify_records)) +
                                  Fmt(" in %.1f s)", p.verify_s)
                            : p.verify_error;
    t.met = t.measured && p.verify_per_s >= 200000;
    rep->targets.push_back(t);

    t = TargetCheck{};
    t.kind = kAbsolute;
    t.name = at + "data directory <= 2.5 x payload bytes per message";
    t.goal = Fmt("<= %.0f bytes/message", 2.5 * payload);
    t.measured = p.messages > 0;
    t.value = Fmt("%.0f bytes/message", p.disk_bytes_per_message) +
              Fmt(" (%.2f x payload, steady state)", Ratio(p.disk_bytes_per_message, payload));
    t.met = t.measured && p.disk_bytes_per_message <= 2.5 * payload;
    rep->targets.push_back(t);

    t = TargetCheck{};
    t.kind = kAbsolute;
    t.name = at + "every node's resident memory <= --memory-mb + " +
             std::to_string(kRssHeadroomMiB) + " MiB";
    t.goal = Fmt("<= %.0f MiB", static_cast<double>(rss_goal >> 20));
    t.measured = p.MaxRss() > 0;
    t.value = Fmt("largest %.0f MiB", static_cast<double>(p.MaxRss()) / (1 << 20));
    t.met = t.measured && p.MaxRss() <= rss_goal;
    rep->targets.push_back(t);

    t = TargetCheck{};
    t.kind = kAbsolute;
    t.name = at + "quorum /send p50 <= 1.5 x its p50 at the start + 0.5 ms";
    t.goal = Fmt("<= %.3f ms", 1.5 * start.send.latency.p50_ms + 0.5);
    t.measured = p.send.latency.count > 0 && start.send.latency.count > 0;
    t.value = Fmt("p50 %.3f ms", p.send.latency.p50_ms) +
              Fmt(", p99 %.3f ms", p.send.latency.p99_ms) +
              Fmt(" (start: p50 %.3f ms", start.send.latency.p50_ms) +
              Fmt(", p99 %.3f ms)", start.send.latency.p99_ms);
    t.met = t.measured && p.send.latency.p50_ms <= 1.5 * start.send.latency.p50_ms + 0.5;
    rep->targets.push_back(t);
  }
}

void Uint64s(JsonWriter& w, const char* key, const std::vector<uint64_t>& values) {
  w.Key(key);
  w.StartArray();
  for (uint64_t v : values) w.Uint64(v);
  w.EndArray();
}

void ScaleJson(JsonWriter& w, const ScaleRun& sc) {
  w.Key("scale");
  w.StartObject();
  Bool(w, "ran", sc.ran);
  if (sc.requested && !sc.ran) Str(w, "skipped", sc.skipped);
  w.Key("points");
  w.StartArray();
  for (const ScalePoint& p : sc.points) {
    w.StartObject();
    Int(w, "messages", p.messages);
    Num(w, "write_s", p.write_s);
    Num(w, "write_per_s", p.write_per_s);
    Uint64s(w, "rss_bytes", p.rss_bytes);
    Uint64s(w, "peak_rss_bytes", p.peak_bytes);
    Int(w, "disk_bytes", p.disk_bytes);
    Num(w, "disk_bytes_per_message", p.disk_bytes_per_message);
    Latency(w, "send_quorum_latency_ms", p.send.latency);
    Num(w, "send_quorum_per_s", p.send.messages_per_s);
    Bool(w, "catchup_ran", p.catchup_ran);
    Bool(w, "catchup_complete", p.catchup_complete);
    Num(w, "catchup_s", p.catchup_s);
    Num(w, "catchup_per_s", p.catchup_per_s);
    Bool(w, "verify_ran", p.verify_ran);
    if (!p.verify_error.empty()) Str(w, "verify_error", p.verify_error);
    Int(w, "verify_records", p.verify_records);
    Num(w, "verify_s", p.verify_s);
    Num(w, "verify_per_s", p.verify_per_s);
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
}

void PrintScale(const BenchReport& rep, std::FILE* out) {
  const ScaleRun& sc = rep.scale;
  if (!sc.requested) return;
  std::fprintf(out, "\nScale (random %zu-byte payloads, --memory-mb %d, fsync %s)\n",
               rep.config.payload_bytes, rep.config.node_memory_mb, rep.config.fsync.c_str());
  if (!sc.ran) {
    std::fprintf(out, "  skipped: %s\n", sc.skipped.c_str());
    return;
  }
  std::fprintf(out,
               "  %10s %9s %9s %9s %8s %9s %9s %11s %11s\n", "messages", "write/s", "RSS MiB",
               "peak MiB", "B/msg", "send p50", "send p99", "catch-up/s", "verify/s");
  for (const ScalePoint& p : sc.points) {
    uint64_t peak = 0;
    for (uint64_t b : p.peak_bytes) peak = std::max(peak, b);
    std::fprintf(out, "  %10llu %9.0f %9.0f %9.0f %8.0f %9.3f %9.3f %11.0f %11.0f\n",
                 static_cast<unsigned long long>(p.messages), p.write_per_s,
                 static_cast<double>(p.MaxRss()) / (1 << 20), static_cast<double>(peak) / (1 << 20),
                 p.disk_bytes_per_message, p.send.latency.p50_ms, p.send.latency.p99_ms,
                 p.catchup_per_s, p.verify_per_s);
  }
}

}  // namespace

uint64_t ScalePoint::MaxRss() const {
  uint64_t m = 0;
  for (uint64_t b : rss_bytes) m = std::max(m, b);
  return m;
}

bool BenchConfig::Runs(const std::string& phase) const {
  for (const std::string& p : phases) {
    if (p == phase) return true;
  }
  return false;
}

const PublishRun* BenchReport::FindClosed(const std::string& mode, int clients) const {
  for (const PublishRun& r : closed_loop) {
    if (r.mode == mode && r.clients == clients) return &r;
  }
  return nullptr;
}

const PublishRun* BenchReport::FindOpen(const std::string& mode) const {
  for (const PublishRun& r : open_loop) {
    if (r.mode == mode) return &r;
  }
  return nullptr;
}

const EtcdRun* EtcdComparison::Find(int clients) const {
  for (const EtcdRun& r : runs) {
    if (r.clients == clients && r.load.requests > 0) return &r;
  }
  return nullptr;
}

namespace {

// --phases retention: p99 of /send while the nodes trim continuously, against the same load on
// nodes without retention (medians of the repetitions), at each client count.
void RetentionTargets(BenchReport* rep) {
  const RetentionComparison& r = rep->retention;
  if (!rep->config.Runs("retention")) return;
  for (int clients : r.config.clients) {
    TargetCheck t;
    t.kind = "ratio to the same load without retention";
    t.name = "retention: /send p99 at " + std::to_string(clients) +
             (clients == 1 ? " client" : " clients") +
             " while trimming <= 1.5 x p99 without retention";
    const RetentionFigure* off = r.Find(false, clients);
    const RetentionFigure* on = r.Find(true, clients);
    t.goal = off && off->p99_ms > 0 ? Fmt("<= %.3f ms", 1.5 * off->p99_ms) : "<= 1.5 x";
    if (r.ran && off && on && off->p99_ms > 0 && on->p99_ms > 0) {
      t.measured = true;
      t.value = Fmt("%.3f ms", on->p99_ms) + Fmt(" = %.2f x", Ratio(on->p99_ms, off->p99_ms)) +
                Fmt(" (%.3f ms without; ", off->p99_ms) +
                Fmt("trimming %.0f msgs/s)", on->trimmed_per_s);
      t.met = on->p99_ms <= 1.5 * off->p99_ms;
    } else {
      t.value = r.ran ? "no figures at this client count" : "not run: " + r.skipped;
    }
    rep->targets.push_back(t);
  }
}

void RetentionJson(JsonWriter& w, const RetentionComparison& r) {
  w.Key("retention");
  w.StartObject();
  Bool(w, "ran", r.ran);
  if (!r.ran) Str(w, "skipped", r.skipped);
  Int(w, "repetitions", static_cast<uint64_t>(r.config.repetitions));
  Int(w, "retention_max_messages", r.config.max_messages);
  Int(w, "retention_interval_ms", static_cast<uint64_t>(r.config.interval_ms));
  Int(w, "prefill_messages", r.config.prefill_messages);
  w.Key("figures");
  w.StartArray();
  for (const RetentionFigure& f : r.figures) {
    w.StartObject();
    Bool(w, "trimming", f.trimming);
    Int(w, "clients", static_cast<uint64_t>(f.clients));
    Num(w, "p50", f.p50_ms);
    Num(w, "p99", f.p99_ms);
    Num(w, "p99_9", f.p999_ms);
    Num(w, "messages_per_s", f.messages_per_s);
    Num(w, "trimmed_per_s", f.trimmed_per_s);
    Int(w, "errors", f.errors);
    w.Key("runs");
    w.StartArray();
    for (const RetentionSample& s : f.samples) {
      w.StartObject();
      Latency(w, "latency_ms", s.latency);
      Num(w, "messages_per_s", s.messages_per_s);
      Num(w, "trimmed_per_s", s.trimmed_per_s);
      Int(w, "errors", s.errors);
      w.EndObject();
    }
    w.EndArray();
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
}

void PrintRetention(const RetentionComparison& r, std::FILE* out) {
  std::fprintf(out,
               "\nRetention: /send (quorum) while every node trims, against no retention (fresh "
               "3-node clusters,\n  --retention-max-messages %llu --retention-interval-ms %d, "
               "medians of %d runs each)\n",
               static_cast<unsigned long long>(r.config.max_messages), r.config.interval_ms,
               r.config.repetitions);
  if (!r.ran) {
    std::fprintf(out, "  skipped: %s\n", r.skipped.c_str());
    return;
  }
  std::fprintf(out, "  %4s %-13s %9s %8s %8s %8s %11s %6s\n", "cli", "retention", "msgs/s",
               "p50 ms", "p99", "p99.9", "trimmed/s", "errors");
  for (const RetentionFigure& f : r.figures) {
    std::fprintf(out, "  %4d %-13s %9.0f %8.3f %8.3f %8.3f %11.0f %6zu\n", f.clients,
                 f.trimming ? "trimming" : "none", f.messages_per_s, f.p50_ms, f.p99_ms,
                 f.p999_ms, f.trimmed_per_s, f.errors);
  }
  std::fprintf(out, "  trimmed/s = dsm_retention_trimmed_messages_total of the 3 nodes, per s\n");
}

// --phases membership: no /send of the quorum load refused or failed while a node is added.
void MembershipTargets(BenchReport* rep) {
  const MembershipReport& m = rep->membership;
  if (!rep->config.Runs("membership")) return;
  TargetCheck t;
  t.kind = "absolute";
  t.name = "membership: no quorum /send refused or failed while a 4th node is added";
  t.goal = "0 errors before, during and after the change";
  if (m.ran) {
    t.measured = true;
    t.value = std::to_string(m.error_count) + " errors in " + std::to_string(m.runs.size()) +
              (m.runs.size() == 1 ? " run" : " runs");
    for (const MembershipWindow& w : m.windows) {
      if (w.error_count > 0) t.value += "; " + w.name + " " + std::to_string(w.error_count);
    }
    t.met = m.error_count == 0;
  } else {
    t.value = "not run: " + m.skipped;
  }
  rep->targets.push_back(t);
}

void SpreadJson(JsonWriter& w, const char* key, const Spread& s) {
  w.Key(key);
  w.StartObject();
  Num(w, "median", s.median);
  Num(w, "min", s.min);
  Num(w, "max", s.max);
  w.EndObject();
}

void MembershipJson(JsonWriter& w, const MembershipReport& m) {
  w.Key("membership");
  w.StartObject();
  Bool(w, "ran", m.ran);
  if (!m.ran) Str(w, "skipped", m.skipped);
  Int(w, "runs_requested", static_cast<uint64_t>(m.config.runs));
  Int(w, "preload_messages", m.config.messages);
  Int(w, "clients", static_cast<uint64_t>(m.config.clients));
  Num(w, "before_s", m.config.before_s);
  Num(w, "after_s", m.config.after_s);
  SpreadJson(w, "to_voter_s", m.to_voter_s);
  SpreadJson(w, "catchup_per_s", m.catchup_per_s);
  Int(w, "error_count", m.error_count);
  w.Key("windows");
  w.StartArray();
  for (const MembershipWindow& win : m.windows) {
    w.StartObject();
    Str(w, "window", win.name);
    SpreadJson(w, "requests_per_s", win.requests_per_s);
    SpreadJson(w, "p50_ms", win.p50_ms);
    SpreadJson(w, "p99_ms", win.p99_ms);
    SpreadJson(w, "p99_9_ms", win.p999_ms);
    SpreadJson(w, "seconds", win.seconds);
    w.Key("errors");
    w.StartObject();
    for (const auto& [what, count] : win.errors) {
      w.Key(what.c_str(), static_cast<rapidjson::SizeType>(what.size()));
      w.Uint64(count);
    }
    w.EndObject();
    Int(w, "error_count", win.error_count);
    w.EndObject();
  }
  w.EndArray();
  w.Key("runs");
  w.StartArray();
  for (const MembershipRun& r : m.runs) {
    w.StartObject();
    Int(w, "preloaded", r.preloaded);
    Num(w, "add_ms", r.add_ms);
    Num(w, "to_voter_s", r.to_voter_s);
    Int(w, "held_at_add", r.held_at_add);
    Int(w, "existing_at_add", r.existing_at_add);
    Num(w, "caught_up_s", r.caught_up_s);
    Int(w, "held_at_voter", r.held_at_voter);
    Num(w, "catchup_per_s", r.catchup_per_s);
    Bool(w, "voter", r.voter);
    Bool(w, "complete", r.complete);
    Int(w, "final_messages", r.final_messages);
    Int(w, "others_messages", r.others_messages);
    const std::pair<const char*, const LoadResult*> loads[] = {
        {"before", &r.before}, {"during", &r.during}, {"after", &r.after}};
    for (const auto& [name, l] : loads) {
      w.Key(name);
      w.StartObject();
      Num(w, "seconds", l->window_s);
      Num(w, "requests_per_s", l->requests_per_s);
      Latency(w, "latency_ms", l->latency);
      Errors(w, *l);
      w.EndObject();
    }
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
}

std::string SpreadText(const char* fmt, const Spread& s) {
  return Fmt(fmt, s.median) + " (" + Fmt(fmt, s.min) + ".." + Fmt(fmt, s.max) + ")";
}

void PrintMembership(const MembershipReport& m, std::FILE* out) {
  std::fprintf(
      out,
      "\nMembership: a 4th node added under closed-loop quorum /send load (fresh 3-node "
      "clusters,\n  %llu messages preloaded, %d clients; medians (min..max) of %zu run%s)\n",
      static_cast<unsigned long long>(m.config.messages), m.config.clients, m.runs.size(),
      m.runs.size() == 1 ? "" : "s");
  if (!m.ran) {
    std::fprintf(out, "  skipped: %s\n", m.skipped.c_str());
    return;
  }
  std::fprintf(out, "  %-7s %-22s %-22s %-22s %-22s %s\n", "window", "requests/s", "p50 ms",
               "p99 ms", "p99.9 ms", "errors");
  for (const MembershipWindow& w : m.windows) {
    std::string errors = std::to_string(w.error_count);
    for (const auto& [what, count] : w.errors) {
      errors += (errors.find(' ') == std::string::npos ? " (" : ", ") + what + ": " +
                std::to_string(count);
    }
    if (!w.errors.empty()) errors += ")";
    std::fprintf(out, "  %-7s %-22s %-22s %-22s %-22s %s\n", w.name.c_str(),
                 SpreadText("%.0f", w.requests_per_s).c_str(), SpreadText("%.2f", w.p50_ms).c_str(),
                 SpreadText("%.2f", w.p99_ms).c_str(), SpreadText("%.2f", w.p999_ms).c_str(),
                 errors.c_str());
  }
  std::fprintf(out, "  add -> voter (in the first node's GET /cluster): %s s\n",
               SpreadText("%.2f", m.to_voter_s).c_str());
  std::fprintf(out,
               "  catch-up: %s msgs/s (what the cluster held at the add / time from the new "
               "node's start, empty, until it held as much)\n",
               SpreadText("%.0f", m.catchup_per_s).c_str());
  std::fprintf(out, "  the new node held every message the others held at the end of each run\n");
}

}  // namespace

// The targets of docs/benchmarks.md ("The targets"). Most are ratios to the baselines measured in
// the same run (so a slower or faster machine moves the goal with it); batch publish and catch-up
// are absolute rates; the etcd targets are ratios to etcd's figures of the same run.
void EvaluateTargets(BenchReport* rep) {
  rep->targets.clear();
  const double base = rep->BaseLatencyMs();
  const double ceiling = rep->CeilingRps();
  const char* kBaselines = "ratio to baselines";
  const char* kAbsolute = "absolute";
  const char* kEtcd = "ratio to etcd";
  {
    TargetCheck t;
    t.kind = kBaselines;
    t.name = "quorum (Q=2) p50 at 1 client <= 2 x base (fsync p50 + HTTP p50)";
    t.goal = Fmt("<= %.3f ms", 2 * base);
    if (const PublishRun* r = rep->FindClosed("sync_quorum", 1); r && r->load.latency.count > 0) {
      t.measured = true;
      t.value = Fmt("%.3f ms", r->load.latency.p50_ms) +
                Fmt(" (%.2f x base)", Ratio(r->load.latency.p50_ms, base));
      t.met = r->load.latency.p50_ms <= 2 * base;
      const double paced_base = rep->paced_fsync.p50_ms + rep->http.latency_1.p50_ms;
      if (rep->paced_fsync.count > 0) {
        t.value +=
            Fmt("; %.2f x (paced fsync p50 + HTTP p50)", Ratio(r->load.latency.p50_ms, paced_base));
      }
    }
    rep->targets.push_back(t);
  }
  {
    TargetCheck t;
    t.kind = kBaselines;
    t.name = "quorum (Q=2) throughput at 64 clients >= 35% of the empty-request ceiling";
    t.goal = Fmt(">= %.0f msgs/s", 0.35 * ceiling);
    if (const PublishRun* r = rep->FindClosed("sync_quorum", 64); r && r->load.requests > 0) {
      t.measured = true;
      t.value = Fmt("%.0f msgs/s", r->load.messages_per_s) +
                Fmt(" (%.0f%% of ceiling)", 100 * Ratio(r->load.messages_per_s, ceiling));
      t.met = r->load.messages_per_s >= 0.35 * ceiling;
    }
    rep->targets.push_back(t);
  }
  {
    TargetCheck t;
    t.kind = kBaselines;
    t.name =
        "async at 64 clients: fully replicated throughput >= 50% of the ceiling, e2e p99 <= 50 ms";
    t.goal = Fmt(">= %.0f msgs/s on every node, e2e p99 <= 50 ms", 0.5 * ceiling);
    if (const PublishRun* r = rep->FindClosed("async", 64); r && r->load.requests > 0) {
      const double replicated = r->replication.fully_replicated_per_s;
      t.measured = true;
      t.value = Fmt("fully replicated %.0f msgs/s", replicated) +
                Fmt(" (%.0f%% of ceiling; accepted ", 100 * Ratio(replicated, ceiling)) +
                Fmt("%.0f msgs/s)", r->load.messages_per_s) +
                Fmt(", e2e p99 %.1f ms", r->replication.e2e.p99_ms) +
                (r->replication.missing > 0 ? ", some messages never seen on every node" : "");
      t.met = replicated >= 0.5 * ceiling && r->replication.missing == 0 &&
              r->replication.e2e.count > 0 && r->replication.e2e.p99_ms <= 50;
    }
    rep->targets.push_back(t);
  }
  {
    TargetCheck t;
    t.kind = kAbsolute;
    t.name = "batch publish >= 100,000 msgs/s accepted and fully replicated (absolute)";
    t.goal = ">= 100000 msgs/s (both)";
    const BatchRun& b = rep->batch;
    if (b.load.requests > 0) {
      t.measured = true;
      t.value = Fmt("accepted %.0f msgs/s", b.load.messages_per_s) +
                Fmt(", fully replicated %.0f msgs/s", b.replication.fully_replicated_per_s);
      t.met = b.load.messages_per_s >= 100000 && b.replication.fully_replicated_per_s >= 100000;
    }
    rep->targets.push_back(t);
  }
  {
    TargetCheck t;
    t.kind = kAbsolute;
    t.name = "catch-up after a restart >= 150,000 msgs/s (absolute)";
    t.goal = ">= 150000 msgs/s";
    const CatchUpRun& c = rep->catch_up;
    if (c.ran && c.complete) {
      t.measured = true;
      t.value = Fmt("%.0f msgs/s from restart", c.messages_per_s) +
                Fmt(" (%.0f msgs/s from first heartbeat)", c.messages_per_s_from_up);
      t.met = c.messages_per_s >= 150000;
    } else if (!c.ran) {
      t.value = "not run: " + c.skipped;
    } else {
      t.value = "did not complete";
    }
    rep->targets.push_back(t);
  }
  AddScaleTargets(rep);
  RetentionTargets(rep);
  MembershipTargets(rep);
  if (!rep->etcd.requested) return;
  const std::string not_run = rep->etcd.ran ? "" : "etcd not measured: " + rep->etcd.skipped;
  for (int clients : {1, 64}) {
    TargetCheck t;
    t.kind = kEtcd;
    t.name = "quorum (Q=2) throughput at " + std::to_string(clients) +
             (clients == 1 ? " client" : " clients") + " >= 2 x etcd's";
    const EtcdRun* e = rep->etcd.ran ? rep->etcd.Find(clients) : nullptr;
    const PublishRun* r = rep->FindClosed("sync_quorum", clients);
    t.goal = e ? Fmt(">= %.0f msgs/s", 2 * e->load.messages_per_s) : ">= 2 x etcd";
    if (e && r && r->load.requests > 0) {
      t.measured = true;
      t.value = Fmt("%.0f msgs/s", r->load.messages_per_s) +
                Fmt(" = %.2f x etcd", Ratio(r->load.messages_per_s, e->load.messages_per_s)) +
                Fmt(" (%.0f puts/s)", e->load.messages_per_s);
      t.met = r->load.messages_per_s >= 2 * e->load.messages_per_s;
    } else {
      t.value = !not_run.empty() ? not_run
                : !e             ? "etcd not run at this client count (--etcd-clients)"
                                 : "no dsm quorum run at this client count";
    }
    rep->targets.push_back(t);
  }
  {
    TargetCheck t;
    t.kind = kEtcd;
    t.name = "quorum (Q=2) p50 at 1 client <= 0.6 x etcd's";
    const EtcdRun* e = rep->etcd.ran ? rep->etcd.Find(1) : nullptr;
    const PublishRun* r = rep->FindClosed("sync_quorum", 1);
    t.goal = e ? Fmt("<= %.3f ms", 0.6 * e->load.latency.p50_ms) : "<= 0.6 x etcd";
    if (e && r && r->load.latency.count > 0) {
      t.measured = true;
      t.value = Fmt("%.3f ms", r->load.latency.p50_ms) +
                Fmt(" = %.2f x etcd", Ratio(r->load.latency.p50_ms, e->load.latency.p50_ms)) +
                Fmt(" (%.3f ms)", e->load.latency.p50_ms);
      t.met = r->load.latency.p50_ms <= 0.6 * e->load.latency.p50_ms;
    } else {
      t.value = !not_run.empty() ? not_run
                : !e             ? "etcd not run at 1 client (--etcd-clients)"
                                 : "no dsm quorum run at 1 client";
    }
    rep->targets.push_back(t);
  }
}

std::string ReportJson(const BenchReport& rep) {
  rapidjson::StringBuffer buf;
  JsonWriter w(buf);
  w.SetMaxDecimalPlaces(4);
  const double base = rep.BaseLatencyMs();
  const double ceiling = rep.CeilingRps();
  const BenchConfig& c = rep.config;
  w.StartObject();
  Str(w, "tool", "dsm-bench");
  Int(w, "version", 1);
  Str(w, "profile", c.profile);
  Str(w, "started_at", rep.started_at);
  Num(w, "duration_s", rep.duration_s);

  w.Key("machine");
  w.StartObject();
  Int(w, "cores", rep.machine.cores);
  Str(w, "cpu_model", rep.machine.cpu_model);
  Str(w, "kernel", rep.machine.kernel);
  Str(w, "filesystem", rep.machine.filesystem);
  Str(w, "disk", rep.machine.disk);
  Str(w, "load_before", rep.load_before);
  Str(w, "load_after", rep.load_after);
  w.EndObject();

  w.Key("config");
  w.StartObject();
  Bool(w, "local_cluster", c.local_cluster);
  if (c.local_cluster) Str(w, "node_binary", rep.node_binary);
  w.Key("nodes");
  w.StartArray();
  for (const std::string& n : c.nodes) w.String(n.c_str());
  w.EndArray();
  Str(w, "fsync", c.local_cluster ? c.fsync : "as the given nodes were started");
  Int(w, "quorum", static_cast<uint64_t>(c.quorum));
  Str(w, "publish_to", c.spread ? "every node, round-robin" : "the first node");
  w.Key("phases");
  w.StartArray();
  for (const std::string& p : c.phases) w.String(p.c_str());
  w.EndArray();
  w.Key("clients");
  w.StartArray();
  for (int n : c.clients) w.Int(n);
  w.EndArray();
  Num(w, "warmup_s", c.warmup_s);
  Num(w, "duration_s", c.duration_s);
  Num(w, "open_loop_rate_per_s", c.open_rate);
  Int(w, "open_loop_clients", static_cast<uint64_t>(c.open_clients));
  Int(w, "payload_bytes", c.payload_bytes);
  Int(w, "batch_size", static_cast<uint64_t>(c.batch_size));
  Int(w, "batch_clients", static_cast<uint64_t>(c.batch_clients));
  Num(w, "batch_duration_s", c.batch_duration_s);
  Int(w, "catchup_messages", c.catchup_messages);
  Int(w, "watch_interval_us", static_cast<uint64_t>(c.watch_interval_us));
  Str(w, "data_root", c.data_root);
  Str(w, "run_dir", rep.run_dir);
  w.EndObject();

  w.Key("baselines");
  w.StartObject();
  w.Key("fsync");
  w.StartObject();
  Str(w, "what", "pwrite 4 KiB (appending) + fdatasync, one at a time, in the data directory");
  Str(w, "pooled_from",
      "a first window before the cluster starts and one short window before every load phase "
      "(the cluster idle)");
  Latency(w, "latency_ms", rep.fsync.latency);
  Int(w, "windows", rep.fsync.windows);
  Latency(w, "first_window_latency_ms", rep.fsync.first.latency);
  Num(w, "first_window_ops_per_s", rep.fsync.first.ops_per_s);
  w.Key("window_p50_ms");
  w.StartArray();
  for (double v : rep.fsync.window_p50_ms) w.Double(std::round(v * 1e4) / 1e4);
  w.EndArray();
  w.EndObject();
  w.Key("fsync_paced");
  w.StartObject();
  Str(w, "what",
      "the same 4 KiB append + fdatasync, one every 100 ms during the load phases, pooled");
  Latency(w, "latency_ms", rep.paced_fsync);
  w.EndObject();
  w.Key("http_1");
  w.StartObject();
  Str(w, "what", "GET /heartbeat on the first node, 1 keep-alive connection, closed loop");
  Latency(w, "latency_ms", rep.http.latency_1);
  Num(w, "requests_per_s", rep.http.rps_1);
  w.EndObject();
  w.Key("http_ceiling");
  w.StartObject();
  Str(w, "what", "GET /heartbeat on the first node, closed loop, max requests/s");
  Int(w, "clients", static_cast<uint64_t>(rep.http.ceiling_clients));
  Num(w, "requests_per_s", rep.http.ceiling_rps);
  Latency(w, "latency_ms", rep.http.latency_ceiling);
  Cpu(w, rep.http.cpu_ceiling);
  w.EndObject();
  Num(w, "base_latency_ms", base);
  Str(w, "base_latency_is", "fsync p50 + http_1 p50");
  Num(w, "ceiling_per_s", ceiling);
  Str(w, "ceiling_is", "http_ceiling requests_per_s");
  w.EndObject();

  w.Key("publish");
  w.StartObject();
  w.Key("closed_loop");
  w.StartArray();
  for (const PublishRun& r : rep.closed_loop) Run(w, r, rep);
  w.EndArray();
  w.Key("open_loop");
  w.StartArray();
  for (const PublishRun& r : rep.open_loop) Run(w, r, rep);
  w.EndArray();
  w.EndObject();

  w.Key("quorum_write_stages");
  w.StartObject();
  Str(w, "method",
      "GET /metrics of the publishing node (and of its peers for dsm_replicate_write_duration_"
      "seconds) before each sync_quorum closed-loop run and after everything it published is on "
      "every node; per histogram the _sum/_count deltas give the mean, the bucket deltas an "
      "estimated p50 (linear inside the bucket). log_write, core_queue, quorum_wait and "
      "total_in_node are per /send (total_in_node: dsm_send_duration_seconds{ack=quorum}, from the "
      "core to the answer); push_round_trip (every peer) and peer_write are per push batch");
  w.Key("runs");
  w.StartArray();
  for (const PublishRun& r : rep.closed_loop) {
    if (r.mode == "sync_quorum") Stages(w, r);
  }
  w.EndArray();
  w.EndObject();

  w.Key("etcd");
  w.StartObject();
  {
    const EtcdComparison& e = rep.etcd;
    Bool(w, "requested", e.requested);
    Bool(w, "ran", e.ran);
    if (e.requested && !e.ran) Str(w, "skipped", e.skipped);
    Str(w, "binary", e.binary);
    Str(w, "version", e.version);
    Str(w, "leader", e.leader);
    Str(w, "cluster",
        "3 etcd members on 127.0.0.1, data directories beside dsm's, etcd's defaults (WAL fsynced "
        "before every acknowledged write); measured before dsm's cluster starts");
    Str(w, "request",
        "POST /v3/kv/put {\"key\",\"value\"} (base64; one new key and a payload_bytes value per "
        "request) to the leader, closed loop, the same warm-up and duration as dsm's runs");
    w.Key("closed_loop");
    w.StartArray();
    for (const EtcdRun& r : e.runs) {
      w.StartObject();
      Int(w, "clients", static_cast<uint64_t>(r.clients));
      Int(w, "messages", r.load.messages);
      Num(w, "window_s", r.load.window_s);
      Num(w, "throughput_per_s", r.load.messages_per_s);
      Errors(w, r.load);
      Latency(w, "latency_ms", r.load.latency);
      Latency(w, "disk_fsync_during_run_ms", r.fsync_probe);
      Cpu(w, r.load.cpu);
      w.EndObject();
    }
    w.EndArray();
    w.Key("dsm_to_etcd");
    w.StartArray();
    for (const EtcdRun& r : e.runs) {
      if (r.load.requests == 0) continue;
      w.StartObject();
      Int(w, "clients", static_cast<uint64_t>(r.clients));
      for (const char* mode : {"sync_quorum", "async"}) {
        const PublishRun* d = rep.FindClosed(mode, r.clients);
        if (!d) continue;
        w.Key(mode);
        w.StartObject();
        Num(w, "throughput", Ratio(d->load.messages_per_s, r.load.messages_per_s));
        Num(w, "p50", Ratio(d->load.latency.p50_ms, r.load.latency.p50_ms));
        Num(w, "p99", Ratio(d->load.latency.p99_ms, r.load.latency.p99_ms));
        w.EndObject();
      }
      w.EndObject();
    }
    w.EndArray();
  }
  w.EndObject();

  w.Key("replication");
  w.StartObject();
  Str(w, "method",
      "each accepted publish's origin and origin_seq are recorded; /heartbeat of every other "
      "node is polled every watch interval and its high water per origin stream timestamped; a "
      "message is on a node from the first answer showing its stream at >= its origin_seq; "
      "e2e = latest such time over all nodes - send time (open loop: scheduled send time)");
  {
    const PublishRun* lat = rep.FindOpen("async");
    Str(w, "latency_from", lat ? "async, open loop" : "none");
    if (lat) {
      Latency(w, "e2e_ms", lat->replication.e2e);
      Num(w, "e2e_p50_to_base", Ratio(lat->replication.e2e.p50_ms, base));
      Num(w, "e2e_p99_to_base", Ratio(lat->replication.e2e.p99_ms, base));
      Num(w, "resolution_ms", lat->replication.resolution_ms);
    }
    const PublishRun* thr = nullptr;
    for (const PublishRun& r : rep.closed_loop) {
      if (r.mode == "async" && (!thr || r.clients > thr->clients)) thr = &r;
    }
    Str(w, "throughput_from",
        thr ? "async, closed loop, " + std::to_string(thr->clients) + " clients" : "none");
    if (thr) {
      Num(w, "fully_replicated_per_s", thr->replication.fully_replicated_per_s);
      Num(w, "fully_replicated_to_ceiling",
          Ratio(thr->replication.fully_replicated_per_s, ceiling));
    }
  }
  w.EndObject();

  w.Key("batch");
  w.StartObject();
  {
    const BatchRun& b = rep.batch;
    Int(w, "clients", static_cast<uint64_t>(b.clients));
    Int(w, "batch_size", static_cast<uint64_t>(b.batch));
    Int(w, "requests", b.load.requests);
    Int(w, "messages", b.load.messages);
    Num(w, "window_s", b.load.window_s);
    Num(w, "accepted_per_s", b.load.messages_per_s);
    Num(w, "fully_replicated_per_s", b.replication.fully_replicated_per_s);
    Errors(w, b.load);
    Latency(w, "request_latency_ms", b.load.latency);
    Replication(w, b.replication, base);
    Latency(w, "disk_fsync_during_run_ms", b.fsync_probe);
    Cpu(w, b.load.cpu);
    w.Key("ratios");
    w.StartObject();
    Num(w, "accepted_to_ceiling", Ratio(b.load.messages_per_s, ceiling));
    Num(w, "fully_replicated_to_ceiling", Ratio(b.replication.fully_replicated_per_s, ceiling));
    w.EndObject();
  }
  w.EndObject();

  w.Key("consume");
  w.StartObject();
  {
    const ConsumeReport& cr = rep.consume;
    Bool(w, "ran", cr.ran);
    Int(w, "messages_per_run", cr.config.messages);
    Int(w, "runs", static_cast<uint64_t>(cr.config.runs));
    Int(w, "fetch_max", static_cast<uint64_t>(cr.config.fetch_max));
    w.Key("by_clients");
    w.StartArray();
    for (const ConsumeRun& r : cr.runs) {
      w.StartObject();
      Int(w, "clients", static_cast<uint64_t>(r.clients));
      w.Key("acked_per_s");
      w.StartArray();
      for (double v : r.acked_per_s) w.Double(v);
      w.EndArray();
      Num(w, "median_acked_per_s", r.median_per_s);
      Num(w, "min_acked_per_s", r.min_per_s);
      Num(w, "max_acked_per_s", r.max_per_s);
      Latency(w, "fetch_latency_ms", r.fetch_latency);
      Latency(w, "ack_latency_ms", r.ack_latency);
      Int(w, "redelivered", r.redelivered);
      Int(w, "errors", r.errors);
      w.EndObject();
    }
    w.EndArray();
  }
  w.EndObject();

  w.Key("catch_up");
  w.StartObject();
  {
    const CatchUpRun& cu = rep.catch_up;
    Bool(w, "ran", cu.ran);
    if (!cu.ran) Str(w, "skipped", cu.skipped);
    Int(w, "messages", cu.messages);
    Num(w, "write_s", cu.write_s);
    Bool(w, "complete", cu.complete);
    Num(w, "seconds", cu.seconds);
    Num(w, "seconds_from_up", cu.seconds_from_up);
    Num(w, "messages_per_s", cu.messages_per_s);
    Num(w, "messages_per_s_from_up", cu.messages_per_s_from_up);
    w.Key("ratios");
    w.StartObject();
    Num(w, "messages_per_s_to_ceiling", Ratio(cu.messages_per_s, ceiling));
    w.EndObject();
  }
  w.EndObject();

  ScaleJson(w, rep.scale);
  if (rep.config.Runs("retention")) RetentionJson(w, rep.retention);
  if (rep.config.Runs("membership")) MembershipJson(w, rep.membership);

  Str(w, "targets_from", "docs/benchmarks.md, \"The targets\"");
  w.Key("targets");
  w.StartArray();
  for (const TargetCheck& t : rep.targets) {
    w.StartObject();
    Str(w, "kind", t.kind);
    Str(w, "name", t.name);
    Str(w, "goal", t.goal);
    Str(w, "value", t.value);
    Bool(w, "measured", t.measured);
    Bool(w, "met", t.met);
    w.EndObject();
  }
  w.EndArray();

  w.Key("warnings");
  w.StartArray();
  for (const std::string& s : rep.warnings) w.String(s.c_str());
  w.EndArray();
  w.EndObject();
  return std::string(buf.GetString(), buf.GetSize()) + "\n";
}

void PrintTables(const BenchReport& rep, std::FILE* out) {
  const double base = rep.BaseLatencyMs();
  const double ceiling = rep.CeilingRps();
  const BenchConfig& c = rep.config;
  std::fprintf(out, "\ndsm-bench (%s profile), %s\n", c.profile.c_str(), rep.started_at.c_str());
  std::fprintf(out, "machine: %u cores, %s, %s\n", rep.machine.cores, rep.machine.cpu_model.c_str(),
               rep.machine.kernel.c_str());
  std::fprintf(out, "disk: %s (%s); load before %s, after %s\n", rep.machine.filesystem.c_str(),
               rep.machine.disk.c_str(), rep.load_before.c_str(), rep.load_after.c_str());
  std::fprintf(out, "cluster: %s, fsync %s, quorum %d, publishing to %s, %zu-byte payloads\n",
               c.local_cluster ? "3 local dsm-node processes" : "given nodes",
               c.local_cluster ? c.fsync.c_str() : "as configured on the nodes", c.quorum,
               c.spread ? "every node" : "the first node", c.payload_bytes);

  std::fprintf(out, "\nBaselines\n");
  std::fprintf(out,
               "  disk fsync (4 KiB append + fdatasync)   p50 %7.3f ms  p99 %7.3f ms  (%zu windows "
               "pooled; first window p50 %.3f ms)\n",
               rep.fsync.latency.p50_ms, rep.fsync.latency.p99_ms, rep.fsync.windows,
               rep.fsync.first.latency.p50_ms);
  std::fprintf(
      out,
      "  disk fsync, paced (1 per 100 ms, during the load phases)  p50 %7.3f ms  p99 %7.3f "
      "ms\n",
      rep.paced_fsync.p50_ms, rep.paced_fsync.p99_ms);
  std::fprintf(out,
               "  empty HTTP (GET /heartbeat), 1 conn     p50 %7.3f ms  p99 %7.3f ms  (%.0f/s)\n",
               rep.http.latency_1.p50_ms, rep.http.latency_1.p99_ms, rep.http.rps_1);
  std::fprintf(out, "  empty HTTP ceiling, %2d conns            %.0f requests/s  (p50 %.3f ms)\n",
               rep.http.ceiling_clients, ceiling, rep.http.latency_ceiling.p50_ms);
  std::fprintf(out, "  base latency = fsync p50 + HTTP p50 = %.3f ms; ceiling = %.0f/s\n", base,
               ceiling);

  auto runs = [&](const char* title, const std::vector<PublishRun>& list) {
    if (list.empty()) return;
    std::fprintf(out, "\n%s\n", title);
    std::fprintf(out, "  %-11s %4s %7s %9s %8s %8s %8s %8s %8s %6s %8s %8s %6s %6s %6s %5s %s\n",
                 "mode", "cli", "rate", "msgs/s", "p50 ms", "p90", "p99", "p99.9", "max", "errors",
                 "e2e p50", "e2e p99", "p50/b", "thr/c", "fsync", "gen%", "nodes%");
    for (const PublishRun& r : list) {
      std::string nodes;
      for (double v : r.load.cpu.pids_pct) nodes += (nodes.empty() ? "" : "/") + Fmt("%.0f", v);
      std::fprintf(out,
                   "  %-11s %4d %7s %9.0f %8.3f %8.3f %8.3f %8.3f %8.3f %6zu %8.3f %8.3f %6.2f "
                   "%6.2f %6.3f %5.0f %s\n",
                   r.mode.c_str(), r.clients,
                   r.open_loop ? Fmt("%.0f", r.load.offered_rate).c_str() : "-",
                   r.load.messages_per_s, r.load.latency.p50_ms, r.load.latency.p90_ms,
                   r.load.latency.p99_ms, r.load.latency.p999_ms, r.load.latency.max_ms,
                   r.load.total_errors(), r.replication.e2e.p50_ms, r.replication.e2e.p99_ms,
                   Ratio(r.load.latency.p50_ms, base), Ratio(r.load.messages_per_s, ceiling),
                   r.fsync_probe.p50_ms, r.load.cpu.self_pct, nodes.c_str());
    }
  };
  runs("Publish, closed loop (latency = round trip)", rep.closed_loop);
  runs("Publish, open loop (latency from the scheduled send time)", rep.open_loop);
  std::fprintf(
      out,
      "  p50/b = p50 / base latency; thr/c = msgs/s / ceiling; fsync = the disk's fsync "
      "p50 (ms) during\n  the run; gen%% = dsm-bench CPU; nodes%% = each node's CPU (%% of "
      "one core)\n");

  bool any_stages = false;
  for (const PublishRun& r : rep.closed_loop) any_stages |= r.mode == "sync_quorum";
  if (any_stages) {
    std::fprintf(out,
                 "\nWhere a quorum write's time goes (the publishing node's /metrics around each "
                 "sync_quorum run, its peers' for\n  their write; per /send, per push batch for "
                 "the push round trip and the peer's write; p50s estimated from the buckets)\n");
    for (const PublishRun& r : rep.closed_loop) {
      if (r.mode != "sync_quorum") continue;
      const QuorumStages& q = r.stages;
      if (!q.measured) {
        std::fprintf(out, "  %d clients: not measured (%s)\n", r.clients, q.error.c_str());
        continue;
      }
      auto line = [&](const char* what, double (*v)(const StageFigure&), double client) {
        std::fprintf(out,
                     "  quorum write at %2d client%s, %s: log_write %.2f ms, core_queue %.2f, "
                     "quorum_wait %.2f (push round trip %.2f, of which the peer's write %.2f), "
                     "total %.2f in the node, %.2f at the client\n",
                     r.clients, r.clients == 1 ? "" : "s", what, v(q.log_write), v(q.core_queue),
                     v(q.quorum_wait), v(q.push_round_trip), v(q.peer_write), v(q.total), client);
      };
      line(
          "means", [](const StageFigure& f) { return f.mean_ms; }, r.load.latency.mean_ms);
      line(
          "p50s ", [](const StageFigure& f) { return f.p50_ms; }, r.load.latency.p50_ms);
    }
  }

  const EtcdComparison& e = rep.etcd;
  if (e.requested && !e.ran) {
    std::fprintf(out, "\netcd side by side: skipped - %s\n", e.skipped.c_str());
  } else if (e.ran) {
    std::fprintf(out,
                 "\netcd side by side (etcd %s, 3 members on 127.0.0.1, WAL fsync on; POST "
                 "/v3/kv/put to the leader, %zu-byte values, closed loop)\n",
                 e.version.c_str(), c.payload_bytes);
    std::fprintf(out, "  %4s %10s %8s %8s %6s | %-30s | %-30s\n", "cli", "etcd put/s", "p50 ms",
                 "p99", "errors", "dsm quorum: msgs/s, p50 (x etcd)",
                 "dsm async: msgs/s, p50 (x etcd)");
    for (const EtcdRun& r : e.runs) {
      std::string cols[2];
      int i = 0;
      for (const char* mode : {"sync_quorum", "async"}) {
        const PublishRun* d = rep.FindClosed(mode, r.clients);
        cols[i++] =
            d ? Fmt("%.0f", d->load.messages_per_s) +
                    Fmt(" (%.2f x), ", Ratio(d->load.messages_per_s, r.load.messages_per_s)) +
                    Fmt("%.3f", d->load.latency.p50_ms) +
                    Fmt(" (%.2f x)", Ratio(d->load.latency.p50_ms, r.load.latency.p50_ms))
              : "-";
      }
      std::fprintf(out, "  %4d %10.0f %8.3f %8.3f %6zu | %-30s | %-30s\n", r.clients,
                   r.load.messages_per_s, r.load.latency.p50_ms, r.load.latency.p99_ms,
                   r.load.total_errors(), cols[0].c_str(), cols[1].c_str());
    }
  }

  std::fprintf(out, "\nReplication (accepted on one node -> present on all)\n");
  if (const PublishRun* r = rep.FindOpen("async")) {
    std::fprintf(out,
                 "  async open loop at %.0f/s: e2e p50 %.3f ms, p99 %.3f ms, max %.3f ms "
                 "(%.2f / %.2f x base; resolution %.2f ms)\n",
                 r->load.offered_rate, r->replication.e2e.p50_ms, r->replication.e2e.p99_ms,
                 r->replication.e2e.max_ms, Ratio(r->replication.e2e.p50_ms, base),
                 Ratio(r->replication.e2e.p99_ms, base), r->replication.resolution_ms);
  }
  for (const PublishRun& r : rep.closed_loop) {
    if (r.mode != "async") continue;
    std::fprintf(
        out, "  async closed loop, %2d clients: fully replicated %.0f msgs/s (%.2f x ceiling)\n",
        r.clients, r.replication.fully_replicated_per_s,
        Ratio(r.replication.fully_replicated_per_s, ceiling));
  }

  const BatchRun& b = rep.batch;
  std::fprintf(out, "\nBatch publish (%d clients, %d messages per request)\n", b.clients, b.batch);
  if (!c.Runs("batch")) {
    std::fprintf(out, "  skipped: not among --phases\n");
  } else {
    std::fprintf(out,
                 "  accepted %.0f msgs/s (%.2f x ceiling), fully replicated %.0f msgs/s (%.2f x "
                 "ceiling); errors %zu\n",
                 b.load.messages_per_s, Ratio(b.load.messages_per_s, ceiling),
                 b.replication.fully_replicated_per_s,
                 Ratio(b.replication.fully_replicated_per_s, ceiling), b.load.total_errors());
    std::fprintf(out,
                 "  request p50 %.2f ms, p99 %.2f ms; e2e p50 %.2f ms, p99 %.2f ms; disk fsync p50 "
                 "%.3f ms during the run\n",
                 b.load.latency.p50_ms, b.load.latency.p99_ms, b.replication.e2e.p50_ms,
                 b.replication.e2e.p99_ms, b.fsync_probe.p50_ms);
  }

  const CatchUpRun& cu = rep.catch_up;
  std::fprintf(out, "\nCatch-up (one node stopped while messages are written, then restarted)\n");
  if (!cu.ran) {
    std::fprintf(out, "  skipped: %s\n", cu.skipped.c_str());
  } else {
    std::fprintf(out,
                 "  %zu messages written in %.2f s; the node answered its first heartbeat %.2f s "
                 "after its restart\n",
                 cu.messages, cu.write_s, cu.seconds - cu.seconds_from_up);
    std::fprintf(out,
                 "  %s in %.2f s from restart (%.0f msgs/s), %.2f s from its first heartbeat "
                 "(%.0f msgs/s)\n",
                 cu.complete ? "caught up" : "NOT caught up", cu.seconds, cu.messages_per_s,
                 cu.seconds_from_up, cu.messages_per_s_from_up);
  }

  PrintScale(rep, out);
  const ConsumeReport& cr = rep.consume;
  std::fprintf(out, "\nDurable consumer: fetch up to %d, ack them (durable), closed loop\n",
               cr.config.fetch_max);
  if (!c.Runs("consume")) {
    std::fprintf(out, "  skipped: not among --phases\n");
  } else {
    for (const ConsumeRun& r : cr.runs) {
      std::fprintf(out,
                   "  %2d clients: median %.0f msgs/s acknowledged (min %.0f, max %.0f, %zu runs "
                   "of %zu); ack p50 %.2f ms, p90 %.2f ms, p99 %.2f ms; fetch p50 %.2f ms; "
                   "redelivered %zu, errors %zu\n",
                   r.clients, r.median_per_s, r.min_per_s, r.max_per_s, r.acked_per_s.size(),
                   cr.config.messages, r.ack_latency.p50_ms, r.ack_latency.p90_ms,
                   r.ack_latency.p99_ms, r.fetch_latency.p50_ms, r.redelivered, r.errors);
    }
  }
  if (c.Runs("retention")) PrintRetention(rep.retention, out);
  if (c.Runs("membership")) PrintMembership(rep.membership, out);

  std::fprintf(out,
               "\nTargets (docs/benchmarks.md)\n  goals from this run's baselines, absolute "
               "where marked, and etcd's figures of this run\n");
  for (const TargetCheck& t : rep.targets) {
    std::fprintf(out, "  [%s] %s\n         goal %s; measured %s\n",
                 !t.measured ? " -- "
                 : t.met     ? " met"
                             : "miss",
                 t.name.c_str(), t.goal.c_str(), t.value.empty() ? "-" : t.value.c_str());
  }
  for (const std::string& s : rep.warnings) std::fprintf(out, "warning: %s\n", s.c_str());
  std::fprintf(out, "\ntotal %.0f s\n", rep.duration_s);
}

Status WriteFile(const std::string& path, const std::string& contents) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return Status::IOError("cannot write " + path + ": " + std::strerror(errno));
  out << contents;
  out.close();
  if (!out) return Status::IOError("cannot write " + path);
  return Status::Ok();
}

}  // namespace dsm::bench
