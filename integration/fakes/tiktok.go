package fakes

import (
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TikTokConfig is what the fake Events API expects of its callers.
type TikTokConfig struct {
	// PixelCode is the only event_source_id accepted. Default "CAPITESTPIXEL0000001".
	PixelCode string
	// AccessToken is the Access-Token header callers must send. Default "tiktok-test-token".
	AccessToken string
	// Now is the fake's clock. Default time.Now.
	Now func() time.Time
}

// TikTok is a fake of TikTok's Events API 2.0: POST /open_api/v1.3/event/track/
// (shared/spec/tiktok-google.md §A). Like TikTok, it answers business errors with HTTP 200 and a
// non-zero body code.
type TikTok struct {
	*recorder
	cfg TikTokConfig

	failCodes []int // body codes of the next failing requests
}

// TikTok's documented limit.
const TikTokMaxBatch = 1000

// TikTokPath is the Events API 2.0 endpoint.
const TikTokPath = "/open_api/v1.3/event/track/"

// NewTikTok starts a fake TikTok Events API for the test.
func NewTikTok(t testing.TB, cfg TikTokConfig) *TikTok {
	if cfg.PixelCode == "" {
		cfg.PixelCode = "CAPITESTPIXEL0000001"
	}
	if cfg.AccessToken == "" {
		cfg.AccessToken = "tiktok-test-token"
	}
	f := &TikTok{recorder: newRecorder(t, "tiktok", cfg.Now), cfg: cfg}
	f.serve(http.HandlerFunc(f.handle))
	return f
}

// Config returns the configuration in force (with defaults filled in).
func (f *TikTok) Config() TikTokConfig { return f.cfg }

// FailNextCode makes the next n requests fail with TikTok body code (40100 rate limit, 40700,
// 50000, 40001 …) on HTTP 200, as TikTok answers business errors.
func (f *TikTok) FailNextCode(n, code int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for range n {
		f.failCodes = append(f.failCodes, code)
	}
}

func (f *TikTok) nextFailCode() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.failCodes) == 0 {
		return 0
	}
	code := f.failCodes[0]
	f.failCodes = f.failCodes[1:]
	return code
}

func (f *TikTok) answer(w http.ResponseWriter, status, code int, message string) {
	writeJSON(w, status, map[string]any{"code": code, "message": message, "request_id": f.traceID(), "data": map[string]any{}})
}

func (f *TikTok) handle(w http.ResponseWriter, req *http.Request) {
	body, ok := f.receive(w, req)
	if !ok {
		return
	}
	reject := func(code int, problems []string) {
		f.violate(req, problems)
		f.record(req, body, http.StatusOK, "violation: "+strings.Join(problems, "; "), nil)
		f.answer(w, http.StatusOK, code, strings.Join(problems, "; "))
	}
	if req.Method != http.MethodPost || req.URL.Path != TikTokPath {
		f.violate(req, []string{"requests must be POST " + TikTokPath})
		f.record(req, body, http.StatusNotFound, "violation: wrong endpoint", nil)
		http.NotFound(w, req)
		return
	}
	switch tok := req.Header.Get("Access-Token"); {
	case tok == "":
		reject(40105, []string{"missing Access-Token header"})
		return
	case tok != f.cfg.AccessToken:
		reject(40105, []string{"Access-Token is not the configured token"})
		return
	}
	if mt, _, _ := mime.ParseMediaType(req.Header.Get("Content-Type")); mt != "application/json" {
		reject(40002, []string{fmt.Sprintf("Content-Type must be application/json, got %q", req.Header.Get("Content-Type"))})
		return
	}
	events, problems, wrongPixel := f.validate(body)
	if wrongPixel != "" {
		reject(40001, []string{wrongPixel})
		return
	}
	if len(problems) > 0 {
		reject(40002, problems)
		return
	}
	if status, retryAfter := f.scripted(); status != 0 {
		f.record(req, body, status, fmt.Sprintf("scripted: %d", status), nil)
		switch {
		case status == http.StatusTooManyRequests:
			retryAfterHeader(w, retryAfter)
			f.answer(w, status, 40100, "Too many requests. Please retry in some time.")
		case status >= 500:
			f.answer(w, status, 50000, "System error.")
		default:
			f.answer(w, status, 40002, "scripted failure")
		}
		return
	}
	if code := f.nextFailCode(); code != 0 {
		f.record(req, body, http.StatusOK, fmt.Sprintf("scripted: code %d", code), nil)
		f.answer(w, http.StatusOK, code, "scripted failure")
		return
	}
	for i, e := range events {
		if reason, ok := f.rejection(e.ID); ok {
			f.record(req, body, http.StatusOK, "rejected event "+e.ID, nil)
			f.answer(w, http.StatusOK, 40002, fmt.Sprintf("data[%d]: %s", i, reason))
			return
		}
	}
	f.record(req, body, http.StatusOK, "accepted", events)
	f.answer(w, http.StatusOK, 0, "OK")
}

