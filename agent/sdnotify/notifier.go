// Package sdnotify tells systemd about the agent's state (READY, STOPPING,
// WATCHDOG, STATUS). Every call is a no-op without NOTIFY_SOCKET.
package sdnotify

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// Notifier sends notifications to the service manager.
type Notifier struct {
	log *slog.Logger
}

// New returns a Notifier.
func New(log *slog.Logger) *Notifier { return &Notifier{log: log} }

func (n *Notifier) send(state string) {
	if _, err := daemon.SdNotify(false, state); err != nil {
		n.log.Warn("sd_notify failed", "state", state, "err", err)
	}
}

// Ready sends READY=1: the listeners are bound.
func (n *Notifier) Ready() { n.send(daemon.SdNotifyReady) }

// Stopping sends STOPPING=1: shutdown has begun.
func (n *Notifier) Stopping() { n.send(daemon.SdNotifyStopping) }

// Status sends a one-line STATUS= shown by systemctl status.
func (n *Notifier) Status(format string, args ...any) {
	n.send("STATUS=" + fmt.Sprintf(format, args...))
}

// Watchdog sends WATCHDOG=1 every half WatchdogSec for as long as the loop that
// proves liveness keeps calling its heartbeat. If the loop stalls for longer
// than half the interval, pings stop and systemd restarts the service. Without
// WATCHDOG_USEC it returns at once.
type Watchdog struct {
	n        *Notifier
	interval time.Duration
	last     atomic.Int64
}

// NewWatchdog reads WATCHDOG_USEC; the returned watchdog is nil if it is unset.
func (n *Notifier) NewWatchdog() (*Watchdog, error) {
	d, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		return nil, fmt.Errorf("read systemd watchdog settings: %w", err)
	}
	if d == 0 {
		return nil, nil
	}
	w := &Watchdog{n: n, interval: d}
	w.last.Store(time.Now().UnixNano())
	return w, nil
}

// Beat records that the liveness loop ran. Safe on a nil Watchdog.
func (w *Watchdog) Beat(at time.Time) {
	if w != nil {
		w.last.Store(at.UnixNano())
	}
}

// Run pings systemd until ctx is done. Safe on a nil Watchdog.
func (w *Watchdog) Run(ctx context.Context) error {
	if w == nil {
		return nil
	}
	half := w.interval / 2
	t := time.NewTicker(half)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			if now.Sub(time.Unix(0, w.last.Load())) <= half {
				w.n.send(daemon.SdNotifyWatchdog)
			} else {
				w.n.log.Error("liveness loop stalled: not pinging the systemd watchdog", "last_beat", time.Unix(0, w.last.Load()))
			}
		}
	}
}
