package caddymodule

import (
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-capi/caddy-capi/capi/delivery"
)

// Limits on delivery and retention values; beyond them a value is a typo, not a choice.
const (
	maxWorkers = 256
	maxBatch   = 2000
	maxFlush   = time.Hour
	maxGiveUp  = 90 * 24 * time.Hour
	// defaultRetryBase and defaultRetryMax are the delivery engine's own backoff bounds, which
	// retry_base and retry_max are checked against when only one of them is set.
	defaultRetryBase = time.Second
	defaultRetryMax  = 10 * time.Minute
	// maxRetryMax: a longer wait between attempts would leave a 7-day event a handful of tries.
	maxRetryMax   = 24 * time.Hour
	minVisitorTTL = time.Hour
	// maxVisitorTTL matches the longest cookie lifetime browsers honour.
	maxVisitorTTL = 400 * 24 * time.Hour
)

// fieldError is a configuration problem located by its directive path, such as
// "capi.meta.pixel_id".
type fieldError struct {
	path string
	err  error
}

func (e fieldError) Error() string { return e.path + ": " + e.err.Error() }

func fieldErr(path string, err error) error { return fieldError{path: path, err: err} }

// resolveSecret replaces a {env.NAME} or {file.PATH} placeholder and checks that something came of
// it; the error names the placeholder, never the value.
func resolveSecret(repl *caddy.Replacer, path, v string) (string, error) {
	if err := checkSecret(v); err != nil {
		return "", fieldErr(path, err)
	}
	if !isSecretPlaceholder(v) {
		return v, nil
	}
	out := repl.ReplaceKnown(v, "")
	if out == "" || out == v {
		return "", fieldErr(path, fmt.Errorf("%s resolved to an empty value; set it in Caddy's environment", v))
	}
	if err := checkSecret(out); err != nil {
		return "", fieldErr(path, fmt.Errorf("the value of %s %v", v, err))
	}
	return out, nil
}

// resolveID resolves a placeholder, if any, then checks the identifier.
func resolveID(repl *caddy.Replacer, path, v string, check func(string) (string, error)) (string, error) {
	if v == "" {
		return "", nil
	}
	resolved, err := resolveSecret(repl, path, v)
	if err != nil {
		return "", err
	}
	out, err := check(resolved)
	if err != nil {
		if resolved != v {
			return "", fieldErr(path, fmt.Errorf("the value of %s: %v", v, err))
		}
		return "", fieldErr(path, err)
	}
	return out, nil
}

func keep(check func(string) error) func(string) (string, error) {
	return func(v string) (string, error) { return v, check(v) }
}

func optional(path, v string, check func(string) error) error {
	if v == "" {
		return nil
	}
	if err := check(v); err != nil {
		return fieldErr(path, err)
	}
	return nil
}

