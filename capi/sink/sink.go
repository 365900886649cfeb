// Package sink implements `sink file <path>`: an http.RoundTripper that the platform senders use in
// place of the network. It records every request they make as one JSON line of a file and answers as
// the platform would on success, so the whole pipeline runs (queue, batching, payload building,
// classification) and the file shows exactly what would have reached each platform.
//
// It owns the recording format. It must not write a secret: headers are not recorded, and access
// tokens, client secrets and refresh tokens are removed from URLs and form bodies; OAuth token
// requests are answered without being recorded. The only personal data in the file is what the
// payloads carry anyway, hashed by the signal package.
package sink

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/caddy-capi/caddy-capi/capi/platform"
)

// Line is one recorded request.
type Line struct {
	Time time.Time `json:"time"`
	// Platform is platform.Meta, platform.TikTok, platform.Google, or "unknown" for a request to an
	// endpoint the sink does not recognize (answered 404).
	Platform string `json:"platform"`
	Method   string `json:"method"`
	// URL is the request URL with secrets redacted.
	URL string `json:"url"`
	// Body is the JSON payload as sent. A form body (Meta's) is written as a JSON object of its
	// fields, each field that holds JSON (Meta's data) embedded as it is; a body that is not JSON is
	// written as a string.
	Body json.RawMessage `json:"body"`
}

// File records requests to a file of JSON lines. It is safe for concurrent use.
type File struct {
	mu  sync.Mutex
	f   *os.File
	now func() time.Time
}

// ErrClosed is returned for requests made after Close.
var ErrClosed = errors.New("sink: file closed")

// NewFile opens path for appending, creating it (mode 0600) when absent.
func NewFile(path string) (*File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sink: open %s: %w", path, err)
	}
	return &File{f: f, now: time.Now}, nil
}

// Transport returns the RoundTripper to put in the senders' http.Client.
func (f *File) Transport() http.RoundTripper { return recorder{f} }

// Close closes the file; later requests fail with ErrClosed.
func (f *File) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.f == nil {
		return nil
	}
	err := f.f.Close()
	f.f = nil
	return err
}

// write appends l as one line and syncs it, so a recorded request survives a crash as a sent one
// would.
func (f *File) write(l Line) error {
	b, err := json.Marshal(l)
	if err != nil {
		return fmt.Errorf("sink: encode line: %w", err)
	}
	b = append(b, '\n')
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.f == nil {
		return ErrClosed
	}
	if _, err := f.f.Write(b); err != nil {
		return fmt.Errorf("sink: write: %w", err)
	}
	if err := f.f.Sync(); err != nil {
		return fmt.Errorf("sink: sync: %w", err)
	}
	return nil
}

type recorder struct{ f *File }

// RoundTrip records req and answers it. It fails only when the file cannot be written, which the
// senders treat as a network error and retry.
func (r recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil {
		var err error
		body, err = io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("sink: read request body: %w", err)
		}
	}
	isForm := strings.HasPrefix(req.Header.Get("Content-Type"), "application/x-www-form-urlencoded")
	var form url.Values
	if isForm {
		form, _ = url.ParseQuery(string(body))
	}
	if isForm && form.Get("grant_type") != "" {
		// An OAuth token request carries the client secret and the refresh token, and nothing a
		// platform would receive as an event: answer it, record nothing.
		return respond(req, http.StatusOK, map[string]any{
			"access_token": "sink-access-token", "token_type": "Bearer", "expires_in": 3600,
		}), nil
	}

	platformName, answer := route(req.URL.Path)
	var recorded json.RawMessage
	if isForm {
		recorded = formJSON(form)
	} else {
		recorded = jsonBody(body)
	}
	if err := r.f.write(Line{
		Time:     r.f.now().UTC(),
		Platform: platformName,
		Method:   req.Method,
		URL:      redactURL(req.URL),
		Body:     recorded,
	}); err != nil {
		return nil, err
	}
	if answer == nil {
		return respond(req, http.StatusNotFound, map[string]any{"error": "sink: not a platform endpoint the sink knows"}), nil
	}
	return respond(req, http.StatusOK, answer(recorded)), nil
}

