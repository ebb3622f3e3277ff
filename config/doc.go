// Package config reads outrider.yaml, the configuration file of the static
// mode (`outrider run -config outrider.yaml`): a sidecar configured by a file
// instead of a Consul registration. Upstreams may still be discovered in
// Consul.
//
// File is the whole file; the doc comments of its types are the user
// reference, and CONFIG.md lists every key with its type and default (a test
// keeps the two in step). Load and Parse decode the YAML strictly (unknown
// keys, wrong types and duplicate keys are errors), fill in the documented
// defaults and validate the result. Every problem is reported, in file order,
// as one line naming the file, the line and the key path:
//
//	config: outrider.yaml:12: upstreams[1].endpoint: unknown key (did you mean "endpoints"?)
//	config: outrider.yaml:14: upstreams[1].bind: "127.0.0.1" is not host:port
//
// LoadPolicy and ParsePolicy read a policy file, the local authorization
// layer of the Consul mode (`outrider run -sidecar-for SERVICE -policy
// FILE`): the keys of outrider.yaml's authorization section at its top
// level, decoded, defaulted and validated the same way, into an
// Authorization.
//
// A File is a plain value: nothing in it is started or opened, and paths are
// not read (the caller opens certificate, key, bundle and token files, so
// that a missing file is reported when it is used). Values the environment
// provides (the Workload API socket, the Consul address) are left empty when
// the file does not set them, and the caller resolves them.
//
// A File returned by Load or Parse, or an Authorization returned by
// LoadPolicy or ParsePolicy, is not modified by this package and may be
// shared between goroutines; ConsulDiscovery.ExpectedID may be called
// concurrently.
package config
