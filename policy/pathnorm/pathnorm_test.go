package pathnorm

import (
	"errors"
	"math/rand/v2"
	"path"
	"strings"
	"testing"
)

var (
	allowEncodedSlash = Options{AllowEncodedSlash: true}
	allowBackslash    = Options{AllowBackslash: true}
	keepSlashes       = Options{KeepSlashes: true}
)

// TestBypassAdmin: every spelling an attacker might use to reach /admin past
// a rule protecting it, with what the rule (and the application) then sees.
func TestBypassAdmin(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		in   string
		o    Options
		want string
		err  error
	}{
		{name: "plain", in: "/admin", want: "/admin"},
		{name: "encoded letter %61", in: "/%61dmin", want: "/admin"},
		{name: "encoded letter %69", in: "/adm%69n", want: "/admin"},
		{name: "double slash", in: "//admin", want: "/admin"},
		{name: "double slash kept with KeepSlashes", in: "//admin", o: keepSlashes, want: "//admin"},
		{name: "slash runs inside", in: "/x///admin//", want: "/x/admin/"},
		{name: "dot segment", in: "/./admin", want: "/admin"},
		{name: "dot-dot segment", in: "/x/../admin", want: "/admin"},
		{name: "dot-dot above root", in: "/../../admin", want: "/admin"},
		{name: "trailing slash is kept, matcher decides", in: "/admin/", want: "/admin/"},
		{name: "encoded slash then dot-dot", in: "/admin%2F..", err: ErrEncodedSlash},
		{name: "encoded slash then dot-dot, lower case", in: "/admin%2f..", err: ErrEncodedSlash},
		{name: "encoded slash then dot-dot, allowed: one segment, no traversal", in: "/admin%2F..", o: allowEncodedSlash, want: "/admin%2F.."},
		{name: "encoded slash allowed: hex upper-cased", in: "/admin%2f..", o: allowEncodedSlash, want: "/admin%2F.."},
		{name: "encoded slash traversal into admin, allowed", in: "/public%2F..%2Fadmin", o: allowEncodedSlash, want: "/public%2F..%2Fadmin"},
		{name: "encoded backslash", in: "/admin%5C..", err: ErrEncodedSlash},
		{name: "encoded backslash allowed", in: "/x%5c..%5cadmin", o: allowEncodedSlash, want: "/x%5C..%5Cadmin"},
		{name: "encoded dot-dot", in: "/%2e%2e/admin", want: "/admin"},
		{name: "encoded dot-dot upper case", in: "/x/%2E%2E/admin", want: "/admin"},
		{name: "half-encoded dot-dot", in: "/.%2e/admin", want: "/admin"},
		{name: "encoded dot", in: "/x/%2e/admin", want: "/x/admin"},
		{name: "double-encoded dot-dot is not decoded", in: "/%252e%252e/admin", want: "/%252e%252e/admin"},
		{name: "double-encoded dot-dot lower hex", in: "/%252E/%2e%32e/admin", want: "/%252E/.2e/admin"},
		{name: "dot-dot with parameters", in: "/public/..;/admin", err: ErrDotParams},
		{name: "dot-dot with parameters at the end", in: "/admin/..;x", err: ErrDotParams},
		{name: "dot with parameters", in: "/.;jsessionid=1/admin", err: ErrDotParams},
		{name: "encoded dot-dot with parameters", in: "/public/%2e%2E;/admin", err: ErrDotParams},
		{name: "parameters on a name are data", in: "/a;b/..x;/c;d", want: "/a;b/..x;/c;d"},
		{name: "three dots with parameters are data", in: "/...;/x", want: "/...;/x"},
		{name: "leading backslash", in: `\admin`, err: ErrBackslash},
		{name: "leading backslash allowed is still not absolute", in: `\admin`, o: allowBackslash, err: ErrNotAbsolute},
		{name: "backslash traversal", in: `/x\..\admin`, err: ErrBackslash},
		{name: "backslash allowed is data", in: `/x\..\admin`, o: allowBackslash, want: `/x\..\admin`},
		{name: "encoded NUL", in: "/admin%00", err: ErrControl},
		{name: "raw NUL", in: "/admin\x00", err: ErrControl},
		{name: "encoded LF", in: "/admin%0a", err: ErrControl},
		{name: "encoded CR", in: "/admin%0D", err: ErrControl},
		{name: "encoded DEL", in: "/admin%7f", err: ErrControl},
		{name: "raw tab", in: "/adm\tin", err: ErrControl},
		{name: "raw DEL", in: "/admin\x7f", err: ErrControl},
		{name: "upper case is another path", in: "/ADMIN", want: "/ADMIN"},
		{name: "encoded upper case stays upper", in: "/%41DMIN", want: "/ADMIN"},
		{name: "raw UTF-8 dotless i", in: "/adm\xc4\xb1n", err: ErrInvalidChar},
		{name: "raw overlong dot", in: "/\xc0\xae\xc0\xae/admin", err: ErrInvalidChar},
		{name: "encoded UTF-8 is kept, hex upper-cased", in: "/adm%c4%b1n", want: "/adm%C4%B1n"},
		{name: "encoded overlong dot is not a dot", in: "/%c0%ae%c0%ae/admin", want: "/%C0%AE%C0%AE/admin"},
		{name: "fragment", in: "/admin#x", err: ErrInvalidChar},
		{name: "query not split off", in: "/admin?x", err: ErrInvalidChar},
		{name: "raw space", in: "/admin ", err: ErrInvalidChar},
		{name: "encoded space kept", in: "/admin%20", want: "/admin%20"},
		{name: "browser-sent raw brackets and pipe kept", in: "/a[1]|^", want: "/a[1]|^"},
		{name: "lone percent", in: "/admin%", err: ErrInvalidEscape},
		{name: "one hex digit", in: "/admin%2", err: ErrInvalidEscape},
		{name: "non-hex escape", in: "/%zzadmin", err: ErrInvalidEscape},
		{name: "nested escape", in: "/%%32%65%32%65/admin", err: ErrInvalidEscape},
		{name: "encoded tilde and unreserved", in: "/%7Euser/%2D%5f%2e%41%7a%30", want: "/~user/-_.Az0"},
		{name: "encoded percent kept", in: "/%25", want: "/%25"},
		{name: "reserved sub-delims kept encoded", in: "/a%3bb%3D", want: "/a%3Bb%3D"},
		{name: "path parameter on a name is data", in: "/x;v=1/admin", want: "/x;v=1/admin"},
		{name: "three dots are a name", in: "/.../admin", want: "/.../admin"},
		{name: "relative", in: "admin", err: ErrNotAbsolute},
		{name: "relative dot-dot", in: "../admin", err: ErrNotAbsolute},
		{name: "encoded leading slash", in: "%2Fadmin", err: ErrEncodedSlash},
		{name: "encoded leading slash allowed", in: "%2Fadmin", o: allowEncodedSlash, err: ErrNotAbsolute},
		{name: "empty", in: "", err: ErrNotAbsolute},
		{name: "asterisk-form", in: "*", want: "*"},
		{name: "asterisk is not a prefix", in: "*/admin", err: ErrNotAbsolute},
		{name: "root", in: "/", want: "/"},
		{name: "final dot-dot keeps a slash", in: "/admin/x/..", want: "/admin/"},
		{name: "final dot keeps a slash", in: "/admin/.", want: "/admin/"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := String(tc.in, tc.o)
			if !errors.Is(err, tc.err) {
				t.Fatalf("String(%q) error = %v, want %v", tc.in, err, tc.err)
			}
			if err == nil && got != tc.want {
				t.Fatalf("String(%q) = %q, want %q", tc.in, got, tc.want)
			}
			if err != nil && !strings.HasPrefix(err.Error(), "pathnorm: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
			checkAgreement(t, tc.in, tc.o)
		})
	}
}

