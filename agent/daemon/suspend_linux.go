package daemon

import (
	"time"

	"golang.org/x/sys/unix"
)

// sleptSinceBoot is how long the system has been suspended (or hibernated)
// since it booted: CLOCK_BOOTTIME counts that time, CLOCK_MONOTONIC does not.
// A suspended agent that sees it grow knows the instance has resumed, even if
// instance metadata still shows the hibernate notice.
func sleptSinceBoot() time.Duration {
	var boot, mono unix.Timespec
	if unix.ClockGettime(unix.CLOCK_BOOTTIME, &boot) != nil || unix.ClockGettime(unix.CLOCK_MONOTONIC, &mono) != nil {
		return 0
	}
	return time.Duration(boot.Nano() - mono.Nano())
}
