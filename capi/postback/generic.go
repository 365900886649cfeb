package postback

import (
	"crypto/sha256"
	"crypto/subtle"
	"mime"
	"net/http"
	"net/url"
	"strings"

	"github.com/caddy-capi/caddy-capi/capi/capture"
)

// Generic reads server-to-server postbacks in the style of trackers and affiliate networks (Voluum,
// RedTrack, Binom, ClickFlare, …): parameters in the query string of a GET, or in a form or JSON
// POST body, authenticated by a shared token (spec/postbacks.md §6). Networks can put a fixed
// token in any postback URL template; most trackers authenticate only by the click ID, which is not
// enough for us, since a forged conversion would reach the ad platforms.
//
// The token is read from "Authorization: Bearer <token>" (which keeps it out of access logs) or
// from the Params.Token parameter.
//
// Kinds by status: empty, approved, sale, purchase, conversion, confirmed, paid, complete(d) and
// success are Sales; rebill, recurring and renewal Rebills; refund(ed), reversed and reversal
// Refunds; chargeback a Chargeback; declined, rejected, cancel(l)ed and void Cancels (networks
// reverse a conversion by firing again with such a status); test a Test; anything else (pending,
// lead, custom event names) Other. A test parameter of 1 or true also marks the notification Test.
//
// IdempotencyKey: "tx/<transaction id>/<kind>" when the postback carries a transaction ID, so that a
// reversal fired with the same ID is not taken for a retry; else "click/<click id>/<status>", one
// conversion per click and status.
type Generic struct {
	// Token is the shared secret every postback must carry. Without one, every postback is refused.
	Token string
	// Params names the parameters; empty fields take their defaults.
	Params GenericParams
	// Currency is assumed when a postback carries none; empty leaves the currency unknown.
	Currency string
}

// GenericParams names the parameters of a generic postback. Each list is tried in order; the first
// parameter present wins.
type GenericParams struct {
	// Token is the token parameter; default "token".
	Token string
	// ClickID default: cid, clickid, click_id, cnv_id, subid, aff_sub, capi_vid.
	ClickID []string
	// Value default: payout, sum, amount, revenue, value.
	Value []string
	// Currency default: currency, cnv_currency.
	Currency []string
	// Order (the transaction ID) default: txid, transaction_id, order_id, rdtk_event_id.
	Order []string
	// Status default: status, cnv_status, et, type, goal.
	Status []string
}

func (p GenericParams) withDefaults() GenericParams {
	def := func(v []string, d ...string) []string {
		if len(v) == 0 {
			return d
		}
		return v
	}
	if p.Token == "" {
		p.Token = "token"
	}
	p.ClickID = def(p.ClickID, "cid", "clickid", "click_id", "cnv_id", "subid", "aff_sub", "capi_vid")
	p.Value = def(p.Value, "payout", "sum", "amount", "revenue", "value")
	p.Currency = def(p.Currency, "currency", "cnv_currency")
	p.Order = def(p.Order, "txid", "transaction_id", "order_id", "rdtk_event_id")
	p.Status = def(p.Status, "status", "cnv_status", "et", "type", "goal")
	return p
}

func (Generic) Name() string { return "generic" }

// Parse verifies and reads one postback.
func (s Generic) Parse(req Request) (Notification, error) {
	const src = "generic"
	if req.Method != http.MethodGet && req.Method != http.MethodPost {
		return Notification{}, malformed(src, "method must be GET or POST")
	}
	p := s.Params.withDefaults()
	params, bodyErr := genericParams(req)

	given := ""
	if auth := req.Header.Get("Authorization"); len(auth) > 7 && strings.EqualFold(auth[:7], "bearer ") {
		given = strings.TrimSpace(auth[7:])
	} else {
		given = params.Get(p.Token)
	}
	// Comparing digests keeps the comparison constant-time in the token's length too.
	want, got := sha256.Sum256([]byte(s.Token)), sha256.Sum256([]byte(given))
	if s.Token == "" || subtle.ConstantTimeCompare(want[:], got[:]) != 1 {
		return Notification{}, unauthorized(src, "token missing or wrong")
	}
	if bodyErr != "" {
		return Notification{}, malformed(src, bodyErr)
	}

	pick := func(names []string) string {
		for _, name := range names {
			if v := strings.TrimSpace(params.Get(name)); v != "" {
				return v
			}
		}
		return ""
	}
	click, order, status := pick(p.ClickID), pick(p.Order), strings.ToLower(pick(p.Status))
	kind, test := genericKind(status)
	switch strings.ToLower(params.Get("test")) {
	case "1", "true", "yes":
		test = true
	}
	n := Notification{Source: src, Kind: kind, Test: test, OrderID: order}
	switch {
	case order != "":
		n.IdempotencyKey = "tx/" + order + "/" + kind.String()
	case click != "":
		if status == "" {
			status = kind.String()
		}
		n.IdempotencyKey = "click/" + click + "/" + status
	default:
		return Notification{}, malformed(src, "no click ID and no transaction ID")
	}
	n.Value, _ = Decimal(pick(p.Value))
	if n.Currency = currencyCode(pick(p.Currency)); n.Currency == "" {
		n.Currency = currencyCode(s.Currency)
	}

	n.Join.addTracking(click)
	n.Join.addValues(params, p.Token)
	delete(params, p.Token)
	if sub, _ := capture.Extract("application/x-www-form-urlencoded", []byte(params.Encode()), nil); !sub.Customer.IsZero() {
		n.Customer = sub.Customer
	}
	return n, nil
}

// genericParams merges the query with a form or JSON body's top-level scalars. The second result
// describes a body that could not be read, without its content.
func genericParams(req Request) (url.Values, string) {
	params := url.Values{}
	for k, v := range req.Query {
		params[k] = append([]string(nil), v...)
	}
	if req.Method != http.MethodPost || len(strings.TrimSpace(string(req.Body))) == 0 {
		return params, ""
	}
	mt, _, _ := mime.ParseMediaType(req.Header.Get("Content-Type"))
	if mt == "application/json" || strings.HasSuffix(mt, "+json") || (mt == "" && strings.HasPrefix(strings.TrimSpace(string(req.Body)), "{")) {
		doc, err := decodeObject(req.Body)
		if err != nil {
			return params, err.Error()
		}
		for k, v := range doc {
			if s := scalarText(v); s != "" {
				params.Add(k, s)
			}
		}
		return params, ""
	}
	form, err := url.ParseQuery(string(req.Body))
	for k, v := range form {
		params[k] = append(params[k], v...)
	}
	if err != nil {
		return params, "body is not form-urlencoded"
	}
	return params, ""
}

func genericKind(status string) (Kind, bool) {
	switch status {
	case "", "approved", "approve", "sale", "purchase", "conversion", "confirmed", "paid", "complete", "completed", "success":
		return Sale, false
	case "rebill", "recurring", "renewal":
		return Rebill, false
	case "refund", "refunded", "reversed", "reversal":
		return Refund, false
	case "chargeback":
		return Chargeback, false
	case "declined", "rejected", "cancel", "canceled", "cancelled", "void":
		return Cancel, false
	case "test":
		return Test, true
	}
	return Other, false
}
