package health

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"

	"github.com/outrider-mesh/outrider/discovery"
)

// UserAgent is the User-Agent of HTTP and gRPC probes, so that
// applications can tell them from traffic.
const UserAgent = "outrider-health-check"

// maxAnswer bounds the body a probe reads.
const maxAnswer = 64 << 10

// Dialer opens an mTLS connection to addr whose server must present
// expected; *mtls.Dialer is one. The connection's ALPN result tells the
// protocol.
type Dialer interface {
	Dial(ctx context.Context, addr string, expected spiffeid.ID) (*tls.Conn, error)
}

// Transport is how probes reach endpoints: over the mesh, to each
// endpoint's sidecar, which forwards HTTP and gRPC probes to its
// application (so they check the path end to end).
type Transport struct {
	// HTTP1 dials for HTTP/1.1 and TCP probes (it offers ALPN http/1.1).
	HTTP1 Dialer
	// HTTP2 dials for HTTP/2 and gRPC probes (it offers ALPN h2).
	HTTP2 Dialer
	// UseHTTP2 sends HTTP probes over HTTP/2: the upstream's protocol is
	// http2 or grpc. gRPC probes always use HTTP/2.
	UseHTTP2 bool
	// Host is the Host (:authority) of probes when Config.Host is empty:
	// the upstream's name.
	Host string
}

// NewProber returns the Prober for cfg.Type over t; nil when cfg is off.
func NewProber(cfg Config, t Transport) Prober {
	cfg = cfg.WithDefaults()
	if cfg.Host == "" {
		cfg.Host = t.Host
	}
	switch cfg.Type {
	case HTTP:
		return &httpProber{cfg: cfg, t: t, h2: t.UseHTTP2}
	case GRPC:
		body, _ := proto.Marshal(&healthpb.HealthCheckRequest{Service: cfg.Service})
		frame := make([]byte, 5+len(body))
		binary.BigEndian.PutUint32(frame[1:5], uint32(len(body)))
		copy(frame[5:], body)
		return &httpProber{cfg: cfg, t: t, h2: true, grpcFrame: frame}
	case TCP:
		return tcpProber{d: t.HTTP1}
	}
	return nil
}

// tcpProber passes when the mTLS handshake with the endpoint's sidecar
// completes: it is up, presents the identity expected and admits us.
type tcpProber struct{ d Dialer }

func (p tcpProber) NewSession(ep discovery.Endpoint) Session { return tcpSession{d: p.d, ep: ep} }

type tcpSession struct {
	d  Dialer
	ep discovery.Endpoint
}

func (s tcpSession) Probe(ctx context.Context) error {
	c, err := s.d.Dial(ctx, s.ep.Address, s.ep.Identity)
	if err != nil {
		return err
	}
	return c.Close()
}

func (tcpSession) Close() {}

// httpProber sends HTTP probes, or gRPC ones when grpcFrame is set (the
// encoded HealthCheckRequest message), over a keep-alive connection per
// endpoint.
type httpProber struct {
	cfg       Config
	t         Transport
	h2        bool
	grpcFrame []byte
}

func (p *httpProber) NewSession(ep discovery.Endpoint) Session {
	d := p.t.HTTP1
	var protos http.Protocols
	if p.h2 {
		d = p.t.HTTP2
		protos.SetHTTP2(true)
	} else {
		protos.SetHTTP1(true)
	}
	rt := &http.Transport{
		Protocols:           &protos,
		DisableCompression:  true,
		MaxIdleConnsPerHost: 1,
		// The connection is kept between probes.
		IdleConnTimeout: 3*p.cfg.Interval + time.Second,
		DialTLSContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			c, err := d.Dial(ctx, ep.Address, ep.Identity)
			if err != nil {
				return nil, err
			}
			if got := c.ConnectionState().NegotiatedProtocol; p.h2 && got != "h2" {
				c.Close()
				return nil, fmt.Errorf("health: %s did not negotiate h2 (got %q)", ep.Address, got)
			}
			return c, nil
		},
	}
	return &httpSession{p: p, rt: rt, ep: ep}
}

type httpSession struct {
	p  *httpProber
	rt *http.Transport
	ep discovery.Endpoint
}

func (s *httpSession) Close() { s.rt.CloseIdleConnections() }

func (s *httpSession) Probe(ctx context.Context) error {
	cfg := &s.p.cfg
	method, path, body := http.MethodGet, cfg.Path, io.Reader(nil)
	if s.p.grpcFrame != nil {
		method, path, body = http.MethodPost, "/grpc.health.v1.Health/Check", bytes.NewReader(s.p.grpcFrame)
	}
	req, err := http.NewRequestWithContext(ctx, method, "https://"+s.ep.Address+path, body)
	if err != nil {
		return fmt.Errorf("health: %w", err)
	}
	req.Host = cfg.Host
	req.Header.Set("User-Agent", UserAgent)
	if s.p.grpcFrame != nil {
		req.Header.Set("Content-Type", "application/grpc")
		req.Header.Set("Te", "trailers")
		req.ContentLength = int64(len(s.p.grpcFrame))
	}
	resp, err := s.rt.RoundTrip(req)
	if err != nil {
		return fmt.Errorf("health: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return fmt.Errorf("health: reading the answer: %w", err)
	}
	if s.p.grpcFrame != nil {
		return grpcVerdict(resp, answer)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, maxAnswer)) // let the connection be reused
	if !cfg.expected(resp.StatusCode) {
		return &AnswerError{Reason: "HTTP status " + strconv.Itoa(resp.StatusCode)}
	}
	return nil
}

// grpcVerdict reads a Health/Check answer: a grpc-status (in the trailers,
// or in the head of a trailers-only answer) other than OK, or a status
// other than SERVING, is the endpoint's word that it is not healthy; a
// malformed answer is an error.
func grpcVerdict(resp *http.Response, body []byte) error {
	if resp.StatusCode != http.StatusOK {
		return &AnswerError{Reason: "HTTP status " + strconv.Itoa(resp.StatusCode) + " to a gRPC health check"}
	}
	code := resp.Trailer.Get("Grpc-Status")
	msg := resp.Trailer.Get("Grpc-Message")
	if code == "" {
		code, msg = resp.Header.Get("Grpc-Status"), resp.Header.Get("Grpc-Message")
	}
	switch code {
	case "0":
	case "":
		return errors.New("health: gRPC answer without grpc-status")
	default:
		reason := "gRPC status " + code
		if msg != "" {
			reason += ": " + msg
		}
		return &AnswerError{Reason: reason}
	}
	if len(body) < 5 || body[0] != 0 || int(binary.BigEndian.Uint32(body[1:5])) != len(body)-5 {
		return errors.New("health: malformed gRPC health answer")
	}
	var hr healthpb.HealthCheckResponse
	if err := proto.Unmarshal(body[5:], &hr); err != nil {
		return fmt.Errorf("health: gRPC health answer: %w", err)
	}
	if hr.Status != healthpb.HealthCheckResponse_SERVING {
		return &AnswerError{Reason: "gRPC health status " + hr.Status.String()}
	}
	return nil
}
