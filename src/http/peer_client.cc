// PeerClient: libcurl multi interface driven by one event-loop thread.
//
// Structure. Callers build a Request (URL, body, deadline, completion) and push it onto `queue`
// under `mu`, then wake the loop with curl_multi_wakeup. The loop thread owns everything else:
// the easy handles in flight (`active`), the per-peer pools of idle easy handles, and a backstop
// deadline index. Each iteration it takes the queue, adds the new transfers, runs
// curl_multi_perform, settles finished transfers, settles transfers past their backstop deadline,
// and sleeps in curl_multi_poll (woken by socket activity, libcurl's own timers, a wakeup, or the
// next backstop deadline).
//
// Settling exactly once: a Request's completion is moved out before it is invoked and the Request
// is destroyed right after, and every path that ends a request (finish, backstop, shutdown, call
// after Stop) goes through Settle(). Completions run without `mu` held, so they may issue new
// requests (which only lock `mu` and wake the loop).
//
// Connection reuse lives in the multi handle's connection cache: every transfer sends
// "Connection: keep-alive", so a Pistache peer keeps the connection open, and libcurl hands it to
// the next transfer to the same host. Easy handles are pooled per peer as well, which keeps their
// buffers warm.
#include "src/http/peer_client.h"

#include <curl/curl.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <thread>
#include <utility>

#include "common/thread_annotations.h"
#include "src/http/json_codec.h"
#include "src/http/peer_protocol.h"

namespace dsm {
namespace {

using SteadyClock = std::chrono::steady_clock;
using TimePoint = SteadyClock::time_point;

// Replies to /heartbeat and /replicate are small; a bigger body is a broken or hostile peer.
constexpr size_t kMaxReplyBytes = size_t{64} << 20;
// A /sync page holds at most `limit` messages and about PeerClientOptions::sync_page_bytes of
// payload (one more message at most): its reply is bounded by that payload, escaped (a control
// character becomes \u00XX, 6 bytes), plus a per-message allowance for ids, numbers and field
// names. An unlimited /sync (everything after `since`) is bounded by kMaxSyncReplyBytes.
constexpr size_t kMaxSyncReplyBytes = size_t{1} << 30;
constexpr size_t kSyncMessageOverheadBytes = 8192;  // 4 ids of up to 256 bytes, escaped
constexpr size_t kPayloadEscapeFactor = 6;
// libcurl normally ends a transfer at its deadline; the loop settles any transfer still unsettled
// this much later itself. libcurl 7.88 does leave some transfers that waited behind the per-host
// connection limit unsettled past their deadline.
constexpr std::chrono::milliseconds kBackstopGrace{50};
// Longest curl_multi_poll sleep when nothing is due (wakeups and libcurl timers cut it short).
constexpr int kMaxPollMs = 1000;
// A peer's TLS failures (certificate refused, handshake failed) are logged at most this often.
constexpr std::chrono::seconds kTlsErrorLogInterval{30};
// Idle easy handles kept per peer.
constexpr size_t kMinPooledHandlesPerPeer = 8;

const char kShuttingDown[] = "shutting down";

// The client whose event loop runs on this thread, if any (lets Stop() recognise a call from a
// completion without reading the std::thread object that the owner thread is still writing).
thread_local const void* tls_loop_owner = nullptr;

void InitCurlOnce() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

std::string TrimTrailingSlashes(std::string url) {
  while (!url.empty() && url.back() == '/') url.pop_back();
  return url;
}

long ClampMillis(std::chrono::milliseconds ms) {
  return static_cast<long>(std::max<int64_t>(1, ms.count()));
}

}  // namespace

struct PeerClient::Impl {
  // How a transfer ended, handed to the typed completion: `error` is non-OK when there is no HTTP
  // answer to decode; otherwise `http_status` and `body` are the peer's answer.
  using Completion =
      std::function<void(const Status& error, long http_status, std::string_view body)>;

  struct Request {
    size_t peer = 0;
    bool post = false;
    std::string peer_url;  // the peer's base URL, for error texts
    std::string url;
    std::string body;            // request body (POST); must outlive the transfer
    size_t max_reply_bytes = 0;  // the reply body is cut off (TooLarge) past this
    TimePoint deadline;          // when the caller's request timeout expires
    Status early_error;          // settles the request without a transfer when non-OK
    Completion done;

