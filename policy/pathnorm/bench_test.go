package pathnorm

import "testing"

// BenchmarkNormalize measures the per-request cost. "normal" is the common
// case and must not allocate; "work" needs every step and, with the buffer
// reused as a caller would reuse one per connection, must not allocate
// either.
func BenchmarkNormalize(b *testing.B) {
	for _, bc := range []struct{ name, path string }{
		{"normal", "/api/v1/users/12345/profile/settings"},
		{"work", "/api//v1/./users/%7euser/../%61bc/%c3%a9/x/%2e%2E/settings"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			path := []byte(bc.path)
			dst := make([]byte, 0, len(path))
			b.SetBytes(int64(len(path)))
			b.ReportAllocs()
			for b.Loop() {
				out, err := Normalize(dst, path, Options{})
				if err != nil || len(out) == 0 {
					b.Fatal(out, err)
				}
			}
		})
	}
}

func BenchmarkString(b *testing.B) {
	for _, bc := range []struct{ name, path string }{
		{"normal", "/api/v1/users/12345/profile/settings"},
		{"work", "/api//v1/./users/%7euser/../%61bc/%c3%a9/x/%2e%2E/settings"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				out, err := String(bc.path, Options{})
				if err != nil || len(out) == 0 {
					b.Fatal(out, err)
				}
			}
		})
	}
}

// TestNoAllocs holds the allocation contract that the benchmarks show.
func TestNoAllocs(t *testing.T) {
	normal := []byte("/api/v1/users/12345/profile/settings")
	work := []byte("/api//v1/./users/%7euser/../%61bc/%c3%a9/x/%2e%2E/settings")
	dst := make([]byte, 0, len(work))
	for name, p := range map[string][]byte{"normal": normal, "work": work} {
		if n := testing.AllocsPerRun(100, func() {
			if _, err := Normalize(dst, p, Options{}); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Errorf("Normalize(%s) allocates %v times", name, n)
		}
	}
	s := string(normal)
	if n := testing.AllocsPerRun(100, func() {
		if _, err := String(s, Options{}); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("String(normal) allocates %v times", n)
	}
}
