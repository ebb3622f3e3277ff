package compress

import (
	"errors"
	"strings"

	"github.com/outrider-mesh/outrider/internal/confval"
)

// Config is the compression configuration of one route.
type Config struct {
	// Enabled turns response compression on. Off by default; request
	// decompression (decompress_requests) is switched on separately.
	Enabled bool `yaml:"enabled"`

	// Algorithms are the content codings offered, in server preference
	// order: "zstd", "br", "gzip". When a client accepts several with the
	// same q-value (browsers send "gzip, deflate, br, zstd", all at q=1)
	// the first one listed here wins. Default [zstd, gzip, br]: brotli
	// compresses a little better than gzip but costs several times the
	// CPU, so it goes last.
	Algorithms []string `yaml:"algorithms"`

	// Levels are the compression levels; 0 leaves an algorithm at its
	// default.
	Levels Levels `yaml:"levels"`

	// MinSize is the smallest body that is compressed. A response whose
	// Content-Length is below it is sent as is; one without Content-Length
	// is buffered up to MinSize bytes before the choice is made (a Flush
	// before that counts as a streamed response, which is compressed).
	// Default 1KiB, at most 1MiB.
	MinSize confval.ByteSize `yaml:"min_size"`

	// ContentTypes are the media types that are compressed, matched on the
	// response's Content-Type without its parameters, case-insensitively.
	// An entry is "type/subtype", "type/*" or a structured-syntax suffix
	// "*/*+json". Setting the list replaces the default: text/*,
	// application/json, application/javascript, application/ecmascript,
	// application/xml, application/x-ndjson, application/wasm,
	// image/svg+xml, image/x-icon, font/ttf, font/otf, */*+json, */*+xml.
	// application/grpc is never compressed, whatever this says.
	ContentTypes []string `yaml:"content_types"`

	// DecompressRequests decodes compressed request bodies before the
	// route's handler reads them.
	DecompressRequests Decompress `yaml:"decompress_requests"`
}

// Levels are compression levels per algorithm; 0 means the default.
type Levels struct {
	// Gzip is the gzip level, 1 (fastest) to 9 (smallest). Default 5.
	Gzip int `yaml:"gzip"`
	// Brotli is the brotli quality, 1 to 11. Default 4.
	Brotli int `yaml:"br"`
	// Zstd is the zstd level, 1 to 22, mapped onto the encoder's four
	// speeds (1: fastest, 2-5: default, 6-9: better, 10+: best). Default 3.
	Zstd int `yaml:"zstd"`
}

// Decompress configures request body decompression.
type Decompress struct {
	// Enabled turns request decompression on. When on, a request body with
	// a Content-Encoding listed in Algorithms is decoded on the fly and
	// passed on without Content-Encoding and Content-Length; any other
	// coding is refused with 415. When off (the default) request bodies
	// pass through untouched.
	Enabled bool `yaml:"enabled"`
	// MaxBytes bounds the decompressed body: the handler never reads more,
	// and the request is answered 413. Default 10MiB.
	MaxBytes confval.ByteSize `yaml:"max_bytes"`
	// Algorithms are the codings decoded: "zstd", "br", "gzip" ("x-gzip"
	// is read as gzip). Default all three.
	Algorithms []string `yaml:"algorithms"`
}

const (
	defaultGzipLevel   = 5
	defaultBrotliLevel = 4
	defaultZstdLevel   = 3
	defaultMinSize     = 1 << 10
	maxMinSize         = 1 << 20
	defaultMaxBytes    = 10 << 20
)

// defaultAlgorithms prefer zstd, then gzip over brotli: on a 10 KiB JSON
// body brotli 4 compresses 3% better than gzip 5 at four times the CPU
// (see BenchmarkResponse); brotli still serves clients that accept
// nothing else.
var defaultAlgorithms = []string{"zstd", "gzip", "br"}

var defaultContentTypes = []string{
	"text/*",
	"application/json", "application/javascript", "application/ecmascript",
	"application/xml", "application/x-ndjson", "application/wasm",
	"image/svg+xml", "image/x-icon", "font/ttf", "font/otf",
	"*/*+json", "*/*+xml",
}

// Validate reports every problem in c, as FieldErrors joined.
func (c Config) Validate() error {
	var errs []error
	errs = append(errs, validateAlgorithms("algorithms", c.Algorithms)...)
	if l := c.Levels.Gzip; l < 0 || l > 9 {
		errs = append(errs, confval.Errorf("levels.gzip", "level %d out of range (want 1 to 9, or 0 for the default 5)", l))
	}
	if l := c.Levels.Brotli; l < 0 || l > 11 {
		errs = append(errs, confval.Errorf("levels.br", "quality %d out of range (want 1 to 11, or 0 for the default 4)", l))
	}
	if l := c.Levels.Zstd; l < 0 || l > 22 {
		errs = append(errs, confval.Errorf("levels.zstd", "level %d out of range (want 1 to 22, or 0 for the default 3)", l))
	}
	if c.MinSize < 0 || c.MinSize > maxMinSize {
		errs = append(errs, confval.Errorf("min_size", "%s out of range (want 0 for the default 1KiB, up to 1MiB)", c.MinSize))
	}
	for i, ct := range c.ContentTypes {
		if _, err := parsePattern(ct); err != nil {
			errs = append(errs, confval.Errorf("content_types["+itoa(i)+"]", "%v", err))
		}
	}
	d := c.DecompressRequests
	if d.MaxBytes < 0 {
		errs = append(errs, confval.Errorf("decompress_requests.max_bytes", "negative size (want 0 for the default 10MiB, or a size)"))
	}
	errs = append(errs, validateAlgorithms("decompress_requests.algorithms", d.Algorithms)...)
	return errors.Join(errs...)
}

func validateAlgorithms(path string, algs []string) []error {
	var errs []error
	seen := map[algorithm]bool{}
	for i, s := range algs {
		p := path + "[" + itoa(i) + "]"
		a := parseAlgorithm(s)
		switch {
		case a == none:
			errs = append(errs, confval.Errorf(p, "unknown algorithm %q (want zstd, br or gzip)", s))
		case seen[a]:
			errs = append(errs, confval.Errorf(p, "%q listed twice", s))
		}
		seen[a] = true
	}
	return errs
}

// pattern is one compiled content_types entry.
type pattern struct {
	typ, sub string // sub "*" matches any subtype
	suffix   string // "+json" for "*/*+json"
}

func parsePattern(s string) (pattern, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	typ, sub, ok := strings.Cut(t, "/")
	if !ok || !isToken(typ) && typ != "*" || sub == "" {
		return pattern{}, errors.New("\"" + s + "\" is not a media type (want type/subtype, type/* or */*+suffix)")
	}
	if typ == "*" {
		if sfx, ok := strings.CutPrefix(sub, "*+"); ok && isToken(sfx) {
			return pattern{suffix: "+" + sfx}, nil
		}
		return pattern{}, errors.New("\"" + s + "\" matches every type (want type/subtype, type/* or */*+suffix)")
	}
	if sub != "*" && !isToken(sub) {
		return pattern{}, errors.New("\"" + s + "\" is not a media type (want type/subtype without parameters, type/* or */*+suffix)")
	}
	return pattern{typ: typ, sub: sub}, nil
}

// match reports whether the media type typ/sub (lower case) matches.
func (p pattern) match(typ, sub string) bool {
	if p.suffix != "" {
		return strings.HasSuffix(sub, p.suffix) && len(sub) > len(p.suffix)
	}
	return p.typ == typ && (p.sub == "*" || p.sub == sub)
}

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}
