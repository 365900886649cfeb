package google

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/caddy-capi/caddy-capi/capi/event"
	"github.com/caddy-capi/caddy-capi/capi/platform"
)

// ClickConversionsRequest is the body of customers/{cid}:uploadClickConversions.
type ClickConversionsRequest struct {
	Conversions []ClickConversion `json:"conversions"`
	// PartialFailure is always true: v26 rejects requests without it, and it keeps one bad
	// conversion from failing the others.
	PartialFailure bool `json:"partialFailure"`
}

// ClickConversion is one conversion attributed to an ad click.
type ClickConversion struct {
	// Exactly one of Gclid, Gbraid, Wbraid is set.
	Gclid              string           `json:"gclid,omitempty"`
	Gbraid             string           `json:"gbraid,omitempty"`
	Wbraid             string           `json:"wbraid,omitempty"`
	ConversionAction   string           `json:"conversionAction"`
	ConversionDateTime string           `json:"conversionDateTime"`
	ConversionValue    json.Number      `json:"conversionValue,omitempty"`
	CurrencyCode       string           `json:"currencyCode,omitempty"`
	OrderID            string           `json:"orderId,omitempty"`
	UserIdentifiers    []UserIdentifier `json:"userIdentifiers,omitempty"`
	Consent            Consent          `json:"consent"`
	UserIPAddress      string           `json:"userIpAddress,omitempty"`
}

// ConversionAdjustmentsRequest is the body of customers/{cid}:uploadConversionAdjustments.
type ConversionAdjustmentsRequest struct {
	ConversionAdjustments []ConversionAdjustment `json:"conversionAdjustments"`
	PartialFailure        bool                   `json:"partialFailure"`
}

// ConversionAdjustment is an ENHANCEMENT of the conversion the Google tag recorded under the same
// order ID (the tag's transaction_id): it carries the user-provided data, the address included,
// which uploadClickConversions does not accept.
type ConversionAdjustment struct {
	AdjustmentType    string             `json:"adjustmentType"`
	ConversionAction  string             `json:"conversionAction"`
	OrderID           string             `json:"orderId"`
	GclidDateTimePair *GclidDateTimePair `json:"gclidDateTimePair,omitempty"`
	UserIdentifiers   []UserIdentifier   `json:"userIdentifiers"`
	UserAgent         string             `json:"userAgent,omitempty"`
}

// GclidDateTimePair names the click and time of the conversion an enhancement refers to.
type GclidDateTimePair struct {
	Gclid              string `json:"gclid"`
	ConversionDateTime string `json:"conversionDateTime"`
}

// UserIdentifier is a oneof: exactly one of HashedEmail, HashedPhoneNumber, AddressInfo is set.
type UserIdentifier struct {
	UserIdentifierSource string       `json:"userIdentifierSource"`
	HashedEmail          string       `json:"hashedEmail,omitempty"`
	HashedPhoneNumber    string       `json:"hashedPhoneNumber,omitempty"`
	AddressInfo          *AddressInfo `json:"addressInfo,omitempty"`
}

// AddressInfo is the user's name and address; names and street hashed, the rest plain, as Google
// requires.
type AddressInfo struct {
	HashedFirstName     string `json:"hashedFirstName,omitempty"`
	HashedLastName      string `json:"hashedLastName,omitempty"`
	HashedStreetAddress string `json:"hashedStreetAddress,omitempty"`
	City                string `json:"city,omitempty"`
	State               string `json:"state,omitempty"`
	PostalCode          string `json:"postalCode,omitempty"`
	CountryCode         string `json:"countryCode,omitempty"`
}

// Consent is the user's consent for the conversion.
type Consent struct {
	AdUserData string `json:"adUserData"`
}

const (
	firstParty = "FIRST_PARTY"
	// maxIdentifiers is Google's limit of user identifiers per conversion and per enhancement.
	maxIdentifiers = 5
	// dateTimeLayout is Google's "yyyy-mm-dd hh:mm:ss+|-hh:mm".
	dateTimeLayout = "2006-01-02 15:04:05-07:00"
)

// Why an event yields nothing Google can take.
var (
	// ErrNoClickOrOrder reports an event that is not Attributable. The router sends Google only
	// attributable events, so it reaches Send only with an event queued before that rule (a replayed
	// dead letter, an old queue), where it stays a permanent failure: asking again cannot help.
	ErrNoClickOrOrder = errors.New("event has no gclid, gbraid or wbraid and no order ID with user data to enhance")
	ErrNoTime         = errors.New("event has no time")
)

// Attributable reports whether Google can attribute ev, that is whether its conversion builds into
// a click conversion, an enhancement, or both: ev carries a Google click ID (gclid, gbraid or
// wbraid), or it can enhance the conversion the Google tag recorded under its order ID, which takes
// an order ID, no refusal of ad user data, and at least one identifier Google accepts (a hashed
// email or phone, or an address with first name, last name, country and postal code).
//
// It reads nothing else: not the name, the time or the age of ev, nor Test; the router and Send
// decide on those. It is the very test buildConversion applies (and BuildClickConversion and
// BuildAdjustment gate on its two halves), so the router can keep from Google the events that
// would only fail with ErrNoClickOrOrder, such as a purchase that came from no Google ad.
func Attributable(ev event.Event) bool {
	return hasClickID(ev.User) || enhanceable(ev)
}

