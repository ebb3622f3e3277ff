package aggregate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// CompletedHeader is set on every merged answer: "true" when every part
// succeeded, "false" when some are missing (failure: partial).
const CompletedHeader = "X-Outrider-Completed"

// Option sets a dependency of New.
type Option func(*options)

type options struct {
	resolve func(string) (http.Handler, bool)
	known   []string
	log     *slog.Logger
	metrics *Metrics
	route   string
	tracer  trace.Tracer
}

// WithResolver gives the handler that calls a mesh upstream by name (the
// sidecar's per-upstream proxy, which balances, retries, speaks mTLS and
// makes a client span per attempt). Required when any endpoint is
// declared. It is called once per part call, concurrently; an upstream it
// does not know fails that part with 502. The handler gets a request
// whose context carries the part's deadline and span, and must return
// when that context is done.
func WithResolver(resolve func(upstream string) (http.Handler, bool)) Option {
	return func(o *options) { o.resolve = resolve }
}

// WithUpstreams gives the names of the upstreams that exist, so that New
// refuses a part naming another one instead of failing it at run time.
func WithUpstreams(names []string) Option {
	return func(o *options) { o.known = slices.Clone(names) }
}

// WithLogger sets the logger (default: none). Part failures are logged at
// Debug, panics of an upstream handler at Error.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithMetrics counts this route's requests and part calls in m under the
// route label. A nil m counts nothing.
func WithMetrics(m *Metrics, route string) Option {
	return func(o *options) { o.metrics, o.route = m, route }
}

// WithTracer makes a span per composite request ("aggregate <path>") and
// one child span per part ("aggregate part <name>"), whose context the
// part's upstream call gets (default: no spans).
func WithTracer(t trace.Tracer) Option { return func(o *options) { o.tracer = t } }

// Aggregator answers the composite endpoints of one route. It is
// immutable and safe for concurrent use.
type Aggregator struct {
	endpoints map[string]*endpoint
	resolve   func(string) (http.Handler, bool)
	log       *slog.Logger
	metrics   *routeMetrics
	tracer    trace.Tracer
}

type endpoint struct {
	path     string
	methods  map[string]bool
	allow    string
	partial  bool
	timeout  time.Duration
	maxBytes int64
	parts    []*part
	spanName string
	roots    []int // parts with no after
}

type part struct {
	name       string
	upstream   string
	method     string
	tmpl       *template
	after      []int
	dependents []int
	timeout    time.Duration
	headers    []string
	required   bool
	spanName   string
	jsonKey    []byte // "name":
}

// New validates cfg, applies the defaults and builds the Aggregator.
func New(cfg Config, opts ...Option) (*Aggregator, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if err := cfg.validate(o.known); err != nil {
		return nil, err
	}
	if len(cfg.Endpoints) > 0 && o.resolve == nil {
		return nil, errors.New("aggregate: composite endpoints need an upstream resolver (WithResolver)")
	}
	a := &Aggregator{
		endpoints: make(map[string]*endpoint, len(cfg.Endpoints)),
		resolve:   o.resolve,
		log:       o.log,
		metrics:   o.metrics.forRoute(o.route),
		tracer:    o.tracer,
	}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	for _, ec := range cfg.Endpoints {
		a.endpoints[ec.Path] = newEndpoint(ec)
	}
	return a, nil
}

