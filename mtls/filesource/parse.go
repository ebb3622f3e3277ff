package filesource

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// fileError is a load failure attributed to one file (path as configured).
type fileError struct {
	file string
	err  error
}

func (e *fileError) Error() string { return "filesource: " + e.file + ": " + e.err.Error() }

func (e *fileError) Unwrap() error { return e.err }

func fileErr(file string, format string, args ...any) error {
	return &fileError{file: file, err: fmt.Errorf(format, args...)}
}

// parseSVID parses the certificate chain (leaf first) in certFile and the
// private key in keyFile (the same file may hold both) into an SVID.
func parseSVID(certFile string, certPEM []byte, keyFile string, keyPEM []byte) (*x509svid.SVID, error) {
	blocks, err := pemBlocks(certPEM)
	if err != nil {
		return nil, &fileError{file: certFile, err: err}
	}
	var der []byte
	var leaf *x509.Certificate
	for i, b := range blocks {
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fileErr(certFile, "certificate %d: %w", i+1, err)
		}
		if leaf == nil {
			leaf = c
		}
		der = append(der, b.Bytes...)
	}
	if leaf == nil {
		return nil, fileErr(certFile, "no CERTIFICATE PEM block")
	}

	keyDER, key, err := parseKey(keyPEM)
	if err != nil {
		return nil, &fileError{file: keyFile, err: err}
	}
	if pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(leaf.PublicKey) {
		return nil, fileErr(keyFile, "the private key does not match the certificate in %s", certFile)
	}
	svid, err := x509svid.ParseRaw(der, keyDER)
	if err != nil {
		return nil, fileErr(certFile, "not a valid X.509-SVID: %w", err)
	}
	return svid, nil
}

// parseKey returns the PKCS#8 DER of the first private key in data: a
// PKCS#8 "PRIVATE KEY", a SEC1 "EC PRIVATE KEY" or a PKCS#1 "RSA PRIVATE
// KEY" block. Other blocks (certificates, "EC PARAMETERS") are skipped.
func parseKey(data []byte) ([]byte, crypto.Signer, error) {
	blocks, err := pemBlocks(data)
	if err != nil {
		return nil, nil, err
	}
	for _, b := range blocks {
		var (
			key any
			err error
		)
		switch b.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(b.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(b.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(b.Bytes)
		case "ENCRYPTED PRIVATE KEY":
			return nil, nil, errors.New("the private key is encrypted; an unencrypted key is required")
		default:
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", b.Type, err)
		}
		signer, ok := key.(crypto.Signer)
		if !ok {
			return nil, nil, fmt.Errorf("%s: unsupported key type %T", b.Type, key)
		}
		if b.Type == "PRIVATE KEY" {
			return b.Bytes, signer, nil
		}
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", b.Type, err)
		}
		return der, signer, nil
	}
	return nil, nil, errors.New("no private key PEM block (PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY)")
}

// parseBundle returns the X.509 authorities in one bundle file of trust
// domain td: a SPIFFE bundle (JWKS) when its first non-space byte is '{',
// PEM CA certificates otherwise.
func parseBundle(td spiffeid.TrustDomain, data []byte) ([]*x509.Certificate, error) {
	if trimmed := bytes.TrimSpace(data); len(trimmed) > 0 && trimmed[0] == '{' {
		b, err := spiffebundle.Parse(td, data)
		if err != nil {
			return nil, err
		}
		certs := b.X509Authorities()
		if len(certs) == 0 {
			return nil, errors.New("SPIFFE bundle without X.509 authorities (keys with use x509-svid)")
		}
		return certs, nil
	}
	blocks, err := pemBlocks(data)
	if err != nil {
		return nil, err
	}
	var certs []*x509.Certificate
	for i, b := range blocks {
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", i+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no CA certificate: neither PEM CERTIFICATE blocks nor a SPIFFE bundle (JSON)")
	}
	return certs, nil
}

// pemBlocks returns the PEM blocks in data. Text around them is allowed
// (openssl writes "Bag Attributes" and "subject=" lines), but every BEGIN
// line must start a well-formed block: a file cut short, or still being
// written, is an error rather than a shorter chain.
func pemBlocks(data []byte) ([]*pem.Block, error) {
	var blocks []*pem.Block
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		blocks = append(blocks, b)
	}
	if begins := bytes.Count(data, []byte("-----BEGIN ")); begins != len(blocks) {
		return nil, fmt.Errorf("%d of %d PEM blocks are malformed or incomplete (file truncated or being written?)",
			begins-len(blocks), begins)
	}
	if len(blocks) == 0 {
		return nil, errors.New("no PEM data")
	}
	return blocks, nil
}

// buildBundles parses the bundle files, merging those of one trust domain.
// files and contents are in the same order.
func buildBundles(files []bundleFile, contents [][]byte) ([]*x509bundle.Bundle, error) {
	byTD := make(map[spiffeid.TrustDomain]*x509bundle.Bundle)
	var out []*x509bundle.Bundle
	for i, f := range files {
		certs, err := parseBundle(f.td, contents[i])
		if err != nil {
			return nil, fileErr(f.path, "bundle of trust domain %q: %w", f.td, err)
		}
		b, ok := byTD[f.td]
		if !ok {
			b = x509bundle.New(f.td)
			byTD[f.td] = b
			out = append(out, b)
		}
		for _, c := range certs {
			b.AddX509Authority(c)
		}
	}
	return out, nil
}
