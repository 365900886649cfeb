package postback

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestDecimal(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"19.99", "19.99", true},
		{"19.9", "19.90", true},
		{"1", "1.00", true},
		{"1.00", "1.00", true},
		{"0019.990", "19.99", true},
		{"0.125", "0.125", true},
		{".5", "0.50", true},
		{"5.", "5.00", true},
		{"-3.5", "-3.50", true},
		{"-0.00", "0.00", true},
		{"+2", "2.00", true},
		{" 29.350 ", "29.35", true},
		{"1e2", "100.00", true},
		{"1.5E-3", "0.0015", true},
		{"12345678901234567890.01", "12345678901234567890.01", true},
		{"", "", false},
		{".", "", false},
		{"1,00", "", false},
		{"1.2.3", "", false},
		{"1e400", "", false},
		{"NaN", "", false},
		{"Infinity", "", false},
		{"0x10", "", false},
		{"1/3", "", false},
		{"--1", "", false},
		{"1e", "", false},
	}
	for _, tt := range tests {
		got, ok := Decimal(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("Decimal(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestMinorUnits(t *testing.T) {
	tests := []struct{ amount, currency, want string }{
		{"1999", "USD", "19.99"},
		{"5", "EUR", "0.05"},
		{"500", "JPY", "500.00"},
		{"12345", "KWD", "12.345"},
		{"100000", "ISK", "1000.00"},
		{"-250", "USD", "-2.50"},
		{"", "USD", ""},
		{"12.5", "USD", ""},
	}
	for _, tt := range tests {
		if got := minorUnits(tt.amount, tt.currency); got != tt.want {
			t.Errorf("minorUnits(%q, %s) = %q, want %q", tt.amount, tt.currency, got, tt.want)
		}
	}
}

func TestParseTime(t *testing.T) {
	want := time.Date(2023, 7, 28, 2, 7, 57, 0, time.UTC)
	for _, in := range []string{"2023-07-28T02:07:57+00:00", "2023-07-28T04:07:57+02:00", "2023-07-28T02:07:57Z", "20230728T020757+0000", "20230728T020757Z", "2023-07-28T02:07:57", "2023-07-28 02:07:57"} {
		if got := parseTime(in); !got.Equal(want) {
			t.Errorf("parseTime(%q) = %v", in, got)
		}
	}
	for _, in := range []string{"", "yesterday", "2023-13-45T00:00:00Z"} {
		if got := parseTime(in); !got.IsZero() {
			t.Errorf("parseTime(%q) = %v, want zero", in, got)
		}
	}
}

func TestJoinAdd(t *testing.T) {
	var j Join
	j.add("fbclid", "IwAR_ok-1.2~3")
	j.add("FBCLID", "second-is-ignored")
	j.add("gclid", "has space")
	j.add("ttclid", "<script>")
	j.add("gbraid", strings.Repeat("a", 501))
	j.add("wbraid", "W1")
	j.add("_fbc", "fb.1.1700000000000.IwAR")
	j.add("fbp", "fb.1.1700000000000.42")
	j.add("capi_vid", "ABCDEF")
	j.add("clickid", "abcdef")
	j.add("tid", "x y")
	j.add("utm_source", "facebook")
	want := Join{
		TrackingIDs: []string{"abcdef"},
		FBCLID:      "IwAR_ok-1.2~3",
		WBRAID:      "W1",
		FBC:         "fb.1.1700000000000.IwAR",
		FBP:         "fb.1.1700000000000.42",
	}
	if !reflect.DeepEqual(j, want) {
		t.Errorf("got  %+v\nwant %+v", j, want)
	}
}

func TestJoinAddQuery(t *testing.T) {
	var j Join
	j.addQuery("/products/x?utm_source=fb&fbclid=F1&gclid=G1&capi_vid=VID#frag")
	j.addQuery("gclid=G2&ttclid=T1") // a bare query string; a second gclid does not replace the first
	want := Join{TrackingIDs: []string{"vid"}, FBCLID: "F1", GCLID: "G1", TTCLID: "T1"}
	if !reflect.DeepEqual(j, want) {
		t.Errorf("got  %+v\nwant %+v", j, want)
	}
}
