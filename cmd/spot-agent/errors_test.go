package main

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/spot-agent/spot-agent/agent/daemon"
)

// Every variable named like a setting that is none is logged once, with the
// setting nearest to it; the settings themselves and other programs'
// variables are not.
func TestRunWarnsOfEveryUnknownSetting(t *testing.T) {
	fs, _, _, _ := runFlagSet()
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	warnUnknownSettings(log, []string{
		"SPOT_AGENT_TARGET_GROUP_ARNS=arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/a/0123456789abcdef",
		"SPOT_AGENT_LISTEN=:8081",
		"SPOT_AGENT_EXIT_MARGN=5s",
		"SPOT_AGENT_COMPLETELY_DIFFERENT=1",
		"PATH=/usr/bin",
		"spot_agent_poll_interval=1s",
		"AWS_REGION=us-east-1",
	}, fs)
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	want := []string{
		`level=WARN msg="unknown setting ignored: no flag of run is named so ('spot-agent run -h' lists them)" variable=SPOT_AGENT_COMPLETELY_DIFFERENT`,
		`level=WARN msg="unknown setting ignored" variable=SPOT_AGENT_EXIT_MARGN did_you_mean=SPOT_AGENT_EXIT_MARGIN flag=--exit-margin`,
		`level=WARN msg="unknown setting ignored" variable=SPOT_AGENT_TARGET_GROUP_ARNS did_you_mean=SPOT_AGENT_TARGET_GROUP_ARN flag=--target-group-arn`,
	}
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), len(want), logs.String())
	}
	for i, w := range want {
		if _, rest, _ := strings.Cut(lines[i], " "); rest != w { // after time=
			t.Errorf("line %d:\n%s\nwant\n%s", i, rest, w)
		}
	}
}

// A listener that cannot be bound is named with its address, its flag and
// its setting, and the hint fits the cause.
func TestListenHint(t *testing.T) {
	taken := func(err error) *daemon.ListenError {
		return &daemon.ListenError{Listener: "traffic", Flag: "listen", Addr: ":80",
			Err: fmt.Errorf("traffic listener: %w", &net.OpError{Op: "listen", Net: "tcp", Err: os.NewSyscallError("bind", err)})}
	}
	for _, tc := range []struct {
		err  *daemon.ListenError
		want []string
	}{
		{taken(syscall.EADDRINUSE), []string{"another program listens on :80", "--listen, or SPOT_AGENT_LISTEN in its settings file", "SPOT_AGENT_LISTEN=:8081 and SPOT_AGENT_HELLO=false"}},
		{taken(syscall.EACCES), []string{"a port below 1024 needs root or CAP_NET_BIND_SERVICE", "--listen or SPOT_AGENT_LISTEN"}},
		{taken(syscall.EADDRNOTAVAIL), []string{":80 is not an address of this machine"}},
		{&daemon.ListenError{Listener: "admin", Flag: "admin-listen", Addr: "127.0.0.1:10190", Err: os.NewSyscallError("bind", syscall.EADDRINUSE)},
			[]string{"another program listens on 127.0.0.1:10190", "--admin-listen, or SPOT_AGENT_ADMIN_LISTEN"}},
	} {
		h := listenHint(tc.err)
		for _, w := range tc.want {
			if !strings.Contains(h, w) {
				t.Errorf("%v: hint %q lacks %q", tc.err, h, w)
			}
		}
		if tc.err.Flag == "admin-listen" && strings.Contains(h, "HELLO") {
			t.Errorf("the admin listener's hint speaks of the hello page: %s", h)
		}
	}
	if got, want := taken(syscall.EADDRINUSE).Error(), "--listen: cannot listen on :80: address already in use"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if !errors.Is(taken(syscall.EADDRINUSE), syscall.EADDRINUSE) {
		t.Error("a ListenError does not unwrap to its cause")
	}
}
