#include "bench/dsm_bench/svg_report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

namespace dsm::bench {

namespace {

std::string Escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string F(const char* fmt, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, fmt, v);
  return buf;
}

// A compact number: 950, 12.3k, 1.25M.
std::string Compact(double v) {
  if (v >= 1e6) return F("%.2fM", v / 1e6);
  if (v >= 1e4) return F("%.0fk", v / 1e3);
  if (v >= 1e3) return F("%.1fk", v / 1e3);
  return F("%.0f", v);
}

// Milliseconds with sensible precision.
std::string Ms(double v) {
  if (v >= 100) return F("%.0f", v);
  if (v >= 10) return F("%.1f", v);
  if (v >= 1) return F("%.2f", v);
  return F("%.3f", v);
}

class Svg {
 public:
  void Raw(const std::string& s) { out_ += s; }
  void Line(double x1, double y1, double x2, double y2, const std::string& stroke, double width,
            const std::string& dash = "") {
    out_ += "<line x1=\"" + N(x1) + "\" y1=\"" + N(y1) + "\" x2=\"" + N(x2) + "\" y2=\"" + N(y2) +
            "\" stroke=\"" + stroke + "\" stroke-width=\"" + N(width) + "\"" +
            (dash.empty() ? "" : " stroke-dasharray=\"" + dash + "\"") + "/>\n";
  }
  void Text(double x, double y, const std::string& text, int size = 12,
            const std::string& anchor = "start", const std::string& fill = "#222",
            const std::string& weight = "normal") {
    out_ += "<text x=\"" + N(x) + "\" y=\"" + N(y) + "\" font-size=\"" + std::to_string(size) +
            "\" text-anchor=\"" + anchor + "\" fill=\"" + fill + "\" font-weight=\"" + weight +
            "\">" + Escape(text) + "</text>\n";
  }
  // Text turned 90 degrees counter-clockwise around (x, y): a y-axis title.
  void VerticalText(double x, double y, const std::string& text) {
    out_ += "<text x=\"" + N(x) + "\" y=\"" + N(y) +
            "\" font-size=\"11\" text-anchor=\"middle\" fill=\"#666\" transform=\"rotate(-90 " +
            N(x) + " " + N(y) + ")\">" + Escape(text) + "</text>\n";
  }
  void Rect(double x, double y, double w, double h, const std::string& fill,
            const std::string& stroke = "none") {
    out_ += "<rect x=\"" + N(x) + "\" y=\"" + N(y) + "\" width=\"" + N(std::max(w, 0.0)) +
            "\" height=\"" + N(std::max(h, 0.0)) + "\" fill=\"" + fill + "\" stroke=\"" + stroke +
            "\"/>\n";
  }
  void Circle(double x, double y, double r, const std::string& fill) {
    out_ += "<circle cx=\"" + N(x) + "\" cy=\"" + N(y) + "\" r=\"" + N(r) + "\" fill=\"" + fill +
            "\"/>\n";
  }
  void Polyline(const std::vector<std::pair<double, double>>& pts, const std::string& stroke,
                double width, const std::string& dash = "") {
    if (pts.empty()) return;
    out_ += "<polyline fill=\"none\" stroke=\"" + stroke + "\" stroke-width=\"" + N(width) + "\"" +
            (dash.empty() ? "" : " stroke-dasharray=\"" + dash + "\"") + " points=\"";
    for (const auto& [x, y] : pts) out_ += N(x) + "," + N(y) + " ";
    out_ += "\"/>\n";
  }
  const std::string& str() const { return out_; }

 private:
  static std::string N(double v) { return F("%.1f", v); }
  std::string out_;
};

struct Box {
  double x, y, w, h;  // plot area
};

const char* kPercentileColors[] = {"#1f77b4", "#2ca02c", "#ff7f0e", "#d62728"};
const char* kPercentileNames[] = {"p50", "p90", "p99", "p99.9"};
const char* kAsyncColor = "#1f77b4";
const char* kQuorumColor = "#e6550d";

double Percentile(const LatencySummary& s, int i) {
  switch (i) {
    case 0:
      return s.p50_ms;
    case 1:
      return s.p90_ms;
    case 2:
      return s.p99_ms;
    default:
      return s.p999_ms;
  }
}

// A round tick step (1, 2 or 5 times a power of ten) that cuts [0, top] into about `n` parts.
double NiceStep(double top, int n) {
  const double raw = top / n;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    if (m * mag >= raw) return m * mag;
  }
  return 10 * mag;
}

