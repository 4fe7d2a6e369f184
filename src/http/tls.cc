// TLS helpers: start-up checks of the certificate files, and the deferred server handshake.
//
// Why the handshake is deferred. Pistache 0.0.5 (Debian 12) accepts connections on one thread and,
// with TLS on, calls SSL_accept there on the still-blocking socket before handing the connection
// to an event loop. That call returns only when the handshake is done or fails, so a client that
// opens a TCP connection and sends nothing keeps every later connection, peers' included, from
// being accepted. Debian's build bounds each read of the handshake with a 10 s socket timeout,
// which bounds neither the handshake (a client trickling its ClientHello holds the thread as
// long as it likes) nor a client opening a new silent connection every 10 s.
//
// How. This file defines SSL_accept, SSL_read and SSL_write; the executable's definitions come
// first in the dynamic linker's lookup order, so Pistache's calls reach them (libcurl's too, which
// are passed through untouched: they are client-side). Once EnableDeferredTlsHandshakes() ran:
//  - SSL_accept returns 1 at once. The connection stays in the accept state that Pistache set
//    (SSL_set_accept_state), and OpenSSL completes the handshake inside the first SSL_read, which
//    Pistache calls on the connection's event loop with the socket non-blocking. A silent client
//    is then just an idle connection, subject to the edge's connection limits and the header
//    timeout (408, here: closed) like any other.
//  - For server-side connections, SSL_read and SSL_write report "would block" as -1 with errno
//    EAGAIN, a close_notify as 0, and any other failure (a failed handshake, a plain-HTTP request,
//    a client without an accepted certificate, a reset) as -1 with errno ECONNRESET, clearing
//    OpenSSL's per-thread error queue. That is the contract Pistache's transport reads (it looks at
//    errno, never at SSL_get_error), so failed connections are closed instead of left waiting. A
//    write that would have to wait for the client's handshake fails and shuts the connection
//    down (see AsSocketResult).
#include "src/http/tls.h"

#include <dlfcn.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <memory>
#include <string>

namespace dsm::http {
namespace {

std::atomic<bool> deferred_handshakes{false};

// The newest OpenSSL error of this thread, as text (and the queue cleared).
std::string OpenSslError() {
  unsigned long code = 0;
  unsigned long last = 0;
  while ((code = ERR_get_error()) != 0) last = code;
  if (last == 0) return "unknown error";
  const char* reason = ERR_reason_error_string(last);
  return reason != nullptr ? reason : "error " + std::to_string(last);
}

Status Problem(const std::string& option, const std::string& file, const std::string& what) {
  return Status::InvalidArgument(option + " " + file + ": " + what);
}

Status CheckReadable(const std::string& option, const std::string& file) {
  struct stat st {};
  if (::stat(file.c_str(), &st) != 0) return Problem(option, file, std::strerror(errno));
  if (!S_ISREG(st.st_mode)) return Problem(option, file, "not a regular file");
  return Status::Ok();
}

using CtxPtr = std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)>;

// Loads a certificate and its key into a fresh context and checks that they match.
Status CheckPair(const char* cert_option, const std::string& cert, const char* key_option,
                 const std::string& key) {
  if (Status s = CheckReadable(cert_option, cert); !s.ok()) return s;
  if (Status s = CheckReadable(key_option, key); !s.ok()) return s;
  CtxPtr ctx(SSL_CTX_new(TLS_method()), &SSL_CTX_free);
  if (!ctx) return Status::IOError("cannot create a TLS context: " + OpenSslError());
  if (SSL_CTX_use_certificate_chain_file(ctx.get(), cert.c_str()) != 1) {
    return Problem(cert_option, cert, "not a PEM certificate (" + OpenSslError() + ")");
  }
  std::unique_ptr<BIO, decltype(&BIO_free)> in(BIO_new_file(key.c_str(), "r"), &BIO_free);
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> pkey(
      in ? PEM_read_bio_PrivateKey(in.get(), nullptr, nullptr, const_cast<char*>("")) : nullptr,
      &EVP_PKEY_free);
  if (!pkey) {
    return Problem(key_option, key, "not an unencrypted PEM private key (" + OpenSslError() + ")");
  }
  if (SSL_CTX_use_PrivateKey(ctx.get(), pkey.get()) != 1 ||
      SSL_CTX_check_private_key(ctx.get()) != 1) {
    ERR_clear_error();
    return Status::InvalidArgument(std::string(key_option) + " " + key +
                                   " does not match the certificate of " + cert_option + " " +
                                   cert);
  }
  return Status::Ok();
}

Status CheckCa(const char* option, const std::string& file) {
  if (Status s = CheckReadable(option, file); !s.ok()) return s;
  CtxPtr ctx(SSL_CTX_new(TLS_method()), &SSL_CTX_free);
  if (!ctx) return Status::IOError("cannot create a TLS context: " + OpenSslError());
  if (SSL_CTX_load_verify_locations(ctx.get(), file.c_str(), nullptr) != 1) {
    return Problem(option, file, "no PEM CA certificate in it (" + OpenSslError() + ")");
  }
  return Status::Ok();
}

// What Pistache's transport expects of a server-side read or write (see the top of this file).
// `writing`: a write that needs to read first (its handshake is not complete: an answer such as a
// 408 or a 503 to a client that never finished its handshake) fails and the connection is shut
// down, instead of Pistache waiting for the socket to become writable, which it already is, again
// and again.
int AsSocketResult(SSL* ssl, int n, bool writing) {
  if (n > 0) return n;
  switch (SSL_get_error(ssl, n)) {
    case SSL_ERROR_WANT_READ:
      if (!writing) {
        errno = EAGAIN;
        return -1;
      }
      // Pistache drops a failed write without closing the connection: close it here, and the
      // connection's next read ends it.
      if (!SSL_is_init_finished(ssl)) ::shutdown(SSL_get_fd(ssl), SHUT_RDWR);
      errno = ENOTCONN;
      return -1;
    case SSL_ERROR_WANT_WRITE:
      errno = EAGAIN;
      return -1;
    case SSL_ERROR_ZERO_RETURN:  // the client's close_notify
      ERR_clear_error();
      if (!writing) return 0;
      errno = ECONNRESET;  // a write returning 0 would be retried forever
      return -1;
    default:
      ERR_clear_error();
      errno = ECONNRESET;
      return -1;
  }
}

template <typename Fn>
Fn Next(const char* name) {
  return reinterpret_cast<Fn>(::dlsym(RTLD_NEXT, name));
}

}  // namespace

