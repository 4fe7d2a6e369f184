// RequestHeadScanner (src/http/request_head.h): requests with a Transfer-Encoding header, or a
// Content-Length Pistache cannot be trusted with, are recognised before their body reaches
// Pistache's parser (which reads past its buffer on a malformed chunk size, found by the ASan job,
// and reserves whatever length is declared, found by fuzz_http; the requests are kept in
// fuzz/corpus/http/).
#include "src/http/request_head.h"

#include <gtest/gtest.h>

#include <string>

namespace dsm::http {
namespace {

using Verdict = RequestHeadScanner::Verdict;

Verdict FeedAll(const std::string& bytes, size_t piece = SIZE_MAX) {
  RequestHeadScanner s(1 << 16);
  Verdict v = Verdict::kNeedMore;
  for (size_t at = 0; at < bytes.size(); at += piece) v = s.Feed(std::string_view(bytes).substr(at, piece));
  return v;
}

TEST(RequestHeadScannerTest, FindsTransferEncodingWhateverTheSpellingAndSegmentation) {
  const std::string chunked =
      "POST /send HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffff";
  for (size_t piece : {size_t{1}, size_t{2}, size_t{7}, SIZE_MAX}) {
    EXPECT_EQ(FeedAll(chunked, piece), Verdict::kTransferEncoding) << piece;
  }
  EXPECT_EQ(FeedAll("POST / HTTP/1.1\r\ntransfer-ENCODING : gzip\r\n\r\n"),
            Verdict::kTransferEncoding);
  EXPECT_EQ(FeedAll("\r\n\r\nPOST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Verdict::kTransferEncoding);
  // Pistache ends lines only at CRLF: with bare LFs it never gets past the request line.
  EXPECT_EQ(FeedAll("POST / HTTP/1.1\nTransfer-Encoding: chunked\n\n"), Verdict::kNeedMore);
}

// Spellings that hid the header from a scanner splitting the head like an HTTP parser would,
// while Pistache (which splits it its own way) still ran its chunked parser on the body (found by
// fuzz_http: fuzz/corpus/http/crash-chunked-*).
TEST(RequestHeadScannerTest, SplitsTheHeadAsPistacheDoes) {
  const char* heads[] = {
      // A header value ending in a bare LF: "\n\r\n" is not the end of the head.
      "POST /send HTTP/1.1\r\nX: a\n\r\nTransfer-Encoding: chunked\r\n\r\n",
      // An empty line inside the request target (it runs to the next space).
      "POST /send\r\n\r\n HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
      // A header name runs to the next ':', across an empty line.
      "POST /send HTTP/1.1\r\nHost x\r\n\r\nFoo: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
      // A CR that does not begin a CRLF is part of the next name.
      "POST /send HTTP/1.1\r\nX: 1\r\n\r:\r\nTransfer-Encoding: chunked\r\n\r\n",
      // A value ending in CR CR LF.
      "POST /send HTTP/1.1\r\nX: a\r\r\nTransfer-Encoding: chunked\r\n\r\n",
  };
  for (const char* head : heads) {
    SCOPED_TRACE(head);
    for (size_t piece : {size_t{1}, size_t{2}, size_t{3}, SIZE_MAX}) {
      EXPECT_EQ(FeedAll(std::string(head) + "ffff", piece), Verdict::kTransferEncoding) << piece;
    }
  }
  // What Pistache takes as the end of the head is the end of the scan.
  EXPECT_EQ(FeedAll("GET / HTTP/1.1\r\nHost: x\r\n\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Verdict::kOk);
  EXPECT_EQ(FeedAll("GET / HTTP/1.1\r\n\r\n"), Verdict::kOk);
}

// Pistache reserves the declared body length before reading any of it, and reads the value
// leniently (std::stoull: a sign, a digit prefix). Content-Length values are checked first
// (found by fuzz_http: fuzz/corpus/http/crash-content-length-*).
TEST(RequestHeadScannerTest, ChecksContentLengths) {
  struct Case {
    const char* value;
    Verdict verdict;
  } cases[] = {
      {"2", Verdict::kOk},
      {"0", Verdict::kOk},
      {"65536 ", Verdict::kOk},  // the limit of these scanners (1 << 16)
      {"65537", Verdict::kTooLarge},
      {"00000001000000000001", Verdict::kTooLarge},
      {"18446744073709551615", Verdict::kTooLarge},
      {"18446744073709551616", Verdict::kBadContentLength},  // beyond 64 bits
      {"-1", Verdict::kBadContentLength},
      {"-13835058055282163713", Verdict::kBadContentLength},  // stoull: 2^62 - 1
      {"+5", Verdict::kBadContentLength},
      {"1844674407370955161?6", Verdict::kBadContentLength},  // stoull: the digit prefix
      {"abc", Verdict::kBadContentLength},
      {"", Verdict::kBadContentLength},
      {"1 2", Verdict::kBadContentLength},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.value);
    const std::string head =
        std::string("POST /send HTTP/1.1\r\nHost: x\r\ncontent-LENGTH: ") + c.value + "\r\n\r\n{}";
    for (size_t piece : {size_t{1}, size_t{5}, SIZE_MAX}) {
      EXPECT_EQ(FeedAll(head, piece), c.verdict) << piece;
    }
  }
  // Every Content-Length counts, however it is spelled.
  EXPECT_EQ(FeedAll("POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 99999999\r\n\r\n"),
            Verdict::kTooLarge);
  EXPECT_EQ(FeedAll("POST / HTTP/1.1\r\nX: a\n\r\nContent-Length: 99999999\r\n\r\n"),
            Verdict::kTooLarge);
}

TEST(RequestHeadScannerTest, LetsOrdinaryRequestsThrough) {
  EXPECT_EQ(FeedAll("POST /send HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"), Verdict::kOk);
  EXPECT_EQ(FeedAll("GET /transfer-encoding HTTP/1.1\r\nX-Transfer-Encoding: no\r\n\r\n"),
            Verdict::kOk);
  EXPECT_EQ(FeedAll("GET /heartbeat HTTP/1.1\r\nHost: x\r\n"), Verdict::kNeedMore);
}

TEST(RequestHeadScannerTest, EachRequestOfAConnectionIsScanned) {
  RequestHeadScanner s(1 << 16);
  EXPECT_EQ(s.Feed("GET / HTTP/1.1\r\n\r\n"), Verdict::kOk);
  s.Reset();
  EXPECT_EQ(s.Feed("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Verdict::kTransferEncoding);
}

TEST(RequestHeadScannerTest, StopsScanningPastItsBound) {
  RequestHeadScanner s(64);
  EXPECT_EQ(s.Feed(std::string(100, 'a')), Verdict::kOk);  // the parser refuses such a head
}

}  // namespace
}  // namespace dsm::http
