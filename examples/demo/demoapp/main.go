// Command demoapp is the tiny HTTP service of the demo mesh. Without
// -upstream it answers "<name>\n"; with -upstream it calls that URL (the
// local Outrider upstream listener) and answers "<name> -> <upstream answer>".
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	name := flag.String("name", "app", "instance name to answer with")
	listen := flag.String("listen", "127.0.0.1:8080", "address to serve on")
	upstream := flag.String("upstream", "", "URL to call for every request (through the sidecar)")
	flag.Parse()

	client := &http.Client{Timeout: 5 * time.Second}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if *upstream == "" {
			fmt.Fprintln(w, *name)
			return
		}
		out, err := http.NewRequestWithContext(r.Context(), "GET", *upstream, nil)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		// Pass the trace context on, as an instrumented application would:
		// the call then joins the trace of the request that caused it.
		for _, h := range []string{"Traceparent", "Tracestate", "Baggage", "X-Request-Id"} {
			if v := r.Header.Get(h); v != "" {
				out.Header.Set(h, v)
			}
		}
		resp, err := client.Do(out)
		if err != nil {
			http.Error(w, fmt.Sprintf("%s -> upstream failed: %v", *name, err), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		w.WriteHeader(resp.StatusCode)
		fmt.Fprintf(w, "%s -> %s", *name, body)
	})
	srv := &http.Server{Addr: *listen, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		srv.Shutdown(context.Background())
	}()
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}
