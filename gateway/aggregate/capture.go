package aggregate

import (
	"bytes"
	"encoding/json"
	"errors"
	"mime"
	"net/http"
	"strconv"
	"strings"
)

var errTooLarge = errors.New("aggregate: part answer exceeds max_part_bytes")

// capture is the ResponseWriter a part's upstream handler writes to: it
// keeps the status, the headers and at most max bytes of body, and fails
// the write that would go beyond (the handler then stops reading the
// upstream). It is used by the one goroutine running the handler.
type capture struct {
	header   http.Header
	code     int
	body     bytes.Buffer
	max      int64
	overflow bool
}

func (c *capture) Header() http.Header { return c.header }

// WriteHeader records the final status; 1xx answers are ignored.
func (c *capture) WriteHeader(code int) {
	if c.code != 0 || code < 200 {
		return
	}
	c.code = code
	if n, err := strconv.ParseInt(c.header.Get("Content-Length"), 10, 64); err == nil && n > c.max {
		c.overflow = true
	}
}

func (c *capture) Write(p []byte) (int, error) {
	if c.code == 0 {
		c.WriteHeader(http.StatusOK)
	}
	if c.overflow || int64(c.body.Len())+int64(len(p)) > c.max {
		c.overflow = true
		return 0, errTooLarge
	}
	return c.body.Write(p)
}

// Flush is a no-op: nothing is sent before the whole answer is in.
func (c *capture) Flush() {}

// outcome judges the captured answer: a 2xx with a JSON body (or 204,
// which stands for null) succeeds.
func (c *capture) outcome() outcome {
	code := c.code
	if code == 0 {
		code = http.StatusOK
	}
	switch {
	case c.overflow:
		return fail(502, classTooLarge, "answer is larger than max_part_bytes")
	case code < 200 || code > 299:
		o := fail(502, classStatus, "upstream answered "+strconv.Itoa(code))
		o.upstream = code
		return o
	case code == http.StatusNoContent:
		return outcome{status: code, body: []byte("null")}
	}
	if ce := c.header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		return fail(502, classInvalid, "answer is "+ce+"-encoded, not plain JSON")
	}
	if ct := c.header.Get("Content-Type"); ct != "" && !jsonish(ct) {
		return fail(502, classInvalid, "answer is "+ct+", not JSON")
	}
	b := c.body.Bytes()
	if !json.Valid(b) {
		return fail(502, classInvalid, "answer is not valid JSON")
	}
	return outcome{status: code, body: b}
}

// jsonish accepts the media types JSON is served under, leniently: JSON
// ones, and the generic text/plain and application/octet-stream some
// services send it with (the body is checked anyway).
func jsonish(ct string) bool {
	if ct == "application/json" || ct == "application/json; charset=utf-8" {
		return true
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	switch mt {
	case "application/json", "text/json", "text/plain", "application/octet-stream":
		return true
	}
	return strings.HasSuffix(mt, "+json")
}