var tiktokEventFields = []string{"event", "event_time", "event_id", "user", "properties", "page", "limited_data_use", "lead", "app", "ad"}

// validate returns the events of a valid body, or its problems; wrongPixel is set when the
// event_source_id is not the configured pixel (TikTok answers 40001, no permission).
func (f *TikTok) validate(body []byte) (events []Event, problems []string, wrongPixel string) {
	var c checker
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		return nil, []string{"body is not a JSON object: " + err.Error()}, ""
	}
	v, err := decode(body)
	if err != nil {
		return nil, []string{"body is not valid JSON: " + err.Error()}, ""
	}
	obj, ok := c.object("body", v)
	if !ok {
		return nil, c.problems, ""
	}
	c.fields("", obj, "event_source", "event_source_id", "test_event_code", "partner_name", "data")
	c.required("", obj, "event_source", "event_source_id", "data")
	source := ""
	if v, ok := obj["event_source"]; ok {
		// App events through 2.0 are allow-list only and offline/crm sources are not what a web
		// store sends, so only web is accepted.
		source, _ = c.oneOf("event_source", v, "web")
	}
	if v, ok := obj["event_source_id"]; ok {
		if id, ok := c.nonEmpty("event_source_id", v); ok && id != f.cfg.PixelCode {
			wrongPixel = fmt.Sprintf("event_source_id %q is not the configured pixel %q", id, f.cfg.PixelCode)
		}
	}
	for _, k := range []string{"test_event_code", "partner_name"} {
		if v, ok := obj[k]; ok {
			c.nonEmpty(k, v)
		}
	}
	var raws []json.RawMessage
	if raw, ok := top["data"]; ok {
		if err := json.Unmarshal(raw, &raws); err != nil {
			c.addf("data", "must be an array of events")
		}
	}
	switch {
	case top["data"] == nil:
	case len(raws) == 0:
		c.addf("data", "must hold at least one event")
	case len(raws) > TikTokMaxBatch:
		c.addf("data", "holds %d events; at most %d are allowed per request", len(raws), TikTokMaxBatch)
	}
	code, _ := obj["test_event_code"].(string)
	now := f.now()
	for i, raw := range raws {
		path := fmt.Sprintf("data[%d]", i)
		ev, err := decode(raw)
		if err != nil {
			c.addf(path, "not valid JSON")
			continue
		}
		e := f.event(&c, path, ev, source, now)
		e.Raw, e.TestEventCode = raw, code
		events = append(events, e)
	}
	return events, c.problems, wrongPixel
}

func (f *TikTok) event(c *checker, path string, v any, source string, now time.Time) (e Event) {
	e.Endpoint = "track"
	obj, ok := c.object(path, v)
	if !ok {
		return e
	}
	c.fields(path, obj, tiktokEventFields...)
	// event_id is required whenever the pixel sends the same event, and our product always pairs
	// server events with browser ones (DESIGN §5), so the fake requires it.
	c.required(path, obj, "event", "event_time", "event_id", "user")
	if v, ok := obj["event"]; ok {
		e.Name, _ = c.nonEmpty(path+".event", v)
	}
	if v, ok := obj["event_id"]; ok {
		e.ID, _ = c.nonEmpty(path+".event_id", v)
	}
	if v, ok := obj["event_time"]; ok {
		if secs, ok := c.integer(path+".event_time", v); ok {
			e.Time = time.Unix(secs, 0)
			// TikTok documents no age limit; the future check catches milliseconds sent as seconds.
			if e.Time.After(now.Add(10 * time.Minute)) {
				c.addf(path+".event_time", "%d is in the future (Unix seconds expected)", secs)
			}
		}
	}
	if source == "web" {
		for _, k := range []string{"lead", "app", "ad"} {
			if _, ok := obj[k]; ok {
				c.addf(join(path, k), "not allowed for web events")
			}
		}
		if v, ok := obj["page"]; ok {
			if page, ok := c.object(path+".page", v); ok {
				c.fields(path+".page", page, "url", "referrer")
				if u, ok := page["url"]; ok {
					c.absURL(path+".page.url", u)
				} else {
					c.addf(path+".page.url", "required for web events")
				}
				if r, ok := page["referrer"]; ok {
					c.absURL(path+".page.referrer", r)
				}
			}
		} else {
			c.addf(path+".page", "required for web events (page.url)")
		}
	}
	if v, ok := obj["limited_data_use"]; ok {
		c.boolean(path+".limited_data_use", v)
	}
	if v, ok := obj["user"]; ok {
		tiktokUser(c, path+".user", v)
	}
	if v, ok := obj["properties"]; ok {
		tiktokProperties(c, path+".properties", v)
	}
	return e
}

