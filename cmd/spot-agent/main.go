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
	"slices"
	"strings"
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
	case "version", "--version", "-version":
		args[0] = "version"
		err = versionCommand(args[1:], stdout, stderr)
	case "bootstrap":
		err = bootstrapCommand(ctx, args[1:], stdout, stderr)
	case "status":
		err = statusCommand(ctx, args[1:], stdout, stderr)
	case "policy":
		err = policyCommand(ctx, args[1:], stdout, stderr)
	case "user-data":
		err = userDataCommand(ctx, args[1:], stdout, stderr)
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
		fmt.Fprintf(stderr, "spot-agent: unknown command %q%s\nRun 'spot-agent -h' for usage.\n", args[0], closestCommand(args[0]))
		return exitUsage
	}
	var (
		ue *usageError
		he *hintError
		re *reportedError
	)
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &re):
		return re.code
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "spot-agent %s: %v\n", args[0], ue.err)
		fmt.Fprintf(stderr, "Run 'spot-agent %s -h' for usage.\n", args[0])
		return exitUsage
	case errors.As(err, &he):
		fmt.Fprintf(stderr, "spot-agent %s: %v\n", args[0], he.err)
		fmt.Fprintf(stderr, "hint: %s\n", he.hint)
		return exitError
	}
	fmt.Fprintf(stderr, "spot-agent %s: %v\n", args[0], err)
	return exitError
}

// command is a subcommand as the usage lists it.
type command struct{ name, args, what string }

// agentCommands are the commands of every build: what runs on an instance.
var agentCommands = []command{
	{"run", "[flags]", "serve, watch instance metadata, drain on a notice"},
	{"install", "[flags]", "install the systemd unit and default settings, then start it"},
	{"version", "", "print the version (also --version)"},
}

func usage(w io.Writer) {
	fmt.Fprint(w, "spot-agent: the Spot instance's own interruption handler and hello page.\n\nUsage:\n")
	for _, c := range slices.Concat(agentCommands, stackCommands) {
		fmt.Fprintf(w, "  spot-agent %-22s %s\n", strings.TrimSpace(c.name+" "+c.args), c.what)
	}
	fmt.Fprint(w, buildNote+`
Every flag of 'run' can also be set as SPOT_AGENT_<FLAG> (e.g. SPOT_AGENT_POLL_INTERVAL=200ms).
Run 'spot-agent <command> -h' for a command's flags.
`)
}

// closestCommand names the command of this build nearest to name (a typo),
// as a hint; "" when none is near.
func closestCommand(name string) string {
	best, dist := "", 3
	for _, c := range slices.Concat(agentCommands, stackCommands) {
		if d := editDistance(strings.TrimLeft(name, "-"), c.name); d < dist {
			best, dist = c.name, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(": did you mean %s?", best)
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

// hintError is an error with one line that says what to do about it: exit 1.
type hintError struct {
	err  error
	hint string
}

func (h *hintError) Error() string { return h.err.Error() + " (" + h.hint + ")" }
func (h *hintError) Unwrap() error { return h.err }

// reportedError is an error its command has already reported (logged, and
// told systemd): main only exits with code.
type reportedError struct {
	code int
	err  error
}

func (r *reportedError) Error() string { return r.err.Error() }
func (r *reportedError) Unwrap() error { return r.err }
