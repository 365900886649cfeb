// Package meta sends events to the Meta Conversions API: it turns neutral events into Meta's server
// events (user_data with the 15 matching signals, custom_data, Limited Data Use), posts them in
// batches to /{version}/{pixel}/events and classifies Meta's answer for the delivery workers.
//
// It owns Meta's field names and error codes. It must not normalize or hash customer data (the signal
// package does, into event.User.Meta), keep state between batches, or let the access token reach an
// error, a Reason or a log.
package meta

import (
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
	// DefaultAPIVersion is a Graph API version supported until 2028-07-29.
	DefaultAPIVersion = "v25.0"
	// DefaultEndpoint is the Graph API host.
	DefaultEndpoint = "https://graph.facebook.com"
	// DefaultTimeout bounds one request when Config.Client is nil.
	DefaultTimeout = 30 * time.Second
)

// Limits Meta documents for /events.
const (
	// MaxBatch is the most events one request may carry.
	MaxBatch = 1000
	// MaxAge is the oldest event_time Meta accepts; one older event fails the whole request.
	MaxAge = 7 * 24 * time.Hour
)

// maxResponse bounds how much of an answer is read; Meta's answers are a few hundred bytes.
const maxResponse = 1 << 20

// Config configures a Sender.
type Config struct {
	// PixelID is the pixel (dataset) ID, digits only. Required.
	PixelID string
	// AccessToken is the Conversions API access token. Required; it never appears in errors.
	AccessToken string
	// TestEventCode, when set, is sent with every request so the events show in Test Events. Meta
	// still counts such events, so it must not be set in production. Events marked Test are sent
	// only when it is set.
	TestEventCode string
	// APIVersion is the Graph API version, such as "v25.0". Default DefaultAPIVersion.
	APIVersion string
	// Endpoint is the base URL of the Graph API. Default DefaultEndpoint.
	Endpoint string
	// PartnerAgent identifies the integration to Meta (partner_agent), optional.
	PartnerAgent string
	// Client sends the requests. Default: an http.Client with DefaultTimeout.
	Client *http.Client
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

var (
	digits     = regexp.MustCompile(`^[0-9]{1,32}$`)
	apiVersion = regexp.MustCompile(`^v[0-9]{1,3}\.[0-9]{1,2}$`)
)

// Sender delivers batches to one Meta pixel. It is safe for concurrent use.
type Sender struct {
	cfg Config
	url string
}

// NewSender checks cfg, fills in its defaults and returns a Sender.
func NewSender(cfg Config) (*Sender, error) {
	if !digits.MatchString(cfg.PixelID) {
		return nil, fmt.Errorf("meta: pixel_id must be the pixel's numeric ID, got %q", cfg.PixelID)
	}
	if strings.TrimSpace(cfg.AccessToken) == "" {
		return nil, errors.New("meta: access_token is required")
	}
	if cfg.APIVersion == "" {
		cfg.APIVersion = DefaultAPIVersion
	}
	if !apiVersion.MatchString(cfg.APIVersion) {
		return nil, fmt.Errorf("meta: api_version must look like v25.0, got %q", cfg.APIVersion)
	}
	if cfg.Endpoint == "" {
		cfg.Endpoint = DefaultEndpoint
	}
	base, err := url.Parse(cfg.Endpoint)
	if err != nil || (base.Scheme != "https" && base.Scheme != "http") || base.Host == "" {
		return nil, fmt.Errorf("meta: endpoint must be an http(s) URL, got %q", cfg.Endpoint)
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: DefaultTimeout}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Sender{
		cfg: cfg,
		url: strings.TrimRight(cfg.Endpoint, "/") + "/" + cfg.APIVersion + "/" + cfg.PixelID + "/events",
	}, nil
}

// Platform returns platform.Meta.
func (s *Sender) Platform() string { return platform.Meta }

// MaxBatch returns MaxBatch.
func (s *Sender) MaxBatch() int { return MaxBatch }

// MaxAge returns MaxAge.
func (s *Sender) MaxAge() time.Duration { return MaxAge }

// Send posts events in one request. Events that Meta would refuse, and that would sink the whole
// request with them (too old, missing required fields), are settled Permanent without being sent.
func (s *Sender) Send(ctx context.Context, events []event.Event) platform.Result {
	if len(events) == 0 {
		return platform.Result{Outcome: platform.Delivered}
	}
	now := s.cfg.Now()
	var t platform.Triage
	data := make([]ServerEvent, 0, len(events))
	for i, ev := range events {
		if ev.Test && s.cfg.TestEventCode == "" {
			t.Settle(i, platform.Permanent, "meta: test event not sent: no test_event_code is configured")
			continue
		}
		if !ev.Time.IsZero() && now.Sub(ev.Time) > MaxAge {
			t.Settle(i, platform.Permanent, fmt.Sprintf("meta: event_time %s is older than Meta's 7 days", ev.Time.UTC().Format(time.RFC3339)))
			continue
		}
		se, err := BuildEvent(ev)
		if err != nil {
			t.Settle(i, platform.Permanent, "meta: "+err.Error())
			continue
		}
		t.Send(i)
		data = append(data, se)
	}
	if len(data) == 0 {
		return t.Unsent()
	}
	return t.Result(s.post(ctx, data))
}

// post sends data and classifies the answer.
//
// The access token travels as a form field of a url-encoded body, as in Meta's own example request:
// a query parameter (which Meta's text also allows) would put the token in the URL, and URLs end up
// in proxy logs and in the text of every url.Error; a Bearer header is not documented for the
// Conversions API. The events travel in the data field as a JSON array, which Graph decodes.
func (s *Sender) post(ctx context.Context, data []ServerEvent) platform.Result {
	arr, err := json.Marshal(data)
	if err != nil {
		return platform.Result{Outcome: platform.Permanent, Reason: "meta: encode batch: " + err.Error()}
	}
	form := url.Values{"data": {string(arr)}, "access_token": {s.cfg.AccessToken}}
	if s.cfg.TestEventCode != "" {
		form.Set("test_event_code", s.cfg.TestEventCode)
	}
	if s.cfg.PartnerAgent != "" {
		form.Set("partner_agent", s.cfg.PartnerAgent)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, strings.NewReader(form.Encode()))
	if err != nil {
		return platform.Result{Outcome: platform.Permanent, Reason: s.redact("meta: build request: " + err.Error())}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	reply, err := platform.Post(s.cfg.Client, req, maxResponse, len(data))
	if err != nil {
		return platform.Result{Outcome: platform.Retry, Reason: s.redact("meta: " + err.Error())}
	}
	r := Classify(reply.StatusCode, reply.Header, reply.Body, len(data), s.cfg.Now())
	r.Reason = s.redact(r.Reason)
	return r
}

func (s *Sender) redact(msg string) string { return platform.Redact(msg, s.cfg.AccessToken) }

// Interface guards
var _ platform.Sender = (*Sender)(nil)
