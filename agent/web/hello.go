// Package web serves the traffic listener (the hello page and the load
// balancer's health check, answered by Hello) and the admin listener (metrics,
// answered by Admin's mux), each a net/http Server on its own port.
package web

import (
	"net/http"
	"strconv"
	"sync"
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

// page is what the traffic listener answers on /, prepared once per instance id.
type page struct {
	hello []byte
}

// Readiness states, in the order they win: a starting agent is not ready
// whatever the application says, and a drain hides the application's health.
const (
	StateReady        = "ready"
	StateStarting     = "starting"
	StateDraining     = "draining"
	StateAppUnhealthy = "app_unhealthy"
)

// ReadinessObserver is told the readiness state whenever it changes.
type ReadinessObserver interface {
	SetReadiness(state string)
}

// Hello is the traffic listener's behaviour: "hello from <instance-id>" on /, readiness on
// /healthz. Until the instance id is known both answer 503 "starting"; once a
// drain starts /healthz answers 503 "draining" and every response carries
// Connection: close so keep-alive clients move to other targets.
//
// As the sidecar of an application, the hello page can be off (/ is then 404)
// and readiness can be gated on the application's health: /healthz answers 503
// with the application's failure in the body while it is unhealthy.
type Hello struct {
	page     atomic.Pointer[page]
	draining atomic.Bool
	noHello  atomic.Bool
	app      atomic.Pointer[appState] // nil: readiness is not gated on an application
	count    Counter
	inFlight Gauge

	mu        sync.Mutex // serializes state changes, so the observer sees them in order
	observer  ReadinessObserver
	lastState string
}

// appState is the application's health as last probed.
type appState struct {
	ok     bool
	probed bool   // false until the first health check answers or fails
	body   []byte // the 503 body while !ok
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

// ObserveReadiness tells o the readiness state now and at every change.
func (h *Hello) ObserveReadiness(o ReadinessObserver) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.observer, h.lastState = o, ""
	h.publishLocked()
}

// ServeHelloPage turns the hello page on / on or off (404). Readiness on
// /healthz is served either way.
func (h *Hello) ServeHelloPage(on bool) { h.noHello.Store(!on) }

// SetInstanceID makes the page answer and readiness pass (unless draining).
func (h *Hello) SetInstanceID(id string) {
	body := []byte("hello from " + id + "\n")
	h.change(func() { h.page.Store(&page{hello: body}) })
}

// SetDraining fails readiness from now on and closes connections after each
// response: every answer carries Connection: close, which net/http honours.
// Idle keep-alive connections are not closed at once (as
// http.Server.SetKeepAlivesEnabled(false) would): a load balancer may be
// sending a request on one until it sees readiness fail, and would get a
// reset instead of an answer. They close on their next answer, on their idle
// timeout, or at Shutdown.
func (h *Hello) SetDraining() { h.change(func() { h.draining.Store(true) }) }

// SetServing ends a drain: readiness follows the page and the application
// again (the instance resumed from hibernation).
func (h *Hello) SetServing() { h.change(func() { h.draining.Store(false) }) }

// Draining reports whether readiness fails for a drain (from SetDraining
// until SetServing).
func (h *Hello) Draining() bool { return h.draining.Load() }

// GateOnApp makes readiness wait for the application: /healthz answers 503
// "starting" until the first SetAppHealth, then follows it.
func (h *Hello) GateOnApp(what string) {
	h.change(func() {
		h.app.Store(&appState{body: []byte("starting: waiting for the application's first health check (" + what + ")\n")})
	})
}

// SetAppHealth records the application's health; detail says what failed.
func (h *Hello) SetAppHealth(ok bool, detail string) {
	st := &appState{ok: ok, probed: true}
	if !ok {
		st.body = []byte("application unhealthy: " + detail + "\n")
	}
	h.change(func() { h.app.Store(st) })
}

// Ready reports whether /healthz answers 200.
func (h *Hello) Ready() bool { return h.state() == StateReady }

// state is the readiness state as /healthz answers it.
func (h *Hello) state() string {
	switch a := h.app.Load(); {
	case h.page.Load() == nil:
		return StateStarting
	case h.draining.Load():
		return StateDraining
	case a != nil && !a.probed:
		return StateStarting
	case a != nil && !a.ok:
		return StateAppUnhealthy
	}
	return StateReady
}

// change applies f and tells the observer if the state moved.
func (h *Hello) change(f func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	f()
	h.publishLocked()
}

func (h *Hello) publishLocked() {
	if h.observer == nil {
		return
	}
	if s := h.state(); s != h.lastState {
		h.lastState = s
		h.observer.SetReadiness(s)
	}
}

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

// route decides the status and body of a request.
func (h *Hello) route(route int, methodOK, draining bool) (int, []byte) {
	if route == routeNotFound || (route == routeHello && h.noHello.Load()) {
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
	if a := h.app.Load(); a != nil && !a.ok {
		return http.StatusServiceUnavailable, a.body
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
