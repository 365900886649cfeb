// Package google sends conversions to the Google Ads API: click conversions (gclid, gbraid or
// wbraid, with hashed email and phone) through uploadClickConversions, and enhanced conversions for
// web (all nine user-provided fields, the address included) as ENHANCEMENT adjustments keyed by order
// ID through uploadConversionAdjustments. It gets access tokens from the refresh token through
// golang.org/x/oauth2, caches them, and maps Google's partial failures back to the events of a batch.
//
// It owns Google's field names and error codes. It must not normalize or hash customer data (the
// signal package does, into event.User.Google), or let the refresh token, client secret, developer
// token or an access token reach an error, a Reason or a log.
package google

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"

	"github.com/caddy-capi/caddy-capi/capi/event"
	"github.com/caddy-capi/caddy-capi/capi/platform"
)

// Defaults of Config.
const (
	// DefaultEndpoint is the Google Ads API host.
	DefaultEndpoint = "https://googleads.googleapis.com"
	// DefaultTokenEndpoint is Google's OAuth 2.0 token endpoint.
	DefaultTokenEndpoint = "https://oauth2.googleapis.com/token"
	// DefaultAPIVersion is a Google Ads API version supported into 2027; versions live about a year.
	DefaultAPIVersion = "v24"
	// DefaultTimeout bounds one request when Config.Client is nil.
	DefaultTimeout = 30 * time.Second
	// Scope is the OAuth scope of the Google Ads API.
	Scope = "https://www.googleapis.com/auth/adwords"
)

// Limits of the upload services.
const (
	// MaxBatch is the most conversions one request may carry.
	MaxBatch = 2000
	// MaxAge is the oldest conversion sent: Google accepts click conversions up to 90 days after the
	// click (the longest click-through window), and an event cannot precede its click, so anything
	// older can no longer be attributed.
	MaxAge = 90 * 24 * time.Hour
	// MaxEnhancementAge is how long after a conversion Google takes its enhancement. An older event
	// still goes up as a click conversion when it has a click ID.
	MaxEnhancementAge = 24 * time.Hour
)

// Conversion names the conversion action an event is counted under.
type Conversion struct {
	// ActionID is the conversion action's numeric ID. Required.
	ActionID string
	// Label is the action's tag label, which the browser's Google tag uses (send_to AW-…/label).
	Label string
}

