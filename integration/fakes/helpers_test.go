package fakes

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// sha returns the lowercase hex SHA-256 of an already-normalized value, as the platforms expect.
func sha(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

type response struct {
	status int
	header http.Header
	body   map[string]any
}

func send(t *testing.T, method, url, contentType, body string, header map[string]string) response {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	r := response{status: resp.StatusCode, header: resp.Header}
	if err := json.Unmarshal(data, &r.body); err != nil {
		t.Fatalf("response is not a JSON object: %v: %s", err, data)
	}
	return r
}

// mustJSON encodes v, for building payloads by hand.
func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// clone deep-copies a JSON-like value so each case can mutate its own payload.
func clone(v any) any {
	b, _ := json.Marshal(v)
	var out any
	_ = json.Unmarshal(b, &out)
	return out
}

// at walks a JSON-like value by keys and indexes ("data", 0, "user_data").
func at(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			v = v.(map[string]any)[k]
		case int:
			v = v.([]any)[k]
		}
	}
	return v
}

func obj(v any, path ...any) map[string]any { return at(v, path...).(map[string]any) }

// tb captures what a fake reports to its test, to check the cleanup hook itself.
type tb struct {
	testing.TB
	cleanups []func()
	errors   []string
}

func (t *tb) Cleanup(f func())                  { t.cleanups = append(t.cleanups, f) }
func (t *tb) Errorf(format string, args ...any) { t.errors = append(t.errors, format) }
func (t *tb) Helper()                           {}
func (t *tb) runCleanups() {
	for i := len(t.cleanups) - 1; i >= 0; i-- {
		t.cleanups[i]()
	}
}

func assertViolation(t *testing.T, got []Violation, want string) {
	t.Helper()
	for _, v := range got {
		if strings.Contains(v.Reason, want) {
			return
		}
	}
	t.Errorf("no violation mentions %q; got %v", want, got)
}
