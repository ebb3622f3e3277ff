package compress

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the package's collectors, registered once per process and
// shared by every route's Compressor.
type Metrics struct {
	responses *prometheus.CounterVec
	bytesIn   *prometheus.CounterVec
	bytesOut  *prometheus.CounterVec
	requests  *prometheus.CounterVec
}

// NewMetrics registers the collectors with reg (panicking, as
// prometheus.MustRegister does, when they are already registered there):
//
//	outrider_gateway_compress_responses_total{route, algorithm, reason}
//	    algorithm zstd|br|gzip with reason "compressed", or algorithm
//	    "none" with the reason class it was sent as is: encoded, status,
//	    range, no_transform, method, type, client, size, upgrade
//	outrider_gateway_compress_bytes_in_total{route, algorithm}
//	    body bytes given to the encoder
//	outrider_gateway_compress_bytes_out_total{route, algorithm}
//	    compressed bytes sent
//	outrider_gateway_compress_requests_total{route, algorithm, outcome}
//	    request bodies: outcome decompressed (read to the end within the
//	    limit), too_large (413), invalid (400, corrupt data), unsupported
//	    (415, algorithm "none")
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		responses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outrider_gateway_compress_responses_total",
			Help: "Responses by coding sent, or the reason they were sent unencoded.",
		}, []string{"route", "algorithm", "reason"}),
		bytesIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outrider_gateway_compress_bytes_in_total",
			Help: "Response body bytes before compression.",
		}, []string{"route", "algorithm"}),
		bytesOut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outrider_gateway_compress_bytes_out_total",
			Help: "Response body bytes after compression.",
		}, []string{"route", "algorithm"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outrider_gateway_compress_requests_total",
			Help: "Compressed request bodies by outcome.",
		}, []string{"route", "algorithm", "outcome"}),
	}
	reg.MustRegister(m.responses, m.bytesIn, m.bytesOut, m.requests)
	return m
}

// reason is why a response was, or was not, compressed.
type reason uint8

const (
	compressed   reason = iota
	rEncoded            // already has a Content-Encoding
	rStatus             // 1xx, 204, 304: no body to compress
	rRange              // 206 or Content-Range
	rNoTransform        // Cache-Control: no-transform (request or response)
	rMethod             // HEAD
	rType               // content type not in the allow list, or gRPC
	rClient             // Accept-Encoding accepts nothing offered
	rSize               // below min_size
	rUpgrade            // 101 Switching Protocols
	numReasons
)

var reasonNames = [numReasons]string{
	compressed: "compressed", rEncoded: "encoded", rStatus: "status",
	rRange: "range", rNoTransform: "no_transform", rMethod: "method",
	rType: "type", rClient: "client", rSize: "size", rUpgrade: "upgrade",
}

// request decompression outcomes.
type outcome uint8

const (
	oDecompressed outcome = iota
	oTooLarge
	oInvalid
	oUnsupported
	numOutcomes
)

var outcomeNames = [numOutcomes]string{"decompressed", "too_large", "invalid", "unsupported"}

// routeMetrics are one route's counters, resolved once in New so that a
// response costs no label lookup.
type routeMetrics struct {
	compressed [numAlgorithms]prometheus.Counter // by algorithm
	skipped    [numReasons]prometheus.Counter    // algorithm "none", by reason
	bytesIn    [numAlgorithms]prometheus.Counter
	bytesOut   [numAlgorithms]prometheus.Counter
	requests   [numAlgorithms][numOutcomes]prometheus.Counter
}

func (m *Metrics) forRoute(route string) *routeMetrics {
	if m == nil {
		return nil
	}
	rm := &routeMetrics{}
	for a := zstdAlg; a < numAlgorithms; a++ {
		n := a.String()
		rm.compressed[a] = m.responses.WithLabelValues(route, n, "compressed")
		rm.bytesIn[a] = m.bytesIn.WithLabelValues(route, n)
		rm.bytesOut[a] = m.bytesOut.WithLabelValues(route, n)
		for o := oDecompressed; o < oUnsupported; o++ {
			rm.requests[a][o] = m.requests.WithLabelValues(route, n, outcomeNames[o])
		}
	}
	rm.requests[none][oUnsupported] = m.requests.WithLabelValues(route, "none", outcomeNames[oUnsupported])
	for r := rEncoded; r < numReasons; r++ {
		rm.skipped[r] = m.responses.WithLabelValues(route, "none", reasonNames[r])
	}
	return rm
}

func (rm *routeMetrics) response(a algorithm, r reason, in, out int64) {
	if rm == nil {
		return
	}
	if a == none {
		rm.skipped[r].Inc()
		return
	}
	rm.compressed[a].Inc()
	rm.bytesIn[a].Add(float64(in))
	rm.bytesOut[a].Add(float64(out))
}

func (rm *routeMetrics) request(a algorithm, o outcome) {
	if rm == nil {
		return
	}
	if c := rm.requests[a][o]; c != nil {
		c.Inc()
	}
}