// route names the platform an endpoint belongs to, by path (hosts are configurable), and how it
// answers a successful request.
func route(path string) (string, func(body json.RawMessage) any) {
	switch {
	case strings.HasSuffix(path, "/events"):
		return platform.Meta, func(body json.RawMessage) any {
			var p struct {
				Data []json.RawMessage `json:"data"`
			}
			json.Unmarshal(body, &p)
			return map[string]any{"events_received": len(p.Data), "messages": []string{}, "fbtrace_id": "sink"}
		}
	case strings.HasSuffix(path, "/event/track/"):
		return platform.TikTok, func(json.RawMessage) any {
			return map[string]any{"code": 0, "message": "OK", "request_id": "sink", "data": map[string]any{}}
		}
	case strings.HasSuffix(path, ":uploadClickConversions"), strings.HasSuffix(path, ":uploadConversionAdjustments"):
		return platform.Google, googleResults
	}
	return "unknown", nil
}

// googleResults answers an upload with one result per conversion or adjustment, echoing the
// fields Google echoes.
func googleResults(body json.RawMessage) any {
	var p struct {
		Conversions           []map[string]any `json:"conversions"`
		ConversionAdjustments []map[string]any `json:"conversionAdjustments"`
	}
	json.Unmarshal(body, &p)
	keep := func(items []map[string]any, keys ...string) []map[string]any {
		out := make([]map[string]any, len(items))
		for i, it := range items {
			out[i] = map[string]any{}
			for _, k := range keys {
				if v, ok := it[k]; ok {
					out[i][k] = v
				}
			}
		}
		return out
	}
	if p.ConversionAdjustments != nil {
		return map[string]any{"results": keep(p.ConversionAdjustments, "conversionAction", "orderId", "adjustmentType", "gclidDateTimePair")}
	}
	return map[string]any{"results": keep(p.Conversions, "gclid", "gbraid", "wbraid", "conversionAction", "conversionDateTime", "orderId")}
}

func respond(req *http.Request, status int, v any) *http.Response {
	b, _ := json.Marshal(v)
	return &http.Response{
		Status:        fmt.Sprintf("%d %s", status, http.StatusText(status)),
		StatusCode:    status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        http.Header{"Content-Type": {"application/json"}},
		Body:          io.NopCloser(bytes.NewReader(b)),
		ContentLength: int64(len(b)),
		Request:       req,
	}
}

// secretKey reports whether a query or form field holds a secret: access_token, client_secret,
// refresh_token, api keys and the like.
func secretKey(k string) bool {
	k = strings.ToLower(k)
	return strings.Contains(k, "token") || strings.Contains(k, "secret") || k == "key" || k == "api_key" ||
		k == "password" || k == "appsecret_proof"
}

// redactURL writes u without user info and with the values of secret query fields replaced.
func redactURL(u *url.URL) string {
	c := *u
	c.User = nil
	if c.RawQuery != "" {
		q := c.Query()
		for k := range q {
			if secretKey(k) {
				q[k] = []string{platform.Redacted}
			}
		}
		c.RawQuery = q.Encode()
	}
	return c.String()
}

// formJSON writes a form as a JSON object in key order, without its secret fields. A field whose
// value is a JSON array or object is embedded as it is.
func formJSON(form url.Values) json.RawMessage {
	keys := make([]string, 0, len(form))
	for k := range form {
		if !secretKey(k) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var b bytes.Buffer
	b.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		kb, _ := json.Marshal(k)
		b.Write(kb)
		b.WriteByte(':')
		v := form.Get(k)
		if t := strings.TrimSpace(v); (strings.HasPrefix(t, "[") || strings.HasPrefix(t, "{")) && json.Valid([]byte(t)) {
			b.WriteString(t)
		} else {
			vb, _ := json.Marshal(v)
			b.Write(vb)
		}
	}
	b.WriteByte('}')
	return b.Bytes()
}

// jsonBody returns a JSON body as it is, unless its top level holds a secret field, which is
// removed; a body that is not JSON becomes a JSON string.
func jsonBody(body []byte) json.RawMessage {
	if len(bytes.TrimSpace(body)) == 0 {
		return json.RawMessage("null")
	}
	if !json.Valid(body) {
		b, _ := json.Marshal(string(body))
		return b
	}
	var top map[string]json.RawMessage
	if json.Unmarshal(body, &top) != nil {
		return body
	}
	found := false
	for k := range top {
		if secretKey(k) {
			delete(top, k)
			found = true
		}
	}
	if !found {
		return body
	}
	b, _ := json.Marshal(top)
	return b
}

// Interface guards
var _ http.RoundTripper = recorder{}
