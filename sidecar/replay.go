package sidecar

import (
	"errors"
	"io"
	"sync"
)

// maxReplayBody is how much of a request body is kept so that a retry can
// send it again (Envoy keeps up to its per-request buffer limit). A request
// whose body grows past it is not retried after its first byte went out;
// connect failures, when nothing was sent, still are.
const maxReplayBody = 64 << 10

var errAttemptAbandoned = errors.New("sidecar: request body: attempt abandoned for a retry")

// replayBody lets the attempts at one HTTP/2 request read the client's
// body in turn: bytes read from the client are kept (up to maxReplayBody)
// and a later attempt reads them again before reading on. It streams: an
// attempt reads the client's body as its transport asks, so a gRPC stream
// that never ends is fine (it is simply not replayable once past the
// limit).
//
// Only one goroutine reads the client's body at a time. The transport of
// an abandoned attempt may still be inside that read when the next
// attempt starts (RoundTrip may close a body after returning): the next
// attempt waits for it, and the bytes it got are kept for the next one.
type replayBody struct {
	src io.ReadCloser

	mu      sync.Mutex
	cond    sync.Cond
	kept    []byte // the first n bytes of the body, while n <= maxReplayBody
	n       int64  // bytes read from src
	over    bool   // n passed maxReplayBody: kept is dropped
	srcErr  error  // src's terminal error (io.EOF at the end)
	reading bool   // a goroutine is inside src.Read
	cur     *attemptBody
}

func newReplayBody(src io.ReadCloser) *replayBody {
	rb := &replayBody{src: src}
	rb.cond.L = &rb.mu
	return rb
}

// attempt returns the body for the next attempt; the previous one's reads
// fail from now on.
func (rb *replayBody) attempt() io.ReadCloser {
	rb.mu.Lock()
	defer rb.mu.Unlock()
	a := &attemptBody{rb: rb}
	rb.cur = a
	rb.cond.Broadcast()
	return a
}

// replayable reports whether a new attempt can send the whole body read so
// far again.
func (rb *replayBody) replayable() bool {
	rb.mu.Lock()
	defer rb.mu.Unlock()
	return !rb.over
}

// Close closes the client's body (the request is over).
func (rb *replayBody) Close() error { return rb.src.Close() }

// attemptBody is one attempt's view of a replayBody.
type attemptBody struct {
	rb  *replayBody
	off int64
}

func (a *attemptBody) Read(p []byte) (int, error) {
	rb := a.rb
	rb.mu.Lock()
	defer rb.mu.Unlock()
	for {
		if rb.cur != a {
			return 0, errAttemptAbandoned
		}
		if a.off < rb.n {
			if rb.over {
				// Bytes this attempt never saw are gone.
				return 0, errors.New("sidecar: request body: past the replay buffer")
			}
			n := copy(p, rb.kept[a.off:])
			a.off += int64(n)
			return n, nil
		}
		if rb.srcErr != nil {
			return 0, rb.srcErr
		}
		if !rb.reading {
			break
		}
		rb.cond.Wait() // an abandoned attempt is reading: its bytes will be kept
	}
	rb.reading = true
	rb.mu.Unlock()
	n, err := rb.src.Read(p)
	rb.mu.Lock()
	rb.reading = false
	rb.cond.Broadcast()
	if n > 0 {
		rb.n += int64(n)
		if !rb.over && rb.n <= maxReplayBody {
			rb.kept = append(rb.kept, p[:n]...)
		} else {
			rb.over, rb.kept = true, nil
		}
	}
	if err != nil {
		rb.srcErr = err
	}
	if rb.cur != a {
		// Abandoned while reading: the bytes are kept (if they fit) for
		// the attempt now current; this one reports nothing more.
		return 0, errAttemptAbandoned
	}
	a.off += int64(n)
	if n > 0 {
		return n, nil // err, if any, again at the next call
	}
	return 0, err
}

// Close ends this attempt's reads; the client's body stays open for the
// next attempt.
func (a *attemptBody) Close() error {
	rb := a.rb
	rb.mu.Lock()
	if rb.cur == a {
		rb.cur = nil
	}
	rb.cond.Broadcast()
	rb.mu.Unlock()
	return nil
}