// TestRFC3986Examples: the examples of RFC 3986 §5.2.4 and §5.4, reduced to
// their paths. A relative reference is merged with the base path
// "/b/c/d;p" (§5.2.3) before normalization, as a resolver would.
func TestRFC3986Examples(t *testing.T) {
	t.Parallel()
	const baseDir = "/b/c/"
	for _, tc := range []struct{ ref, want string }{
		// §5.2.4
		{"/a/b/c/./../../g", "/a/g"},
		{"/mid/content=5/../6", "/mid/6"},
		// §5.4.1 normal examples
		{"g", "/b/c/g"},
		{"./g", "/b/c/g"},
		{"g/", "/b/c/g/"},
		{"/g", "/g"},
		{";x", "/b/c/;x"},
		{"g;x", "/b/c/g;x"},
		{".", "/b/c/"},
		{"./", "/b/c/"},
		{"..", "/b/"},
		{"../", "/b/"},
		{"../g", "/b/g"},
		{"../..", "/"},
		{"../../", "/"},
		{"../../g", "/g"},
		// §5.4.2 abnormal examples
		{"../../../g", "/g"},
		{"../../../../g", "/g"},
		{"/./g", "/g"},
		{"/../g", "/g"},
		{"g.", "/b/c/g."},
		{".g", "/b/c/.g"},
		{"g..", "/b/c/g.."},
		{"..g", "/b/c/..g"},
		{"./../g", "/b/g"},
		{"./g/.", "/b/c/g/"},
		{"g/./h", "/b/c/g/h"},
		{"g/../h", "/b/c/h"},
		{"g;x=1/./y", "/b/c/g;x=1/y"},
		{"g;x=1/../y", "/b/c/y"},
	} {
		in := tc.ref
		if !strings.HasPrefix(in, "/") {
			in = baseDir + in
		}
		got, err := String(in, Options{})
		if err != nil || got != tc.want {
			t.Errorf("ref %q: String(%q) = %q, %v; want %q", tc.ref, in, got, err, tc.want)
		}
		checkAgreement(t, in, Options{})
	}
}

