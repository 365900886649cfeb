package caddymodule

import (
	"io"
	"net/http"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// conversionWriter tells its decide callback the final status of a response just before the status
// is written, so that a conversion can be decided on it while headers (the _capi_evt cookie) and
// the injected snippet (its browser copy) can still carry the result. Everything else passes
// through: 1xx answers do not latch, ReadFrom and flushes count as writing a 200 as net/http does,
// and Unwrap lets http.NewResponseController reach Hijack and deadlines.
type conversionWriter struct {
	*caddyhttp.ResponseWriterWrapper
	decide  func(status int)
	decided bool
}

func newConversionWriter(w http.ResponseWriter, decide func(status int)) *conversionWriter {
	return &conversionWriter{ResponseWriterWrapper: &caddyhttp.ResponseWriterWrapper{ResponseWriter: w}, decide: decide}
}

func (w *conversionWriter) status(code int) {
	if w.decided {
		return
	}
	// 1xx answers are informational, except 101, which ends the HTTP exchange.
	if code < 200 && code != http.StatusSwitchingProtocols {
		return
	}
	w.decided = true
	w.decide(code)
}

// WriteHeader decides on the final status, then writes it.
func (w *conversionWriter) WriteHeader(code int) {
	w.status(code)
	w.ResponseWriter.WriteHeader(code)
}

// Write writes p, deciding on an implicit 200 first.
func (w *conversionWriter) Write(p []byte) (int, error) {
	if !w.decided {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(p)
}

// ReadFrom decides on an implicit 200 and copies through the inner writer's ReadFrom.
func (w *conversionWriter) ReadFrom(r io.Reader) (int64, error) {
	if !w.decided {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriterWrapper.ReadFrom(r)
}

// FlushError decides on an implicit 200, since flushing writes the header, and flushes.
func (w *conversionWriter) FlushError() error {
	if !w.decided {
		w.WriteHeader(http.StatusOK)
	}
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// Flush is FlushError for callers that use http.Flusher.
func (w *conversionWriter) Flush() { _ = w.FlushError() }

// finish decides on the 200 net/http sends for a handler that wrote nothing. Call it after the
// next handler returned without error, before the response ends.
func (w *conversionWriter) finish() {
	w.status(http.StatusOK)
}

// Interface guards
var (
	_ http.ResponseWriter = (*conversionWriter)(nil)
	_ http.Flusher        = (*conversionWriter)(nil)
	_ io.ReaderFrom       = (*conversionWriter)(nil)
)
