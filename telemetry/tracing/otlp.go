package tracing

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/resource"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	grpcgzip "google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	grpccodes "google.golang.org/grpc/codes"
)

// spanExporter sends batches of ended spans; the processor's goroutine is
// its only caller. It must not keep batch after returning.
type spanExporter interface {
	exportSpans(ctx context.Context, batch []*spanData) error
	shutdown(ctx context.Context) error
}

// otlpExporter encodes batches in OTLP's protobuf wire format
// (opentelemetry/proto/collector/trace/v1 ExportTraceServiceRequest) with
// protowire, into buffers reused from batch to batch, and sends them with
// a sender (HTTP or gRPC). The encoding is checked against the generated
// types in otlp_test.go and against a real Jaeger in the sidecar's tests.
type otlpExporter struct {
	enc  encoder
	send sender
}

func (e *otlpExporter) exportSpans(ctx context.Context, batch []*spanData) error {
	req := e.enc.encode(batch) // once: a retry sends the same bytes
	return withRetry(ctx, func() error { return e.send.send(ctx, req) })
}

func (e *otlpExporter) shutdown(context.Context) error { return e.send.close() }

// sender delivers one encoded ExportTraceServiceRequest.
type sender interface {
	send(ctx context.Context, req []byte) error
	close() error
}

// retryableError marks a failure worth another attempt (the collector is
// overloaded or restarting), as OTLP's specification lists them.
type retryableError struct{ err error }

func (e retryableError) Error() string { return e.err.Error() }
func (e retryableError) Unwrap() error { return e.err }

