//go:build !agentonly

package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/spot-agent/spot-agent/agent/bootstrap"
)

func statusCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var sf stackFlags
	sf.register(fs, false)
	fs.Usage = func() {
		fmt.Fprintln(stderr, `Usage: spot-agent status --name NAME [--region REGION] [-o json]

Show a stack built by bootstrap: the load balancer's URL, the fleet's desired
and fulfilled capacity, its instances (id, type, architecture, zone,
lifecycle) and how many Spot capacity pools (type × zone) they span, the
target group's health (healthy, draining, unhealthy, with the reason), and
every resource that carries spot-agent:stack=NAME. It changes nothing.
Every flag can also be set as SPOT_AGENT_<FLAG>.

Flags:`)
		fs.PrintDefaults()
	}
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := sf.validate(false); err != nil {
		return &usageError{err}
	}
	rec := bootstrap.NewRecorder()
	clients, region, err := sf.clients(ctx, rec)
	if err != nil {
		return err
	}
	st, err := bootstrap.New(bootstrap.Config{Name: sf.name, Region: region}, clients, bootstrap.Options{}).Status(ctx)
	if err != nil {
		return explain(err)
	}
	if sf.output == "json" {
		if err := writeJSON(stdout, st); err != nil {
			return err
		}
	} else if st.Exists() {
		st.WriteText(stdout)
	}
	if !st.Exists() {
		return fmt.Errorf("no stack %s in %s: no resource carries the tag %s=%s (another --region? 'spot-agent bootstrap --name %s' builds it)", sf.name, region, bootstrap.StackTag, sf.name, sf.name)
	}
	return nil
}
