// Micro-benchmarks of the codecs on the hot path: the storage record (encode, decode) and the
// HTTP JSON bodies (parse + validate a /send body and a 256-message /replicate body, serialize a
// /replicate body and a /sync page).

#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "bench/micro/bench_util.h"
#include "src/http/json_codec.h"
#include "storage/record.h"

namespace dsm::bench {
namespace {

constexpr size_t kMaxPayloadBytes = 1 << 20;
const std::string kOrigin = "node1@4aa8b75e1d62bfbf";

// ---------------------------------------------------------------------------------------------
// Record codec. Arg: payload bytes.

void BM_RecordEncode(benchmark::State& state) {
  Message m = MakePeerMessage(static_cast<size_t>(state.range(0)), kOrigin, 12345);
  std::string buf;
  for (auto _ : state) {
    buf.clear();
    AppendRecord(&buf, m);
    benchmark::DoNotOptimize(buf.data());
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(buf.size()));
}
BENCHMARK(BM_RecordEncode)->ArgName("payload")->Arg(100)->Arg(4096);

void BM_RecordDecode(benchmark::State& state) {
  const std::string rec =
      EncodeRecord(MakePeerMessage(static_cast<size_t>(state.range(0)), kOrigin, 12345));
  for (auto _ : state) {
    Result<Message> m = DecodeRecord(7, rec);
    if (!m.ok()) {
      state.SkipWithError("decode failed");
      break;
    }
    benchmark::DoNotOptimize(m);
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(rec.size()));
}
BENCHMARK(BM_RecordDecode)->ArgName("payload")->Arg(100)->Arg(4096);

// ---------------------------------------------------------------------------------------------
// JSON.

// POST /send with one message, as a client sends it: parse, then validate the message.
void BM_JsonParseSend(benchmark::State& state) {
  const std::string body =
      "{\"sender\":\"user1\",\"recipient\":\"user2\",\"payload\":\"" + std::string(100, 'x') +
      "\",\"msg_id\":\"3f0c2a9e-5b1d-4c7a-9e1f-0a2b3c4d5e6f\",\"ack\":\"local\"}";
  for (auto _ : state) {
    Result<rapidjson::Document> doc = json::Parse(body);
    if (!doc.ok()) {
      state.SkipWithError("parse failed");
      break;
    }
    Result<Message> m = json::ParseMessage(*doc, json::MessageSource::kClient, kMaxPayloadBytes);
    if (!m.ok()) {
      state.SkipWithError("validation failed");
      break;
    }
    benchmark::DoNotOptimize(m);
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(body.size()));
}
BENCHMARK(BM_JsonParseSend);

std::vector<Message> PeerMessages(size_t n) {
  std::vector<Message> msgs;
  msgs.reserve(n);
  for (size_t i = 1; i <= n; ++i) msgs.push_back(MakePeerMessage(100, kOrigin, i));
  return msgs;
}

// POST /replicate with a batch: parse, then validate every message. Arg: messages per body.
// items/s = messages/s.
void BM_JsonParseReplicate(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  const std::string body = json::EncodeReplicateRequest(PeerMessages(n));
  for (auto _ : state) {
    Result<rapidjson::Document> doc = json::Parse(body);
    if (!doc.ok()) {
      state.SkipWithError("parse failed");
      break;
    }
    const rapidjson::Value& msgs = (*doc)["msgs"];
    std::vector<Message> out;
    out.reserve(msgs.Size());
    for (const rapidjson::Value& v : msgs.GetArray()) {
      Result<Message> m = json::ParseMessage(v, json::MessageSource::kPeer, kMaxPayloadBytes);
      if (!m.ok()) {
        state.SkipWithError("validation failed");
        return;
      }
      out.push_back(std::move(m).value());
    }
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(n));
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(body.size()));
}
BENCHMARK(BM_JsonParseReplicate)->ArgName("msgs")->Arg(256);

// The /replicate request body a replicator sends. Arg: messages per body.
void BM_JsonSerializeReplicate(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  const std::vector<Message> msgs = PeerMessages(n);
  size_t bytes = 0;
  for (auto _ : state) {
    std::string body = json::EncodeReplicateRequest(msgs);
    bytes = body.size();
    benchmark::DoNotOptimize(body.data());
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(n));
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(bytes));
}
BENCHMARK(BM_JsonSerializeReplicate)->ArgName("msgs")->Arg(256);

// A /sync page answer, written the way the server writes listings (messages, then the trailer).
// Arg: messages per page (1000 = the replicators' default page).
void BM_JsonSerializeSyncPage(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  const std::vector<Message> msgs = PeerMessages(n);
  rapidjson::StringBuffer buf;
  for (auto _ : state) {
    buf.Clear();
    json::Writer w(buf);
    w.StartObject();
    w.Key("messages");
    w.StartArray();
    for (const Message& m : msgs) json::WriteMessage(w, m);
    w.EndArray();
    w.Key("more");
    w.Bool(true);
    w.Key("next");
    w.Uint64(msgs.back().seq);
    w.Key("last_seq");
    w.Uint64(msgs.back().seq + 1000);
    w.Key("stream");
    w.String(kOrigin.data(), static_cast<rapidjson::SizeType>(kOrigin.size()));
    w.EndObject();
    benchmark::DoNotOptimize(buf.GetString());
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(n));
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(buf.GetSize()));
}
BENCHMARK(BM_JsonSerializeSyncPage)->ArgName("msgs")->Arg(1000);

}  // namespace
}  // namespace dsm::bench
