package confval

import (
	"errors"
	"fmt"
)

// FieldError is a problem with one configuration field. Path is dotted and
// relative to the value that was validated ("burst",
// "routes[2].cors.allow_origins[0]"); the caller that knows where that
// value sits in a file or in Proxy.Config prefixes it (Prefix) and adds a
// line number if it has one.
type FieldError struct {
	Path string
	Msg  string
}

func (e *FieldError) Error() string {
	if e.Path == "" {
		return e.Msg
	}
	return e.Path + ": " + e.Msg
}

// Errorf returns a FieldError for path.
func Errorf(path, format string, args ...any) *FieldError {
	return &FieldError{Path: path, Msg: fmt.Sprintf(format, args...)}
}

// Fields lists the FieldErrors in err (itself, or joined with
// errors.Join, to any depth); any other error becomes one FieldError with
// an empty path.
func Fields(err error) []*FieldError {
	if err == nil {
		return nil
	}
	var fe *FieldError
	if errors.As(err, &fe) && fe == err {
		return []*FieldError{fe}
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []*FieldError
		for _, e := range j.Unwrap() {
			out = append(out, Fields(e)...)
		}
		return out
	}
	return []*FieldError{{Msg: err.Error()}}
}

// Prefix returns err with every FieldError's path under prefix (a
// struct field name, or an indexed one such as "routes[3]"), joined again.
func Prefix(prefix string, err error) error {
	fields := Fields(err)
	if len(fields) == 0 {
		return nil
	}
	errs := make([]error, len(fields))
	for i, f := range fields {
		p := prefix
		switch {
		case f.Path == "":
		case f.Path[0] == '[':
			p += f.Path
		default:
			p += "." + f.Path
		}
		errs[i] = &FieldError{Path: p, Msg: f.Msg}
	}
	return errors.Join(errs...)
}
