package config

import (
	"bytes"
	"encoding"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Load reads and parses the file at path; see Parse.
func Load(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(path, data)
}

// Parse decodes data, the contents of the file called name (used in error
// messages only), fills in the defaults and validates the result. The error
// lists every problem found, one per line, in file order; each is prefixed
// with "config: name:line: key.path: ".
func Parse(name string, data []byte) (*File, error) {
	f := &File{name: name, keys: map[string]keyInfo{}}
	root, err := parseYAML(data)
	if err != nil {
		return nil, err.withFile(name)
	}
	d := &decoder{keys: f.keys, bad: map[string]bool{}}
	if root != nil {
		d.budget = aliasFactor*countNodes(root) + aliasSlack
		d.value(root, reflect.ValueOf(f).Elem(), "")
	}
	f.applyDefaults()
	errs := d.errs
	for _, e := range f.validate(d.failed) {
		if !d.failed(e.path) {
			errs = append(errs, e)
		}
	}
	if len(errs) > 0 {
		slices.SortStableFunc(errs, func(a, b *fieldError) int { return a.line - b.line })
		return nil, joinErrors(errs, name)
	}
	f.compile()
	return f, nil
}

// Aliases may make Parse decode more nodes than the document has, but no
// more than aliasFactor times as many plus aliasSlack: a small file cannot
// expand into a huge configuration.
const (
	aliasFactor = 10
	aliasSlack  = 10000
)

// countNodes counts the nodes of the tree under n, aliases as one node.
func countNodes(n *yaml.Node) int {
	c := 1
	for _, k := range n.Content {
		c += countNodes(k)
	}
	return c
}

// fieldError is one problem with the value at path.
type fieldError struct {
	file string
	line int // 0: unknown
	path string
	msg  string
}

func (e *fieldError) Error() string {
	var b strings.Builder
	b.WriteString("config: ")
	if e.file != "" {
		b.WriteString(e.file)
		if e.line > 0 {
			b.WriteString(":" + strconv.Itoa(e.line))
		}
		b.WriteString(": ")
	}
	if e.path != "" {
		b.WriteString(e.path + ": ")
	}
	b.WriteString(e.msg)
	// One line per error, whatever the file or a library put in it.
	return strings.ReplaceAll(b.String(), "\n", `\n`)
}

func (e *fieldError) withFile(name string) error {
	e.file = name
	return e
}

// maxErrors bounds the errors reported at once.
const maxErrors = 100

func joinErrors(errs []*fieldError, name string) error {
	out := make([]error, 0, min(len(errs), maxErrors+1))
	for i, e := range errs {
		if i == maxErrors {
			out = append(out, &fieldError{file: name, msg: fmt.Sprintf("and %d more errors", len(errs)-i)})
			break
		}
		e.file = name
		out = append(out, e)
	}
	return errors.Join(out...)
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parseYAML parses data into its single document's root node; nil for an
// empty document.
func parseYAML(data []byte) (*yaml.Node, *fieldError) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if err == io.EOF {
			return nil, nil
		}
		return nil, syntaxError(err)
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case err == io.EOF:
	case err != nil:
		return nil, syntaxError(err)
	default:
		return nil, &fieldError{line: next.Line, msg: "only one YAML document is allowed"}
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil, nil
	}
	return doc.Content[0], nil
}

func syntaxError(err error) *fieldError {
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &fieldError{line: line, msg: m[2]}
	}
	return &fieldError{msg: strings.TrimPrefix(msg, "yaml: ")}
}

// decoder walks a YAML node tree into Go values by their yaml tags,
// recording the line of every key path and collecting every error.
type decoder struct {
	keys   map[string]keyInfo
	errs   []*fieldError
	budget int
	// bad holds the paths whose value could not be decoded: Parse drops
	// validation errors about them, which would only repeat the problem.
	bad map[string]bool
}

