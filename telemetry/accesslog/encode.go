package accesslog

import (
	"strconv"
	"time"
	"unicode/utf8"
)

// appendJSON appends e as one JSON object and a newline. Field names and
// presence are documented in FORMAT.md.
func appendJSON(b []byte, e *Entry) []byte {
	b = append(b, `{"start_time":"`...)
	b = appendTime(b, e.Start, 6)
	b = append(b, `","duration_ms":`...)
	b = appendMillis(b, e.Duration)
	if e.UpstreamDuration >= 0 {
		b = append(b, `,"upstream_duration_ms":`...)
		b = appendMillis(b, e.UpstreamDuration)
	}
	b = appendField(b, "direction", e.Direction, false)
	b = appendField(b, "upstream", e.Upstream, false)
	b = appendField(b, "protocol", e.Protocol, false)
	b = appendField(b, "method", e.Method, true)
	b = appendField(b, "authority", e.Authority, true)
	b = appendField(b, "path", e.Path, true)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(e.Status), 10)
	b = appendField(b, "flags", e.Flags, true)
	b = append(b, `,"rx_bytes":`...)
	b = strconv.AppendInt(b, e.RxBytes, 10)
	b = append(b, `,"tx_bytes":`...)
	b = strconv.AppendInt(b, e.TxBytes, 10)
	b = append(b, `,"attempts":`...)
	b = strconv.AppendInt(b, int64(e.Attempts), 10)
	b = appendField(b, "downstream", e.Downstream, true)
	b = appendField(b, "peer", e.Peer, true)
	b = appendField(b, "endpoint", e.Endpoint, true)
	b = appendField(b, "rule", e.Rule, true)
	b = appendField(b, "request_id", e.RequestID, true)
	b = appendField(b, "trace_id", e.TraceID, true)
	b = appendField(b, "span_id", e.SpanID, true)
	return append(b, "}\n"...)
}

// appendField appends ,"name":"value" (nothing if omitEmpty and value is
// ""). name must need no escaping.
func appendField(b []byte, name, value string, omitEmpty bool) []byte {
	if omitEmpty && value == "" {
		return b
	}
	b = append(b, `,"`...)
	b = append(b, name...)
	b = append(b, `":`...)
	return appendJSONString(b, value)
}

// appendTime appends t in UTC as RFC 3339 with digits fractional digits
// (3 or 6), like t.UTC().AppendFormat(b, "2006-01-02T15:04:05.000000Z07:00")
// at a tenth of the cost. Years outside 0..9999 fall back to AppendFormat.
func appendTime(b []byte, t time.Time, digits int) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		layout := "2006-01-02T15:04:05.000Z07:00"
		if digits == 6 {
			layout = "2006-01-02T15:04:05.000000Z07:00"
		}
		return t.AppendFormat(b, layout)
	}
	hour, minute, sec := t.Clock()
	b = appendDigits(b, year, 4)
	b = append(b, '-')
	b = appendDigits(b, int(month), 2)
	b = append(b, '-')
	b = appendDigits(b, day, 2)
	b = append(b, 'T')
	b = appendDigits(b, hour, 2)
	b = append(b, ':')
	b = appendDigits(b, minute, 2)
	b = append(b, ':')
	b = appendDigits(b, sec, 2)
	b = append(b, '.')
	frac := t.Nanosecond() / 1000 // microseconds
	if digits == 3 {
		frac /= 1000
	}
	b = appendDigits(b, frac, digits)
	return append(b, 'Z')
}

// appendDigits appends v (>= 0) zero-padded to width decimal digits.
func appendDigits(b []byte, v, width int) []byte {
	var buf [8]byte
	i := len(buf)
	for ; width > 0 || v > 0; width-- {
		i--
		buf[i] = byte('0' + v%10)
		v /= 10
	}
	return append(b, buf[i:]...)
}

// appendMillis appends d in milliseconds with microsecond precision.
func appendMillis(b []byte, d time.Duration) []byte {
	return strconv.AppendFloat(b, float64(d.Microseconds())/1000, 'f', -1, 64)
}

