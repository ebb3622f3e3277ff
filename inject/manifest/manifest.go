// Package manifest is the entry point of `outrider inject`: it tells a
// Compose file from a Kubernetes manifest and injects it with the package
// for its format.
package manifest

import (
	"fmt"

	"github.com/outrider-mesh/outrider/inject"
	"github.com/outrider-mesh/outrider/inject/compose"
	"github.com/outrider-mesh/outrider/inject/internal/yamlnode"
	"github.com/outrider-mesh/outrider/inject/kube"
)

// Format is a file format.
type Format string

// Formats.
const (
	Auto       Format = "auto" // Compose when the file has a top-level services mapping, else Kubernetes
	Compose    Format = "compose"
	Kubernetes Format = "kubernetes"
)

// ParseFormat reads a -format value.
func ParseFormat(s string) (Format, error) {
	switch f := Format(s); f {
	case Auto, Compose, Kubernetes:
		return f, nil
	}
	return "", fmt.Errorf("want auto, compose or kubernetes, got %q", s)
}

// Detect tells the format of data; a file that does not parse is left to
// the Kubernetes reader, which reports where.
func Detect(data []byte) Format {
	docs, err := yamlnode.Decode(data)
	if err == nil && len(docs) == 1 && compose.IsCompose(docs[0]) {
		return Compose
	}
	return Kubernetes
}

// Inject injects data in format f (Auto: detected) with o. It returns
// data itself when nothing changes, so injecting twice gives the same
// bytes.
func Inject(data []byte, f Format, o inject.Options) ([]byte, error) {
	if f == Auto || f == "" {
		f = Detect(data)
	}
	switch f {
	case Compose:
		return compose.Inject(data, o)
	case Kubernetes:
		return kube.Inject(data, o)
	}
	return nil, fmt.Errorf("inject: unknown format %q", f)
}