// X position of category i of n in box b.
double CatX(const Box& b, size_t i, size_t n) {
  return b.x + (static_cast<double>(i) + 0.5) * b.w / static_cast<double>(std::max<size_t>(n, 1));
}

void LatencyPanel(Svg& svg, const Box& b, const BenchReport& rep, const std::string& mode,
                  const std::string& title, double lo, double hi) {
  svg.Text(b.x, b.y - 12, title, 14, "start", "#222", "bold");
  svg.Rect(b.x, b.y, b.w, b.h, "#fafafa", "#ccc");
  const double llo = std::log10(lo), lhi = std::log10(hi);
  auto Y = [&](double v) {
    v = std::max(v, lo);
    return b.y + b.h - (std::log10(v) - llo) / (lhi - llo) * b.h;
  };
  for (int e = static_cast<int>(std::floor(llo)); e <= static_cast<int>(std::ceil(lhi)); ++e) {
    for (int m : {1, 2, 5}) {
      const double v = m * std::pow(10.0, e);
      if (v < lo * 0.999 || v > hi * 1.001) continue;
      svg.Line(b.x, Y(v), b.x + b.w, Y(v), m == 1 ? "#ddd" : "#eee", 1);
      svg.Text(b.x - 6, Y(v) + 4, Ms(v), 10, "end", "#666");
    }
  }
  svg.VerticalText(b.x - 50, b.y + b.h / 2, "ms");
  const std::vector<int>& clients = rep.config.clients;
  for (size_t i = 0; i < clients.size(); ++i) {
    svg.Text(CatX(b, i, clients.size()), b.y + b.h + 16, std::to_string(clients[i]), 11, "middle",
             "#444");
  }
  svg.Text(b.x + b.w / 2, b.y + b.h + 32, "concurrent clients (closed loop)", 11, "middle", "#444");
  // The base latency: what one durable round trip costs on this machine.
  const double base = rep.BaseLatencyMs();
  if (base > 0) {
    svg.Line(b.x, Y(base), b.x + b.w, Y(base), "#888", 1.5, "6,4");
    svg.Text(b.x + b.w - 4, Y(base) - 4, "fsync p50 + HTTP p50 = " + Ms(base) + " ms", 10, "end",
             "#666");
  }
  if (base > 0 && mode == "sync_quorum") {
    svg.Line(b.x, Y(2 * base), b.x + b.w, Y(2 * base), "#d62728", 1, "2,3");
    svg.Text(b.x + 4, Y(2 * base) - 4, "target for p50 at 1 client: 2 x base", 10, "start",
             "#d62728");
  }
  for (int p = 0; p < 4; ++p) {
    std::vector<std::pair<double, double>> pts;
    for (size_t i = 0; i < clients.size(); ++i) {
      const PublishRun* r = rep.FindClosed(mode, clients[i]);
      if (!r || r->load.latency.count == 0) continue;
      pts.emplace_back(CatX(b, i, clients.size()), Y(Percentile(r->load.latency, p)));
    }
    svg.Polyline(pts, kPercentileColors[p], 2);
    for (const auto& [x, y] : pts) svg.Circle(x, y, 3, kPercentileColors[p]);
    // p50 values labelled.
    if (p == 0) {
      for (size_t i = 0; i < clients.size(); ++i) {
        const PublishRun* r = rep.FindClosed(mode, clients[i]);
        if (!r || r->load.latency.count == 0) continue;
        svg.Text(CatX(b, i, clients.size()) + 5, Y(r->load.latency.p50_ms) + 14,
                 Ms(r->load.latency.p50_ms), 10, "start", kPercentileColors[0]);
      }
    }
  }
  // Legend.
  for (int p = 0; p < 4; ++p) {
    const double lx = b.x + 8 + p * 62, ly = b.y + 14;
    svg.Line(lx, ly - 4, lx + 16, ly - 4, kPercentileColors[p], 2.5);
    svg.Text(lx + 20, ly, kPercentileNames[p], 10, "start", "#333");
  }
}

