// Package tiktok sends events to the TikTok Events API 2.0: it turns neutral events into TikTok's
// web events (user with the 12 matching signals, properties, page, limited_data_use), posts them in
// batches to /open_api/v1.3/event/track/ and classifies TikTok's answer, which carries its verdict in
// the body's code rather than in the HTTP status.
//
// It owns TikTok's field names, event names and codes. It must not normalize or hash customer data
// (the signal package does, into event.User.TikTok), keep state between batches, or let the access
// token reach an error, a Reason or a log.
package tiktok

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/caddy-capi/caddy-capi/capi/event"
	"github.com/caddy-capi/caddy-capi/capi/platform"
)

// Defaults of Config.
const (
	// DefaultEndpoint is the Business API host.
	DefaultEndpoint = "https://business-api.tiktok.com"
	// DefaultTimeout bounds one request when Config.Client is nil.
	DefaultTimeout = 30 * time.Second
	// trackPath is the Events API 2.0 endpoint; v1.2 and /pixel/track/ are the retired 1.0 shape.
	trackPath = "/open_api/v1.3/event/track/"
)

// Limits of the track endpoint.
const (
	// MaxBatch is the most events one request may carry; TikTok rejects a larger request whole.
	MaxBatch = 1000
	// MaxAge is the oldest event sent. TikTok documents no limit for web events that we could
	// confirm; 7 days is the safe reading, the same as Meta's, which the events share a queue with.
	MaxAge = 7 * 24 * time.Hour
)

const maxResponse = 1 << 20

// Config configures a Sender.
type Config struct {
	// PixelCode is the TikTok pixel code, sent as event_source_id. Required.
	PixelCode string
	// AccessToken is the Events API access token of the pixel. Required; it never appears in errors.
	AccessToken string
	// TestEventCode, when set, is sent with every request so the events show in Test Events instead
	// of live data. Events marked Test are sent only when it is set.
	TestEventCode string
	// Endpoint is the base URL of the Business API. Default DefaultEndpoint.
	Endpoint string
	// EventNames maps our event names to TikTok's, overriding the defaults of EventName.
	EventNames map[string]string
	// Client sends the requests. Default: an http.Client with DefaultTimeout.
	Client *http.Client
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

var pixelCode = regexp.MustCompile(`^[A-Za-z0-9]{1,64}$`)

// Sender delivers batches to one TikTok pixel. It is safe for concurrent use.
type Sender struct {
	cfg Config
	url string
}

// NewSender checks cfg, fills in its defaults and returns a Sender.
func NewSender(cfg Config) (*Sender, error) {
	if !pixelCode.MatchString(cfg.PixelCode) {
		return nil, fmt.Errorf("tiktok: pixel_code must be the pixel's alphanumeric code, got %q", cfg.PixelCode)
	}
	if strings.TrimSpace(cfg.AccessToken) == "" {
		return nil, errors.New("tiktok: access_token is required")
	}
	for ours, theirs := range cfg.EventNames {
		if ours == "" || strings.TrimSpace(theirs) == "" {
			return nil, fmt.Errorf("tiktok: event mapping %q → %q needs both names", ours, theirs)
		}
	}
	if cfg.Endpoint == "" {
		cfg.Endpoint = DefaultEndpoint
	}
	base, err := url.Parse(cfg.Endpoint)
	if err != nil || (base.Scheme != "https" && base.Scheme != "http") || base.Host == "" {
		return nil, fmt.Errorf("tiktok: endpoint must be an http(s) URL, got %q", cfg.Endpoint)
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: DefaultTimeout}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Sender{cfg: cfg, url: strings.TrimRight(cfg.Endpoint, "/") + trackPath}, nil
}

// Platform returns platform.TikTok.
func (s *Sender) Platform() string { return platform.TikTok }

// MaxBatch returns MaxBatch.
func (s *Sender) MaxBatch() int { return MaxBatch }

// MaxAge returns MaxAge.
func (s *Sender) MaxAge() time.Duration { return MaxAge }

// Send posts events in one request. Events TikTok would refuse (too old, invalid values, test
// events with no test code) are settled Permanent without being sent.
func (s *Sender) Send(ctx context.Context, events []event.Event) platform.Result {
	if len(events) == 0 {
		return platform.Result{Outcome: platform.Delivered}
	}
	now := s.cfg.Now()
	var t platform.Triage
	p := Payload{EventSource: "web", EventSourceID: s.cfg.PixelCode, TestEventCode: s.cfg.TestEventCode,
		Data: make([]WebEvent, 0, len(events))}
	for i, ev := range events {
		if ev.Test && s.cfg.TestEventCode == "" {
			t.Settle(i, platform.Permanent, "tiktok: test event not sent: no test_event_code is configured")
			continue
		}
		if !ev.Time.IsZero() && now.Sub(ev.Time) > MaxAge {
			t.Settle(i, platform.Permanent, fmt.Sprintf("tiktok: event_time %s is older than 7 days", ev.Time.UTC().Format(time.RFC3339)))
			continue
		}
		we, err := BuildEvent(ev, s.cfg.EventNames)
		if err != nil {
			t.Settle(i, platform.Permanent, "tiktok: "+err.Error())
			continue
		}
		t.Send(i)
		p.Data = append(p.Data, we)
	}
	if len(p.Data) == 0 {
		return t.Unsent()
	}
	return t.Result(s.post(ctx, p))
}

func (s *Sender) post(ctx context.Context, p Payload) platform.Result {
	n := len(p.Data)
	body, err := json.Marshal(p)
	if err != nil {
		return platform.Result{Outcome: platform.Permanent, Reason: "tiktok: encode batch: " + err.Error()}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(body))
	if err != nil {
		return platform.Result{Outcome: platform.Permanent, Reason: s.redact("tiktok: build request: " + err.Error())}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Access-Token", s.cfg.AccessToken)
	reply, err := platform.Post(s.cfg.Client, req, maxResponse, n)
	if err != nil {
		return platform.Result{Outcome: platform.Retry, Reason: s.redact("tiktok: " + err.Error())}
	}
	r := Classify(reply.StatusCode, reply.Header, reply.Body, n, s.cfg.Now())
	r.Reason = s.redact(r.Reason)
	return r
}

func (s *Sender) redact(msg string) string { return platform.Redact(msg, s.cfg.AccessToken) }

// Interface guards
var _ platform.Sender = (*Sender)(nil)
