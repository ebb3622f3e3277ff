package certs

import (
	"net"
	"net/http"
	"net/url"
	"strings"
)

// RedirectHandler answers every request with a 308 to the same host,
// path and query over HTTPS on httpsPort (left out when 443). A request
// without a valid host gets 400: nothing the client sent is reflected
// into the Location header except a host name and the request target.
func RedirectHandler(httpsPort string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		host = strings.Trim(host, "[]")
		if !validHost(host) {
			http.Error(w, "missing or invalid Host", http.StatusBadRequest)
			return
		}
		if httpsPort != "443" && httpsPort != "" {
			host = net.JoinHostPort(host, httpsPort)
		} else if strings.Contains(host, ":") {
			host = "[" + host + "]"
		}
		u := url.URL{Scheme: "https", Host: host, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery}
		http.Redirect(w, r, u.String(), http.StatusPermanentRedirect)
	})
}

// validHost accepts DNS names and IP literals.
func validHost(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	if net.ParseIP(h) != nil {
		return true
	}
	for _, c := range h {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '.', c == '_':
		default:
			return false
		}
	}
	return true
}

// WithHSTS sets the store's Strict-Transport-Security header on every
// response of next (nothing when HSTS is off).
func (s *Store) WithHSTS(next http.Handler) http.Handler {
	if s.hsts == "" {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Strict-Transport-Security", s.hsts)
		next.ServeHTTP(w, r)
	})
}