    // Loop-thread state while in flight.
    CURL* easy = nullptr;
    std::string reply;
    bool reply_too_large = false;
    char error_buffer[CURL_ERROR_SIZE] = {0};
    std::multimap<TimePoint, Request*>::iterator backstop;
  };

  Impl(std::vector<std::string> urls, PeerClientOptions opts) : options(opts) {
    for (std::string& url : urls) peer_urls.push_back(TrimTrailingSlashes(std::move(url)));
    InitCurlOnce();
    get_headers = curl_slist_append(get_headers, "Accept: application/json");
    get_headers = curl_slist_append(get_headers, "Connection: keep-alive");
    get_headers = curl_slist_append(get_headers, "Expect:");
    post_headers = curl_slist_append(post_headers, "Content-Type: application/json");
    post_headers = curl_slist_append(post_headers, "Accept: application/json");
    post_headers = curl_slist_append(post_headers, "Connection: keep-alive");
    post_headers = curl_slist_append(post_headers, "Expect:");
    if (!options.self_stream.empty()) {
      const std::string from = std::string(http::kStreamHeader) + ": " + options.self_stream;
      get_headers = curl_slist_append(get_headers, from.c_str());
      post_headers = curl_slist_append(post_headers, from.c_str());
    }
    if (!options.cluster_token.empty()) {
      const std::string auth = "Authorization: Bearer " + options.cluster_token;
      get_headers = curl_slist_append(get_headers, auth.c_str());
      post_headers = curl_slist_append(post_headers, auth.c_str());
    }
    multi = curl_multi_init();
    if (multi == nullptr || get_headers == nullptr || post_headers == nullptr) {
      init_error = Status::IOError("peer client: cannot initialise libcurl");
      return;
    }
    long per_host = std::max(1L, options.max_host_connections);
    curl_multi_setopt(multi, CURLMOPT_PIPELINING, CURLPIPE_NOTHING);
    curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, per_host);
    // The connection cache holds every peer's keep-alive connections.
    // Peers added later (AddPeer) share the slack.
    long cache = per_host * static_cast<long>(std::max<size_t>(1, peer_urls.size())) + 4;
    curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, cache);
  }

  ~Impl() {
    // Stop() has joined the loop and cleaned up the multi handle.
    curl_slist_free_all(get_headers);
    curl_slist_free_all(post_headers);
  }

  // ---- Any thread ----

  void Submit(std::unique_ptr<Request> req) LOCKS_EXCLUDED(mu) {
    {
      MutexLock lock(&mu);
      if (!stopping) {
        queue.push_back(std::move(req));
        if (multi != nullptr) curl_multi_wakeup(multi);
        return;
      }
    }
    // After Stop(): settled on the calling thread (see the header).
    Settle(*req, Status::Unavailable(kShuttingDown), 0, {});
  }

  std::unique_ptr<Request> NewRequest(size_t peer, bool post, const char* path, std::string body,
                                      size_t max_reply_bytes, Completion done) {
    auto req = std::make_unique<Request>();
    req->peer = peer;
    req->post = post;
    req->body = std::move(body);
    req->max_reply_bytes = max_reply_bytes;
    req->deadline = SteadyClock::now() + options.request_timeout;
    req->done = std::move(done);
    MutexLock lock(&mu);
    if (peer >= peer_urls.size()) {
      req->early_error =
          Status::InvalidArgument("no peer with index " + std::to_string(peer) + " (" +
                                  std::to_string(peer_urls.size()) + " peers)");
    } else {
      req->peer_url = peer_urls[peer];
      req->url = peer_urls[peer] + path;
    }
    return req;
  }

  // POST /sync with `body`; the reply bound leaves room for `limit` full-size messages (an
  // unlimited /sync streams everything after `since`).
  void SubmitSync(size_t peer, std::string body, size_t limit,
                  std::function<void(Result<SyncReply>)> done) {
    size_t max_payload = options.max_payload_bytes;
    size_t bound = kMaxSyncReplyBytes;
    if (limit != 0 && limit <= kMaxSyncReplyBytes / kSyncMessageOverheadBytes) {
      const size_t payload = (options.sync_page_bytes + max_payload) * kPayloadEscapeFactor;
      bound = std::clamp(payload + limit * kSyncMessageOverheadBytes, kMaxReplyBytes,
                         kMaxSyncReplyBytes);
    }
    auto completion = [done = std::move(done), max_payload](const Status& error, long http_status,
                                                            std::string_view reply) {
      if (!error.ok()) {
        done(error);
      } else {
        done(json::DecodeSyncReply(http_status, reply, max_payload));
      }
    };
    Submit(NewRequest(peer, /*post=*/true, "/sync", std::move(body), bound, std::move(completion)));
  }

  static void Settle(Request& req, const Status& error, long http_status, std::string_view body) {
    Completion done = std::move(req.done);
    req.done = nullptr;
    if (done) done(error, http_status, body);
  }

  // ---- Loop thread ----

  void Loop() LOCKS_EXCLUDED(mu) {
    tls_loop_owner = this;
    {
      MutexLock lock(&mu);
      loop_multi = multi;
    }
    for (;;) {
      std::vector<std::unique_ptr<Request>> incoming;
      {
        MutexLock lock(&mu);
        if (stopping) break;
        incoming.swap(queue);
      }
      for (std::unique_ptr<Request>& req : incoming) StartTransfer(std::move(req));
      int running = 0;
      curl_multi_perform(loop_multi, &running);
      CollectFinished();
      ExpireBackstops(SteadyClock::now());
      curl_multi_poll(loop_multi, nullptr, 0, PollTimeoutMs(), nullptr);
    }
    // Shutting down: settle everything in flight. New calls settle on their own thread now.
    while (!active.empty()) {
      auto it = active.begin();
      std::unique_ptr<Request> req = std::move(it->second);
      active.erase(it);
      curl_multi_remove_handle(loop_multi, req->easy);
      curl_easy_cleanup(req->easy);
      req->easy = nullptr;
      Settle(*req, Status::Unavailable(kShuttingDown), 0, {});
    }
    backstops.clear();
    for (std::vector<CURL*>& pool : idle_handles) {
      for (CURL* easy : pool) curl_easy_cleanup(easy);
      pool.clear();
    }
  }

  void StartTransfer(std::unique_ptr<Request> req) {
    if (!req->early_error.ok()) {
      Settle(*req, req->early_error, 0, {});
      return;
    }
    CURL* easy = TakeHandle(req->peer);
    if (easy == nullptr) {
      Settle(
          *req,
          Status::Unavailable("peer " + req->peer_url + ": cannot create a libcurl handle"),
          0, {});
      return;
    }
    req->easy = easy;
    TimePoint now = SteadyClock::now();
    auto remaining = std::chrono::duration_cast<std::chrono::milliseconds>(req->deadline - now);
    curl_easy_setopt(easy, CURLOPT_URL, req->url.c_str());
    curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(easy, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    // Peers are reached directly: an http_proxy / ALL_PROXY of the environment is not used.
    curl_easy_setopt(easy, CURLOPT_PROXY, "");
    curl_easy_setopt(easy, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, ClampMillis(remaining));
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS,
                     ClampMillis(std::min(remaining, options.connect_timeout)));
    curl_easy_setopt(easy, CURLOPT_USERAGENT, "dsm-peer-client");
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, req->error_buffer);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, &Impl::OnReplyData);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, req.get());
    curl_easy_setopt(easy, CURLOPT_MAXFILESIZE_LARGE,
                     static_cast<curl_off_t>(req->max_reply_bytes));
    // https:// peers only (libcurl ignores these for http://).
    curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 2L);
    if (!options.ca_file.empty()) curl_easy_setopt(easy, CURLOPT_CAINFO, options.ca_file.c_str());
    if (!options.cert_file.empty()) {
      curl_easy_setopt(easy, CURLOPT_SSLCERT, options.cert_file.c_str());
      curl_easy_setopt(easy, CURLOPT_SSLKEY, options.key_file.c_str());
    }
    if (req->post) {
      curl_easy_setopt(easy, CURLOPT_HTTPHEADER, post_headers);
      curl_easy_setopt(easy, CURLOPT_POST, 1L);
      curl_easy_setopt(easy, CURLOPT_POSTFIELDS, req->body.data());
      curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE,
                       static_cast<curl_off_t>(req->body.size()));
    } else {
      curl_easy_setopt(easy, CURLOPT_HTTPHEADER, get_headers);
      curl_easy_setopt(easy, CURLOPT_HTTPGET, 1L);
    }
    CURLMcode mc = curl_multi_add_handle(loop_multi, easy);
    if (mc != CURLM_OK) {
      ReturnHandle(req->peer, easy);
      req->easy = nullptr;
      Settle(*req,
             Status::Unavailable("peer " + req->peer_url + ": " + curl_multi_strerror(mc)),
             0, {});
      return;
    }
    req->backstop = backstops.emplace(req->deadline + kBackstopGrace, req.get());
    active.emplace(easy, std::move(req));
  }

  static size_t OnReplyData(char* data, size_t size, size_t nmemb, void* user) {
    auto* req = static_cast<Request*>(user);
    size_t n = size * nmemb;
    if (req->reply.size() + n > req->max_reply_bytes) {
      req->reply_too_large = true;
      return CURL_WRITEFUNC_ERROR;
    }
    req->reply.append(data, n);
    return n;
  }

  void CollectFinished() {
    int left = 0;
    while (CURLMsg* msg = curl_multi_info_read(loop_multi, &left)) {
      if (msg->msg != CURLMSG_DONE) continue;
      CURL* easy = msg->easy_handle;
      CURLcode code = msg->data.result;  // read before the handle is removed
      std::unique_ptr<Request> req = Detach(easy);
      if (req == nullptr) continue;
      long http_status = 0;
      curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &http_status);
      Status error = code == CURLE_OK ? Status::Ok() : TransferError(*req, code);
      ReturnHandle(req->peer, easy);
      req->easy = nullptr;
      Settle(*req, error, http_status, req->reply);
    }
  }

  void ExpireBackstops(TimePoint now) {
    while (!backstops.empty() && backstops.begin()->first <= now) {
      CURL* easy = backstops.begin()->second->easy;
      std::unique_ptr<Request> req = Detach(easy);
      if (req == nullptr) {  // not reachable: every backstop entry belongs to an active transfer
        backstops.erase(backstops.begin());
        continue;
      }
      Status error = TransferError(*req, CURLE_OPERATION_TIMEDOUT,
                                   "still waiting for a connection or an answer");
      // A handle cut off mid-transfer is not reused.
      curl_easy_cleanup(easy);
      req->easy = nullptr;
      Settle(*req, error, 0, {});
    }
  }

  // Removes a transfer from the multi handle and the loop's indexes; returns its Request.
  std::unique_ptr<Request> Detach(CURL* easy) {
    auto it = active.find(easy);
    if (it == active.end()) return nullptr;
    std::unique_ptr<Request> req = std::move(it->second);
    active.erase(it);
    backstops.erase(req->backstop);
    curl_multi_remove_handle(loop_multi, easy);
    return req;
  }

  // Maps a failed transfer to the Status its caller sees: Unavailable when the peer could not be
  // reached or did not take the request; Timeout when the request went out and no answer came by
  // the deadline (the peer may still act on it).
  // `detail` replaces libcurl's error text when given.
  Status TransferError(const Request& req, CURLcode code, const char* detail = nullptr) {
    std::string where = "peer " + req.peer_url + ": ";
    std::string why = detail != nullptr             ? detail
                      : req.error_buffer[0] != '\0' ? req.error_buffer
                                                    : curl_easy_strerror(code);
    if (IsTlsFailure(code)) {
      // Nothing else says why an https peer stays dead (/status shows it dead, not why).
      if (req.peer >= tls_error_logged.size()) tls_error_logged.resize(req.peer + 1);
      TimePoint& last = tls_error_logged[req.peer];
      const TimePoint now = SteadyClock::now();
      if (last == TimePoint{} || now - last >= kTlsErrorLogInterval) {
        last = now;
        spdlog::warn("{}TLS: {}", where, why);
      }
    }
    if (req.reply_too_large || code == CURLE_FILESIZE_EXCEEDED) {
      return Status::TooLarge(where + "reply larger than " + std::to_string(req.max_reply_bytes) +
                              " bytes");
    }
    switch (code) {
      case CURLE_OPERATION_TIMEDOUT: {
        long request_size = 0;
        if (req.easy != nullptr) curl_easy_getinfo(req.easy, CURLINFO_REQUEST_SIZE, &request_size);
        if (request_size == 0) {
          return Status::Unavailable(
              where + "no connection within the deadline, request not sent (" + why + ")");
        }
        return Status::Timeout(where + "no answer within " +
                               std::to_string(options.request_timeout.count()) + " ms (" + why +
                               ")");
      }
      case CURLE_URL_MALFORMAT:
      case CURLE_UNSUPPORTED_PROTOCOL:
        return Status::InvalidArgument(where + why);
      case CURLE_WEIRD_SERVER_REPLY:
        return Status::Corruption(where + why);
      case CURLE_PEER_FAILED_VERIFICATION:
      case CURLE_SSL_ISSUER_ERROR:
      case CURLE_SSL_CERTPROBLEM:
      case CURLE_SSL_CACERT_BADFILE:
        // The peer's certificate is not trusted (another CA, another host name) or this node's
        // own TLS files are unusable: a configuration error, not an unreachable peer, so the
        // replication core names it in /status (push_problem, pull_problem) and the log.
        return Status::InvalidArgument(where + "TLS: " + why);
      default:
        // Refused, reset, closed without an answer, unresolvable, ...
        return Status::Unavailable(where + why);
    }
  }

  static bool IsTlsFailure(CURLcode code) {
    switch (code) {
      case CURLE_SSL_CONNECT_ERROR:
      case CURLE_PEER_FAILED_VERIFICATION:
      case CURLE_SSL_CERTPROBLEM:
      case CURLE_SSL_CIPHER:
      case CURLE_SSL_CACERT_BADFILE:
      case CURLE_SSL_ISSUER_ERROR:
      case CURLE_SSL_CLIENTCERT:
        return true;
      default:
        return false;
    }
  }

  CURL* TakeHandle(size_t peer) {
    if (peer >= idle_handles.size()) idle_handles.resize(peer + 1);
    std::vector<CURL*>& pool = idle_handles[peer];
    if (pool.empty()) return curl_easy_init();
    CURL* easy = pool.back();
    pool.pop_back();
    curl_easy_reset(easy);  // options only; the multi handle keeps the connections
    return easy;
  }

  void ReturnHandle(size_t peer, CURL* easy) {
    std::vector<CURL*>& pool = idle_handles[peer];
    size_t keep = std::max<size_t>(kMinPooledHandlesPerPeer,
                                   static_cast<size_t>(std::max(1L, options.max_host_connections)));
    if (pool.size() < keep) {
      pool.push_back(easy);
    } else {
      curl_easy_cleanup(easy);
    }
  }

  int PollTimeoutMs() const {
    if (backstops.empty()) return kMaxPollMs;
    auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(backstops.begin()->first -
                                                                      SteadyClock::now());
    return static_cast<int>(std::clamp<int64_t>(wait.count() + 1, 0, kMaxPollMs));
  }

  // ---- State ----

  const PeerClientOptions options;
  curl_slist* get_headers = nullptr;
  curl_slist* post_headers = nullptr;
  Status init_error;

  Mutex mu;
  std::vector<std::string> peer_urls GUARDED_BY(mu);  // without trailing '/'; only grows
  // The multi handle: created by the constructor, cleaned up by Stop() once the loop has been
  // joined. Other threads use it only under mu (curl_multi_wakeup), so Stop() cannot clean it up
  // under them; the loop thread uses its copy loop_multi.
  CURLM* multi GUARDED_BY(mu) = nullptr;
  std::vector<std::unique_ptr<Request>> queue GUARDED_BY(mu);  // handed to the loop
  bool started GUARDED_BY(mu) = false;
  bool stopping GUARDED_BY(mu) = false;

  // Owned by the owner thread (Start/Stop).
  std::thread loop;

  // Loop-thread only (or any thread once the loop has been joined).
  CURLM* loop_multi = nullptr;  // multi, copied under mu when the loop starts
  std::map<CURL*, std::unique_ptr<Request>> active;
  std::multimap<TimePoint, Request*> backstops;  // deadline + grace -> transfer
  std::vector<std::vector<CURL*>> idle_handles;  // per peer (grown by TakeHandle)
  std::vector<TimePoint> tls_error_logged;       // per peer: last TLS failure logged (grown too)
};

