package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/outrider-mesh/outrider/mtls/devca"
)

const certUsage = `Usage: outrider cert <command> [flags]

A development SPIFFE certificate authority, for laptops, CI and demos.

Commands:
  ca     create a CA for a trust domain
  svid   issue an X.509-SVID from a CA

Run 'outrider cert <command> -h' for its flags.
`

// devCAWarning is printed on every invocation of `outrider cert`.
const devCAWarning = "outrider cert: WARNING: this is a development CA (unencrypted root key on disk, no revocation); " +
	"do not use it in production: use SPIRE or Consul's Connect CA instead"

// usageError is a bad command line: exit 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usageErrorf(format string, args ...any) error {
	return usageError{fmt.Sprintf(format, args...)}
}

// certCommand runs `outrider cert` with args (after "cert") and returns the
// exit code: 0 success, 1 failure, 2 usage error.
func certCommand(args []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, devCAWarning)
	if len(args) == 0 {
		fmt.Fprint(stderr, certUsage)
		return exitUsage
	}
	var err error
	switch args[0] {
	case "ca":
		err = certCA(args[1:], stdout, stderr)
	case "svid":
		err = certSVID(args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, certUsage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "outrider cert: unknown command %q\n\n%s", args[0], certUsage)
		return exitUsage
	}
	if _, ok := errors.AsType[usageError](err); ok {
		fmt.Fprintf(stderr, "outrider cert %s: %v\n", args[0], err)
		return exitUsage
	}
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.Is(err, errFlagParse):
		return exitUsage // the flag package printed the error and the usage
	}
	fmt.Fprintf(stderr, "outrider cert %s: %v\n", args[0], err)
	return exitFail
}

// errFlagParse marks an error the flag package already printed.
var errFlagParse = errors.New("bad flags")

// parseCertFlags parses args into fs, which prints its own errors.
func parseCertFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errFlagParse
	}
	if fs.NArg() > 0 {
		return usageErrorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	return nil
}

// certCAFlagSet declares the flags of `outrider cert ca`.
func certCAFlagSet(stderr io.Writer, td, out *string, ttl *time.Duration, force *bool) *flag.FlagSet {
	fs := flag.NewFlagSet("outrider cert ca", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(td, "trust-domain", "", "trust domain of the CA, e.g. example.org (required)")
	fs.StringVar(out, "out", "", "directory to write ca.pem, ca-key.pem (mode 0600) and bundle.pem to (required)")
	fs.DurationVar(ttl, "ttl", devca.DefaultValidity, "how long the CA is valid")
	fs.BoolVar(force, "force", false, "replace a CA already in -out")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: outrider cert ca -trust-domain <name> -out <dir> [flags]\n\nFlags:\n")
		fs.PrintDefaults()
	}
	return fs
}

func certCA(args []string, stdout, stderr io.Writer) error {
	var (
		tdName, out string
		ttl         time.Duration
		force       bool
	)
	if err := parseCertFlags(certCAFlagSet(stderr, &tdName, &out, &ttl, &force), args); err != nil {
		return err
	}
	if tdName == "" {
		return usageErrorf("-trust-domain is required")
	}
	td, err := spiffeid.TrustDomainFromString(tdName)
	if err != nil {
		return usageErrorf("-trust-domain %q: %v", tdName, err)
	}
	if out == "" {
		return usageErrorf("-out is required")
	}
	if ttl <= 0 {
		return usageErrorf("-ttl: want a positive duration, got %s", ttl)
	}
	if !force {
		for _, name := range []string{devca.CAFile, devca.CAKeyFile} {
			_, err := os.Stat(filepath.Join(out, name))
			if err == nil {
				return fmt.Errorf("%s already holds a CA (%s); use -force to replace it (SVIDs it issued will no longer verify)", out, name)
			}
			if !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
	}
	ca, err := devca.New(td, devca.WithValidity(ttl))
	if err != nil {
		return err
	}
	if err := ca.Save(out); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "created a development CA for %s, valid until %s:\n", td.ID(), ca.Root().NotAfter.UTC().Format(time.RFC3339))
	for _, name := range []string{devca.CAFile, devca.CAKeyFile, devca.BundleFile} {
		fmt.Fprintf(stdout, "  %s\n", filepath.Join(out, name))
	}
	return nil
}

