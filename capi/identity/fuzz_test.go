package identity

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func FuzzClickIDsFromQuery(f *testing.F) {
	for _, s := range []string{
		"fbclid=IwAR2F4-dbP0l7&gclid=Cj0KCQ", "fbclid=%3Cscript%3E&fbclid=ok", "ttclid=a;b", "gclid=" + strings.Repeat("x", 501),
		"wbraid=%00&gbraid=a%20b", "fbclid=a.b~c_d-e",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, _ := url.ParseQuery(raw)
		ids, rejected := ClickIDsFromQuery(q)
		total := 0
		for _, name := range []string{ParamFBCLID, ParamGCLID, ParamGBRAID, ParamWBRAID, ParamTTCLID} {
			total += len(q[name])
		}
		if rejected < 0 || rejected > total {
			t.Fatalf("rejected %d of %d values", rejected, total)
		}
		for name, v := range map[string]string{ParamFBCLID: ids.FBCLID, ParamGCLID: ids.GCLID, ParamGBRAID: ids.GBRAID, ParamWBRAID: ids.WBRAID, ParamTTCLID: ids.TTCLID} {
			if v == "" {
				continue
			}
			if !ValidClickID(v) || len(v) > MaxClickIDLength || strings.Trim(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~-") != "" {
				t.Fatalf("%s accepted %q", name, v)
			}
			found := false
			for _, qv := range q[name] {
				found = found || qv == v
			}
			if !found {
				t.Fatalf("%s %q is not a value from the query", name, v)
			}
		}
	})
}

// FuzzResolve feeds hostile hosts, queries and Cookie headers to Resolve: it never panics, every
// value in force passes its validator, and every cookie to set serializes as Name=Value exactly,
// with nothing that could break out of the Set-Cookie header.
func FuzzResolve(f *testing.F) {
	f.Add("a.builder.example.com:8080", "fbclid=abcd&gclid=g&ttclid=t", "_fbc=fb.1.123.abc; _fbp=fb.1.123.456")
	f.Add("[::1]:8080", "fbclid=%3Cx%3E", `_fbc="fb.1.123.abc.BA"; _capi_vid=abcdefghijklmnopqrstuvwx`)
	f.Add("localhost", "", "_ttp=abc;_ttp=def; ttclid=x,y; _gcl_aw=GCL.1.a")
	f.Add("evil.com;x", "wbraid=a&gbraid=b", "_gcl_gb=GCL.1.a\x00b; _fbc=fb.1.1.a.b.c")
	f.Fuzz(func(t *testing.T, host, rawQuery, cookieHeader string) {
		r := &http.Request{
			Method: "GET",
			Host:   host,
			URL:    &url.URL{Path: "/", RawQuery: rawQuery},
			Header: http.Header{"Cookie": {cookieHeader}},
		}
		res := Resolve(r, Options{Now: func() time.Time { return now }, Rand: maxRand{}, CookieDomain: "example.com"})
		checks := []struct {
			name, v string
			valid   func(string) bool
		}{
			{"visitor ID", res.VisitorID, ValidVisitorID}, {"fbc", res.FBC, ValidFBC}, {"fbp", res.FBP, ValidFBP},
			{"ttp", res.TTP, ValidTTP}, {"ttclid", res.TTCLID, ValidClickID}, {"gcl_aw", res.GCLAW, ValidGCL},
			{"gcl_gb", res.GCLGB, ValidGCL}, {"gcl_wb", res.GCLWB, ValidGCL},
			{"known fbclid", res.Known.FBCLID, ValidClickID}, {"known gclid", res.Known.GCLID, ValidClickID},
			{"known ttclid", res.Known.TTCLID, ValidClickID},
		}
		for _, c := range checks {
			if c.v != "" && !c.valid(c.v) {
				t.Fatalf("%s %q in force but invalid", c.name, c.v)
			}
		}
		if res.VisitorID == "" {
			t.Fatal("no visitor ID")
		}
		for _, c := range res.Cookies {
			if len(c.Value) > 4+3+1+16+1+MaxClickIDLength+1+8 {
				t.Fatalf("%s value of %d bytes", c.Name, len(c.Value))
			}
			if strings.ContainsFunc(c.Value, func(r rune) bool {
				return r <= ' ' || r >= 0x7f || strings.ContainsRune(`;,"\`, r)
			}) {
				t.Fatalf("%s value %q could break the header", c.Name, c.Value)
			}
			if c.Domain != "" && !validHostname(c.Domain) {
				t.Fatalf("%s domain %q", c.Name, c.Domain)
			}
			if s := c.String(); !strings.HasPrefix(s, c.Name+"="+c.Value+"; ") || strings.ContainsAny(s, "\r\n\x00") {
				t.Fatalf("Set-Cookie %q", s)
			}
			if err := c.Valid(); err != nil {
				t.Fatalf("%s: %v", c.Name, err)
			}
		}
	})
}
