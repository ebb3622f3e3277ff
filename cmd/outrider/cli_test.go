package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/outrider-mesh/outrider/internal/testutil/consultest"
)

func TestUsageErrorsExit2(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no command", nil, "Usage: outrider <command>"},
		{"unknown command", []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"run without target", []string{"run"}, "one of -sidecar-for, -proxy-id or -config is required"},
		{"config with a target", []string{"run", "-config", "x.yaml", "-sidecar-for", "web-1"}, "-config excludes -sidecar-for"},
		{"config that does not exist", []string{"run", "-config", "/nonexistent/outrider.yaml"}, "/nonexistent/outrider.yaml"},
		{"unknown flag", []string{"run", "-sidecar-for", "web-1", "-bogus"}, "flag provided but not defined: -bogus"},
		{"both targets", []string{"run", "-sidecar-for", "web-1", "-proxy-id", "p"}, "exclusive"},
		{"stray argument", []string{"run", "-sidecar-for", "web-1", "extra"}, "unexpected arguments: extra"},
		{"bad log level", []string{"run", "-sidecar-for", "web-1", "-log-level", "loud"}, "-log-level"},
		{"bad log format", []string{"run", "-sidecar-for", "web-1", "-log-format", "xml"}, "-log-format"},
		{"negative concurrency", []string{"run", "-sidecar-for", "web-1", "-concurrency", "-2"}, "-concurrency"},
		{"negative drain delay", []string{"run", "-sidecar-for", "web-1", "-drain-delay", "-1s"}, "-drain-delay: want 0 or more"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("CONNECT_SIDECAR_FOR", "")
			t.Setenv("CONNECT_PROXY_ID", "")
			t.Setenv("OUTRIDER_CONFIG", "")
			var stdout, stderr bytes.Buffer
			code := Main(context.Background(), tt.args, &stdout, &stderr)
			if code != exitUsage {
				t.Fatalf("exit code = %d, want %d; stderr:\n%s", code, exitUsage, stderr.String())
			}
			if !strings.Contains(stderr.String(), tt.want) {
				t.Fatalf("stderr does not contain %q:\n%s", tt.want, stderr.String())
			}
		})
	}
}

func TestParseRunAcceptsConsulSpellings(t *testing.T) {
	t.Setenv("CONNECT_SIDECAR_FOR", "")
	t.Setenv("CONNECT_PROXY_ID", "")
	for _, args := range [][]string{
		{"-sidecar-for", "web-1"},
		{"--sidecar-for", "web-1"},
		{"--sidecar-for=web-1"},
	} {
		f, err := parseRun(args, &bytes.Buffer{})
		if err != nil || f.sidecarFor != "web-1" {
			t.Errorf("parseRun(%q) = %+v, %v", args, f, err)
		}
	}
	t.Setenv("CONNECT_PROXY_ID", "web-1-sidecar-proxy")
	f, err := parseRun(nil, &bytes.Buffer{})
	if err != nil || f.proxyID != "web-1-sidecar-proxy" {
		t.Errorf("CONNECT_PROXY_ID not honoured: %+v, %v", f, err)
	}
	t.Setenv("CONNECT_PROXY_ID", "")
	t.Setenv("CONNECT_SIDECAR_FOR", "api-2")
	f, err = parseRun(nil, &bytes.Buffer{})
	if err != nil || f.sidecarFor != "api-2" {
		t.Errorf("CONNECT_SIDECAR_FOR not honoured: %+v, %v", f, err)
	}
}

func TestVersion(t *testing.T) {
	var stdout bytes.Buffer
	if code := Main(context.Background(), []string{"version"}, &stdout, &bytes.Buffer{}); code != exitOK {
		t.Fatalf("exit code %d", code)
	}
	if !strings.HasPrefix(stdout.String(), "outrider "+version+" ") {
		t.Fatalf("version output %q", stdout.String())
	}
}

// A service with no sidecar registration is a configuration error: a clear
// message and a non-zero exit, not an endless retry.
func TestRunWithoutRegistrationExits1(t *testing.T) {
	a := consultest.Start(t)
	t.Setenv("CONSUL_HTTP_ADDR", a.HTTPAddr)
	t.Setenv("CONNECT_SIDECAR_FOR", "")
	t.Setenv("CONNECT_PROXY_ID", "")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var stderr bytes.Buffer
	code := Main(ctx, []string{"run", "-sidecar-for", "nobody-1", "-admin-bind", "127.0.0.1:0"}, &bytes.Buffer{}, &stderr)
	if code != exitFail {
		t.Fatalf("exit code = %d, want %d; stderr:\n%s", code, exitFail, stderr.String())
	}
	if !strings.Contains(stderr.String(), `service \"nobody-1\" has no sidecar proxy registered`) {
		t.Fatalf("stderr does not explain the missing registration:\n%s", stderr.String())
	}
}

func TestConcurrency(t *testing.T) {
	tests := []struct {
		flag    int
		env     string
		want    int
		wantErr bool
	}{
		{0, "", 1, false},
		{0, "3", 3, false},
		{2, "3", 2, false},
		{0, "many", 0, true},
		{0, "0", 0, true},
		{-1, "", 0, true},
	}
	for _, tt := range tests {
		got, err := concurrency(tt.flag, tt.env)
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("concurrency(%d, %q) = %d, %v; want %d, error %v", tt.flag, tt.env, got, err, tt.want, tt.wantErr)
		}
	}
}
