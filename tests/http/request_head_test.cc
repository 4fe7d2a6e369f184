// RequestHeadScanner (src/http/request_head.h): requests with a Transfer-Encoding header are
// recognised before their body reaches Pistache's chunked parser, which reads past its buffer on
// a malformed chunk size (found by the ASan job; the request is kept in fuzz/corpus/http/).
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
  EXPECT_EQ(FeedAll("POST / HTTP/1.1\nTransfer-Encoding: chunked\n\n"), Verdict::kTransferEncoding);
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