// resolve builds this config's settings: defaults applied, placeholders replaced, every value
// checked, so that a JSON config gets the same checks as a Caddyfile.
func (a *App) resolve(repl *caddy.Replacer) (*resolvedConfig, error) {
	r := &resolvedConfig{visitorTTL: DefaultVisitorTTL}
	var err error

	if a.Storage != nil {
		r.storage = *a.Storage
	}
	switch r.storage.Backend {
	case "", backendBolt:
		r.storage.Backend = backendBolt
		if r.storage.URL != "" {
			return nil, fieldErr("capi.storage.url", errors.New("is for the redis backend; the bolt backend takes a path"))
		}
		if r.storage.Path == "" {
			r.storage.Path = defaultStoragePath()
		}
		// The pool is keyed by the file's identity, so two spellings of one path must not make two
		// handles on one lock.
		if r.storage.Path, err = filepath.Abs(r.storage.Path); err != nil {
			return nil, fieldErr("capi.storage.path", err)
		}
	case backendRedis:
		if r.storage.Path != "" {
			return nil, fieldErr("capi.storage.path", errors.New("is for the bolt backend; the redis backend takes a url"))
		}
		if r.storage.URL, err = resolveSecret(repl, "capi.storage.url", r.storage.URL); err != nil {
			return nil, err
		}
		if err := checkRedisURL(r.storage.URL); err != nil {
			return nil, fieldErr("capi.storage.url", err)
		}
	default:
		return nil, fieldErr("capi.storage.backend", errors.New("expected bolt or redis"))
	}

	if a.Sink != nil {
		if a.Sink.Type != "file" {
			return nil, fieldErr("capi.sink.type", errors.New("expected file"))
		}
		if a.Sink.Path == "" {
			return nil, fieldErr("capi.sink.path", errors.New("expected the file to record payloads to"))
		}
		abs, err := filepath.Abs(a.Sink.Path)
		if err != nil {
			return nil, fieldErr("capi.sink.path", err)
		}
		r.sink = &SinkConfig{Type: "file", Path: abs}
	}

	if err := a.checkCredentials(); err != nil {
		return nil, err
	}
	if a.Meta != nil {
		if r.meta, err = resolveMeta(repl, *a.Meta); err != nil {
			return nil, err
		}
	}
	if a.TikTok != nil {
		if r.tiktok, err = resolveTikTok(repl, *a.TikTok); err != nil {
			return nil, err
		}
	}
	if a.GoogleAds != nil {
		if r.google, err = resolveGoogle(repl, *a.GoogleAds); err != nil {
			return nil, err
		}
	}

	if a.Delivery != nil {
		if err := checkDelivery("capi.delivery", *a.Delivery); err != nil {
			return nil, err
		}
		r.delivery = *a.Delivery
	}
	if a.VisitorTTL != 0 {
		if err := checkVisitorTTL(time.Duration(a.VisitorTTL)); err != nil {
			return nil, fieldErr("capi.visitor_ttl", err)
		}
		r.visitorTTL = time.Duration(a.VisitorTTL)
	}
	if a.DefaultCountry != "" {
		if r.defaultCountry, err = checkCountry(a.DefaultCountry); err != nil {
			return nil, fieldErr("capi.default_country", err)
		}
	}
	if a.Consent != nil {
		if err := checkConsent("capi.consent", *a.Consent); err != nil {
			return nil, err
		}
		r.consent = *a.Consent
	}
	return r, nil
}

func resolveMeta(repl *caddy.Replacer, m MetaConfig) (*MetaConfig, error) {
	var err error
	if m.PixelID, err = resolveID(repl, "capi.meta.pixel_id", m.PixelID, checkMetaPixelID); err != nil {
		return nil, err
	}
	if m.AccessToken != "" {
		if m.AccessToken, err = resolveSecret(repl, "capi.meta.access_token", m.AccessToken); err != nil {
			return nil, err
		}
	}
	if m.TestEventCode, err = resolveID(repl, "capi.meta.test_event_code", m.TestEventCode, keep(checkTestEventCode)); err != nil {
		return nil, err
	}
	if err := optional("capi.meta.api_version", m.APIVersion, checkMetaAPIVersion); err != nil {
		return nil, err
	}
	if err := optional("capi.meta.endpoint", m.Endpoint, checkEndpoint); err != nil {
		return nil, err
	}
	return &m, nil
}

func resolveTikTok(repl *caddy.Replacer, t TikTokConfig) (*TikTokConfig, error) {
	var err error
	if t.PixelCode, err = resolveID(repl, "capi.tiktok.pixel_code", t.PixelCode, keep(checkTikTokPixelCode)); err != nil {
		return nil, err
	}
	if t.AccessToken != "" {
		if t.AccessToken, err = resolveSecret(repl, "capi.tiktok.access_token", t.AccessToken); err != nil {
			return nil, err
		}
	}
	if t.TestEventCode, err = resolveID(repl, "capi.tiktok.test_event_code", t.TestEventCode, keep(checkTestEventCode)); err != nil {
		return nil, err
	}
	if err := optional("capi.tiktok.endpoint", t.Endpoint, checkEndpoint); err != nil {
		return nil, err
	}
	for ours, theirs := range t.Events {
		if err := checkEventName(ours); err != nil {
			return nil, fieldErr("capi.tiktok.events", err)
		}
		if err := checkEventName(theirs); err != nil {
			return nil, fieldErr("capi.tiktok.events."+ours, err)
		}
	}
	return &t, nil
}