PeerClient::PeerClient(std::vector<std::string> peer_urls, PeerClientOptions options)
    : impl_(std::make_unique<Impl>(std::move(peer_urls), options)) {}

PeerClient::~PeerClient() { Stop(); }

Status PeerClient::Start() {
  Impl& impl = *impl_;
  {
    MutexLock lock(&impl.mu);
    if (!impl.init_error.ok()) return impl.init_error;
    if (impl.stopping) return Status::Unavailable("peer client stopped");
    if (impl.started) return Status::Ok();
    impl.started = true;
  }
  impl.loop = std::thread([&impl] { impl.Loop(); });
  return Status::Ok();
}

void PeerClient::Stop() {
  Impl& impl = *impl_;
  {
    MutexLock lock(&impl.mu);
    if (!impl.stopping) {
      impl.stopping = true;
      if (impl.multi != nullptr) curl_multi_wakeup(impl.multi);
    }
  }
  // Called from a completion on the loop thread: the loop ends after it returns, and the owner's
  // Stop() (or the destructor) joins it.
  if (tls_loop_owner == &impl) return;
  if (impl.loop.joinable()) impl.loop.join();
  // The loop is gone (or never ran): settle what was queued and release libcurl.
  std::vector<std::unique_ptr<Impl::Request>> queued;
  {
    MutexLock lock(&impl.mu);
    queued.swap(impl.queue);
  }
  for (std::unique_ptr<Impl::Request>& req : queued) {
    Impl::Settle(*req, Status::Unavailable(kShuttingDown), 0, {});
  }
  MutexLock lock(&impl.mu);
  if (impl.multi != nullptr) {
    curl_multi_cleanup(impl.multi);
    impl.multi = nullptr;
  }
}

