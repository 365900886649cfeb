package caddymodule

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-capi/caddy-capi/capi/delivery"
	"github.com/caddy-capi/caddy-capi/capi/event"
	"github.com/caddy-capi/caddy-capi/capi/identity"
	"github.com/caddy-capi/caddy-capi/capi/platform"
	"github.com/caddy-capi/caddy-capi/capi/queue"
	"github.com/caddy-capi/caddy-capi/capi/signal"
)

func init() {
	caddy.RegisterModule(AdminAPI{})
}

// AdminAPI is the `admin.api.capi` module: routes under /capi/ on Caddy's admin endpoint. Caddy
// instantiates it on every config load, before the apps; it has no config of its own and reads
// the shared storages, which outlive configs.
//
// Routes (every one but /capi/status takes ?storage=<path> to pick a storage when several are in
// use; with one, it is the default):
//
//	GET  /capi/status               the storages in use: path, whether open and started, platforms
//	GET  /capi/queue                depth and delivery counters per platform
//	GET  /capi/dead-letters         ?platform=meta&limit=50&cursor=<id>: dead letters, oldest first
//	POST /capi/dead-letters/replay  {"platform":"meta","ids":["…"]} or {"platform":"meta","all":true}
//	POST /capi/dead-letters/drop    the same body; deletes them for good
//	POST /capi/test-event           {"event":"Purchase"}: one test event per platform with a test_event_code
//	POST /capi/visitors/erase       {"visitor_id":"…"}: deletes a visitor's record (privacy requests)
//	GET  /capi/dashboard            HTML page of delivery and signal coverage per platform, every
//	                                storage; JSON with Accept: application/json or at /capi/dashboard.json
//
// Errors are caddy.APIError with a message that names what was expected. Nothing here returns
// personal data: dead letters show the event without its IP, user agent or customer data.
type AdminAPI struct{}

// CaddyModule returns the Caddy module information.
func (AdminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.capi",
		New: func() caddy.Module { return new(AdminAPI) },
	}
}

// Routes returns the admin routes of caddy-capi.
func (a AdminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{
		{Pattern: "/capi/status", Handler: caddy.AdminHandlerFunc(a.handleStatus)},
		{Pattern: "/capi/queue", Handler: caddy.AdminHandlerFunc(a.handleQueue)},
		{Pattern: "/capi/dead-letters", Handler: caddy.AdminHandlerFunc(a.handleDeadLetters)},
		{Pattern: "/capi/dead-letters/replay", Handler: caddy.AdminHandlerFunc(a.handleReplay)},
		{Pattern: "/capi/dead-letters/drop", Handler: caddy.AdminHandlerFunc(a.handleDrop)},
		{Pattern: "/capi/test-event", Handler: caddy.AdminHandlerFunc(a.handleTestEvent)},
		{Pattern: "/capi/visitors/erase", Handler: caddy.AdminHandlerFunc(a.handleErase)},
		{Pattern: "/capi/dashboard", Handler: caddy.AdminHandlerFunc(a.handleDashboard)},
		{Pattern: "/capi/dashboard.json", Handler: caddy.AdminHandlerFunc(a.handleDashboard)},
	}
}

// Limits of the admin routes.
const (
	defaultDeadLetterPage = 50
	maxDeadLetterPage     = 1000
	// maxAdminBody bounds a POST body: a replay of a full page of IDs fits many times over.
	maxAdminBody = 1 << 20
	// adminWait bounds how long a route waits for a storage whose config is starting.
	adminWait = 2 * time.Second
)

// statusResponse is the body of GET /capi/status.
type statusResponse struct {
	Storages []storageStatus `json:"storages"`
}

func (AdminAPI) handleStatus(w http.ResponseWriter, r *http.Request) error {
	if err := requireMethod(r, http.MethodGet); err != nil {
		return err
	}
	sts, err := storageStatuses(r.Context())
	if err != nil {
		return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: err}
	}
	resp := statusResponse{Storages: sts}
	return writeJSON(w, resp)
}

// queueResponse is the body of GET /capi/queue.
type queueResponse struct {
	Storage   string                            `json:"storage"`
	Platforms map[string]delivery.PlatformStats `json:"platforms"`
}

func (AdminAPI) handleQueue(w http.ResponseWriter, r *http.Request) error {
	if err := requireMethod(r, http.MethodGet); err != nil {
		return err
	}
	s, engine, err := openStorage(r)
	if err != nil {
		return err
	}
	stats, err := engine.Stats(r.Context())
	if err != nil {
		return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: err}
	}
	if stats == nil {
		stats = map[string]delivery.PlatformStats{}
	}
	return writeJSON(w, queueResponse{Storage: s.path, Platforms: stats})
}

