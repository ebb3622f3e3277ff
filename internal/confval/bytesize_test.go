package confval

import "testing"

func TestParseByteSize(t *testing.T) {
	good := map[string]ByteSize{"0": 0, "512": 512, "64KiB": 64 << 10, "10MB": 10e6, "1gib": 1 << 30, " 2 M ": 2 << 20, "7b": 7}
	for s, want := range good {
		if got, err := ParseByteSize(s); err != nil || got != want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", s, got, err, want)
		}
	}
	for _, s := range []string{"", "-1", "1.5MiB", "ten", "9223372036854775807GiB", "5 TiB"} {
		if _, err := ParseByteSize(s); err == nil {
			t.Errorf("ParseByteSize(%q) accepted", s)
		}
	}
	if s := ByteSize(64 << 10).String(); s != "64KiB" {
		t.Errorf("String = %s", s)
	}
}
