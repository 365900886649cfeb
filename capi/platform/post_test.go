package platform

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestPostReadsTheAnswerUpToTheCap(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "7")
		w.WriteHeader(http.StatusTooManyRequests)
		w.Write(bytes.Repeat([]byte("x"), 100))
	}))
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader("{}"))
	reply, err := Post(srv.Client(), req, 10, 3)
	if err != nil {
		t.Fatal(err)
	}
	if reply.StatusCode != http.StatusTooManyRequests || reply.Header.Get("Retry-After") != "7" {
		t.Errorf("reply = %d %v; want 429 with its headers", reply.StatusCode, reply.Header)
	}
	if len(reply.Body) != 10 {
		t.Errorf("read %d bytes of the body; want the cap, 10", len(reply.Body))
	}
}

func TestPostNamesTheBatchInNetworkErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Promise more than is sent, so reading the answer fails.
		w.Header().Set("Content-Length", "100")
		w.Write([]byte("short"))
	}))
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodPost, srv.URL, nil)
	if _, err := Post(srv.Client(), req, 1<<20, 4); err == nil || !strings.HasPrefix(err.Error(), "read answer to batch of 4: ") {
		t.Errorf("cut-off answer: err = %v; want it to name the read and the batch", err)
	}

	srv.Close()
	req, _ = http.NewRequest(http.MethodPost, srv.URL+"/?access_token=s3cret", nil)
	_, err := Post(srv.Client(), req, 1<<20, 5)
	if err == nil || !strings.HasPrefix(err.Error(), "send batch of 5: ") {
		t.Fatalf("closed server: err = %v; want it to name the send and the batch", err)
	}
	// The error may quote the URL: callers redact it, and Redact must catch the secret there.
	if got := Redact(err.Error(), "s3cret"); strings.Contains(got, "s3cret") {
		t.Errorf("redacted network error still carries the secret: %s", got)
	}
}
