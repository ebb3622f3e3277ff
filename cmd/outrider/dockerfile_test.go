package main

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// No Docker engine runs where the tests run, so the Dockerfile is checked
// piece by piece: its build command is run as written (the binary must be
// static and carry the version), its runtime stage must be non-root with
// the admin port exposed, and its HEALTHCHECK must be a command the binary
// it copies accepts.
func TestDockerfile(t *testing.T) {
	raw, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(raw)
	build := regexp.MustCompile(`(?m)^RUN (CGO_ENABLED=0 go build .*) -o /out/outrider (\./cmd/outrider)$`).FindStringSubmatch(df)
	if build == nil {
		t.Fatal("no `RUN CGO_ENABLED=0 go build ... -o /out/outrider ./cmd/outrider` line in the Dockerfile")
	}
	if !strings.Contains(build[1], "-X main.version=${VERSION}") || !strings.Contains(build[1], "-trimpath") {
		t.Errorf("the build line %q does not stamp the version with -trimpath, as make build does", build[1])
	}
	for _, want := range []string{
		"FROM gcr.io/distroless/static-debian12:nonroot",
		"COPY --from=build /out/outrider /usr/local/bin/outrider",
		"USER nonroot:nonroot",
		"EXPOSE 19000",
		`ENTRYPOINT ["/usr/local/bin/outrider"]`,
	} {
		if !strings.Contains(df, want) {
			t.Errorf("the Dockerfile lacks %q", want)
		}
	}

	// The build command as the image runs it, with the ARG's value.
	bin := filepath.Join(t.TempDir(), "outrider")
	args := shellWords(strings.ReplaceAll(strings.TrimPrefix(build[1], "CGO_ENABLED=0 "), "${VERSION}", "v9.9.9-test"))
	cmd := exec.Command(args[0], append(args[1:], "-o", bin, "./cmd/outrider")...)
	cmd.Dir = "../.."
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %v\n%s", cmd.Args, err, out)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the image's binary is dynamically linked: distroless/static has no libc")
		}
	}
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "v9.9.9-test") {
		t.Errorf("version: %q, %v; want the stamped v9.9.9-test", out, err)
	}

	hc := regexp.MustCompile(`CMD \["/usr/local/bin/outrider", (.*)\]`).FindStringSubmatch(df)
	if hc == nil {
		t.Fatal("no HEALTHCHECK CMD running the binary itself")
	}
	var hcArgs []string
	for _, a := range strings.Split(hc[1], ",") {
		hcArgs = append(hcArgs, strings.Trim(strings.TrimSpace(a), `"`))
	}
	// Nothing listens on the admin port here: the check must run and fail
	// (exit 1), not be refused as a bad command line (exit 2).
	err = exec.Command(bin, hcArgs...).Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Errorf("HEALTHCHECK %v with no sidecar running: %v, want exit status 1", hcArgs, err)
	}
}

// shellWords splits a command line as the shell would, for the
// Dockerfile's RUN line: words separated by spaces, double quotes grouping.
func shellWords(line string) []string {
	var words []string
	var cur strings.Builder
	quoted, in := false, false
	for _, r := range line {
		switch {
		case r == '"':
			quoted, in = !quoted, true
		case r == ' ' && !quoted:
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteRune(r)
			in = true
		}
	}
	if in {
		words = append(words, cur.String())
	}
	return words
}
