package http1

import (
	"bufio"
	"bytes"
	"io"
	"strings"
	"testing"
)

// benchRequest is a typical request head: six fields.
const benchRequest = "GET /api/v1/orders/12345?expand=items HTTP/1.1\r\n" +
	"Host: orders.internal:8080\r\n" +
	"User-Agent: Go-http-client/1.1\r\n" +
	"Accept: application/json\r\n" +
	"Accept-Encoding: gzip\r\n" +
	"X-Request-Id: 7f2c1a4e-9b7d-4c5e-8f3a-2d1b0c9e8a7f\r\n" +
	"Traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n"

const benchResponse = "HTTP/1.1 200 OK\r\n" +
	"Content-Type: application/json\r\n" +
	"Content-Length: 1234\r\n" +
	"Date: Mon, 02 Mar 2026 10:00:00 GMT\r\n" +
	"Cache-Control: no-store\r\n" +
	"Vary: Accept-Encoding\r\n" +
	"X-Request-Id: 7f2c1a4e-9b7d-4c5e-8f3a-2d1b0c9e8a7f\r\n\r\n"

func BenchmarkRequestHeadRead(b *testing.B) {
	var h RequestHead
	r := strings.NewReader(benchRequest)
	br := bufio.NewReader(r)
	b.SetBytes(int64(len(benchRequest)))
	b.ReportAllocs()
	for b.Loop() {
		r.Reset(benchRequest)
		br.Reset(r)
		if err := h.Read(br, 0); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkResponseHeadRead(b *testing.B) {
	var h ResponseHead
	r := strings.NewReader(benchResponse)
	br := bufio.NewReader(r)
	method := []byte("GET")
	b.SetBytes(int64(len(benchResponse)))
	b.ReportAllocs()
	for b.Loop() {
		r.Reset(benchResponse)
		br.Reset(r)
		if err := h.Read(br, method, 0); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendWire(b *testing.B) {
	var h RequestHead
	if err := h.Read(bufio.NewReader(strings.NewReader(benchRequest)), 0); err != nil {
		b.Fatal(err)
	}
	h.Header.Add("X-Forwarded-For", "10.0.0.1")
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		buf = h.AppendWire(buf[:0])
	}
}

// benchChunkedBody is 64 KiB of payload in 1 KiB chunks with a trailer,
// like a streamed JSON or gRPC-web response.
func benchChunkedBody() []byte {
	var b bytes.Buffer
	chunk := strings.Repeat("x", 1024)
	for range 64 {
		b.WriteString("400\r\n" + chunk + "\r\n")
	}
	b.WriteString("0\r\nGrpc-Status: 0\r\n\r\n")
	return b.Bytes()
}

func BenchmarkCopyBodyChunked(b *testing.B) {
	body := benchChunkedBody()
	r := bytes.NewReader(body)
	src := bufio.NewReader(r)
	dst := bufio.NewWriter(io.Discard)
	b.SetBytes(64 << 10)
	b.ReportAllocs()
	for b.Loop() {
		r.Reset(body)
		src.Reset(r)
		if _, err := CopyBody(dst, src, BodyChunked, 0, BodyChunked); err != nil {
			b.Fatal(err)
		}
	}
}
