// RequestHeadScanner (src/http/request_head.h): every request head is checked before any byte of it
// reaches Pistache's parser - its size and line count (431: Pistache parses a long head in more
// than linear time), its syntax (400: smuggling spellings, a bad request line), a
// Transfer-Encoding (411: Pistache's chunked parser reads past its buffer, found by the ASan job),
// its Content-Length (400 / 413: Pistache reserves whatever is declared, found by fuzz_http), and
// bytes past the end of the request (pipelining). The requests are kept in fuzz/corpus/http/.
#include "src/http/request_head.h"

#include <gtest/gtest.h>

#include <chrono>
#include <string>

namespace dsm::http {
namespace {

using Verdict = RequestHeadScanner::Verdict;

RequestHeadScanner::Limits TestLimits() {
  RequestHeadScanner::Limits limits;
  limits.max_head_bytes = 16 << 10;
  limits.max_header_lines = 100;
  limits.max_body_bytes = 1 << 16;
  return limits;
}

// The verdict after feeding `bytes` in pieces of `piece` bytes: the first refusal, else kHead if
// the head became complete in some piece (kNeedMore if not).
Verdict FeedAll(const std::string& bytes, size_t piece = SIZE_MAX,
                RequestHeadScanner::Limits limits = TestLimits()) {
  RequestHeadScanner s(limits);
  Verdict result = Verdict::kNeedMore;
  for (size_t at = 0; at < bytes.size(); at += piece) {
    Verdict v = s.Feed(std::string_view(bytes).substr(at, piece));
    if (v == Verdict::kHead) result = v;
    if (v != Verdict::kNeedMore && v != Verdict::kHead && v != Verdict::kBody) return v;
  }
  return result;
}

bool Refused(Verdict v) {
  return v != Verdict::kNeedMore && v != Verdict::kHead && v != Verdict::kBody;
}

TEST(RequestHeadScannerTest, FindsTransferEncodingWhateverTheSegmentation) {
  const std::string chunked =
      "POST /send HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffff";
  for (size_t piece : {size_t{1}, size_t{2}, size_t{7}, SIZE_MAX}) {
    EXPECT_EQ(FeedAll(chunked, piece), Verdict::kTransferEncoding) << piece;
  }
  EXPECT_EQ(FeedAll("POST / HTTP/1.1\r\ntransfer-ENCODING: gzip\r\n\r\n"),
            Verdict::kTransferEncoding);
}

// Spellings that Pistache splits differently from an HTTP parser (fuzz_http found them hiding a
// Transfer-Encoding: fuzz/corpus/http/crash-chunked-*), and the smuggling spellings (RFC 9112 §5.1, §6.3):
// every one is refused outright.
TEST(RequestHeadScannerTest, RefusesAmbiguousSpellings) {
  const char* heads[] = {
      // A header value ending in a bare LF.
      "POST /send HTTP/1.1\r\nX: a\n\r\nTransfer-Encoding: chunked\r\n\r\n",
      // An empty line inside the request target.
      "POST /send\r\n\r\n HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
      // A header line without a colon.
      "POST /send HTTP/1.1\r\nHost x\r\n\r\nFoo: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
      // A CR that does not begin a CRLF.
      "POST /send HTTP/1.1\r\nX: 1\r\n\r:\r\nTransfer-Encoding: chunked\r\n\r\n",
      "POST /send HTTP/1.1\r\nX: a\r\r\nTransfer-Encoding: chunked\r\n\r\n",
      // Whitespace before the colon (RFC 9112 §5.1): Pistache ignored such a Content-Length.
      "POST /send HTTP/1.1\r\nContent-Length : 5\r\n\r\nhello",
      "POST /send HTTP/1.1\r\nContent-Length\t: 5\r\n\r\nhello",
      // Two Content-Length headers (RFC 9112 §6.3), equal or not.
      "POST /send HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 40\r\n\r\n{}",
      "POST /send HTTP/1.1\r\nContent-Length: 2\r\ncontent-length: 2\r\n\r\n{}",
      // Two Host headers.
      "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
      // A folded header line.
      "GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n",
      // Bad request lines.
      "GARBAGE\r\n\r\n",
      "GET /\r\n\r\n",
      "GET / HTTP/1.1 extra\r\n\r\n",
      "GET / HTTP/2.0\r\n\r\n",
      "GET  / HTTP/1.1\r\n\r\n",
      "\r\nGET / HTTP/1.1\r\n\r\n",
      "GET / HTTP/1.1\nHost: x\n\n",
      "G\x01T / HTTP/1.1\r\n\r\n",
      // A control byte in a value.
      "GET / HTTP/1.1\r\nX: a\x01b\r\n\r\n",
  };
  for (const char* head : heads) {
    SCOPED_TRACE(head);
    for (size_t piece : {size_t{1}, size_t{2}, size_t{3}, SIZE_MAX}) {
      EXPECT_TRUE(Refused(FeedAll(std::string(head) + "ffff", piece))) << piece;
    }
  }
  RequestHeadScanner s(TestLimits());
  EXPECT_EQ(s.Feed("POST / HTTP/1.1\r\nContent-Length : 5\r\n"), Verdict::kBadRequest);
  EXPECT_NE(s.reason().find("whitespace"), std::string::npos) << s.reason();
  RequestHeadScanner twice(TestLimits());
  EXPECT_EQ(twice.Feed("POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n"),
            Verdict::kBadRequest);
  EXPECT_NE(twice.reason().find("several Content-Length"), std::string::npos) << twice.reason();
}

// Pistache reserves the declared body length before reading any of it, and reads the value
// leniently (std::stoull: a sign, a digit prefix). Content-Length values are checked first
// (found by fuzz_http: fuzz/corpus/http/crash-content-length-*).
TEST(RequestHeadScannerTest, ChecksContentLengths) {
  struct Case {
    const char* value;
    Verdict verdict;
  } cases[] = {
      {"2", Verdict::kHead},
      {"0", Verdict::kHead},
      {"65536 ", Verdict::kHead},  // the limit of these scanners (1 << 16)
      {"65537", Verdict::kTooLarge},
      {"00000001000000000001", Verdict::kTooLarge},
      {"18446744073709551615", Verdict::kTooLarge},
      {"18446744073709551616", Verdict::kBadRequest},  // beyond 64 bits
      {"-1", Verdict::kBadRequest},
      {"-13835058055282163713", Verdict::kBadRequest},  // stoull: 2^62 - 1
      {"+5", Verdict::kBadRequest},
      {"1844674407370955161?6", Verdict::kBadRequest},  // stoull: the digit prefix
      {"abc", Verdict::kBadRequest},
      {"", Verdict::kBadRequest},
      {"1 2", Verdict::kBadRequest},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.value);
    const std::string head =
        std::string("POST /send HTTP/1.1\r\nHost: x\r\ncontent-LENGTH: ") + c.value + "\r\n\r\n";
    for (size_t piece : {size_t{1}, size_t{5}, SIZE_MAX}) {
      EXPECT_EQ(FeedAll(head, piece), c.verdict) << piece;
    }
  }
}

// A head of 100,000 header lines or one huge header cost Pistache seconds of CPU. The
// scanner refuses it once a limit is crossed, having read no more than the limit.
TEST(RequestHeadScannerTest, CapsTheHead) {
  std::string flood = "GET /heartbeat HTTP/1.1\r\nHost: x\r\n";
  for (int i = 0; i < 100000; ++i) flood += "X-Hn: v\r\n";
  flood += "\r\n";
  const std::string huge =
      "GET /heartbeat HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(1200000, 'v') + "\r\n\r\n";
  for (size_t piece : {size_t{1460}, SIZE_MAX}) {
    EXPECT_EQ(FeedAll(flood, piece), Verdict::kHeadTooLarge);
    EXPECT_EQ(FeedAll(huge, piece), Verdict::kHeadTooLarge);
  }
  // 101 short lines: over the line limit long before the byte limit.
  std::string lines = "GET / HTTP/1.1\r\n";
  for (int i = 0; i < 101; ++i) lines += "A: b\r\n";
  RequestHeadScanner s(TestLimits());
  EXPECT_EQ(s.Feed(lines + "\r\n"), Verdict::kHeadTooLarge);
  EXPECT_NE(s.reason().find("100 header lines"), std::string::npos) << s.reason();
  // Exactly at the limits: accepted.
  std::string hundred = "GET / HTTP/1.1\r\n";
  for (int i = 0; i < 100; ++i) hundred += "A: b\r\n";
  EXPECT_EQ(FeedAll(hundred + "\r\n"), Verdict::kHead);
  RequestHeadScanner::Limits small = TestLimits();
  const std::string exact = "GET / HTTP/1.1\r\nX: " + std::string(100, 'a') + "\r\n\r\n";
  small.max_head_bytes = exact.size();
  EXPECT_EQ(FeedAll(exact, SIZE_MAX, small), Verdict::kHead);
  small.max_head_bytes = exact.size() - 1;
  EXPECT_EQ(FeedAll(exact, SIZE_MAX, small), Verdict::kHeadTooLarge);
}

// The scan is linear: a refused flood costs about as much per byte as an ordinary head.
TEST(RequestHeadScannerTest, ScanIsLinear) {
  RequestHeadScanner::Limits big = TestLimits();
  big.max_head_bytes = 64 << 20;
  big.max_header_lines = SIZE_MAX;
  std::string flood = "GET / HTTP/1.1\r\n";
  for (int i = 0; i < 400000; ++i) flood += "X-Hn: v\r\n";
  flood += "\r\n";
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(FeedAll(flood, 1460, big), Verdict::kHead);
  const auto took = std::chrono::steady_clock::now() - start;
  // 3.6 MB: milliseconds when linear; a quadratic scan would take minutes. Very generous bound.
  EXPECT_LT(took, std::chrono::seconds(5));
}

TEST(RequestHeadScannerTest, KeepsTheFieldsTheEdgeChecks) {
  RequestHeadScanner s(TestLimits());
  ASSERT_EQ(s.Feed("POST /send?x=1 HTTP/1.1\r\nHOST:  localhost:8000 \r\nOrigin: http://a\r\n"
                   "Authorization: Bearer t1\r\nAuthorization: Bearer t2\r\nX-Dsm-Token: t3\r\n"
                   "Cookie: dsm_token=c\r\nConnection: close\r\nContent-Length: 2\r\n\r\n"),
            Verdict::kHead);
  const RequestHead& h = s.head();
  EXPECT_EQ(h.method, "POST");
  EXPECT_EQ(h.target, "/send?x=1");
  EXPECT_EQ(h.version, "HTTP/1.1");
  EXPECT_EQ(h.host, "localhost:8000");
  EXPECT_EQ(h.origin, "http://a");
  EXPECT_EQ(h.authorization, "Bearer t1");  // the first
  EXPECT_EQ(h.dsm_token, "t3");
  EXPECT_EQ(h.cookie, "dsm_token=c");
  EXPECT_EQ(h.connection, "close");
  EXPECT_EQ(h.content_length, 2u);
  EXPECT_EQ(h.header_lines, 8u);
  EXPECT_FALSE(s.complete());
  EXPECT_EQ(s.Feed("{"), Verdict::kBody);
  EXPECT_EQ(s.Feed("}"), Verdict::kBody);
  EXPECT_TRUE(s.complete());
}

// Pistache drops whatever follows the first request of a read: the scanner reports such bytes.
TEST(RequestHeadScannerTest, ReportsBytesPastTheEndOfTheRequest) {
  const std::string get = "GET /heartbeat HTTP/1.1\r\nHost: x\r\n\r\n";
  const std::string post = "POST /send HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}";
  {
    RequestHeadScanner s(TestLimits());
    EXPECT_EQ(s.Feed(get + get), Verdict::kPipelined);
  }
  {
    RequestHeadScanner s(TestLimits());
    EXPECT_EQ(s.Feed(post + "G"), Verdict::kPipelined);
  }
  {
    RequestHeadScanner s(TestLimits());
    EXPECT_EQ(s.Feed(post.substr(0, post.size() - 1)), Verdict::kHead);
    EXPECT_EQ(s.Feed("}GET"), Verdict::kPipelined);
  }
  {
    RequestHeadScanner s(TestLimits());
    EXPECT_EQ(s.Feed(post), Verdict::kHead);
    EXPECT_TRUE(s.complete());
  }
}

TEST(RequestHeadScannerTest, LetsOrdinaryRequestsThrough) {
  EXPECT_EQ(FeedAll("POST /send HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"), Verdict::kHead);
  EXPECT_EQ(FeedAll("GET /transfer-encoding HTTP/1.1\r\nX-Transfer-Encoding: no\r\n\r\n"),
            Verdict::kHead);
  EXPECT_EQ(FeedAll("GET /heartbeat HTTP/1.0\r\nX: tab\tand \xc3\xa9\r\n\r\n"), Verdict::kHead);
  EXPECT_EQ(FeedAll("GET /heartbeat HTTP/1.1\r\nHost: x\r\n"), Verdict::kNeedMore);
}

TEST(RequestHeadScannerTest, EachRequestOfAConnectionIsScanned) {
  RequestHeadScanner s(TestLimits());
  EXPECT_EQ(s.Feed("GET / HTTP/1.1\r\n\r\n"), Verdict::kHead);
  s.Reset();
  EXPECT_FALSE(s.started());
  EXPECT_EQ(s.Feed("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Verdict::kTransferEncoding);
  // A refusal sticks.
  EXPECT_EQ(s.Feed("GET / HTTP/1.1\r\n\r\n"), Verdict::kTransferEncoding);
}

}  // namespace
}  // namespace dsm::http
