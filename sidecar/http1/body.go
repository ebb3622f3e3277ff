package http1

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
)

// Chunked framing limits, net/http's (net/http/internal/chunked.go and
// transfer.go): a chunk-size line shorter than 4 KiB, at most 16 KiB of
// framing overhead beyond what the data pays for, and a trailer section
// that ends (with CRLF CRLF) within 4 KiB.
const (
	maxChunkLine    = 4096
	maxChunkExcess  = 16 << 10
	maxTrailerBytes = 4096
)

// copyBufSize is the pooled buffer CopyBody reads large bodies into when
// src's buffer is empty, so big transfers take few system calls.
const copyBufSize = 32 << 10

var copyBufs = sync.Pool{New: func() any { return new([copyBufSize]byte) }}

// ErrBodyFraming is wrapped, with ErrBodySource, by CopyBody errors for a
// body whose framing is malformed (a bad chunk-size line, chunk data not
// followed by CRLF, a bad or oversized trailer section), as opposed to a
// body cut short or an I/O failure. A proxy answers it with 400 for a
// request body and treats it as an upstream failure (502) for a response.
var ErrBodyFraming = errors.New("malformed body framing")

// Framing errors in a chunked body.
var (
	errChunkLine     = fmt.Errorf("%w: malformed chunk-size line", ErrBodyFraming)
	errChunkTooLong  = fmt.Errorf("%w: chunk-size line too long", ErrBodyFraming)
	errChunkSize     = fmt.Errorf("%w: invalid chunk size", ErrBodyFraming)
	errChunkData     = fmt.Errorf("%w: chunk data not followed by CRLF", ErrBodyFraming)
	errChunkOverhead = fmt.Errorf("%w: chunked encoding contains too much non-data", ErrBodyFraming)
	errTrailer       = fmt.Errorf("%w: malformed or oversized trailer section", ErrBodyFraming)
	errBadPair       = errors.New("http1: CopyBody: unsupported framing pair")
)

// bodyError is a CopyBody failure: side is ErrBodySource or ErrBodyDest.
type bodyError struct {
	side, err error
}

func (e *bodyError) Error() string   { return e.side.Error() + ": " + e.err.Error() }
func (e *bodyError) Unwrap() []error { return []error{e.side, e.err} }

func srcErr(err error) error {
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return &bodyError{ErrBodySource, err}
}

func dstErr(err error) error { return &bodyError{ErrBodyDest, err} }

// CopyBody copies one message body from src, framed as in (n bytes for
// BodyLength), to dst framed as out, and returns the number of payload
// bytes copied. Supported pairs: Length to Length (same n), Length,
// Chunked or UntilClose to Chunked or UntilClose, and None to None.
// Chunked input is validated as net/http's chunked reader validates it;
// Chunked to Chunked re-emits every chunk with a canonical size line (no
// extensions) and the trailer section, its fields validated and written
// in canonical form; Chunked to UntilClose drops the trailer.
//
// It streams: it holds at most one buffer of the body, and flushes dst
// whenever the next read of src would block (src.Buffered() == 0), so
// event streams flow through at once; it flushes dst before returning
// successfully. It reads from src's own buffer, or for large reads a
// pooled buffer, and allocates nothing on success. src should have a
// buffer of at least 4 KiB (the default): a chunk-size line or trailer
// section that does not fit is rejected.
//
// A failure wraps ErrBodySource (a read error; a framing error, which also
// wraps ErrBodyFraming; or a body cut short, which also wraps
// io.ErrUnexpectedEOF) or ErrBodyDest (a write error), for errors.Is.
// After a failure the connections are out of sync and must be closed.
func CopyBody(dst *bufio.Writer, src *bufio.Reader, in BodyKind, n int64, out BodyKind) (int64, error) {
	c := copier{dst: dst, src: src, reframe: out == BodyChunked && in != BodyChunked}
	var err error
	switch {
	case in == BodyNone && out == BodyNone:
	case in == BodyLength && out == BodyLength,
		in == BodyLength && (out == BodyChunked || out == BodyUntilClose):
		if n < 0 {
			return 0, errBadPair
		}
		err = c.copyN(uint64(n), false)
	case in == BodyUntilClose && (out == BodyChunked || out == BodyUntilClose):
		err = c.copyN(0, true)
	case in == BodyChunked && (out == BodyChunked || out == BodyUntilClose):
		c.chunksOut = out == BodyChunked
		err = c.chunked()
	default:
		return 0, errBadPair
	}
	if c.buf != nil {
		copyBufs.Put(c.buf)
	}
	if err != nil {
		return c.n, err
	}
	if c.reframe {
		if _, err := dst.WriteString("0\r\n\r\n"); err != nil {
			return c.n, dstErr(err)
		}
	}
	if err := dst.Flush(); err != nil {
		return c.n, dstErr(err)
	}
	return c.n, nil
}

