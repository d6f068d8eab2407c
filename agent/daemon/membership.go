package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/spot-agent/spot-agent/agent/targets"
)

// membershipFileName is the file in the state directory (--state-dir, by
// default systemd's StateDirectory=) that remembers what a reversible drain
// took this instance out of.
const membershipFileName = "left-target-groups.json"

// membership is what a drain that the instance comes back from (a stop or
// restart of the agent, a hibernation) took it out of. The next start, or the
// resume, puts it back: on an ASG or Spot Fleet with load balancer
// integration nothing else would, and each restart would lose the fleet one
// instance of capacity. A drain for a notice deletes it: that one is for good.
type membership struct {
	InstanceID string        `json:"instance_id"`
	Reason     string        `json:"reason"`
	LeftAt     time.Time     `json:"left_at"`
	Groups     []memberGroup `json:"groups"`
}

// memberGroup is one target group and the ports the instance left.
type memberGroup struct {
	ARN   string  `json:"arn"`
	Ports []int32 `json:"ports"`
}

func newMembership(instanceID, reason string, at time.Time, groups []targets.Group) membership {
	m := membership{InstanceID: instanceID, Reason: reason, LeftAt: at.UTC()}
	for _, g := range groups {
		m.Groups = append(m.Groups, memberGroup{ARN: g.ARN, Ports: g.Ports})
	}
	return m
}

// groups returns the membership as target groups to join.
func (m membership) groups() []targets.Group {
	out := make([]targets.Group, 0, len(m.Groups))
	for _, g := range m.Groups {
		out = addGroup(out, targets.Group{ARN: g.ARN, Ports: g.Ports})
	}
	return out
}

// stateFile stores the membership across restarts. A nil *stateFile (no
// state directory) remembers nothing.
type stateFile struct{ path string }

// openState prepares dir; an empty dir means no state is kept.
func openState(dir string) (*stateFile, error) {
	if dir == "" {
		return nil, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	return &stateFile{path: filepath.Join(dir, membershipFileName)}, nil
}

// load returns the remembered membership; false when there is none.
func (f *stateFile) load() (membership, bool, error) {
	var m membership
	if f == nil {
		return m, false, nil
	}
	b, err := os.ReadFile(f.path)
	if errors.Is(err, fs.ErrNotExist) {
		return m, false, nil
	}
	if err != nil {
		return m, false, fmt.Errorf("read %s: %w", f.path, err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, false, fmt.Errorf("read %s: %w", f.path, err)
	}
	return m, true, nil
}

// save replaces the remembered membership, atomically.
func (f *stateFile) save(m membership) error {
	if f == nil {
		return nil
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	tmp := f.path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, f.path); err != nil {
		return fmt.Errorf("write %s: %w", f.path, err)
	}
	return nil
}

// clear forgets the membership.
func (f *stateFile) clear() error {
	if f == nil {
		return nil
	}
	if err := os.Remove(f.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", f.path, err)
	}
	return nil
}

// leftGroups are the groups and ports a drain took the instance out of:
// every group it deregistered from, or tried to (a registration that is still
// there is harmless to repeat), and pending, a return not made yet.
func leftGroups(outcomes []targets.Outcome, pending []targets.Group) []targets.Group {
	var out []targets.Group
	for _, o := range outcomes {
		if o.Result == targets.ResultNotRegistered || o.Result == targets.ResultNoGroups || len(o.Ports) == 0 {
			continue
		}
		out = addGroup(out, targets.Group{ARN: o.ARN, Ports: o.Ports})
	}
	for _, g := range pending {
		out = addGroup(out, g)
	}
	return out
}

// addGroup adds g's ports to the group of the same ARN in gs, or g itself.
func addGroup(gs []targets.Group, g targets.Group) []targets.Group {
	i := slices.IndexFunc(gs, func(x targets.Group) bool { return x.ARN == g.ARN })
	if i < 0 {
		return append(gs, targets.Group{ARN: g.ARN, Ports: slices.Clone(g.Ports)})
	}
	ports := append(slices.Clone(gs[i].Ports), g.Ports...)
	slices.Sort(ports)
	gs[i].Ports = slices.Compact(ports)
	return gs
}