// nodeDecoder is implemented by types whose YAML form is not their Go
// shape.
type nodeDecoder interface {
	decodeNode(d *decoder, n *yaml.Node, path string)
}

func (d *decoder) errorf(n *yaml.Node, path, format string, args ...any) {
	d.errs = append(d.errs, &fieldError{line: n.Line, path: path, msg: fmt.Sprintf(format, args...)})
}

// badValue reports a value that could not be decoded.
func (d *decoder) badValue(n *yaml.Node, path, format string, args ...any) {
	d.errorf(n, path, format, args...)
	d.bad[path] = true
}

// failed reports whether the value at path, or one around it, could not
// be decoded: validation errors about it would only repeat the problem.
func (d *decoder) failed(path string) bool {
	for {
		if d.bad[path] {
			return true
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			return path != "" && d.bad[""]
		}
		path = path[:i]
	}
}

// resolve follows aliases and charges the node to the budget; it returns
// nil when the budget is spent.
func (d *decoder) resolve(n *yaml.Node, path string) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	d.budget--
	if d.budget == 0 {
		d.badValue(n, path, "aliases expand the document too much (more than %d times)", aliasFactor)
	}
	if d.budget <= 0 {
		return nil
	}
	return n
}

var (
	durationType = reflect.TypeFor[time.Duration]()
	textType     = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// value decodes n into v, which is settable.
func (d *decoder) value(n *yaml.Node, v reflect.Value, path string) {
	if n = d.resolve(n, path); n == nil {
		return
	}
	if nd, ok := v.Addr().Interface().(nodeDecoder); ok {
		nd.decodeNode(d, n, path)
		return
	}
	if v.Type() == durationType {
		d.duration(n, v, path)
		return
	}
	if v.Kind() != reflect.Pointer && reflect.PointerTo(v.Type()).Implements(textType) {
		if s, ok := d.scalarString(n, path, "a string"); ok && s != "" {
			if err := v.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(s)); err != nil {
				d.badValue(n, path, "%s: %v", quote(s), err)
			}
		}
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		// A section written with no value (or null) is still turned on,
		// with every default: "consul:" is "consul: {}". A null scalar is
		// left unset.
		if isNull(n) && v.Type().Elem().Kind() != reflect.Struct {
			return
		}
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		if !isNull(n) {
			d.value(n, v.Elem(), path)
		}
	case reflect.Struct:
		d.mapping(n, v, path)
	case reflect.Slice:
		d.sequence(n, v, path)
	case reflect.Map:
		d.dict(n, v, path)
	case reflect.String:
		if s, ok := d.scalarString(n, path, "a string"); ok {
			v.SetString(s)
		}
	case reflect.Bool:
		if isNull(n) {
			return
		}
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
			d.badValue(n, path, "want true or false, got %s", describe(n))
			return
		}
		var b bool
		if err := n.Decode(&b); err != nil {
			d.badValue(n, path, "want true or false, got %s", describe(n))
			return
		}
		v.SetBool(b)
	case reflect.Int:
		if isNull(n) {
			return
		}
		var i int64
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
			d.badValue(n, path, "want an integer, got %s", describe(n))
			return
		}
		if n.Decode(&i) != nil || i > math.MaxInt32 || i < math.MinInt32 {
			d.badValue(n, path, "%s is out of range", describe(n))
			return
		}
		v.SetInt(i)
	case reflect.Float64:
		if isNull(n) {
			return
		}
		var f float64
		if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!float" && n.ShortTag() != "!!int") || n.Decode(&f) != nil {
			d.badValue(n, path, "want a number, got %s", describe(n))
			return
		}
		v.SetFloat(f)
	default:
		panic(fmt.Sprintf("config: no YAML decoding for %s at %s", v.Type(), path))
	}
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// scalarString returns a scalar's text; null is "" and ok. A non-scalar
// is an error naming what was wanted.
func (d *decoder) scalarString(n *yaml.Node, path, want string) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		d.badValue(n, path, "want %s, got %s", want, describe(n))
		return "", false
	}
	switch n.ShortTag() {
	case "!!null":
		return "", true
	case "!!str", "!!int", "!!float", "!!bool":
		return n.Value, true
	}
	d.badValue(n, path, "want %s, got %s", want, describe(n))
	return "", false
}