// deadLetterView is a dead letter as the admin API shows it: the event's identity, what it was
// worth and why it failed, with the signals it carried named but not shown, so that the listing
// holds no personal data (the IP and user agent are kept unhashed for the platforms).
type deadLetterView struct {
	ID           string    `json:"id"`
	Platform     string    `json:"platform"`
	Event        string    `json:"event"`
	EventID      string    `json:"event_id"`
	EventTime    time.Time `json:"event_time"`
	ActionSource string    `json:"action_source,omitempty"`
	Value        string    `json:"value,omitempty"`
	Currency     string    `json:"currency,omitempty"`
	OrderID      string    `json:"order_id,omitempty"`
	Test         bool      `json:"test,omitempty"`
	// ExternalID is the SHA-256 of the visitor ID, as every platform receives it.
	ExternalID string `json:"external_id,omitempty"`
	// Signals names the matching signals the event carried (ip, user_agent, fbc, em, …).
	Signals  []string  `json:"signals"`
	Reason   string    `json:"reason"`
	Attempts int       `json:"attempts"`
	Enqueued time.Time `json:"enqueued"`
	Buried   time.Time `json:"buried"`
}

func newDeadLetterView(d queue.DeadLetter) deadLetterView {
	e := d.Event
	return deadLetterView{
		ID: d.ID, Platform: d.Platform,
		Event: e.Name, EventID: e.ID, EventTime: e.Time, ActionSource: e.ActionSource,
		Value: e.Value, Currency: e.Currency, OrderID: e.OrderID, Test: e.Test,
		ExternalID: e.User.ExternalID,
		Signals:    signalNames(e.User),
		Reason:     d.Reason, Attempts: d.Attempts, Enqueued: d.Enqueued, Buried: d.Buried,
	}
}

// signalNames lists which matching signals u holds, by their JSON names, without their values.
func signalNames(u event.User) []string {
	names := []string{}
	for _, s := range []struct {
		name string
		set  bool
	}{
		{"ip", u.IP != ""}, {"user_agent", u.UserAgent != ""}, {"locale", u.Locale != ""},
		{"fbc", u.FBC != ""}, {"fbp", u.FBP != ""}, {"ttclid", u.TTCLID != ""}, {"ttp", u.TTP != ""},
		{"gclid", u.GCLID != ""}, {"gbraid", u.GBRAID != ""}, {"wbraid", u.WBRAID != ""},
	} {
		if s.set {
			names = append(names, s.name)
		}
	}
	for _, p := range []struct {
		name    string
		profile event.Profile
	}{{platform.Meta, u.Meta}, {platform.TikTok, u.TikTok}, {platform.Google, u.Google}} {
		b, err := json.Marshal(p.profile)
		if err != nil {
			continue
		}
		var fields map[string]json.RawMessage
		if json.Unmarshal(b, &fields) != nil {
			continue
		}
		keys := make([]string, 0, len(fields))
		for k := range fields {
			keys = append(keys, p.name+"."+k)
		}
		slices.Sort(keys)
		names = append(names, keys...)
	}
	return names
}

// deadLettersResponse is the body of GET /capi/dead-letters. NextCursor, when set, is the cursor
// of the next page.
type deadLettersResponse struct {
	Storage     string           `json:"storage"`
	Platform    string           `json:"platform"`
	DeadLetters []deadLetterView `json:"dead_letters"`
	NextCursor  string           `json:"next_cursor,omitempty"`
}

func (AdminAPI) handleDeadLetters(w http.ResponseWriter, r *http.Request) error {
	if err := requireMethod(r, http.MethodGet); err != nil {
		return err
	}
	q := r.URL.Query()
	name, err := platformParam(q.Get("platform"))
	if err != nil {
		return err
	}
	limit := defaultDeadLetterPage
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxDeadLetterPage {
			return badRequest(fmt.Errorf("limit: expected a number from 1 to %d", maxDeadLetterPage))
		}
		limit = n
	}
	s, engine, err := openStorage(r)
	if err != nil {
		return err
	}
	dead, err := engine.DeadLetters(r.Context(), name, q.Get("cursor"), limit)
	if err != nil {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: err}
	}
	resp := deadLettersResponse{Storage: s.path, Platform: name, DeadLetters: make([]deadLetterView, 0, len(dead))}
	for _, d := range dead {
		resp.DeadLetters = append(resp.DeadLetters, newDeadLetterView(d))
	}
	if len(dead) == limit {
		resp.NextCursor = dead[len(dead)-1].ID
	}
	return writeJSON(w, resp)
}

// deadLetterRequest is the body of the replay and drop routes: some dead letters of a platform by
// ID, or all of them, which must be asked for explicitly.
type deadLetterRequest struct {
	Platform string   `json:"platform"`
	IDs      []string `json:"ids,omitempty"`
	All      bool     `json:"all,omitempty"`
}