// hasClickID reports whether u carries a click ID, so that ev becomes a click conversion.
func hasClickID(u event.User) bool {
	return u.GCLID != "" || u.GBRAID != "" || u.WBRAID != ""
}

// enhanceable reports whether ev becomes an ENHANCEMENT adjustment: it has an order ID to find the
// tag's conversion by and user data to add to it, and the user did not refuse ad user data (an
// adjustment has no consent field to say so, so it is not sent).
func enhanceable(ev event.Event) bool {
	if ev.OrderID == "" || ev.Consent.AdUserDataDenied {
		return false
	}
	p := ev.User.Google
	return hasAddress(p) || slices.ContainsFunc(p.Emails, nonEmpty) || slices.ContainsFunc(p.Phones, nonEmpty)
}

func nonEmpty(s string) bool { return s != "" }

// ConversionDateTime formats t as Google wants it, in loc.
func ConversionDateTime(t time.Time, loc *time.Location) string {
	return t.In(loc).Format(dateTimeLayout)
}

// BuildClickConversion turns ev into a click conversion for the action resource name, or reports
// false when ev carries no Google click ID. Of several click IDs it takes gclid, then gbraid, then
// wbraid: Google accepts one per conversion, and gclid is the one tied to a single click.
func BuildClickConversion(ev event.Event, action string, loc *time.Location) (ClickConversion, bool, error) {
	u := ev.User
	if !hasClickID(u) {
		return ClickConversion{}, false, nil
	}
	if ev.Time.IsZero() {
		return ClickConversion{}, false, ErrNoTime
	}
	c := ClickConversion{
		ConversionAction:   action,
		ConversionDateTime: ConversionDateTime(ev.Time, loc),
		CurrencyCode:       ev.Currency,
		OrderID:            ev.OrderID,
		Consent:            Consent{AdUserData: "GRANTED"},
	}
	switch {
	case u.GCLID != "":
		c.Gclid = u.GCLID
	case u.GBRAID != "":
		c.Gbraid = u.GBRAID
	default:
		c.Wbraid = u.WBRAID
	}
	if ev.Value != "" {
		v, err := platform.DecimalNumber(ev.Value)
		if err != nil {
			return ClickConversion{}, false, err
		}
		c.ConversionValue = v
	}
	if ev.Consent.AdUserDataDenied {
		// The user refused ad user data: Google is told so and receives none.
		c.Consent.AdUserData = "DENIED"
		return c, true, nil
	}
	c.UserIdentifiers = contactIdentifiers(u.Google, maxIdentifiers)
	c.UserIPAddress = u.IP
	return c, true, nil
}

// BuildAdjustment turns ev into an ENHANCEMENT of the conversion recorded under its order ID, or
// reports false when there is nothing to enhance with: no order ID, no user data, or the user
// refused ad user data (an adjustment has no consent field to say so, so it is not sent).
func BuildAdjustment(ev event.Event, action string, loc *time.Location) (ConversionAdjustment, bool) {
	if !enhanceable(ev) {
		return ConversionAdjustment{}, false
	}
	// enhanceable found an address or a non-empty email or phone, so ids is never empty here
	// (FuzzAttributableAgreesWithTheBuilder holds the two to that).
	p := ev.User.Google
	var ids []UserIdentifier
	if addr := addressInfo(p); addr != nil {
		ids = contactIdentifiers(p, maxIdentifiers-1)
		ids = append(ids, UserIdentifier{UserIdentifierSource: firstParty, AddressInfo: addr})
	} else {
		ids = contactIdentifiers(p, maxIdentifiers)
	}
	a := ConversionAdjustment{
		AdjustmentType:   "ENHANCEMENT",
		ConversionAction: action,
		OrderID:          ev.OrderID,
		UserIdentifiers:  ids,
		UserAgent:        ev.User.UserAgent,
	}
	if ev.User.GCLID != "" && !ev.Time.IsZero() {
		a.GclidDateTimePair = &GclidDateTimePair{Gclid: ev.User.GCLID, ConversionDateTime: ConversionDateTime(ev.Time, loc)}
	}
	return a, true
}

// contactIdentifiers takes at most limit hashed emails and phones, alternating so that both kinds
// are represented when there are more than fit.
func contactIdentifiers(p event.Profile, limit int) []UserIdentifier {
	var ids []UserIdentifier
	for i := 0; len(ids) < limit && (i < len(p.Emails) || i < len(p.Phones)); i++ {
		if i < len(p.Emails) && p.Emails[i] != "" {
			ids = append(ids, UserIdentifier{UserIdentifierSource: firstParty, HashedEmail: p.Emails[i]})
		}
		if len(ids) < limit && i < len(p.Phones) && p.Phones[i] != "" {
			ids = append(ids, UserIdentifier{UserIdentifierSource: firstParty, HashedPhoneNumber: p.Phones[i]})
		}
	}
	return ids
}