// Config configures a Sender.
type Config struct {
	// CustomerID is the Google Ads account the conversions belong to; dashes are ignored. Required.
	CustomerID string
	// LoginCustomerID is the manager account to call through, when access comes from one; optional.
	LoginCustomerID string
	// DeveloperToken is the API developer token. Required; never in errors.
	DeveloperToken string
	// ClientID, ClientSecret and RefreshToken are the OAuth client and the user's refresh token.
	// Required; the secret and the refresh token never appear in errors.
	ClientID, ClientSecret, RefreshToken string
	// Conversions maps our event names to conversion actions; events with no entry are not sent.
	// At least one is required.
	Conversions map[string]Conversion
	// Endpoint is the base URL of the Google Ads API. Default DefaultEndpoint.
	Endpoint string
	// TokenEndpoint is the OAuth token URL. Default DefaultTokenEndpoint.
	TokenEndpoint string
	// APIVersion is the Google Ads API version, such as "v24". Default DefaultAPIVersion.
	APIVersion string
	// Client sends the requests, token refreshes included. Default: an http.Client with DefaultTimeout.
	Client *http.Client
	// Location is the time zone conversion times are written in. Default UTC.
	Location *time.Location
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

var (
	customerDigits = regexp.MustCompile(`^[0-9]{10}$`)
	actionDigits   = regexp.MustCompile(`^[0-9]{1,20}$`)
	apiVersion     = regexp.MustCompile(`^v[0-9]{1,3}$`)
)

// Sender delivers batches to one Google Ads account. It is safe for concurrent use.
type Sender struct {
	cfg       Config
	clickURL  string
	adjustURL string
	tokens    *accessTokens
}

// NewSender checks cfg, fills in its defaults and returns a Sender. It makes no request: the first
// access token is fetched by the first Send.
func NewSender(cfg Config) (*Sender, error) {
	cfg.CustomerID = strings.ReplaceAll(cfg.CustomerID, "-", "")
	cfg.LoginCustomerID = strings.ReplaceAll(cfg.LoginCustomerID, "-", "")
	if !customerDigits.MatchString(cfg.CustomerID) {
		return nil, fmt.Errorf("google: customer_id must be the 10-digit account ID, got %q", cfg.CustomerID)
	}
	if cfg.LoginCustomerID != "" && !customerDigits.MatchString(cfg.LoginCustomerID) {
		return nil, fmt.Errorf("google: login_customer_id must be the 10-digit manager account ID, got %q", cfg.LoginCustomerID)
	}
	for name, v := range map[string]string{"developer_token": cfg.DeveloperToken, "client_id": cfg.ClientID,
		"client_secret": cfg.ClientSecret, "refresh_token": cfg.RefreshToken} {
		if strings.TrimSpace(v) == "" {
			return nil, fmt.Errorf("google: %s is required", name)
		}
	}
	if len(cfg.Conversions) == 0 {
		return nil, errors.New("google: at least one conversion is required (conversion <EventName> <action id>)")
	}
	for name, c := range cfg.Conversions {
		if name == "" || !actionDigits.MatchString(c.ActionID) {
			return nil, fmt.Errorf("google: conversion %q: the action ID must be digits, got %q", name, c.ActionID)
		}
	}
	if cfg.APIVersion == "" {
		cfg.APIVersion = DefaultAPIVersion
	}
	if !apiVersion.MatchString(cfg.APIVersion) {
		return nil, fmt.Errorf("google: api_version must look like v24, got %q", cfg.APIVersion)
	}
	if cfg.Endpoint == "" {
		cfg.Endpoint = DefaultEndpoint
	}
	if cfg.TokenEndpoint == "" {
		cfg.TokenEndpoint = DefaultTokenEndpoint
	}
	for name, v := range map[string]string{"endpoint": cfg.Endpoint, "token_endpoint": cfg.TokenEndpoint} {
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return nil, fmt.Errorf("google: %s must be an http(s) URL, got %q", name, v)
		}
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: DefaultTimeout}
	}
	if cfg.Location == nil {
		cfg.Location = time.UTC
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	base := strings.TrimRight(cfg.Endpoint, "/") + "/" + cfg.APIVersion + "/customers/" + cfg.CustomerID
	return &Sender{
		cfg:       cfg,
		clickURL:  base + ":uploadClickConversions",
		adjustURL: base + ":uploadConversionAdjustments",
		tokens: &accessTokens{
			oauth: &oauth2.Config{
				ClientID:     cfg.ClientID,
				ClientSecret: cfg.ClientSecret,
				Scopes:       []string{Scope},
				// Google takes the client credentials as form fields; auto-detection would first
				// try Basic auth and spend a request on each refresh.
				Endpoint: oauth2.Endpoint{TokenURL: cfg.TokenEndpoint, AuthStyle: oauth2.AuthStyleInParams},
			},
			client:  cfg.Client,
			refresh: cfg.RefreshToken,
		},
	}, nil
}

// Platform returns platform.Google.
func (s *Sender) Platform() string { return platform.Google }

// MaxBatch returns MaxBatch.
func (s *Sender) MaxBatch() int { return MaxBatch }

// MaxAge returns MaxAge.
func (s *Sender) MaxAge() time.Duration { return MaxAge }

// Send uploads the batch's click conversions and enhancements, at most one request each, and
// combines Google's answers into one outcome per event: an event is as good as the worse of its two
// uploads.
func (s *Sender) Send(ctx context.Context, events []event.Event) platform.Result {
	if len(events) == 0 {
		return platform.Result{Outcome: platform.Delivered}
	}
	now := s.cfg.Now()
	per := make([]platform.EventResult, len(events))
	clicks := ClickConversionsRequest{PartialFailure: true}
	adjs := ConversionAdjustmentsRequest{PartialFailure: true}
	var clickIdx, adjIdx []int
	for i, ev := range events {
		settle := func(reason string) {
			per[i] = platform.EventResult{Outcome: platform.Permanent, Reason: "google: " + reason}
		}
		switch {
		case ev.Test:
			settle("test event not sent: Google Ads has no test event code")
			continue
		case !ev.Time.IsZero() && now.Sub(ev.Time) > MaxAge:
			settle(fmt.Sprintf("conversion time %s is older than Google's 90 days", ev.Time.UTC().Format(time.RFC3339)))
			continue
		}
		c, a, err := buildConversion(s.cfg.CustomerID, s.cfg.Conversions, s.cfg.Location, ev)
		if err != nil {
			// An unconfigured event name lands here too, and an event Google cannot attribute
			// (ErrNoClickOrOrder): the router enqueues neither, so these are events queued before
			// that rule or replayed from the dead letters, and asking Google again cannot help.
			settle(err.Error())
			continue
		}
		if a != nil && now.Sub(ev.Time) > MaxEnhancementAge {
			if c == nil {
				settle("no click ID, and the event is too old (over 24 hours) to enhance its conversion")
				continue
			}
			a = nil
		}
		if c != nil {
			clicks.Conversions = append(clicks.Conversions, *c)
			clickIdx = append(clickIdx, i)
		}
		if a != nil {
			adjs.ConversionAdjustments = append(adjs.ConversionAdjustments, *a)
			adjIdx = append(adjIdx, i)
		}
	}

	var wholeBatch bool
	var retryAfter time.Duration
	upload := func(kind, url string, body any, idx []int) {
		if len(idx) == 0 {
			return
		}
		r := s.upload(ctx, url, body, len(idx))
		retryAfter = max(retryAfter, r.RetryAfter)
		wholeBatch = wholeBatch || r.WholeBatch
		for pos, i := range idx {
			er, ok := r.Events[pos]
			if !ok {
				er = platform.EventResult{Outcome: r.Outcome, Reason: r.Reason}
			}
			if er.Reason != "" {
				er.Reason = kind + ": " + er.Reason
			}
			per[i] = worse(per[i], er)
		}
	}
	upload("click conversion", s.clickURL, clicks, clickIdx)
	upload("enhancement", s.adjustURL, adjs, adjIdx)
	return collapse(per, retryAfter, wholeBatch)
}