var (
	tiktokHashedUser = []string{"email", "phone", "external_id", "first_name", "last_name", "zip_code"}
	tiktokPlainUser  = []string{"ttclid", "ttp", "ip", "user_agent", "locale", "city", "state", "country"}
	bcp47            = regexp.MustCompile(`^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$`)
)

func tiktokUser(c *checker, path string, v any) {
	u, ok := c.object(path, v)
	if !ok {
		return
	}
	// idfa, idfv, gaid and att_status are app-only, and web is the only source accepted.
	c.fields(path, u, append(append([]string{}, tiktokHashedUser...), tiktokPlainUser...)...)
	if len(u) == 0 {
		c.addf(path, "must hold at least one matching parameter")
	}
	for _, k := range tiktokHashedUser {
		if v, ok := u[k]; ok {
			c.hashed(join(path, k), v, true)
		}
	}
	for _, k := range []string{"ttclid", "ttp", "user_agent", "city", "state", "country"} {
		if v, ok := u[k]; ok {
			c.plain(join(path, k), v)
		}
	}
	if v, ok := u["ip"]; ok {
		c.ip(join(path, "ip"), v)
	}
	if v, ok := u["locale"]; ok {
		if s, ok := c.plain(join(path, "locale"), v); ok && !bcp47.MatchString(s) {
			c.addf(join(path, "locale"), "must be a BCP 47 tag such as en-US, got %q", s)
		}
	}
}

func tiktokProperties(c *checker, path string, v any) {
	p, ok := c.object(path, v)
	if !ok {
		return
	}
	// search_string, not the legacy query (whose acceptance in 2.0 is unconfirmed).
	c.fields(path, p, "value", "currency", "content_type", "content_ids", "contents", "num_items", "search_string", "description", "order_id", "shop_id")
	if v, ok := p["value"]; ok {
		c.number(path+".value", v)
	}
	if v, ok := p["currency"]; ok {
		c.currency(path+".currency", v, true)
	}
	if v, ok := p["content_type"]; ok {
		c.oneOf(path+".content_type", v, "product", "product_group")
	}
	if v, ok := p["content_ids"]; ok {
		c.stringArray(path+".content_ids", v)
	}
	if v, ok := p["num_items"]; ok {
		c.integer(path+".num_items", v)
	}
	for _, k := range []string{"search_string", "description", "order_id", "shop_id"} {
		if v, ok := p[k]; ok {
			c.str(join(path, k), v)
		}
	}
	if v, ok := p["contents"]; ok {
		items, ok := c.array(path+".contents", v)
		for i, it := range items {
			if !ok {
				break
			}
			ip := fmt.Sprintf("%s.contents[%d]", path, i)
			obj, ok := c.object(ip, it)
			if !ok {
				continue
			}
			c.fields(ip, obj, "price", "quantity", "content_id", "content_category", "content_name", "brand")
			if v, ok := obj["price"]; ok {
				c.number(ip+".price", v)
			}
			if v, ok := obj["quantity"]; ok {
				c.integer(ip+".quantity", v)
			}
			for _, k := range []string{"content_id", "content_category", "content_name", "brand"} {
				if v, ok := obj[k]; ok {
					c.str(join(ip, k), v)
				}
			}
		}
	}
}
