#include "bench/dsm_bench/metrics_scrape.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <map>

namespace dsm::bench {

namespace {

bool ParseNumber(std::string_view s, double* out) {
  if (s == "+Inf") {
    *out = HUGE_VAL;
    return true;
  }
  if (s == "-Inf") {
    *out = -HUGE_VAL;
    return true;
  }
  const std::string copy(s);
  char* end = nullptr;
  *out = std::strtod(copy.c_str(), &end);
  return end != copy.c_str() && *end == '\0';
}

// Parses `{k="v",...}` starting at text[*pos] == '{'; leaves *pos after the '}'.
bool ParseLabels(std::string_view text, size_t* pos,
                 std::vector<std::pair<std::string, std::string>>* labels) {
  size_t i = *pos + 1;
  while (i < text.size()) {
    if (text[i] == '}') {
      *pos = i + 1;
      return true;
    }
    if (text[i] == ',') {
      ++i;
      continue;
    }
    const size_t eq = text.find('=', i);
    if (eq == std::string_view::npos || eq + 1 >= text.size() || text[eq + 1] != '"') return false;
    std::string key(text.substr(i, eq - i));
    std::string value;
    size_t j = eq + 2;
    for (; j < text.size() && text[j] != '"'; ++j) {
      if (text[j] == '\\' && j + 1 < text.size()) {
        ++j;
        value += text[j] == 'n' ? '\n' : text[j];
      } else {
        value += text[j];
      }
    }
    if (j >= text.size()) return false;
    labels->emplace_back(std::move(key), std::move(value));
    i = j + 1;
  }
  return false;
}

bool Includes(const std::vector<std::pair<std::string, std::string>>& labels,
              const std::vector<std::pair<std::string, std::string>>& match) {
  for (const auto& m : match) {
    if (std::find(labels.begin(), labels.end(), m) == labels.end()) return false;
  }
  return true;
}

const std::string* Label(const MetricSample& s, std::string_view key) {
  for (const auto& [k, v] : s.labels) {
    if (k == key) return &v;
  }
  return nullptr;
}

// One scrape's view of a family: bucket counts by bound (+Inf included), sum and count, summed
// over the matching series.
struct FamilyTotals {
  std::map<double, double> buckets;
  double sum = 0;
  double count = 0;
};

FamilyTotals Totals(const MetricsScrape& scrape, std::string_view family,
                    const std::vector<std::pair<std::string, std::string>>& match) {
  FamilyTotals t;
  const std::string bucket = std::string(family) + "_bucket";
  const std::string sum = std::string(family) + "_sum";
  const std::string count = std::string(family) + "_count";
  for (const MetricSample& s : scrape) {
    if (!Includes(s.labels, match)) continue;
    if (s.name == bucket) {
      const std::string* le = Label(s, "le");
      double bound = 0;
      if (le != nullptr && ParseNumber(*le, &bound)) t.buckets[bound] += s.value;
    } else if (s.name == sum) {
      t.sum += s.value;
    } else if (s.name == count) {
      t.count += s.value;
    }
  }
  return t;
}

}  // namespace

Result<MetricsScrape> ParseMetrics(std::string_view text) {
  MetricsScrape out;
  size_t line_start = 0;
  int line_no = 0;
  while (line_start < text.size()) {
    size_t line_end = text.find('\n', line_start);
    if (line_end == std::string_view::npos) line_end = text.size();
    std::string_view line = text.substr(line_start, line_end - line_start);
    line_start = line_end + 1;
    ++line_no;
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.remove_suffix(1);
    if (line.empty() || line[0] == '#') continue;
    MetricSample s;
    size_t pos = 0;
    while (pos < line.size() && line[pos] != '{' && line[pos] != ' ') ++pos;
    s.name = std::string(line.substr(0, pos));
    bool ok = !s.name.empty();
    if (ok && pos < line.size() && line[pos] == '{') ok = ParseLabels(line, &pos, &s.labels);
    if (ok) {
      std::string_view rest = line.substr(std::min(pos, line.size()));
      while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
      const size_t space = rest.find(' ');  // an optional timestamp follows the value
      ok = ParseNumber(rest.substr(0, space), &s.value);
    }
    if (!ok) {
      return Status::Corruption("metrics line " + std::to_string(line_no) +
                                " is not a sample: " + std::string(line.substr(0, 120)));
    }
    out.push_back(std::move(s));
  }
  return out;
}

Result<MetricsScrape> ScrapeMetrics(const Endpoint& endpoint) {
  HttpConnection conn(endpoint, std::chrono::milliseconds(5000));
  HttpAnswer answer;
  if (Status s = conn.Request("GET", "/metrics", "", &answer); !s.ok()) return s;
  if (answer.status != 200) {
    return Status::Unavailable(endpoint.url + "/metrics answered " + std::to_string(answer.status));
  }
  return ParseMetrics(answer.body);
}

double HistogramDelta::QuantileMs(double q) const {
  if (count <= 0 || bounds.empty()) return 0;
  const double rank = q * count;
  double below = 0, lower = 0;
  for (size_t i = 0; i < bounds.size(); ++i) {
    if (cumulative[i] >= rank && cumulative[i] > below) {
      const double fraction = (rank - below) / (cumulative[i] - below);
      return 1000 * (lower + (bounds[i] - lower) * std::clamp(fraction, 0.0, 1.0));
    }
    below = cumulative[i];
    lower = bounds[i];
  }
  return 1000 * bounds.back();
}

HistogramDelta HistogramBetween(const MetricsScrape& before, const MetricsScrape& after,
                                std::string_view family,
                                const std::vector<std::pair<std::string, std::string>>& match) {
  const FamilyTotals a = Totals(before, family, match);
  const FamilyTotals b = Totals(after, family, match);
  HistogramDelta d;
  for (const auto& [bound, n] : b.buckets) {
    if (std::isinf(bound)) continue;
    auto it = a.buckets.find(bound);
    d.bounds.push_back(bound);
    d.cumulative.push_back(n - (it == a.buckets.end() ? 0 : it->second));
  }
  d.count = b.count - a.count;
  d.sum = b.sum - a.sum;
  return d;
}

HistogramDelta Add(const HistogramDelta& a, const HistogramDelta& b) {
  if (a.bounds.empty()) return b;
  if (b.bounds.empty()) return a;
  HistogramDelta d = a;
  for (size_t i = 0; i < d.cumulative.size() && i < b.cumulative.size(); ++i) {
    d.cumulative[i] += b.cumulative[i];
  }
  d.count += b.count;
  d.sum += b.sum;
  return d;
}

}  // namespace dsm::bench