void ThroughputPanel(Svg& svg, const Box& b, const BenchReport& rep) {
  svg.Text(b.x, b.y - 12, "Publish throughput (closed loop) vs clients, log scale", 14, "start",
           "#222", "bold");
  svg.Rect(b.x, b.y, b.w, b.h, "#fafafa", "#ccc");
  const double ceiling = rep.CeilingRps();
  // Log scale: dsm's figures and the ceiling can be orders of magnitude apart.
  double lo = ceiling > 0 ? ceiling : 1, hi = lo;
  for (const PublishRun& r : rep.closed_loop) {
    if (r.load.messages_per_s > 0) {
      lo = std::min(lo, r.load.messages_per_s);
      hi = std::max(hi, r.load.messages_per_s);
    }
  }
  lo = std::pow(10.0, std::floor(std::log10(lo)));
  hi = std::pow(10.0, std::ceil(std::log10(hi * 1.0001)));
  if (hi <= lo) hi = lo * 10;
  const double llo = std::log10(lo), lhi = std::log10(hi);
  auto Y = [&](double v) {
    v = std::max(v, lo);
    return b.y + b.h - (std::log10(v) - llo) / (lhi - llo) * b.h;
  };
  for (int e = static_cast<int>(llo); e <= static_cast<int>(lhi); ++e) {
    for (int m : {1, 2, 5}) {
      const double v = m * std::pow(10.0, e);
      if (v < lo * 0.999 || v > hi * 1.001) continue;
      svg.Line(b.x, Y(v), b.x + b.w, Y(v), m == 1 ? "#ddd" : "#eee", 1);
      svg.Text(b.x - 6, Y(v) + 4, Compact(v), 10, "end", "#666");
    }
  }
  svg.VerticalText(b.x - 50, b.y + b.h / 2, "msgs/s");
  const std::vector<int>& clients = rep.config.clients;
  for (size_t i = 0; i < clients.size(); ++i) {
    svg.Text(CatX(b, i, clients.size()), b.y + b.h + 16, std::to_string(clients[i]), 11, "middle",
             "#444");
  }
  svg.Text(b.x + b.w / 2, b.y + b.h + 32, "concurrent clients", 11, "middle", "#444");
  if (ceiling > 0) {
    svg.Line(b.x, Y(ceiling), b.x + b.w, Y(ceiling), "#888", 1.5, "6,4");
    svg.Text(b.x + 4, Y(ceiling) - 4, "empty-request ceiling " + Compact(ceiling) + "/s", 10,
             "start", "#666");
    svg.Line(b.x, Y(0.5 * ceiling), b.x + b.w, Y(0.5 * ceiling), kAsyncColor, 1, "2,3");
    svg.Text(b.x + 4, Y(0.5 * ceiling) - 3, "async target 50% (fully replicated)", 9, "start",
             kAsyncColor);
    svg.Line(b.x, Y(0.35 * ceiling), b.x + b.w, Y(0.35 * ceiling), kQuorumColor, 1, "2,3");
    svg.Text(b.x + 4, Y(0.35 * ceiling) + 11, "quorum target 35%", 9, "start", kQuorumColor);
  }
  const std::pair<const char*, const char*> modes[] = {{"async", kAsyncColor},
                                                       {"sync_quorum", kQuorumColor}};
  int legend = 0;
  for (const auto& [mode, color] : modes) {
    std::vector<std::pair<double, double>> pts;
    for (size_t i = 0; i < clients.size(); ++i) {
      const PublishRun* r = rep.FindClosed(mode, clients[i]);
      if (!r) continue;
      const double x = CatX(b, i, clients.size()), y = Y(r->load.messages_per_s);
      pts.emplace_back(x, y);
      // async labels above left of the points, sync_quorum labels below right.
      if (legend == 0) {
        svg.Text(x - 6, y - 7, Compact(r->load.messages_per_s), 10, "end", color);
      } else {
        svg.Text(x + 6, y + 14, Compact(r->load.messages_per_s), 10, "start", color);
      }
    }
    svg.Polyline(pts, color, 2.5);
    for (const auto& [x, y] : pts) svg.Circle(x, y, 3.5, color);
    const double lx = b.x + b.w - 150, ly = b.y + 16 + legend * 15;
    svg.Line(lx, ly - 4, lx + 16, ly - 4, color, 2.5);
    svg.Text(lx + 20, ly, std::string(mode) + (legend == 0 ? " (ack local)" : " (Q=2)"), 10,
             "start", "#333");
    ++legend;
  }
}

