// The OpenSSL entry points that src/http/tls.cc defines, called as Pistache and libcurl call them,
// over in-memory BIO pairs and a socket pair: connections that went through SSL_accept after
// EnableDeferredTlsHandshakes() get the deferred handshake and socket-like results; client
// connections (libcurl's) and server connections that did not go through SSL_accept get
// exactly what OpenSSL's own functions (found with dlsym(RTLD_NEXT)) give on a twin connection.
#include "src/http/tls.h"

#include <dlfcn.h>
#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <ostream>
#include <string>

namespace dsm::http {
namespace {

using CtxPtr = std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)>;
using SslPtr = std::unique_ptr<SSL, decltype(&SSL_free)>;

// A server context with a fresh P-256 key and a self-signed certificate for "localhost".
CtxPtr ServerContext() {
  CtxPtr ctx(SSL_CTX_new(TLS_server_method()), &SSL_CTX_free);
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(EVP_EC_gen("P-256"), &EVP_PKEY_free);
  std::unique_ptr<X509, decltype(&X509_free)> cert(X509_new(), &X509_free);
  if (!ctx || !key || !cert) return CtxPtr(nullptr, &SSL_CTX_free);
  X509_set_version(cert.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), 1);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -60);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 3600);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("localhost"), -1, -1, 0);
  X509_set_issuer_name(cert.get(), name);
  X509_set_pubkey(cert.get(), key.get());
  if (X509_sign(cert.get(), key.get(), EVP_sha256()) == 0 ||
      SSL_CTX_use_certificate(ctx.get(), cert.get()) != 1 ||
      SSL_CTX_use_PrivateKey(ctx.get(), key.get()) != 1) {
    return CtxPtr(nullptr, &SSL_CTX_free);
  }
  return ctx;
}

// A client context that does not verify (the tests are about the transport, not trust).
CtxPtr ClientContext() { return CtxPtr(SSL_CTX_new(TLS_client_method()), &SSL_CTX_free); }

// A client and a server SSL joined by an in-memory BIO pair. The server is in the accept state,
// as Pistache leaves it before calling SSL_accept; the client in the connect state.
struct Pair {
  SslPtr client{nullptr, &SSL_free};
  SslPtr server{nullptr, &SSL_free};
  BIO* client_bio = nullptr;  // owned by client
  BIO* server_bio = nullptr;  // owned by server
};

Pair Connect(SSL_CTX* client_ctx, SSL_CTX* server_ctx) {
  Pair p;
  p.client.reset(SSL_new(client_ctx));
  p.server.reset(SSL_new(server_ctx));
  BIO_new_bio_pair(&p.client_bio, 0, &p.server_bio, 0);
  SSL_set_bio(p.client.get(), p.client_bio, p.client_bio);
  SSL_set_bio(p.server.get(), p.server_bio, p.server_bio);
  SSL_set_connect_state(p.client.get());
  SSL_set_accept_state(p.server.get());
  return p;
}

// Raw bytes (not TLS) arriving at `ssl` from the other end of its BIO pair.
void Inject(BIO* other_end, const std::string& bytes) {
  ASSERT_EQ(BIO_write(other_end, bytes.data(), static_cast<int>(bytes.size())),
            static_cast<int>(bytes.size()));
}

// Steps both sides' handshakes until both are done (a bounded number of rounds).
bool Handshake(SSL* client, SSL* server) {
  for (int round = 0; round < 20; ++round) {
    const int c = SSL_do_handshake(client);
    const int s = SSL_do_handshake(server);
    if (c == 1 && s == 1) return true;
  }
  return false;
}

class TlsInterpositionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    EnableDeferredTlsHandshakes();
    ASSERT_TRUE(server_ctx_) << "cannot make a test certificate";
    ASSERT_TRUE(client_ctx_);
    ERR_clear_error();
  }
  void TearDown() override { ERR_clear_error(); }

  CtxPtr server_ctx_ = ServerContext();
  CtxPtr client_ctx_ = ClientContext();
};

// What one call of SSL_read or SSL_write did, as its caller sees it.
struct Outcome {
  int ret = 0;
  int ssl_error = 0;         // SSL_get_error
  int error_number = 0;      // errno
  unsigned long queued = 0;  // OpenSSL's error queue (its oldest entry)
  bool operator==(const Outcome& o) const {
    return ret == o.ret && ssl_error == o.ssl_error && error_number == o.error_number &&
           queued == o.queued;
  }
};
std::ostream& operator<<(std::ostream& os, const Outcome& o) {
  return os << "{ret " << o.ret << ", SSL_get_error " << o.ssl_error << ", errno " << o.error_number
            << ", queue " << o.queued << "}";
}

