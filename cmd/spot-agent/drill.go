//go:build !agentonly

package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	"github.com/aws/aws-sdk-go-v2/service/fis"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/spot-agent/spot-agent/agent/bootstrap"
	"github.com/spot-agent/spot-agent/agent/drill"
)

// connectToFlag is --connect-to HOST:PORT:HOST2:PORT2, repeatable (curl's).
type connectToFlag map[string]string

func (c connectToFlag) String() string {
	var out []string
	for k, v := range c {
		out = append(out, k+":"+v)
	}
	return strings.Join(out, ",")
}

func (c connectToFlag) Set(v string) error {
	parts := strings.Split(v, ":")
	if len(parts) != 4 || parts[0] == "" || parts[1] == "" || parts[2] == "" || parts[3] == "" {
		return fmt.Errorf("%q is not HOST:PORT:HOST2:PORT2", v)
	}
	c[net.JoinHostPort(parts[0], parts[1])] = net.JoinHostPort(parts[2], parts[3])
	return nil
}

func drillCommand(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("drill", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var sf stackFlags
	var yes bool
	var reportDir string
	connect := connectToFlag{}
	cfg := drill.Config{}
	sf.register(fs, false)
	fs.IntVar(&cfg.Instances, "instances", bootstrap.DefaultInterruptCount, "how many of the stack's Spot Instances to interrupt (at least one more must be healthy)")
	fs.DurationVar(&cfg.Before, "before", bootstrap.DefaultNotice, "the notice's lead: FIS's durationBeforeInterruption, 2m..15m (over 2m, a rebalance recommendation comes first)")
	fs.Float64Var(&cfg.Rate, "rate", drill.DefaultRate, "requests a second against the load balancer, half on kept-alive connections, half on new ones")
	fs.DurationVar(&cfg.Baseline, "baseline", drill.DefaultBaseline, "load before the experiment starts: the latency baseline")
	fs.DurationVar(&cfg.After, "after", drill.DefaultAfter, "load after the replacement is healthy")
	fs.DurationVar(&cfg.Timeout, "timeout", drill.DefaultTimeout, "bound from the experiment's start until a replacement is healthy (then the experiment is stopped and the drill fails)")
	fs.DurationVar(&cfg.Poll, "poll-interval", drill.DefaultPoll, "how often the experiment, the target group and the fleet are read")
	fs.DurationVar(&cfg.RequestTimeout, "request-timeout", 10*time.Second, "bound on one request")
	fs.Var(connect, "connect-to", "HOST:PORT:HOST2:PORT2: send the load for the load balancer's HOST:PORT to HOST2:PORT2 instead, its URL and Host header unchanged (curl's --connect-to; repeatable)")
	fs.BoolVar(&yes, "yes", false, "do not ask before interrupting an instance")
	fs.StringVar(&reportDir, "report", "", "also write the report's JSON and its chart (PNG: requests and failures per second, the events marked) into this folder")
	fs.Usage = func() {
		fmt.Fprintln(stderr, `Usage: spot-agent drill --name NAME [--instances 1] [--before 2m] [--rate 20] [--yes] [-o text|json] [--report DIR]

Interrupt one of the stack's Spot Instances for real, through AWS Fault
Injection Service (the experiment template bootstrap made), and measure what
it costs the users: bounded load against the load balancer's DNS name for a
baseline, through the interruption and until a replacement is healthy; the
experiment, the instance's target (healthy, draining, gone) and the fleet
followed; the load balancer's 5xx from CloudWatch. Before anything starts it
checks that the stack exists, that at least N+1 targets are healthy, that the
caller may run the experiment and that the load balancer answers (exit 2
otherwise). A different --instances or --before changes the template for the
run and puts it back at the end, Ctrl-C too (which also stops the
experiment). Exit 0 only when not one request failed.
Every flag can also be set as SPOT_AGENT_<FLAG>.

Flags:`)
		fs.PrintDefaults()
	}
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg.Stack, cfg.ConnectTo = sf.name, connect
	if err := errors.Join(sf.validate(false), cfg.Validate()); err != nil {
		return &usageError{err}
	}
	if cfg.RequestTimeout < 100*time.Millisecond || cfg.RequestTimeout > time.Minute {
		return &usageError{&bootstrap.FlagError{Flag: "request-timeout", Problem: fmt.Sprintf("%s is out of range 100ms..1m", cfg.RequestTimeout)}}
	}
	awsCfg, err := sf.awsConfig(ctx)
	if err != nil {
		return err
	}
	cfg.Region = awsCfg.Region
	if !yes {
		fmt.Fprintf(stderr, "Interrupt %d of stack %s's Spot Instances in %s for real (an FIS experiment, a %s notice)? Type yes to go on: ", cfg.Instances, cfg.Stack, cfg.Region, cfg.Before)
		line, err := bufio.NewReader(stdin).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("read confirmation: %w", err)
		}
		if a := strings.ToLower(strings.TrimSpace(line)); a != "yes" && a != "y" {
			return errors.New("not confirmed: nothing was started")
		}
	}
	c := drill.Clients{
		Stack: bootstrap.New(bootstrap.Config{Name: cfg.Stack, Region: cfg.Region}, bootstrap.NewClients(awsCfg), bootstrap.Options{}),
		FIS:   fis.NewFromConfig(awsCfg), ELB: elbv2.NewFromConfig(awsCfg), EC2: ec2.NewFromConfig(awsCfg),
		AutoScaling: autoscaling.NewFromConfig(awsCfg), CloudWatch: bootstrap.NewCloudWatch(awsCfg),
		IAM: iam.NewFromConfig(awsCfg), STS: sts.NewFromConfig(awsCfg),
	}
	rep, err := drill.New(cfg, c, func(line string) { fmt.Fprintln(stderr, line) }).Run(ctx)
	var pe *drill.PreflightError
	if errors.As(err, &pe) {
		return &usageError{err}
	}
	if rep == nil {
		return err
	}
	if reportDir != "" {
		paths, serr := rep.Save(reportDir)
		for _, p := range paths {
			fmt.Fprintf(stderr, "wrote %s\n", p)
		}
		if serr != nil {
			err = errors.Join(err, fmt.Errorf("--report %s: %w", reportDir, serr))
		}
	}
	if sf.output == "json" {
		if werr := rep.WriteJSON(stdout); werr != nil {
			return werr
		}
	} else {
		rep.WriteText(stdout)
	}
	if errors.Is(err, drill.ErrFailed) {
		return fmt.Errorf("%s", rep.Verdict)
	}
	return err
}
