// Package tracing sets up OpenTelemetry tracing for the sidecar: one
// TracerProvider exporting over OTLP (gRPC or HTTP/protobuf) and one
// TextMapPropagator that carries trace headers across the proxy.
//
// # Cost
//
// The provider implements the OpenTelemetry trace API itself (span.go) and
// encodes spans straight into OTLP's protobuf wire format (otlp.go); the
// SDK provides the samplers, the resource and, for tests, span exporters
// (WithExporter). The SDK's span and OTLP exporter cost about 16 us of CPU
// per span on the project's 2-core machine; this path about 3.7 us with the
// OTLP/HTTP export included (BenchmarkSpan), which is what lets a
// 100%-sampled sidecar stay within the budget. A span is one small
// allocation, the handle; what it records lives in a pooled record that End
// detaches and the export goroutine returns, and SetAttributes lets the
// sidecar pass attributes without putting them on the heap. The encoding is
// checked against the generated OTLP types (otlp_test.go) and against a
// real Jaeger (the sidecar's tests).
//
// The CLI builds a Config with FromEnv(os.Getenv), overrides fields from its
// flags and passes it to New. With tracing disabled, Tracer is the OTel no-op
// tracer (no span is recorded, nothing is exported, no goroutine runs) while
// Propagator still extracts and injects headers, so a trace started by the
// caller continues through the sidecar to the upstream.
//
// # Never in the way of traffic
//
// Ending a span never blocks: a sampled span is put on a bounded queue
// (Config.MaxQueueSize) with a non-blocking send, and a full queue drops the
// span and counts it. One goroutine, owned by the Tracing and stopped by
// Shutdown, sends batches of up to 512 spans, at least once a second, each
// export bounded by Config.ExportTimeout. A collector that is down or slow
// costs dropped spans, counted in Stats and logged at most once per 30s, and
// nothing else.
//
// # Environment variables
//
// FromEnv reads these standard variables; where a _TRACES_ variant exists it
// wins over the generic one:
//
//	OTEL_SDK_DISABLED                      true disables tracing
//	OTEL_TRACES_EXPORTER                   otlp (enables) or none (disables)
//	OTEL_EXPORTER_OTLP_ENDPOINT            base URL; /v1/traces is appended for http/protobuf; enables tracing
//	OTEL_EXPORTER_OTLP_TRACES_ENDPOINT     URL used as is; enables tracing
//	OTEL_EXPORTER_OTLP_PROTOCOL            grpc (default) or http/protobuf
//	OTEL_EXPORTER_OTLP_TRACES_PROTOCOL
//	OTEL_EXPORTER_OTLP_INSECURE            true: plaintext for an endpoint without a scheme
//	OTEL_EXPORTER_OTLP_TRACES_INSECURE
//	OTEL_EXPORTER_OTLP_HEADERS             k=v,k2=v2 with URL-encoded values (never logged)
//	OTEL_EXPORTER_OTLP_TRACES_HEADERS
//	OTEL_EXPORTER_OTLP_TIMEOUT             export timeout in milliseconds (default 10000)
//	OTEL_EXPORTER_OTLP_TRACES_TIMEOUT
//	OTEL_BSP_EXPORT_TIMEOUT                used when neither OTLP timeout is set
//	OTEL_EXPORTER_OTLP_CERTIFICATE         PEM file of the CAs that verify the collector (default: system roots)
//	OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE
//	OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE  PEM client certificate for mTLS to the collector, with ..._CLIENT_KEY
//	OTEL_EXPORTER_OTLP_CLIENT_KEY          (both also as _TRACES_ variants)
//	OTEL_EXPORTER_OTLP_COMPRESSION         gzip or none (default)
//	OTEL_EXPORTER_OTLP_TRACES_COMPRESSION
//	OTEL_BSP_MAX_QUEUE_SIZE                spans buffered for export (default 2048)
//	OTEL_SERVICE_NAME                      service.name (default: the proxied service's name)
//	OTEL_RESOURCE_ATTRIBUTES               k=v,k2=v2 with URL-encoded values
//	OTEL_TRACES_SAMPLER                    always_on, always_off, traceidratio, parentbased_always_on (default),
//	                                       parentbased_always_off, parentbased_traceidratio
//	OTEL_TRACES_SAMPLER_ARG                sampling ratio between 0 and 1 (default 1)
//	OTEL_PROPAGATORS                       tracecontext,baggage (default); also b3 (single header), b3multi, none
//
// Every error from FromEnv names the variable and the bad value (header
// values excepted: they are credentials).
//
// A failed export is retried, with a backoff from 1 s doubling to 5 s,
// while the export timeout allows, when the collector answers HTTP 429, 502,
// 503 or 504, gRPC UNAVAILABLE, RESOURCE_EXHAUSTED, ABORTED or
// DEADLINE_EXCEEDED, or cannot be reached; a collector whose certificate
// does not verify is not retried. The response's partial_success is not read.
package tracing