void BulkPanel(Svg& svg, const Box& b, const BenchReport& rep) {
  svg.Text(b.x - 150, b.y - 12, "Bulk throughput vs the absolute targets", 14, "start", "#222",
           "bold");
  struct Bar {
    std::string name;
    double value;
    double target;  // 0 = none drawn here
  };
  std::vector<Bar> bars;
  bars.push_back({"batch: accepted", rep.batch.load.messages_per_s, 100000});
  bars.push_back({"batch: fully replicated", rep.batch.replication.fully_replicated_per_s, 100000});
  bars.push_back({"catch-up (from restart)", rep.catch_up.messages_per_s, 150000});
  const PublishRun* async_top = nullptr;
  for (const PublishRun& r : rep.closed_loop) {
    if (r.mode == "async" && (!async_top || r.clients > async_top->clients)) async_top = &r;
  }
  if (async_top) {
    bars.push_back({"async " + std::to_string(async_top->clients) + " cl.: accepted",
                    async_top->load.messages_per_s, 0});
    bars.push_back({"async " + std::to_string(async_top->clients) + " cl.: replicated",
                    async_top->replication.fully_replicated_per_s,
                    async_top->clients == 64 ? 0.5 * rep.CeilingRps() : 0});
  }
  double top = 150000;
  for (const Bar& bar : bars) top = std::max({top, bar.value, bar.target});
  top *= 1.15;
  const double step = NiceStep(top, 4);
  top = std::ceil(top / step) * step;
  svg.Rect(b.x, b.y, b.w, b.h, "#fafafa", "#ccc");
  auto X = [&](double v) { return b.x + v / top * b.w; };
  for (double v = 0; v <= top * 1.0001; v += step) {
    svg.Line(X(v), b.y, X(v), b.y + b.h, "#e6e6e6", 1);
    svg.Text(X(v), b.y + b.h + 16, Compact(v), 10, "middle", "#666");
  }
  svg.Text(b.x + b.w / 2, b.y + b.h + 32, "messages/s (red ticks: each bar's target)", 11, "middle",
           "#444");
  const double slot = b.h / static_cast<double>(bars.size());
  for (size_t i = 0; i < bars.size(); ++i) {
    const double y = b.y + slot * static_cast<double>(i) + slot * 0.2;
    const Bar& bar = bars[i];
    svg.Text(b.x - 6, y + slot * 0.3 + 4, bar.name, 11, "end", "#333");
    svg.Rect(b.x, y, X(bar.value) - b.x, slot * 0.6,
             bar.target > 0 && bar.value >= bar.target ? "#31a354" : "#9ecae1");
    svg.Text(X(bar.value) + 4, y + slot * 0.3 + 4, Compact(bar.value) + "/s", 10, "start", "#333");
    if (bar.target > 0) {
      svg.Line(X(bar.target), y - 2, X(bar.target), y + slot * 0.6 + 2, "#d62728", 2);
    }
  }
}

const char* kEtcdColor = "#7f7f7f";

