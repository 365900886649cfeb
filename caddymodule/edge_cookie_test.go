package caddymodule

import (
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/caddy-capi/caddy-capi/capi/conversion"
)

func knownLeadPurchase(name string) bool { return name == "Lead" || name == "Purchase" }

func TestCarriedCookieRoundTrip(t *testing.T) {
	in := []carriedConversion{
		{Name: "Purchase", EventID: conversion.EventID(conversion.IDKey{1}, "Purchase", "A|B!C 1"), Value: "49.90", Currency: "USD", OrderID: "A|B!C 1"},
		{Name: "Lead", EventID: "0123456789abcdef"},
	}
	enc := encodeCarried(in)
	if strings.ContainsAny(enc, " ,;\"\\") {
		t.Fatalf("%q needs quoting in a cookie", enc)
	}
	got := parseCarried(enc, knownLeadPurchase)
	if !reflect.DeepEqual(got, in) {
		t.Fatalf("round trip = %+v, want %+v", got, in)
	}
	line := carriedCookieLine(in, "example.com", true)
	c, err := http.ParseSetCookie(line)
	if err != nil || c.Value != enc || c.MaxAge != 300 || !c.HttpOnly || !c.Secure || c.Domain != "example.com" {
		t.Fatalf("Set-Cookie %q parses to %+v, %v", line, c, err)
	}
}

func TestParseCarriedSkipsWhatItCannotTrust(t *testing.T) {
	const id = "0123456789abcdef"
	tests := []struct {
		name, value string
		want        int
	}{
		{"empty", "", 0},
		{"unknown event", "Hack|" + id + "|||", 0},
		{"invalid event ID", "Lead|short|||", 0},
		{"event ID with markup", "Lead|%3Cscript%3E0123456789|||", 0},
		{"negative value", "Lead|" + id + "|-5||", 0},
		{"unknown currency", "Lead|" + id + "|5|XYZ|", 0},
		{"control character in order", "Lead|" + id + "|||a%00b", 0},
		{"bad escape", "Lead|" + id + "|||%zz", 0},
		{"too few fields", "Lead|" + id, 0},
		{"one good beside bad ones", "x!Lead|" + id + "|5|eur|o1!|||", 1},
		{"at most four", strings.Repeat("Lead|"+id+"|||!", 6), maxCarried},
		{"oversized cookie", strings.Repeat("Lead|"+id+"|||"+strings.Repeat("a", 600)+"!", 4), 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := parseCarried(tc.value, knownLeadPurchase); len(got) != tc.want {
				t.Fatalf("parsed %d entries %+v, want %d", len(got), got, tc.want)
			}
		})
	}
	if got := parseCarried("Lead|"+id+"|5|eur|o1", knownLeadPurchase); got[0].Currency != "EUR" || got[0].Value != "5" {
		t.Errorf("currency and value not canonical: %+v", got[0])
	}
}

// FuzzParseCarried: whatever a browser sends back, parsing never panics, every entry it returns is
// valid, and writing them into a cookie again reads back the same.
func FuzzParseCarried(f *testing.F) {
	f.Add("Purchase|0123456789abcdef0123456789abcdef|49.90|USD|1001")
	f.Add("Lead|0123456789abcdef|||!Purchase|abcdefgh12345678|1|eur|%E2%82%AC")
	f.Add("Lead|0123456789abcdef|%2B007.50|usd|x%7Cy")
	f.Add("!!!||||%")
	f.Fuzz(func(t *testing.T, value string) {
		got := parseCarried(value, knownLeadPurchase)
		if len(got) > maxCarried {
			t.Fatalf("%d entries", len(got))
		}
		for _, c := range got {
			if !knownLeadPurchase(c.Name) || !conversion.ValidEventID(c.EventID) || len(c.OrderID) > maxCarriedOrderID {
				t.Fatalf("invalid entry %+v", c)
			}
			if c.Value != "" {
				if v, err := conversion.ParseValue(c.Value); err != nil || v != c.Value {
					t.Fatalf("value %q not canonical", c.Value)
				}
			}
		}
		again := parseCarried(encodeCarried(got), knownLeadPurchase)
		if len(again) != len(got) {
			t.Fatalf("re-encoding lost entries: %+v → %+v", got, again)
		}
		for i := range got {
			if !reflect.DeepEqual(again[i], got[i]) {
				t.Fatalf("re-encoding changed %+v to %+v", got[i], again[i])
			}
		}
		line := carriedCookieLine(got, "", false)
		if c, err := http.ParseSetCookie(line); err != nil || c.Value != encodeCarried(got) {
			t.Fatalf("cookie line %q: %+v %v", line, c, err)
		}
	})
}