func (d *decoder) duration(n *yaml.Node, v reflect.Value, path string) {
	if isNull(n) {
		return
	}
	want := `want a duration such as "5s" or "500ms", got %s`
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		d.badValue(n, path, want, describe(n))
		return
	}
	t, err := time.ParseDuration(n.Value)
	if err != nil {
		d.badValue(n, path, want, describe(n))
		return
	}
	v.SetInt(int64(t))
}

// mapping decodes a YAML mapping into the struct v by its fields' yaml
// tags.
func (d *decoder) mapping(n *yaml.Node, v reflect.Value, path string) {
	if isNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.badValue(n, path, "want a mapping, got %s", describe(n))
		return
	}
	fields := yamlFields(v.Type())
	written := map[string]bool{}
	var meant []string
	d.pairs(n, path, func(key string, kn, vn *yaml.Node, kpath string) {
		written[key] = true
		i, ok := fields[key]
		if !ok {
			m := d.unknownKey(kn, kpath, key, sortedKeys(fields))
			if m != "" {
				meant = append(meant, m)
			}
			return
		}
		d.value(vn, v.Field(i), kpath)
	})
	// A misspelt key is probably the one suggested: validation errors
	// about that key missing would only repeat the problem.
	for _, m := range meant {
		if !written[m] {
			d.bad[join(path, m)] = true
		}
	}
}

// unknownKey reports an unknown key and returns the known key it is
// probably a misspelling of, or "".
func (d *decoder) unknownKey(kn *yaml.Node, kpath, key string, known []string) string {
	m := closest(key, known)
	if m == "" {
		d.errorf(kn, kpath, "unknown key")
	} else {
		d.errorf(kn, kpath, "unknown key (did you mean %q?)", m)
	}
	return m
}

// pairs calls fn for each key of the mapping n, after checking the key is
// a string, is not repeated and is not a merge key. kpath is the key's path,
// whose line it records.
func (d *decoder) pairs(n *yaml.Node, path string, fn func(key string, kn, vn *yaml.Node, kpath string)) {
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		kn, vn := n.Content[i], n.Content[i+1]
		if kn = d.resolve(kn, path); kn == nil {
			return
		}
		if kn.Kind != yaml.ScalarNode || kn.ShortTag() == "!!null" {
			d.errorf(kn, path, "a key must be a string, got %s", describe(kn))
			continue
		}
		if kn.ShortTag() == "!!merge" {
			d.errorf(kn, path, "merge keys (<<) are not supported")
			continue
		}
		key := kn.Value
		kpath := join(path, key)
		if first, dup := seen[key]; dup {
			d.errorf(kn, kpath, "duplicate key (first on line %d)", first)
			continue
		}
		seen[key] = kn.Line
		d.keys[kpath] = keyInfo{line: kn.Line, null: isNull(vn)}
		fn(key, kn, vn, kpath)
	}
}