func newEndpoint(ec Endpoint) *endpoint {
	ep := &endpoint{
		path:     ec.Path,
		methods:  map[string]bool{},
		partial:  ec.Failure == failurePartial,
		timeout:  ec.Timeout,
		maxBytes: int64(ec.MaxPartBytes),
		spanName: "aggregate " + ec.Path,
	}
	if ep.timeout == 0 {
		ep.timeout = DefaultEndpointTimeout
	}
	if ep.maxBytes == 0 {
		ep.maxBytes = int64(DefaultMaxPartBytes)
	}
	methods := ec.Methods
	if len(methods) == 0 {
		methods = []string{http.MethodGet}
	}
	if slices.Contains(methods, http.MethodGet) && !slices.Contains(methods, http.MethodHead) {
		methods = append(slices.Clone(methods), http.MethodHead)
	}
	var allow []string
	for _, m := range methods {
		if !ep.methods[m] {
			ep.methods[m] = true
			allow = append(allow, m)
		}
	}
	ep.allow = strings.Join(allow, ", ")
	index := map[string]int{}
	for i, pc := range ec.Parts {
		index[pc.Name] = i
	}
	for _, pc := range ec.Parts {
		tmpl, _ := parseTemplate(pc.Path) // validated
		p := &part{
			name:     pc.Name,
			upstream: pc.Upstream,
			method:   pc.Method,
			tmpl:     tmpl,
			timeout:  pc.Timeout,
			required: pc.Required,
			spanName: "aggregate part " + pc.Name,
			jsonKey:  []byte(strconv.Quote(pc.Name) + ":"), // names are [A-Za-z0-9_-]
		}
		if p.method == "" {
			p.method = http.MethodGet
		}
		if p.timeout == 0 {
			p.timeout = DefaultPartTimeout
		}
		for _, h := range pc.ForwardHeaders {
			p.headers = append(p.headers, http.CanonicalHeaderKey(h))
		}
		for _, name := range pc.After {
			p.after = append(p.after, index[name])
		}
		ep.parts = append(ep.parts, p)
	}
	for i, p := range ep.parts {
		if len(p.after) == 0 {
			ep.roots = append(ep.roots, i)
		}
		for _, d := range p.after {
			ep.parts[d].dependents = append(ep.parts[d].dependents, i)
		}
	}
	return ep
}

// Wrap returns the middleware: a request for a composite endpoint's path
// is answered here; every other request goes to next untouched.
// Serves reports whether path is a composite endpoint's (its methods are
// checked when it is served).
func (a *Aggregator) Serves(path string) bool {
	_, ok := a.endpoints[path]
	return ok
}

func (a *Aggregator) Wrap(next http.Handler) http.Handler {
	if len(a.endpoints) == 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ep := a.endpoints[r.URL.Path]
		if ep == nil {
			next.ServeHTTP(w, r)
			return
		}
		a.serve(w, r, ep)
	})
}

// outcome is the result of one part.
type outcome struct {
	status   int    // the upstream's 2xx, or the status the failure maps to
	class    class  // classOK on success
	msg      string // what failed, for the client and the span
	upstream int    // the upstream's non-2xx status, when that was the failure
	body     []byte // the JSON answer, on success
}

// failure is a part failing before any call is made.
type failure struct {
	status int
	class  class
	msg    string
}

func fail(status int, c class, msg string) outcome {
	return outcome{status: status, class: c, msg: msg}
}

func (o *outcome) ok() bool { return o.class == classOK }

type partState uint8

const (
	pending partState = iota
	running
	resolved
)

// exchange is one composite request in flight. Its fields are owned by
// the goroutine serving the request; part calls run on their own
// goroutines and report on results only.
type exchange struct {
	a       *Aggregator
	ep      *endpoint
	r       *http.Request
	ctx     context.Context
	results chan indexed

	state      []partState
	waiting    []int // after-parts not yet succeeded
	res        []outcome
	spans      []trace.Span
	decoded    []any
	query      url.Values
	unresolved int
	fatal      int // index of the part that fails the request, or -1

	wg   sync.WaitGroup
	live atomic.Int32 // part goroutines still running
}

type indexed struct {
	i int
	o outcome
}

func (a *Aggregator) serve(w http.ResponseWriter, r *http.Request, ep *endpoint) {
	if !ep.methods[r.Method] {
		w.Header().Set("Allow", ep.allow)
		http.Error(w, "method not allowed on this composite endpoint", http.StatusMethodNotAllowed)
		a.metrics.request(reqRejected)
		return
	}
	ctx, span := r.Context(), noSpan
	if a.tracer != nil {
		ctx, span = a.tracer.Start(ctx, ep.spanName, trace.WithSpanKind(trace.SpanKindInternal),
			trace.WithAttributes(attribute.String("outrider.aggregate.endpoint", ep.path)))
	}
	defer span.End()
	ctx, cancel := context.WithTimeout(ctx, ep.timeout)
	defer cancel()
	n := len(ep.parts)
	x := &exchange{
		a: a, ep: ep, r: r, ctx: ctx,
		results:    make(chan indexed, n),
		state:      make([]partState, n),
		waiting:    make([]int, n),
		res:        make([]outcome, n),
		spans:      make([]trace.Span, n),
		decoded:    make([]any, n),
		unresolved: n,
		fatal:      -1,
	}
	for i, p := range ep.parts {
		x.waiting[i] = len(p.after)
	}
	x.run()
	cancel()
	x.abandon()
	out := x.respond(w)
	a.metrics.request(out)
	if a.tracer != nil {
		span.SetAttributes(attribute.String("outrider.aggregate.outcome", reqOutcomeNames[out]))
		if out == reqFailed {
			span.SetStatus(codes.Error, x.res[x.fatal].msg)
		}
	}
	if x.live.Load() > 0 {
		// Parts still unwinding after their context ended: send the answer
		// now rather than when they return.
		_ = http.NewResponseController(w).Flush()
	}
	x.wg.Wait()
}

