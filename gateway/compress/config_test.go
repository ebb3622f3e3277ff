package compress

import (
	"reflect"
	"sort"
	"testing"

	"github.com/outrider-mesh/outrider/internal/confval"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want []string // "path: message" prefixes, sorted
	}{
		{name: "zero", cfg: Config{}},
		{name: "full", cfg: Config{Enabled: true, Algorithms: []string{"gzip", "br"}, Levels: Levels{Gzip: 9, Brotli: 11, Zstd: 22},
			MinSize: 512, ContentTypes: []string{"text/*", "*/*+json", "application/json"},
			DecompressRequests: Decompress{Enabled: true, MaxBytes: 1 << 20, Algorithms: []string{"x-gzip"}}}},
		{name: "everything wrong", cfg: Config{
			Algorithms:         []string{"gzip", "deflate", "GZIP"},
			Levels:             Levels{Gzip: 10, Brotli: -1, Zstd: 23},
			MinSize:            2 << 20,
			ContentTypes:       []string{"text/html; charset=utf-8", "*/*", "json", "text/*"},
			DecompressRequests: Decompress{MaxBytes: -1, Algorithms: []string{"lz4"}},
		}, want: []string{
			"algorithms[1]",
			"algorithms[2]",
			"content_types[0]",
			"content_types[1]",
			"content_types[2]",
			"decompress_requests.algorithms[0]",
			"decompress_requests.max_bytes",
			"levels.br",
			"levels.gzip",
			"levels.zstd",
			"min_size",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			var got []string
			for _, fe := range confval.Fields(err) {
				if fe.Msg == "" {
					t.Errorf("%s: empty message", fe.Path)
				}
				got = append(got, fe.Path)
			}
			sort.Strings(got)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Validate paths = %q, want %q (err: %v)", got, tt.want, err)
			}
			if _, nerr := New(tt.cfg); (nerr != nil) != (len(tt.want) > 0) {
				t.Errorf("New error = %v, want failure %v", nerr, len(tt.want) > 0)
			}
		})
	}
}
