package capture

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/url"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestExtractURLEncoded(t *testing.T) {
	tests := []struct {
		name string
		body string
		want Customer
	}{
		{
			name: "plain names",
			body: "email=jane%40example.com&phone=%2B1+555+010+9999&first_name=Jane&last_name=Doe&city=Boise&state=ID&zip=83702&country=US&gender=f&dob=1990-02-01&street=1+Main+St",
			want: Customer{Emails: []string{"jane@example.com"}, Phones: []string{"+1 555 010 9999"}, FirstName: "Jane", LastName: "Doe", City: "Boise", State: "ID", Zip: "83702", Country: "US", Gender: "f", DateOfBirth: "1990-02-01", Street: "1 Main St"},
		},
		{
			name: "Shopify checkout brackets",
			body: "checkout%5Bemail%5D=jane%40example.com&checkout%5Bbilling_address%5D%5Bfirst_name%5D=Jane&checkout%5Bbilling_address%5D%5Blast_name%5D=Doe&checkout%5Bbilling_address%5D%5Baddress1%5D=1+Main+St&checkout%5Bbilling_address%5D%5Bzip%5D=83702&checkout%5Bbilling_address%5D%5Bprovince%5D=ID&checkout%5Bbilling_address%5D%5Bcountry%5D=United+States",
			want: Customer{Emails: []string{"jane@example.com"}, FirstName: "Jane", LastName: "Doe", Street: "1 Main St", Zip: "83702", State: "ID", Country: "United States"},
		},
		{
			name: "WooCommerce checkout prefixes",
			body: "billing_first_name=Jane&billing_last_name=Doe&billing_email=jane%40example.com&billing_phone=208-555-0100&billing_postcode=83702&billing_address_1=1+Main+St&billing_city=Boise&billing_state=ID&billing_country=US&shipping_city=Nampa",
			want: Customer{Emails: []string{"jane@example.com"}, Phones: []string{"208-555-0100"}, FirstName: "Jane", LastName: "Doe", Zip: "83702", Street: "1 Main St", City: "Boise", State: "ID", Country: "US"},
		},
		{
			name: "billing beats shipping regardless of order",
			body: "shipping_address%5Bcity%5D=Nampa&shipping_address%5Bzip%5D=83651&billing_address%5Bcity%5D=Boise",
			want: Customer{City: "Boise", Zip: "83651"},
		},
		{
			name: "alternative spellings",
			body: "email_address=a%40b.co&tel=5550100999&fname=Jane&family_name=Doe&postal_code=K1A0B1&region=ON&country_code=CA&sex=female&birthday=19900201&town=Ottawa",
			want: Customer{Emails: []string{"a@b.co"}, Phones: []string{"5550100999"}, FirstName: "Jane", LastName: "Doe", Zip: "K1A0B1", State: "ON", Country: "CA", Gender: "female", DateOfBirth: "19900201", City: "Ottawa"},
		},
		{
			name: "given_name, zip_code, phone_number, date_of_birth",
			body: "given_name=Jane&surname=Doe&zip_code=83702&phone_number=5550100999&date_of_birth=01%2F02%2F1990",
			want: Customer{Phones: []string{"5550100999"}, FirstName: "Jane", LastName: "Doe", Zip: "83702", DateOfBirth: "01/02/1990"},
		},
		{
			name: "full name split when no first and last",
			body: "name=Jane+van+Dijk&email=j%40x.nl",
			want: Customer{Emails: []string{"j@x.nl"}, FirstName: "Jane", LastName: "van Dijk"},
		},
		{
			name: "first and last win over full name",
			body: "your-name=Someone+Else&first-name=Jane&last-name=Doe",
			want: Customer{FirstName: "Jane", LastName: "Doe"},
		},
		{
			name: "product name is not the customer's",
			body: "items%5B0%5D%5Bname%5D=Blue+Shirt&product%5Bname%5D=Hat",
			want: Customer{},
		},
		{
			name: "several distinct emails kept, duplicates dropped",
			body: "email=a%40b.co&contact%5Bemail%5D=A%40B.co&billing%5Bemail%5D=c%40d.co",
			want: Customer{Emails: []string{"a@b.co", "c@d.co"}},
		},
		{
			name: "implausible values ignored",
			body: "email=not-an-email&phone=12&state=8f3a9c1e&city=12345&zip=" + strings.Repeat("9", 40),
			want: Customer{State: "8f3a9c1e"},
		},
		{
			name: "values trimmed, empty ignored",
			body: "email=+jane%40example.com+&first_name=&last_name=++",
			want: Customer{Emails: []string{"jane@example.com"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Extract("application/x-www-form-urlencoded; charset=UTF-8", []byte(tt.body), nil)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got.Customer, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got.Customer, tt.want)
			}
		})
	}
}