// run starts the parts as their dependencies allow and collects their
// outcomes until every part is resolved, one fails the request, or the
// endpoint's context ends.
func (x *exchange) run() {
	for _, i := range x.ep.roots {
		x.start(i)
	}
	for x.unresolved > 0 && x.fatal < 0 {
		select {
		case ir := <-x.results:
			x.resolve(ir.i, ir.o)
		case <-x.ctx.Done():
			o := ctxOutcome(x.ctx)
			for i := range x.state {
				if x.state[i] != resolved && x.fatal < 0 {
					x.resolve(i, o)
				}
			}
			return
		}
	}
	if x.fatal < 0 && x.ep.partial {
		for i := range x.res {
			if x.res[i].ok() {
				return
			}
		}
		// Nothing succeeded: the first failure that is not a skip answers.
		x.fatal = slices.IndexFunc(x.res, func(o outcome) bool { return o.class != classDependency })
	}
}

// abandon resolves the parts left when the request failed on one part:
// running calls (their context is already canceled) end their spans as
// canceled; parts never started are only marked, for "_parts".
func (x *exchange) abandon() {
	for i, st := range x.state {
		switch st {
		case running:
			x.resolve(i, fail(http.StatusBadGateway, classCanceled, "canceled: the request failed on another part"))
		case pending:
			x.state[i] = resolved
			x.res[i] = fail(http.StatusBadGateway, classCanceled, "not called: the request failed on another part")
		}
	}
}

// ctxOutcome is the outcome of a part whose context ended first.
func ctxOutcome(ctx context.Context) outcome {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fail(http.StatusGatewayTimeout, classTimeout, "timeout")
	}
	return fail(http.StatusBadGateway, classCanceled, "canceled")
}

// start builds part i's request and calls it on its own goroutine; a
// target that cannot be built resolves the part at once.
func (x *exchange) start(i int) {
	p := x.ep.parts[i]
	ctx, span := x.partSpan(i)
	x.spans[i] = span
	x.state[i] = running
	target, f := p.tmpl.render(x.lookup)
	if f != nil {
		x.resolve(i, fail(f.status, f.class, f.msg))
		return
	}
	h, ok := x.a.resolve(p.upstream)
	if !ok || h == nil {
		x.resolve(i, fail(http.StatusBadGateway, classNoUpstream, fmt.Sprintf("no upstream %q", p.upstream)))
		return
	}
	u, err := url.ParseRequestURI(target)
	if err != nil {
		x.resolve(i, fail(http.StatusBadGateway, classBadRequest, "cannot build the request target"))
		return
	}
	hdr := make(http.Header, len(p.headers)+1)
	hdr.Set("Accept", "application/json")
	for _, name := range p.headers {
		if vs := x.r.Header[name]; len(vs) > 0 {
			hdr[name] = slices.Clone(vs)
		}
	}
	x.wg.Add(1)
	x.live.Add(1)
	go x.call(ctx, i, h, &http.Request{
		Method:     p.method,
		URL:        u,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     hdr,
		Body:       http.NoBody,
		RemoteAddr: x.r.RemoteAddr,
	})
}

// call runs on its own goroutine: it calls the part's upstream handler
// under the part's timeout and reports exactly one outcome, either the
// handler's answer or, if the context ends first, a timeout; a handler
// that outlives its context is waited for by serve, not by the answer.
func (x *exchange) call(ctx context.Context, i int, h http.Handler, req *http.Request) {
	defer x.wg.Done()
	defer x.live.Add(-1)
	ctx, cancel := context.WithTimeout(ctx, x.ep.parts[i].timeout)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { x.results <- indexed{i, ctxOutcome(ctx)} })
	o := x.a.invoke(h, req.WithContext(ctx), x.ep.maxBytes, x.ep.parts[i].name)
	if stop() {
		x.results <- indexed{i, o}
	}
}