func resolveGoogle(repl *caddy.Replacer, g GoogleAdsConfig) (*GoogleAdsConfig, error) {
	var err error
	if g.TagID, err = resolveID(repl, "capi.google_ads.tag_id", g.TagID, keep(checkGoogleTagID)); err != nil {
		return nil, err
	}
	if g.CustomerID, err = resolveID(repl, "capi.google_ads.customer_id", g.CustomerID, checkGoogleCustomerID); err != nil {
		return nil, err
	}
	if g.LoginCustomerID, err = resolveID(repl, "capi.google_ads.login_customer_id", g.LoginCustomerID, checkGoogleCustomerID); err != nil {
		return nil, err
	}
	for _, s := range []struct {
		path string
		v    *string
	}{
		{"capi.google_ads.developer_token", &g.DeveloperToken},
		{"capi.google_ads.client_id", &g.ClientID},
		{"capi.google_ads.client_secret", &g.ClientSecret},
		{"capi.google_ads.refresh_token", &g.RefreshToken},
	} {
		if *s.v == "" {
			continue
		}
		if *s.v, err = resolveSecret(repl, s.path, *s.v); err != nil {
			return nil, err
		}
	}
	conversions := make([]GoogleConversion, len(g.Conversions))
	for i, c := range g.Conversions {
		path := fmt.Sprintf("capi.google_ads.conversions[%d]", i)
		if err := checkEventName(c.Event); err != nil {
			return nil, fieldErr(path+".event", err)
		}
		if c.ActionID, err = checkGoogleActionID(c.ActionID); err != nil {
			return nil, fieldErr(path+".action_id", err)
		}
		if err := optional(path+".label", c.Label, checkGoogleLabel); err != nil {
			return nil, err
		}
		conversions[i] = c
	}
	g.Conversions = conversions
	if err := optional("capi.google_ads.endpoint", g.Endpoint, checkEndpoint); err != nil {
		return nil, err
	}
	if err := optional("capi.google_ads.token_endpoint", g.TokenEndpoint, checkEndpoint); err != nil {
		return nil, err
	}
	if err := optional("capi.google_ads.api_version", g.APIVersion, checkGoogleAPIVersion); err != nil {
		return nil, err
	}
	return &g, nil
}

// checkCredentials refuses a platform that could never send: no pixel, or no token when no sink
// records instead. The Caddyfile parser runs it too, to point at the platform's block.
func (a *App) checkCredentials() error {
	sink := a.Sink != nil
	if m := a.Meta; m != nil {
		if m.PixelID == "" {
			return fieldErr("capi.meta.pixel_id", errors.New("is required; expected `pixel_id <digits>` in the meta block"))
		}
		if m.AccessToken == "" && !sink {
			return fieldErr("capi.meta.access_token", errors.New("is required to send server events; expected `access_token {env.META_ACCESS_TOKEN}` in the meta block, or a `sink file <path>` that records instead"))
		}
	}
	if t := a.TikTok; t != nil {
		if t.PixelCode == "" {
			return fieldErr("capi.tiktok.pixel_code", errors.New("is required; expected `pixel_code <code>` in the tiktok block"))
		}
		if t.AccessToken == "" && !sink {
			return fieldErr("capi.tiktok.access_token", errors.New("is required to send server events; expected `access_token {env.TIKTOK_ACCESS_TOKEN}` in the tiktok block, or a `sink file <path>` that records instead"))
		}
	}
	if g := a.GoogleAds; g != nil {
		if g.TagID == "" && g.CustomerID == "" {
			return fieldErr("capi.google_ads.tag_id", errors.New("is required, or customer_id; expected `tag_id AW-<digits>` for the browser tag or `customer_id <id>` for uploads"))
		}
		if g.CustomerID != "" {
			if len(g.Conversions) == 0 {
				return fieldErr("capi.google_ads.conversions", errors.New("is empty, so nothing would be uploaded; expected `conversion <EventName> <conversion action id> [<label>]`"))
			}
			if !sink {
				for _, f := range []struct{ name, v string }{
					{"developer_token", g.DeveloperToken},
					{"client_id", g.ClientID},
					{"client_secret", g.ClientSecret},
					{"refresh_token", g.RefreshToken},
				} {
					if f.v == "" {
						return fieldErr("capi.google_ads."+f.name, fmt.Errorf("is required with customer_id to upload conversions; expected `%s <value>` (an {env.NAME} placeholder works), or a `sink file <path>` that records instead", f.name))
					}
				}
			}
		}
		for i, c := range g.Conversions {
			if c.Label != "" && g.TagID == "" {
				return fieldErr(fmt.Sprintf("capi.google_ads.conversions[%d].label", i), errors.New("needs tag_id, because the label is for the browser tag; expected `tag_id AW-<digits>`"))
			}
			if c.Label == "" && g.CustomerID == "" {
				return fieldErr(fmt.Sprintf("capi.google_ads.conversions[%d]", i), fmt.Errorf("%s has no label and there is no customer_id, so it would reach neither the browser tag nor uploads", c.Event))
			}
		}
	}
	return nil
}