// worse combines the outcomes of an event's two uploads: Retry over Permanent over Delivered, so
// that a retry resends what failed transiently (Google deduplicates the part that went through).
// The reasons of both failed parts are kept.
func worse(a, b platform.EventResult) platform.EventResult {
	rank := func(o platform.Outcome) int {
		switch o {
		case platform.Retry:
			return 2
		case platform.Permanent:
			return 1
		}
		return 0
	}
	out := a
	if rank(b.Outcome) > rank(a.Outcome) {
		out = b
	}
	if a.Outcome != platform.Delivered && b.Outcome != platform.Delivered && a.Reason != "" && b.Reason != "" {
		out.Reason = a.Reason + "; " + b.Reason
	}
	return out
}

// collapse builds the batch's Result from one outcome per event: the commonest outcome is the
// batch's, and every event that is not Delivered or differs from it is listed with its own reason.
func collapse(per []platform.EventResult, retryAfter time.Duration, wholeBatch bool) platform.Result {
	var count [3]int
	for _, er := range per {
		if er.Outcome >= 0 && int(er.Outcome) < len(count) {
			count[er.Outcome]++
		}
	}
	common := platform.Delivered
	for o := range count {
		if count[o] > count[common] {
			common = platform.Outcome(o)
		}
	}
	r := platform.Result{Outcome: common}
	for i, er := range per {
		if er.Outcome == platform.Delivered && common == platform.Delivered {
			continue
		}
		if r.Reason == "" && er.Outcome == common {
			r.Reason = er.Reason
		}
		if r.Events == nil {
			r.Events = make(map[int]platform.EventResult)
		}
		r.Events[i] = er
	}
	if count[platform.Retry] > 0 {
		r.RetryAfter = retryAfter
	}
	r.WholeBatch = wholeBatch && common == platform.Permanent && len(per) > 1
	return r
}

// accessTokens caches the access token and refreshes it when it expires. It refreshes through
// oauth2.Config.TokenSource with the caller's context, so that the Send's deadline bounds a refresh
// too, and one refresh serves every concurrent Send.
type accessTokens struct {
	oauth   *oauth2.Config
	client  *http.Client
	refresh string

	mu  sync.Mutex
	tok *oauth2.Token
}

func (a *accessTokens) token(ctx context.Context) (*oauth2.Token, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.tok.Valid() {
		return a.tok, nil
	}
	ctx = context.WithValue(ctx, oauth2.HTTPClient, a.client)
	tok, err := a.oauth.TokenSource(ctx, &oauth2.Token{RefreshToken: a.refresh}).Token()
	if err != nil {
		return nil, err
	}
	a.tok = tok
	return tok, nil
}

// forget drops the cached token when Google refused it, so the next Send refreshes.
func (a *accessTokens) forget(tok *oauth2.Token) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.tok == tok {
		a.tok = nil
	}
}

func (s *Sender) redact(msg string, tok *oauth2.Token) string {
	secrets := []string{s.cfg.RefreshToken, s.cfg.ClientSecret, s.cfg.DeveloperToken}
	if tok != nil {
		secrets = append(secrets, tok.AccessToken)
	}
	return platform.Redact(msg, secrets...)
}

// Interface guards
var _ platform.Sender = (*Sender)(nil)
