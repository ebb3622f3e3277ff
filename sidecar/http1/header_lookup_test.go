package http1

import "testing"

func TestHeaderLookupAndValues(t *testing.T) {
	var h Header
	h.Add("X-Tenant", "a")
	h.Add("Cookie", "x=1")
	h.Add("x-tenant", "b")
	if v, n := h.Lookup("X-TENANT"); string(v) != "a" || n != 2 {
		t.Errorf("Lookup = %q, %d; want a, 2", v, n)
	}
	if v, n := h.Lookup("Absent"); v != nil || n != 0 {
		t.Errorf("Lookup(absent) = %q, %d", v, n)
	}
	if vs := h.Values("x-Tenant"); len(vs) != 2 || string(vs[1]) != "b" {
		t.Errorf("Values = %q", vs)
	}
}
