#include "common/metrics.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

namespace dsm {

std::vector<double> Histogram::LatencyBuckets() {
  // Finer between 0.1 and 2 ms, where fsyncs, push round trips and quorum writes of a local
  // disk fall, so that the stages of a quorum write can be told apart.
  return {0.00005, 0.0001, 0.00015, 0.0002, 0.0003, 0.0004, 0.0005, 0.0006, 0.0008,
          0.001,   0.0013, 0.0016,  0.002,  0.0025, 0.005,  0.01,   0.025,  0.05,
          0.1,     0.25,   0.5,     1,      2.5,    5,      10};
}

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)),
      buckets_(std::make_unique<std::atomic<uint64_t>[]>(bounds_.size() + 1)) {}

void Histogram::Observe(double value) {
  const size_t i = std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin();
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(value, std::memory_order_relaxed);
}

Histogram::Snapshot Histogram::Read() const {
  Snapshot s;
  s.bounds = bounds_;
  uint64_t running = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    running += buckets_[i].load(std::memory_order_relaxed);
    s.cumulative.push_back(running);
  }
  s.count = running + buckets_[bounds_.size()].load(std::memory_order_relaxed);
  s.sum = sum_.load(std::memory_order_relaxed);
  return s;
}

namespace {

void AppendEscaped(std::string* out, std::string_view v) {
  for (char c : v) {
    if (c == '\\') {
      *out += "\\\\";
    } else if (c == '"') {
      *out += "\\\"";
    } else if (c == '\n') {
      *out += "\\n";
    } else {
      out->push_back(c);
    }
  }
}

void AppendValue(std::string* out, double v) {
  if (std::isinf(v)) {
    *out += v > 0 ? "+Inf" : "-Inf";
  } else if (std::isnan(v)) {
    *out += "NaN";
  } else if (v == std::floor(v) && std::fabs(v) < 1e15) {
    *out += fmt::format("{}", static_cast<int64_t>(v));
  } else {
    *out += fmt::format("{}", v);
  }
}

}  // namespace

void MetricsWriter::Family(std::string_view name, std::string_view type, std::string_view help) {
  text_ += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
}

void MetricsWriter::AppendLabels(Labels labels, std::string_view extra_key,
                                 std::string_view extra_value) {
  if (labels.size() == 0 && extra_key.empty()) return;
  text_ += '{';
  bool first = true;
  auto one = [&](std::string_view k, std::string_view v) {
    if (!first) text_ += ',';
    first = false;
    text_.append(k);
    text_ += "=\"";
    AppendEscaped(&text_, v);
    text_ += '"';
  };
  for (const auto& [k, v] : labels) one(k, v);
  if (!extra_key.empty()) one(extra_key, extra_value);
  text_ += '}';
}

void MetricsWriter::Sample(std::string_view name, Labels labels, double value) {
  text_.append(name);
  AppendLabels(labels);
  text_ += ' ';
  AppendValue(&text_, value);
  text_ += '\n';
}

void MetricsWriter::HistogramSamples(std::string_view name, Labels labels,
                                     const Histogram::Snapshot& h) {
  const std::string bucket = std::string(name) + "_bucket";
  for (size_t i = 0; i < h.bounds.size(); ++i) {
    text_ += bucket;
    std::string le;
    AppendValue(&le, h.bounds[i]);
    AppendLabels(labels, "le", le);
    text_ += fmt::format(" {}\n", h.cumulative[i]);
  }
  text_ += bucket;
  AppendLabels(labels, "le", "+Inf");
  text_ += fmt::format(" {}\n", h.count);
  Sample(std::string(name) + "_sum", labels, h.sum);
  Sample(std::string(name) + "_count", labels, static_cast<double>(h.count));
}

}  // namespace dsm
