package fakes

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

// MetaConfig is what the fake Graph API expects of its callers.
type MetaConfig struct {
	// PixelID is the dataset the events go to; other IDs get Graph's "object does not exist"
	// error. Default "1234567890123456".
	PixelID string
	// AccessToken is the token callers must send as access_token. Default "meta-test-token".
	AccessToken string
	// APIVersion, when set, is the only version accepted in the path (e.g. "v25.0"); otherwise any
	// vNN.N is.
	APIVersion string
	// Now is the fake's clock, for the 7-day age limit. Default time.Now.
	Now func() time.Time
}

// Meta is a fake of Meta's Graph API serving the Conversions API endpoint
// POST /{version}/{pixel}/events (shared/spec/meta-capi.md).
type Meta struct {
	*recorder
	cfg MetaConfig
}

// Meta's documented limits.
const (
	MetaMaxBatch = 1000
	MetaMaxAge   = 7 * 24 * time.Hour
)

// NewMeta starts a fake Graph API for the test.
func NewMeta(t testing.TB, cfg MetaConfig) *Meta {
	if cfg.PixelID == "" {
		cfg.PixelID = "1234567890123456"
	}
	if cfg.AccessToken == "" {
		cfg.AccessToken = "meta-test-token"
	}
	m := &Meta{recorder: newRecorder(t, "meta", cfg.Now), cfg: cfg}
	m.serve(http.HandlerFunc(m.handle))
	return m
}

// Config returns the configuration in force (with defaults filled in).
func (m *Meta) Config() MetaConfig { return m.cfg }

var metaPath = regexp.MustCompile(`^/(v\d+\.\d+)/([^/]+)/events$`)

// metaError is Graph's error envelope.
type metaError struct {
	Message        string `json:"message"`
	Type           string `json:"type"`
	Code           int    `json:"code"`
	ErrorSubcode   int    `json:"error_subcode,omitempty"`
	IsTransient    bool   `json:"is_transient"`
	ErrorUserTitle string `json:"error_user_title,omitempty"`
	ErrorUserMsg   string `json:"error_user_msg,omitempty"`
	// ErrorData carries blame_field_specs, the path of the offending field, when Meta names one.
	ErrorData map[string]any `json:"error_data,omitempty"`
	FBTraceID string         `json:"fbtrace_id"`
}

func (m *Meta) fail(w http.ResponseWriter, status int, e metaError) {
	e.FBTraceID = m.traceID()
	if e.Type == "" {
		e.Type = "OAuthException"
	}
	writeJSON(w, status, map[string]any{"error": e})
}

// invalid answers as Graph does for an invalid parameter: HTTP 400, code 100.
func (m *Meta) invalid(w http.ResponseWriter, subcode int, title string, problems []string) {
	m.fail(w, http.StatusBadRequest, metaError{
		Message: "Invalid parameter", Code: 100, ErrorSubcode: subcode,
		ErrorUserTitle: title, ErrorUserMsg: strings.Join(problems, "; "),
	})
}