func checkDelivery(path string, d DeliveryConfig) error {
	if d.Workers < 0 || d.Workers > maxWorkers {
		return fieldErr(path+".workers", fmt.Errorf("expected a number of workers from 1 to %d", maxWorkers))
	}
	if d.Batch < 0 || d.Batch > maxBatch {
		return fieldErr(path+".batch", fmt.Errorf("expected a batch size from 1 to %d", maxBatch))
	}
	if d.Flush < 0 || time.Duration(d.Flush) > maxFlush {
		return fieldErr(path+".flush", fmt.Errorf("expected a positive duration up to %s", maxFlush))
	}
	if d.GiveUp < 0 || time.Duration(d.GiveUp) > maxGiveUp {
		return fieldErr(path+".give_up", errors.New("expected a positive duration up to 90d"))
	}
	if field, err := checkRetry(d); err != nil {
		return fieldErr(path+"."+field, err)
	}
	return nil
}

// checkRetry checks the backoff bounds of d against each other, against the engine's defaults
// where one is unset, and against give_up; it names the field at fault.
func checkRetry(d DeliveryConfig) (field string, err error) {
	base, ceiling := time.Duration(d.RetryBase), time.Duration(d.RetryMax)
	if base < 0 {
		return "retry_base", errors.New("expected a positive duration such as 1s")
	}
	if ceiling < 0 || ceiling > maxRetryMax {
		return "retry_max", errors.New("expected a positive duration up to 1d, such as 10m")
	}
	if base == 0 && ceiling == 0 {
		return "", nil
	}
	switch {
	case ceiling == 0 && base > defaultRetryMax:
		return "retry_base", fmt.Errorf("%s is longer than the default retry_max %s; expected a shorter retry_base or a retry_max of at least %s", shortDuration(base), shortDuration(defaultRetryMax), shortDuration(base))
	case base == 0 && ceiling < defaultRetryBase:
		return "retry_max", fmt.Errorf("%s is shorter than the default retry_base %s; expected at least %s", shortDuration(ceiling), shortDuration(defaultRetryBase), shortDuration(defaultRetryBase))
	case base > 0 && ceiling > 0 && ceiling < base:
		return "retry_max", fmt.Errorf("%s is shorter than retry_base %s; expected at least the base", shortDuration(ceiling), shortDuration(base))
	}
	if giveUp := time.Duration(d.GiveUp); giveUp > 0 {
		if ceiling > giveUp {
			return "retry_max", fmt.Errorf("%s is longer than give_up %s; expected at most give_up", shortDuration(ceiling), shortDuration(giveUp))
		}
		if ceiling == 0 && base > giveUp {
			return "retry_base", fmt.Errorf("%s is longer than give_up %s; expected at most give_up", shortDuration(base), shortDuration(giveUp))
		}
	}
	return "", nil
}

// shortDuration writes d as a Caddyfile would: 10m rather than 10m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// retrySettings adds the backoff bounds of the delivery block to the engine's settings; unset
// ones leave the engine's defaults.
func (r *resolvedConfig) retrySettings(s delivery.Settings) delivery.Settings {
	s.RetryBase = time.Duration(r.delivery.RetryBase)
	s.RetryMax = time.Duration(r.delivery.RetryMax)
	return s
}

func checkVisitorTTL(d time.Duration) error {
	if d < minVisitorTTL || d > maxVisitorTTL {
		return errors.New("expected a duration from 1h to 400d (such as 90d)")
	}
	return nil
}

func checkConsent(path string, c ConsentConfig) error {
	if c.Require != nil {
		if err := checkCookieName(c.Require.Cookie); err != nil {
			return fieldErr(path+".require.cookie", err)
		}
		if c.Require.Pattern == "" {
			return fieldErr(path+".require.pattern", errors.New("expected a regular expression the consent cookie must match"))
		}
		if err := checkRegexp(c.Require.Pattern); err != nil {
			return fieldErr(path+".require.pattern", err)
		}
	}
	return nil
}

// compileConsent compiles the consent requirement of c, if any.
func compileConsent(c ConsentConfig) (*regexp.Regexp, error) {
	if c.Require == nil {
		return nil, nil
	}
	return regexp.Compile(c.Require.Pattern)
}
