//go:build !unix

package overload

// fileLimit is unknown off Unix: max_connections has no default there.
func fileLimit() int { return 0 }
