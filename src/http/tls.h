// TLS for the node's HTTP API and its requests to peers (docs/operations.md, "TLS").
//  - TlsFiles: the certificate, key and CA files of the --tls-* options, and CheckTlsFiles, which
//    loads them once at start-up so that a missing file, an unreadable PEM or a key that does not
//    match its certificate is a one-line error before anything starts.
//  - EnableDeferredTlsHandshakes: makes the TLS handshake of an accepted connection run on the
//    connection's event-loop thread instead of Pistache's accept thread (see tls.cc).
//
// Thread safety: CheckTlsFiles is thread-compatible; EnableDeferredTlsHandshakes may be called
// from any thread, before the server starts accepting. The SSL_accept/SSL_read/SSL_write that
// tls.cc defines are as thread-safe as OpenSSL's own: any thread, one thread per SSL at a time.
#pragma once

#include <string>

#include "dsm/status.h"

namespace dsm::http {

struct TlsFiles {
  // Served over HTTPS when cert_file is set (key_file then too).
  std::string cert_file;  // --tls-cert: PEM certificate (chain) of this node
  std::string key_file;   // --tls-key: its PEM private key, unencrypted
  // When set, every connection must present a client certificate signed by this CA (PEM).
  std::string client_ca_file;  // --tls-client-ca
  // Requests to https:// peers verify the peer's certificate and host name against this CA.
  std::string ca_file;  // --tls-ca
  // Presented to peers that require client certificates (both or neither).
  std::string peer_cert_file;  // --tls-peer-cert
  std::string peer_key_file;   // --tls-peer-key

  bool serving() const { return !cert_file.empty(); }
};

// Loads every file that is set: certificates and keys must parse, each key must match its
// certificate, CA files must hold at least one certificate. Errors: InvalidArgument naming the
// option and the file, e.g. "--tls-key node.key does not match the certificate of --tls-cert
// node.pem".
Status CheckTlsFiles(const TlsFiles& files);

// From now on, SSL_accept (which only Pistache's listener calls) returns at once and the
// handshake of that connection is completed by its first read, on its event-loop thread, with the
// event loop's non-blocking socket; reads and writes of those connections report TLS failures as
// a reset connection. Every other SSL object, libcurl's client connections included, gets
// OpenSSL's results unchanged. Without this, Pistache 0.0.5 completes each handshake with a
// blocking SSL_accept on its single accept thread, so one client that connects and sends nothing
// stops the node from accepting any connection. Idempotent; never undone. See tls.cc.
void EnableDeferredTlsHandshakes();

}  // namespace dsm::http