// withRetry calls f until it succeeds, fails for good, or the next backoff
// (retryInitial doubling up to retryMax) would pass ctx's deadline: one
// export never outlives the export timeout, and the next batch is the next
// attempt.
func withRetry(ctx context.Context, f func() error) error {
	delay := retryInitial
	for {
		err := f()
		var re retryableError
		if err == nil || !errors.As(err, &re) {
			return err
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < delay {
			return err
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		delay = min(2*delay, retryMax)
	}
}

// Backoff between retries of one export.
const (
	retryInitial = time.Second
	retryMax     = 5 * time.Second
)

// newOTLPExporter builds the exporter for the endpoint u (resolved by
// parseEndpoint) with cfg's protocol, headers, TLS files and compression.
func newOTLPExporter(cfg Config, u *url.URL, res *resource.Resource, version string) (*otlpExporter, error) {
	tlsCfg, err := tlsConfig(cfg)
	if err != nil {
		return nil, err
	}
	var s sender
	if cfg.Protocol == ProtocolHTTP {
		s = newHTTPSender(cfg, u, tlsCfg)
	} else if s, err = newGRPCSender(cfg, u, tlsCfg); err != nil {
		return nil, err
	}
	return &otlpExporter{enc: newEncoder(res, version), send: s}, nil
}

// tlsConfig is the client TLS configuration from Config's certificate
// files; nil when none is set (the system roots are used for https).
func tlsConfig(cfg Config) (*tls.Config, error) {
	if cfg.Certificate == "" && cfg.ClientCertificate == "" && cfg.ClientKey == "" {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.Certificate != "" {
		pem, err := os.ReadFile(cfg.Certificate)
		if err != nil {
			return nil, fmt.Errorf("tracing: Certificate: %w", err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tracing: Certificate: no PEM certificate in %s", cfg.Certificate)
		}
	}
	if cfg.ClientCertificate != "" || cfg.ClientKey != "" {
		if cfg.ClientCertificate == "" || cfg.ClientKey == "" {
			return nil, errors.New("tracing: ClientCertificate and ClientKey: set both or neither")
		}
		pair, err := tls.LoadX509KeyPair(cfg.ClientCertificate, cfg.ClientKey)
		if err != nil {
			return nil, fmt.Errorf("tracing: ClientCertificate: %w", err)
		}
		c.Certificates = []tls.Certificate{pair}
	}
	return c, nil
}

// httpSender POSTs application/x-protobuf to the traces URL.
type httpSender struct {
	client  *http.Client
	url     string
	headers map[string]string
	gzip    bool
	zbuf    bytes.Buffer
	zw      *gzip.Writer
}

func newHTTPSender(cfg Config, u *url.URL, tlsCfg *tls.Config) *httpSender {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	if tlsCfg != nil {
		tr.TLSClientConfig = tlsCfg
	}
	return &httpSender{
		client:  &http.Client{Transport: tr},
		url:     u.String(),
		headers: cfg.Headers,
		gzip:    cfg.Compression == CompressionGzip,
	}
}

func (h *httpSender) send(ctx context.Context, body []byte) error {
	if h.gzip {
		h.zbuf.Reset()
		if h.zw == nil {
			h.zw = gzip.NewWriter(&h.zbuf)
		} else {
			h.zw.Reset(&h.zbuf)
		}
		h.zw.Write(body) // a bytes.Buffer does not fail
		h.zw.Close()
		body = h.zbuf.Bytes()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("User-Agent", "outrider-otlp")
	if h.gzip {
		req.Header.Set("Content-Encoding", "gzip")
	}
	for k, v := range h.headers {
		req.Header.Set(k, v)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		var bad *tls.CertificateVerificationError
		if errors.As(err, &bad) {
			return err // retrying cannot make the collector trusted
		}
		return retryableError{err}
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	resp.Body.Close()
	if resp.StatusCode/100 == 2 {
		return nil
	}
	err = fmt.Errorf("collector answered %s: %q", resp.Status, bytes.TrimSpace(msg))
	switch resp.StatusCode {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return retryableError{err}
	}
	return err
}

func (h *httpSender) close() error {
	h.client.CloseIdleConnections()
	return nil
}

// grpcSender calls TraceService/Export with the request already encoded.
type grpcSender struct {
	conn *grpc.ClientConn
	md   metadata.MD
	opts []grpc.CallOption
}

const exportMethod = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"

func newGRPCSender(cfg Config, u *url.URL, tlsCfg *tls.Config) (*grpcSender, error) {
	creds := insecure.NewCredentials()
	if u.Scheme == "https" {
		if tlsCfg == nil {
			tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		creds = credentials.NewTLS(tlsCfg)
	}
	conn, err := grpc.NewClient(u.Host, grpc.WithTransportCredentials(creds), grpc.WithUserAgent("outrider-otlp"))
	if err != nil {
		return nil, fmt.Errorf("tracing: Endpoint: %w", err)
	}
	g := &grpcSender{conn: conn, md: metadata.New(cfg.Headers), opts: []grpc.CallOption{grpc.ForceCodec(rawCodec{})}}
	if cfg.Compression == CompressionGzip {
		g.opts = append(g.opts, grpc.UseCompressor(grpcgzip.Name))
	}
	return g, nil
}

func (g *grpcSender) send(ctx context.Context, req []byte) error {
	if len(g.md) > 0 {
		ctx = metadata.NewOutgoingContext(ctx, g.md)
	}
	err := g.conn.Invoke(ctx, exportMethod, rawMessage(req), &discardReply{}, g.opts...)
	switch status.Code(err) {
	case grpccodes.OK:
		return nil
	case grpccodes.Unavailable, grpccodes.ResourceExhausted, grpccodes.Aborted, grpccodes.DeadlineExceeded:
		return retryableError{err}
	}
	return err
}

func (g *grpcSender) close() error { return g.conn.Close() }

// rawMessage is a request already in protobuf wire format; discardReply
// ignores the response (ExportTraceServiceResponse's partial success is not
// acted upon). rawCodec passes both through.
type (
	rawMessage   []byte
	discardReply struct{}
	rawCodec     struct{}
)

func (rawCodec) Marshal(v any) ([]byte, error) {
	if m, ok := v.(rawMessage); ok {
		return m, nil
	}
	return nil, fmt.Errorf("tracing: cannot marshal %T", v)
}

func (rawCodec) Unmarshal([]byte, any) error { return nil }
func (rawCodec) Name() string                { return "proto" }

// encoder writes ExportTraceServiceRequests. The resource and scope are
// encoded once; spans is the scratch for the batch's Span messages and body
// for one span.
type encoder struct {
	resource []byte // ResourceSpans.resource, tag included
	scope    []byte // ScopeSpans.scope, tag included
	schema   []byte // ResourceSpans.schema_url, tag included
	spans    []byte
	body     []byte
	out      []byte
}

// Field numbers of opentelemetry/proto/trace/v1/trace.proto and
// common/v1/common.proto.
const (
	fRequestResourceSpans = 1 // ExportTraceServiceRequest
	fRSResource           = 1 // ResourceSpans
	fRSScopeSpans         = 2
	fRSSchemaURL          = 3
	fResourceAttributes   = 1
	fSSScope              = 1 // ScopeSpans
	fSSSpans              = 2
	fScopeName            = 1
	fScopeVersion         = 2

	fSpanTraceID       = 1
	fSpanSpanID        = 2
	fSpanTraceState    = 3
	fSpanParentSpanID  = 4
	fSpanName          = 5
	fSpanKind          = 6
	fSpanStart         = 7
	fSpanEnd           = 8
	fSpanAttributes    = 9
	fSpanDroppedAttrs  = 10
	fSpanEvents        = 11
	fSpanDroppedEvents = 12
	fSpanLinks         = 13
	fSpanDroppedLinks  = 14
	fSpanStatus        = 15
	fSpanFlags         = 16

	fEventTime    = 1
	fEventName    = 2
	fEventAttrs   = 3
	fEventDropped = 4

	fLinkTraceID    = 1
	fLinkSpanID     = 2
	fLinkTraceState = 3
	fLinkAttrs      = 4
	fLinkFlags      = 6

	fStatusMessage = 2
	fStatusCode    = 3

	fKVKey   = 1
	fKVValue = 2

	fAnyString = 1
	fAnyBool   = 2
	fAnyInt    = 3
	fAnyDouble = 4
	fAnyArray  = 5
	fArrValues = 1
)

// OTLP's span flags: the W3C trace flags in bits 0-7, then whether the
// parent's remoteness is known (bit 8) and whether it is remote (bit 9).
const (
	flagHasIsRemote = 0x100
	flagIsRemote    = 0x200
)

func newEncoder(res *resource.Resource, version string) encoder {
	var e encoder
	var body []byte
	for _, kv := range res.Attributes() {
		body = appendKeyValue(body, fResourceAttributes, kv)
	}
	e.resource = appendMessage(nil, fRSResource, body)
	body = protowire.AppendTag(body[:0], fScopeName, protowire.BytesType)
	body = protowire.AppendString(body, TracerName)
	if version != "" {
		body = protowire.AppendTag(body, fScopeVersion, protowire.BytesType)
		body = protowire.AppendString(body, version)
	}
	e.scope = appendMessage(nil, fSSScope, body)
	if u := res.SchemaURL(); u != "" {
		e.schema = protowire.AppendTag(nil, fRSSchemaURL, protowire.BytesType)
		e.schema = protowire.AppendString(e.schema, u)
	}
	return e
}

// encode returns the request for batch; the bytes are valid until the next
// call.
func (e *encoder) encode(batch []*spanData) []byte {
	e.spans = e.spans[:0]
	for _, s := range batch {
		e.body = appendSpan(e.body[:0], s)
		e.spans = appendMessage(e.spans, fSSSpans, e.body)
	}
	ssLen := len(e.scope) + len(e.spans)
	rsLen := len(e.resource) + protowire.SizeTag(fRSScopeSpans) + protowire.SizeBytes(ssLen) + len(e.schema)
	out := protowire.AppendTag(e.out[:0], fRequestResourceSpans, protowire.BytesType)
	out = protowire.AppendVarint(out, uint64(rsLen))
	out = append(out, e.resource...)
	out = protowire.AppendTag(out, fRSScopeSpans, protowire.BytesType)
	out = protowire.AppendVarint(out, uint64(ssLen))
	out = append(out, e.scope...)
	out = append(out, e.spans...)
	out = append(out, e.schema...)
	e.out = out
	return out
}

// appendSpan appends the fields of one Span message.
func appendSpan(b []byte, s *spanData) []byte {
	tid, sid := s.sc.TraceID(), s.sc.SpanID()
	b = appendBytesField(b, fSpanTraceID, tid[:])
	b = appendBytesField(b, fSpanSpanID, sid[:])
	if ts := s.sc.TraceState(); ts.Len() > 0 {
		b = appendStringField(b, fSpanTraceState, ts.String())
	}
	flags := uint32(s.sc.TraceFlags()) | flagHasIsRemote
	if s.parent.IsValid() {
		psid := s.parent.SpanID()
		b = appendBytesField(b, fSpanParentSpanID, psid[:])
		if s.parent.IsRemote() {
			flags |= flagIsRemote
		}
	}
	b = appendStringField(b, fSpanName, s.name)
	b = protowire.AppendTag(b, fSpanKind, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(s.kind)) // trace.SpanKind's values are OTLP's
	b = appendFixed64Field(b, fSpanStart, unixNano(s.start))
	b = appendFixed64Field(b, fSpanEnd, unixNano(s.end))
	for _, kv := range s.attrs {
		b = appendKeyValue(b, fSpanAttributes, kv)
	}
	b = appendCount(b, fSpanDroppedAttrs, s.droppedAttrs)
	for _, ev := range s.events {
		b = appendEvent(b, ev)
	}
	b = appendCount(b, fSpanDroppedEvents, s.droppedEvents)
	for _, l := range s.links {
		b = appendLink(b, l)
	}
	b = appendCount(b, fSpanDroppedLinks, s.droppedLinks)
	if s.status != codes.Unset {
		b = appendStatus(b, s.status, s.statusMsg)
	}
	b = protowire.AppendTag(b, fSpanFlags, protowire.Fixed32Type)
	return protowire.AppendFixed32(b, flags)
}

func appendEvent(b []byte, ev event) []byte {
	n := protowire.SizeTag(fEventTime) + protowire.SizeFixed64() +
		protowire.SizeTag(fEventName) + protowire.SizeBytes(len(ev.name)) + sizeCount(fEventDropped, ev.dropped)
	for _, kv := range ev.attrs {
		n += sizeMessage(fEventAttrs, sizeKeyValue(kv))
	}
	b = protowire.AppendTag(b, fSpanEvents, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(n))
	b = appendFixed64Field(b, fEventTime, unixNano(ev.time))
	b = appendStringField(b, fEventName, ev.name)
	for _, kv := range ev.attrs {
		b = appendKeyValue(b, fEventAttrs, kv)
	}
	return appendCount(b, fEventDropped, ev.dropped)
}

func appendLink(b []byte, l trace.Link) []byte {
	tid, sid := l.SpanContext.TraceID(), l.SpanContext.SpanID()
	ts := l.SpanContext.TraceState().String()
	flags := uint32(l.SpanContext.TraceFlags()) | flagHasIsRemote
	if l.SpanContext.IsRemote() {
		flags |= flagIsRemote
	}
	n := sizeMessage(fLinkTraceID, len(tid)) + sizeMessage(fLinkSpanID, len(sid)) +
		protowire.SizeTag(fLinkFlags) + protowire.SizeFixed32()
	if ts != "" {
		n += sizeMessage(fLinkTraceState, len(ts))
	}
	for _, kv := range l.Attributes {
		n += sizeMessage(fLinkAttrs, sizeKeyValue(kv))
	}
	b = protowire.AppendTag(b, fSpanLinks, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(n))
	b = appendBytesField(b, fLinkTraceID, tid[:])
	b = appendBytesField(b, fLinkSpanID, sid[:])
	if ts != "" {
		b = appendStringField(b, fLinkTraceState, ts)
	}
	for _, kv := range l.Attributes {
		b = appendKeyValue(b, fLinkAttrs, kv)
	}
	b = protowire.AppendTag(b, fLinkFlags, protowire.Fixed32Type)
	return protowire.AppendFixed32(b, flags)
}

// appendStatus appends Span.status; OTLP numbers the codes Unset 0, Ok 1,
// Error 2 (the Go API: Unset 0, Error 1, Ok 2).
func appendStatus(b []byte, code codes.Code, msg string) []byte {
	c := uint64(2)
	if code == codes.Ok {
		c = 1
	}
	n := protowire.SizeTag(fStatusCode) + protowire.SizeVarint(c)
	if msg != "" {
		n += sizeMessage(fStatusMessage, len(msg))
	}
	b = protowire.AppendTag(b, fSpanStatus, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(n))
	if msg != "" {
		b = appendStringField(b, fStatusMessage, msg)
	}
	b = protowire.AppendTag(b, fStatusCode, protowire.VarintType)
	return protowire.AppendVarint(b, c)
}

// appendKeyValue appends a KeyValue message as field num.
func appendKeyValue(b []byte, num protowire.Number, kv attribute.KeyValue) []byte {
	vs := sizeAnyValue(kv.Value) // once: the two lengths need it
	b = protowire.AppendTag(b, num, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(sizeMessage(fKVKey, len(kv.Key))+sizeMessage(fKVValue, vs)))
	b = appendStringField(b, fKVKey, string(kv.Key))
	b = protowire.AppendTag(b, fKVValue, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(vs))
	return appendAnyValue(b, kv.Value)
}

// sizeKeyValue is the size of a KeyValue's body.
func sizeKeyValue(kv attribute.KeyValue) int {
	return sizeMessage(fKVKey, len(kv.Key)) + sizeMessage(fKVValue, sizeAnyValue(kv.Value))
}

// sizeAnyValue is the size of an AnyValue's body. A oneof member is written
// even when it holds its zero value.
func sizeAnyValue(v attribute.Value) int {
	switch v.Type() {
	case attribute.BOOL:
		return protowire.SizeTag(fAnyBool) + 1
	case attribute.INT64:
		return protowire.SizeTag(fAnyInt) + protowire.SizeVarint(uint64(v.AsInt64()))
	case attribute.FLOAT64:
		return protowire.SizeTag(fAnyDouble) + protowire.SizeFixed64()
	case attribute.STRING:
		return sizeMessage(fAnyString, len(v.AsString()))
	case attribute.BOOLSLICE, attribute.INT64SLICE, attribute.FLOAT64SLICE, attribute.STRINGSLICE:
		return sizeMessage(fAnyArray, sizeArray(v))
	}
	return 0
}

func sizeArray(v attribute.Value) int {
	n := 0
	eachElement(v, func(e attribute.Value) { n += sizeMessage(fArrValues, sizeAnyValue(e)) })
	return n
}

func appendAnyValue(b []byte, v attribute.Value) []byte {
	switch v.Type() {
	case attribute.BOOL:
		b = protowire.AppendTag(b, fAnyBool, protowire.VarintType)
		return protowire.AppendVarint(b, protowire.EncodeBool(v.AsBool()))
	case attribute.INT64:
		b = protowire.AppendTag(b, fAnyInt, protowire.VarintType)
		return protowire.AppendVarint(b, uint64(v.AsInt64()))
	case attribute.FLOAT64:
		b = protowire.AppendTag(b, fAnyDouble, protowire.Fixed64Type)
		return protowire.AppendFixed64(b, math.Float64bits(v.AsFloat64()))
	case attribute.STRING:
		return appendStringField(b, fAnyString, v.AsString())
	case attribute.BOOLSLICE, attribute.INT64SLICE, attribute.FLOAT64SLICE, attribute.STRINGSLICE:
		b = protowire.AppendTag(b, fAnyArray, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(sizeArray(v)))
		eachElement(v, func(e attribute.Value) {
			b = protowire.AppendTag(b, fArrValues, protowire.BytesType)
			b = protowire.AppendVarint(b, uint64(sizeAnyValue(e)))
			b = appendAnyValue(b, e)
		})
	}
	return b
}

// eachElement calls f with each element of a slice value.
func eachElement(v attribute.Value, f func(attribute.Value)) {
	switch v.Type() {
	case attribute.BOOLSLICE:
		for _, x := range v.AsBoolSlice() {
			f(attribute.BoolValue(x))
		}
	case attribute.INT64SLICE:
		for _, x := range v.AsInt64Slice() {
			f(attribute.Int64Value(x))
		}
	case attribute.FLOAT64SLICE:
		for _, x := range v.AsFloat64Slice() {
			f(attribute.Float64Value(x))
		}
	case attribute.STRINGSLICE:
		for _, x := range v.AsStringSlice() {
			f(attribute.StringValue(x))
		}
	}
}

func sizeMessage(num protowire.Number, n int) int {
	return protowire.SizeTag(num) + protowire.SizeBytes(n)
}

func sizeCount(num protowire.Number, n int) int {
	if n == 0 {
		return 0
	}
	return protowire.SizeTag(num) + protowire.SizeVarint(uint64(n))
}

// appendCount appends a uint32 count field unless it is zero (proto3).
func appendCount(b []byte, num protowire.Number, n int) []byte {
	if n == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, uint64(min(n, math.MaxUint32)))
}

func appendMessage(b []byte, num protowire.Number, body []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, body)
}

func appendBytesField(b []byte, num protowire.Number, v []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

func appendStringField(b []byte, num protowire.Number, v string) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, v)
}

func appendFixed64Field(b []byte, num protowire.Number, v uint64) []byte {
	b = protowire.AppendTag(b, num, protowire.Fixed64Type)
	return protowire.AppendFixed64(b, v)
}

func unixNano(t time.Time) uint64 {
	if t.IsZero() {
		return 0
	}
	return uint64(t.UnixNano())
}
