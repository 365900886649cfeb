package sink_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-capi/caddy-capi/capi/event"
	"github.com/caddy-capi/caddy-capi/capi/google"
	"github.com/caddy-capi/caddy-capi/capi/meta"
	"github.com/caddy-capi/caddy-capi/capi/platform"
	"github.com/caddy-capi/caddy-capi/capi/sink"
	"github.com/caddy-capi/caddy-capi/capi/tiktok"
)

const (
	metaToken      = "EAAG-meta-secret"
	tiktokToken    = "tiktok-secret"
	refreshToken   = "1//google-refresh-secret"
	clientSecret   = "GOCSPX-google-client-secret"
	developerToken = "google-developer-secret"
)

var secrets = []string{metaToken, tiktokToken, refreshToken, clientSecret, developerToken, "sink-access-token"}

func hash(c byte) string { return strings.Repeat(string(c), 64) }

func purchase() event.Event {
	p := event.Profile{Emails: []string{hash('a')}, Phones: []string{hash('b')}, FirstName: hash('c'), LastName: hash('d'),
		Street: hash('e'), City: "berlin", State: "be", Zip: "10115", Country: "de"}
	return event.Event{
		Name: "Purchase", ID: "evt-1", Time: time.Now().Add(-time.Minute), SourceURL: "https://shop.example.com/thanks",
		ActionSource: event.ActionWebsite, Value: "12.50", Currency: "EUR", OrderID: "A-1",
		User: event.User{ExternalID: hash('f'), IP: "203.0.113.9", UserAgent: "Mozilla/5.0", GCLID: "gclid-1",
			FBP: "fb.1.1596403881668.1116446470", TTP: "ttp-1", Meta: p, TikTok: p, Google: p},
	}
}

func open(t *testing.T) (*sink.File, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "events.jsonl")
	f, err := sink.NewFile(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f, path
}

func readLines(t *testing.T, path string) ([]sink.Line, []byte) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var lines []sink.Line
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		var l sink.Line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("line %q is not JSON: %v", sc.Text(), err)
		}
		lines = append(lines, l)
	}
	for _, s := range secrets {
		if bytes.Contains(raw, []byte(s)) || bytes.Contains(raw, []byte(url.QueryEscape(s))) {
			t.Errorf("the sink file contains the secret %q", s)
		}
	}
	return lines, raw
}

func TestMetaSenderRecordsTheExactPayloadWithoutTheToken(t *testing.T) {
	f, path := open(t)
	cfg := meta.Config{PixelID: "123", AccessToken: metaToken, TestEventCode: "TEST1", PartnerAgent: "caddycapi",
		Client: &http.Client{Transport: f.Transport()}}
	s, err := meta.NewSender(cfg)
	if err != nil {
		t.Fatal(err)
	}
	events := []event.Event{purchase(), purchase()}
	if r := s.Send(context.Background(), events); r.Outcome != platform.Delivered || r.Reason != "" {
		t.Fatalf("result = %+v", r)
	}
	lines, _ := readLines(t, path)
	if len(lines) != 1 {
		t.Fatalf("%d lines", len(lines))
	}
	l := lines[0]
	if l.Platform != platform.Meta || l.Method != http.MethodPost || l.URL != "https://graph.facebook.com/v25.0/123/events" {
		t.Errorf("line = %+v", l)
	}
	want, err := meta.BuildPayload(cfg, events)
	if err != nil {
		t.Fatal(err)
	}
	var got, exp map[string]json.RawMessage
	json.Unmarshal(l.Body, &got)
	json.Unmarshal(want, &exp)
	if len(got) != 3 || !bytes.Equal(got["data"], exp["data"]) || string(got["test_event_code"]) != `"TEST1"` || string(got["partner_agent"]) != `"caddycapi"` {
		t.Errorf("recorded body\n%s\nwant the payload\n%s", l.Body, want)
	}
}

func TestTikTokSenderRecordsTheExactPayload(t *testing.T) {
	f, path := open(t)
	cfg := tiktok.Config{PixelCode: "C4ABC", AccessToken: tiktokToken, Client: &http.Client{Transport: f.Transport()}}
	s, err := tiktok.NewSender(cfg)
	if err != nil {
		t.Fatal(err)
	}
	events := []event.Event{purchase()}
	if r := s.Send(context.Background(), events); r.Outcome != platform.Delivered {
		t.Fatalf("result = %+v", r)
	}
	lines, _ := readLines(t, path)
	want, _ := tiktok.BuildPayload(cfg, events)
	if len(lines) != 1 || lines[0].Platform != platform.TikTok || !bytes.Equal(lines[0].Body, want) {
		t.Errorf("lines = %+v\nwant body %s", lines, want)
	}
}