func TestExtractJSON(t *testing.T) {
	tests := []struct {
		name string
		body string
		want Customer
		cart string
	}{
		{
			name: "nested objects and camelCase",
			body: `{"customer":{"email":"jane@example.com","firstName":"Jane","lastName":"Doe","phoneNumber":"+1 555 0100 999"},
				"billing":{"first_name":"Janet","address":{"line1":"1 Main St","city":"Boise","state":"ID","postalCode":"83702","country":"US"}},
				"shipping":{"address":{"city":"Nampa"}},"items":[{"name":"Shirt","price":10}],"cart_token":"c1f2"}`,
			want: Customer{Emails: []string{"jane@example.com"}, Phones: []string{"+1 555 0100 999"}, FirstName: "Jane", LastName: "Doe", Street: "1 Main St", City: "Boise", State: "ID", Zip: "83702", Country: "US"},
			cart: "c1f2",
		},
		{
			name: "numbers as zip and phone, arrays of emails",
			body: `{"zip":83702,"phone":2085550100,"emails":["a@b.co","c@d.co"]}`,
			want: Customer{Emails: []string{"a@b.co", "c@d.co"}, Phones: []string{"2085550100"}, Zip: "83702"},
		},
		{
			name: "form builder name/value pairs",
			body: `{"fields":[{"name":"email","value":"jane@example.com"},{"name":"gender","value":"f"},{"name":"notes","value":"x"}]}`,
			want: Customer{Emails: []string{"jane@example.com"}, Gender: "f"},
		},
		{
			name: "escaped strings decoded",
			body: `{"email":"jane\u0040example.com","city":"M\u00fcnchen"}`,
			want: Customer{Emails: []string{"jane@example.com"}, City: "München"},
		},
		{
			name: "cart token under cart",
			body: `{"cart":{"token":"Z2NwLXVz"}}`,
			cart: "Z2NwLXVz",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Extract("application/json", []byte(tt.body), nil)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got.Customer, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got.Customer, tt.want)
			}
			if got.CartToken != tt.cart {
				t.Errorf("cart token %q, want %q", got.CartToken, tt.cart)
			}
		})
	}
}

func TestExtractMultipartSkipsFiles(t *testing.T) {
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	w.WriteField("email", "jane@example.com")
	fw, _ := w.CreateFormFile("email", "resume.txt") // a file part whose field name would match
	fw.Write([]byte("evil@example.com"))
	w.WriteField("billing_address[zip]", "83702")
	big, _ := w.CreateFormField("first_name")
	big.Write(bytes.Repeat([]byte("a"), maxPartValue+10))
	w.WriteField("last_name", "Doe")
	w.Close()

	got, err := Extract(w.FormDataContentType(), buf.Bytes(), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := Customer{Emails: []string{"jane@example.com"}, Zip: "83702", LastName: "Doe"}
	if !reflect.DeepEqual(got.Customer, want) {
		t.Errorf("got  %+v\nwant %+v", got.Customer, want)
	}
}

func TestExtractExtraNames(t *testing.T) {
	fields := Fields{Email: {"contact[mail_addr]"}, Zip: {"plz"}, City: {"Ort"}}
	if err := fields.Validate(); err != nil {
		t.Fatal(err)
	}
	got, err := Extract("application/x-www-form-urlencoded", []byte("contact%5Bmail_addr%5D=j%40x.de&plz=10115&kunde%5Bort%5D=Berlin"), fields)
	if err != nil {
		t.Fatal(err)
	}
	want := Customer{Emails: []string{"j@x.de"}, Zip: "10115", City: "Berlin"}
	if !reflect.DeepEqual(got.Customer, want) {
		t.Errorf("got  %+v\nwant %+v", got.Customer, want)
	}
	if err := (Fields{"mail": {"x"}}).Validate(); err == nil {
		t.Error("unknown field accepted")
	}
}

func TestExtractErrors(t *testing.T) {
	tests := []struct {
		name, contentType, body string
		want                    error
	}{
		{"unsupported type", "text/plain", "email=a@b.co", ErrUnsupported},
		{"no content type", "", "email=a@b.co", ErrUnsupported},
		{"bad JSON", "application/json", `{"email":`, ErrMalformed},
		{"multipart without boundary", "multipart/form-data", "--x\r\n", ErrMalformed},
		{"garbled multipart", "multipart/form-data; boundary=x", "--x\r\nContent-Disposition: form-data; name=\"email\"\r\n\r\na@b.co", ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Extract(tt.contentType, []byte(tt.body), nil)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if strings.Contains(err.Error(), "a@b.co") {
				t.Errorf("error %q echoes body content", err)
			}
		})
	}
}