// invoke calls h with req, capturing its answer. A panic in h (such as
// http.ErrAbortHandler, which httputil.ReverseProxy raises when it cannot
// copy the answer) is the part's failure, not the process's.
func (a *Aggregator) invoke(h http.Handler, req *http.Request, max int64, name string) (o outcome) {
	cw := &capture{header: make(http.Header), max: max}
	defer func() {
		v := recover()
		switch {
		case v == nil:
		case cw.overflow:
			o = fail(http.StatusBadGateway, classTooLarge, "answer is larger than max_part_bytes")
		case v == http.ErrAbortHandler:
			o = fail(http.StatusBadGateway, classAborted, "upstream answer was cut off")
		default:
			a.log.Error("aggregate: upstream handler panicked", "part", name, "panic", v)
			o = fail(http.StatusBadGateway, classPanic, "upstream call failed")
		}
	}()
	h.ServeHTTP(cw, req)
	return cw.outcome()
}

// resolve records part i's outcome, ends its span, and starts the parts
// that were waiting for it or fails them in turn.
func (x *exchange) resolve(i int, o outcome) {
	if x.state[i] == resolved {
		return
	}
	p := x.ep.parts[i]
	x.state[i] = resolved
	x.unresolved--
	x.res[i] = o
	span := x.spans[i]
	if span == nil {
		_, span = x.partSpan(i)
	}
	if x.a.tracer != nil {
		x.endSpan(span, &o)
	}
	x.a.metrics.part(o.class)
	if o.ok() {
		for _, d := range p.dependents {
			x.waiting[d]--
			if x.waiting[d] == 0 && x.state[d] == pending && x.fatal < 0 {
				x.start(d)
			}
		}
		return
	}
	if x.a.log.Enabled(x.ctx, slog.LevelDebug) {
		x.a.log.Debug("aggregate: part failed", "endpoint", x.ep.path, "part", p.name,
			"upstream", p.upstream, "status", o.status, "error", o.msg)
	}
	if x.fatal < 0 && (!x.ep.partial || p.required) && o.class != classDependency {
		x.fatal = i
	}
	if x.fatal >= 0 {
		return
	}
	for _, d := range p.dependents {
		if x.state[d] == pending {
			x.resolve(d, fail(http.StatusFailedDependency, classDependency, fmt.Sprintf("part %q failed", p.name)))
		}
	}
}

// noSpan stands for the spans not made when tracing is off.
var noSpan = trace.SpanFromContext(context.Background())

// partSpan starts part i's span under the endpoint's, or returns noSpan.
func (x *exchange) partSpan(i int) (context.Context, trace.Span) {
	if x.a.tracer == nil {
		return x.ctx, noSpan
	}
	p := x.ep.parts[i]
	return x.a.tracer.Start(x.ctx, p.spanName, trace.WithSpanKind(trace.SpanKindInternal),
		trace.WithAttributes(attribute.String("outrider.aggregate.part", p.name), attribute.String("outrider.upstream", p.upstream)))
}

// endSpan records a part's outcome on its span and ends it.
func (x *exchange) endSpan(span trace.Span, o *outcome) {
	span.SetAttributes(
		attribute.Int("http.response.status_code", o.status),
		attribute.String("outrider.aggregate.outcome", o.class.String()),
		attribute.Int("outrider.aggregate.bytes", len(o.body)))
	if !o.ok() {
		span.SetStatus(codes.Error, o.msg)
	}
	span.End()
}

// lookup gives a placeholder's value from the inbound request or an
// earlier part's answer.
func (x *exchange) lookup(g *tseg) (string, *failure) {
	switch g.src {
	case fromQuery:
		if x.query == nil {
			x.query = x.r.URL.Query()
		}
		vs, ok := x.query[g.text]
		if !ok || len(vs) == 0 {
			return "", &failure{http.StatusBadRequest, classBadRequest, g.describe() + " is missing"}
		}
		return vs[0], nil
	case fromHeader:
		vs := x.r.Header.Values(g.text)
		if len(vs) == 0 {
			return "", &failure{http.StatusBadRequest, classBadRequest, g.describe() + " is missing"}
		}
		return vs[0], nil
	case fromPart:
		i := slices.IndexFunc(x.ep.parts, func(p *part) bool { return p.name == g.text })
		if x.decoded[i] == nil {
			d := json.NewDecoder(bytes.NewReader(x.res[i].body))
			d.UseNumber()
			var v any
			if err := d.Decode(&v); err != nil || v == nil {
				return "", g.badValue("is missing")
			}
			x.decoded[i] = v
		}
		return fieldValue(x.decoded[i], g)
	}
	return "", &failure{http.StatusBadGateway, classBadRequest, "bad placeholder"}
}

