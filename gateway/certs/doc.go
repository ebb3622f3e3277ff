// Package certs is TLS termination for an ingress listener: the serving
// certificates, chosen per handshake by SNI, reloaded from their files
// when they change, and the two HTTP helpers that go with HTTPS at the
// edge (the HTTP to HTTPS redirect and HSTS).
//
// It is not a request middleware. The listener (built by the gateway, not
// here) takes its *tls.Config from Store.TLSConfig, runs Store.Run on a
// goroutine it owns, wraps its routes with Store.HSTS and, when
// redirect.http_address is set, serves RedirectHandler on a plain HTTP
// listener there.
//
// Contract:
//
//   - New validates the Config and reads every certificate pair; a pair
//     that does not load fails New with its index and file name. The zero
//     Config is "no TLS" (Config.Enabled reports false; New refuses it).
//   - A Store is safe for concurrent use. GetCertificate reads an
//     immutable snapshot through an atomic pointer and never blocks; it
//     does not allocate for a lower-case SNI name that matches.
//   - Selection: exact name (case-insensitive, trailing dot ignored), then
//     a wildcard "*.parent" covering exactly one label, then, without SNI,
//     an IP SAN equal to the connection's local address; otherwise the
//     first configured certificate (or a handshake failure with
//     reject_unknown_sni). Among several certificates for one name, the
//     first, in configuration order, whose key type the client supports.
//   - Run watches the files' directories (fsnotify), debounces, and
//     reloads every pair; it also reloads every minute. A pair that fails
//     to load keeps its previous certificate, is logged with its file
//     name, counted (outcome "error") and shown in Info.LastError; the
//     other pairs are still updated. Reload does the same on demand.
//   - Run returns when its context ends and leaves no goroutine behind;
//     the Store keeps serving its last certificates after that.
//   - TLS: version 1.2 or 1.3 only; TLS 1.2 with ECDHE key exchange and
//     AEAD ciphers only; ALPN "h2" and "http/1.1".
package certs