using ReadFn = int (*)(SSL*, void*, int);
using WriteFn = int (*)(SSL*, const void*, int);

Outcome Read(ReadFn read, SSL* ssl) {
  char buf[256];
  errno = EAGAIN;  // as left by an earlier call
  Outcome o;
  o.ret = read(ssl, buf, sizeof buf);
  o.error_number = errno;
  o.ssl_error = SSL_get_error(ssl, o.ret);
  o.queued = ERR_peek_error();
  ERR_clear_error();
  return o;
}

Outcome Write(WriteFn write, SSL* ssl, const std::string& data) {
  errno = EAGAIN;
  Outcome o;
  o.ret = write(ssl, data.data(), static_cast<int>(data.size()));
  o.error_number = errno;
  o.ssl_error = SSL_get_error(ssl, o.ret);
  o.queued = ERR_peek_error();
  ERR_clear_error();
  return o;
}

// The same steps on two connections, one through the functions of src/http/tls.cc (the names
// SSL_read and SSL_write, as libcurl calls them), one through OpenSSL's own: every outcome is
// the same.
void ExpectOpenSslsOwnResults(SSL_CTX* client_ctx, SSL_CTX* server_ctx) {
  static const auto real_read = reinterpret_cast<ReadFn>(::dlsym(RTLD_NEXT, "SSL_read"));
  static const auto real_write = reinterpret_cast<WriteFn>(::dlsym(RTLD_NEXT, "SSL_write"));
  ASSERT_NE(real_read, nullptr);
  ASSERT_NE(real_write, nullptr);
  ASSERT_NE(real_read, &SSL_read);  // two different functions are compared
  Pair ours = Connect(client_ctx, server_ctx);
  Pair theirs = Connect(client_ctx, server_ctx);
  for (Pair* p : {&ours, &theirs}) ASSERT_TRUE(Handshake(p->client.get(), p->server.get()));

  // Client side (libcurl's): nothing to read yet; a round trip of data; then bytes that are not
  // a TLS record, whose protocol error libcurl reports from OpenSSL's error queue.
  EXPECT_EQ(Read(&SSL_read, ours.client.get()), Read(real_read, theirs.client.get()));
  EXPECT_EQ(Write(&SSL_write, ours.client.get(), "ping"),
            Write(real_write, theirs.client.get(), "ping"));
  EXPECT_EQ(Read(&SSL_read, ours.server.get()), Read(real_read, theirs.server.get()));
  EXPECT_EQ(Write(&SSL_write, ours.server.get(), "pong"),
            Write(real_write, theirs.server.get(), "pong"));
  EXPECT_EQ(Read(&SSL_read, ours.client.get()), Read(real_read, theirs.client.get()));
  Inject(ours.server_bio, "HTTP/1.1 200 OK\r\n\r\n");
  Inject(theirs.server_bio, "HTTP/1.1 200 OK\r\n\r\n");
  const Outcome garbage = Read(&SSL_read, ours.client.get());
  EXPECT_EQ(garbage, Read(real_read, theirs.client.get()));
  EXPECT_EQ(garbage.ssl_error, SSL_ERROR_SSL);
  EXPECT_NE(garbage.queued, 0u);
  // A failed connection's next write.
  EXPECT_EQ(Write(&SSL_write, ours.client.get(), "more"),
            Write(real_write, theirs.client.get(), "more"));

  // A server connection that did not go through SSL_accept, fed plain HTTP.
  Pair ours2 = Connect(client_ctx, server_ctx);
  Pair theirs2 = Connect(client_ctx, server_ctx);
  Inject(ours2.client_bio, "GET / HTTP/1.1\r\n\r\n");
  Inject(theirs2.client_bio, "GET / HTTP/1.1\r\n\r\n");
  const Outcome plain = Read(&SSL_read, ours2.server.get());
  EXPECT_EQ(plain, Read(real_read, theirs2.server.get()));
  EXPECT_EQ(plain.ssl_error, SSL_ERROR_SSL);
}

// libcurl's connections (clients), and server connections that did not go through SSL_accept,
// get OpenSSL's own results: return value, SSL_get_error, errno and error queue.
TEST_F(TlsInterpositionTest, OtherConnectionsGetOpenSslsOwnResults) {
  ExpectOpenSslsOwnResults(client_ctx_.get(), server_ctx_.get());
}

