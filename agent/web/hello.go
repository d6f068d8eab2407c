// Package web serves the traffic listener (the hello page and the load
// balancer's health check) and the admin listener (metrics), each on its own
// listener with its own mux.
package web

import (
	"net/http"
	"strconv"
	"sync/atomic"
)

// Counter counts answered requests on the traffic listener.
type Counter interface {
	Count(code int)
}

// Gauge tracks requests in flight.
type Gauge interface {
	Inc()
	Dec()
}

// page is what the traffic listener answers, prepared once per instance id so
// the hot path only copies bytes.
type page struct {
	hello []byte
	head  []byte // status line and fixed headers of the 200 hello answer
}

// Hello is the traffic listener's behaviour: "hello from <instance-id>" on /, readiness on
// /healthz. Until the instance id is known both answer 503 "starting"; once a
// drain starts /healthz answers 503 "draining" and every response carries
// Connection: close so keep-alive clients move to other targets.
type Hello struct {
	page     atomic.Pointer[page]
	draining atomic.Bool
	count    Counter
	inFlight Gauge
}

var (
	bodyOK       = []byte("ok\n")
	bodyStarting = []byte("starting\n")
	bodyDraining = []byte("draining\n")
	bodyNotFound = []byte("404 page not found\n")
	bodyMethod   = []byte("method not allowed\n")
)

// NewHello returns a handler that answers 503 until SetInstanceID.
func NewHello(count Counter, inFlight Gauge) *Hello {
	return &Hello{count: count, inFlight: inFlight}
}

// SetInstanceID makes the page answer and readiness pass (unless draining).
func (h *Hello) SetInstanceID(id string) {
	body := []byte("hello from " + id + "\n")
	n := strconv.Itoa(len(body))
	head := "HTTP/1.1 200 OK\r\nContent-Length: " + n + "\r\nContent-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\n"
	h.page.Store(&page{hello: body, head: []byte(head)})
}

// SetDraining fails readiness from now on and closes connections after each response.
func (h *Hello) SetDraining() { h.draining.Store(true) }

// Draining reports whether SetDraining was called.
func (h *Hello) Draining() bool { return h.draining.Load() }

// Ready reports whether /healthz answers 200.
func (h *Hello) Ready() bool { return h.page.Load() != nil && !h.draining.Load() }

// ServeHTTP answers one request.
func (h *Hello) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.inFlight.Inc()
	defer h.inFlight.Dec()
	hdr := w.Header()
	hdr["Content-Type"] = textPlain
	hdr["X-Content-Type-Options"] = nosniff
	draining := h.draining.Load()
	if draining {
		hdr["Connection"] = connClose
	}
	route := routeNotFound
	switch r.URL.Path {
	case "/":
		route = routeHello
	case "/healthz":
		route = routeHealth
	}
	code, body := h.route(route, r.Method == http.MethodGet || r.Method == http.MethodHead, draining)
	if code == http.StatusMethodNotAllowed {
		hdr["Allow"] = allowGetHead
	}
	hdr["Content-Length"] = []string{strconv.Itoa(len(body))}
	if code != http.StatusOK || route != routeHello {
		hdr["Cache-Control"] = noStore
	}
	w.WriteHeader(code)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
	h.count.Count(code)
}

// Routes of the traffic listener.
const (
	routeNotFound = iota
	routeHello
	routeHealth
)

// route decides the status and body of a request; both servers use it.
func (h *Hello) route(route int, methodOK, draining bool) (int, []byte) {
	if route == routeNotFound {
		return http.StatusNotFound, bodyNotFound
	}
	if !methodOK {
		return http.StatusMethodNotAllowed, bodyMethod
	}
	p := h.page.Load()
	switch {
	case p == nil:
		return http.StatusServiceUnavailable, bodyStarting
	case route == routeHello:
		return http.StatusOK, p.hello
	case draining:
		return http.StatusServiceUnavailable, bodyDraining
	}
	return http.StatusOK, bodyOK
}

// Header values shared by every response, so the hot path allocates none.
var (
	textPlain    = []string{"text/plain; charset=utf-8"}
	nosniff      = []string{"nosniff"}
	connClose    = []string{"close"}
	allowGetHead = []string{"GET, HEAD"}
	noStore      = []string{"no-store"}
)
