package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// waitCmd implements `outrider wait`: it polls a sidecar's /ready until it
// answers 200 (exit 0) or the timeout passes (exit 1). With -timeout 0 it
// checks once, which makes it a container health check that needs no shell.
func waitCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("outrider wait", flag.ContinueOnError)
	fs.SetOutput(stderr)
	admin := fs.String("admin-addr", "127.0.0.1:19000", "the sidecar's -admin-bind address")
	timeout := fs.Duration("timeout", time.Minute, "how long to wait; 0 checks once")
	quiet := fs.Bool("quiet", false, "print nothing on success")
	live := fs.Bool("live", false, "check /live (the process serves) instead of /ready (it can carry traffic): a liveness probe")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: outrider wait [-admin-addr host:port] [-timeout 60s] [-live]\n\n"+
			"Blocks until the sidecar is ready, so an application entrypoint can start after it:\n"+
			"  outrider wait && exec my-app\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fs.Usage()
		fmt.Fprintln(stderr, "outrider wait: unexpected arguments:", strings.Join(fs.Args(), " "))
		return exitUsage
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	url := "http://" + *admin + "/ready"
	if *live {
		url = "http://" + *admin + "/live"
	}
	var last string
	for {
		ready, why := checkReady(ctx, client, url)
		if ready {
			if !*quiet {
				fmt.Fprintln(stdout, "ready")
			}
			return exitOK
		}
		last = why
		select {
		case <-ctx.Done():
			fmt.Fprintf(stderr, "outrider wait: %s not ready after %s: %s\n", *admin, *timeout, last)
			return exitFail
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func checkReady(ctx context.Context, client *http.Client, url string) (bool, string) {
	req, err := http.NewRequestWithContext(context.WithoutCancel(ctx), http.MethodGet, url, nil)
	if err != nil {
		return false, err.Error()
	}
	resp, err := client.Do(req)
	if err != nil {
		return false, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if resp.StatusCode == http.StatusOK {
		return true, ""
	}
	return false, fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(body)))
}
