// Command spot-agent runs on every EC2 Spot instance of a web fleet: it serves
// the hello page, watches instance metadata for interruption notices, and takes
// the instance out of its load balancer before it goes away.
//
// main only wires signals and dispatches subcommands; the work is in agent/.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spot-agent/spot-agent/agent/daemon"
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
	// exitSecondSignal is used when a second signal skips the graceful path.
	exitSecondSignal = 130
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer func() {
		signal.Stop(sigs)
		close(sigs) // ends the goroutine below
	}()
	go func() {
		s, ok := <-sigs
		if !ok {
			return
		}
		cancel(daemon.SignalCause{Name: signalName(s)})
		if _, ok := <-sigs; ok {
			fmt.Fprintln(stderr, "spot-agent: second signal: exiting at once")
			os.Exit(exitSecondSignal)
		}
	}()

	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	var err error
	switch args[0] {
	case "run":
		err = runCommand(ctx, args[1:], stdout, stderr)
	case "version":
		err = versionCommand(args[1:], stdout, stderr)
	case "bootstrap":
		err = bootstrapCommand(ctx, args[1:], stdout, stderr)
	case "status":
		err = statusCommand(ctx, args[1:], stdout, stderr)
	case "policy":
		err = policyCommand(ctx, args[1:], stdout, stderr)
	case "teardown":
		err = teardownCommand(ctx, args[1:], os.Stdin, stdout, stderr)
	case "install":
		err = installCommand(ctx, args[1:], stdout, stderr)
	case "drill":
		err = drillCommand(ctx, args[1:], os.Stdin, stdout, stderr)
	case "-h", "-help", "--help", "help":
		usage(stdout)
		return exitOK
	default:
		fmt.Fprintf(stderr, "spot-agent: unknown command %q\n\n", args[0])
		usage(stderr)
		return exitUsage
	}
	var ue *usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "spot-agent %s: %v\n", args[0], ue.err)
		fmt.Fprintf(stderr, "Run 'spot-agent %s -h' for the flags.\n", args[0])
		return exitUsage
	}
	fmt.Fprintf(stderr, "spot-agent %s: %v\n", args[0], err)
	return exitError
}

func usage(w io.Writer) {
	fmt.Fprint(w, `spot-agent: the Spot instance's own interruption handler and hello page.

Usage:
  spot-agent run [flags]     serve, watch instance metadata, drain on a notice
  spot-agent version         print the version
  spot-agent bootstrap       build the workshop's stack (load balancer, fleet, scaling, ...)
  spot-agent status          show a stack: capacity, instances, target health
  spot-agent teardown        delete every resource of a stack
  spot-agent policy          print the instance role's policy for a fleet built elsewhere
  spot-agent install [flags] install the systemd unit and default settings, then start it
  spot-agent drill           interrupt one of a stack's instances through AWS FIS, measure it

Every flag of 'run' can also be set as SPOT_AGENT_<FLAG> (e.g. SPOT_AGENT_POLL_INTERVAL=200ms).
Run 'spot-agent <command> -h' for a command's flags.
`)
}

func signalName(s os.Signal) string {
	switch s {
	case syscall.SIGTERM:
		return "SIGTERM"
	case syscall.SIGINT:
		return "SIGINT"
	}
	return s.String()
}

// usageError is a bad command line: exit 2 with a hint.
type usageError struct{ err error }

func (u *usageError) Error() string { return u.err.Error() }
func (u *usageError) Unwrap() error { return u.err }