func (m *Meta) handle(w http.ResponseWriter, req *http.Request) {
	body, ok := m.receive(w, req)
	if !ok {
		return
	}
	reject := func(status int, _ string, problems []string, answer func()) {
		m.violate(req, problems)
		m.record(req, body, status, "violation: "+strings.Join(problems, "; "), nil)
		answer()
	}

	if req.Method != http.MethodPost {
		reject(http.StatusBadRequest, "", []string{"method must be POST"}, func() {
			m.fail(w, http.StatusBadRequest, metaError{Message: "Unsupported get request.", Code: 100, ErrorSubcode: 33})
		})
		return
	}
	match := metaPath.FindStringSubmatch(req.URL.Path)
	if match == nil || (m.cfg.APIVersion != "" && match[1] != m.cfg.APIVersion) {
		p := fmt.Sprintf("path must be /%s/{pixel_id}/events", orDefault(m.cfg.APIVersion, "{version}"))
		reject(http.StatusBadRequest, "", []string{p}, func() {
			m.fail(w, http.StatusBadRequest, metaError{Message: "Unknown path components: " + req.URL.Path, Code: 2500})
		})
		return
	}
	if match[2] != m.cfg.PixelID {
		reject(http.StatusBadRequest, "", []string{fmt.Sprintf("pixel %q is not the configured dataset %q", match[2], m.cfg.PixelID)}, func() {
			m.fail(w, http.StatusBadRequest, metaError{
				Message: fmt.Sprintf("Unsupported post request. Object with ID '%s' does not exist, cannot be loaded due to missing permissions, or does not support this operation.", match[2]),
				Type:    "GraphMethodException", Code: 100, ErrorSubcode: 33,
			})
		})
		return
	}

	params, problems := m.params(req, body)
	if len(problems) > 0 {
		reject(http.StatusBadRequest, "", problems, func() { m.invalid(w, 0, "Malformed request", problems) })
		return
	}
	token, _ := params["access_token"].(string)
	switch {
	case token == "":
		reject(http.StatusBadRequest, "", []string{"no access_token"}, func() {
			m.fail(w, http.StatusBadRequest, metaError{Message: "An access token is required to request this resource.", Code: 104})
		})
		return
	case token != m.cfg.AccessToken:
		reject(http.StatusBadRequest, "", []string{"access_token is not the configured token"}, func() {
			m.fail(w, http.StatusBadRequest, metaError{Message: "Invalid OAuth access token - Cannot parse access token", Code: 190})
		})
		return
	}

	events, raws, problems, tooOld := m.validate(params)
	if tooOld {
		// Meta refuses the whole request for one event older than 7 days, and says so this way.
		reject(http.StatusBadRequest, "", problems, func() {
			m.invalid(w, 2804003, "Event Timestamp Too Old", []string{"The timestamp for this event is too far in the past. Events need to be sent from your server within 7 days of when they occurred."})
		})
		return
	}
	if len(problems) > 0 {
		reject(http.StatusBadRequest, "", problems, func() { m.invalid(w, 0, "Invalid parameter", problems) })
		return
	}

	if status, retryAfter := m.scripted(); status != 0 {
		m.record(req, body, status, fmt.Sprintf("scripted: %d", status), nil)
		m.scriptedFailure(w, status, retryAfter)
		return
	}
	for i, e := range events {
		if reason, ok := m.rejection(e.ID); ok {
			m.record(req, body, http.StatusBadRequest, "rejected event "+e.ID, nil)
			// One invalid event sinks the whole batch; blame_field_specs points into the event. The
			// subcode's meaning is unconfirmed (spec §1); any 2804xxx is a permanent code 100.
			m.fail(w, http.StatusBadRequest, metaError{
				Message: "Invalid parameter", Code: 100, ErrorSubcode: 2804019,
				ErrorUserTitle: "Invalid event", ErrorUserMsg: fmt.Sprintf("data[%d]: %s", i, reason),
				ErrorData: map[string]any{"blame_field_specs": [][]string{{"data", fmt.Sprint(i)}}},
			})
			return
		}
	}
	code, _ := params["test_event_code"].(string)
	for i := range events {
		events[i].Raw, events[i].TestEventCode = raws[i], code
	}
	m.record(req, body, http.StatusOK, "accepted", events)
	writeJSON(w, http.StatusOK, map[string]any{"events_received": len(events), "messages": []string{}, "fbtrace_id": m.traceID()})
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// scriptedFailure answers a failure the test asked for, in Graph's shape for that kind of failure.
func (m *Meta) scriptedFailure(w http.ResponseWriter, status int, retryAfter time.Duration) {
	switch {
	case status == http.StatusTooManyRequests:
		retryAfterHeader(w, retryAfter)
		m.fail(w, status, metaError{Message: "(#4) Application request limit reached", Code: 4, IsTransient: true})
	case status >= 500:
		m.fail(w, status, metaError{Message: "An unexpected error has occurred. Please retry your request later.", Code: 2, IsTransient: true})
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		m.fail(w, status, metaError{Message: "Error validating access token: Session has expired.", Code: 190, ErrorSubcode: 463})
	default:
		m.invalid(w, 0, "Invalid parameter", []string{"scripted failure"})
	}
}

// metaTopLevel are the request parameters of the events edge (DOC-USING, the SDKs' EventRequest).
var metaTopLevel = []string{"data", "access_token", "test_event_code", "partner_agent", "namespace_id", "upload_id", "upload_tag", "upload_source"}

// params reads the request's parameters from the query string and the body, which may be JSON or
// a form (the documented curl example posts a form whose data field holds the JSON array).
func (m *Meta) params(req *http.Request, body []byte) (map[string]any, []string) {
	var c checker
	params := map[string]any{}
	for k, v := range req.URL.Query() {
		params[k] = v[0]
	}
	if auth := req.Header.Get("Authorization"); strings.HasPrefix(auth, "Bearer ") {
		// Accepted by Graph according to third-party captures (unconfirmed by Meta's docs).
		params["access_token"] = strings.TrimPrefix(auth, "Bearer ")
	}
	mediaType, mtParams, _ := mime.ParseMediaType(req.Header.Get("Content-Type"))
	switch mediaType {
	case "application/json":
		v, err := decode(body)
		if err != nil {
			return nil, []string{"body is not valid JSON: " + err.Error()}
		}
		obj, ok := c.object("body", v)
		if !ok {
			return nil, c.problems
		}
		for k, v := range obj {
			params[k] = v
		}
	case "application/x-www-form-urlencoded", "multipart/form-data":
		form, err := url.ParseQuery(string(body))
		if mediaType == "multipart/form-data" {
			var f *multipart.Form
			f, err = multipart.NewReader(bytes.NewReader(body), mtParams["boundary"]).ReadForm(32 << 20)
			if err == nil {
				form = f.Value
			}
		}
		if err != nil {
			return nil, []string{"unreadable form body: " + err.Error()}
		}
		for k, v := range form {
			if k == "data" {
				d, err := decode([]byte(v[0]))
				if err != nil {
					return nil, []string{"form field data is not a JSON array: " + err.Error()}
				}
				params[k] = d
				continue
			}
			params[k] = v[0]
		}
	default:
		return nil, []string{fmt.Sprintf("Content-Type must be application/json or a form, got %q", req.Header.Get("Content-Type"))}
	}
	c.fields("", params, metaTopLevel...)
	return params, c.problems
}

// metaEventFields are a server event's parameters (DOC-SERVER; PY event.py).
var metaEventFields = []string{
	"event_name", "event_time", "user_data", "custom_data", "event_source_url", "opt_out", "event_id",
	"action_source", "data_processing_options", "data_processing_options_country",
	"data_processing_options_state", "referrer_url", "app_data", "original_event_data",
	"customer_segmentation", "messaging_channel", "attribution_data", "advanced_measurement_table",
}

var metaActionSources = []string{"email", "website", "app", "phone_call", "chat", "physical_store", "system_generated", "business_messaging", "other"}

// validate checks the data array; tooOld reports an event past the 7-day limit, which Meta answers
// with its own error for the whole request.
func (m *Meta) validate(params map[string]any) (events []Event, raws []json.RawMessage, problems []string, tooOld bool) {
	var c checker
	if tc, ok := params["test_event_code"]; ok {
		c.nonEmpty("test_event_code", tc)
	}
	if pa, ok := params["partner_agent"]; ok {
		c.nonEmpty("partner_agent", pa)
	}
	dataV, ok := params["data"]
	if !ok {
		c.addf("data", "required parameter is missing")
		return nil, nil, c.problems, false
	}
	data, ok := c.array("data", dataV)
	if !ok {
		return nil, nil, c.problems, false
	}
	switch {
	case len(data) == 0:
		c.addf("data", "must hold at least one event")
	case len(data) > MetaMaxBatch:
		c.addf("data", "holds %d events; at most %d are allowed per request", len(data), MetaMaxBatch)
	}
	now := m.now()
	for i, ev := range data {
		path := fmt.Sprintf("data[%d]", i)
		raw, _ := json.Marshal(ev)
		raws = append(raws, raw)
		e, old := m.event(&c, path, ev, now)
		tooOld = tooOld || old
		events = append(events, e)
	}
	return events, raws, c.problems, tooOld
}

func (m *Meta) event(c *checker, path string, v any, now time.Time) (e Event, tooOld bool) {
	e.Endpoint = "events"
	obj, ok := c.object(path, v)
	if !ok {
		return e, false
	}
	c.fields(path, obj, metaEventFields...)
	c.required(path, obj, "event_name", "event_time", "action_source", "user_data")
	if v, ok := obj["event_name"]; ok {
		e.Name, _ = c.nonEmpty(path+".event_name", v)
	}
	if v, ok := obj["event_id"]; ok {
		e.ID, _ = c.nonEmpty(path+".event_id", v)
	}
	if v, ok := obj["event_time"]; ok {
		if secs, ok := c.integer(path+".event_time", v); ok {
			e.Time = time.Unix(secs, 0)
			switch {
			// Meta gives no rule for future times (unconfirmed); a strict reading refuses anything
			// more than a few minutes ahead, which also catches milliseconds sent as seconds.
			case e.Time.After(now.Add(10 * time.Minute)):
				c.addf(path+".event_time", "%d is in the future (Unix seconds expected)", secs)
			case now.Sub(e.Time) > MetaMaxAge:
				c.addf(path+".event_time", "%d is more than 7 days old", secs)
				tooOld = true
			}
		}
	}
	source := ""
	if v, ok := obj["action_source"]; ok {
		source, _ = c.oneOf(path+".action_source", v, metaActionSources...)
	}
	if v, ok := obj["event_source_url"]; ok {
		c.absURL(path+".event_source_url", v)
	} else if source == "website" {
		c.addf(path+".event_source_url", "required for website events")
	}
	if v, ok := obj["referrer_url"]; ok {
		c.absURL(path+".referrer_url", v)
	}
	if v, ok := obj["opt_out"]; ok {
		c.boolean(path+".opt_out", v)
	}
	if v, ok := obj["user_data"]; ok {
		metaUserData(c, path+".user_data", v, source)
	}
	if v, ok := obj["custom_data"]; ok {
		metaCustomData(c, path+".custom_data", v, e.Name)
	} else if e.Name == "Purchase" {
		c.addf(path+".custom_data", "Purchase requires custom_data with value and currency")
	}
	metaProcessingOptions(c, path, obj)
	return e, tooOld
}

// Customer information parameters (DOC-CIP): hashed ones, and ones Meta requires unhashed.
var (
	metaHashedUserFields = []string{"em", "ph", "fn", "ln", "db", "ge", "ct", "st", "zp", "country", "external_id", "f5first", "f5last", "fi", "dobd", "dobm", "doby"}
	metaPlainUserFields  = []string{"client_ip_address", "client_user_agent", "fbc", "fbp", "subscription_id", "fb_login_id", "lead_id", "anon_id", "madid", "page_id", "page_scoped_user_id", "ctwa_clid", "ig_account_id", "ig_sid"}
)

// fbc is fb.<subdomainIndex>.<creation time in ms>.<fbclid>, optionally followed by the parameter
// builder's appendix (a 2-character token or 8 characters); fbp the same with a random number.
var (
	metaFBC = regexp.MustCompile(`^fb\.[0-9]+\.[0-9]{13}\.[A-Za-z0-9_~-]{1,500}(\.([A-Za-z0-9_-]{2}|[A-Za-z0-9_-]{8}))?$`)
	metaFBP = regexp.MustCompile(`^fb\.[0-9]+\.[0-9]{13}\.[0-9]+(\.([A-Za-z0-9_-]{2}|[A-Za-z0-9_-]{8}))?$`)
)

func metaUserData(c *checker, path string, v any, source string) {
	ud, ok := c.object(path, v)
	if !ok {
		return
	}
	c.fields(path, ud, append(append([]string{}, metaHashedUserFields...), metaPlainUserFields...)...)
	if len(ud) == 0 {
		c.addf(path, "must hold at least one customer information parameter")
		return
	}
	for _, k := range metaHashedUserFields {
		if v, ok := ud[k]; ok {
			// external_id may be any advertiser ID for Meta; our product always sends the SHA-256 of
			// the visitor ID (DESIGN §4), so the fake holds it to that.
			c.hashed(join(path, k), v, true)
		}
	}
	if v, ok := ud["client_ip_address"]; ok {
		c.ip(join(path, "client_ip_address"), v)
	}
	if v, ok := ud["client_user_agent"]; ok {
		c.plain(join(path, "client_user_agent"), v)
	} else if source == "website" {
		c.addf(join(path, "client_user_agent"), "required for website events")
	}
	if v, ok := ud["fbc"]; ok {
		if s, ok := c.plain(join(path, "fbc"), v); ok && !metaFBC.MatchString(s) {
			c.addf(join(path, "fbc"), "must be fb.<subdomain index>.<creation time ms>.<fbclid>, got %s", describe(s))
		}
	}
	if v, ok := ud["fbp"]; ok {
		if s, ok := c.plain(join(path, "fbp"), v); ok && !metaFBP.MatchString(s) {
			c.addf(join(path, "fbp"), "must be fb.<subdomain index>.<creation time ms>.<random number>, got %s", describe(s))
		}
	}
	for _, k := range []string{"subscription_id", "anon_id", "madid", "page_id", "page_scoped_user_id", "ctwa_clid", "ig_account_id", "ig_sid"} {
		if v, ok := ud[k]; ok {
			c.plain(join(path, k), v)
		}
	}
	for _, k := range []string{"fb_login_id", "lead_id"} {
		if v, ok := ud[k]; ok {
			c.integer(join(path, k), v)
		}
	}
	// DOC-BP: an event whose only customer parameters fall within one of these sets is invalid.
	weak := [][]string{
		{"ct", "country", "st", "zp", "ge", "client_user_agent"},
		{"db", "client_user_agent"},
		{"fn", "ge"},
		{"ln", "ge"},
	}
	for _, set := range weak {
		if onlyKeys(ud, set) {
			c.addf(path, "customer information %v is too little to match (DOC-BP baseline); send IP and user agent, fbp, fbc, external_id or contact information", keys(ud))
			break
		}
	}
}

func onlyKeys(m map[string]any, allowed []string) bool {
	set := map[string]bool{}
	for _, k := range allowed {
		set[k] = true
	}
	for k := range m {
		if !set[k] {
			return false
		}
	}
	return true
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func metaCustomData(c *checker, path string, v any, eventName string) {
	cd, ok := c.object(path, v)
	if !ok {
		return
	}
	// Arbitrary custom properties are allowed in custom_data, so unknown keys are not refused here;
	// the standard ones must have their documented types.
	for _, k := range []string{"value", "predicted_ltv", "net_revenue"} {
		if v, ok := cd[k]; ok {
			c.number(join(path, k), v)
		}
	}
	if v, ok := cd["currency"]; ok {
		c.currency(join(path, "currency"), v, false)
	}
	if eventName == "Purchase" {
		c.required(path, cd, "value", "currency")
	}
	if v, ok := cd["content_ids"]; ok {
		c.stringArray(join(path, "content_ids"), v)
	}
	if v, ok := cd["content_type"]; ok {
		c.oneOf(join(path, "content_type"), v, "product", "product_group")
	}
	if v, ok := cd["num_items"]; ok {
		c.integer(join(path, "num_items"), v)
	}
	for _, k := range []string{"order_id", "search_string", "status", "content_name", "content_category"} {
		if v, ok := cd[k]; ok {
			c.str(join(path, k), v)
		}
	}
	if v, ok := cd["delivery_category"]; ok {
		c.oneOf(join(path, "delivery_category"), v, "in_store", "curbside", "home_delivery")
	}
	if v, ok := cd["contents"]; ok {
		items, ok := c.array(join(path, "contents"), v)
		for i, it := range items {
			if !ok {
				break
			}
			p := fmt.Sprintf("%s.contents[%d]", path, i)
			obj, ok := c.object(p, it)
			if !ok {
				continue
			}
			c.fields(p, obj, "id", "quantity", "item_price", "delivery_category", "title", "description", "brand", "category")
			c.required(p, obj, "id")
			if v, ok := obj["id"]; ok {
				c.nonEmpty(p+".id", v)
			}
			if v, ok := obj["quantity"]; ok {
				c.integer(p+".quantity", v)
			}
			if v, ok := obj["item_price"]; ok {
				c.number(p+".item_price", v)
			}
		}
	}
}

// metaProcessingOptions checks Limited Data Use (DOC-SERVER): only "LDU", with country and state
// codes when it is set.
func metaProcessingOptions(c *checker, path string, ev map[string]any) {
	v, ok := ev["data_processing_options"]
	if !ok {
		for _, k := range []string{"data_processing_options_country", "data_processing_options_state"} {
			if _, ok := ev[k]; ok {
				c.addf(join(path, k), "only allowed with data_processing_options")
			}
		}
		return
	}
	opts, ok := c.array(path+".data_processing_options", v)
	if !ok {
		return
	}
	ldu := false
	for i, o := range opts {
		if s, ok := c.oneOf(fmt.Sprintf("%s.data_processing_options[%d]", path, i), o, "LDU"); ok && s == "LDU" {
			ldu = true
		}
	}
	if !ldu {
		return
	}
	country, hasCountry := ev["data_processing_options_country"]
	if !hasCountry {
		c.addf(path+".data_processing_options_country", "required with LDU (0 = geolocate, 1 = USA)")
	} else if n, ok := c.integer(path+".data_processing_options_country", country); ok && n != 0 && n != 1 {
		c.addf(path+".data_processing_options_country", "must be 0 or 1, got %d", n)
	}
	state, hasState := ev["data_processing_options_state"]
	if hasCountry && !hasState {
		c.addf(path+".data_processing_options_state", "required when a country is set (0 = geolocate, 1000 = California)")
	} else if hasState {
		if n, ok := c.integer(path+".data_processing_options_state", state); ok && n != 0 && n != 1000 {
			c.addf(path+".data_processing_options_state", "must be 0 or 1000, got %d", n)
		}
	}
}
