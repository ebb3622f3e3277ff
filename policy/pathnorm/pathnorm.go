package pathnorm

import (
	"bytes"
	"errors"
)

// Errors returned by Normalize and String. Each one means the caller should
// answer 400 Bad Request.
var (
	// ErrNotAbsolute: the path is empty or does not begin with '/' (and is
	// not "*").
	ErrNotAbsolute = errors.New(`pathnorm: path does not begin with "/"`)
	// ErrControl: a control byte (0x00-0x1F, 0x7F), raw or percent-encoded.
	ErrControl = errors.New("pathnorm: control byte in path")
	// ErrInvalidChar: a raw non-ASCII byte, or a character that clients must
	// percent-encode in a path (space " # < > ? ` { }).
	ErrInvalidChar = errors.New("pathnorm: character not allowed in a path")
	// ErrInvalidEscape: a '%' not followed by two hex digits.
	ErrInvalidEscape = errors.New(`pathnorm: "%" not followed by two hex digits`)
	// ErrEncodedSlash: "%2F" or "%5C" (either case) without
	// Options.AllowEncodedSlash.
	ErrEncodedSlash = errors.New("pathnorm: encoded slash or backslash in path")
	// ErrBackslash: a raw '\' without Options.AllowBackslash.
	ErrBackslash = errors.New(`pathnorm: backslash in path`)
	// ErrDotParams: a "." or ".." segment with parameters ("/..;/admin",
	// "/%2e%2e;x/admin"). RFC 3986 reads "..;" as an ordinary segment,
	// but servlet containers (Tomcat, Jetty) and Spring drop the
	// parameters first and then apply the "..": the application would
	// route "/public/..;/admin" to "/admin" while rules see a path under
	// "/public". Always refused.
	ErrDotParams = errors.New(`pathnorm: dot segment with parameters (";") in path`)
)

// Options changes how paths are normalized. The zero value is the safe
// default; every field relaxes it, and should be set only for upstreams known
// to treat the kept bytes as plain data.
type Options struct {
	// KeepSlashes keeps runs of "/" instead of merging them into one. Only
	// for upstreams that give empty segments a meaning.
	KeepSlashes bool
	// AllowEncodedSlash accepts "%2F" and "%5C" (either case) and keeps them
	// encoded (upper-cased), never decoded. Unsafe in front of an application
	// that decodes them before routing: it would read "/public%2F..%2Fadmin"
	// as "/admin" while rules see the single segment "public%2F..%2Fadmin".
	AllowEncodedSlash bool
	// AllowBackslash accepts a raw '\' and keeps it as data. Unsafe in front
	// of an application that treats '\' as a separator (Windows servers).
	AllowBackslash bool
}

// Normalize returns the normalized form of path, the path part of an
// origin-form request target without its query, following the steps in the
// package documentation.
//
// If path is already normal, Normalize returns path itself and allocates
// nothing. Otherwise it writes the normalized path over dst[:0], growing dst
// only if its capacity is too small, and returns that: a caller that reuses
// one buffer allocates nothing once the buffer is big enough. The result is
// never longer than path, so dst may be path[:0] to normalize in place; any
// other dst must not overlap path. On error the result is nil.
func Normalize(dst, path []byte, o Options) ([]byte, error) {
	if len(path) == 1 && path[0] == '*' {
		return path, nil
	}
	normal, err := scan(path, o)
	if err != nil {
		return nil, err
	}
	if normal {
		return path, nil
	}
	return rewrite(dst, path, o), nil
}

// String is Normalize for a string. It allocates only when path is not
// already normal.
func String(path string, o Options) (string, error) {
	if path == "*" {
		return path, nil
	}
	normal, err := scan(path, o)
	if err != nil {
		return "", err
	}
	if normal {
		return path, nil
	}
	var buf [256]byte
	return string(rewrite(buf[:0], path, o)), nil
}

// Byte classes for the first step; see the package documentation.
const (
	cData      = iota // kept as is
	cSlash            // '/'
	cPercent          // '%'
	cBackslash        // '\'
	cControl          // 0x00-0x1F, 0x7F
	cInvalid          // non-ASCII, and characters clients must encode
)

var class = func() (t [256]uint8) {
	for c := range t {
		switch {
		case c < 0x20 || c == 0x7F:
			t[c] = cControl
		case c >= 0x80:
			t[c] = cInvalid
		}
	}
	for _, c := range []byte(" \"#<>?`{}") {
		t[c] = cInvalid
	}
	t['/'] = cSlash
	t['%'] = cPercent
	t['\\'] = cBackslash
	return t
}()

