package tracing

import (
	"fmt"
	"slices"

	"go.opentelemetry.io/contrib/propagators/b3"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

func checkPropagators(names []string) error {
	for _, n := range names {
		switch n {
		case "tracecontext", "baggage", "b3", "b3multi", "none":
		default:
			return fmt.Errorf("unknown propagator %q, want a list of tracecontext, baggage, b3, b3multi or none", n)
		}
	}
	return nil
}

// newPropagator composes the named propagators in order, skipping
// duplicates. "none" anywhere in the list, like an empty list, gives a
// propagator that neither extracts nor injects (the OTel autoprop rule).
//
// b3 injects the single "b3" header and b3multi the X-B3-* headers; both
// extract either form.
func newPropagator(names []string) (propagation.TextMapPropagator, error) {
	if err := checkPropagators(names); err != nil {
		return nil, err
	}
	if slices.Contains(names, "none") {
		return propagation.NewCompositeTextMapPropagator(), nil
	}
	var props []propagation.TextMapPropagator
	seen := make(map[string]bool, len(names))
	for _, n := range names {
		if seen[n] {
			continue
		}
		seen[n] = true
		switch n {
		case "tracecontext":
			props = append(props, propagation.TraceContext{})
		case "baggage":
			props = append(props, propagation.Baggage{})
		case "b3":
			props = append(props, b3.New(b3.WithInjectEncoding(b3.B3SingleHeader)))
		case "b3multi":
			props = append(props, b3.New(b3.WithInjectEncoding(b3.B3MultipleHeader)))
		}
	}
	if len(props) == 1 {
		return props[0], nil
	}
	return propagation.NewCompositeTextMapPropagator(props...), nil
}

// newSampler returns the sampler named by Config.Sampler; arg is the ratio
// of the traceidratio samplers.
func newSampler(name string, arg float64) (sdktrace.Sampler, error) {
	if err := checkRatio(arg); err != nil {
		return nil, err
	}
	switch name {
	case SamplerAlwaysOn:
		return sdktrace.AlwaysSample(), nil
	case SamplerAlwaysOff:
		return sdktrace.NeverSample(), nil
	case SamplerTraceIDRatio:
		return sdktrace.TraceIDRatioBased(arg), nil
	case SamplerParentBasedAlwaysOn, "":
		return sdktrace.ParentBased(sdktrace.AlwaysSample()), nil
	case SamplerParentBasedAlwaysOff:
		return sdktrace.ParentBased(sdktrace.NeverSample()), nil
	case SamplerParentBasedTraceIDRatio:
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(arg)), nil
	}
	return nil, checkSampler(name)
}