void PeerClient::AddPeer(size_t peer, const std::string& url) {
  MutexLock lock(&impl_->mu);
  if (peer == impl_->peer_urls.size()) impl_->peer_urls.push_back(TrimTrailingSlashes(url));
}

void PeerClient::Heartbeat(size_t peer, std::optional<Membership> membership,
                           std::function<void(Result<HeartbeatReply>)> done) {
  auto completion = [done = std::move(done)](const Status& error, long http_status,
                                             std::string_view body) {
    if (!error.ok()) {
      done(error);
    } else {
      done(json::DecodeHeartbeatReply(http_status, body));
    }
  };
  const bool post = membership.has_value();
  impl_->Submit(impl_->NewRequest(peer, post, "/heartbeat",
                                  post ? json::EncodeHeartbeatRequest(*membership) : std::string(),
                                  kMaxReplyBytes, std::move(completion)));
}

void PeerClient::Replicate(size_t peer, std::vector<Message> msgs, PushSkip skip,
                           std::function<void(Result<ReplicateReply>)> done) {
  auto completion = [done = std::move(done)](const Status& error, long http_status,
                                             std::string_view body) {
    if (!error.ok()) {
      done(error);
    } else {
      done(json::DecodeReplicateReply(http_status, body));
    }
  };
  impl_->Submit(impl_->NewRequest(peer, /*post=*/true, "/replicate",
                                  json::EncodeReplicateRequest(msgs, skip), kMaxReplyBytes,
                                  std::move(completion)));
}

void PeerClient::Sync(size_t peer, uint64_t since, size_t limit,
                      std::map<std::string, uint64_t> have,
                      std::function<void(Result<SyncReply>)> done) {
  impl_->SubmitSync(peer, json::EncodeSyncRequest(since, limit, have), limit, std::move(done));
}

void PeerClient::SyncStream(size_t peer, std::string origin, uint64_t since, size_t limit,
                            std::function<void(Result<SyncReply>)> done) {
  impl_->SubmitSync(peer, json::EncodeSyncStreamRequest(origin, since, limit), limit,
                    std::move(done));
}

}  // namespace dsm