// deadLetterResult is the answer of the replay and drop routes.
type deadLetterResult struct {
	Platform string `json:"platform"`
	Replayed *int   `json:"replayed,omitempty"`
	Dropped  *int   `json:"dropped,omitempty"`
}

func (AdminAPI) handleReplay(w http.ResponseWriter, r *http.Request) error {
	req, engine, err := deadLetterCall(r)
	if err != nil {
		return err
	}
	n, err := engine.Replay(r.Context(), req.Platform, req.IDs...)
	if err != nil {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: err}
	}
	return writeJSON(w, deadLetterResult{Platform: req.Platform, Replayed: &n})
}

func (AdminAPI) handleDrop(w http.ResponseWriter, r *http.Request) error {
	req, engine, err := deadLetterCall(r)
	if err != nil {
		return err
	}
	n, err := engine.Drop(r.Context(), req.Platform, req.IDs...)
	if err != nil {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: err}
	}
	return writeJSON(w, deadLetterResult{Platform: req.Platform, Dropped: &n})
}

// deadLetterCall checks a replay or drop request.
func deadLetterCall(r *http.Request) (deadLetterRequest, *delivery.Engine, error) {
	var req deadLetterRequest
	if err := requireMethod(r, http.MethodPost); err != nil {
		return req, nil, err
	}
	if err := decodeBody(r, &req); err != nil {
		return req, nil, err
	}
	name, err := platformParam(req.Platform)
	if err != nil {
		return req, nil, err
	}
	req.Platform = name
	switch {
	case req.All && len(req.IDs) > 0:
		return req, nil, badRequest(errors.New(`give either "ids" or "all": true, not both`))
	case !req.All && len(req.IDs) == 0:
		return req, nil, badRequest(errors.New(`expected "ids": the dead letters' IDs from GET /capi/dead-letters, or "all": true for every dead letter of the platform`))
	}
	for _, id := range req.IDs {
		if id == "" {
			return req, nil, badRequest(errors.New("ids: an ID is empty"))
		}
	}
	_, engine, err := openStorage(r)
	return req, engine, err
}

// testEventRequest is the (optional) body of POST /capi/test-event.
type testEventRequest struct {
	// Event is the event name. Default: "Purchase".
	Event string `json:"event,omitempty"`
}

// testEventResponse says which platforms the test event was enqueued for, and why the others
// were skipped.
type testEventResponse struct {
	EventID   string            `json:"event_id"`
	Event     string            `json:"event"`
	Platforms []string          `json:"platforms"`
	Skipped   map[string]string `json:"skipped,omitempty"`
}

func (AdminAPI) handleTestEvent(w http.ResponseWriter, r *http.Request) error {
	if err := requireMethod(r, http.MethodPost); err != nil {
		return err
	}
	req := testEventRequest{Event: "Purchase"}
	if r.ContentLength != 0 {
		if err := decodeBody(r, &req); err != nil {
			return err
		}
	}
	if err := checkEventName(req.Event); err != nil {
		return badRequest(fmt.Errorf("event: %v", err))
	}
	s, _, err := openStorage(r)
	if err != nil {
		return err
	}
	cfg := s.settings.Load()
	if cfg == nil {
		return caddy.APIError{HTTPStatus: http.StatusServiceUnavailable, Err: fmt.Errorf("no config runs on storage %s", s.path)}
	}
	codes := cfg.testEventCodes()
	resp := testEventResponse{Event: req.Event, Platforms: []string{}, Skipped: map[string]string{}}
	for _, name := range cfg.platforms() {
		if codes[name] == "" {
			resp.Skipped[name] = "no test_event_code configured, so a test event would count as a real one"
			continue
		}
		resp.Platforms = append(resp.Platforms, name)
	}
	if len(resp.Platforms) == 0 {
		return caddy.APIError{HTTPStatus: http.StatusConflict,
			Err: errors.New("no configured platform has a test_event_code; set one in the platform's block to send test events")}
	}
	id, err := randomEventID()
	if err != nil {
		return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: err}
	}
	resp.EventID = id
	// The platforms refuse an event with no matching signal, so the test event carries an
	// external_id: the hash of a fixed marker, which identifies nobody.
	marker := sha256.Sum256([]byte("caddy-capi test event"))
	e := event.Event{
		Name:         req.Event,
		ID:           id,
		Time:         time.Now().UTC(),
		ActionSource: event.ActionSystemGenerated,
		Value:        "1.00",
		Currency:     "USD",
		OrderID:      "test-" + id,
		Test:         true,
		User:         event.User{ExternalID: hex.EncodeToString(marker[:])},
	}
	if _, err := s.enqueueEdge(r.Context(), resp.Platforms, e); err != nil {
		return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: err}
	}
	return writeJSON(w, resp)
}

