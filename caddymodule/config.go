package caddymodule

import "github.com/caddyserver/caddy/v2"

// StorageConfig says where visitors and the delivery queue are kept.
type StorageConfig struct {
	// Backend is "bolt" (an embedded bbolt file, one Caddy node) or "redis" (several Caddy nodes
	// sharing one Redis). Default: "bolt".
	Backend string `json:"backend,omitempty"`

	// Path is the bbolt database file for the "bolt" backend. Relative paths are taken relative to
	// Caddy's working directory. Default: "capi/capi.db" under Caddy's data directory.
	Path string `json:"path,omitempty"`

	// URL is the Redis URL (redis:// or rediss://) for the "redis" backend. Placeholders such as
	// {env.REDIS_URL} are resolved at provision time. There is no default; the "redis" backend
	// requires it.
	URL string `json:"url,omitempty"`
}

// SinkConfig replaces delivery to the platforms by a recording of the payloads that would have
// been sent, for demos and staging.
type SinkConfig struct {
	// Type is the kind of sink. The only kind is "file". There is no default.
	Type string `json:"type,omitempty"`

	// Path is the file the payloads are appended to, one JSON object a line. There is no default.
	Path string `json:"path,omitempty"`
}

// MetaConfig configures the Meta Pixel and the Meta Conversions API.
type MetaConfig struct {
	// PixelID is the numeric ID of the Meta Pixel (dataset). It is required.
	PixelID string `json:"pixel_id,omitempty"`

	// AccessToken is the Conversions API access token. Use a placeholder such as
	// {env.META_ACCESS_TOKEN} to keep it out of the config. It is required unless a sink records
	// the payloads instead of sending them.
	AccessToken string `json:"access_token,omitempty"`

	// TestEventCode routes server events to the Test Events tool of Events Manager. Never set it in
	// production. Default: unset.
	TestEventCode string `json:"test_event_code,omitempty"`

	// APIVersion is the Graph API version, such as "v25.0". Default: a current supported version,
	// chosen by the capi/meta package.
	APIVersion string `json:"api_version,omitempty"`

	// Endpoint is the base URL of the Graph API; tests point it at a fake. Default:
	// "https://graph.facebook.com".
	Endpoint string `json:"endpoint,omitempty"`
}

// TikTokConfig configures the TikTok pixel and the TikTok Events API.
type TikTokConfig struct {
	// PixelCode is the TikTok pixel code (letters and digits, such as "C4ABCDEFGH1234567890"). It is
	// required.
	PixelCode string `json:"pixel_code,omitempty"`

	// AccessToken is the Events API access token. Use a placeholder such as
	// {env.TIKTOK_ACCESS_TOKEN}. It is required unless a sink records the payloads instead of
	// sending them.
	AccessToken string `json:"access_token,omitempty"`

	// TestEventCode routes server events to the Test Events tab of TikTok Events Manager. Never set
	// it in production. Default: unset.
	TestEventCode string `json:"test_event_code,omitempty"`

	// Endpoint is the base URL of the TikTok Business API; tests point it at a fake. Default:
	// "https://business-api.tiktok.com".
	Endpoint string `json:"endpoint,omitempty"`

	// Events maps our event names to TikTok event names (for instance "Purchase" to
	// "CompletePayment"). Default: every event keeps its name.
	Events map[string]string `json:"events,omitempty"`
}

// GoogleAdsConfig configures the Google tag and Google Ads click conversion uploads.
type GoogleAdsConfig struct {
	// TagID is the Google tag ID of the Ads account, "AW-" followed by digits, for the browser tag.
	// Either TagID or CustomerID is required.
	TagID string `json:"tag_id,omitempty"`

	// CustomerID is the Google Ads customer ID that receives uploads, 10 digits; dashes are removed
	// while parsing. Required for server-side conversions.
	CustomerID string `json:"customer_id,omitempty"`

	// LoginCustomerID is the manager account's customer ID, when uploads go through a manager
	// account. Dashes are removed while parsing. Default: unset.
	LoginCustomerID string `json:"login_customer_id,omitempty"`

	// DeveloperToken is the Google Ads API developer token. Required with CustomerID unless a sink
	// records the payloads instead of sending them.
	DeveloperToken string `json:"developer_token,omitempty"`

	// ClientID is the OAuth client ID. Required with CustomerID unless a sink records instead.
	ClientID string `json:"client_id,omitempty"`

	// ClientSecret is the OAuth client secret. Required with CustomerID unless a sink records
	// instead.
	ClientSecret string `json:"client_secret,omitempty"`

	// RefreshToken is the OAuth refresh token of a user with access to the account. Required with
	// CustomerID unless a sink records instead.
	RefreshToken string `json:"refresh_token,omitempty"`

	// Conversions maps our event names to Google Ads conversion actions. Google receives only the
	// events listed here. Default: none.
	Conversions []GoogleConversion `json:"conversions,omitempty"`

	// Endpoint is the base URL of the Google Ads API; tests point it at a fake. Default:
	// "https://googleads.googleapis.com".
	Endpoint string `json:"endpoint,omitempty"`

	// TokenEndpoint is the OAuth token URL. Default: "https://oauth2.googleapis.com/token".
	TokenEndpoint string `json:"token_endpoint,omitempty"`

	// APIVersion is the Google Ads API version, such as "v24". Default: a current supported
	// version, chosen by the capi/google package.
	APIVersion string `json:"api_version,omitempty"`
}