// TestCleanDifferential: on paths made only of unreserved characters and
// '/', Normalize is path.Clean except that a trailing slash is kept, and a
// final dot segment leaves one ("/a/b/.." is "/a/" where Clean gives "/a").
func TestCleanDifferential(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	const alphabet = "/./../a-b_~"
	for range 20000 {
		b := []byte{'/'}
		for range r.IntN(16) {
			b = append(b, alphabet[r.IntN(len(alphabet))])
		}
		in := string(b)
		got, err := String(in, Options{})
		if err != nil {
			t.Fatalf("String(%q): %v", in, err)
		}
		checkClean(t, in, got)
		checkAgreement(t, in, Options{})
	}
}

func checkClean(t *testing.T, in, got string) {
	t.Helper()
	want := path.Clean(in)
	last := in[strings.LastIndexByte(in, '/')+1:]
	trailing := strings.HasSuffix(in, "/") || last == "." || last == ".."
	if trailing && want != "/" {
		want += "/"
	}
	if got != want {
		t.Fatalf("String(%q) = %q; path.Clean with trailing slash kept gives %q", in, got, want)
	}
}

// checkAgreement checks the properties every input must have: String and
// Normalize agree, in place or not; the result of the fast path is what the
// rewrite would produce; an accepted path is normal and Normalize is
// idempotent on it.
func checkAgreement(t *testing.T, in string, o Options) {
	t.Helper()
	s, serr := String(in, o)
	b, berr := Normalize(nil, []byte(in), o)
	if serr != berr || string(b) != s {
		t.Fatalf("String(%q) = %q, %v but Normalize = %q, %v", in, s, serr, b, berr)
	}
	buf := []byte(in)
	b, berr = Normalize(buf[:0], buf, o)
	if berr != serr || string(b) != s {
		t.Fatalf("in place Normalize(%q) = %q, %v; want %q, %v", in, b, berr, s, serr)
	}
	if serr != nil {
		switch serr {
		case ErrNotAbsolute, ErrControl, ErrInvalidChar, ErrInvalidEscape, ErrEncodedSlash, ErrBackslash, ErrDotParams:
		default:
			t.Fatalf("String(%q): unexpected error %v", in, serr)
		}
		return
	}
	if in != "*" {
		if normal, _ := scan(in, o); normal && string(rewrite(nil, in, o)) != in {
			t.Fatalf("scan(%q) says normal but rewrite gives %q", in, rewrite(nil, in, o))
		}
	}
	if normal, err := scan(s, o); s != "*" && (err != nil || !normal) {
		t.Fatalf("String(%q) = %q, which scan calls normal=%v, err=%v", in, s, normal, err)
	}
	if again, err := String(s, o); err != nil || again != s {
		t.Fatalf("not idempotent: %q -> %q -> %q, %v", in, s, again, err)
	}
	checkOutput(t, in, s, o)
}

