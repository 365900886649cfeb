package postback

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"strings"

	"github.com/caddy-capi/caddy-capi/capi/capture"
)

// ClickBank reads ClickBank Instant Notification Service posts, versions 6.0, 7.0 and 8.0, which
// share one scheme: a JSON body {"notification": base64, "iv": base64} whose notification is the
// AES-256-CBC encryption of the JSON notification (spec/postbacks.md §1).
//
// The cipher has no MAC, so "decrypts under one of our secrets into a JSON object" is the
// authenticity test: a wrong key or a tampered ciphertext garbles the plaintext. Vendor, when set,
// tightens it.
//
// IdempotencyKey: receipt|transactionType (rebills carry their own -Bnnn receipt suffix).
type ClickBank struct {
	// Secrets are the account's INS secret keys; several while one is being replaced.
	Secrets []string
	// Vendor, when set, is the account nickname the notification's vendor field must equal
	// (case-insensitively), so that a notification encrypted for another account under a shared
	// secret is refused.
	Vendor string
}

func (ClickBank) Name() string { return "clickbank" }

// clickBankKey derives the AES-256 key: the first 32 characters of the lower-case hex SHA-1 of the
// secret, used as ASCII bytes (not the binary digest).
func clickBankKey(secret string) []byte {
	sum := sha1.Sum([]byte(secret))
	return []byte(hex.EncodeToString(sum[:])[:32])
}

// Parse decrypts and reads one notification.
func (s ClickBank) Parse(req Request) (Notification, error) {
	const src = "clickbank"
	var envelope struct {
		Notification string `json:"notification"`
		IV           string `json:"iv"`
	}
	if err := json.Unmarshal(req.Body, &envelope); err != nil || envelope.Notification == "" || envelope.IV == "" {
		return Notification{}, malformed(src, `body is not {"notification": …, "iv": …}`)
	}
	ciphertext, err1 := base64.StdEncoding.DecodeString(envelope.Notification)
	// The IV is the 16 decoded bytes as they are, even when they look like base64 themselves.
	iv, err2 := base64.StdEncoding.DecodeString(envelope.IV)
	if err1 != nil || err2 != nil {
		return Notification{}, malformed(src, "notification or iv is not base64")
	}
	if len(iv) != aes.BlockSize || len(ciphertext) == 0 || len(ciphertext)%aes.BlockSize != 0 {
		return Notification{}, malformed(src, "iv is not 16 bytes or notification is not whole AES blocks")
	}

	var doc object
	plain := make([]byte, len(ciphertext))
	for _, secret := range s.Secrets {
		if secret == "" {
			continue
		}
		block, err := aes.NewCipher(clickBankKey(secret))
		if err != nil {
			continue
		}
		cipher.NewCBCDecrypter(block, iv).CryptBlocks(plain, ciphertext)
		if d, err := decodeObject(unpadClickBank(plain)); err == nil {
			doc = d
			break
		}
	}
	// One error for bad padding and bad JSON alike, so the answer is no padding oracle.
	if doc == nil {
		return Notification{}, unauthorized(src, "no configured secret decrypts the notification")
	}
	if s.Vendor != "" && subtle.ConstantTimeCompare([]byte(strings.ToLower(doc.str("vendor"))), []byte(strings.ToLower(s.Vendor))) != 1 {
		return Notification{}, unauthorized(src, "notification is for another vendor")
	}
	if strings.TrimSpace(doc.str("receipt")) == "" || strings.TrimSpace(doc.str("transactionType")) == "" {
		return Notification{}, malformed(src, "notification has no receipt or transactionType")
	}
	return clickBankNotification(doc), nil
}

// unpadClickBank strips PKCS#7 padding when the last bytes are valid padding; otherwise (older
// mcrypt-era zero padding) it trims trailing NUL, control and space bytes.
func unpadClickBank(b []byte) []byte {
	if n := int(b[len(b)-1]); n >= 1 && n <= aes.BlockSize && n <= len(b) {
		if bytes.Count(b[len(b)-n:], []byte{byte(n)}) == n {
			return b[:len(b)-n]
		}
	}
	return bytes.TrimRight(b, "\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f\x20")
}

func clickBankNotification(doc object) Notification {
	receipt := strings.TrimSpace(doc.str("receipt"))
	txType := strings.TrimSpace(doc.str("transactionType"))
	kind, test := ticketKind(txType)
	if strings.Trim(receipt, "*") == "" {
		// The Test button sends a SALE with the receipt masked as ********.
		test = true
	}
	n := Notification{
		Source:         "clickbank",
		Kind:           kind,
		Test:           test,
		IdempotencyKey: receipt + "|" + txType,
		OrderID:        receipt,
		Occurred:       parseTime(doc.str("transactionTime")),
		Currency:       currencyCode(doc.str("currency")),
	}
	// totalOrderAmount is what the customer paid; totalAccountAmount is only the vendor's share.
	n.Value, _ = Decimal(doc.str("totalOrderAmount"))

	customer := doc.obj("customer")
	for _, side := range []string{"billing", "shipping"} {
		p := customer.obj(side)
		addEmail(&n.Customer, p.str("email"))
		addPhone(&n.Customer, p.str("phoneNumber"))
		first, last := p.str("firstName"), p.str("lastName")
		if first == "" && last == "" {
			first, last = capture.SplitName(p.str("fullName"))
		}
		a := p.obj("address")
		fillAddress(&n.Customer, first, last, a.str("address1"), a.str("city"), a.str("state"), a.str("postalCode"), a.str("country"))
	}

	for _, tc := range doc.arr("trackingCodes") {
		n.Join.addTracking(scalarText(tc))
	}
	n.Join.addObject(doc.obj("vendorVariables"))
	// v8 adds affiliate tracking parameters such as extclid; their exact place in the notification
	// is unconfirmed (spec §1.3), so a top-level one is read too.
	n.Join.add("extclid", doc.str("extclid"))

	for _, li := range doc.arr("lineItems") {
		it := object(asMap(li))
		if it == nil {
			continue
		}
		n.Products = append(n.Products, Product{
			ID:       it.str("itemNo"),
			Title:    it.str("productTitle"),
			Quantity: quantity(it.str("quantity")),
			Price:    price(it.str("productPrice")),
		})
	}
	return n
}

// ticketKind maps ClickBank's and JVZoo's transaction types (SALE, BILL, RFND, CGBK, INSF,
// CANCEL-REBILL, UNCANCEL-REBILL, TEST, TEST_SALE, CANCEL-TEST-REBILL, …) to a Kind and the test
// flag. The full list is unconfirmed (spec §1.5), so unknown types are Other.
func ticketKind(txType string) (Kind, bool) {
	t := strings.ToUpper(strings.TrimSpace(txType))
	test := strings.HasPrefix(t, "TEST") || strings.Contains(t, "-TEST-")
	if test {
		t = strings.TrimPrefix(strings.TrimPrefix(t, "TEST"), "_")
		t = strings.Replace(t, "-TEST-", "-", 1)
		if t == "" {
			return Test, true
		}
	}
	switch t {
	case "SALE", "SALE-RB":
		return Sale, test
	case "BILL":
		return Rebill, test
	case "RFND":
		return Refund, test
	case "CGBK":
		return Chargeback, test
	case "CANCEL-REBILL":
		return Cancel, test
	}
	return Other, test
}