// GoogleConversion maps one of our events to a Google Ads conversion action.
type GoogleConversion struct {
	// Event is our event name, such as "Purchase". It is required.
	Event string `json:"event,omitempty"`

	// ActionID is the numeric ID of the conversion action that server uploads are recorded under.
	// It is required.
	ActionID string `json:"action_id,omitempty"`

	// Label is the conversion label the browser tag sends to ("AW-…/<label>"). Default: unset, and
	// the browser tag does not fire this conversion.
	Label string `json:"label,omitempty"`
}

// DeliveryConfig tunes the background delivery of events to the platforms.
type DeliveryConfig struct {
	// Workers is the number of concurrent senders per platform. Default: chosen by the delivery
	// engine.
	Workers int `json:"workers,omitempty"`

	// Batch is the largest number of events sent in one request. It is capped per platform: Meta
	// 1000, TikTok 1000, Google 2000. Default: each platform's cap.
	Batch int `json:"batch,omitempty"`

	// Flush is the longest an event waits for a batch to fill. Default: chosen by the delivery
	// engine.
	Flush caddy.Duration `json:"flush,omitempty"`

	// GiveUp is how long delivery of an event is retried before it goes to the dead letters. It is
	// capped by each platform's maximum event age. Default: just under each platform's maximum
	// event age.
	GiveUp caddy.Duration `json:"give_up,omitempty"`

	// RetryBase is the backoff before the first retry of a transient failure; each later retry
	// waits up to twice as long as the one before (exponential backoff with full jitter), until
	// RetryMax. A platform's Retry-After is honoured when it asks for longer. Default: 1s.
	RetryBase caddy.Duration `json:"retry_base,omitempty"`

	// RetryMax caps the backoff between two attempts. It must not be shorter than RetryBase nor
	// longer than GiveUp, and is at most 1 day. Default: 10m.
	RetryMax caddy.Duration `json:"retry_max,omitempty"`
}

// ConsentConfig holds the consent rules of a site, or the defaults of every site.
type ConsentConfig struct {
	// Require makes the site opt-in: no tracking cookies, tags or events until the named cookie
	// matches. Default: unset, and tracking needs no consent cookie.
	Require *ConsentCookie `json:"require,omitempty"`

	// GPC makes a request with the header "Sec-GPC: 1" limit data use on every platform (Meta LDU,
	// TikTok limited_data_use, Google ad_user_data denied). Default: true, because the Global Privacy
	// Control is a legally binding opt-out in several jurisdictions.
	GPC *bool `json:"gpc,omitempty"`
}

// ConsentCookie names the cookie that carries the visitor's consent.
type ConsentCookie struct {
	// Cookie is the name of the consent cookie. It is required.
	Cookie string `json:"cookie,omitempty"`

	// Pattern is a regular expression (RE2 syntax) that the cookie's value must match for consent
	// to be given. It is required.
	Pattern string `json:"pattern,omitempty"`
}

// PostbackSettings are the settings of a postback endpoint that only some sources take; each is
// refused on a source it does not apply to. They sit beside Source, Path and Secrets in the
// endpoint's JSON.
type PostbackSettings struct {
	// Vendor is the ClickBank account nickname that every notification's vendor field must equal
	// (case-insensitively), so that a notification encrypted for another account under a shared
	// secret is refused. Only the clickbank source takes it. Default: unset, and the vendor is not
	// checked.
	Vendor string `json:"vendor,omitempty"`

	// Currency is the ISO 4217 code of amounts that arrive without one: JVZoo's JVZIPN v1 never
	// sends a currency, and a generic postback may leave it out. Only the jvzoo and generic sources
	// take it. Default: USD for jvzoo; for generic none, and a value without a currency is ignored
	// by the platforms.
	Currency string `json:"currency,omitempty"`

	// Topics are the Shopify webhook topics whose paid orders count as a purchase: orders/paid,
	// orders/create, orders/updated, orders/fulfilled or orders/partially_fulfilled. An order counts
	// once whichever of them arrive. Only the shopify source takes it. Default: orders/paid and
	// orders/create.
	Topics []string `json:"topics,omitempty"`
}
