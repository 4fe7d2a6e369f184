#include "src/http/reply.h"

#include <pistache/transport.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <exception>
#include <sstream>
#include <utility>

namespace dsm::http {

namespace Http = Pistache::Http;

ErrorAnswer ErrorFor(const Status& s) {
  switch (s.code()) {
    case Code::kIOError:
      return {500, "storage failure: " + s.message()};
    case Code::kCorruption:
      return {500, "storage corruption: " + s.message()};
    default:
      return {json::HttpStatusForCode(s.code()), s.message()};
  }
}

void Gate::AddStream(const std::weak_ptr<Pistache::Tcp::Peer>& peer) {
  MutexLock lock(&streams_mu);
  std::erase_if(streams, [](const auto& p) { return p.expired(); });
  streams.push_back(peer);
}

bool Connection::RunOnLoop(std::function<void()> fn) {
  if (transport_ == nullptr) return false;
  const int fd = ::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (fd < 0) return false;
  // The descriptor is closed with the continuation: once the timer has fired and the transport
  // has dropped its entry, or if the timer never runs (the entry goes with the transport).
  std::shared_ptr<int> timer(new int(fd), [](int* p) {
    ::close(*p);
    delete p;
  });
  std::optional<Pistache::Async::Deferred<uint64_t>> deferred;
  Pistache::Async::Promise<uint64_t> fired(
      [&deferred](Pistache::Async::Deferred<uint64_t> d) { deferred.emplace(std::move(d)); });
  fired.then([fn, timer](uint64_t) { fn(); }, [fn, timer](std::exception_ptr) { fn(); });
  return IfOpen(
      [&] { transport_->armTimer(fd, std::chrono::milliseconds(1), std::move(*deferred)); });
}

std::shared_ptr<Connection> ConnectionOf(const Pistache::Tcp::Peer& peer) {
  return std::static_pointer_cast<Connection>(peer.tryGetData(kConnectionKey));
}

void ShutdownConnection(const std::shared_ptr<Pistache::Tcp::Peer>& peer) {
  const int fd = peer->fd();
  if (std::shared_ptr<Connection> c = ConnectionOf(*peer)) {
    c->IfOpen([fd] { ::shutdown(fd, SHUT_RDWR); });
  } else {
    ::shutdown(fd, SHUT_RDWR);
  }
}

void Gate::CutStreams() {
  MutexLock lock(&streams_mu);
  for (const auto& weak : streams) {
    if (auto peer = weak.lock()) ShutdownConnection(peer);
  }
  streams.clear();
}

std::string AnswerBytes(Http::Version version, Http::Code code,
                        const Http::Header::Collection& headers, const std::string& body,
                        bool head_only) {
  std::ostringstream os;
  os << version << ' ' << static_cast<int>(code) << ' ' << code << "\r\n";
  for (const std::shared_ptr<Http::Header::Header>& h : headers.list()) {
    os << h->name() << ": ";
    h->write(os);
    os << "\r\n";
  }
  os << "Content-Length: " << body.size() << "\r\n\r\n";
  if (!head_only) os << body;
  return std::move(os).str();
}

namespace {

// A header whose name is chosen at run time (Pistache's typed headers have a fixed NAME).
class NamedHeader final : public Http::Header::Header {
 public:
  NamedHeader(std::string name, std::string value)
      : name_(std::move(name)), value_(std::move(value)) {}
  const char* name() const override { return name_.c_str(); }
#ifdef SAFE_HEADER_CAST
  uint64_t hash() const override { return Http::Header::detail::hash(name_.c_str()); }
#endif
  void parse(const std::string&) override {}
  void write(std::ostream& os) const override { os << value_; }