// checkOutput checks the shape of an accepted result.
func checkOutput(t *testing.T, in, out string, o Options) {
	t.Helper()
	if out == "*" {
		if in != "*" {
			t.Fatalf("String(%q) = %q", in, out)
		}
		return
	}
	fail := func(why string) { t.Helper(); t.Fatalf("String(%q) = %q: %s", in, out, why) }
	if !strings.HasPrefix(out, "/") {
		fail("not absolute")
	}
	for _, s := range []string{"/../", "/./"} {
		if strings.Contains(out, s) {
			fail("contains " + s)
		}
	}
	if strings.HasSuffix(out, "/..") || strings.HasSuffix(out, "/.") {
		fail("ends in a dot segment")
	}
	if !o.KeepSlashes && strings.Contains(out, "//") {
		fail(`contains "//"`)
	}
	if !o.AllowBackslash && strings.Contains(out, `\`) {
		fail("contains a backslash")
	}
	for i := 0; i < len(out); i++ {
		c := out[i]
		if c < 0x20 || c >= 0x7F {
			fail("contains a control or non-ASCII byte")
		}
		if c != '%' {
			continue
		}
		if i+2 >= len(out) || !isUpperHex(out[i+1]) || !isUpperHex(out[i+2]) {
			fail("escape without two upper-case hex digits")
		}
		v := byte(unhex(out[i+1])<<4 | unhex(out[i+2]))
		if isUnreserved(v) || v < 0x20 || v == 0x7F {
			fail("escape of an unreserved or control character")
		}
		if !o.AllowEncodedSlash && (v == '/' || v == '\\') {
			fail("encoded slash")
		}
		i += 2
	}
}

func isUpperHex(c byte) bool { return '0' <= c && c <= '9' || 'A' <= c && c <= 'F' }

func FuzzNormalize(f *testing.F) {
	for _, s := range []string{
		"/admin", "/%61dmin", "//admin", "/./admin", "/x/../admin", "/admin/",
		"/admin%2F..", "/%2e%2e/admin", "/.%2e/admin", `\admin`, "/admin%00",
		"/adm%69n", "/ADMIN", "/a/b/c/./../../g", "/..;/admin", "/%252e", "*",
		"/a//..//b/.", "/%c3%a9/%7e", `/x\..\y%5c`,
	} {
		for flags := range uint8(8) {
			f.Add(s, flags)
		}
	}
	f.Fuzz(func(t *testing.T, in string, flags uint8) {
		o := Options{
			KeepSlashes:       flags&1 != 0,
			AllowEncodedSlash: flags&2 != 0,
			AllowBackslash:    flags&4 != 0,
		}
		checkAgreement(t, in, o)
		if o == (Options{}) && strings.HasPrefix(in, "/") &&
			strings.Trim(in, "/.-_~abcxyzABC0123") == "" {
			checkClean(t, in, mustString(t, in))
		}
	})
}

func mustString(t *testing.T, in string) string {
	t.Helper()
	s, err := String(in, Options{})
	if err != nil {
		t.Fatalf("String(%q): %v", in, err)
	}
	return s
}
