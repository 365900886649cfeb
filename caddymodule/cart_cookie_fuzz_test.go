package caddymodule

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddy-capi/caddy-capi/capi/capture"
	"github.com/caddy-capi/caddy-capi/capi/conversion"
	"github.com/caddy-capi/caddy-capi/capi/store"
)

// FuzzShopifyCartCookie is shopifyCartToken on the Shopify `cart` cookie as the edge reads it
// (r.Cookie, then the token): whatever the Cookie header holds, the token has no "?key=" tail and
// no surrounding space, is never longer than the cookie, and folding it into a visitor record the
// way applyVisit does never leaves a record the store refuses, so a hostile cookie cannot cost the
// visit its click IDs. And a cart token in any of the cookie's shapes (bare, with a raw "?key=…",
// or percent-encoded whole as encodeURIComponent writes it) comes out exactly as the order webhook's
// cart_token carries it, which is what joins the order to the visitor.
func FuzzShopifyCartCookie(f *testing.F) {
	for _, tc := range []struct{ header, token, key string }{
		{"cart=c1-7a2b9f0e4d3c2b1a0f9e8d7c6b5a4f3e", "c1-7a2b9f0e4d3c2b1a0f9e8d7c6b5a4f3e", ""},
		{"cart=Z2NwLXVzLWVhc3QxOjAxSjE2WFg4QTlCM0M%3Fkey%3D4f1d2a9b0c8e7f6a", "Z2NwLXVzLWVhc3QxOjAxSjE2WFg4QTlCM0M", "4f1d2a9b0c8e7f6a"},
		{"_shopify_y=abc; cart=abc%3Fkey%3Ddef; cart_ts=1700000000", "abc", "d?e=f%"},
		{`cart="quoted%20token%3Fkey%3Dx"`, "Zm9v+YmFy/YmF6==", "k+ey/="},
		{"cart=%ZZbad%3Fkey", "t", "%zz"},
		{"cart=%FF%FE%3Fkey%3D1", "t", "\xff"},
		{"cart=%0d%0aSet-Cookie:%20x", "t", "\r\n"},
		{"cart=%20%20%3F", "t", " "},
		{"cart=" + strings.Repeat("a", 300), strings.Repeat("b", 300), ""},
		{"cart=", "", ""},
		{"cart", "-", "?"},
	} {
		f.Add(tc.header, tc.token, tc.key)
	}
	f.Fuzz(func(t *testing.T, header, token, key string) {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header["Cookie"] = []string{header}
		if c, err := r.Cookie("cart"); err == nil {
			checkCartToken(t, c.Value)
		}
		checkCartToken(t, header) // any caller passing any string gets the same guarantees

		// A token made of what Shopify's tokens are made of (hex, or base64 of "region:ULID").
		raw := keepBytes(token, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
		b64 := keepBytes(token, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_+/=")
		if raw != "" {
			for _, v := range []string{raw, raw + "?key=" + key} {
				if got := shopifyCartToken(v); got != raw {
					t.Fatalf("shopifyCartToken(%q) = %q, want %q", v, got, raw)
				}
			}
		}
		if b64 != "" {
			// Unencoded too: a raw '+' of a base64 token is a '+', not a space.
			if got := shopifyCartToken(b64); got != b64 {
				t.Fatalf("shopifyCartToken(%q) = %q, want it unchanged", b64, got)
			}
			encoded := encodeURIComponent(b64 + "?key=" + key)
			if got := shopifyCartToken(encoded); got != b64 {
				t.Fatalf("shopifyCartToken(%q) = %q, want %q", encoded, got, b64)
			}
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.Header.Set("Cookie", "cart="+encoded)
			c, err := r.Cookie("cart")
			if err != nil {
				t.Fatalf("cookie cart=%s not read: %v", encoded, err)
			}
			if got := shopifyCartToken(c.Value); got != b64 {
				t.Fatalf("cookie cart=%s gives token %q, want %q", encoded, got, b64)
			}
		}
	})
}

// checkCartToken checks what the edge does with one cookie value.
func checkCartToken(t *testing.T, value string) {
	t.Helper()
	tok := shopifyCartToken(value)
	if strings.Contains(tok, "?") {
		t.Fatalf("shopifyCartToken(%q) = %q keeps the key part", value, tok)
	}
	if strings.TrimSpace(tok) != tok {
		t.Fatalf("shopifyCartToken(%q) = %q has surrounding space", value, tok)
	}
	if len(tok) > len(value) {
		t.Fatalf("shopifyCartToken(%q) = %q is longer than the cookie", value, tok)
	}
	v := store.Visitor{ID: "0123456789abcdef0123456789abcdef"}
	conversion.ApplyCapture(&v, capture.Submission{CartToken: tok}, conversion.Options{})
	if err := store.CheckVisitor(&v); err != nil {
		t.Fatalf("cookie %q makes a record the store refuses: %v", value, err)
	}
	if len(v.CartTokens) > 1 || len(v.CartTokens) == 1 && v.CartTokens[0] != tok {
		t.Fatalf("cookie %q with token %q recorded as %q", value, tok, v.CartTokens)
	}
}

// keepBytes returns the bytes of s that are in set.
func keepBytes(s, set string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(set, s[i]) >= 0 {
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

// encodeURIComponent escapes s as JavaScript's encodeURIComponent does (its bytes as UTF-8 would
// be, which for valid UTF-8 is the same): everything but A-Z a-z 0-9 - _ . ! ~ * ' ( ).
func encodeURIComponent(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || strings.IndexByte("-_.!~*'()", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}