type copier struct {
	dst       *bufio.Writer
	src       *bufio.Reader
	buf       *[copyBufSize]byte // from copyBufs, taken on first use
	reframe   bool               // wrap each piece of data in a chunk
	chunksOut bool               // chunked in, chunked out
	n         int64              // payload bytes written
}

// flushIfDry flushes dst when reading src would block.
func (c *copier) flushIfDry() error {
	if c.src.Buffered() == 0 && c.dst.Buffered() > 0 {
		if err := c.dst.Flush(); err != nil {
			return dstErr(err)
		}
	}
	return nil
}

// copyN copies rem bytes of data, or everything up to EOF if untilEOF.
func (c *copier) copyN(rem uint64, untilEOF bool) error {
	for untilEOF || rem > 0 {
		if c.src.Buffered() == 0 {
			if err := c.flushIfDry(); err != nil {
				return err
			}
			if untilEOF || rem >= uint64(c.src.Size()) {
				// Read past src's buffer, in big pieces.
				if c.buf == nil {
					c.buf = copyBufs.Get().(*[copyBufSize]byte)
				}
				p := c.buf[:]
				if !untilEOF && rem < uint64(len(p)) {
					p = p[:rem]
				}
				k, err := c.src.Read(p)
				if k > 0 {
					if err := c.data(p[:k]); err != nil {
						return err
					}
					rem -= uint64(k)
				}
				if err == io.EOF && untilEOF {
					return nil
				}
				if err != nil {
					return srcErr(err)
				}
				continue
			}
			if _, err := c.src.Peek(1); err != nil {
				return srcErr(err)
			}
		}
		k := c.src.Buffered()
		if !untilEOF && rem < uint64(k) {
			k = int(rem)
		}
		p, _ := c.src.Peek(k)
		if err := c.data(p); err != nil {
			return err
		}
		_, _ = c.src.Discard(k)
		rem -= uint64(k)
	}
	return nil
}

// data writes one piece of payload, as a chunk when reframing.
func (c *copier) data(p []byte) error {
	if c.reframe {
		if err := c.sizeLine(uint64(len(p))); err != nil {
			return err
		}
	}
	if _, err := c.dst.Write(p); err != nil {
		return dstErr(err)
	}
	if c.reframe {
		if _, err := c.dst.WriteString("\r\n"); err != nil {
			return dstErr(err)
		}
	}
	c.n += int64(len(p))
	return nil
}

// sizeLine writes a canonical chunk-size line.
func (c *copier) sizeLine(size uint64) error {
	if c.dst.Available() < 20 {
		if err := c.dst.Flush(); err != nil {
			return dstErr(err)
		}
	}
	b := strconv.AppendUint(c.dst.AvailableBuffer(), size, 16)
	b = append(b, '\r', '\n')
	if _, err := c.dst.Write(b); err != nil {
		return dstErr(err)
	}
	return nil
}

