// Package yamlnode reads and edits yaml.Node trees in place, so that what
// the injector does not touch (comments, key order, styles) survives.
//
// Readers follow an alias to its anchor, one hop; they never expand merge
// keys (<<), so values that come only from a merged anchor are not seen.
package yamlnode

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"go.yaml.in/yaml/v3"
)

// Resolve follows an alias node to the node it names.
func Resolve(n *yaml.Node) *yaml.Node {
	if n != nil && n.Kind == yaml.AliasNode {
		return n.Alias
	}
	return n
}

// Get returns the value of key in mapping m, nil when m is not a mapping
// or has no such key.
func Get(m *yaml.Node, key string) *yaml.Node {
	_, v := Entry(m, key)
	return v
}

// Entry returns the key and value nodes of key in mapping m.
func Entry(m *yaml.Node, key string) (k, v *yaml.Node) {
	m = Resolve(m)
	if m == nil || m.Kind != yaml.MappingNode {
		return nil, nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Kind == yaml.ScalarNode && m.Content[i].Value == key {
			return m.Content[i], Resolve(m.Content[i+1])
		}
	}
	return nil, nil
}

// Path follows keys from m.
func Path(m *yaml.Node, keys ...string) *yaml.Node {
	for _, k := range keys {
		m = Get(m, k)
	}
	return m
}

// String returns the value of a scalar, "" for anything else.
func String(n *yaml.Node) string {
	n = Resolve(n)
	if n == nil || n.Kind != yaml.ScalarNode {
		return ""
	}
	return n.Value
}

// Items returns the items of a sequence, resolved; nil for anything else.
func Items(n *yaml.Node) []*yaml.Node {
	n = Resolve(n)
	if n == nil || n.Kind != yaml.SequenceNode {
		return nil
	}
	out := make([]*yaml.Node, len(n.Content))
	for i, c := range n.Content {
		out[i] = Resolve(c)
	}
	return out
}

// StringMap reads a mapping of scalars (annotations, labels). In Compose's
// list form ["k=v", ...] it splits each item at the first "=".
func StringMap(n *yaml.Node) map[string]string {
	n = Resolve(n)
	out := map[string]string{}
	if n == nil {
		return out
	}
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			out[n.Content[i].Value] = String(n.Content[i+1])
		}
	case yaml.SequenceNode:
		for _, item := range Items(n) {
			k, v, _ := bytes.Cut([]byte(String(item)), []byte("="))
			out[string(k)] = string(v)
		}
	}
	return out
}

// KeyLine returns the line of the entry key in mapping m (Compose's list
// form: the item "key=..."), else the line of m, else 0.
func KeyLine(m *yaml.Node, key string) int {
	if k, _ := Entry(m, key); k != nil {
		return k.Line
	}
	for _, item := range Items(m) {
		if s := String(item); s == key || bytes.HasPrefix([]byte(s), []byte(key+"=")) {
			return item.Line
		}
	}
	if m != nil {
		return m.Line
	}
	return 0
}

// Set sets key in mapping m to v, replacing a value or appending the entry.
func Set(m *yaml.Node, key string, v *yaml.Node) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			m.Content[i+1] = v
			return
		}
	}
	m.Content = append(m.Content, Scalar(key), v)
}

// Scalar is a plain string scalar; the encoder quotes it when needed.
func Scalar(s string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s}
}

// Mapping is an empty block mapping.
func Mapping() *yaml.Node {
	return &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
}

// MustEncode converts v (structs with yaml tags) to a node. v is built by
// the injector, so failing is a bug.
func MustEncode(v any) *yaml.Node {
	var n yaml.Node
	if err := n.Encode(v); err != nil {
		panic(fmt.Sprintf("yamlnode: encoding %T: %v", v, err))
	}
	return &n
}

// Decode reads every document of data. The error names the 1-based
// document that failed.
func Decode(data []byte) ([]*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []*yaml.Node
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", len(docs)+1, err)
		}
		docs = append(docs, &n)
	}
}

// Encode writes docs as a YAML stream with two-space indentation.
func Encode(docs []*yaml.Node) ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	for _, d := range docs {
		if err := enc.Encode(d); err != nil {
			return nil, err
		}
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Rewrite decodes the documents of data and lets edit change them in
// place. It returns data itself when edit reports no change, so a file
// with nothing to do keeps its exact bytes; else the edited documents.
func Rewrite(data []byte, edit func([]*yaml.Node) (changed bool, err error)) ([]byte, error) {
	docs, err := Decode(data)
	if err != nil {
		return nil, err
	}
	changed, err := edit(docs)
	if err != nil || !changed {
		return data, err
	}
	return Encode(docs)
}
