// Package confval reads values out of the opaque maps Consul hands over
// (a proxy's or an upstream's Config, as decoded from JSON or HCL): numbers
// that JSON gives as float64, strings that HCL and CLI users write instead,
// and the messages that say what was wrong. Errors carry the reason only;
// callers prefix the field.
package confval

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// Duration reads a Go duration string ("10s") or a whole number of
// nanoseconds (how Consul encodes a time.Duration); negative values are
// errors.
func Duration(v any) (time.Duration, error) {
	var d time.Duration
	if s, ok := v.(string); ok {
		x, err := time.ParseDuration(strings.TrimSpace(s))
		if err != nil {
			return 0, fmt.Errorf("%q is not a duration (want nanoseconds, or a duration such as \"10s\")", s)
		}
		d = x
	} else {
		n, isNumber, problem := Integer(v)
		switch {
		case !isNumber:
			return 0, fmt.Errorf("want nanoseconds or a duration such as \"10s\", got %s", Kind(v))
		case problem != "":
			return 0, errors.New(problem)
		}
		d = time.Duration(n)
	}
	if d < 0 {
		return 0, fmt.Errorf("negative (%s)", d)
	}
	return d, nil
}

// Count reads a whole number between 0 and limit, also as a decimal string
// (which Consul's weak decoding accepts). A limit of 100 is a percentage.
func Count(v any, limit int64) (uint32, error) {
	if s, ok := v.(string); ok {
		i, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("want a whole number, got the string %q", s)
		}
		v = i
	}
	n, isNumber, problem := Integer(v)
	switch {
	case !isNumber:
		return 0, fmt.Errorf("want a whole number, got %s", Kind(v))
	case problem != "":
		return 0, errors.New(problem)
	case n < 0:
		return 0, fmt.Errorf("negative (%d)", n)
	case n > limit && limit == 100:
		return 0, fmt.Errorf("%d is above 100 (a percentage)", n)
	case n > limit:
		return 0, fmt.Errorf("%d is above the limit %d", n, limit)
	}
	return uint32(n), nil
}

// Integer returns v as an int64 when it is a number: a float64 (as
// encoding/json decodes JSON numbers) or json.Number, which must be whole,
// or a Go integer. isNumber is false for anything else; problem says why a
// number does not fit.
func Integer(v any) (n int64, isNumber bool, problem string) {
	var f float64
	switch x := v.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i, true, ""
		}
		var err error
		if f, err = x.Float64(); err != nil {
			return 0, true, fmt.Sprintf("%q is not a number", string(x))
		}
	case float64:
		f = x
	case float32:
		f = float64(x)
	default:
		rv := reflect.ValueOf(v)
		switch rv.Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			return rv.Int(), true, ""
		case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
			if u := rv.Uint(); u <= math.MaxInt64 {
				return int64(u), true, ""
			}
			return 0, true, fmt.Sprintf("%d is out of range", rv.Uint())
		}
		return 0, false, ""
	}
	switch {
	case math.IsNaN(f) || math.IsInf(f, 0):
		return 0, true, fmt.Sprintf("%v is not a number", f)
	case f != math.Trunc(f):
		return 0, true, fmt.Sprintf("%v is not a whole number", f)
	case f >= math.MaxInt64 || f < math.MinInt64:
		return 0, true, fmt.Sprintf("%v is out of range", f)
	}
	return int64(f), true, ""
}

// Kind names v's type in JSON terms, for messages.
func Kind(v any) string {
	switch v.(type) {
	case bool:
		return "a boolean"
	case string:
		return "a string"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}
