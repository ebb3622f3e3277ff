//go:build ignore

// gen writes the certificate fixtures of this directory (see README.md).
// From the mtls package directory:
//
//	go generate -run badcerts .
//
// which runs: go run ./testdata/badcerts/gen.go -out testdata/badcerts
//
// Every run makes new keys and serial numbers; the tests depend only on
// what each file is, not on its bytes. Dates are fixed so that the files
// stay good (or bad) for a century.
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"fmt"
	"log"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"time"
)

var out = flag.String("out", ".", "directory to write the fixtures to")

// The validity of every certificate not deliberately out of date.
var (
	rootFrom  = date(2015, 1, 1) // before the expired leaf, so that only the leaf is out of date
	rootUntil = date(2125, 1, 1)
	leafFrom  = date(2025, 1, 1)
	leafUntil = date(2124, 1, 1)
)

func main() {
	log.SetFlags(0)
	log.SetPrefix("badcerts: ")
	flag.Parse()

	root := newCA("example.org", "Outrider Test Root example.org")
	root.write("root", true)
	unknown := newCA("example.org", "Outrider Test Unknown Root example.org")
	unknown.write("unknown-root", false)
	other := newCA("other.org", "Outrider Test Root other.org")
	other.write("other-td-root", false)

	const client = "spiffe://example.org/client"
	for _, l := range []struct {
		name   string
		issuer *ca
		edit   func(*x509.Certificate)
	}{
		{"valid", root, nil},
		{"expired", root, func(c *x509.Certificate) { c.NotBefore, c.NotAfter = date(2019, 1, 1), date(2020, 1, 1) }},
		{"not-yet-valid", root, func(c *x509.Certificate) { c.NotBefore, c.NotAfter = date(2120, 1, 1), date(2121, 1, 1) }},
		{"no-uri-san", root, func(c *x509.Certificate) { c.URIs, c.DNSNames = nil, []string{"client.example.org"} }},
		{"two-uri-sans", root, func(c *x509.Certificate) { c.URIs = append(c.URIs, mustURL("spiffe://example.org/other")) }},
		{"non-spiffe-uri", root, func(c *x509.Certificate) { c.URIs = []*url.URL{mustURL("https://example.org/client")} }},
		{"ca-leaf", root, func(c *x509.Certificate) { c.IsCA = true }},
		{"wrong-trust-domain", other, func(c *x509.Certificate) { c.URIs = []*url.URL{mustURL("spiffe://other.org/client")} }},
		{"unknown-root-leaf", unknown, nil},
	} {
		key := newKey()
		tmpl := &x509.Certificate{
			SerialNumber:          newSerial(),
			Subject:               pkix.Name{Organization: []string{"Outrider test fixture"}, CommonName: l.name},
			NotBefore:             leafFrom,
			NotAfter:              leafUntil,
			KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageKeyAgreement,
			ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
			BasicConstraintsValid: true,
			URIs:                  []*url.URL{mustURL(client)},
		}
		if l.edit != nil {
			l.edit(tmpl)
		}
		cert := sign(tmpl, l.issuer.cert, key, l.issuer.key)
		writePEM(l.name+".pem", "CERTIFICATE", cert.Raw, 0o644)
		writeKey(l.name+"-key.pem", key)
	}
}

type ca struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// newCA makes a self-signed root for td carrying the URI SAN spiffe://td.
func newCA(td, name string) *ca {
	key := newKey()
	tmpl := &x509.Certificate{
		SerialNumber:          newSerial(),
		Subject:               pkix.Name{Organization: []string{"Outrider test fixture"}, CommonName: name},
		NotBefore:             rootFrom,
		NotAfter:              rootUntil,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		URIs:                  []*url.URL{mustURL("spiffe://" + td)},
	}
	return &ca{cert: sign(tmpl, tmpl, key, key), key: key}
}

// write writes the root as name.pem, and its key as name-key.pem if
// withKey.
func (c *ca) write(name string, withKey bool) {
	writePEM(name+".pem", "CERTIFICATE", c.cert.Raw, 0o644)
	if withKey {
		writeKey(name+"-key.pem", c.key)
	}
}

func sign(tmpl, parent *x509.Certificate, key, parentKey *ecdsa.PrivateKey) *x509.Certificate {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		log.Fatalf("%s: %v", tmpl.Subject.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		log.Fatalf("%s: %v", tmpl.Subject.CommonName, err)
	}
	return cert
}

func writeKey(name string, key *ecdsa.PrivateKey) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		log.Fatalf("%s: %v", name, err)
	}
	writePEM(name, "PRIVATE KEY", der, 0o600)
}

func writePEM(name, typ string, der []byte, mode os.FileMode) {
	path := filepath.Join(*out, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode); err != nil {
		log.Fatal(err)
	}
	fmt.Println("wrote", path)
}

func newKey() *ecdsa.PrivateKey {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		log.Fatal(err)
	}
	return key
}

func newSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		log.Fatal(err)
	}
	return n.Add(n, big.NewInt(1))
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		log.Fatal(err)
	}
	return u
}

func date(year int, month time.Month, day int) time.Time {
	return time.Date(year, month, day, 0, 0, 0, 0, time.UTC)
}
