package postback

import (
	"crypto/sha1"
	"crypto/subtle"
	"encoding/hex"
	"net/url"
	"sort"
	"strings"

	"github.com/caddy-capi/caddy-capi/capi/capture"
)

// JVZoo reads JVZoo JVZIPN v1 posts: a form-urlencoded body signed by cverify, the upper-case first
// eight hex digits of SHA-1 over every other posted field's value followed by "|", in order of
// field name, then the secret (spec/postbacks.md §2.1). JVZIPN v2 signs differently over a field
// list not yet known and is not accepted.
//
// IdempotencyKey: ctransreceipt|ctransaction.
type JVZoo struct {
	// Secrets are the account's JVZIPN secret keys; several while one is being replaced.
	Secrets []string
	// Currency is the currency of ctransamount, which v1 does not send; default USD (JVZoo prices in
	// dollars; unconfirmed for every account).
	Currency string
}

func (JVZoo) Name() string { return "jvzoo" }

// Parse verifies and reads one IPN.
func (s JVZoo) Parse(req Request) (Notification, error) {
	const src = "jvzoo"
	form, err := url.ParseQuery(string(req.Body))
	if err != nil {
		return Notification{}, malformed(src, "body is not form-urlencoded")
	}
	got := strings.ToUpper(strings.TrimSpace(form.Get("cverify")))
	if got == "" {
		return Notification{}, unauthorized(src, "no cverify field")
	}
	if !jvzooVerify(form, got, s.Secrets) {
		return Notification{}, unauthorized(src, "cverify does not match any configured secret")
	}

	receipt, txType := last(form, "ctransreceipt"), last(form, "ctransaction")
	if receipt == "" || txType == "" {
		return Notification{}, malformed(src, "ctransreceipt or ctransaction missing")
	}
	kind, test := ticketKind(txType)
	n := Notification{
		Source:         src,
		Kind:           kind,
		Test:           test,
		IdempotencyKey: receipt + "|" + txType,
		OrderID:        receipt,
		Occurred:       unixTime(last(form, "ctranstime")),
		Currency:       currencyCode(s.Currency),
	}
	if n.Currency == "" {
		n.Currency = "USD"
	}
	// v1 amounts are read as dollars: a 2025 capture shows ctransamount=1.00, though an old comment
	// says pennies (spec §2.1, unconfirmed).
	n.Value, _ = Decimal(last(form, "ctransamount"))

	addEmail(&n.Customer, last(form, "ccustemail"))
	first, lastName := capture.SplitName(last(form, "ccustname"))
	fillAddress(&n.Customer, first, lastName, "", "", last(form, "ccuststate"), "", last(form, "ccustcc"))

	n.Join.addTracking(last(form, "caffitid"))
	// cvendthru is the query data given to the order form: clickid=…&fbclid=…; a bare value is
	// taken as a tracking ID.
	if vt := last(form, "cvendthru"); strings.Contains(vt, "=") {
		n.Join.addQuery(vt)
	} else {
		n.Join.addTracking(vt)
	}

	if item := last(form, "cproditem"); item != "" {
		n.Products = []Product{{ID: item, Title: last(form, "cprodtitle")}}
	}
	return n, nil
}

// jvzooVerify reports whether cverify (upper case) matches under one of the secrets. Values are the
// decoded UTF-8 strings as posted; a repeated field counts with its last value, as PHP's $_POST does.
func jvzooVerify(form url.Values, cverify string, secrets []string) bool {
	names := make([]string, 0, len(form))
	for name := range form {
		if name != "cverify" {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	var pre strings.Builder
	for _, name := range names {
		v := form[name]
		pre.WriteString(v[len(v)-1])
		pre.WriteByte('|')
	}
	ok := 0
	for _, secret := range secrets {
		if secret == "" {
			continue
		}
		sum := sha1.Sum([]byte(pre.String() + secret))
		want := strings.ToUpper(hex.EncodeToString(sum[:4]))
		ok |= subtle.ConstantTimeCompare([]byte(want), []byte(cverify))
	}
	return ok == 1
}

func last(form url.Values, name string) string {
	v := form[name]
	if len(v) == 0 {
		return ""
	}
	return strings.TrimSpace(v[len(v)-1])
}
