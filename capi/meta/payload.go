package meta

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/caddy-capi/caddy-capi/capi/event"
	"github.com/caddy-capi/caddy-capi/capi/platform"
)

// Payload is the body of one request to /{version}/{pixel}/events, without the access token.
type Payload struct {
	Data          []ServerEvent `json:"data"`
	TestEventCode string        `json:"test_event_code,omitempty"`
	PartnerAgent  string        `json:"partner_agent,omitempty"`
}

// ServerEvent is one element of data, in Meta's field names.
type ServerEvent struct {
	EventName      string     `json:"event_name"`
	EventTime      int64      `json:"event_time"`
	EventID        string     `json:"event_id,omitempty"`
	ActionSource   string     `json:"action_source"`
	EventSourceURL string     `json:"event_source_url,omitempty"`
	ReferrerURL    string     `json:"referrer_url,omitempty"`
	UserData       UserData   `json:"user_data"`
	CustomData     CustomData `json:"custom_data,omitzero"`

	// DataProcessingOptions is ["LDU"] under Limited Data Use; country and state 0 then ask Meta to
	// geolocate the event, which needs no further knowledge of where the visitor is.
	DataProcessingOptions        []string `json:"data_processing_options,omitempty"`
	DataProcessingOptionsCountry *int     `json:"data_processing_options_country,omitempty"`
	DataProcessingOptionsState   *int     `json:"data_processing_options_state,omitempty"`
}

// UserData carries the 15 matching signals. Contact and address fields arrive hashed from the signal
// package; the identity fields are sent as they are, as Meta requires.
type UserData struct {
	Em              []string `json:"em,omitempty"`
	Ph              []string `json:"ph,omitempty"`
	Fn              string   `json:"fn,omitempty"`
	Ln              string   `json:"ln,omitempty"`
	Db              string   `json:"db,omitempty"`
	Ge              string   `json:"ge,omitempty"`
	Ct              string   `json:"ct,omitempty"`
	St              string   `json:"st,omitempty"`
	Zp              string   `json:"zp,omitempty"`
	Country         string   `json:"country,omitempty"`
	ExternalID      string   `json:"external_id,omitempty"`
	ClientIPAddress string   `json:"client_ip_address,omitempty"`
	ClientUserAgent string   `json:"client_user_agent,omitempty"`
	Fbc             string   `json:"fbc,omitempty"`
	Fbp             string   `json:"fbp,omitempty"`
}

// Signals lists the names of the matching signals u carries, in Meta's field names.
func (u UserData) Signals() []string {
	var s []string
	add := func(name string, present bool) {
		if present {
			s = append(s, name)
		}
	}
	add("em", len(u.Em) > 0)
	add("ph", len(u.Ph) > 0)
	add("fn", u.Fn != "")
	add("ln", u.Ln != "")
	add("db", u.Db != "")
	add("ge", u.Ge != "")
	add("ct", u.Ct != "")
	add("st", u.St != "")
	add("zp", u.Zp != "")
	add("country", u.Country != "")
	add("external_id", u.ExternalID != "")
	add("client_ip_address", u.ClientIPAddress != "")
	add("client_user_agent", u.ClientUserAgent != "")
	add("fbc", u.Fbc != "")
	add("fbp", u.Fbp != "")
	return s
}

// CustomData holds the event's commerce properties. Custom holds the event's further properties,
// written beside the standard ones (a custom key never replaces a standard one).
type CustomData struct {
	Value        json.Number       `json:"value,omitempty"`
	Currency     string            `json:"currency,omitempty"`
	OrderID      string            `json:"order_id,omitempty"`
	ContentIDs   []string          `json:"content_ids,omitempty"`
	Contents     []Content         `json:"contents,omitempty"`
	ContentType  string            `json:"content_type,omitempty"`
	NumItems     int               `json:"num_items,omitempty"`
	SearchString string            `json:"search_string,omitempty"`
	Custom       map[string]string `json:"-"`
}

// Content is one item of custom_data.contents.
type Content struct {
	ID        string      `json:"id"`
	Quantity  int         `json:"quantity,omitempty"`
	ItemPrice json.Number `json:"item_price,omitempty"`
}

// IsZero reports whether there is no custom data to send, so that custom_data is left out.
func (c CustomData) IsZero() bool {
	return c.Value == "" && c.Currency == "" && c.OrderID == "" && len(c.ContentIDs) == 0 &&
		len(c.Contents) == 0 && c.ContentType == "" && c.NumItems == 0 && c.SearchString == "" &&
		len(c.Custom) == 0
}

var standardCustomKeys = []string{
	"value", "currency", "order_id", "content_ids", "contents", "content_type", "num_items", "search_string",
}