Status CheckTlsFiles(const TlsFiles& f) {
  if (!f.cert_file.empty()) {
    if (Status s = CheckPair("--tls-cert", f.cert_file, "--tls-key", f.key_file); !s.ok()) {
      return s;
    }
  }
  if (!f.peer_cert_file.empty()) {
    Status s = CheckPair("--tls-peer-cert", f.peer_cert_file, "--tls-peer-key", f.peer_key_file);
    if (!s.ok()) return s;
  }
  if (!f.ca_file.empty()) {
    if (Status s = CheckCa("--tls-ca", f.ca_file); !s.ok()) return s;
  }
  if (!f.client_ca_file.empty()) {
    if (Status s = CheckCa("--tls-client-ca", f.client_ca_file); !s.ok()) return s;
  }
  return Status::Ok();
}

void EnableDeferredTlsHandshakes() { deferred_handshakes.store(true); }

}  // namespace dsm::http

// The interposed OpenSSL entry points (see the top of this file).
extern "C" {

int SSL_accept(SSL* ssl) {
  static const auto real = dsm::http::Next<int (*)(SSL*)>("SSL_accept");
  if (dsm::http::deferred_handshakes.load(std::memory_order_relaxed)) return 1;
  return real(ssl);
}

int SSL_read(SSL* ssl, void* buf, int num) {
  static const auto real = dsm::http::Next<int (*)(SSL*, void*, int)>("SSL_read");
  const int n = real(ssl, buf, num);
  if (!dsm::http::deferred_handshakes.load(std::memory_order_relaxed) || !SSL_is_server(ssl)) {
    return n;
  }
  return dsm::http::AsSocketResult(ssl, n, /*writing=*/false);
}

int SSL_write(SSL* ssl, const void* buf, int num) {
  static const auto real = dsm::http::Next<int (*)(SSL*, const void*, int)>("SSL_write");
  const int n = real(ssl, buf, num);
  if (!dsm::http::deferred_handshakes.load(std::memory_order_relaxed) || !SSL_is_server(ssl)) {
    return n;
  }
  return dsm::http::AsSocketResult(ssl, n, /*writing=*/true);
}

}  // extern "C"
