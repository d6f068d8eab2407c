package daemon

import "context"

// latch holds a value that is set exactly once and never changes after: the
// AWS side of the agent, which exists only once the instance's identity is
// known. Whoever needs it waits on it, bounded by their own context.
type latch[T any] struct {
	done chan struct{}
	v    T
}

func newLatch[T any]() *latch[T] { return &latch[T]{done: make(chan struct{})} }

// set stores v and wakes every waiter; it must be called once.
func (l *latch[T]) set(v T) {
	l.v = v
	close(l.done)
}

// ready is closed once the value is set.
func (l *latch[T]) ready() <-chan struct{} { return l.done }

// get returns the value if it is set.
func (l *latch[T]) get() (T, bool) {
	select {
	case <-l.done:
		return l.v, true
	default:
		var zero T
		return zero, false
	}
}

// wait returns the value once it is set, or false if ctx ends first.
func (l *latch[T]) wait(ctx context.Context) (T, bool) {
	select {
	case <-l.done:
		return l.v, true
	case <-ctx.Done():
		var zero T
		return zero, false
	}
}
