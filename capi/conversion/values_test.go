package conversion

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseValue(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"49.90", "49.90", true},
		{" 49.90\n", "49.90", true},
		{"+12", "12", true},
		{"007.50", "7.50", true},
		{".5", "0.5", true},
		{"5.", "5", true},
		{"0", "0", true},
		{"000", "0", true},
		{"0.000001", "0.000001", true},
		{"123456789012345.99", "123456789012345.99", true},
		{"", "", false},
		{".", "", false},
		{"-5", "", false},
		{"1,234.00", "", false},
		{"49,90", "", false},
		{"1e3", "", false},
		{"NaN", "", false},
		{"1.2.3", "", false},
		{"$10", "", false},
		{"1 000", "", false},
		{"١٢", "", false}, // Arabic-Indic digits
		{strings.Repeat("9", 25), "", false},
	}
	for _, tt := range tests {
		got, err := ParseValue(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseValue(%q) = %q, %v; want %q, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrValue) {
			t.Errorf("ParseValue(%q) error %v is not ErrValue", tt.in, err)
		}
	}
}

func TestParseCurrency(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"USD", "USD"}, {"eur", "EUR"}, {" Jpy ", "JPY"}, {"CHF", "CHF"},
		{"", ""}, {"US", ""}, {"USDD", ""}, {"ZZZ", ""}, {"XXX", ""}, {"U$D", ""}, {"€", ""}, {"usd\x00", ""},
	}
	for _, tt := range tests {
		got, err := ParseCurrency(tt.in)
		if got != tt.want || (err == nil) != (tt.want != "") {
			t.Errorf("ParseCurrency(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestCleanContentIDs(t *testing.T) {
	many := make([]string, MaxContentIDs+5)
	for i := range many {
		many[i] = "sku-" + strings.Repeat("x", i+1)
	}
	tests := []struct {
		name      string
		in        []string
		want      []string
		wantDrops []string
	}{
		{"comma-separated placeholder", []string{"a, b ,c"}, []string{"a", "b", "c"}, nil},
		{"repeats kept once, empties skipped", []string{"a", "", " , a ,b"}, []string{"a", "b"}, nil},
		{"too long dropped", []string{strings.Repeat("x", MaxContentIDLength+1), "ok"}, []string{"ok"}, []string{ErrContentID.Error()}},
		{"control characters dropped", []string{"a\tb", "a\x00", "ok"}, []string{"ok"}, []string{ErrContentID.Error()}},
		{"invalid UTF-8 dropped", []string{"\xff\xfe"}, nil, []string{ErrContentID.Error()}},
		{"unicode kept", []string{"tee-ß-ü"}, []string{"tee-ß-ü"}, nil},
		{"capped", many, many[:MaxContentIDs], []string{ErrContentIDs.Error()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, drops := CleanContentIDs(tt.in)
			var reasons []string
			for _, d := range drops {
				reasons = append(reasons, d.Reason)
				if d.Field != "content_ids" {
					t.Errorf("drop field %q", d.Field)
				}
			}
			if !reflect.DeepEqual(got, tt.want) || !reflect.DeepEqual(reasons, tt.wantDrops) {
				t.Errorf("CleanContentIDs = %q, %q; want %q, %q", got, reasons, tt.want, tt.wantDrops)
			}
		})
	}
}

func TestParseLocale(t *testing.T) {
	tests := []struct{ in, want string }{
		{"en-US,en;q=0.9", "en-US"},
		{"de;q=0.5, fr-CH", "fr-CH"},
		{"zh-Hant-TW", "zh-Hant-TW"},
		{"en_GB", "en-GB"},
		{"*", ""},
		{"", ""},
		{"not a language!!", ""},
		{strings.Repeat("en-US,", 100), ""},
	}
	for _, tt := range tests {
		if got := ParseLocale(tt.in); got != tt.want {
			t.Errorf("ParseLocale(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestPageURL(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"https://shop.example/p?id=1", "https://shop.example/p?id=1", true},
		{"https://shop.example/thanks?o=1&email=jane%40example.com&x=2#frag", "https://shop.example/thanks?o=1&x=2", true},
		{"https://shop.example/t?e=jane@example.com", "https://shop.example/t", true},
		{"https://user:pass@shop.example/", "https://shop.example/", true},
		{"http://127.0.0.1:8080/a?b=c", "http://127.0.0.1:8080/a?b=c", true},
		{"https://shop.example/?" + strings.Repeat("a", maxURLLength), "https://shop.example/", true},
		{"", "", true},
		{"/relative", "", false},
		{"javascript:alert(1)", "", false},
		{"ftp://shop.example/", "", false},
		{"https://shop.example/" + strings.Repeat("a", maxURLLength), "", false},
		{"https://shop.example/\xff", "", false},
	}
	for _, tt := range tests {
		got, err := PageURL(tt.in)
		if got != tt.want || (err == nil) != tt.ok {
			t.Errorf("PageURL(%q) = %q, %v; want %q, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}