 private:
  const std::string name_;
  const std::string value_;
};

}  // namespace

void Reply::AddHeader(std::string name, std::string value) {
  MutexLock lock(&mu_);
  if (answered_) return;
  writer_.headers().add(std::make_shared<NamedHeader>(std::move(name), std::move(value)));
}

Reply::Reply(Http::ResponseWriter writer, Http::Version version, std::shared_ptr<Gate> gate,
             bool head_only)
    : writer_(std::move(writer)), version_(version), gate_(std::move(gate)), head_only_(head_only) {
  if (std::shared_ptr<Pistache::Tcp::Peer> peer = writer_.getPeer()) {
    connection_ = ConnectionOf(*peer);
  }
  if (auto c = writer_.headers().tryGet<Http::Header::Connection>()) {
    closes_connection_ = c->control() == Http::ConnectionControl::Close;
  }
}

Reply::~Reply() {
  if (!answered_) Send(500, json::ErrorBody("internal error: the request was not answered"));
}

void Reply::Send(int http, const std::string& body, const std::vector<Http::Method>* allow) {
  SendAs(http, body, MIME(Application, Json), allow);
}

void Reply::SendAs(int http, const std::string& body, const Http::Mime::MediaType& type,
                   const std::vector<Http::Method>* allow) {
  MutexLock lock(&mu_);
  if (answered_) return;
  answered_ = true;
  MutexLock gate_lock(&gate_->mu);
  if (gate_->closed) return;  // the event loops are gone: nobody can deliver it
  {
    MutexLock settle_lock(&gate_->settle_mu);
    ++gate_->in_flight;
  }
  std::shared_ptr<Gate> gate = gate_;
  auto settle = [gate] {
    MutexLock settle_lock(&gate->settle_mu);
    if (--gate->in_flight == 0) gate->settled.NotifyAll();
  };
  std::optional<Pistache::Async::Promise<ssize_t>> written;
  try {
    std::shared_ptr<Pistache::Tcp::Peer> peer = writer_.getPeer();
    if (peer == nullptr) {
      settle();  // the client left
      return;
    }
    if (auto content_type = writer_.headers().tryGet<Http::Header::ContentType>()) {
      content_type->setMime(type);
    } else {
      writer_.headers().add<Http::Header::ContentType>(type);
    }
    if (allow != nullptr) writer_.headers().add<Http::Header::Allow>(*allow);
    std::string bytes =
        AnswerBytes(version_, static_cast<Http::Code>(http), writer_.headers(), body, head_only_);
    const size_t size = bytes.size();
    auto send = [&] {
      peer->setIdle(true);  // the request is answered: the keep-alive timeout applies again
      written.emplace(peer->send(Pistache::RawBuffer(std::move(bytes), size)));
    };
    if (connection_ == nullptr) {
      send();
    } else if (!connection_->SendAnswer(send)) {
      settle();  // the client left: its descriptor may already belong to another connection
      return;
    }
    // The promise rejects when the client has left ("Broken pipe"): nothing to do but settle.
    // An answer that says "Connection: close" is followed by the close it promises.
    std::weak_ptr<Pistache::Tcp::Peer> weak = peer;
    const bool close = closes_connection_;
    auto done = [settle, weak, close] {
      if (close) {
        if (std::shared_ptr<Pistache::Tcp::Peer> p = weak.lock()) ShutdownConnection(p);
      }
      settle();
    };
    written->then([done](ssize_t) { done(); }, [done](std::exception_ptr) { done(); });
  } catch (const std::exception& e) {
    settle();
    spdlog::warn("could not answer a request: {}", e.what());
  }
}

void Reply::SendError(const Status& s) {
  ErrorAnswer e = ErrorFor(s);
  if (e.http >= 500 && s.code() != Code::kUnavailable && s.code() != Code::kTimeout) {
    spdlog::warn("answering {}: {}", e.http, e.reason);
  }
  Send(e.http, json::ErrorBody(e.reason));
}

std::optional<Http::ResponseStream> Reply::StartStream(std::weak_ptr<Pistache::Tcp::Peer>* peer) {
  MutexLock lock(&mu_);
  if (answered_ || gate_->stopping) return std::nullopt;
  answered_ = true;
  *peer = writer_.getPeer();
  gate_->AddStream(*peer);
  writer_.headers().add<Http::Header::ContentType>(MIME(Application, Json));
  return writer_.stream(Http::Code::Ok);
}

std::optional<Http::ResponseStream> Reply::StartEventStream(
    std::weak_ptr<Pistache::Tcp::Peer>* peer) {
  MutexLock lock(&mu_);
  if (answered_ || gate_->stopping) return std::nullopt;
  answered_ = true;
  *peer = writer_.getPeer();
  gate_->AddStream(*peer);
  writer_.headers().add<Http::Header::ContentType>(
      Http::Mime::MediaType::fromString("text/event-stream"));
  writer_.headers().add<Http::Header::CacheControl>(
      std::vector<Http::CacheDirective>{Http::CacheDirective(Http::CacheDirective::NoCache)});
  return writer_.stream(Http::Code::Ok);
}

ScanSource::ScanSource(const LogStore* log, ScanOptions scan, std::optional<size_t> limit)
    : log_(log),
      scan_(std::move(scan)),
      limit_(limit),
      remaining_(limit.value_or(0)),
      last_(limit ? UINT64_MAX : log->LastSeq()) {}

Status ScanSource::Next(const std::function<bool(const Message&)>& visit, bool* exhausted) {
  ScanOptions scan = scan_;
  // One more than wanted, to learn whether more remain.
  scan.limit = limit_ ? remaining_ + 1 : SIZE_MAX;
  bool paused = false;
  Status s = log_->Scan(scan, [&](const Message& m) {
    if (m.seq > last_) return false;
    if (limit_ && remaining_ == 0) {
      more_ = true;
      return false;
    }
    scan_.after = m.seq;
    if (limit_) --remaining_;
    if (visit(m)) return true;
    paused = true;
    return false;
  });
  *exhausted = !paused;
  return s;
}

Status VectorSource::Next(const std::function<bool(const Message&)>& visit, bool* exhausted) {
  while (next_ < msgs_.size()) {
    if (!visit(msgs_[next_++])) {
      *exhausted = next_ == msgs_.size();
      return Status::Ok();
    }
  }
  *exhausted = true;
  return Status::Ok();
}

void Listing::Run(ReplyPtr reply, std::unique_ptr<ListingSource> source, TrailerWriter trailer) {
  std::make_shared<Listing>(std::move(reply), std::move(source), std::move(trailer))->Pump();
}

Listing::Listing(ReplyPtr reply, std::unique_ptr<ListingSource> source, TrailerWriter trailer)
    : reply_(std::move(reply)), source_(std::move(source)), trailer_(std::move(trailer)), w_(buf_) {
  w_.StartObject();
  w_.Key("messages");
  w_.StartArray();
}

void Listing::Pump() {
  if (reply_->gate().stopping) return Cut("shutting down");
  bool exhausted = false;
  Status s = source_->Next(
      [this](const Message& m) {
        json::WriteMessage(w_, m);
        ++count_;
        last_seq_ = m.seq;
        return buf_.GetSize() < kListingChunkBytes;
      },
      &exhausted);
  if (!s.ok()) return Fail(s);
  if (exhausted) {
    w_.EndArray();
    trailer_(w_, count_, last_seq_);
    w_.EndObject();
    if (!streaming_) return reply_->Send(200, BufferText(buf_));
  }
  if (!streaming_ && !StartStream()) return;
  if (reply_->head_only()) {
    // HEAD: the status line and headers of the chunked answer, no body.
    reply_->EndAnswer();
    if (reply_->closes_connection()) {
      if (auto peer = peer_.lock()) ShutdownConnection(peer);
    }
    return;
  }
  SendChunk(exhausted);
}

bool Listing::StartStream() {
  std::optional<Http::ResponseStream> stream = reply_->StartStream(&peer_);
  if (!stream) return false;
  try {
    stream->flush();
  } catch (const std::exception&) {
    return false;  // the client left
  }
  streaming_ = true;
  return true;
}

// Sends the buffered text as one chunk (and the end of the body after the last one); the next
// chunk is produced once this one is written. If the client leaves, the write fails or never
// completes, and the listing just ends.
void Listing::SendChunk(bool last) {
  std::shared_ptr<Pistache::Tcp::Peer> peer = peer_.lock();
  if (!peer) return;
  char size_line[32];
  int n = std::snprintf(size_line, sizeof(size_line), "%zx\r\n", buf_.GetSize());
  std::string frame;
  frame.reserve(buf_.GetSize() + 64);
  frame.append(size_line, static_cast<size_t>(n));
  frame.append(buf_.GetString(), buf_.GetSize());
  frame.append("\r\n");
  if (last) frame.append("0\r\n\r\n");
  buf_.Clear();
  // Pistache times a connection out as a stalled request when its parser has not been reset for
  // longer than the header timeout: progress resets it (inside the handler Pistache does that
  // itself once the handler returns). Once the body is complete the connection is idle, and the
  // keep-alive timeout applies.
  if (!in_handler_) Http::Handler::getParser(peer)->reset();
  in_handler_ = false;
  peer->setIdle(last);
  const size_t size = frame.size();
  auto written = peer->send(Pistache::RawBuffer(std::move(frame), size));
  if (last) {
    reply_->EndAnswer();
    if (reply_->closes_connection()) {
      std::weak_ptr<Pistache::Tcp::Peer> weak = peer_;
      auto close = [weak] {
        if (auto p = weak.lock()) ShutdownConnection(p);
      };
      written.then([close](ssize_t) { close(); }, [close](std::exception_ptr) { close(); });
    } else {
      written.then([](ssize_t) {}, [](std::exception_ptr) {});
    }
    return;
  }
  std::shared_ptr<Listing> self = shared_from_this();
  written.then([self](ssize_t) { self->Pump(); }, [](std::exception_ptr) {});
}

void Listing::Fail(const Status& s) {
  if (!streaming_) return reply_->SendError(s);
  spdlog::error("listing cut off after {} messages: {}", count_, s.ToString());
  Cut(s.message());
}

void Listing::Cut(const std::string& why) {
  if (!streaming_) return reply_->SendError(Status::Unavailable(why));
  if (auto peer = peer_.lock()) ShutdownConnection(peer);
}

}  // namespace dsm::http
