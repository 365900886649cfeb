// Package postback verifies and parses the notifications that tell us about sales made off the site:
// ClickBank INS, JVZoo IPN, Shopify, WooCommerce and Stripe webhooks, and generic server-to-server
// postbacks from trackers and affiliate networks.
//
// Each source is a type built from its configuration that turns one raw request into a neutral
// Notification: what happened (Kind), for which order, for how much, who bought (Customer, in
// plaintext as received) and every key that can join it to the visitor who clicked the ad (Join).
// Authenticity is checked first, on the raw body, in constant time; a request that fails it yields
// ErrUnauthorized and nothing else.
//
// The package must not store, log, hash or forward anything, and never puts a secret or a value from
// the body into an error message: the handler records the notification, hashes the customer data
// through the signal package, deduplicates by IdempotencyKey, joins the visitor and enqueues events.
// Details of each scheme and their sources are in spec/postbacks.md.
package postback

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/caddy-capi/caddy-capi/capi/capture"
)

// Errors Parse wraps; callers use errors.Is. Their messages never contain secrets or body content.
var (
	// ErrUnauthorized: the request is not proven to come from the source (bad or missing signature,
	// a ClickBank body no secret decrypts, a Stripe timestamp outside the tolerance, a wrong token).
	// Answer 401 and store nothing.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrMalformed: the request is authentic, or cannot be checked at all, but its content is not a
	// notification we can read. Answer 400.
	ErrMalformed = errors.New("malformed notification")
	// ErrPing: a source's set-up ping (WooCommerce's webhook_id=<id> on creation). Answer 200 and
	// store nothing.
	ErrPing = errors.New("ping")
)

// Request is what a Source needs of an HTTP request.
type Request struct {
	Method string
	Header http.Header
	// Query is the URL's query; sources that sign only the body never read it.
	Query url.Values
	// Body is the raw body, already size-capped by the caller. Parse never modifies it.
	Body []byte
}

// Source verifies and parses the notifications of one configured source.
type Source interface {
	// Name is the source's name: clickbank, jvzoo, shopify, woocommerce, stripe, generic.
	Name() string
	// Parse verifies req and reads it. On success the Notification's IdempotencyKey is non-empty.
	// Errors wrap ErrUnauthorized, ErrMalformed or ErrPing.
	Parse(req Request) (Notification, error)
}

// Customer is the buyer's data as the notification carries it, in plaintext; the signal package
// normalizes and hashes it on arrival. It is capture's Customer, which has signal.Customer's fields
// in the same order, so signal.Customer(n.Customer) converts it.
type Customer = capture.Customer

// Kind is what a notification reports.
type Kind int

const (
	// Other: anything that is neither a conversion nor a reversal (an unpaid order, a subscription
	// change, an event type we do not act on). Recorded, not sent.
	Other Kind = iota
	// Sale: a first payment.
	Sale
	// Rebill: a recurring payment of a subscription.
	Rebill
	// Refund: money returned; not a conversion.
	Refund
	// Chargeback: a payment disputed through the card network; not a conversion.
	Chargeback
	// Cancel: an order or a subscription cancelled; not a conversion.
	Cancel
	// Test: a test notification of no more specific kind (ClickBank's plain TEST). Test is always
	// set with it.
	Test
)

var kindNames = [...]string{"other", "sale", "rebill", "refund", "chargeback", "cancel", "test"}

func (k Kind) String() string {
	if k >= 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "unknown"
}

// MarshalText writes the kind's name, so stored notifications read "sale", not 1.
func (k Kind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText reads a name written by MarshalText.
func (k *Kind) UnmarshalText(b []byte) error {
	for i, name := range kindNames {
		if name == string(b) {
			*k = Kind(i)
			return nil
		}
	}
	return fmt.Errorf("postback: unknown kind %q", b)
}

// IsConversion reports whether the notification is sent to the platforms as a conversion: sales,
// rebills, and bare test notifications (which, like every notification with Notification.Test set,
// go only to platforms with a test event code). Refunds, chargebacks and cancellations are recorded
// and not sent.
func (k Kind) IsConversion() bool {
	return k == Sale || k == Rebill || k == Test
}

// Notification is one verified notification, neutral of its source.
type Notification struct {
	// Source is the Source's Name.
	Source string
	Kind   Kind
	// Test marks a test notification (ClickBank TEST* types, Shopify test orders, Stripe test mode):
	// never sent to production, only with a configured test event code.
	Test bool
	// IdempotencyKey identifies the notification within its source, stable across the source's
	// retries; a second notification with the same key is a duplicate. Each source's doc says what it
	// is made of.
	IdempotencyKey string
	// OrderID is the order, receipt or session ID, from which the event ID is derived (DESIGN §5), so
	// that the webhook and the thank-you page for one order count once.
	OrderID string
	// Value is the amount paid as a canonical decimal string ("19.99"), empty when unknown.
	Value string
	// Currency is the ISO 4217 code in upper case, empty when unknown.
	Currency string
	// Occurred is when the transaction happened by the source's clock; zero when it did not say.
	Occurred time.Time
	// Customer is the buyer, plaintext as received.
	Customer Customer
	// IP and UserAgent are the buyer's browser's, when the source reports them (Shopify,
	// WooCommerce).
	IP, UserAgent string
	// Join holds the keys that may find the visitor who clicked the ad.
	Join Join
	// Products are the items bought.
	Products []Product
}

// Join holds every key in a notification that can find the visitor. The handler tries them in the
// order of the fields.
type Join struct {
	// TrackingIDs are candidates for our visitor ID (_capi_vid), lower-cased because ClickBank
	// upper-cases tracking IDs and visitor IDs are lower case: ClickBank tracking codes (tid) and
	// vendor variables, JVZoo caffitid and cvendthru, Stripe client_reference_id and metadata,
	// Shopify and WooCommerce cart attributes and order meta, the generic postback's click ID. The
	// store decides which, if any, is a visitor.
	TrackingIDs []string
	// CartToken and CheckoutToken are Shopify's, matched against tokens seen in the visitor's
	// cookies.
	CartToken, CheckoutToken string
	// Ad click IDs, raw (fbclid is case-sensitive), from Shopify's landing_site and note attributes,
	// WooCommerce order meta, Stripe metadata and ClickBank vendor variables.
	FBCLID, GCLID, GBRAID, WBRAID, TTCLID string
	// FBC and FBP are Meta's _fbc and _fbp cookie values, when a storefront script stored them with
	// the order.
	FBC, FBP string
}

// Product is one item of an order.
type Product struct {
	// ID is the SKU when the source gives one, else its product or variant ID.
	ID    string
	Title string
	// Quantity is 0 when unknown.
	Quantity int
	// Price is the unit price as a canonical decimal string, empty when unknown.
	Price string
}