// scan runs the checks of every step on p (which is not "*") and reports
// whether p is already normal, that is whether rewrite would return it
// unchanged. It does not allocate.
func scan[T ~string | ~[]byte](p T, o Options) (normal bool, err error) {
	normal = true
	seg := -1 // start of the current segment; -1 before the first '/'
	for i := 0; i < len(p); i++ {
		switch class[p[i]] {
		case cData:
		case cSlash:
			if seg >= 0 {
				if dotParams(p[seg:i]) {
					return false, ErrDotParams
				}
				if (i == seg && !o.KeepSlashes) || isDotSegment(p[seg:i]) {
					normal = false
				}
			}
			seg = i + 1
		case cPercent:
			if i+2 >= len(p) {
				return false, ErrInvalidEscape
			}
			hi, lo := unhex(p[i+1]), unhex(p[i+2])
			if hi < 0 || lo < 0 {
				return false, ErrInvalidEscape
			}
			switch v := byte(hi<<4 | lo); {
			case v < 0x20 || v == 0x7F:
				return false, ErrControl
			case v == '/' || v == '\\':
				if !o.AllowEncodedSlash {
					return false, ErrEncodedSlash
				}
			case isUnreserved(v):
				normal = false
			}
			if isLowerHex(p[i+1]) || isLowerHex(p[i+2]) {
				normal = false
			}
			i += 2
		case cBackslash:
			if !o.AllowBackslash {
				return false, ErrBackslash
			}
		case cControl:
			return false, ErrControl
		default:
			return false, ErrInvalidChar
		}
	}
	if len(p) == 0 || p[0] != '/' {
		return false, ErrNotAbsolute
	}
	if dotParams(p[seg:]) {
		return false, ErrDotParams
	}
	if isDotSegment(p[seg:]) {
		normal = false
	}
	return normal, nil
}

// dotParams reports whether segment s has parameters (a ';') and what
// comes before them is "." or ".." once "%2E" is read as '.'.
func dotParams[T ~string | ~[]byte](s T) bool {
	k := -1
	for i := 0; i < len(s); i++ {
		if s[i] == ';' {
			k = i
			break
		}
	}
	if k < 0 {
		return false
	}
	dots := 0
	for i := 0; i < k; {
		switch {
		case s[i] == '.':
			i++
		case s[i] == '%' && i+2 < k && s[i+1] == '2' && (s[i+2] == 'e' || s[i+2] == 'E'):
			i += 3
		default:
			return false
		}
		dots++
	}
	return dots == 1 || dots == 2
}

// rewrite normalizes p, which scan accepted, into dst[:0]. Every step of
// the package documentation happens in this one pass: segments are decoded
// into the output as they are read, and a decoded "." or ".." is then removed
// from it as in RFC 3986 §5.2.4. The output never gets ahead of the input
// (len(out) <= i at every write), which is what makes dst == p[:0] safe.
func rewrite[T ~string | ~[]byte](dst []byte, p T, o Options) []byte {
	out := dst[:0]
	for i := 0; i < len(p); { // p[i] == '/'
		i++
		if !o.KeepSlashes {
			for i < len(p) && p[i] == '/' {
				i++
			}
		}
		mark := len(out)
		out = append(out, '/')
		for i < len(p) && p[i] != '/' {
			c := p[i]
			if c != '%' {
				out = append(out, c)
				i++
				continue
			}
			v := byte(unhex(p[i+1])<<4 | unhex(p[i+2]))
			if isUnreserved(v) {
				out = append(out, v)
			} else {
				out = append(out, '%', upperHex[v>>4], upperHex[v&0xF])
			}
			i += 3
		}
		switch seg := out[mark+1:]; {
		case len(seg) == 1 && seg[0] == '.':
			out = out[:mark]
		case len(seg) == 2 && seg[0] == '.' && seg[1] == '.':
			out = out[:mark]
			out = out[:max(bytes.LastIndexByte(out, '/'), 0)]
		default:
			continue
		}
		if i == len(p) {
			// A final dot segment leaves the directory: "/a/b/.." is "/a/".
			out = append(out, '/')
		}
	}
	return out
}

const upperHex = "0123456789ABCDEF"

func isDotSegment[T ~string | ~[]byte](s T) bool {
	return (len(s) == 1 && s[0] == '.') || (len(s) == 2 && s[0] == '.' && s[1] == '.')
}

// isUnreserved reports whether c is unreserved (RFC 3986 §2.3).
func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

func isLowerHex(c byte) bool { return 'a' <= c && c <= 'f' }

// unhex returns the value of the hex digit c, or -1.
func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c - 'a' + 10)
	case 'A' <= c && c <= 'F':
		return int(c - 'A' + 10)
	}
	return -1
}
