package inject

import (
	"errors"
	"fmt"
	"strings"
)

// Error is an injection error located in a file. The format packages
// return it; the caller adds the file name.
type Error struct {
	// Doc is the 1-based index of the YAML document, 0 when the format
	// has one document per file (Compose).
	Doc int
	// Object names the workload, e.g. `Deployment "web"` or `service "web"`.
	Object string
	// Path is the key path of the bad field, e.g.
	// spec.template.metadata.annotations["outrider.io/upstreams"].
	Path string
	// Line is the 1-based line of the bad field, 0 when unknown.
	Line int
	Err  error
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	switch {
	case e.Object != "" && e.Doc > 0:
		fmt.Fprintf(&b, "%s (document %d): ", e.Object, e.Doc)
	case e.Object != "":
		fmt.Fprintf(&b, "%s: ", e.Object)
	case e.Doc > 0:
		fmt.Fprintf(&b, "document %d: ", e.Doc)
	}
	if e.Path != "" {
		b.WriteString(e.Path + ": ")
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Locate returns err at the place e describes. A *FieldError's field is
// appended to e.Path as ["field"], and its line is line(field) when that is
// not 0.
func Locate(e Error, err error, line func(field string) int) *Error {
	e.Err = err
	var fe *FieldError
	if errors.As(err, &fe) {
		e.Path += fmt.Sprintf("[%q]", fe.Field)
		e.Err = fe.Err
		if l := line(fe.Field); l > 0 {
			e.Line = l
		}
	}
	return &e
}
