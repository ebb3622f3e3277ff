package main

import (
	"flag"
	"io"
	"os"
	"regexp"
	"strings"
	"testing"
)

// The README's command reference and the binary's flags cannot drift:
// every flag of `outrider run` is documented, and every flag the README's
// command-line table names exists.
func TestREADMEDocumentsEveryRunFlag(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	var f runFlags
	fs := runFlagSet(&f, io.Discard)
	defined := map[string]bool{}
	fs.VisitAll(func(fl *flag.Flag) {
		defined[fl.Name] = true
		if !regexp.MustCompile(`-` + regexp.QuoteMeta(fl.Name) + `\b`).MatchString(readme) {
			t.Errorf("README does not document -%s", fl.Name)
		}
	})

	start := strings.Index(readme, "### Command line")
	if start < 0 {
		t.Fatal(`README has no "### Command line" section`)
	}
	section := readme[start:]
	section = section[:strings.Index(section[3:], "\n### ")+3]
	for _, line := range strings.Split(section, "\n") {
		if !strings.HasPrefix(line, "| `-") {
			continue
		}
		first := strings.SplitN(line, "|", 3)[1]
		for _, m := range regexp.MustCompile("`--?([a-z0-9][a-z0-9-]*)").FindAllStringSubmatch(first, -1) {
			if !defined[m[1]] {
				t.Errorf("README's command-line table names -%s, which `outrider run` does not define", m[1])
			}
		}
	}
}

// The README's injection section documents every flag of `outrider inject`
// and `outrider webhook`.
func TestREADMEDocumentsInjectionFlags(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	start := strings.Index(readme, "## Injection")
	if start < 0 {
		t.Fatal(`README has no "## Injection" section`)
	}
	section := readme[start:]
	section = section[:strings.Index(section[3:], "\n## ")+3]
	var fi injectFlags
	var fw webhookFlags
	for _, fs := range []*flag.FlagSet{injectFlagSet(&fi, io.Discard), webhookFlagSet(&fw, io.Discard)} {
		fs.VisitAll(func(fl *flag.Flag) {
			if !regexp.MustCompile("`-" + regexp.QuoteMeta(fl.Name) + `\b`).MatchString(section) {
				t.Errorf("README's injection section does not document %s -%s", fs.Name(), fl.Name)
			}
		})
	}
}
