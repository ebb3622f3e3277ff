package certs

import (
	"net/http"
	"net/netip"
	"strings"
)

// RedirectHandler answers every request with a redirect to the same host,
// path and query over HTTPS: status 301 or 308 (0 means 308), the host
// from the Host header without its port, plus httpsPort unless it is ""
// or "443". A request whose Host is missing or not a valid host name, IP
// address or port gets 400, so nothing the client sent is reflected
// beyond a validated host and an escaped path. httpsPort must be "" or a
// port number: anything else panics.
func RedirectHandler(status int, httpsPort string) http.Handler {
	if status == 0 {
		status = http.StatusPermanentRedirect
	}
	if status != http.StatusMovedPermanently && status != http.StatusPermanentRedirect {
		panic("certs: RedirectHandler status must be 301 or 308")
	}
	suffix := ""
	switch {
	case httpsPort == "" || httpsPort == "443":
	case validPort(httpsPort):
		suffix = ":" + httpsPort
	default:
		panic("certs: RedirectHandler httpsPort " + httpsPort + " is not a port number")
	}
	return &redirect{status: status, portSuffix: suffix}
}

type redirect struct {
	status     int
	portSuffix string
}

func (h *redirect) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	host, ok := redirectHost(r.Host)
	if !ok {
		http.Error(w, "invalid Host header", http.StatusBadRequest)
		return
	}
	path := r.URL.EscapedPath()
	if !strings.HasPrefix(path, "/") {
		path = "/" + path // "*" (OPTIONS) or empty
	}
	var b strings.Builder
	b.Grow(len("https://") + len(host) + len(h.portSuffix) + len(path) + 1 + len(r.URL.RawQuery))
	b.WriteString("https://")
	b.WriteString(host)
	b.WriteString(h.portSuffix)
	b.WriteString(path)
	if r.URL.RawQuery != "" {
		b.WriteByte('?')
		b.WriteString(r.URL.RawQuery)
	}
	loc := b.String()
	if !printable(loc) {
		http.Error(w, "invalid request target", http.StatusBadRequest)
		return
	}
	w.Header().Set("Location", loc)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(h.status)
	if r.Method != http.MethodHead {
		_, _ = w.Write([]byte("use HTTPS\n"))
	}
}

// redirectHost validates a Host header value and returns the host part
// without the port: a DNS name (lower-cased, trailing dot dropped), an
// IPv4 address, or a bracketed IPv6 address without zone.
func redirectHost(hostport string) (string, bool) {
	if hostport == "" || len(hostport) > 261 {
		return "", false
	}
	host, port := hostport, ""
	if hostport[0] == '[' {
		end := strings.IndexByte(hostport, ']')
		if end < 0 {
			return "", false
		}
		a, err := netip.ParseAddr(hostport[1:end])
		if err != nil || !a.Is6() || a.Zone() != "" {
			return "", false
		}
		rest := hostport[end+1:]
		if rest != "" {
			if rest[0] != ':' {
				return "", false
			}
			port = rest[1:]
		}
		host = "[" + a.String() + "]"
	} else {
		if i := strings.LastIndexByte(hostport, ':'); i >= 0 {
			host, port = hostport[:i], hostport[i+1:]
		}
		host = strings.TrimSuffix(host, ".")
		if !validHostName(host) {
			return "", false
		}
		host = strings.ToLower(host)
	}
	if port != "" && !validPort(port) {
		return "", false
	}
	return host, true
}

// validHostName accepts a DNS name (labels of letters, digits, '-' and
// '_', 1 to 63 bytes, 253 in all) or a dotted IPv4 address, which is
// such a name too.
func validHostName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	label := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.':
			if label == 0 {
				return false
			}
			label = 0
			continue
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_':
		default:
			return false
		}
		label++
		if label > 63 {
			return false
		}
	}
	return label > 0
}

// printable reports whether s has only visible ASCII: a Location header
// never carries a control character, space or raw non-ASCII byte.
func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}
