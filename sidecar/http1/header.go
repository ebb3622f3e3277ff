package http1

import "bytes"

// Get returns the value of the first field called name (ASCII
// case-insensitive) and whether there is one.
func (h *Header) Get(name string) ([]byte, bool) {
	for _, f := range h.Fields {
		if equalFold(f.Name, name) {
			return f.Value, true
		}
	}
	return nil, false
}

// Lookup returns the value of the first field called name (ASCII
// case-insensitive) and how many fields carry that name, so that a caller
// can refuse a field sent twice instead of guessing which value counts.
func (h *Header) Lookup(name string) (first []byte, n int) {
	for _, f := range h.Fields {
		if equalFold(f.Name, name) {
			if n == 0 {
				first = f.Value
			}
			n++
		}
	}
	return first, n
}

// Values returns the values of the fields called name (ASCII
// case-insensitive), in order; they view the head's buffer.
func (h *Header) Values(name string) [][]byte {
	var out [][]byte
	for _, f := range h.Fields {
		if equalFold(f.Name, name) {
			out = append(out, f.Value)
		}
	}
	return out
}

// Has reports whether a field called name (ASCII case-insensitive) exists.
func (h *Header) Has(name string) bool {
	_, ok := h.Get(name)
	return ok
}

// Add appends the field "name: value". Both are copied into storage owned
// by the head, so the new field stays valid as long as the parsed ones
// (until the head's next Read). A byte that may not appear in a field name
// (not a token character) becomes '-' and one that may not appear in a
// value (a control byte other than HTAB) becomes SP, so an edit can never
// split the head.
func (h *Header) Add(name, value string) {
	h.Fields = append(h.Fields, h.field(name, value))
}

// Set replaces every field called name (ASCII case-insensitive) with one
// "name: value", at the position of the first one (at the end if there was
// none). Arguments are copied and sanitized as by Add.
func (h *Header) Set(name, value string) {
	for i, f := range h.Fields {
		if equalFold(f.Name, name) {
			h.Fields[i] = h.field(name, value)
			h.del(name, i+1)
			return
		}
	}
	h.Add(name, value)
}

// Del removes every field called name (ASCII case-insensitive), keeping
// the order of the others.
func (h *Header) Del(name string) { h.del(name, 0) }

func (h *Header) del(name string, from int) {
	out := h.Fields[:from]
	for _, f := range h.Fields[from:] {
		if !equalFold(f.Name, name) {
			out = append(out, f)
		}
	}
	clear(h.Fields[len(out):])
	h.Fields = out
}

// field copies name and value into the arena.
func (h *Header) field(name, value string) Field {
	start := len(h.arena)
	h.arena = append(h.arena, name...)
	mid := len(h.arena)
	h.arena = append(h.arena, value...)
	end := len(h.arena)
	for i := start; i < mid; i++ {
		if !tokenByte[h.arena[i]] {
			h.arena[i] = '-'
		}
	}
	for i := mid; i < end; i++ {
		if !valueByte[h.arena[i]] {
			h.arena[i] = ' '
		}
	}
	return Field{Name: h.arena[start:mid:mid], Value: h.arena[mid:end:end]}
}

// Cookie returns the value of the first cookie called name (case-sensitive,
// as cookie names are) in the Cookie fields, without surrounding double
// quotes, and whether there is one. Pairs are separated by ';',
// whitespace around them is ignored and a name without '=' has an empty
// value, as net/http reads them; the value is not otherwise validated.
func (h *Header) Cookie(name string) ([]byte, bool) {
	for _, f := range h.Fields {
		if !equalFold(f.Name, "cookie") {
			continue
		}
		for v := f.Value; len(v) > 0; {
			var pair []byte
			if i := bytes.IndexByte(v, ';'); i >= 0 {
				pair, v = v[:i], v[i+1:]
			} else {
				pair, v = v, nil
			}
			pair = trimOWS(pair)
			key, val := pair, pair[len(pair):]
			if i := bytes.IndexByte(pair, '='); i >= 0 {
				key, val = pair[:i], pair[i+1:]
			}
			if len(key) == 0 || string(key) != name {
				continue
			}
			if len(val) > 1 && val[0] == '"' && val[len(val)-1] == '"' {
				val = val[1 : len(val)-1]
			}
			return val, true
		}
	}
	return nil, false
}
