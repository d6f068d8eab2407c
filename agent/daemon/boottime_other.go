//go:build !linux

package daemon

import "time"

// bootTime is unknown off Linux: no notice is then treated as left over from before a stop.
func bootTime() time.Time { return time.Time{} }

// sleptSinceBoot is unknown off Linux: a resume is then seen only when the
// hibernate notice is withdrawn.
func sleptSinceBoot() time.Duration { return 0 }