// Pistache's side: SSL_accept returns at once; the handshake happens in the reads; results are
// those of a non-blocking socket.
TEST_F(TlsInterpositionTest, AcceptedConnectionsHandshakeInTheirReads) {
  Pair p = Connect(client_ctx_.get(), server_ctx_.get());
  ASSERT_EQ(SSL_accept(p.server.get()), 1);  // nothing was sent: a real SSL_accept would wait
  EXPECT_FALSE(SSL_is_init_finished(p.server.get()));
  EXPECT_TRUE(SSL_get_mode(p.server.get()) & SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  EXPECT_TRUE(SSL_get_options(p.server.get()) & SSL_OP_NO_RENEGOTIATION);

  char buf[64];
  errno = 0;
  EXPECT_EQ(SSL_read(p.server.get(), buf, sizeof buf), -1);  // no ClientHello yet
  EXPECT_EQ(errno, EAGAIN);

  // The client's ClientHello, the server's answer (inside its read), the client's Finished and
  // request, then the server's read returns the request.
  EXPECT_EQ(SSL_do_handshake(p.client.get()), -1);
  errno = 0;
  EXPECT_EQ(SSL_read(p.server.get(), buf, sizeof buf), -1);
  EXPECT_EQ(errno, EAGAIN);
  ASSERT_EQ(SSL_do_handshake(p.client.get()), 1);
  ASSERT_EQ(SSL_write(p.client.get(), "GET /", 5), 5);
  ASSERT_EQ(SSL_read(p.server.get(), buf, sizeof buf), 5);
  EXPECT_EQ(std::string(buf, 5), "GET /");
  EXPECT_TRUE(SSL_is_init_finished(p.server.get()));
  ASSERT_EQ(SSL_write(p.server.get(), "HTTP/", 5), 5);

  // The client's close_notify: end of stream (0), as recv() says it.
  SSL_shutdown(p.client.get());
  EXPECT_EQ(SSL_read(p.server.get(), buf, sizeof buf), 0);
  EXPECT_EQ(ERR_peek_error(), 0u);
}

// An error left in the thread's OpenSSL queue by some earlier call does not turn a deferred
// connection's "would block" into a reset (once its handshake is done, OpenSSL itself no longer
// empties the queue).
TEST_F(TlsInterpositionTest, StaleErrorsOfTheThreadDoNotEndAConnection) {
  Pair p = Connect(client_ctx_.get(), server_ctx_.get());
  ASSERT_EQ(SSL_accept(p.server.get()), 1);
  char buf[64];
  EXPECT_EQ(SSL_do_handshake(p.client.get()), -1);  // the ClientHello
  EXPECT_EQ(SSL_read(p.server.get(), buf, sizeof buf), -1);
  ASSERT_EQ(SSL_do_handshake(p.client.get()), 1);
  ASSERT_EQ(SSL_write(p.client.get(), "GET /", 5), 5);
  ASSERT_EQ(SSL_read(p.server.get(), buf, sizeof buf), 5);

  ERR_raise(ERR_LIB_SSL, SSL_R_BAD_WRITE_RETRY);
  errno = 0;
  EXPECT_EQ(SSL_read(p.server.get(), buf, sizeof buf), -1);
  EXPECT_EQ(errno, EAGAIN);
  ERR_raise(ERR_LIB_SSL, SSL_R_BAD_WRITE_RETRY);
  EXPECT_EQ(SSL_write(p.server.get(), "HTTP/", 5), 5);
  ASSERT_EQ(SSL_write(p.client.get(), "next", 4), 4);
  EXPECT_EQ(SSL_read(p.server.get(), buf, sizeof buf), 4);
}

// Plain HTTP and an end of stream in the middle of the handshake: -1 with errno ECONNRESET (never
// a left-over EAGAIN that would leave the connection open), the error queue cleared.
TEST_F(TlsInterpositionTest, FailedHandshakesReadAsAResetConnection) {
  {
    Pair p = Connect(client_ctx_.get(), server_ctx_.get());
    ASSERT_EQ(SSL_accept(p.server.get()), 1);
    Inject(p.client_bio, "GET /heartbeat HTTP/1.1\r\nHost: x\r\n\r\n");
    char buf[64];
    errno = EAGAIN;
    EXPECT_EQ(SSL_read(p.server.get(), buf, sizeof buf), -1);
    EXPECT_EQ(errno, ECONNRESET);
    EXPECT_EQ(ERR_peek_error(), 0u);
  }
  {
    Pair p = Connect(client_ctx_.get(), server_ctx_.get());
    ASSERT_EQ(SSL_accept(p.server.get()), 1);
    // The start of a ClientHello, then the client goes away.
    Inject(p.client_bio, std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11));
    BIO_shutdown_wr(p.client_bio);
    char buf[64];
    errno = EAGAIN;
    EXPECT_EQ(SSL_read(p.server.get(), buf, sizeof buf), -1);
    EXPECT_EQ(errno, ECONNRESET);
    EXPECT_EQ(ERR_peek_error(), 0u);
  }
}