// One bar chart of the etcd comparison: etcd, dsm quorum and dsm async side by side, the target
// (a multiple of etcd's figure) as a dashed line, dsm's ratios to etcd above its bars.
struct EtcdBars {
  std::string title;
  std::string unit;      // "msgs/s" or "ms"
  double values[3];      // etcd, dsm quorum, dsm async (0 = not measured)
  double target_factor;  // the target for dsm quorum as a multiple of etcd's figure
  bool higher_is_better;
};

void EtcdBarChart(Svg& svg, const Box& b, const EtcdBars& c) {
  svg.Text(b.x, b.y - 10, c.title, 12, "start", "#222", "bold");
  svg.Rect(b.x, b.y, b.w, b.h, "#fafafa", "#ccc");
  const double etcd = c.values[0];
  double top = std::max(etcd * c.target_factor, 1e-9);
  for (double v : c.values) top = std::max(top, v);
  top *= 1.2;
  const double step = NiceStep(top, 4);
  top = std::ceil(top / step) * step;
  auto Y = [&](double v) { return b.y + b.h - v / top * b.h; };
  for (double v = 0; v <= top * 1.0001; v += step) {
    svg.Line(b.x, Y(v), b.x + b.w, Y(v), "#e6e6e6", 1);
    svg.Text(b.x - 5, Y(v) + 4, c.unit == "ms" ? Ms(v) : Compact(v), 9, "end", "#666");
  }
  const char* names[3] = {"etcd", "dsm quorum", "dsm async"};
  const char* colors[3] = {kEtcdColor, kQuorumColor, kAsyncColor};
  for (size_t i = 0; i < 3; ++i) {
    const double x = CatX(b, i, 3), w = b.w / 3 * 0.55;
    svg.Text(x, b.y + b.h + 14, names[i], 10, "middle", "#444");
    if (c.values[i] <= 0) {
      svg.Text(x, b.y + b.h - 6, "not run", 9, "middle", "#999");
      continue;
    }
    svg.Rect(x - w / 2, Y(c.values[i]), w, b.y + b.h - Y(c.values[i]), colors[i]);
    std::string label = c.unit == "ms" ? Ms(c.values[i]) + " ms" : Compact(c.values[i]) + "/s";
    if (i > 0 && etcd > 0) label += " (" + F("%.2f", c.values[i] / etcd) + " x)";
    svg.Text(x, Y(c.values[i]) - 4, label, 9, "middle", "#333");
  }
  if (etcd > 0) {
    const double t = etcd * c.target_factor;
    svg.Line(b.x, Y(t), b.x + b.w, Y(t), "#d62728", 1.2, "5,3");
  }
  // The target in words under the chart, where no bar label can cover it.
  svg.Text(b.x, b.y + b.h + 28,
           std::string("red dashes: dsm quorum target ") + (c.higher_is_better ? ">= " : "<= ") +
               F("%.1f", c.target_factor) + " x etcd",
           9, "start", "#d62728");
}

void EtcdPanel(Svg& svg, double x, double y, double w, double h, const BenchReport& rep) {
  const EtcdComparison& e = rep.etcd;
  svg.Text(x - 50, y - 30,
           e.ran ? "dsm vs etcd " + e.version +
                       " (3 local members, fsync on, POST /v3/kv/put to the leader, same "
                       "closed-loop load, measured first)"
                 : "dsm vs etcd: not measured - " + e.skipped,
           14, "start", "#222", "bold");
  if (!e.ran) return;
  std::vector<EtcdBars> charts;
  for (const EtcdRun& r : e.runs) {
    const PublishRun* q = rep.FindClosed("sync_quorum", r.clients);
    const PublishRun* a = rep.FindClosed("async", r.clients);
    charts.push_back(
        {"throughput, " + std::to_string(r.clients) + " client" + (r.clients == 1 ? "" : "s"),
         "msgs/s",
         {r.load.messages_per_s, q ? q->load.messages_per_s : 0, a ? a->load.messages_per_s : 0},
         2.0,
         true});
  }
  if (!e.runs.empty()) {
    const EtcdRun& r = e.runs.front();
    const PublishRun* q = rep.FindClosed("sync_quorum", r.clients);
    const PublishRun* a = rep.FindClosed("async", r.clients);
    charts.push_back(
        {"p50 latency, " + std::to_string(r.clients) + " client" + (r.clients == 1 ? "" : "s"),
         "ms",
         {r.load.latency.p50_ms, q ? q->load.latency.p50_ms : 0, a ? a->load.latency.p50_ms : 0},
         0.6,
         false});
  }
  const double slot = w / static_cast<double>(charts.size());
  for (size_t i = 0; i < charts.size(); ++i) {
    EtcdBarChart(svg, Box{x + slot * static_cast<double>(i), y, slot - 70, h}, charts[i]);
  }
}

}  // namespace

