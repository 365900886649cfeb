package caddymodule

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/caddy-capi/caddy-capi/capi/delivery"
)

var update = flag.Bool("update", false, "rewrite the expected JSON of testdata/adapt/*.caddyfiletest")

// separator splits a .caddyfiletest file into the Caddyfile and the expected JSON, as Caddy's own
// caddytest/integration does.
var separator = regexp.MustCompile(`(?m)^-{10,}\s*$`)

func TestAdaptGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/adapt/*.caddyfiletest")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			parts := separator.Split(string(data), 2)
			if len(parts) != 2 {
				t.Fatalf("%s: expected a Caddyfile, a line of dashes and the JSON", file)
			}
			input, expected := strings.TrimSpace(parts[0])+"\n", strings.TrimSpace(parts[1])
			if *update {
				out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(input), nil)
				if err != nil {
					t.Fatalf("adapting: %v", err)
				}
				var pretty bytes.Buffer
				if err := json.Indent(&pretty, out, "", "\t"); err != nil {
					t.Fatal(err)
				}
				sep := separator.FindString(string(data))
				if err := os.WriteFile(file, []byte(input+strings.TrimSpace(sep)+"\n"+pretty.String()+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if !caddytest.CompareAdapt(t, file, input, "caddyfile", expected) {
				t.Errorf("%s: adapted JSON differs from the expected JSON (diff above; -update rewrites it)", file)
			}
		})
	}
}

// TestCaddyfileErrorsNameFileLineAndExpectation feeds one mistake at a time and checks that the
// error names the file, the line of the mistake and what was expected instead.
func TestCaddyfileErrorsNameFileLineAndExpectation(t *testing.T) {
	global := func(body string) string { return "{\n\tcapi {\n" + body + "\n\t}\n}\n:8080 {\n\trespond ok\n}\n" }
	site := func(body string) string { return ":8080 {\n\tcapi {\n" + body + "\n\t}\n\trespond ok\n}\n" }
	meta := func(extra string) string {
		return global("\t\tmeta {\n\t\t\tpixel_id 1234567890\n\t\t\taccess_token secret123\n" + extra + "\n\t\t}")
	}
	tests := []struct {
		name   string
		input  string
		line   int
		expect string
	}{
		{"unknown global subdirective", global("\t\tstorge bolt"), 3, `unknown subdirective "storge"; expected one of storage,`},
		{"unknown site subdirective", site("\t\tconversions Purchase /x"), 3, `unknown subdirective "conversions"; expected one of pixels,`},
		{"unknown meta subdirective", meta("\t\t\tpixelid 1"), 6, `capi meta: unknown subdirective "pixelid"; expected one of pixel_id,`},
		{"global option with arguments", "{\n\tcapi on\n}\n", 2, "takes no arguments; expected a block"},
		{"global option twice", "{\n\tcapi {\n\t}\n\tcapi {\n\t}\n}\n", 4, "given twice"},
		{"subdirective twice", global("\t\tvisitor_ttl 30d\n\t\tvisitor_ttl 60d"), 4, "visitor_ttl is given twice"},
		{"missing argument", global("\t\tvisitor_ttl"), 3, "visitor_ttl: missing argument; expected `visitor_ttl <duration>"},
		{"too many arguments", global("\t\tdefault_country US DE"), 3, "default_country: too many arguments; expected `default_country <ISO 3166-1 alpha-2 code>`"},
		{"missing pixel ID", global("\t\tmeta {\n\t\t\taccess_token x\n\t\t}"), 3, "capi.meta.pixel_id: is required; expected `pixel_id <digits>`"},
		{"missing TikTok pixel code", global("\t\ttiktok {\n\t\t\taccess_token x\n\t\t}"), 3, "capi.tiktok.pixel_code: is required"},
		{"missing Google tag and customer", global("\t\tsink file /tmp/x\n\t\tgoogle_ads {\n\t\t\tapi_version v24\n\t\t}"), 4, "capi.google_ads.tag_id: is required, or customer_id"},
		{"missing access token without sink", global("\t\tmeta {\n\t\t\tpixel_id 1234567890\n\t\t}"), 3, "capi.meta.access_token: is required to send server events; expected `access_token {env.META_ACCESS_TOKEN}`"},
		{"missing Google OAuth secret", global("\t\tgoogle_ads {\n\t\t\tcustomer_id 1234567890\n\t\t\tdeveloper_token d\n\t\t\tclient_id c\n\t\t\trefresh_token r\n\t\t\tconversion Purchase 123\n\t\t}"), 3, "capi.google_ads.client_secret: is required with customer_id"},
		{"non-numeric Meta pixel ID", strings.Replace(meta(""), "pixel_id 1234567890", "pixel_id 12ab34", 1), 4, "pixel_id: expected the numeric pixel ID"},
		{"non-numeric Google customer ID", global("\t\tgoogle_ads {\n\t\t\tcustomer_id 123-abc-7890\n\t\t}"), 4, "customer_id: expected digits only (dashes are allowed and removed)"},
		{"short Google customer ID", global("\t\tgoogle_ads {\n\t\t\tcustomer_id 123-456\n\t\t}"), 4, "customer_id: expected 10 digits, got 6"},
		{"bad Google tag ID", global("\t\tgoogle_ads {\n\t\t\ttag_id G-12345\n\t\t}"), 4, "tag_id: expected the Google Ads tag ID, AW- followed by digits"},
		{"bad duration", global("\t\tdelivery {\n\t\t\tflush 5q\n\t\t}"), 4, `capi delivery: flush: bad duration "5q"; expected a positive duration`},
		{"negative duration", global("\t\tvisitor_ttl -5d"), 3, "expected a positive duration"},
		{"visitor TTL beyond cookie lifetime", global("\t\tvisitor_ttl 800d"), 3, "expected a duration from 1h to 400d"},
		{"workers not a number", global("\t\tdelivery {\n\t\t\tworkers many\n\t\t}"), 4, `workers: "many" is not a number from 1 to 256`},
		{"batch above every platform cap", global("\t\tdelivery {\n\t\t\tbatch 5000\n\t\t}"), 4, "is not a number from 1 to 2000"},
		{"retry base not a duration", global("\t\tdelivery {\n\t\t\tretry_base soon\n\t\t}"), 4, `capi delivery: retry_base: bad duration "soon"; expected a positive duration`},
		{"retry max shorter than base", global("\t\tdelivery {\n\t\t\tretry_base 1m\n\t\t\tretry_max 30s\n\t\t}"), 5, "capi delivery: retry_max: 30s is shorter than retry_base 1m; expected at least the base"},
		{"retry max longer than give up", global("\t\tdelivery {\n\t\t\tretry_max 2h\n\t\t\tgive_up 1h\n\t\t}"), 4, "capi delivery: retry_max: 2h is longer than give_up 1h; expected at most give_up"},
		{"retry max beyond a day", global("\t\tdelivery {\n\t\t\tretry_max 2d\n\t\t}"), 4, "retry_max: expected a positive duration up to 1d"},
		{"retry base beyond the default max", global("\t\tdelivery {\n\t\t\tretry_base 20m\n\t\t}"), 4, "retry_base: 20m is longer than the default retry_max 10m"},
		{"retry max below the default base", global("\t\tdelivery {\n\t\t\tretry_max 500ms\n\t\t}"), 4, "retry_max: 500ms is shorter than the default retry_base 1s"},
		{"unclosed secret placeholder", strings.Replace(meta(""), "access_token secret123", "access_token {env.META_TOKEN", 1), 5, "access_token: has a malformed placeholder; expected the whole value to be {env.NAME} or {file.PATH}"},
		{"placeholder without braces", strings.Replace(meta(""), "access_token secret123", "access_token $META_TOKEN", 1), 5, "access_token: looks like a placeholder without its braces"},
		{"placeholder typo", strings.Replace(meta(""), "access_token secret123", "access_token {env:META_TOKEN}", 1), 5, "malformed placeholder"},
		{"country not alpha-2", global("\t\tdefault_country DEU"), 3, "expected an ISO 3166-1 alpha-2 country code"},
		{"country unknown", global("\t\tdefault_country XX"), 3, "expected an ISO 3166-1 alpha-2 country code"},
		{"country UK", global("\t\tdefault_country UK"), 3, "expected GB for the United Kingdom"},
		{"bad regexp", global("\t\tconsent {\n\t\t\trequire consent ^(all\n\t\t}"), 4, "require: expected a regular expression in RE2 syntax"},
		{"gpc neither on nor off", site("\t\tconsent {\n\t\t\tgpc yes\n\t\t}"), 4, `gpc: expected on or off, got "yes"`},
		{"unknown storage backend", global("\t\tstorage sqlite /x.db"), 3, `storage: unknown backend "sqlite"; expected ` + "`storage bolt [<path>] or storage redis <url>`"},
		{"redis without URL", global("\t\tstorage redis"), 3, "storage redis: missing URL"},
		{"unknown sink", global("\t\tsink kafka /x"), 3, `sink: unknown kind "kafka"; expected ` + "`sink file <path>`"},
		{"bad endpoint", meta("\t\t\tendpoint graph.example.com"), 6, "endpoint: expected an absolute http:// or https:// URL"},
		{"bad Meta API version", meta("\t\t\tapi_version 25"), 6, "api_version: expected a Graph API version such as v25.0"},
		{"TikTok event mapping without target", global("\t\ttiktok {\n\t\t\tpixel_code C4ABCDEFGH12\n\t\t\taccess_token t\n\t\t\tevent Purchase\n\t\t}"), 6, "event: missing argument; expected `event <OurName> <TikTokName>`"},
		{"Google conversion without action", global("\t\tgoogle_ads {\n\t\t\ttag_id AW-123456789\n\t\t\tconversion Purchase\n\t\t}"), 5, "conversion: missing argument; expected `conversion <EventName> <conversion action id> [<label>]`"},
		{"conversion without event name", site("\t\tconversion /thank-you"), 3, "conversion: missing event name before /thank-you; expected `conversion <EventName> <path pattern>"},
		{"conversion without path", site("\t\tconversion Purchase"), 3, "conversion Purchase: missing path pattern"},
		{"conversion without anything", site("\t\tconversion"), 3, "conversion: missing event name and path"},
		{"conversion with bad event name", site("\t\tconversion 9Lives /x"), 3, "expected an event name"},
		{"conversion with bad path", site("\t\tconversion Purchase thank-you"), 3, "expected a path pattern starting with /"},
		{"bad currency code", site("\t\tconversion Purchase /thank-you {\n\t\t\tcurrency DOLLARS\n\t\t}"), 4, "currency: expected a 3-letter ISO 4217 currency code such as USD"},
		{"unknown currency code", site("\t\tconversion Purchase /thank-you {\n\t\t\tcurrency XYZ\n\t\t}"), 4, "ISO 4217"},
		{"bad value", site("\t\tconversion Purchase /thank-you {\n\t\t\tvalue twelve\n\t\t}"), 4, "value: expected a non-negative decimal amount"},
		{"bad method", site("\t\tconversion Purchase /thank-you {\n\t\t\tmethod post\n\t\t}"), 4, "method: expected one of GET, POST"},
		{"unknown conversion subdirective", site("\t\tconversion Purchase /thank-you {\n\t\t\tprice 10\n\t\t}"), 4, `capi conversion Purchase: unknown subdirective "price"`},
		{"unknown postback source", site("\t\tpostback paypal /pb {\n\t\t\tsecret x\n\t\t}"), 3, `postback: unknown source "paypal"; expected one of clickbank, jvzoo, shopify, woocommerce, stripe, generic`},
		{"postback without secret", site("\t\tpostback shopify /pb/shopify {\n\t\t}"), 3, "capi postback shopify: secret is required; expected `secret <key>`"},
		{"generic postback without token", site("\t\tpostback generic /pb/s2s"), 3, "capi postback generic: token is required"},
		{"token on a signed source", site("\t\tpostback stripe /pb/stripe {\n\t\t\ttoken abc\n\t\t}"), 4, "token: only the generic source takes a token"},
		{"ClickBank secret of the wrong form", site("\t\tpostback clickbank /pb/cb {\n\t\t\tsecret lowercase-key\n\t\t}"), 4, "expected the ClickBank secret key: up to 16 capital letters and digits"},
		{"Stripe secret of the wrong form", site("\t\tpostback stripe /pb/stripe {\n\t\t\tsecret sk_live_abc\n\t\t}"), 4, "which starts with whsec_"},
		{"capture field unknown", site("\t\tcapture /kasse\n\t\tcapture_field mail kunde_mail"), 4, `capi: capture_field: unknown field "mail"; expected one of email, phone, first_name, last_name, full_name, date_of_birth, gender, street, city, state, zip, country, cart_token`},
		{"capture field without a name", site("\t\tcapture_field zip"), 3, "capi: capture_field: missing argument; expected `capture_field <field> <form field name>..., where <field> is one of email,"},
		{"capture field name for two fields", site("\t\tcapture_field email kontakt\n\t\tcapture_field phone kontakt"), 4, `capture_field: extra name "kontakt" is given for both email and phone`},
		{"vendor on shopify", site("\t\tpostback shopify /pb/shopify {\n\t\t\tsecret s\n\t\t\tvendor mystore\n\t\t}"), 5, "capi postback shopify: vendor: only the clickbank source takes a vendor"},
		{"vendor not a nickname", site("\t\tpostback clickbank /pb/cb {\n\t\t\tsecret K\n\t\t\tvendor my.store\n\t\t}"), 5, "capi postback clickbank: vendor: expected the ClickBank account nickname"},
		{"currency on stripe", site("\t\tpostback stripe /pb/stripe {\n\t\t\tsecret whsec_x\n\t\t\tcurrency EUR\n\t\t}"), 5, "capi postback stripe: currency: only the jvzoo and generic sources take a currency"},
		{"jvzoo currency not ISO 4217", site("\t\tpostback jvzoo /pb/jvzoo {\n\t\t\tsecret K\n\t\t\tcurrency euro\n\t\t}"), 5, "capi postback jvzoo: currency: expected a 3-letter ISO 4217 currency code"},
		{"topics on woocommerce", site("\t\tpostback woocommerce /pb/woo {\n\t\t\tsecret s\n\t\t\ttopics orders/paid\n\t\t}"), 5, "capi postback woocommerce: topics: only the shopify source takes topics"},
		{"shopify topic that is no purchase", site("\t\tpostback shopify /pb/shopify {\n\t\t\tsecret s\n\t\t\ttopics orders/paid orders/cancelled\n\t\t}"), 5, "capi postback shopify: topics: topic orders/cancelled is never a purchase"},
		{"shopify topics twice", site("\t\tpostback shopify /pb/shopify {\n\t\t\tsecret s\n\t\t\ttopics orders/paid\n\t\t\ttopics orders/create\n\t\t}"), 6, "capi postback shopify: topics is given twice"},
		{"postback path with wildcard", site("\t\tpostback jvzoo /pb/* {\n\t\t\tsecret K\n\t\t}"), 3, "expected an exact path starting with /"},
		{"two endpoints on one path", site("\t\tcollect /capi/x\n\t\tlink /capi/x https://example.com/"), 2, "capi.links[0].path: path /capi/x is already used by collect"},
		{"unknown pixel", site("\t\tpixels meta bing"), 3, `pixels: unknown platform "bing"; expected meta, tiktok or google`},
		{"page view neither", site("\t\tpage_view both"), 3, "page_view: expected server or browser"},
		{"cookie domain is a public suffix", site("\t\tcookie_domain co.uk"), 3, "not a public suffix"},
		{"link to a relative target", site("\t\tlink /go/x /offer"), 3, "expected an absolute http:// or https:// target URL"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(tc.input), map[string]any{"filename": "shop.Caddyfile"})
			if err == nil {
				t.Fatalf("adapting was accepted; want an error containing %q\n%s", tc.expect, tc.input)
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.expect) {
				t.Errorf("error does not say what was expected\n got: %s\nwant: …%s…", msg, tc.expect)
			}
			if want := "shop.Caddyfile:" + itoa(tc.line); !strings.HasSuffix(msg, want) {
				t.Errorf("error does not name file and line %s\n got: %s", want, msg)
			}
		})
	}
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// TestSecretsNeverEchoedInErrors checks that a malformed secret's value stays out of the message.
func TestSecretsNeverEchoedInErrors(t *testing.T) {
	const secret = "{env.SUPERSECRETVALUE"
	input := "{\n\tcapi {\n\t\tmeta {\n\t\t\tpixel_id 1234567890\n\t\t\taccess_token " + secret + " extra\n\t\t}\n\t}\n}\n"
	_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(input), nil)
	if err == nil || strings.Contains(err.Error(), "SUPERSECRET") {
		t.Fatalf("want an error without the secret, got %v", err)
	}
	input = strings.Replace(input, " extra", "", 1)
	_, _, err = caddyconfig.GetAdapter("caddyfile").Adapt([]byte(input), nil)
	if err == nil || strings.Contains(err.Error(), "SUPERSECRET") {
		t.Fatalf("want an error without the secret, got %v", err)
	}
}

// TestJSONRoundTrip checks that what the Caddyfile produces decodes into the same structs and
// encodes back to the same JSON, so that `caddy adapt` output can be edited and loaded as JSON.
func TestJSONRoundTrip(t *testing.T) {
	data, err := os.ReadFile("testdata/adapt/full.caddyfiletest")
	if err != nil {
		t.Fatal(err)
	}
	input := separator.Split(string(data), 2)[0]
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(input), nil)
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Apps struct {
			Capi json.RawMessage `json:"capi"`
			HTTP struct {
				Servers map[string]struct {
					Routes []struct {
						Handle []struct {
							Routes []struct {
								Handle []json.RawMessage `json:"handle"`
							} `json:"routes"`
						} `json:"handle"`
					} `json:"routes"`
				} `json:"servers"`
			} `json:"http"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}

	var app App
	roundTrip(t, cfg.Apps.Capi, &app)
	if app.GoogleAds == nil || app.GoogleAds.CustomerID != "1234567890" || len(app.GoogleAds.Conversions) != 2 {
		t.Errorf("google_ads did not survive: %+v", app.GoogleAds)
	}
	if app.Consent == nil || app.Consent.GPC == nil || !*app.Consent.GPC {
		t.Errorf("consent gpc on did not survive: %+v", app.Consent)
	}

	var handlerJSON json.RawMessage
	for _, srv := range cfg.Apps.HTTP.Servers {
		for _, h := range srv.Routes[0].Handle[0].Routes[0].Handle {
			if bytes.Contains(h, []byte(`"handler":"capi"`)) {
				handlerJSON = h
			}
		}
	}
	if handlerJSON == nil {
		t.Fatal("no capi handler in the adapted config")
	}
	var h Handler
	roundTrip(t, handlerJSON, &h)
	if len(h.Postbacks) != 6 || h.Postbacks[0].Secrets[1] != "{env.CLICKBANK_SECRET_OLD}" {
		t.Errorf("postbacks did not survive: %+v", h.Postbacks)
	}
	if h.Consent == nil || h.Consent.GPC == nil || *h.Consent.GPC {
		t.Errorf("consent gpc off did not survive: %+v", h.Consent)
	}
}

// roundTrip decodes raw into v, encodes v, and checks that the result equals raw as JSON (ignoring
// the handler's module name, which Caddy adds).
func roundTrip(t *testing.T, raw json.RawMessage, v any) {
	t.Helper()
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatal(err)
	}
	again, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var want, got map[string]any
	_ = json.Unmarshal(raw, &want)
	_ = json.Unmarshal(again, &got)
	delete(want, "handler")
	if !reflect.DeepEqual(want, got) {
		t.Errorf("round trip changed the config\nwant %s\n got %s", raw, again)
	}
}

// TestGlobalOptionReturnsCapiApp checks the value handed to the HTTP Caddyfile adapter.
func TestGlobalOptionReturnsCapiApp(t *testing.T) {
	d := caddyfile.NewTestDispenser("capi {\n\tstorage bolt\n}")
	v, err := parseGlobalOption(d, nil)
	if err != nil {
		t.Fatal(err)
	}
	app, ok := v.(httpcaddyfile.App)
	if !ok || app.Name != "capi" || string(app.Value) != `{"storage":{"backend":"bolt"}}` {
		t.Errorf("got %#v", v)
	}
}

// TestDeliveryRetryBoundsAreCheckedInJSONToo: a JSON config gets the Caddyfile's checks, naming
// the directive path, and what passes reaches the delivery engine's settings.
func TestDeliveryRetryBoundsAreCheckedInJSONToo(t *testing.T) {
	tests := []struct {
		name string
		d    DeliveryConfig
		want string
	}{
		{"unset", DeliveryConfig{}, ""},
		{"both within give_up", DeliveryConfig{RetryBase: caddy.Duration(2 * time.Second), RetryMax: caddy.Duration(time.Hour), GiveUp: caddy.Duration(48 * time.Hour)}, ""},
		{"max equal to base", DeliveryConfig{RetryBase: caddy.Duration(time.Minute), RetryMax: caddy.Duration(time.Minute)}, ""},
		{"negative base", DeliveryConfig{RetryBase: -1}, "capi.delivery.retry_base: expected a positive duration"},
		{"max below base", DeliveryConfig{RetryBase: caddy.Duration(time.Minute), RetryMax: caddy.Duration(time.Second)}, "capi.delivery.retry_max: 1s is shorter than retry_base 1m"},
		{"max beyond give_up", DeliveryConfig{RetryMax: caddy.Duration(3 * time.Hour), GiveUp: caddy.Duration(2 * time.Hour)}, "capi.delivery.retry_max: 3h is longer than give_up 2h"},
		{"base beyond give_up", DeliveryConfig{RetryBase: caddy.Duration(5 * time.Minute), GiveUp: caddy.Duration(time.Minute)}, "capi.delivery.retry_base: 5m is longer than give_up 1m"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := checkDelivery("capi.delivery", tc.d)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				r := resolvedConfig{delivery: tc.d}
				s := r.retrySettings(delivery.Settings{Workers: 2})
				if s.RetryBase != time.Duration(tc.d.RetryBase) || s.RetryMax != time.Duration(tc.d.RetryMax) || s.Workers != 2 {
					t.Errorf("engine settings %+v do not carry %+v", s, tc.d)
				}
				if err := s.Validate(); err != nil {
					t.Errorf("the engine refuses what the config accepted: %v", err)
				}
				return
			}
			if err == nil || err.Error() != tc.want && !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}

// TestCaptureFieldLines: each `capture_field` line adds form field names to one of our fields;
// lines accumulate, and a mistake names the line and what was expected.
func TestCaptureFieldLines(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want  map[string][]string
		err   string
	}{
		{"one field", "capture_field email kontakt[mail] mail_addr", map[string][]string{"email": {"kontakt[mail]", "mail_addr"}}, ""},
		{"lines accumulate", "capture_field zip plz\ncapture_field city ort\ncapture_field zip postleitzahl", map[string][]string{"zip": {"plz", "postleitzahl"}, "city": {"ort"}}, ""},
		{"unknown field", "capture_field mail x", nil, `capi: capture_field: unknown field "mail"; expected one of email, phone, first_name, last_name, full_name, date_of_birth, gender, street, city, state, zip, country, cart_token, at Testfile:1`},
		{"no name", "capture_field zip", nil, "capi: capture_field: missing argument; expected `capture_field <field> <form field name>..., where <field> is one of email, phone, first_name, last_name, full_name, date_of_birth, gender, street, city, state, zip, country, cart_token`, at Testfile:1"},
		{"one name for two fields", "capture_field email kontakt\ncapture_field phone Kontakt", nil, `capi: capture_field: extra name "Kontakt" is given for both email and phone; expected one field per name, at Testfile:2`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := caddyfile.NewTestDispenser(tc.input)
			p := parser{d: d, ctx: "capi", seen: map[string]bool{}}
			var got map[string][]string
			var err error
			for d.Next() && err == nil {
				got, err = p.captureField(got)
			}
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("got %v\nwant %s", err, tc.err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

// TestPostbackSettingLines: vendor, currency and topics are read where their source takes them
// and refused on their own line where it does not.
func TestPostbackSettingLines(t *testing.T) {
	tests := []struct {
		source, input string
		want          PostbackSettings
		err           string
	}{
		{"clickbank", "vendor MyStore", PostbackSettings{Vendor: "MyStore"}, ""},
		{"jvzoo", "currency eur", PostbackSettings{Currency: "EUR"}, ""},
		{"generic", "currency GBP", PostbackSettings{Currency: "GBP"}, ""},
		{"shopify", "topics Orders/Paid orders/fulfilled", PostbackSettings{Topics: []string{"orders/paid", "orders/fulfilled"}}, ""},
		{"shopify", "vendor mystore", PostbackSettings{}, "capi: vendor: only the clickbank source takes a vendor"},
		{"clickbank", "vendor my-store!", PostbackSettings{}, "capi: vendor: expected the ClickBank account nickname"},
		{"clickbank", "currency USD", PostbackSettings{}, "capi: currency: only the jvzoo and generic sources take a currency; clickbank notifications carry their own"},
		{"jvzoo", "currency dollars", PostbackSettings{}, "capi: currency: expected a 3-letter ISO 4217 currency code"},
		{"stripe", "topics orders/paid", PostbackSettings{}, "capi: topics: only the shopify source takes topics"},
		{"shopify", "topics orders/paid orders/cancelled", PostbackSettings{}, "capi: topics: topic orders/cancelled is never a purchase"},
		{"shopify", "topics", PostbackSettings{}, "capi: topics: missing argument; expected `topics <topic>..."},
	}
	for _, tc := range tests {
		t.Run(tc.source+" "+tc.input, func(t *testing.T) {
			d := caddyfile.NewTestDispenser(tc.input)
			d.Next()
			var got PostbackSettings
			var err error
			for _, s := range (parser{d: d, ctx: "capi"}).postbackSettings(tc.source, &got) {
				if s.name == d.Val() {
					err = s.parse()
				}
			}
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.HasSuffix(err.Error(), "Testfile:1") {
					t.Fatalf("got %v, want %q at Testfile:1", err, tc.err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

// TestPostbackSettingsAreCheckedInJSONToo: the JSON twin of each setting gets the same checks,
// naming the field at fault.
func TestPostbackSettingsAreCheckedInJSONToo(t *testing.T) {
	for _, tc := range []struct {
		source string
		s      PostbackSettings
		field  string
	}{
		{"clickbank", PostbackSettings{Vendor: "mystore"}, ""},
		{"woocommerce", PostbackSettings{Vendor: "mystore"}, "vendor"},
		{"generic", PostbackSettings{Currency: "XYZ"}, "currency"},
		{"shopify", PostbackSettings{Currency: "USD"}, "currency"},
		{"shopify", PostbackSettings{Topics: []string{"checkouts/create"}}, "topics"},
		{"jvzoo", PostbackSettings{Topics: []string{"orders/paid"}}, "topics"},
	} {
		_, field, err := checkPostbackSettings(tc.source, tc.s)
		if field != tc.field || (err == nil) != (tc.field == "") {
			t.Errorf("%s %+v: field %q, error %v; want field %q", tc.source, tc.s, field, err, tc.field)
		}
	}
}