// fieldValue walks g.field into v: object keys, or decimal indexes into
// arrays. Strings, numbers and booleans are values; anything else fails.
func fieldValue(v any, g *tseg) (string, *failure) {
	for _, f := range g.field {
		switch c := v.(type) {
		case map[string]any:
			v = c[f]
		case []any:
			n, err := strconv.Atoi(f)
			if err != nil || n < 0 || n >= len(c) {
				return "", g.badValue("is missing")
			}
			v = c[n]
		default:
			return "", g.badValue("is missing")
		}
	}
	switch c := v.(type) {
	case string:
		return c, nil
	case json.Number:
		return c.String(), nil
	case bool:
		return strconv.FormatBool(c), nil
	case nil:
		return "", g.badValue("is missing")
	}
	return "", g.badValue("is an object or array, not a string, number or boolean")
}

// respond writes the merged answer or the failure, and classifies the
// request. A client that went away gets nothing.
func (x *exchange) respond(w http.ResponseWriter) reqOutcome {
	if x.r.Context().Err() != nil {
		return reqCanceled
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	var b bytes.Buffer
	if x.fatal >= 0 {
		o := &x.res[x.fatal]
		b.WriteString(`{"error":`)
		writeJSONString(&b, fmt.Sprintf("part %q: %s", x.ep.parts[x.fatal].name, o.msg))
		b.WriteString(`,"part":`)
		writeJSONString(&b, x.ep.parts[x.fatal].name)
		b.WriteString(`,"status":`)
		b.WriteString(strconv.Itoa(o.status))
		if x.ep.partial {
			b.WriteString(`,"_parts":`)
			x.writeStatuses(&b)
		}
		b.WriteString("}\n")
		h.Set("Content-Length", strconv.Itoa(b.Len()))
		w.WriteHeader(o.status)
		_, _ = w.Write(b.Bytes())
		return reqFailed
	}
	size := 16
	for i := range x.res {
		size += len(x.res[i].body) + len(x.ep.parts[i].jsonKey) + 1
	}
	b.Grow(size)
	b.WriteByte('{')
	complete := true
	first := true
	for i, p := range x.ep.parts {
		if !x.res[i].ok() {
			complete = false
			continue
		}
		if !first {
			b.WriteByte(',')
		}
		first = false
		b.Write(p.jsonKey)
		b.Write(x.res[i].body)
	}
	if x.ep.partial {
		if !first {
			b.WriteByte(',')
		}
		b.WriteString(`"_parts":`)
		x.writeStatuses(&b)
	}
	b.WriteString("}\n")
	h.Set(CompletedHeader, strconv.FormatBool(complete))
	h.Set("Content-Length", strconv.Itoa(b.Len()))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b.Bytes())
	if complete {
		return reqComplete
	}
	return reqPartial
}

// writeStatuses writes the "_parts" object: each part's status, and for a
// failure what failed (and the upstream's own status, when that was it).
func (x *exchange) writeStatuses(b *bytes.Buffer) {
	b.WriteByte('{')
	for i, p := range x.ep.parts {
		if i > 0 {
			b.WriteByte(',')
		}
		o := &x.res[i]
		b.Write(p.jsonKey)
		b.WriteString(`{"status":`)
		b.WriteString(strconv.Itoa(o.status))
		if !o.ok() {
			b.WriteString(`,"error":`)
			writeJSONString(b, o.msg)
			if o.upstream != 0 {
				b.WriteString(`,"upstream_status":`)
				b.WriteString(strconv.Itoa(o.upstream))
			}
		}
		b.WriteByte('}')
	}
	b.WriteByte('}')
}

func writeJSONString(b *bytes.Buffer, s string) {
	q, _ := json.Marshal(s) // a string always marshals
	b.Write(q)
}