// A body nested far deeper than any form, at the size a capture path accepts, is refused after
// maxJSONDepth levels, cheaply: each level used to copy the key path and, under "name" or "value",
// read the rest of the body again (1.7 GB of heap for 64 KB of {"a":{"a":…}}, 13 s of CPU for
// {"name":{"name":…}}). The fields posted before the nesting are kept.
func TestExtractRefusesHostileNestingCheaply(t *testing.T) {
	for _, key := range []string{"a", "name", "value"} {
		t.Run(key, func(t *testing.T) {
			open := `{"` + key + `":`
			levels := (64 << 10) / (len(open) + 1)
			body := `{"email":"jane@example.com","x":` + strings.Repeat(open, levels) + "1" + strings.Repeat("}", levels+1)
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			start := time.Now()
			got, err := Extract("application/json", []byte(body), nil)
			elapsed := time.Since(start)
			runtime.ReadMemStats(&after)
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "nested deeper") {
				t.Fatalf("err = %v, want a malformed body nested too deep", err)
			}
			if len(got.Customer.Emails) != 1 {
				t.Errorf("emails %v: the field before the nesting is lost", got.Customer.Emails)
			}
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 4<<20 {
				t.Errorf("allocated %d bytes for a %d-byte body", alloc, len(body))
			}
			if elapsed > time.Second {
				t.Errorf("took %v", elapsed)
			}
		})
	}
	// Arrays nest too, without adding to the key path.
	if _, err := Extract("application/json", []byte(strings.Repeat("[", 20000)+strings.Repeat("]", 20000)), nil); !errors.Is(err, ErrMalformed) {
		t.Fatalf("20,000 nested arrays: err = %v, want ErrMalformed", err)
	}
	// A real checkout's nesting is well inside the bound.
	got, err := Extract("application/json", []byte(`{"order":{"customer":{"billing":{"address":{"zip":"83702","fields":[{"name":"email","value":"a@b.co"}]}}}}}`), nil)
	if err != nil || got.Customer.Zip != "83702" || len(got.Customer.Emails) != 1 {
		t.Fatalf("nested checkout: %+v, %v", got.Customer, err)
	}
}

func TestExtractKeepsGoodPairsPastABadOne(t *testing.T) {
	got, err := Extract("application/x-www-form-urlencoded", []byte("note=100%&email=a%40b.co"), nil)
	if !errors.Is(err, ErrMalformed) {
		t.Fatalf("err = %v, want ErrMalformed", err)
	}
	if len(got.Customer.Emails) != 1 || got.Customer.Emails[0] != "a@b.co" {
		t.Errorf("emails %v, want [a@b.co]", got.Customer.Emails)
	}
}

func TestExtractDoesNotModifyBody(t *testing.T) {
	body := []byte(`{"email":"jane@example.com","name":"Jane Doe"}`)
	orig := bytes.Clone(body)
	if _, err := Extract("application/json", body, nil); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(body, orig) {
		t.Error("Extract modified the body")
	}
}

