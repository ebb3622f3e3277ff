// Package pathnorm normalizes the path of an HTTP request target before any
// L7 authorization rule is matched against it. The normalized path is also
// what the sidecar forwards, so the rule and the application see the same
// path: a rule protecting /admin cannot be bypassed by spelling /admin
// differently (/%61dmin, //admin, /x/../admin, /%2e%2e/admin, ...).
//
// The caller is the sidecar's request path, once per request, on the
// request's goroutine. Normalize is a pure function: it does not block, keeps
// no state and is safe for concurrent use. An error means the request is
// malformed or deliberately ambiguous; the caller answers 400 and logs the
// error once. All errors are the package's sentinel values, for errors.Is.
//
// # Steps
//
// Normalize applies these steps, in this order, to the path part of an
// origin-form request target (RFC 9112 §3.2.1: the caller has already split
// off "?query"):
//
//  1. Reject bytes that may not appear in a path (RFC 3986 §3.3): control
//     bytes (0x00-0x1F, 0x7F) with ErrControl; raw non-ASCII bytes and the
//     characters conforming clients always percent-encode (space, '"', '#',
//     '<', '>', '?', '`', '{', '}'; the WHATWG URL path percent-encode set)
//     with ErrInvalidChar. The raw gen-delims '[' ']' and the characters '^'
//     '|', which RFC 3986 disallows but browsers send unencoded, are kept.
//  2. Validate every '%': it must be followed by two hex digits (RFC 3986
//     §2.1), else ErrInvalidEscape. A percent-encoded control byte (%00-%1F,
//     %7F) is ErrControl: an application that decodes "/admin%00" may see
//     "/admin" through C-string truncation, and encoded CR/LF have split
//     matchers from applications before.
//  3. Decode percent-encoded unreserved characters (ALPHA DIGIT "-" "." "_"
//     "~", RFC 3986 §2.3, §6.2.2.2) and write the hex digits of every escape
//     kept in upper case (§2.1, §6.2.2.1). Nothing else is ever decoded:
//     "%25" stays "%25", so double encoding cannot turn into a dot segment.
//  4. Reject an encoded slash or backslash ("%2F", "%5C" in either case)
//     with ErrEncodedSlash, unless Options.AllowEncodedSlash keeps them
//     encoded. They are never decoded, so with AllowEncodedSlash
//     "/admin%2F.." stays one segment "admin%2F.." and never becomes a
//     traversal here.
//  5. Reject a raw backslash with ErrBackslash unless Options.AllowBackslash;
//     when allowed it is data, not a separator. Reject a "." or ".."
//     segment with parameters ("/..;/admin", "%2e" counting as '.') with
//     ErrDotParams: servlet containers apply such a segment after dropping
//     its parameters, a traversal rules would not see.
//  6. Merge runs of "/" into one "/" unless Options.KeepSlashes (RFC 3986
//     gives empty segments a meaning, but most applications and routers
//     ignore them, so matching must too).
//  7. Remove dot segments (RFC 3986 §5.2.4). This runs after decoding, so
//     "%2e%2e" and ".%2E" count as "..". Dot segments above the root are
//     dropped ("/../admin" is "/admin").
//
// When a path has several faults the error names the leftmost faulty byte.
// A path whose bytes are all acceptable but which does not begin with '/' is
// ErrNotAbsolute; the asterisk-form target "*" (RFC 9112 §3.2.4) is returned
// unchanged.
//
// # What is not normalized
//
// Case is not folded: paths are case-sensitive (RFC 3986 §6.2.2.1 lowers
// only the scheme and host, and upper-cases only the hex digits of escapes),
// so "/ADMIN" is a different path from "/admin". A rule that must also cover
// case-insensitive applications has to say so in the matcher.
//
// A trailing slash is kept: "/admin/" is not "/admin", and as in §5.2.4 a
// final dot segment leaves one ("/a/b/.." is "/a/", "/a/." is "/a/"). This is
// the one difference from path.Clean on paths of unreserved characters and
// '/'. Whether a rule for "/admin" also covers "/admin/" and "/admin/x" is the
// matcher's decision (segment-wise prefix matching), not this package's.
//
// The empty path is ErrNotAbsolute: in origin-form a client must send "/"
// for an empty path (RFC 9112 §3.2.1), so the caller of an absolute-form
// target supplies "/" itself.
//
// Path parameters are data: "/..;/admin" has a segment "..;" that is not a
// dot segment, so the result is "/..;/admin". Applications that strip ";"
// parameters before routing (Java servlet containers) would see "/admin";
// rules in front of such applications need a matcher option for it.
package pathnorm
