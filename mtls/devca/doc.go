// Package devca is a development SPIFFE certificate authority: it creates
// an ECDSA P-256 root for a trust domain, keeps it in a directory, and mints
// X.509-SVIDs that go-spiffe (and so Outrider) accepts, written as PEM files
// a file-based identity source can load and reload.
//
// It exists so that a laptop, a CI job or a demo can run a mesh without SPIRE
// or Consul. It is not a production CA: the root key sits unencrypted on
// disk, nothing is revoked or audited, and every SVID is signed by the root
// directly. Use SPIRE or Consul's Connect CA in production.
//
// Files (all PEM):
//
//	ca.pem         the root certificate
//	ca-key.pem     its private key, PKCS#8, mode 0600
//	bundle.pem     the trust bundle (the root), for verifiers
//	svid.pem       an SVID's chain, leaf first
//	svid-key.pem   the SVID's private key, PKCS#8, mode 0600
//
// Every file is replaced atomically (written to a temporary file in the same
// directory, then renamed), so a reader never sees half a file.
package devca
