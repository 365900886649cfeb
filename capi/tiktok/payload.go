package tiktok

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/caddy-capi/caddy-capi/capi/event"
	"github.com/caddy-capi/caddy-capi/capi/platform"
)

// defaultNames holds the names that differ between Meta's vocabulary (ours) and TikTok's. Every
// other standard name is the same on both sides: AddPaymentInfo, AddToCart, AddToWishlist,
// CompleteRegistration, Contact, CustomizeProduct, FindLocation, InitiateCheckout, Lead, Purchase,
// Schedule, Search, StartTrial, SubmitApplication, Subscribe, ViewContent (Events API 2.0).
var defaultNames = map[string]string{
	// TikTok's pixel reports ttq.page() as "Pageview"; which spelling the API expects is unconfirmed,
	// so we follow the pixel, which is what a server copy must deduplicate against.
	"PageView": "Pageview",
}

// EventName returns TikTok's name for our event name: the configured mapping first, then the
// defaults, else the name itself (TikTok keeps custom names for reporting). The browser pixel uses
// it too, since TikTok deduplicates on the pair (event, event_id).
func EventName(ours string, mapping map[string]string) string {
	if n, ok := mapping[ours]; ok && n != "" {
		return n
	}
	if n, ok := defaultNames[ours]; ok {
		return n
	}
	return ours
}

// Payload is the body of one request to /open_api/v1.3/event/track/.
type Payload struct {
	EventSource   string     `json:"event_source"`
	EventSourceID string     `json:"event_source_id"`
	TestEventCode string     `json:"test_event_code,omitempty"`
	Data          []WebEvent `json:"data"`
}

// WebEvent is one element of data.
type WebEvent struct {
	Event      string     `json:"event"`
	EventTime  int64      `json:"event_time"`
	EventID    string     `json:"event_id,omitempty"`
	User       User       `json:"user"`
	Properties Properties `json:"properties,omitzero"`
	Page       *Page      `json:"page,omitempty"`
	// LimitedDataUse is always written, false included, so the choice is explicit in every payload.
	LimitedDataUse bool `json:"limited_data_use"`
}

// User carries the matching signals. Email, phone, external_id, names and zip arrive hashed from
// the signal package; the rest is plain, as TikTok requires.
type User struct {
	Email      []string `json:"email,omitempty"`
	Phone      []string `json:"phone,omitempty"`
	ExternalID string   `json:"external_id,omitempty"`
	TTCLID     string   `json:"ttclid,omitempty"`
	TTP        string   `json:"ttp,omitempty"`
	IP         string   `json:"ip,omitempty"`
	UserAgent  string   `json:"user_agent,omitempty"`
	Locale     string   `json:"locale,omitempty"`
	FirstName  string   `json:"first_name,omitempty"`
	LastName   string   `json:"last_name,omitempty"`
	ZipCode    string   `json:"zip_code,omitempty"`
	City       string   `json:"city,omitempty"`
	State      string   `json:"state,omitempty"`
	Country    string   `json:"country,omitempty"`
}

// Signals lists the names of the matching signals u carries, in TikTok's field names. They are the
// 12 of DESIGN.md §1: email, phone, external_id, ttclid, ttp, ip, user_agent, locale, first_name,
// last_name, zip_code and the address (city, state, country), which counts as one signal but is
// listed field by field.
func (u User) Signals() []string {
	var s []string
	add := func(name string, present bool) {
		if present {
			s = append(s, name)
		}
	}
	add("email", len(u.Email) > 0)
	add("phone", len(u.Phone) > 0)
	add("external_id", u.ExternalID != "")
	add("ttclid", u.TTCLID != "")
	add("ttp", u.TTP != "")
	add("ip", u.IP != "")
	add("user_agent", u.UserAgent != "")
	add("locale", u.Locale != "")
	add("first_name", u.FirstName != "")
	add("last_name", u.LastName != "")
	add("zip_code", u.ZipCode != "")
	add("city", u.City != "")
	add("state", u.State != "")
	add("country", u.Country != "")
	return s
}

// Properties are the event's commerce properties. Our custom properties are not sent: the 2.0
// documentation lists no free-form properties, and an unknown one could fail the whole batch.
type Properties struct {
	Value        json.Number `json:"value,omitempty"`
	Currency     string      `json:"currency,omitempty"`
	ContentType  string      `json:"content_type,omitempty"`
	Contents     []Content   `json:"contents,omitempty"`
	ContentIDs   []string    `json:"content_ids,omitempty"`
	NumItems     int         `json:"num_items,omitempty"`
	SearchString string      `json:"search_string,omitempty"`
	OrderID      string      `json:"order_id,omitempty"`
}

