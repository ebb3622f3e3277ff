package config

import (
	"encoding/json"
	"errors"
	"reflect"

	"github.com/outrider-mesh/outrider/internal/confval"
)

// Validator is a section that checks itself once decoded (the gateway
// packages' Configs); its errors are confval field errors.
type Validator interface{ Validate() error }

// DecodeValue decodes v, a value of an opaque map such as Consul's
// Proxy.Config (numbers as float64, nested maps and slices), into out, a
// pointer to a struct with yaml tags, by the static file's rules: unknown
// keys are errors with a suggestion, durations are strings such as "5s".
// When out is a Validator its problems are reported too. Every error is
// prefixed with "config: " and where plus the field's path
// ("Proxy.Config.gateway.routes[0].name: ...").
func DecodeValue(where string, v any, out any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return &fieldError{path: where, msg: "not a JSON value: " + err.Error()}
	}
	root, ferr := parseYAML(data)
	if ferr != nil {
		ferr.path = where
		return ferr
	}
	d := &decoder{keys: map[string]keyInfo{}, bad: map[string]bool{}}
	if root != nil {
		d.budget = aliasFactor*countNodes(root) + aliasSlack
		d.value(root, reflect.ValueOf(out).Elem(), "")
	}
	errs := d.errs
	if val, ok := out.(Validator); ok && len(errs) == 0 {
		for _, fe := range confval.Fields(val.Validate()) {
			errs = append(errs, &fieldError{path: fe.Path, msg: fe.Msg})
		}
	}
	if len(errs) == 0 {
		return nil
	}
	out2 := make([]error, 0, len(errs))
	for _, e := range errs {
		e.line = 0
		switch {
		case e.path == "":
			e.path = where
		case e.path[0] == '[':
			e.path = where + e.path
		default:
			e.path = where + "." + e.path
		}
		out2 = append(out2, e)
	}
	return errors.Join(out2...)
}
