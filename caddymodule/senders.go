package caddymodule

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-capi/caddy-capi/capi/delivery"
	"github.com/caddy-capi/caddy-capi/capi/google"
	"github.com/caddy-capi/caddy-capi/capi/meta"
	"github.com/caddy-capi/caddy-capi/capi/platform"
	"github.com/caddy-capi/caddy-capi/capi/sink"
	"github.com/caddy-capi/caddy-capi/capi/tiktok"
)

// sinks holds one open sink file per absolute path, shared by every config that records to it, so
// that a reload neither reopens the file nor interleaves two handles' writes. A config takes a
// reference in App.Start and releases it in App.Cleanup, after its storage; the last release
// closes the file.
var sinks = caddy.NewUsagePool()

// sinkFile is a pooled sink.File.
type sinkFile struct{ *sink.File }

// Destruct closes the file. A send still running on it fails as a network error would, and its
// events are retried by whichever senders are installed next.
func (f sinkFile) Destruct() error { return f.Close() }

// acquireSink opens (or shares) the sink file at path.
func acquireSink(path string) (*sink.File, error) {
	val, _, err := sinks.LoadOrNew(path, func() (caddy.Destructor, error) {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("creating the directory of sink file %s: %v", path, err)
		}
		f, err := sink.NewFile(path)
		if err != nil {
			return nil, err
		}
		return sinkFile{f}, nil
	})
	if err != nil {
		return nil, fmt.Errorf("capi.sink.path: %v", err)
	}
	return val.(sinkFile).File, nil
}

// sinkCredential stands in for a platform credential the config leaves out when a sink records
// instead of sending: the senders insist on one, and the sink strips credentials before it writes.
const sinkCredential = "recorded-by-sink"

// senderTimeout bounds one request to a platform (or one write to the sink).
const senderTimeout = 30 * time.Second

// newSenders builds one platform.Sender per platform that receives server events, keyed by
// platform name. A Google Ads block with only a tag_id is browser-only and has no sender. With a
// non-nil client, every sender sends through it (the sink's recording transport); otherwise each
// uses its package's default client.
func (r *resolvedConfig) newSenders(client *http.Client) (map[string]platform.Sender, error) {
	credential := func(v string) string {
		if v == "" && r.sink != nil {
			return sinkCredential
		}
		return v
	}
	senders := map[string]platform.Sender{}
	if m := r.meta; m != nil {
		s, err := meta.NewSender(meta.Config{
			PixelID:       m.PixelID,
			AccessToken:   credential(m.AccessToken),
			TestEventCode: m.TestEventCode,
			APIVersion:    m.APIVersion,
			Endpoint:      m.Endpoint,
			Client:        client,
		})
		if err != nil {
			return nil, fmt.Errorf("capi.meta: %v", err)
		}
		senders[platform.Meta] = s
	}
	if t := r.tiktok; t != nil {
		s, err := tiktok.NewSender(tiktok.Config{
			PixelCode:     t.PixelCode,
			AccessToken:   credential(t.AccessToken),
			TestEventCode: t.TestEventCode,
			Endpoint:      t.Endpoint,
			EventNames:    t.Events,
			Client:        client,
		})
		if err != nil {
			return nil, fmt.Errorf("capi.tiktok: %v", err)
		}
		senders[platform.TikTok] = s
	}
	if g := r.google; g != nil && g.CustomerID != "" {
		conversions := make(map[string]google.Conversion, len(g.Conversions))
		for _, c := range g.Conversions {
			conversions[c.Event] = google.Conversion{ActionID: c.ActionID, Label: c.Label}
		}
		s, err := google.NewSender(google.Config{
			CustomerID:      g.CustomerID,
			LoginCustomerID: g.LoginCustomerID,
			DeveloperToken:  credential(g.DeveloperToken),
			ClientID:        credential(g.ClientID),
			ClientSecret:    credential(g.ClientSecret),
			RefreshToken:    credential(g.RefreshToken),
			Conversions:     conversions,
			Endpoint:        g.Endpoint,
			TokenEndpoint:   g.TokenEndpoint,
			APIVersion:      g.APIVersion,
			Client:          client,
		})
		if err != nil {
			return nil, fmt.Errorf("capi.google_ads: %v", err)
		}
		senders[platform.Google] = s
	}
	return senders, nil
}

// deliverySettings are the engine's settings from the `delivery` block. give_up applies to every
// platform; the engine caps it at each platform's maximum event age.
func (r *resolvedConfig) deliverySettings(senders map[string]platform.Sender) delivery.Settings {
	s := delivery.Settings{
		Workers: r.delivery.Workers,
		Batch:   r.delivery.Batch,
		Flush:   time.Duration(r.delivery.Flush),
	}
	if d := time.Duration(r.delivery.GiveUp); d > 0 {
		s.GiveUp = make(map[string]time.Duration, len(senders))
		for name := range senders {
			s.GiveUp[name] = d
		}
	}
	return s
}

// testEventCodes returns the test event code configured per platform, for the platforms that have
// one. Google Ads has no test mode.
func (r *resolvedConfig) testEventCodes() map[string]string {
	codes := map[string]string{}
	if r.meta != nil && r.meta.TestEventCode != "" {
		codes[platform.Meta] = r.meta.TestEventCode
	}
	if r.tiktok != nil && r.tiktok.TestEventCode != "" {
		codes[platform.TikTok] = r.tiktok.TestEventCode
	}
	return codes
}
