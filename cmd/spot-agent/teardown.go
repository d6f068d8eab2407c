//go:build !agentonly

package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/spot-agent/spot-agent/agent/bootstrap"
)

func teardownCommand(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("teardown", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var sf stackFlags
	var yes, dryRun bool
	sf.register(fs, true)
	fs.BoolVar(&yes, "yes", false, "do not ask for confirmation")
	fs.BoolVar(&dryRun, "dry-run", false, "list what would be deleted and delete nothing")
	fs.Usage = func() {
		fmt.Fprintln(stderr, `Usage: spot-agent teardown --name NAME [--region REGION] [--yes]

Delete every resource that carries the tag spot-agent:stack=NAME, in reverse
dependency order: the fleet first (its instances terminated and waited for),
the network last. Nothing without the tag is touched (a VPC given to
bootstrap with --vpc-id stays). It asks before deleting unless --yes; run it
again to finish a teardown that was interrupted.
Every flag can also be set as SPOT_AGENT_<FLAG>.

Flags:`)
		fs.PrintDefaults()
	}
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := sf.validate(true); err != nil {
		return &usageError{err}
	}
	rec := bootstrap.NewRecorder()
	clients, region, err := sf.clients(ctx, rec)
	if err != nil {
		return err
	}
	st := bootstrap.New(bootstrap.Config{Name: sf.name, Region: region}, clients,
		bootstrap.Options{Progress: stderr, PollInterval: sf.poll, Timeout: sf.timeout})
	confirm := func(td *bootstrap.Teardown) (bool, error) {
		if yes {
			return true, nil
		}
		td.WriteText(stderr)
		fmt.Fprintf(stderr, "Delete these %d resources of stack %s in %s? Type yes to confirm: ", td.Found(), sf.name, region)
		line, err := bufio.NewReader(stdin).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return false, fmt.Errorf("read confirmation: %w", err)
		}
		if errors.Is(err, io.EOF) && strings.TrimSpace(line) == "" {
			fmt.Fprintln(stderr)
			return false, &usageError{errors.New("no answer: standard input is not a terminal, or closed: give --yes to delete without asking (nothing was deleted)")}
		}
		answer := strings.ToLower(strings.TrimSpace(line))
		return answer == "yes" || answer == "y", nil
	}
	td, err := st.Teardown(ctx, dryRun, confirm)
	if err != nil {
		return explain(err)
	}
	calls := summarize(rec)
	if sf.output == "json" {
		return writeJSON(stdout, struct {
			DryRun bool `json:"dry_run"`
			*bootstrap.Teardown
			Calls callSummary `json:"calls"`
		}{dryRun, td, calls})
	}
	switch {
	case td.Found() == 0:
		fmt.Fprintf(stdout, "nothing carries %s=%s in %s: nothing to delete\n", bootstrap.StackTag, sf.name, region)
	case dryRun:
		td.WriteText(stdout)
		fmt.Fprintln(stdout, "dry run: nothing deleted")
	default:
		fmt.Fprintf(stdout, "stack %s deleted: %d resources (%d mutating calls)\n", sf.name, td.Found(), calls.Mutating)
	}
	return nil
}
