package caddymodule

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"

	"github.com/caddyserver/caddy/v2"
)

func init() {
	caddy.RegisterModule(AdminAPI{})
}

// AdminAPI is the `admin.api.capi` module: routes under /capi/ on Caddy's admin endpoint. Caddy
// instantiates it on every config load, before the apps; it has no config of its own and reads
// the shared storages, which outlive configs.
//
// Routes:
//
//	GET /capi/status   the storages in use: path, whether open and started, configured platforms
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
	}
}

// statusResponse is the body of GET /capi/status.
type statusResponse struct {
	Storages []storageStatus `json:"storages"`
}

func (AdminAPI) handleStatus(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return caddy.APIError{
			HTTPStatus: http.StatusMethodNotAllowed,
			Err:        fmt.Errorf("method not allowed; use GET"),
		}
	}
	resp := statusResponse{Storages: []storageStatus{}}
	var statusErr error
	storages.Range(func(_, val any) bool {
		st, err := val.(*sharedStorage).status(r.Context())
		if err != nil {
			statusErr = err
			return false
		}
		resp.Storages = append(resp.Storages, st)
		return true
	})
	if statusErr != nil {
		return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: statusErr}
	}
	sort.Slice(resp.Storages, func(i, j int) bool { return resp.Storages[i].Path < resp.Storages[j].Path })
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(resp); err != nil {
		return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: fmt.Errorf("encoding status: %v", err)}
	}
	return nil
}

// Interface guards
var _ caddy.AdminRouter = (*AdminAPI)(nil)
