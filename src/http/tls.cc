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
// How. This file defines SSL_accept, SSL_read and SSL_write. An executable's definitions come
// first in the dynamic linker's lookup order, so every call to these names in the process, from
// libpistache and libcurl alike, reaches the functions below, which call OpenSSL's own (found
// with dlsym(RTLD_NEXT)). Once EnableDeferredTlsHandshakes() ran:
//  - SSL_accept marks the connection as deferred (SSL ex_data) and returns 1 at once, without
//    any I/O. Pistache is the only caller of SSL_accept in dsm-node (libcurl, the peer client, is
//    a TLS client: it calls SSL_connect). The connection stays in the accept state that Pistache
//    set (SSL_set_accept_state), and OpenSSL completes the handshake inside the first SSL_read,
//    which Pistache calls on the connection's event loop with the socket non-blocking. A silent
//    client is then just an idle connection, subject to the edge's connection limits and the
//    header timeout (408, here: closed) like any other. Two settings are added to the connection
//    there: client-initiated renegotiation is refused, and a write retried after "would block"
//    may come from another buffer (Pistache copies the unsent rest of an answer before retrying).
//  - SSL_read and SSL_write of deferred connections empty the thread's OpenSSL error queue first
//    (SSL_get_error, which classifies the result, reads it; OpenSSL empties it only while a
//    handshake runs), then report "would block" as -1 with errno EAGAIN, a close_notify as 0 (a
//    read) and any other failure (a failed handshake, a plain-HTTP request, a client without an
//    accepted certificate, a reset, an end of stream in the middle of the handshake) as -1 with
//    errno ECONNRESET, leaving the queue empty. That is the contract Pistache's transport reads: it
//    looks at errno as after recv(), never at SSL_get_error, and OpenSSL does not document errno.
//    A write that would have to wait for a read (the client's handshake is not done: an answer
//    such as a 408 or a 503 to a client that never finished it) fails and shuts the connection
//    down (see AsSocketResult); without that, Pistache would retry it every time the socket is
//    writable, which it always is, until the client sent something.
//  - Every other SSL object (libcurl's client connections, or an SSL_accept before
//    EnableDeferredTlsHandshakes) gets OpenSSL's own functions and results, untouched: same
//    return value, same errno, same error queue.
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
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

namespace dsm::http {
namespace {

std::atomic<bool> deferred_handshakes{false};

// The ex_data slot that marks the SSL objects whose handshake SSL_accept deferred, and the value
// stored there (its address; nothing reads it).
int DeferredSlot() {
  static const int slot = SSL_get_ex_new_index(0, const_cast<char*>("dsm deferred handshake"),
                                               nullptr, nullptr, nullptr);
  return slot;
}
char deferred_mark;

bool IsDeferred(const SSL* ssl) {
  return ssl != nullptr && SSL_get_ex_data(ssl, DeferredSlot()) == &deferred_mark;
}

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

// What Pistache's transport expects of a read or write of a deferred connection (see the top of
// this file). `writing`: a write that needs to read first (the client's handshake is not
// complete: an answer such as a 408 or a 503 to a client that never finished it; renegotiation is
// refused, so nothing else needs a read) fails and the connection is shut down, instead of
// Pistache waiting for the socket to become writable, which it already is, again and again.
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
      ::shutdown(SSL_get_fd(ssl), SHUT_RDWR);
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

// OpenSSL's own definition of `name` (the next one after this executable's). Aborts when there is
// none: libssl is linked into every binary that holds this file.
template <typename Fn>
Fn Next(const char* name) {
  void* fn = ::dlsym(RTLD_NEXT, name);
  if (fn == nullptr) {
    std::fprintf(stderr, "dsm: OpenSSL's %s not found (%s)\n", name, ::dlerror());
    std::abort();
  }
  return reinterpret_cast<Fn>(fn);
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
  if (!dsm::http::deferred_handshakes.load(std::memory_order_relaxed) ||
      SSL_set_ex_data(ssl, dsm::http::DeferredSlot(), &dsm::http::deferred_mark) != 1) {
    return real(ssl);
  }
  SSL_set_accept_state(ssl);  // as the real SSL_accept would (Pistache did already)
  SSL_set_options(ssl, SSL_OP_NO_RENEGOTIATION);
  SSL_set_mode(ssl, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  return 1;
}

int SSL_read(SSL* ssl, void* buf, int num) {
  static const auto real = dsm::http::Next<int (*)(SSL*, void*, int)>("SSL_read");
  if (!dsm::http::IsDeferred(ssl)) return real(ssl, buf, num);
  ERR_clear_error();  // SSL_get_error reads the queue: only this call's errors may be in it
  return dsm::http::AsSocketResult(ssl, real(ssl, buf, num), /*writing=*/false);
}

int SSL_write(SSL* ssl, const void* buf, int num) {
  static const auto real = dsm::http::Next<int (*)(SSL*, const void*, int)>("SSL_write");
  if (!dsm::http::IsDeferred(ssl)) return real(ssl, buf, num);
  ERR_clear_error();
  return dsm::http::AsSocketResult(ssl, real(ssl, buf, num), /*writing=*/true);
}

}  // extern "C"
