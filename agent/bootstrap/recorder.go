package bootstrap

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"

	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/smithy-go/middleware"
)

// Recorder counts the AWS operations made through the clients it is attached
// to, so a re-run can show that it changed nothing. It counts each operation
// once, however many times the SDK retried it.
type Recorder struct {
	mu     sync.Mutex
	counts map[string]int // "Service.Operation" → calls
}

// NewRecorder returns an empty Recorder.
func NewRecorder() *Recorder { return &Recorder{counts: map[string]int{}} }

// APIOption is added to aws.Config.APIOptions (or a client's Options.APIOptions).
func (r *Recorder) APIOption(stack *middleware.Stack) error {
	return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("spotAgentRecorder",
		func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			r.record(awsmiddleware.GetServiceID(ctx), awsmiddleware.GetOperationName(ctx))
			return next.HandleInitialize(ctx, in)
		}), middleware.Before)
}

func (r *Recorder) record(service, op string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.counts[service+"."+op]++
}

// Mutating reports whether an operation changes anything: everything but
// Describe*, List*, Get* and Head*.
func Mutating(op string) bool {
	if i := strings.LastIndexByte(op, '.'); i >= 0 {
		op = op[i+1:]
	}
	for _, p := range []string{"Describe", "List", "Get", "Head"} {
		if strings.HasPrefix(op, p) {
			return false
		}
	}
	return true
}

// Counts returns a copy of the calls so far, by "Service.Operation".
func (r *Recorder) Counts() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]int, len(r.counts))
	for k, v := range r.counts {
		out[k] = v
	}
	return out
}

// Totals returns the number of read and mutating calls so far.
func (r *Recorder) Totals() (reads, changes int) {
	for op, n := range r.Counts() {
		if Mutating(op) {
			changes += n
		} else {
			reads += n
		}
	}
	return reads, changes
}

// MutatingCalls returns the mutating calls so far, by operation.
func (r *Recorder) MutatingCalls() map[string]int {
	out := map[string]int{}
	for op, n := range r.Counts() {
		if Mutating(op) {
			out[op] = n
		}
	}
	return out
}

// Reset forgets every call.
func (r *Recorder) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.counts = map[string]int{}
}

// String lists the calls, one "Service.Operation N" per line, sorted.
func (r *Recorder) String() string {
	c := r.Counts()
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s %d\n", k, c[k])
	}
	return b.String()
}