// MarshalJSON writes the standard properties, then the custom ones in key order.
func (c CustomData) MarshalJSON() ([]byte, error) {
	type plain CustomData
	b, err := json.Marshal(plain(c))
	if err != nil || len(c.Custom) == 0 {
		return b, err
	}
	keys := make([]string, 0, len(c.Custom))
	for k := range c.Custom {
		if k != "" && !slices.Contains(standardCustomKeys, k) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	b = b[:len(b)-1] // reopen the object
	for _, k := range keys {
		if len(b) > 1 {
			b = append(b, ',')
		}
		kb, _ := json.Marshal(k)
		vb, _ := json.Marshal(c.Custom[k])
		b = append(append(append(b, kb...), ':'), vb...)
	}
	return append(b, '}'), nil
}

var zero = 0

// Errors of events that cannot be sent to Meta as they are.
var (
	ErrNoName        = errors.New("event has no name")
	ErrNoTime        = errors.New("event has no time")
	ErrNoUserData    = errors.New("event carries no matching signal")
	ErrWebsiteFields = errors.New("website event needs event_source_url and client_user_agent")
)

// BuildEvent turns one neutral event into Meta's server event.
func BuildEvent(ev event.Event) (ServerEvent, error) {
	if ev.Name == "" {
		return ServerEvent{}, ErrNoName
	}
	if ev.Time.IsZero() {
		return ServerEvent{}, ErrNoTime
	}
	src := ev.ActionSource
	if src == "" {
		src = event.ActionWebsite
	}
	u, p := ev.User, ev.User.Meta
	se := ServerEvent{
		EventName:      ev.Name,
		EventTime:      ev.Time.Unix(),
		EventID:        ev.ID,
		ActionSource:   src,
		EventSourceURL: ev.SourceURL,
		ReferrerURL:    ev.Referrer,
		UserData: UserData{
			Em: p.Emails, Ph: p.Phones,
			Fn: p.FirstName, Ln: p.LastName, Db: p.DateOfBirth, Ge: p.Gender,
			Ct: p.City, St: p.State, Zp: p.Zip, Country: p.Country,
			ExternalID:      u.ExternalID,
			ClientIPAddress: u.IP,
			ClientUserAgent: u.UserAgent,
			Fbc:             u.FBC,
			Fbp:             u.FBP,
		},
		CustomData: CustomData{
			Currency:     ev.Currency,
			OrderID:      ev.OrderID,
			ContentIDs:   ev.ContentIDs,
			ContentType:  ev.ContentType,
			NumItems:     ev.NumItems,
			SearchString: ev.SearchString,
			Custom:       ev.Custom,
		},
	}
	// Meta requires both for website events and rejects the whole batch over one event without them.
	if src == event.ActionWebsite && (se.EventSourceURL == "" || se.UserData.ClientUserAgent == "") {
		return ServerEvent{}, ErrWebsiteFields
	}
	if se.UserData.Signals() == nil {
		return ServerEvent{}, ErrNoUserData
	}
	if ev.Value != "" {
		v, err := platform.DecimalNumber(ev.Value)
		if err != nil {
			return ServerEvent{}, err
		}
		se.CustomData.Value = v
	}
	if len(ev.Contents) > 0 {
		se.CustomData.Contents = make([]Content, len(ev.Contents))
		for i, c := range ev.Contents {
			se.CustomData.Contents[i] = Content{ID: c.ID, Quantity: c.Quantity}
			if c.ItemPrice != "" {
				v, err := platform.DecimalNumber(c.ItemPrice)
				if err != nil {
					return ServerEvent{}, fmt.Errorf("contents[%d]: %w", i, err)
				}
				se.CustomData.Contents[i].ItemPrice = v
			}
		}
	}
	if ev.Consent.LimitedDataUse {
		se.DataProcessingOptions = []string{"LDU"}
		se.DataProcessingOptionsCountry = &zero
		se.DataProcessingOptionsState = &zero
	}
	return se, nil
}

// BuildPayload builds the JSON body that Send posts for events, without the access token. It fails
// on the first event that cannot be sent; Send instead settles such events alone and sends the rest.
func BuildPayload(cfg Config, events []event.Event) ([]byte, error) {
	p := Payload{Data: make([]ServerEvent, 0, len(events)), TestEventCode: cfg.TestEventCode, PartnerAgent: cfg.PartnerAgent}
	for i, ev := range events {
		se, err := BuildEvent(ev)
		if err != nil {
			return nil, fmt.Errorf("meta: event %d (%s): %w", i, ev.ID, err)
		}
		p.Data = append(p.Data, se)
	}
	return json.Marshal(p)
}
