package notify_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/spot-agent/spot-agent/agent/notify"
	"github.com/spot-agent/spot-agent/internal/testbed"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbed.StopShared()
	os.Exit(code)
}

// notification is one ObserveNotification call.
type notification struct {
	sink, phase, result string
	took                time.Duration
}

// observer records what Fanout reports.
type observer struct {
	mu    sync.Mutex
	notes []notification
	api   []string
}

var _ notify.Observer = (*observer)(nil)

func (o *observer) ObserveNotification(sink, phase, result string, took time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.notes = append(o.notes, notification{sink, phase, result, took})
}

func (o *observer) ObserveAPI(operation string, err error, _ time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	r := "success"
	if err != nil {
		r = "error"
	}
	o.api = append(o.api, operation+" "+r)
}

func (o *observer) results() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []string
	for _, n := range o.notes {
		out = append(out, n.sink+" "+n.phase+" "+n.result)
	}
	return out
}

// request is what a receiver saw; handlers send it here instead of asserting.
type request struct {
	method, contentType, idempotencyKey, userAgent string
	body                                           []byte
}

// receiver is an httptest webhook receiver that answers with the codes given,
// one per request (the last one repeats), and reports each request.
func receiver(t *testing.T, codes ...int) (string, <-chan request) {
	t.Helper()
	reqs := make(chan request, 100)
	var mu sync.Mutex
	n := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		reqs <- request{r.Method, r.Header.Get("Content-Type"), r.Header.Get("Idempotency-Key"), r.Header.Get("User-Agent"), body}
		mu.Lock()
		code := codes[min(n, len(codes)-1)]
		n++
		mu.Unlock()
		w.WriteHeader(code)
		_, _ = io.WriteString(w, http.StatusText(code))
	}))
	t.Cleanup(srv.Close)
	return srv.URL, reqs
}

// drain returns every request received so far.
func drain(reqs <-chan request) []request {
	var out []request
	for {
		select {
		case r := <-reqs:
			out = append(out, r)
		default:
			return out
		}
	}
}

// event is a complete detected event.
func event() notify.Event {
	e := notify.SampleEvent(notify.PhaseDetected)
	e.Time = time.Now()
	return e
}

// senderFunc is a hand-written fake Sender.
type senderFunc func(ctx context.Context, e notify.Event) error

func (f senderFunc) Send(ctx context.Context, e notify.Event) error { return f(ctx, e) }

var _ notify.Sender = senderFunc(nil)
