package confval

import (
	"errors"
	"testing"
)

func TestFieldErrors(t *testing.T) {
	err := errors.Join(Errorf("burst", "must be at least 1"), errors.Join(Errorf("[0]", "bad"), errors.New("plain")))
	got := Prefix("routes[2].rate_limit", err)
	want := "routes[2].rate_limit.burst: must be at least 1\nroutes[2].rate_limit[0]: bad\nroutes[2].rate_limit: plain"
	if got.Error() != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	if Prefix("x", nil) != nil {
		t.Fatal("nil error prefixed into an error")
	}
	if n := len(Fields(got)); n != 3 {
		t.Fatalf("%d fields", n)
	}
}