// Pistache retries a write that would have blocked from a copy of the unsent rest of the answer
// (a new buffer, at another address): the retry completes instead of failing as a "bad write
// retry" that would end the connection.
TEST_F(TlsInterpositionTest, WriteRetriedFromAnotherBufferCompletes) {
  Pair p;
  p.client.reset(SSL_new(client_ctx_.get()));
  p.server.reset(SSL_new(server_ctx_.get()));
  // Room for 4 KB in each direction: a 16 KB answer does not fit.
  ASSERT_EQ(BIO_new_bio_pair(&p.client_bio, 4096, &p.server_bio, 4096), 1);
  SSL_set_bio(p.client.get(), p.client_bio, p.client_bio);
  SSL_set_bio(p.server.get(), p.server_bio, p.server_bio);
  SSL_set_connect_state(p.client.get());
  SSL_set_accept_state(p.server.get());
  ASSERT_EQ(SSL_accept(p.server.get()), 1);
  char buf[16384];
  for (int round = 0; round < 20 && !SSL_is_init_finished(p.server.get()); ++round) {
    SSL_do_handshake(p.client.get());
    SSL_read(p.server.get(), buf, sizeof buf);
  }
  ASSERT_TRUE(SSL_is_init_finished(p.server.get()));
  ASSERT_EQ(SSL_do_handshake(p.client.get()), 1);
  SSL_read(p.client.get(), buf, sizeof buf);  // the server's session tickets, if any

  auto answer = std::make_unique<std::string>(16000, 'a');
  errno = 0;
  ASSERT_EQ(SSL_write(p.server.get(), answer->data(), static_cast<int>(answer->size())), -1);
  ASSERT_EQ(errno, EAGAIN);
  std::string received;
  auto drain = [&] {
    int n;
    while ((n = SSL_read(p.client.get(), buf, sizeof buf)) > 0) {
      received.append(buf, static_cast<size_t>(n));
    }
  };
  bool written = false;
  for (int round = 0; round < 100 && !written; ++round) {
    // The client reads what arrived, then the server retries from a fresh copy, as Pistache does.
    drain();
    answer = std::make_unique<std::string>(*answer);
    errno = 0;
    const int w = SSL_write(p.server.get(), answer->data(), static_cast<int>(answer->size()));
    written = w == 16000;
    if (!written) {
      ASSERT_EQ(w, -1);
      ASSERT_EQ(errno, EAGAIN) << "the retry failed";
    }
  }
  drain();
  EXPECT_TRUE(written);
  EXPECT_EQ(received, std::string(16000, 'a'));
}

// An answer written before the client's handshake (a 408 at the header timeout, a 503 over the
// connection limit): the write fails and the socket is shut down, so the connection ends.
TEST_F(TlsInterpositionTest, WriteBeforeTheHandshakeShutsTheConnectionDown) {
  int fds[2];  // non-blocking, as Pistache's connections are when the handshake runs
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
  SslPtr server(SSL_new(server_ctx_.get()), &SSL_free);
  SSL_set_fd(server.get(), fds[0]);
  SSL_set_accept_state(server.get());
  ASSERT_EQ(SSL_accept(server.get()), 1);

  const std::string answer = "HTTP/1.1 408 Request Timeout\r\n\r\n";
  errno = 0;
  EXPECT_EQ(SSL_write(server.get(), answer.data(), static_cast<int>(answer.size())), -1);
  EXPECT_EQ(errno, ENOTCONN);
  char byte;
  EXPECT_EQ(::recv(fds[1], &byte, 1, MSG_DONTWAIT), 0);  // the client sees the end
  ::close(fds[0]);
  ::close(fds[1]);
}

}  // namespace
}  // namespace dsm::http
