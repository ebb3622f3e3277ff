package main

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/outrider-mesh/outrider/internal/testutil"
)

// runCert runs `outrider cert args...` and checks that it warned that this
// is a development CA, on one line, first.
func runCert(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = certCommand(args, &out, &errOut)
	first, _, _ := strings.Cut(errOut.String(), "\n")
	if !strings.Contains(first, "development CA") || !strings.Contains(first, "production") || !strings.Contains(first, "SPIRE") {
		t.Errorf("cert %q: stderr does not start with the development CA warning:\n%s", args, errOut.String())
	}
	return code, out.String(), errOut.String()
}

func TestCertCAAndSVID(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	caDir, svidDir := filepath.Join(dir, "ca"), filepath.Join(dir, "web")

	code, stdout, stderr := runCert(t, "ca", "-trust-domain", "example.org", "-out", caDir, "-ttl", "48h")
	if code != exitOK {
		t.Fatalf("cert ca: exit %d\n%s", code, stderr)
	}
	if !strings.Contains(stdout, "spiffe://example.org") || !strings.Contains(stdout, filepath.Join(caDir, "ca-key.pem")) {
		t.Errorf("cert ca output:\n%s", stdout)
	}
	testutil.WantFileModes(t, caDir, map[string]os.FileMode{"ca.pem": 0o644, "ca-key.pem": 0o600, "bundle.pem": 0o644})

	code, stdout, stderr = runCert(t, "svid", "-ca", caDir, "-spiffe-id", "spiffe://example.org/web",
		"-out", svidDir, "-dns", "web.example.org", "-dns", "localhost")
	if code != exitOK {
		t.Fatalf("cert svid: exit %d\n%s", code, stderr)
	}
	if !strings.Contains(stdout, "issued spiffe://example.org/web") {
		t.Errorf("cert svid output:\n%s", stdout)
	}
	testutil.WantFileModes(t, svidDir, map[string]os.FileMode{"svid.pem": 0o644, "svid-key.pem": 0o600, "bundle.pem": 0o644})

	svid, err := x509svid.Load(filepath.Join(svidDir, "svid.pem"), filepath.Join(svidDir, "svid-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	td := spiffeid.RequireTrustDomainFromString("example.org")
	for _, path := range []string{filepath.Join(svidDir, "bundle.pem"), filepath.Join(caDir, "bundle.pem")} {
		bundle, err := x509bundle.Load(td, path)
		if err != nil {
			t.Fatal(err)
		}
		if id, _, err := x509svid.Verify(svid.Certificates, bundle); err != nil || id.String() != "spiffe://example.org/web" {
			t.Errorf("SVID against %s: %s, %v", path, id, err)
		}
	}
	leaf := svid.Certificates[0]
	if !slices.Equal(leaf.DNSNames, []string{"web.example.org", "localhost"}) {
		t.Errorf("DNS names %v", leaf.DNSNames)
	}
	if d := time.Until(leaf.NotAfter); d < 23*time.Hour || d > 25*time.Hour {
		t.Errorf("SVID valid for %s more, want the default 24h", d)
	}

	// A -ttl past the CA's expiry is cut, and said so.
	code, _, stderr = runCert(t, "svid", "-ca", caDir, "-spiffe-id", "spiffe://example.org/api", "-out", filepath.Join(dir, "api"), "-ttl", "72h")
	if code != exitOK || !strings.Contains(stderr, "expires with the CA") {
		t.Errorf("cert svid -ttl 72h with a 48h CA: exit %d\n%s", code, stderr)
	}
}

func TestCertCARefusesToOverwrite(t *testing.T) {
	t.Parallel()
	caDir := t.TempDir()
	if code, _, stderr := runCert(t, "ca", "-trust-domain", "example.org", "-out", caDir); code != exitOK {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	before, err := os.ReadFile(filepath.Join(caDir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runCert(t, "ca", "-trust-domain", "example.org", "-out", caDir)
	if code != exitFail || !strings.Contains(stderr, "already holds a CA") || !strings.Contains(stderr, "-force") {
		t.Fatalf("second cert ca: exit %d, want %d naming -force:\n%s", code, exitFail, stderr)
	}
	if after, _ := os.ReadFile(filepath.Join(caDir, "ca.pem")); !bytes.Equal(before, after) {
		t.Fatal("the refused run replaced ca.pem")
	}
	if code, _, stderr := runCert(t, "ca", "-trust-domain", "example.org", "-out", caDir, "-force"); code != exitOK {
		t.Fatalf("cert ca -force: exit %d\n%s", code, stderr)
	}
	if after, _ := os.ReadFile(filepath.Join(caDir, "ca.pem")); bytes.Equal(before, after) {
		t.Fatal("cert ca -force kept the old CA")
	}
}

func TestCertUsageErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	caDir := filepath.Join(dir, "ca")
	if code, _, stderr := runCert(t, "ca", "-trust-domain", "example.org", "-out", caDir); code != exitOK {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	out := filepath.Join(dir, "out")
	for _, c := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no command", nil, exitUsage, "Usage: outrider cert <command>"},
		{"unknown command", []string{"frobnicate"}, exitUsage, `unknown command "frobnicate"`},
		{"ca without trust domain", []string{"ca", "-out", out}, exitUsage, "-trust-domain is required"},
		{"ca with a bad trust domain", []string{"ca", "-trust-domain", "Example_Org!", "-out", out}, exitUsage, "-trust-domain"},
		{"ca without out", []string{"ca", "-trust-domain", "example.org"}, exitUsage, "-out is required"},
		{"ca with a negative ttl", []string{"ca", "-trust-domain", "example.org", "-out", out, "-ttl", "-1h"}, exitUsage, "-ttl"},
		{"ca with a bad ttl", []string{"ca", "-trust-domain", "example.org", "-out", out, "-ttl", "a year"}, exitUsage, "-ttl"},
		{"ca with an unknown flag", []string{"ca", "-bogus"}, exitUsage, "-bogus"},
		{"ca with a stray argument", []string{"ca", "-trust-domain", "example.org", "-out", out, "extra"}, exitUsage, "unexpected arguments: extra"},
		{"svid without ca", []string{"svid", "-spiffe-id", "spiffe://example.org/web", "-out", out}, exitUsage, "-ca is required"},
		{"svid without id", []string{"svid", "-ca", caDir, "-out", out}, exitUsage, "-spiffe-id is required"},
		{"svid without out", []string{"svid", "-ca", caDir, "-spiffe-id", "spiffe://example.org/web"}, exitUsage, "-out is required"},
		{"svid with a non-SPIFFE ID", []string{"svid", "-ca", caDir, "-spiffe-id", "https://example.org/web", "-out", out}, exitUsage, "-spiffe-id"},
		{"svid for the trust domain itself", []string{"svid", "-ca", caDir, "-spiffe-id", "spiffe://example.org", "-out", out}, exitUsage, "-spiffe-id"},
		{"svid in another trust domain", []string{"svid", "-ca", caDir, "-spiffe-id", "spiffe://other.org/web", "-out", out}, exitUsage, "-spiffe-id spiffe://other.org/web is not in the CA's trust domain example.org"},
		{"svid with an empty DNS name", []string{"svid", "-ca", caDir, "-spiffe-id", "spiffe://example.org/web", "-out", out, "-dns", ""}, exitUsage, "-dns"},
		{"svid with a zero ttl", []string{"svid", "-ca", caDir, "-spiffe-id", "spiffe://example.org/web", "-out", out, "-ttl", "0s"}, exitUsage, "-ttl"},
		{"svid from a missing CA", []string{"svid", "-ca", filepath.Join(dir, "nope"), "-spiffe-id", "spiffe://example.org/web", "-out", out}, exitFail, "-ca: "},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			code, _, stderr := runCert(t, c.args...)
			if code != c.code || !strings.Contains(stderr, c.want) {
				t.Errorf("exit %d, want %d with %q in stderr:\n%s", code, c.code, c.want, stderr)
			}
		})
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("a failed command wrote to -out")
	}
}

func TestCertHelp(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"-h"}, {"help"}, {"ca", "-h"}, {"svid", "-help"}} {
		code, stdout, stderr := runCert(t, args...)
		if code != exitOK || !strings.Contains(stdout+stderr, "Usage: outrider cert") {
			t.Errorf("cert %q: exit %d\n%s%s", args, code, stdout, stderr)
		}
	}
}
