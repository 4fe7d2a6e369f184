#include "tests/testing/sse_client.h"

#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <mutex>
#include <utility>

namespace dsm::testing {
namespace {

void GlobalInit() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

}  // namespace

SseClient::SseClient(std::string url, std::vector<std::string> headers)
    : url_(std::move(url)), headers_(std::move(headers)) {
  GlobalInit();
  thread_ = std::thread([this] { Transfer(); });
}

SseClient::~SseClient() { Close(); }

void SseClient::Close() {
  {
    MutexLock lock(&mu_);
    closing_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void SseClient::Transfer() {
  CURL* curl = curl_easy_init();
  char errbuf[CURL_ERROR_SIZE] = {0};
  curl_slist* list = nullptr;
  list = curl_slist_append(list, "Accept: text/event-stream");
  for (const std::string& h : headers_) list = curl_slist_append(list, h.c_str());
  curl_easy_setopt(curl, CURLOPT_URL, url_.c_str());
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_PROXY, "");  // no proxy of the environment
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, 3000L);
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, list);
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &SseClient::OnData);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, this);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, &SseClient::OnHeader);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, this);
  curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, &SseClient::OnProgress);
  curl_easy_setopt(curl, CURLOPT_XFERINFODATA, this);
  curl_easy_setopt(curl, CURLOPT_FORBID_REUSE, 1L);
  // A dead server is noticed within seconds even if it never closes the socket.
  curl_easy_setopt(curl, CURLOPT_TCP_KEEPALIVE, 1L);
  CURLcode rc = curl_easy_perform(curl);
  MutexLock lock(&mu_);
  if (rc != CURLE_OK && !closing_) error_ = errbuf[0] ? errbuf : curl_easy_strerror(rc);
  ended_ = true;
  cv_.NotifyAll();
  curl_slist_free_all(list);
  curl_easy_cleanup(curl);
}

size_t SseClient::OnData(char* ptr, size_t size, size_t n, void* self) {
  auto* c = static_cast<SseClient*>(self);
  MutexLock lock(&c->mu_);
  if (c->closing_) return 0;  // aborts the transfer
  c->body_.append(ptr, size * n);
  if (c->status_ == 200) c->Feed(ptr, size * n);
  return size * n;
}

size_t SseClient::OnHeader(char* ptr, size_t size, size_t n, void* self) {
  auto* c = static_cast<SseClient*>(self);
  std::string line(ptr, size * n);
  MutexLock lock(&c->mu_);
  if (line.rfind("HTTP/", 0) == 0) {
    const size_t sp = line.find(' ');
    if (sp != std::string::npos) c->status_ = std::strtol(line.c_str() + sp + 1, nullptr, 10);
  } else if (line == "\r\n" || line == "\n") {
    c->connected_ = true;
    c->cv_.NotifyAll();
  } else if (const size_t colon = line.find(':'); colon != std::string::npos) {
    std::string name = line.substr(0, colon);
    std::transform(name.begin(), name.end(), name.begin(),
                   [](unsigned char ch) { return std::tolower(ch); });
    std::string value = line.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ')) value.erase(value.begin());
    while (!value.empty() && (value.back() == '\r' || value.back() == '\n')) value.pop_back();
    c->response_headers_[name] = value;
  }
  return size * n;
}

int SseClient::OnProgress(void* self, long long, long long, long long, long long) {
  auto* c = static_cast<SseClient*>(self);
  MutexLock lock(&c->mu_);
  return c->closing_ ? 1 : 0;
}

void SseClient::Feed(const char* data, size_t len) {
  for (size_t i = 0; i < len; ++i) {
    const char ch = data[i];
    if (ch == '\n') {
      std::string line = std::move(partial_line_);
      partial_line_.clear();
      if (!line.empty() && line.back() == '\r') line.pop_back();
      Line(std::move(line));
    } else {
      partial_line_.push_back(ch);
    }
  }
}

void SseClient::Line(std::string line) {
  if (line.empty()) {
    if (pending_has_data_) {
      events_.push_back(std::move(pending_));
      cv_.NotifyAll();
    }
    pending_ = SseEvent{};
    pending_has_data_ = false;
    return;
  }
  if (line.front() == ':') {
    comments_.push_back(line.substr(1));
    cv_.NotifyAll();
    return;
  }
  const size_t colon = line.find(':');
  std::string field = line.substr(0, colon);
  std::string value = colon == std::string::npos ? "" : line.substr(colon + 1);
  if (!value.empty() && value.front() == ' ') value.erase(value.begin());
  if (field == "id") {
    pending_.id = value;
  } else if (field == "event") {
    pending_.event = value;
  } else if (field == "data") {
    if (pending_has_data_) pending_.data.push_back('\n');
    pending_.data += value;
    pending_has_data_ = true;
  }
}

bool SseClient::WaitUntil(const std::function<bool(const std::vector<SseEvent>&)>& pred,
                          std::chrono::milliseconds timeout) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  MutexLock lock(&mu_);
  while (!pred(events_) && !ended_) {
    if (!cv_.WaitUntil(&mu_, until)) break;
  }
  return pred(events_);
}

bool SseClient::WaitEvents(size_t n, std::chrono::milliseconds timeout) {
  return WaitUntil([n](const std::vector<SseEvent>& e) { return e.size() >= n; }, timeout);
}

bool SseClient::WaitConnected(std::chrono::milliseconds timeout) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  MutexLock lock(&mu_);
  while (!connected_ && !ended_) {
    if (!cv_.WaitUntil(&mu_, until)) break;
  }
  return connected_;
}

bool SseClient::WaitEnded(std::chrono::milliseconds timeout) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  MutexLock lock(&mu_);
  while (!ended_) {
    if (!cv_.WaitUntil(&mu_, until)) break;
  }
  return ended_;
}

std::vector<SseEvent> SseClient::Events() const {
  MutexLock lock(&mu_);
  return events_;
}

std::vector<std::string> SseClient::Comments() const {
  MutexLock lock(&mu_);
  return comments_;
}

long SseClient::status() const {
  MutexLock lock(&mu_);
  return status_;
}

std::string SseClient::Header(const std::string& lower_case_name) const {
  MutexLock lock(&mu_);
  auto it = response_headers_.find(lower_case_name);
  return it == response_headers_.end() ? "" : it->second;
}

bool SseClient::ended() const {
  MutexLock lock(&mu_);
  return ended_;
}

std::string SseClient::error() const {
  MutexLock lock(&mu_);
  return error_;
}

std::string SseClient::body() const {
  MutexLock lock(&mu_);
  return body_;
}

}  // namespace dsm::testing
