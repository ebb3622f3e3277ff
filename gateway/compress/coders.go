package compress

import (
	"errors"
	"io"
	"sync"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// encoder is a pooled compressor writing to the writer it was Reset on.
type encoder interface {
	io.WriteCloser
	Flush() error
	Reset(w io.Writer)
}

// zstdWindow is the zstd encoder's window: well under the 8 MiB that RFC
// 9659 lets an HTTP recipient refuse beyond (browsers do), and small
// enough to keep the pooled encoders' memory down; a response body gains
// little from a longer window.
const zstdWindow = 1 << 20

// encoderPools hold one pool per algorithm, at the configured level.
type encoderPools [numAlgorithms]sync.Pool

func newEncoderPools(l Levels) (*encoderPools, error) {
	var p encoderPools
	gl, bl, zl := l.Gzip, l.Brotli, l.Zstd
	if gl == 0 {
		gl = defaultGzipLevel
	}
	if bl == 0 {
		bl = defaultBrotliLevel
	}
	if zl == 0 {
		zl = defaultZstdLevel
	}
	// Build one of each now so that a bad level fails New, not a request.
	if _, err := gzip.NewWriterLevel(io.Discard, gl); err != nil {
		return nil, err
	}
	zopts := []zstd.EOption{
		zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(zl)),
		// One block at a time on the caller's goroutine: no goroutines
		// per response, and Flush writes what was written so far.
		zstd.WithEncoderConcurrency(1),
		zstd.WithWindowSize(zstdWindow),
		zstd.WithLowerEncoderMem(true),
	}
	if _, err := zstd.NewWriter(nil, zopts...); err != nil {
		return nil, err
	}
	p[gzipAlg].New = func() any {
		w, _ := gzip.NewWriterLevel(nil, gl) // level checked above
		return w
	}
	p[brAlg].New = func() any {
		return brotli.NewWriterOptions(nil, brotli.WriterOptions{Quality: bl, LGWin: 20})
	}
	p[zstdAlg].New = func() any {
		w, _ := zstd.NewWriter(nil, zopts...) // options checked above
		return w
	}
	return &p, nil
}

func (p *encoderPools) get(a algorithm, w io.Writer) encoder {
	e := p[a].Get().(encoder)
	e.Reset(w)
	return e
}

// put returns e to its pool, detached from the writer it wrote to.
func (p *encoderPools) put(a algorithm, e encoder) {
	e.Reset(nil)
	p[a].Put(e)
}

// decoder is a pooled decompressor reading from the reader it was Reset on.
type decoder interface {
	io.Reader
	reset(r io.Reader) error
}

type gzipDecoder struct{ gzip.Reader }

func (d *gzipDecoder) reset(r io.Reader) error {
	if err := d.Reader.Reset(r); err != nil {
		return err
	}
	d.Reader.Multistream(true)
	return nil
}

type brDecoder struct{ *brotli.Reader }

func (d *brDecoder) reset(r io.Reader) error { return d.Reader.Reset(r) }

type zstdDecoder struct{ *zstd.Decoder }

func (d *zstdDecoder) reset(r io.Reader) error { return d.Decoder.Reset(r) }

// decoderPools hold one pool of decoders per algorithm.
type decoderPools [numAlgorithms]sync.Pool

func newDecoderPools() *decoderPools {
	var p decoderPools
	p[gzipAlg].New = func() any { return new(gzipDecoder) }
	p[brAlg].New = func() any { return &brDecoder{brotli.NewReader(nil)} }
	p[zstdAlg].New = func() any {
		d, _ := zstd.NewReader(nil,
			zstd.WithDecoderConcurrency(1), // synchronous: no goroutines
			zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxWindow(8<<20), // RFC 9659
		)
		return &zstdDecoder{d}
	}
	return &p
}

var errNoDecoder = errors.New("compress: no decoder")

// get returns a decoder reading r; the gzip header is read at once, so a
// body that is not gzip fails here.
func (p *decoderPools) get(a algorithm, r io.Reader) (decoder, error) {
	d, ok := p[a].Get().(decoder)
	if !ok {
		return nil, errNoDecoder
	}
	if err := d.reset(r); err != nil {
		p[a].Put(d)
		return nil, err
	}
	return d, nil
}

func (p *decoderPools) put(a algorithm, d decoder) {
	if a == zstdAlg {
		_ = d.reset(nil)
	}
	p[a].Put(d)
}
