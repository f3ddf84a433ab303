package main

import (
	"log/slog"
	"net/http"
	"strconv"

	"github.com/gatewaykit/dbmanager"
)

// Names the health endpoint reports.
const (
	serviceName    = "Gateway Management API"
	serviceVersion = "1.0.0"
)

// server is the Gateway Management API over any dbmanager.Store.
type server struct {
	apis apiRepo
	log  *slog.Logger
}

// newServer returns the service's HTTP handler: the /apis endpoints over
// store, health at /health, and request logging. It depends only on the
// Store interface, so tests run it over dbmanager.NewMemStore().
func newServer(store dbmanager.Store, health http.Handler, logger *slog.Logger) http.Handler {
	s := &server{apis: newAPIRepo(store), log: logger}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /apis", s.createAPI)
	mux.HandleFunc("GET /apis", s.listAPIs)
	mux.HandleFunc("GET /apis/{id}", s.getAPI)
	mux.HandleFunc("PUT /apis/{id}", s.replaceAPI)
	mux.HandleFunc("DELETE /apis/{id}", s.deleteAPI)
	mux.Handle("GET /health", health)
	// JSON answers for the paths and methods that match nothing above.
	mux.Handle("/apis", methodNotAllowed("GET, HEAD, POST"))
	mux.Handle("/apis/{id}", methodNotAllowed("GET, HEAD, PUT, DELETE"))
	mux.Handle("/health", methodNotAllowed("GET, HEAD"))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such endpoint: "+r.URL.Path)
	})
	return logRequests(logger, mux)
}

func methodNotAllowed(allow string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		writeError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed; use "+allow)
	})
}

// createAPI: POST /apis -> 201 with the stored API, Location and ETag.
func (s *server) createAPI(w http.ResponseWriter, r *http.Request) {
	spec, ok := s.readSpec(w, r, "")
	if !ok {
		return
	}
	a, err := s.apis.create(r.Context(), spec)
	if err != nil {
		storeError(w, r, s.log, err)
		return
	}
	w.Header().Set("Location", "/apis/"+a.ID)
	w.Header().Set("ETag", etag(a.Version))
	writeJSON(w, http.StatusCreated, a)
}

// listPage is the body of GET /apis.
type listPage struct {
	Items      []API  `json:"items"`
	NextCursor string `json:"next_cursor"`
}

// listAPIs: GET /apis?limit=&cursor= -> one page in id order.
func (s *server) listAPIs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := dbmanager.DefaultListLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > dbmanager.MaxListLimit {
			writeError(w, http.StatusBadRequest, "limit: must be an integer from 1 to "+strconv.Itoa(dbmanager.MaxListLimit))
			return
		}
		limit = n
	}
	cursor := q.Get("cursor")
	if cursor != "" && !validID(cursor) {
		writeError(w, http.StatusBadRequest, "cursor: not a cursor this service gave out (use next_cursor from the previous page)")
		return
	}
	items, next, err := s.apis.list(r.Context(), cursor, limit)
	if err != nil {
		storeError(w, r, s.log, err)
		return
	}
	writeJSON(w, http.StatusOK, listPage{Items: items, NextCursor: next})
}

// getAPI: GET /apis/{id} -> the API with its ETag.
func (s *server) getAPI(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	a, err := s.apis.get(r.Context(), id)
	if err != nil {
		storeError(w, r, s.log, err)
		return
	}
	w.Header().Set("ETag", etag(a.Version))
	writeJSON(w, http.StatusOK, a)
}

// replaceAPI: PUT /apis/{id} -> the replaced API. With If-Match it writes
// only over that version (412 otherwise).
func (s *server) replaceAPI(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	version, err := ifMatch(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	spec, ok := s.readSpec(w, r, id)
	if !ok {
		return
	}
	var a API
	if version != 0 {
		a, err = s.apis.replace(r.Context(), id, version, spec)
	} else {
		a, err = s.apis.replaceLatest(r.Context(), id, spec)
	}
	if err != nil {
		storeError(w, r, s.log, err)
		return
	}
	w.Header().Set("ETag", etag(a.Version))
	writeJSON(w, http.StatusOK, a)
}

// deleteAPI: DELETE /apis/{id} -> 204. With If-Match it deletes only that
// version (412 otherwise).
func (s *server) deleteAPI(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	version, err := ifMatch(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err := s.apis.delete(r.Context(), id, version); err != nil {
		storeError(w, r, s.log, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// pathID returns the {id} of the path, answering 404 itself when it
// cannot be an id this service made.
func pathID(w http.ResponseWriter, r *http.Request) (string, bool) {
	id := r.PathValue("id")
	if !validID(id) {
		writeError(w, http.StatusNotFound, "API not found")
		return "", false
	}
	return id, true
}

// readSpec decodes and checks the request body. pathID is the id in the
// URL for PUT ("" for POST, where a client may not choose the id).
func (s *server) readSpec(w http.ResponseWriter, r *http.Request, pathID string) (APISpec, bool) {
	var req apiRequest
	if !decodeBody(w, r, &req) {
		return APISpec{}, false
	}
	if req.ID != nil && (pathID == "" || *req.ID != pathID) {
		if pathID == "" {
			writeError(w, http.StatusBadRequest, "id: is chosen by the service; leave it out")
		} else {
			writeError(w, http.StatusBadRequest, "id: does not match the id in the URL")
		}
		return APISpec{}, false
	}
	spec, err := req.spec()
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return APISpec{}, false
	}
	return spec, true
}