// chunked copies a chunked body (RFC 9112 section 7.1) with net/http's
// rules: the size line ends in CRLF with no other CR, is shorter than
// 4 KiB, has trailing SP/HTAB and any ";extension" ignored, and its size
// is 1 to 16 hex digits; chunk data is followed by CRLF; framing overhead
// is bounded.
func (c *copier) chunked() error {
	var excess int64
	for {
		// Flush before the size line unless all of it is buffered: the
		// next chunk may be a while coming.
		if p, _ := c.src.Peek(c.src.Buffered()); bytes.IndexByte(p, '\n') < 0 && c.dst.Buffered() > 0 {
			if err := c.dst.Flush(); err != nil {
				return dstErr(err)
			}
		}
		line, err := c.src.ReadSlice('\n')
		if err != nil {
			if err == bufio.ErrBufferFull {
				err = errChunkTooLong
			}
			return srcErr(err)
		}
		if i := bytes.IndexByte(line, '\r'); i < 0 || i != len(line)-2 {
			return srcErr(errChunkLine) // bare LF, or a CR inside
		}
		line = line[:len(line)-2]
		if len(line) >= maxChunkLine {
			return srcErr(errChunkTooLong)
		}
		excess += int64(len(line)) + 2
		for len(line) > 0 && isOWS(line[len(line)-1]) {
			line = line[:len(line)-1]
		}
		if i := bytes.IndexByte(line, ';'); i >= 0 {
			line = line[:i]
		}
		size, ok := parseChunkSize(line)
		if !ok {
			return srcErr(errChunkSize)
		}
		// The same arithmetic as net/http, wrapping included, so the
		// same bodies pass.
		excess -= 16 + 2*int64(size)
		excess = max(excess, 0)
		if excess > maxChunkExcess {
			return srcErr(errChunkOverhead)
		}
		if size == 0 {
			return c.trailer()
		}
		if c.chunksOut {
			if err := c.sizeLine(size); err != nil {
				return err
			}
		}
		if err := c.copyN(size, false); err != nil {
			return err
		}
		if err := c.flushIfDry(); err != nil {
			return err
		}
		for _, want := range crlf {
			if err := c.flushIfDry(); err != nil {
				return err
			}
			b, err := c.src.ReadByte()
			if err != nil {
				return srcErr(err)
			}
			if b != want {
				return srcErr(errChunkData)
			}
		}
		if c.chunksOut {
			if _, err := c.dst.WriteString("\r\n"); err != nil {
				return dstErr(err)
			}
		}
	}
}

// parseChunkSize parses 1 to 16 hex digits.
func parseChunkSize(v []byte) (uint64, bool) {
	if len(v) == 0 || len(v) > 16 {
		return 0, false
	}
	var n uint64
	for _, c := range v {
		if !isHex(c) {
			return 0, false
		}
		n = n<<4 | uint64(unhex(c))
	}
	return n, true
}

// trailer copies the trailer section after the last chunk. Like net/http
// it accepts it only if a CRLF CRLF follows within 4 KiB (see
// seeUpcomingDoubleCRLF in net/http) and net/textproto can read its
// fields. The fields are written in canonical form ("Name: value" and
// CRLF, obs-fold unfolded) after all of them have been validated.
func (c *copier) trailer() error {
	if c.src.Buffered() < 2 {
		if err := c.flushIfDry(); err != nil {
			return err
		}
	}
	if p, err := c.src.Peek(2); len(p) < 2 {
		return srcErr(err)
	} else if p[0] == '\r' && p[1] == '\n' {
		_, _ = c.src.Discard(2)
		if c.chunksOut {
			if _, err := c.dst.WriteString("0\r\n\r\n"); err != nil {
				return dstErr(err)
			}
		}
		return nil
	}
	var win []byte
	for size := 4; ; size++ {
		if size > maxTrailerBytes {
			return srcErr(errTrailer)
		}
		if c.src.Buffered() < size {
			if err := c.dst.Flush(); err != nil {
				return dstErr(err)
			}
		}
		p, err := c.src.Peek(size)
		if bytes.HasSuffix(p, crlfcrlf) {
			win = p
			break
		}
		if err != nil {
			if err == bufio.ErrBufferFull {
				err = errTrailer
			}
			return srcErr(err)
		}
	}
	// The section ends at its first empty line, at the latest the CRLF
	// CRLF just found; copy it out of src's buffer to unfold it in place.
	end := 0
	for end < len(win) {
		line, _ := cutLine(win[end:])
		end += bytes.IndexByte(win[end:], '\n') + 1
		if len(line) == 0 {
			break
		}
	}
	if c.buf == nil {
		c.buf = copyBufs.Get().(*[copyBufSize]byte)
	}
	sec := c.buf[:end:end]
	copy(sec, win)
	canon := c.buf[end:end]
	s := fieldScanner{p: sec}
	for {
		var f Field
		space, done, err := s.next(&f)
		if err != nil {
			return srcErr(errTrailer)
		}
		if space {
			// net/textproto accepts "Name : value" here; RFC 9112
			// section 5.1 says to reject it, and forwarding it would
			// be read differently downstream.
			return srcErr(errTrailer)
		}
		if done {
			break
		}
		canon = appendField(canon, f.Name, trimOWS(f.Value))
	}
	_, _ = c.src.Discard(end)
	if !c.chunksOut {
		return nil
	}
	if _, err := c.dst.WriteString("0\r\n"); err != nil {
		return dstErr(err)
	}
	canon = append(canon, "\r\n"...)
	if _, err := c.dst.Write(canon); err != nil {
		return dstErr(err)
	}
	return nil
}

var (
	crlf     = []byte("\r\n")
	crlfcrlf = []byte("\r\n\r\n")
)
