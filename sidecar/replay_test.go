package sidecar

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"
)

func TestReplayBodyGivesEachAttemptTheWholeBody(t *testing.T) {
	body := []byte("the request body, sent twice")
	rb := newReplayBody(io.NopCloser(bytes.NewReader(body)))
	a1 := rb.attempt()
	part := make([]byte, 7)
	if n, err := a1.Read(part); n != 7 || err != nil {
		t.Fatalf("first attempt read %d, %v", n, err)
	}
	a2 := rb.attempt() // the first is abandoned
	if _, err := a1.Read(part); !errors.Is(err, errAttemptAbandoned) {
		t.Errorf("abandoned attempt read: %v, want errAttemptAbandoned", err)
	}
	got, err := io.ReadAll(a2)
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("second attempt read %q, %v; want the whole body", got, err)
	}
	if !rb.replayable() {
		t.Error("a small body is not replayable")
	}
	a2.Close()
	got, err = io.ReadAll(rb.attempt()) // a third, after the end was seen
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("third attempt read %q, %v", got, err)
	}
}

// The abandoned attempt's transport may still be inside the client's Read
// when the next attempt starts: the bytes it gets are kept for the next.
func TestReplayBodyAbandonedReaderInFlight(t *testing.T) {
	pr, pw := io.Pipe()
	rb := newReplayBody(pr)
	a1 := rb.attempt()
	first := make(chan error, 1)
	go func() {
		_, err := a1.Read(make([]byte, 64))
		first <- err
	}()
	time.Sleep(20 * time.Millisecond) // let a1 block in the pipe's Read
	a2 := rb.attempt()
	second := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(a2)
		second <- b
	}()
	pw.Write([]byte("hello "))
	if err := <-first; !errors.Is(err, errAttemptAbandoned) {
		t.Errorf("the abandoned read returned %v", err)
	}
	pw.Write([]byte("world"))
	pw.Close()
	if got := string(<-second); got != "hello world" {
		t.Fatalf("the current attempt read %q, want %q", got, "hello world")
	}
}

func TestReplayBodyPastTheLimitIsNotReplayable(t *testing.T) {
	body := bytes.Repeat([]byte{'x'}, maxReplayBody+1)
	rb := newReplayBody(io.NopCloser(bytes.NewReader(body)))
	got, err := io.ReadAll(rb.attempt())
	if err != nil || len(got) != len(body) {
		t.Fatalf("read %d bytes, %v: a body past the limit must still stream whole", len(got), err)
	}
	if rb.replayable() {
		t.Fatal("a body past the limit is replayable")
	}
	if _, err := rb.attempt().Read(make([]byte, 1)); err == nil {
		t.Error("an attempt after the limit read bytes that are gone")
	}
}

func TestReplayBodyKeepsTheSourceError(t *testing.T) {
	boom := errors.New("client reset")
	rb := newReplayBody(io.NopCloser(io.MultiReader(bytes.NewReader([]byte("ab")), errReader{boom})))
	if _, err := io.ReadAll(rb.attempt()); !errors.Is(err, boom) {
		t.Fatalf("first attempt: %v, want the client's error", err)
	}
	b, err := io.ReadAll(rb.attempt())
	if string(b) != "ab" || !errors.Is(err, boom) {
		t.Fatalf("second attempt: %q, %v", b, err)
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }
