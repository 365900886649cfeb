package caddymodule

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// TestEdgeCaptureFieldsRecognizeASitesOwnNames: a German checkout posts kunde[kontaktadresse],
// plz, ort and ansprechpartner, which no built-in name covers; with capture_fields the visitor's
// profile gets the email, zip, city and name, hashed. The body still reaches the upstream byte for
// byte.
func TestEdgeCaptureFieldsRecognizeASitesOwnNames(t *testing.T) {
	form := "kunde%5Bkontaktadresse%5D=Jane.Doe%40Example.de&plz=10115&ort=Berlin&ansprechpartner=Jane+Doe"
	post := func(s *testSite) *testSite {
		s.page("https://shop.example.com/")
		res := s.do(http.MethodPost, "https://shop.example.com/kasse", strings.NewReader(form),
			"Content-Type", "application/x-www-form-urlencoded", "Accept", "text/html", "Sec-Fetch-Dest", "document")
		if res.err != nil {
			t.Fatal(res.err)
		}
		if string(s.gotBody) != form {
			t.Fatalf("the upstream got %q; want the body byte for byte", s.gotBody)
		}
		return s
	}

	plain := post(newTestSite(t, `{"capture":["/kasse"]}`, nil))
	if p := plain.visitor(plain.jar["_capi_vid"]).User.Meta; len(p.Emails) != 0 || p.Zip != "" || p.City != "" || p.FirstName != "" {
		t.Fatalf("without capture_fields: %+v; want nothing recognized", p)
	}

	site := `{"capture":["/kasse"],"capture_fields":{"email":["kunde[kontaktadresse]"],"zip":["plz"],"city":["ort"],"full_name":["Ansprechpartner"]}}`
	s := post(newTestSite(t, site, nil))
	rec := s.visitor(s.jar["_capi_vid"])
	p := rec.User.Meta
	if len(p.Emails) != 1 || p.Emails[0] != sha256Hex("jane.doe@example.de") {
		t.Errorf("Meta emails = %v, want the hash of the normalized address", p.Emails)
	}
	if p.Zip != sha256Hex("10115") || p.City != sha256Hex("berlin") || p.FirstName != sha256Hex("jane") || p.LastName != sha256Hex("doe") {
		t.Errorf("Meta profile = %+v", p)
	}
	// Google takes city and postal code unhashed (the signal package's rule); names and emails
	// are hashed for every platform.
	raw, _ := json.Marshal(rec)
	for _, v := range []string{"Jane", "jane.doe"} {
		if strings.Contains(string(raw), v) {
			t.Errorf("plaintext %q reached the visitor record: %s", v, raw)
		}
	}
}

// TestCaptureFieldsRefusedInJSON: the JSON twin gets the Caddyfile's check, naming the path.
func TestCaptureFieldsRefusedInJSON(t *testing.T) {
	var h Handler
	if err := json.Unmarshal([]byte(`{"capture_fields":{"mail":["x"]}}`), &h); err != nil {
		t.Fatal(err)
	}
	err := h.check()
	if err == nil || !strings.HasPrefix(err.Error(), `capi.capture_fields: unknown field "mail"; expected one of email, phone,`) {
		t.Fatalf("got %v", err)
	}
}