// join returns the path of key in the mapping at path. A key that is not
// plain printable ASCII is quoted in brackets: bundles["a b"].
func join(path, key string) string {
	if !plain(key) {
		return path + "[" + strconv.Quote(key) + "]"
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

func plain(key string) bool {
	if key == "" {
		return false
	}
	for i := 0; i < len(key); i++ {
		if b := key[i]; b <= ' ' || b >= 0x7f || b == '"' || b == '[' || b == ']' {
			return false
		}
	}
	return true
}

// yamlFields maps a struct type's yaml tag names to field indexes.
func yamlFields(t reflect.Type) map[string]int {
	m := map[string]int{}
	for i := range t.NumField() {
		name := yamlName(t.Field(i))
		if name != "" {
			m[name] = i
		}
	}
	return m
}

// yamlName is the key of a struct field in YAML; "" for none.
func yamlName(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name == "-" {
		return ""
	}
	return name
}

func (d *decoder) sequence(n *yaml.Node, v reflect.Value, path string) {
	if isNull(n) {
		return
	}
	if n.Kind != yaml.SequenceNode {
		d.badValue(n, path, "want a list, got %s", describe(n))
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, item := range n.Content {
		ipath := path + "[" + strconv.Itoa(i) + "]"
		d.keys[ipath] = keyInfo{line: item.Line, null: isNull(item)}
		d.value(item, s.Index(i), ipath)
	}
	v.Set(s)
}

// dict decodes a mapping with string keys into the map v.
func (d *decoder) dict(n *yaml.Node, v reflect.Value, path string) {
	if isNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.badValue(n, path, "want a mapping, got %s", describe(n))
		return
	}
	m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
	d.pairs(n, path, func(key string, _, vn *yaml.Node, kpath string) {
		e := reflect.New(v.Type().Elem()).Elem()
		d.value(vn, e, kpath)
		m.SetMapIndex(reflect.ValueOf(key), e)
	})
	v.Set(m)
}

// decodeNode accepts a list of strings or a single string.
func (p *Paths) decodeNode(d *decoder, n *yaml.Node, path string) {
	if n.Kind == yaml.ScalarNode {
		if s, ok := d.scalarString(n, path, "a path or a list of paths"); ok && s != "" {
			*p = Paths{s}
		}
		return
	}
	if n.Kind != yaml.SequenceNode {
		d.badValue(n, path, "want a path or a list of paths, got %s", describe(n))
		return
	}
	var s []string
	d.sequence(n, reflect.ValueOf(&s).Elem(), path)
	*p = s
}

// decodeNode reads a rule: a mapping with one key, allow or deny, whose
// value holds the matchers.
func (r *Rule) decodeNode(d *decoder, n *yaml.Node, path string) {
	if n.Kind != yaml.MappingNode {
		d.badValue(n, path, "want a mapping with one key, allow or deny, got %s", describe(n))
		return
	}
	actions := map[string]int{Allow: 0, Deny: 0}
	d.pairs(n, path, func(key string, kn, vn *yaml.Node, kpath string) {
		if _, ok := actions[key]; !ok {
			d.unknownKey(kn, kpath, key, sortedKeys(actions))
			return
		}
		if r.Action != "" {
			d.errorf(kn, path, "a rule has exactly one of allow or deny")
			return
		}
		r.Action = key
		if isNull(vn) {
			return // validate reports the missing matchers
		}
		d.mapping(vn, reflect.ValueOf(r).Elem(), kpath)
	})
	if r.Action == "" {
		if len(n.Content) == 0 {
			d.errorf(n, path, "a rule has exactly one of allow or deny")
		}
		d.bad[path] = true // validate would only repeat it
	}
}

// describe names a node's value for an error message.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if isNull(n) {
			return "nothing"
		}
		if !strings.HasPrefix(n.Tag, "!!") && n.Tag != "" {
			tag := n.Tag
			if !plain(tag) {
				tag = quote(tag)
			}
			return tag + " " + quote(n.Value)
		}
		if n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0 || n.ShortTag() == "!!str" || !plain(n.Value) {
			return quote(n.Value)
		}
		return n.Value
	}
	return "nothing"
}

// quote quotes s for an error message, shortened when long.
func quote(s string) string {
	const max = 80
	if len(s) > max {
		s = s[:max] + "..."
	}
	return strconv.Quote(s)
}

// closest returns the known key closest to key, or "" when none is close.
func closest(key string, known []string) string {
	best, bestDist := "", 3
	if len(key) <= 3 {
		bestDist = 2
	}
	for _, k := range known {
		if dist := editDistance(strings.ToLower(key), k); dist < bestDist {
			best, bestDist = k, dist
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, capped at 3
// plus the length difference for long inputs.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