const hex = "0123456789abcdef"

// safe holds the ASCII bytes copied as they are, except for the space:
// printable, not '"' and not '\\'. Read only.
var safe = func() (t [utf8.RuneSelf]bool) {
	for c := '!'; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// appendJSONString appends s as a quoted JSON string. It escapes '"', '\'
// and control characters, writes each byte of invalid UTF-8 as \ufffd and
// U+2028 and U+2029 as escapes (as encoding/json does; they end lines in
// JavaScript), and copies everything else as is.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	b = appendEscaped(b, s, false)
	return append(b, '"')
}

// appendEscaped appends s with JSON string escapes and no quotes; with
// escapeSpace, a space is escaped too (\u0020).
func appendEscaped(b []byte, s string, escapeSpace bool) []byte {
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if safe[c] || c == ' ' && !escapeSpace {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	return append(b, s[start:]...)
}

// appendText appends e in the text format and a newline:
//
//	[START] "METHOD PATH PROTOCOL" STATUS FLAGS RX TX DURATION UPSTREAM_DURATION
//	"DOWNSTREAM" "PEER" "REQUEST_ID" "AUTHORITY" "ENDPOINT" DIRECTION "UPSTREAM"
//	"RULE" TRACE_ID SPAN_ID ATTEMPTS
//
// on one line; durations in whole milliseconds like Envoy's, "-" for an
// empty field. Quoted fields use JSON string escapes.
func appendText(b []byte, e *Entry) []byte {
	b = append(b, '[')
	b = appendTime(b, e.Start, 3)
	b = append(b, `] "`...)
	b = appendTextInner(b, e.Method)
	b = append(b, ' ')
	b = appendTextInner(b, e.Path)
	b = append(b, ' ')
	b = appendTextInner(b, e.Protocol)
	b = append(b, `" `...)
	b = strconv.AppendInt(b, int64(e.Status), 10)
	b = append(b, ' ')
	b = appendToken(b, e.Flags)
	b = append(b, ' ')
	b = strconv.AppendInt(b, e.RxBytes, 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, e.TxBytes, 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, e.Duration.Milliseconds(), 10)
	b = append(b, ' ')
	if e.UpstreamDuration >= 0 {
		b = strconv.AppendInt(b, e.UpstreamDuration.Milliseconds(), 10)
	} else {
		b = append(b, '-')
	}
	for _, s := range [...]string{e.Downstream, e.Peer, e.RequestID, e.Authority, e.Endpoint} {
		b = append(b, ' ')
		b = appendTextQuoted(b, s)
	}
	b = append(b, ' ')
	b = appendToken(b, e.Direction)
	b = append(b, ' ')
	b = appendTextQuoted(b, e.Upstream)
	b = append(b, ' ')
	b = appendTextQuoted(b, e.Rule)
	b = append(b, ' ')
	b = appendToken(b, e.TraceID)
	b = append(b, ' ')
	b = appendToken(b, e.SpanID)
	b = append(b, ' ')
	b = strconv.AppendInt(b, int64(e.Attempts), 10)
	return append(b, '\n')
}

// appendTextQuoted appends s quoted with JSON escapes, or "-" when empty.
func appendTextQuoted(b []byte, s string) []byte {
	if s == "" {
		return append(b, `"-"`...)
	}
	return appendJSONString(b, s)
}

// appendTextInner appends s escaped for the inside of a quoted group whose
// parts are separated by spaces: JSON escapes, a space as \u0020, and "-"
// when empty.
func appendTextInner(b []byte, s string) []byte {
	if s == "" {
		return append(b, '-')
	}
	return appendEscaped(b, s, true)
}

// appendToken appends a field written unquoted: as is when it holds only
// safe characters, "-" when empty, else quoted with JSON escapes.
func appendToken(b []byte, s string) []byte {
	if s == "" {
		return append(b, '-')
	}
	if tokenSafe(s) {
		return append(b, s...)
	}
	return appendJSONString(b, s)
}

// tokenSafe reports whether s is printable ASCII without spaces, quotes
// or backslashes.
func tokenSafe(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}
