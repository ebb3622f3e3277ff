package http1

import (
	"bufio"
	"errors"
	"strconv"
)

var errBadExtra = errors.New("http1: WriteError: extra fields must be name, value pairs of a token and a valid value")

// WriteError writes a complete minimal response for an error the proxy
// itself generates: "HTTP/1.1 <status> <text>", "Content-Type: text/plain;
// charset=utf-8", Content-Length, the extra fields (alternating names and
// values), "Connection: close" if close is true, and body followed by a
// newline. It writes nothing and returns an error if extra is not a list
// of valid pairs; otherwise it returns w's error. The caller flushes.
func WriteError(w *bufio.Writer, status int, body string, close bool, extra ...string) error {
	if len(extra)%2 != 0 || status < 100 || status > 999 {
		return errBadExtra
	}
	for i := 0; i < len(extra); i += 2 {
		if !validName(extra[i]) || !validValue(extra[i+1]) {
			return errBadExtra
		}
	}
	WriteStatusLine(w, status)
	_, _ = w.WriteString("Content-Type: text/plain; charset=utf-8\r\nContent-Length: ")
	_, _ = w.Write(strconv.AppendInt(w.AvailableBuffer(), int64(len(body)+1), 10))
	_, _ = w.WriteString("\r\n")
	for i := 0; i < len(extra); i += 2 {
		_, _ = w.WriteString(extra[i])
		_, _ = w.WriteString(": ")
		_, _ = w.WriteString(extra[i+1])
		_, _ = w.WriteString("\r\n")
	}
	if close {
		_, _ = w.WriteString("Connection: close\r\n")
	}
	_, _ = w.WriteString("\r\n")
	_, _ = w.WriteString(body)
	// bufio.Writer errors are sticky: the last write reports any of them.
	return w.WriteByte('\n')
}

// WriteStatusLine writes "HTTP/1.1 <status> <reason>\r\n" to w (errors
// are w's, sticky).
func WriteStatusLine(w *bufio.Writer, status int) {
	_, _ = w.WriteString("HTTP/1.1 ")
	_, _ = w.Write(strconv.AppendInt(w.AvailableBuffer(), int64(status), 10))
	_ = w.WriteByte(' ')
	_, _ = w.WriteString(StatusText(status))
	_, _ = w.WriteString("\r\n")
}

func validName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !tokenByte[s[i]] {
			return false
		}
	}
	return true
}

func validValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if !valueByte[s[i]] {
			return false
		}
	}
	return true
}

// StatusText returns the reason phrase for the statuses a proxy produces
// or commonly relays (the IANA registry's), "Status <code>" for others.
func StatusText(code int) string {
	switch code {
	case 100:
		return "Continue"
	case 101:
		return "Switching Protocols"
	case 200:
		return "OK"
	case 204:
		return "No Content"
	case 301:
		return "Moved Permanently"
	case 302:
		return "Found"
	case 304:
		return "Not Modified"
	case 307:
		return "Temporary Redirect"
	case 308:
		return "Permanent Redirect"
	case 400:
		return "Bad Request"
	case 401:
		return "Unauthorized"
	case 403:
		return "Forbidden"
	case 404:
		return "Not Found"
	case 405:
		return "Method Not Allowed"
	case 408:
		return "Request Timeout"
	case 411:
		return "Length Required"
	case 413:
		return "Content Too Large"
	case 414:
		return "URI Too Long"
	case 417:
		return "Expectation Failed"
	case 421:
		return "Misdirected Request"
	case 426:
		return "Upgrade Required"
	case 429:
		return "Too Many Requests"
	case 431:
		return "Request Header Fields Too Large"
	case 500:
		return "Internal Server Error"
	case 501:
		return "Not Implemented"
	case 502:
		return "Bad Gateway"
	case 503:
		return "Service Unavailable"
	case 504:
		return "Gateway Timeout"
	case 505:
		return "HTTP Version Not Supported"
	}
	return "Status " + strconv.Itoa(code)
}
