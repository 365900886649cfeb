package caddymodule

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestConversionWriterDecidesOnTheFinalStatus(t *testing.T) {
	tests := []struct {
		name  string
		write func(w http.ResponseWriter)
		want  int
	}{
		{"explicit", func(w http.ResponseWriter) { w.WriteHeader(http.StatusFound) }, http.StatusFound},
		{"1xx does not latch", func(w http.ResponseWriter) {
			w.WriteHeader(http.StatusEarlyHints)
			w.WriteHeader(http.StatusCreated)
		}, http.StatusCreated},
		{"implicit 200 by Write", func(w http.ResponseWriter) { io.WriteString(w, "x") }, http.StatusOK},
		{"implicit 200 by ReadFrom", func(w http.ResponseWriter) { io.Copy(w, strings.NewReader("x")) }, http.StatusOK},
		{"implicit 200 by Flush", func(w http.ResponseWriter) { http.NewResponseController(w).Flush() }, http.StatusOK},
		{"nothing written", func(http.ResponseWriter) {}, http.StatusOK},
		{"upgrade", func(w http.ResponseWriter) { w.WriteHeader(http.StatusSwitchingProtocols) }, http.StatusSwitchingProtocols},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := &headerLog{ResponseRecorder: httptest.NewRecorder()}
			var got []int
			cw := newConversionWriter(rec, func(status int) {
				got = append(got, status)
				rec.Header().Set("X-Decided", "1")
			})
			tc.write(cw)
			cw.finish()
			if len(got) != 1 || got[0] != tc.want {
				t.Fatalf("decided %v, want once on %d", got, tc.want)
			}
			if n := len(rec.decidedAt); n > 0 && !rec.decidedAt[n-1] {
				t.Errorf("the final status went out before the decision: %v", rec.decidedAt)
			}
		})
	}
}

// headerLog records, for every status written, whether the decision was in the header by then.
type headerLog struct {
	*httptest.ResponseRecorder
	decidedAt []bool
}

func (h *headerLog) WriteHeader(code int) {
	h.decidedAt = append(h.decidedAt, h.Header().Get("X-Decided") == "1")
	h.ResponseRecorder.WriteHeader(code)
}