func TestGoogleSenderRecordsBothUploadsAndNoOAuthExchange(t *testing.T) {
	f, path := open(t)
	conv := map[string]google.Conversion{"Purchase": {ActionID: "42"}}
	s, err := google.NewSender(google.Config{CustomerID: "1234567890", DeveloperToken: developerToken, ClientID: "cid",
		ClientSecret: clientSecret, RefreshToken: refreshToken, Conversions: conv,
		Client: &http.Client{Transport: f.Transport()}})
	if err != nil {
		t.Fatal(err)
	}
	events := []event.Event{purchase(), purchase()}
	if r := s.Send(context.Background(), events); r.Outcome != platform.Delivered || len(r.Events) != 0 {
		t.Fatalf("result = %+v", r)
	}
	lines, _ := readLines(t, path)
	if len(lines) != 2 {
		t.Fatalf("%d lines, want the two uploads and no token request", len(lines))
	}
	clicks, adjs, _ := google.BuildRequests("1234567890", conv, time.UTC, events)
	for i, want := range []any{clicks, adjs} {
		b, _ := json.Marshal(want)
		if lines[i].Platform != platform.Google || !bytes.Equal(lines[i].Body, b) {
			t.Errorf("line %d = %s\nwant %s", i, lines[i].Body, b)
		}
	}
	if !strings.HasSuffix(lines[0].URL, "/v24/customers/1234567890:uploadClickConversions") ||
		!strings.HasSuffix(lines[1].URL, "/v24/customers/1234567890:uploadConversionAdjustments") {
		t.Errorf("urls %s, %s", lines[0].URL, lines[1].URL)
	}
}

func TestSecretsInURLsAndBodiesAreRedacted(t *testing.T) {
	f, path := open(t)
	c := &http.Client{Transport: f.Transport()}
	resp, err := c.Post("https://user:"+metaToken+"@graph.example/v25.0/1/events?access_token="+url.QueryEscape(metaToken)+"&debug=all",
		"application/json", strings.NewReader(`{"data":[],"access_token":"`+metaToken+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	lines, _ := readLines(t, path)
	if lines[0].URL != "https://graph.example/v25.0/1/events?access_token=%5Bredacted%5D&debug=all" {
		t.Errorf("url = %s", lines[0].URL)
	}
	if string(lines[0].Body) != `{"data":[]}` {
		t.Errorf("body = %s", lines[0].Body)
	}
}

func TestUnknownEndpointIsRecordedAndRefused(t *testing.T) {
	f, path := open(t)
	resp, err := (&http.Client{Transport: f.Transport()}).Post("https://example.com/other", "text/plain", strings.NewReader("hello"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	lines, _ := readLines(t, path)
	if resp.StatusCode != http.StatusNotFound || lines[0].Platform != "unknown" || string(lines[0].Body) != `"hello"` {
		t.Errorf("status %d, line %+v", resp.StatusCode, lines[0])
	}
}

func TestConcurrentSendsWriteWholeLinesAndAppend(t *testing.T) {
	f, path := open(t)
	s, _ := tiktok.NewSender(tiktok.Config{PixelCode: "C4ABC", AccessToken: tiktokToken, Client: &http.Client{Transport: f.Transport()}})
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			ev := purchase()
			ev.ID = fmt.Sprint("evt-", i)
			if r := s.Send(context.Background(), []event.Event{ev}); r.Outcome != platform.Delivered {
				t.Errorf("result = %+v", r)
			}
		})
	}
	wg.Wait()
	f.Close()
	if r := s.Send(context.Background(), []event.Event{purchase()}); r.Outcome != platform.Retry || !strings.Contains(r.Reason, "closed") {
		t.Errorf("send after Close: %+v, want Retry", r)
	}

	again, err := sink.NewFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	s2, _ := tiktok.NewSender(tiktok.Config{PixelCode: "C4ABC", AccessToken: tiktokToken, Client: &http.Client{Transport: again.Transport()}})
	s2.Send(context.Background(), []event.Event{purchase()})

	lines, _ := readLines(t, path)
	if len(lines) != 17 {
		t.Errorf("%d lines, want 16 and 1 appended after reopening", len(lines))
	}
	info, _ := os.Stat(path)
	if info.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", info.Mode().Perm())
	}
}

func TestNewFileReportsAnUnwritablePath(t *testing.T) {
	if _, err := sink.NewFile(filepath.Join(t.TempDir(), "missing", "dir", "x.jsonl")); err == nil || !strings.Contains(err.Error(), "sink: open") {
		t.Errorf("err = %v", err)
	}
}

func FuzzRoundTrip(f *testing.F) {
	f.Add("/v25.0/1/events", "application/x-www-form-urlencoded", "data=%5B%7B%7D%5D&access_token=x")
	f.Add("/open_api/v1.3/event/track/", "application/json", `{"data":[],"access_token":"x"}`)
	f.Add("/v24/customers/1:uploadClickConversions", "application/json", `{"conversions":[{"gclid":1}]}`)
	f.Add("/token", "application/x-www-form-urlencoded", "grant_type=refresh_token&refresh_token=x")
	f.Add("/x", "", "\xff")
	f.Fuzz(func(t *testing.T, path, contentType, body string) {
		name := filepath.Join(t.TempDir(), "f.jsonl")
		file, err := sink.NewFile(name)
		if err != nil {
			t.Fatal(err)
		}
		defer file.Close()
		req, err := http.NewRequest(http.MethodPost, "https://h.example/", strings.NewReader(body))
		if err != nil {
			t.Skip()
		}
		req.URL.Path = path
		req.Header.Set("Content-Type", contentType)
		resp, err := file.Transport().RoundTrip(req)
		if err != nil {
			t.Fatalf("round trip: %v", err)
		}
		var v any
		if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
			t.Fatalf("answer is not JSON: %v", err)
		}
		raw, _ := os.ReadFile(name)
		for _, line := range bytes.Split(bytes.TrimSuffix(raw, []byte("\n")), []byte("\n")) {
			if len(raw) > 0 && !json.Valid(line) {
				t.Fatalf("line %q is not JSON", line)
			}
		}
	})
}