// hasAddress reports whether p has an address Google takes: an address identifier needs first
// name, last name, country code and postal code together.
func hasAddress(p event.Profile) bool {
	return p.FirstName != "" && p.LastName != "" && p.Country != "" && p.Zip != ""
}

// addressInfo returns the profile's address, or nil when Google would refuse it (see hasAddress).
func addressInfo(p event.Profile) *AddressInfo {
	if !hasAddress(p) {
		return nil
	}
	return &AddressInfo{
		HashedFirstName:     p.FirstName,
		HashedLastName:      p.LastName,
		HashedStreetAddress: p.Street,
		City:                p.City,
		State:               p.State,
		PostalCode:          p.Zip,
		// Google's examples write the ISO code upper case; the profile may carry it lower case.
		CountryCode: strings.ToUpper(p.Country),
	}
}

// Signals lists the user-provided signals that reach Google through a click conversion and its
// enhancement together, out of the nine: email, phone, first_name, last_name, street, city, region,
// postal_code, country.
func Signals(c *ClickConversion, a *ConversionAdjustment) []string {
	seen := map[string]bool{}
	add := func(ids []UserIdentifier) {
		for _, id := range ids {
			seen["email"] = seen["email"] || id.HashedEmail != ""
			seen["phone"] = seen["phone"] || id.HashedPhoneNumber != ""
			if ai := id.AddressInfo; ai != nil {
				seen["first_name"] = seen["first_name"] || ai.HashedFirstName != ""
				seen["last_name"] = seen["last_name"] || ai.HashedLastName != ""
				seen["street"] = seen["street"] || ai.HashedStreetAddress != ""
				seen["city"] = seen["city"] || ai.City != ""
				seen["region"] = seen["region"] || ai.State != ""
				seen["postal_code"] = seen["postal_code"] || ai.PostalCode != ""
				seen["country"] = seen["country"] || ai.CountryCode != ""
			}
		}
	}
	if c != nil {
		add(c.UserIdentifiers)
	}
	if a != nil {
		add(a.UserIdentifiers)
	}
	var out []string
	for _, s := range []string{"email", "phone", "first_name", "last_name", "street", "city", "region", "postal_code", "country"} {
		if seen[s] {
			out = append(out, s)
		}
	}
	return out
}

// BuildRequests builds the two request bodies Send posts for events, each conversion named by
// conversions[event name]. It fails on the first event with no configured conversion or with
// nothing Google can take; Send instead settles such events alone and sends the rest.
func BuildRequests(customerID string, conversions map[string]Conversion, loc *time.Location, events []event.Event) (ClickConversionsRequest, ConversionAdjustmentsRequest, error) {
	clicks := ClickConversionsRequest{PartialFailure: true}
	adjs := ConversionAdjustmentsRequest{PartialFailure: true}
	for i, ev := range events {
		c, a, err := buildConversion(customerID, conversions, loc, ev)
		if err != nil {
			return clicks, adjs, fmt.Errorf("google: event %d (%s): %w", i, ev.ID, err)
		}
		if c != nil {
			clicks.Conversions = append(clicks.Conversions, *c)
		}
		if a != nil {
			adjs.ConversionAdjustments = append(adjs.ConversionAdjustments, *a)
		}
	}
	return clicks, adjs, nil
}

// ErrNoConversion reports an event whose name has no configured conversion action.
var ErrNoConversion = errors.New("no conversion configured for event")

// buildConversion builds what ev becomes at Google: a click conversion, an enhancement, or both;
// never neither without an error. It fails with ErrNoClickOrOrder exactly when ev is configured
// but not Attributable, before it looks at anything else, so that the router's use of
// Attributable and this builder cannot disagree.
func buildConversion(customerID string, conversions map[string]Conversion, loc *time.Location, ev event.Event) (*ClickConversion, *ConversionAdjustment, error) {
	conv, ok := conversions[ev.Name]
	if !ok {
		return nil, nil, fmt.Errorf("%w %q", ErrNoConversion, ev.Name)
	}
	if !Attributable(ev) {
		return nil, nil, ErrNoClickOrOrder
	}
	if ev.Time.IsZero() {
		return nil, nil, ErrNoTime
	}
	action := actionName(customerID, conv.ActionID)
	click, hasClick, err := BuildClickConversion(ev, action, loc)
	if err != nil {
		return nil, nil, err
	}
	adj, hasAdj := BuildAdjustment(ev, action, loc)
	// Attributable is hasClickID or enhanceable, the two builders' own gates, so one of them is set.
	var c *ClickConversion
	if hasClick {
		c = &click
	}
	var a *ConversionAdjustment
	if hasAdj {
		a = &adj
	}
	return c, a, nil
}

func actionName(customerID, actionID string) string {
	return "customers/" + customerID + "/conversionActions/" + actionID
}