// randomEventID is a fresh test event's ID: 128 random bits in hex, like an event ID without an
// order.
func randomEventID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("event ID: %v", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// eraseRequest is the body of POST /capi/visitors/erase.
type eraseRequest struct {
	VisitorID string `json:"visitor_id"`
}

// eraseResponse confirms that no record of the visitor is left, whether or not there was one, and
// counts the dead letters of theirs that were dropped with it.
type eraseResponse struct {
	VisitorID          string `json:"visitor_id"`
	Erased             bool   `json:"erased"`
	DeadLettersDropped int    `json:"dead_letters_dropped"`
}

func (AdminAPI) handleErase(w http.ResponseWriter, r *http.Request) error {
	if err := requireMethod(r, http.MethodPost); err != nil {
		return err
	}
	var req eraseRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	if !identity.ValidVisitorID(req.VisitorID) {
		return badRequest(errors.New("visitor_id: expected the 24-character visitor ID from the _capi_vid cookie"))
	}
	s, engine, err := openStorage(r)
	if err != nil {
		return err
	}
	_, visitors, err := s.edgeHandles(r.Context(), adminWait)
	if err != nil {
		return caddy.APIError{HTTPStatus: http.StatusServiceUnavailable, Err: err}
	}
	if err := visitors.Erase(r.Context(), req.VisitorID); err != nil {
		return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: err}
	}
	// Dead letters keep the event as it was, IP and user agent included; events still waiting
	// are sent (they are conversions already owed to the platforms).
	dropped, err := engine.DropDeadLettersOf(r.Context(), signal.ExternalID(req.VisitorID))
	if err != nil {
		return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: err}
	}
	return writeJSON(w, eraseResponse{VisitorID: req.VisitorID, Erased: true, DeadLettersDropped: dropped})
}

// openStorage picks the storage a request is about (?storage=<path>, or the only one in use) and
// waits briefly for it to open, since a config may be starting.
func openStorage(r *http.Request) (*sharedStorage, *delivery.Engine, error) {
	want := r.URL.Query().Get("storage")
	var found []*sharedStorage
	storages.Range(func(key, val any) bool {
		if want == "" || key.(string) == want {
			found = append(found, val.(*sharedStorage))
		}
		return true
	})
	switch {
	case len(found) == 0 && want != "":
		return nil, nil, caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("no storage %s is in use", want)}
	case len(found) == 0:
		return nil, nil, caddy.APIError{HTTPStatus: http.StatusNotFound, Err: errors.New("the capi app is not configured")}
	case len(found) > 1:
		return nil, nil, caddy.APIError{HTTPStatus: http.StatusBadRequest,
			Err: errors.New("several storages are in use; pick one with ?storage=<path> (see GET /capi/status)")}
	}
	s := found[0]
	if _, _, err := s.edgeHandles(r.Context(), adminWait); err != nil {
		return nil, nil, caddy.APIError{HTTPStatus: http.StatusServiceUnavailable, Err: err}
	}
	engine := s.deliveryEngine()
	if engine == nil {
		return nil, nil, caddy.APIError{HTTPStatus: http.StatusServiceUnavailable, Err: fmt.Errorf("storage %s was released", s.path)}
	}
	return s, engine, nil
}

// platformParam checks a platform name.
func platformParam(v string) (string, error) {
	switch v {
	case platform.Meta, platform.TikTok, platform.Google:
		return v, nil
	case "":
		return "", badRequest(errors.New("platform: expected meta, tiktok or google"))
	}
	return "", badRequest(fmt.Errorf("platform: expected meta, tiktok or google, got %q", v))
}

func requireMethod(r *http.Request, method string) error {
	if r.Method == method {
		return nil
	}
	return caddy.APIError{
		HTTPStatus: http.StatusMethodNotAllowed,
		Err:        fmt.Errorf("method not allowed; use %s", method),
	}
}

// decodeBody reads a JSON body into v, refusing unknown fields and trailing data, so that a typo
// in a field name is reported rather than ignored.
func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxAdminBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest(fmt.Errorf("decoding the JSON body: %v", err))
	}
	if dec.More() {
		return badRequest(errors.New("decoding the JSON body: more than one JSON value"))
	}
	return nil
}

func badRequest(err error) error {
	return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: err}
}

func writeJSON(w http.ResponseWriter, v any) error {
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(v); err != nil {
		return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: fmt.Errorf("encoding the answer: %v", err)}
	}
	return nil
}

// Interface guards
var _ caddy.AdminRouter = (*AdminAPI)(nil)