func TestSegments(t *testing.T) {
	tests := map[string][]string{
		"checkout[billing_address][zip]": {"checkout", "billing_address", "zip"},
		"customer.firstName":             {"customer", "first_name"},
		"E-Mail":                         {"e_mail"},
		"items[0][name]":                 {"items", "name"},
		"emails[]":                       {"emails"},
		"PostalCode":                     {"postal_code"},
		"address1":                       {"address1"},
		"[]":                             nil,
	}
	for in, want := range tests {
		if got := segments(in); !reflect.DeepEqual(got, want) {
			t.Errorf("segments(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzExtract: never panics, and every value found is a substring of a decoded input value.
func FuzzExtract(f *testing.F) {
	var mp bytes.Buffer
	w := multipart.NewWriter(&mp)
	w.SetBoundary("B0UNDARY")
	w.WriteField("email", "jane@example.com")
	w.WriteField("name", "Jane Doe")
	w.Close()
	f.Add(0, []byte("email=jane%40example.com&checkout%5Bbilling_address%5D%5Bzip%5D=83702&name=Jane+Doe"))
	f.Add(1, []byte(`{"customer":{"email":"a@b.co","firstName":"A"},"billing":{"address":{"zip":12345}}}`))
	f.Add(1, []byte(`{"fields":[{"name":"phone","value":"5550100999"}]}`))
	f.Add(2, mp.Bytes())
	types := []string{"application/x-www-form-urlencoded", "application/json", "multipart/form-data; boundary=B0UNDARY"}
	f.Fuzz(func(t *testing.T, kind int, body []byte) {
		if kind < 0 {
			kind = -kind
		}
		ct := types[kind%len(types)]
		got, _ := Extract(ct, body, Fields{Zip: {"plz"}})
		values := decodedValues(ct, body)
		c := got.Customer
		for _, v := range append(append(append([]string{}, c.Emails...), c.Phones...), c.FirstName, c.LastName, c.DateOfBirth, c.Gender, c.Street, c.City, c.State, c.Zip, c.Country, got.CartToken) {
			if v == "" {
				continue
			}
			if !anyContains(values, v) {
				t.Fatalf("%q is not in any decoded value of the input", v)
			}
		}
	})
}

func anyContains(values []string, v string) bool {
	for _, s := range values {
		if strings.Contains(s, v) {
			return true
		}
	}
	return false
}

// decodedValues decodes the body independently of the code under test, keeping every value.
func decodedValues(ct string, body []byte) []string {
	var out []string
	mt, params, _ := mime.ParseMediaType(ct)
	switch mt {
	case "application/x-www-form-urlencoded":
		for _, pair := range strings.Split(string(body), "&") {
			_, v, _ := strings.Cut(pair, "=")
			if s, err := url.QueryUnescape(v); err == nil {
				out = append(out, s)
			}
		}
	case "application/json":
		// Token by token, so that values before a syntax error count, as they do in Extract.
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		for {
			tok, err := dec.Token()
			if err != nil {
				break
			}
			switch v := tok.(type) {
			case string:
				out = append(out, v)
			case json.Number:
				out = append(out, v.String())
			}
		}
	case "multipart/form-data":
		r := multipart.NewReader(bytes.NewReader(body), params["boundary"])
		for {
			p, err := r.NextPart()
			if err != nil {
				break
			}
			b, _ := io.ReadAll(p)
			out = append(out, string(b))
		}
	}
	return out
}

func BenchmarkExtract(b *testing.B) {
	form := []byte("checkout%5Bemail%5D=jane%40example.com&checkout%5Bbilling_address%5D%5Bfirst_name%5D=Jane&checkout%5Bbilling_address%5D%5Blast_name%5D=Doe&checkout%5Bbilling_address%5D%5Baddress1%5D=1+Main+St&checkout%5Bbilling_address%5D%5Bzip%5D=83702&checkout%5Bbilling_address%5D%5Bprovince%5D=ID&checkout%5Bbilling_address%5D%5Bcountry%5D=US&checkout%5Bnote%5D=leave+at+door&authenticity_token=abc123")
	js := []byte(`{"customer":{"email":"jane@example.com","firstName":"Jane","lastName":"Doe"},"billing":{"address":{"line1":"1 Main St","city":"Boise","state":"ID","postalCode":"83702","country":"US"}},"items":[{"name":"Shirt","price":10,"qty":1},{"name":"Hat","price":5,"qty":2}]}`)
	b.Run("urlencoded", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(form)))
		for b.Loop() {
			Extract("application/x-www-form-urlencoded", form, nil)
		}
	})
	b.Run("json", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(js)))
		for b.Loop() {
			Extract("application/json", js, nil)
		}
	})
}

