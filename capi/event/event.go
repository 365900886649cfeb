// Package event holds the neutral event and user model that flows from the edge (requests, forms,
// postbacks) through the queue to the platform packages.
//
// It owns no platform's field names: the meta, tiktok and google packages turn an Event into their
// own payloads. Personal data never enters this package in plaintext: a User carries values that the
// signal package has already normalized and, where the platform requires it, SHA-256 hashed.
package event

import "time"

// Action sources: where a conversion happened, in Meta's vocabulary, which the other platforms map
// onto their own.
const (
	// ActionWebsite is an event joined to a visitor of the site.
	ActionWebsite = "website"
	// ActionSystemGenerated is a postback or webhook that joined no visitor.
	ActionSystemGenerated = "system_generated"
)

// Event is one conversion or page event, independent of any platform. It is what the queue stores
// durably (as JSON), so every field is serializable and none holds plaintext personal data.
type Event struct {
	// Name is our event name (Meta's standard names: PageView, ViewContent, AddToCart,
	// InitiateCheckout, Lead, CompleteRegistration, Purchase, …, or a custom name). Platforms map it
	// to their own names.
	Name string `json:"name"`
	// ID is the event ID shared with the browser pixels, the deduplication key on every platform.
	ID string `json:"id"`
	// Time is when the event happened.
	Time time.Time `json:"time"`
	// SourceURL is the full URL of the page where the event happened.
	SourceURL string `json:"source_url,omitempty"`
	// Referrer is the HTTP referrer of that page.
	Referrer string `json:"referrer,omitempty"`
	// ActionSource is ActionWebsite or ActionSystemGenerated.
	ActionSource string `json:"action_source"`

	// Value is the monetary value as a canonical decimal string ("49.90"), empty when unknown.
	// A string keeps cents exact from the edge to the platform.
	Value string `json:"value,omitempty"`
	// Currency is the ISO 4217 code, upper case, empty when unknown.
	Currency string `json:"currency,omitempty"`
	// OrderID is the shop's or network's order ID, empty when unknown.
	OrderID string `json:"order_id,omitempty"`
	// ContentType is "product" or "product_group" when Contents or ContentIDs are set.
	ContentType string `json:"content_type,omitempty"`
	// ContentIDs are the IDs (SKUs) of the items concerned.
	ContentIDs []string `json:"content_ids,omitempty"`
	// Contents are the items concerned, with quantities and prices.
	Contents []Content `json:"contents,omitempty"`
	// NumItems is the number of items, 0 when unknown.
	NumItems int `json:"num_items,omitempty"`
	// SearchString is the query of a Search event.
	SearchString string `json:"search_string,omitempty"`
	// Custom holds further non-personal properties, sent as custom data where a platform allows it.
	Custom map[string]string `json:"custom,omitempty"`

	// Test marks an event from a test notification or a test setup: it is sent only where a test
	// event code is configured, and with that code.
	Test bool `json:"test,omitempty"`
	// Consent restricts what the platforms may do with the event.
	Consent Consent `json:"consent,omitempty"`

	// User holds the matching signals.
	User User `json:"user"`
}

// Content is one item of an event.
type Content struct {
	ID string `json:"id"`
	// Quantity is the number of units, 0 when unknown.
	Quantity int `json:"quantity,omitempty"`
	// ItemPrice is the unit price as a canonical decimal string, empty when unknown.
	ItemPrice string `json:"item_price,omitempty"`
	Title     string `json:"title,omitempty"`
	Category  string `json:"category,omitempty"`
	Brand     string `json:"brand,omitempty"`
}

// Consent holds the visitor's privacy choices as they bear on delivery.
type Consent struct {
	// LimitedDataUse asks the platforms to process the event under their restricted modes (Meta LDU,
	// TikTok limited_data_use); set by Global Privacy Control.
	LimitedDataUse bool `json:"limited_data_use,omitempty"`
	// AdUserDataDenied tells Google the user did not consent to ad user data.
	AdUserDataDenied bool `json:"ad_user_data_denied,omitempty"`
}

// User carries every matching signal known for the person behind an event.
//
// Identity signals are sent as they are (the platforms require them unhashed). Customer data comes
// as one Profile per platform, each normalized by that platform's documented rules and already in
// the form that platform receives: hashed where it requires a hash, plain where it requires plain
// values (Google's and TikTok's city, region, postal code and country).
type User struct {
	// ExternalID is the lowercase hex SHA-256 of the visitor ID, identical in browser tags and
	// server events on every platform.
	ExternalID string `json:"external_id,omitempty"`
	// IP is the client IP as Caddy determined it (trusted_proxies honoured).
	IP string `json:"ip,omitempty"`
	// UserAgent is the browser's User-Agent.
	UserAgent string `json:"user_agent,omitempty"`
	// Locale is a BCP 47 tag such as "en-US", from Accept-Language.
	Locale string `json:"locale,omitempty"`

	// FBC and FBP are Meta's click and browser IDs in their cookie format (fb.1.<ms>.<…>).
	FBC string `json:"fbc,omitempty"`
	FBP string `json:"fbp,omitempty"`
	// TTCLID is TikTok's click ID; TTP the _ttp browser ID.
	TTCLID string `json:"ttclid,omitempty"`
	TTP    string `json:"ttp,omitempty"`
	// GCLID, GBRAID and WBRAID are Google Ads click IDs.
	GCLID  string `json:"gclid,omitempty"`
	GBRAID string `json:"gbraid,omitempty"`
	WBRAID string `json:"wbraid,omitempty"`

	// Meta, TikTok and Google are the customer data normalized by each platform's rules.
	Meta   Profile `json:"meta,omitempty"`
	TikTok Profile `json:"tiktok,omitempty"`
	Google Profile `json:"google,omitempty"`
}

// Profile is customer data normalized by one platform's rules, each value already in the form that
// platform receives (see the signal package for which are hashed). Empty means unknown.
type Profile struct {
	Emails      []string `json:"emails,omitempty"`
	Phones      []string `json:"phones,omitempty"`
	FirstName   string   `json:"first_name,omitempty"`
	LastName    string   `json:"last_name,omitempty"`
	DateOfBirth string   `json:"date_of_birth,omitempty"`
	Gender      string   `json:"gender,omitempty"`
	Street      string   `json:"street,omitempty"`
	City        string   `json:"city,omitempty"`
	State       string   `json:"state,omitempty"`
	Zip         string   `json:"zip,omitempty"`
	Country     string   `json:"country,omitempty"`
}

// IsZero reports whether the profile carries no value.
func (p Profile) IsZero() bool {
	return len(p.Emails) == 0 && len(p.Phones) == 0 && p.FirstName == "" && p.LastName == "" &&
		p.DateOfBirth == "" && p.Gender == "" && p.Street == "" && p.City == "" && p.State == "" &&
		p.Zip == "" && p.Country == ""
}
