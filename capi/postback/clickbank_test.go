package postback

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
)

const cbSecret = "ABCDEF0123456789"

var cbIV = []byte("fedcba9876543210")

func TestClickBankPadding(t *testing.T) {
	plain := []byte(`{"receipt":"AAAA1111","transactionType":"SALE","totalOrderAmount":10,"currency":"USD"}`)
	for _, zero := range []bool{false, true} {
		body := clickBankEnvelope(t, cbSecret, cbIV, plain, zero)
		n, err := ClickBank{Secrets: []string{cbSecret}}.Parse(Request{Method: http.MethodPost, Body: body})
		if err != nil {
			t.Fatalf("zero padding %v: %v", zero, err)
		}
		if n.IdempotencyKey != "AAAA1111|SALE" || n.Value != "10.00" || n.Kind != Sale || n.Test {
			t.Errorf("zero padding %v: %+v", zero, n)
		}
	}
}

func TestClickBankRejects(t *testing.T) {
	plain := []byte(`{"receipt":"AAAA1111","transactionType":"SALE","vendor":"acme","customer":{"billing":{"email":"private@example.com"}}}`)
	good := clickBankEnvelope(t, cbSecret, cbIV, plain, false)
	var env map[string]string
	json.Unmarshal(good, &env)
	ct, _ := base64.StdEncoding.DecodeString(env["notification"])
	with := func(notification []byte, iv string) []byte {
		b, _ := json.Marshal(map[string]string{"notification": base64.StdEncoding.EncodeToString(notification), "iv": iv})
		return b
	}
	flipped := append([]byte(nil), ct...)
	flipped[3] ^= 0x40

	tests := []struct {
		name    string
		source  ClickBank
		body    []byte
		want    error
		wantMsg string
	}{
		{"wrong secret", ClickBank{Secrets: []string{"ZZZZZZZZZZZZZZZZ"}}, good, ErrUnauthorized, "no configured secret"},
		{"no secret configured", ClickBank{}, good, ErrUnauthorized, ""},
		{"empty secret configured", ClickBank{Secrets: []string{""}}, good, ErrUnauthorized, ""},
		{"garbled ciphertext", ClickBank{Secrets: []string{cbSecret}}, with(flipped, env["iv"]), ErrUnauthorized, ""},
		{"truncated by a block", ClickBank{Secrets: []string{cbSecret}}, with(ct[:len(ct)-16], env["iv"]), ErrUnauthorized, ""},
		{"truncated mid-block", ClickBank{Secrets: []string{cbSecret}}, with(ct[:len(ct)-5], env["iv"]), ErrMalformed, "whole AES blocks"},
		{"other vendor", ClickBank{Secrets: []string{cbSecret}, Vendor: "someoneelse"}, good, ErrUnauthorized, "another vendor"},
		{"iv not 16 bytes", ClickBank{Secrets: []string{cbSecret}}, with(ct, "QUJD"), ErrMalformed, ""},
		{"not base64", ClickBank{Secrets: []string{cbSecret}}, []byte(`{"notification":"!!!","iv":"QUJDREVGR0hJSktMTU5PUA=="}`), ErrMalformed, "base64"},
		{"not JSON", ClickBank{Secrets: []string{cbSecret}}, []byte(`ccustname=x&cverify=ABC`), ErrMalformed, ""},
		{"truncated JSON", ClickBank{Secrets: []string{cbSecret}}, good[:len(good)/2], ErrMalformed, ""},
		{"empty body", ClickBank{Secrets: []string{cbSecret}}, nil, ErrMalformed, ""},
		{"no receipt", ClickBank{Secrets: []string{cbSecret}}, clickBankEnvelope(t, cbSecret, cbIV, []byte(`{"transactionType":"SALE"}`), false), ErrMalformed, "no receipt"},
		{"plaintext not an object", ClickBank{Secrets: []string{cbSecret}}, clickBankEnvelope(t, cbSecret, cbIV, []byte(`["SALE"]`), false), ErrUnauthorized, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := tt.source.Parse(Request{Method: http.MethodPost, Body: tt.body})
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if n.IdempotencyKey != "" {
				t.Errorf("a refused notification was read: %+v", n)
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.wantMsg) || strings.Contains(msg, cbSecret) || strings.Contains(msg, "private@") {
				t.Errorf("message %q: want it to say %q and to hold no secret or personal data", msg, tt.wantMsg)
			}
		})
	}
}

func TestClickBankRotatedSecret(t *testing.T) {
	body := clickBankEnvelope(t, "OLDSECRET0000000", cbIV, []byte(`{"receipt":"R1","transactionType":"BILL"}`), false)
	n, err := ClickBank{Secrets: []string{"NEWSECRET0000000", "OLDSECRET0000000"}}.Parse(Request{Body: body})
	if err != nil {
		t.Fatal(err)
	}
	if n.Kind != Rebill {
		t.Errorf("kind %v, want rebill", n.Kind)
	}
}

func TestTransactionKinds(t *testing.T) {
	tests := []struct {
		txType string
		kind   Kind
		test   bool
	}{
		{"SALE", Sale, false},
		{"SALE-RB", Sale, false},
		{"BILL", Rebill, false},
		{"RFND", Refund, false},
		{"CGBK", Chargeback, false},
		{"CANCEL-REBILL", Cancel, false},
		{"UNCANCEL-REBILL", Other, false},
		{"INSF", Other, false},
		{"ABANDONED_ORDER", Other, false},
		{"SUBSCRIPTION-CHG", Other, false},
		{"TEST", Test, true},
		{"TEST_SALE", Sale, true},
		{"TEST_BILL", Rebill, true},
		{"TEST_RFND", Refund, true},
		{"CANCEL-TEST-REBILL", Cancel, true},
		{"UNCANCEL-TEST-REBILL", Other, true},
		{"sale", Sale, false},
		{"SOMETHING-NEW", Other, false},
	}
	for _, tt := range tests {
		kind, test := ticketKind(tt.txType)
		if kind != tt.kind || test != tt.test {
			t.Errorf("%s: got %v test=%v, want %v test=%v", tt.txType, kind, test, tt.kind, tt.test)
		}
	}
}

func TestKindIsConversion(t *testing.T) {
	conv := map[Kind]bool{Sale: true, Rebill: true, Test: true, Refund: false, Chargeback: false, Cancel: false, Other: false}
	for k, want := range conv {
		if k.IsConversion() != want {
			t.Errorf("%v.IsConversion() = %v", k, !want)
		}
		b, _ := k.MarshalText()
		var back Kind
		if err := back.UnmarshalText(b); err != nil || back != k {
			t.Errorf("%v does not round-trip through text: %v", k, err)
		}
	}
}
