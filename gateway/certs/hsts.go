package certs

import (
	"net/http"
	"strconv"
	"time"
)

// Value is the Strict-Transport-Security header value for h
// ("max-age=31536000; includeSubDomains; preload"), "" when max_age is 0.
func (h HSTS) Value() string {
	if h.MaxAge <= 0 {
		return ""
	}
	v := "max-age=" + strconv.FormatInt(int64(h.MaxAge/time.Second), 10)
	if h.IncludeSubdomains {
		v += "; includeSubDomains"
	}
	if h.Preload {
		v += "; preload"
	}
	return v
}

// HSTS returns next with Strict-Transport-Security set on every response
// to a request that came over TLS (r.TLS set); plain HTTP responses never
// carry it (RFC 6797 section 7.2). The header is set before next runs, so
// a value an upstream adds comes second, and browsers honour only the
// first (section 8.1). With hsts off, next is returned as it is.
func (s *Store) HSTS(next http.Handler) http.Handler {
	v := s.cfg.HSTS.Value()
	if v == "" {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil {
			w.Header().Set("Strict-Transport-Security", v)
		}
		next.ServeHTTP(w, r)
	})
}