std::string RenderSvg(const BenchReport& rep) {
  const int width = 1100, height = rep.etcd.requested ? 1090 : 780;
  Svg svg;
  svg.Raw("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + std::to_string(width) +
          "\" height=\"" + std::to_string(height) + "\" viewBox=\"0 0 " + std::to_string(width) +
          " " + std::to_string(height) + "\" font-family=\"Helvetica, Arial, sans-serif\">\n");
  svg.Rect(0, 0, width, height, "white");
  const BenchConfig& c = rep.config;
  svg.Text(30, 30,
           "dsm-bench (" + c.profile + " profile), " + rep.started_at + ": " +
               std::to_string(c.nodes.size()) + " nodes, fsync " +
               (c.local_cluster ? c.fsync : std::string("as configured")) + ", Q=" +
               std::to_string(c.quorum) + ", " + std::to_string(c.payload_bytes) + "-byte payloads",
           16, "start", "#111", "bold");
  svg.Text(30, 50,
           std::to_string(rep.machine.cores) + " cores, " + rep.machine.cpu_model + ", " +
               rep.machine.kernel + "; load before " + rep.load_before,
           11, "start", "#555");
  svg.Text(30, 66,
           "baselines: fsync p50 " + Ms(rep.fsync.latency.p50_ms) + " ms, p99 " +
               Ms(rep.fsync.latency.p99_ms) + " ms; empty HTTP p50 " +
               Ms(rep.http.latency_1.p50_ms) + " ms, p99 " + Ms(rep.http.latency_1.p99_ms) +
               " ms; ceiling " + Compact(rep.CeilingRps()) + " requests/s at " +
               std::to_string(rep.http.ceiling_clients) + " connections",
           11, "start", "#555");

  // Shared log scale of the two latency panels.
  double lo = rep.BaseLatencyMs() > 0 ? rep.BaseLatencyMs() : 1, hi = lo;
  for (const PublishRun& r : rep.closed_loop) {
    if (r.load.latency.count == 0) continue;
    for (int p = 0; p < 4; ++p) {
      const double v = Percentile(r.load.latency, p);
      if (v > 0) {
        lo = std::min(lo, v);
        hi = std::max(hi, v);
      }
    }
  }
  lo = std::pow(10.0, std::floor(std::log10(lo)));
  hi = std::pow(10.0, std::ceil(std::log10(hi * 1.0001)));
  if (hi <= lo) hi = lo * 10;

  LatencyPanel(svg, Box{80, 110, 440, 260}, rep, "async",
               "Publish latency, async (ack after local fsync)", lo, hi);
  LatencyPanel(svg, Box{630, 110, 440, 260}, rep, "sync_quorum",
               "Publish latency, sync_quorum (Q=2)", lo, hi);
  ThroughputPanel(svg, Box{80, 470, 440, 250}, rep);
  BulkPanel(svg, Box{790, 470, 280, 250}, rep);
  if (rep.etcd.requested) EtcdPanel(svg, 80, 830, 1060, 190, rep);
  svg.Text(30, height - 8,
           "Latency: closed-loop round trip per request, log scale. Open-loop, replication and "
           "catch-up details: the JSON report and docs/benchmarks.md.",
           10, "start", "#777");
  svg.Raw("</svg>\n");
  return svg.str();
}

}  // namespace dsm::bench