// IsZero reports whether there are no properties, so that properties is left out.
func (p Properties) IsZero() bool {
	return p.Value == "" && p.Currency == "" && p.ContentType == "" && len(p.Contents) == 0 &&
		len(p.ContentIDs) == 0 && p.NumItems == 0 && p.SearchString == "" && p.OrderID == ""
}

// Content is one item of properties.contents; Price is the unit price.
type Content struct {
	ContentID       string      `json:"content_id"`
	Quantity        int         `json:"quantity,omitempty"`
	Price           json.Number `json:"price,omitempty"`
	ContentName     string      `json:"content_name,omitempty"`
	ContentCategory string      `json:"content_category,omitempty"`
	Brand           string      `json:"brand,omitempty"`
}

// Page is where a web event happened.
type Page struct {
	URL      string `json:"url,omitempty"`
	Referrer string `json:"referrer,omitempty"`
}

// Errors of events that cannot be sent to TikTok as they are.
var (
	ErrNoName = errors.New("event has no name")
	ErrNoTime = errors.New("event has no time")
)

// BuildEvent turns one neutral event into TikTok's web event, naming it with EventName.
func BuildEvent(ev event.Event, names map[string]string) (WebEvent, error) {
	if ev.Name == "" {
		return WebEvent{}, ErrNoName
	}
	if ev.Time.IsZero() {
		return WebEvent{}, ErrNoTime
	}
	u, p := ev.User, ev.User.TikTok
	we := WebEvent{
		Event:     EventName(ev.Name, names),
		EventTime: ev.Time.Unix(),
		EventID:   ev.ID,
		User: User{
			Email: p.Emails, Phone: p.Phones,
			ExternalID: u.ExternalID,
			TTCLID:     u.TTCLID, TTP: u.TTP,
			IP: u.IP, UserAgent: u.UserAgent, Locale: u.Locale,
			FirstName: p.FirstName, LastName: p.LastName,
			ZipCode: p.Zip, City: p.City, State: p.State, Country: p.Country,
		},
		Properties: Properties{
			Currency:     ev.Currency,
			ContentType:  ev.ContentType,
			ContentIDs:   ev.ContentIDs,
			NumItems:     ev.NumItems,
			SearchString: ev.SearchString,
			OrderID:      ev.OrderID,
		},
		LimitedDataUse: ev.Consent.LimitedDataUse,
	}
	if ev.SourceURL != "" || ev.Referrer != "" {
		we.Page = &Page{URL: ev.SourceURL, Referrer: ev.Referrer}
	}
	if ev.Value != "" {
		v, err := platform.DecimalNumber(ev.Value)
		if err != nil {
			return WebEvent{}, err
		}
		we.Properties.Value = v
	}
	if len(ev.Contents) > 0 {
		we.Properties.Contents = make([]Content, len(ev.Contents))
		for i, c := range ev.Contents {
			we.Properties.Contents[i] = Content{ContentID: c.ID, Quantity: c.Quantity,
				ContentName: c.Title, ContentCategory: c.Category, Brand: c.Brand}
			if c.ItemPrice != "" {
				v, err := platform.DecimalNumber(c.ItemPrice)
				if err != nil {
					return WebEvent{}, fmt.Errorf("contents[%d]: %w", i, err)
				}
				we.Properties.Contents[i].Price = v
			}
		}
	}
	return we, nil
}

// BuildPayload builds the JSON body that Send posts for events. It fails on the first event that
// cannot be sent; Send instead settles such events alone and sends the rest.
func BuildPayload(cfg Config, events []event.Event) ([]byte, error) {
	p := Payload{EventSource: "web", EventSourceID: cfg.PixelCode, TestEventCode: cfg.TestEventCode,
		Data: make([]WebEvent, 0, len(events))}
	for i, ev := range events {
		we, err := BuildEvent(ev, cfg.EventNames)
		if err != nil {
			return nil, fmt.Errorf("tiktok: event %d (%s): %w", i, ev.ID, err)
		}
		p.Data = append(p.Data, we)
	}
	return json.Marshal(p)
}