func TestFieldsValidate(t *testing.T) {
	tests := []struct {
		name   string
		fields Fields
		want   string // a part of the error; empty when valid
	}{
		{"none", nil, ""},
		{"every field", Fields{Email: {"mail"}, Phone: {"tel_nr"}, FirstName: {"vorname"}, LastName: {"nachname"}, FullName: {"kunde"}, DateOfBirth: {"geb"}, Gender: {"anrede"}, Street: {"strasse"}, City: {"ort"}, State: {"land_bundesland"}, Zip: {"plz"}, Country: {"staat"}, CartToken: {"basket"}}, ""},
		{"unknown field lists the valid ones", Fields{"mail": {"x"}}, `unknown field "mail"; expected one of email, phone, first_name, last_name, full_name, date_of_birth, gender, street, city, state, zip, country, cart_token`},
		{"empty name", Fields{Zip: {" "}}, "field zip: empty extra name"},
		{"name without letters", Fields{Zip: {"[]"}}, `field zip: extra name "[]" has no letter or digit`},
		{"name too long", Fields{Zip: {strings.Repeat("p", 257)}}, "longer than 256 bytes"},
		{"one name for two fields", Fields{Email: {"Kontakt"}, Phone: {"kontakt"}}, `extra name "kontakt" is given for both email and phone`},
		{"one name twice for one field", Fields{Zip: {"plz", "PLZ"}}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.fields.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want …%s…", err, tc.want)
			}
		})
	}
}

// TestFieldNamesAreTheKeysOfLimits: every field Validate accepts has a plausibility limit, so
// that an extra name's values are bounded like the built-in names' values.
func TestFieldNamesAreTheKeysOfLimits(t *testing.T) {
	names := FieldNames()
	if len(names) != len(limits) {
		t.Fatalf("%d field names, %d limits", len(names), len(limits))
	}
	for _, n := range names {
		if limits[n] == 0 {
			t.Errorf("field %s has no limit", n)
		}
	}
	names[0] = "changed"
	if FieldNames()[0] != Email {
		t.Error("FieldNames returned the package's own slice")
	}
}

// TestExtraNamesTakePrecedenceOverBuiltins: a site whose "name" field holds the company and whose
// "ansprechpartner" holds the person maps them; the built-in reading of "name" gives way.
func TestExtraNamesTakePrecedenceOverBuiltins(t *testing.T) {
	body := []byte("name=ACME+GmbH&ansprechpartner=Jane+Doe&mobil=%2B49+151+1234567&email=jane%40acme.example")
	without, _ := Extract("application/x-www-form-urlencoded", body, nil)
	if without.Customer.FirstName != "ACME" || len(without.Customer.Phones) != 0 {
		t.Fatalf("built-in names only: %+v", without.Customer)
	}
	fields := Fields{FullName: {"ansprechpartner"}, FirstName: {"vorname"}, Phone: {"mobil"}, City: {"name"}}
	if err := fields.Validate(); err != nil {
		t.Fatal(err)
	}
	for range 20 { // map order must not matter
		got, err := Extract("application/x-www-form-urlencoded", body, fields)
		if err != nil {
			t.Fatal(err)
		}
		want := Customer{Emails: []string{"jane@acme.example"}, Phones: []string{"+49 151 1234567"}, FirstName: "Jane", LastName: "Doe", City: "ACME GmbH"}
		if !reflect.DeepEqual(got.Customer, want) {
			t.Fatalf("got  %+v\nwant %+v", got.Customer, want)
		}
	}
}