// certSVIDFlags are the flags of `outrider cert svid`.
type certSVIDFlags struct {
	caDir, id, out string
	ttl            time.Duration
	dns            []string
}

func certSVIDFlagSet(stderr io.Writer, f *certSVIDFlags) *flag.FlagSet {
	fs := flag.NewFlagSet("outrider cert svid", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.caDir, "ca", "", "directory of the CA made by 'outrider cert ca' (required)")
	fs.StringVar(&f.id, "spiffe-id", "", "SPIFFE ID of the workload, in the CA's trust domain, e.g. spiffe://example.org/web (required)")
	fs.StringVar(&f.out, "out", "", "directory to write svid.pem, svid-key.pem (mode 0600) and bundle.pem to (required)")
	fs.DurationVar(&f.ttl, "ttl", 24*time.Hour, "how long the SVID is valid (cut to the CA's expiry)")
	fs.Func("dns", "a DNS name to add to the SVID (repeatable)", func(s string) error {
		if s == "" {
			return errors.New("empty DNS name")
		}
		f.dns = append(f.dns, s)
		return nil
	})
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: outrider cert svid -ca <dir> -spiffe-id <spiffe://...> -out <dir> [flags]\n\nFlags:\n")
		fs.PrintDefaults()
	}
	return fs
}

func certSVID(args []string, stdout, stderr io.Writer) error {
	var f certSVIDFlags
	if err := parseCertFlags(certSVIDFlagSet(stderr, &f), args); err != nil {
		return err
	}
	switch {
	case f.caDir == "":
		return usageErrorf("-ca is required")
	case f.id == "":
		return usageErrorf("-spiffe-id is required")
	case f.out == "":
		return usageErrorf("-out is required")
	case f.ttl <= 0:
		return usageErrorf("-ttl: want a positive duration, got %s", f.ttl)
	}
	id, err := spiffeid.FromString(f.id)
	if err != nil {
		return usageErrorf("-spiffe-id %q: %v", f.id, err)
	}
	if id.Path() == "" {
		return usageErrorf("-spiffe-id %s names a trust domain, not a workload: add a path", id)
	}
	ca, err := devca.Load(f.caDir)
	if err != nil {
		return fmt.Errorf("-ca: %w", err)
	}
	if id.TrustDomain() != ca.TrustDomain() {
		return usageErrorf("-spiffe-id %s is not in the CA's trust domain %s", id, ca.TrustDomain().Name())
	}
	svid, err := ca.Mint(id, f.ttl, f.dns...)
	if err != nil {
		return err
	}
	// The bundle first, so that a reader of -out trusts the root before it
	// loads an SVID signed by it.
	if err := devca.WriteBundle(f.out, ca.Bundle()); err != nil {
		return err
	}
	if err := devca.WriteSVID(f.out, svid); err != nil {
		return err
	}
	notAfter := svid.Certificates[0].NotAfter
	if notAfter.Equal(ca.Root().NotAfter) {
		fmt.Fprintf(stderr, "outrider cert svid: -ttl %s reaches past the CA's expiry; the SVID expires with the CA\n", f.ttl)
	}
	fmt.Fprintf(stdout, "issued %s, valid until %s:\n", id, notAfter.UTC().Format(time.RFC3339))
	for _, name := range []string{devca.SVIDFile, devca.SVIDKeyFile, devca.BundleFile} {
		fmt.Fprintf(stdout, "  %s\n", filepath.Join(f.out, name))
	}
	return nil
}
