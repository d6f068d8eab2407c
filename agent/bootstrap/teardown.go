package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// ErrNotConfirmed is returned when the confirmation was refused: nothing was deleted.
var ErrNotConfirmed = errors.New("not confirmed: nothing was deleted")

// Teardown is what teardown found, and did.
type Teardown struct {
	Stack   string   `json:"stack"`
	Region  string   `json:"region"`
	Changes []Change `json:"resources"` // Delete or Absent, in the order they are deleted
	Steps   []Step   `json:"steps,omitempty"`
}

// Found returns how many resources are there to delete.
func (t *Teardown) Found() int {
	n := 0
	for _, c := range t.Changes {
		if c.Action == Delete {
			n++
		}
	}
	return n
}

// Teardown finds every resource that carries the stack's tag (whatever the
// flags of the bootstrap that made it), asks confirm, then deletes them in
// reverse dependency order, waiting where a later deletion depends on it.
// It deletes nothing that does not carry the tag: a VPC given with --vpc-id
// stays. Running it again, or on a half-built stack, deletes what is left.
// With dryRun it only returns what it would delete. A nil confirm confirms.
func (st *Stack) Teardown(ctx context.Context, dryRun bool, confirm func(*Teardown) (bool, error)) (*Teardown, error) {
	start := time.Now()
	s, err := st.newState(ctx, Config{Name: st.cfg.Name, Region: st.cfg.Region})
	if err != nil {
		return nil, err
	}
	rs := resources(s.cfg, true)
	found := make([]bool, len(rs))
	td := &Teardown{Stack: st.cfg.Name, Region: st.cfg.Region}
	// Found in dependency order (a listener is found through its load
	// balancer), listed and deleted in reverse.
	for i, r := range rs {
		ok, err := r.find(ctx, s)
		if err != nil {
			return nil, &StepError{Resource: r.name(), Err: fmt.Errorf("look up: %w", err)}
		}
		found[i] = ok
	}
	for i := len(rs) - 1; i >= 0; i-- {
		c := Change{Resource: rs[i].name(), Action: Absent}
		if found[i] {
			c.Action, c.ID = Delete, rs[i].plan(s).ID
		}
		td.Changes = append(td.Changes, c)
	}
	if dryRun || td.Found() == 0 {
		return td, nil
	}
	if confirm != nil {
		ok, err := confirm(td)
		if err != nil {
			return td, err
		}
		if !ok {
			return td, ErrNotConfirmed
		}
	}
	for i := len(rs) - 1; i >= 0; i-- {
		if !found[i] {
			continue
		}
		r := rs[i]
		if err := r.delete(ctx, s); err != nil && !notFound(err) {
			fmt.Fprintf(st.log, "[%6.1fs] %-22s delete    failed: %v\n", time.Since(start).Seconds(), r.name(), err)
			return td, &StepError{Resource: r.name(), Err: err}
		}
		id := td.Changes[len(rs)-1-i].ID
		td.Steps = append(td.Steps, Step{Resource: r.name(), Action: Delete, ID: id, Elapsed: time.Since(start)})
		fmt.Fprintf(st.log, "[%6.1fs] %-22s deleted   %s\n", time.Since(start).Seconds(), r.name(), id)
	}
	return td, nil
}

// WriteText prints what teardown finds.
func (t *Teardown) WriteText(w io.Writer) {
	fmt.Fprintf(w, "stack %s in %s: %d resources carry %s=%s\n", t.Stack, t.Region, t.Found(), StackTag, t.Stack)
	for _, c := range t.Changes {
		if c.Action == Delete {
			fmt.Fprintf(w, "  delete %-22s %s\n", c.Resource, c.ID)
		}
	}
}
