// Package filesource is the mtls.Identity read from files: an X.509-SVID
// (certificate chain and private key, PEM) and the X.509 bundles of one or
// more trust domains (PEM CA certificates, or SPIFFE bundles in JSON). It
// suits SVIDs written to disk by spiffe-helper, cert-manager (csi-driver-
// spiffe), a Kubernetes secret, or mtls/devca.
//
// # Contract
//
// A sidecar calls New, starts Run on a goroutine of its own, waits for Ready,
// and reads the Source on every handshake. Run loads the files, then reloads
// them until ctx is done and returns ctx.Err(); a Config that fails Validate
// makes it return that error at once. Run must not be called twice at the
// same time. All loading happens on Run's goroutine, one load at a time.
//
// GetX509SVID, GetX509BundleForTrustDomain and Certificate may be called
// from any goroutine. They read one atomic pointer to an immutable value:
// they never block and allocate nothing except an error. Status and Reload
// may be called from any goroutine, at any time; neither blocks.
//
// # When the files are read again
//
//   - When one of them changes. Run watches the directories that hold the
//     files, not the files: Kubernetes secrets and `mv` replace a file by a
//     rename or a symlink swap (..data), which a watch on the file itself
//     would not follow. Changes are debounced (100ms after the last event),
//     so that a certificate and its key written one after the other are read
//     together.
//   - On Reload (the CLI calls it on SIGHUP).
//   - Every poll interval (WithPollInterval, 1 minute by default), as a safety
//     net for changes that raise no event (a file system without inotify, a
//     directory symlink swapped above the watched directory).
//   - After a failed load, with exponential backoff (WithBackoff), until a
//     load succeeds.
//
// Files whose content is the same as at the previous attempt are not parsed
// again (except on Reload), and an identity identical to the one held is not
// a rotation.
//
// # When a load fails
//
// A missing file, a half-written PEM file, a key that does not match the
// certificate, a bundle that does not parse, or an SVID whose trust domain has
// no bundle: the identity already held stays (the first load leaves Ready
// open), the failure is logged at ERROR naming the file and the reason, and
// then Status().LastError says the same: a failure seen in Status has been
// logged already. The same failure repeated is logged at DEBUG until
// something changes.
package filesource
