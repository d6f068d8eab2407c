// Package drill runs a real Spot interruption on a stack built by
// spot-agent bootstrap, through AWS Fault Injection Service, and measures
// it from the outside: bounded load against the load balancer's DNS name
// before, through and after the interruption, the experiment and the
// interrupted instance's target followed until a replacement is healthy,
// and a report whose verdict is the product's promise (no failed request).
package drill

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	cwtypes "github.com/aws/aws-sdk-go-v2/service/cloudwatch/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	"github.com/aws/aws-sdk-go-v2/service/fis"
	fistypes "github.com/aws/aws-sdk-go-v2/service/fis/types"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"

	"github.com/spot-agent/spot-agent/agent/bootstrap"
	"github.com/spot-agent/spot-agent/agent/secret"
)

// The calls a drill makes beside bootstrap's status (which finds the
// stack), with the SDK's signatures.

// FIS is the part of FIS the drill uses.
type FIS interface {
	GetExperimentTemplate(ctx context.Context, params *fis.GetExperimentTemplateInput, optFns ...func(*fis.Options)) (*fis.GetExperimentTemplateOutput, error)
	UpdateExperimentTemplate(ctx context.Context, params *fis.UpdateExperimentTemplateInput, optFns ...func(*fis.Options)) (*fis.UpdateExperimentTemplateOutput, error)
	StartExperiment(ctx context.Context, params *fis.StartExperimentInput, optFns ...func(*fis.Options)) (*fis.StartExperimentOutput, error)
	GetExperiment(ctx context.Context, params *fis.GetExperimentInput, optFns ...func(*fis.Options)) (*fis.GetExperimentOutput, error)
	StopExperiment(ctx context.Context, params *fis.StopExperimentInput, optFns ...func(*fis.Options)) (*fis.StopExperimentOutput, error)
	ListExperimentResolvedTargets(ctx context.Context, params *fis.ListExperimentResolvedTargetsInput, optFns ...func(*fis.Options)) (*fis.ListExperimentResolvedTargetsOutput, error)
}

// ELB reads the target group's health.
type ELB interface {
	DescribeTargetHealth(ctx context.Context, params *elbv2.DescribeTargetHealthInput, optFns ...func(*elbv2.Options)) (*elbv2.DescribeTargetHealthOutput, error)
}

// EC2 reads the interrupted instances' state.
type EC2 interface {
	DescribeInstances(ctx context.Context, params *ec2.DescribeInstancesInput, optFns ...func(*ec2.Options)) (*ec2.DescribeInstancesOutput, error)
}

// AutoScaling reads an Auto Scaling group's instances: the replacement.
type AutoScaling interface {
	DescribeAutoScalingGroups(ctx context.Context, params *autoscaling.DescribeAutoScalingGroupsInput, optFns ...func(*autoscaling.Options)) (*autoscaling.DescribeAutoScalingGroupsOutput, error)
}

// CloudWatch reads the load balancer's 5xx, and puts the stop alarm with
// another threshold for a run that interrupts more instances.
type CloudWatch interface {
	GetMetricData(ctx context.Context, params *cloudwatch.GetMetricDataInput, optFns ...func(*cloudwatch.Options)) (*cloudwatch.GetMetricDataOutput, error)
	DescribeAlarms(ctx context.Context, params *cloudwatch.DescribeAlarmsInput, optFns ...func(*cloudwatch.Options)) (*cloudwatch.DescribeAlarmsOutput, error)
	PutMetricAlarm(ctx context.Context, params *cloudwatch.PutMetricAlarmInput, optFns ...func(*cloudwatch.Options)) (*cloudwatch.PutMetricAlarmOutput, error)
}

// IAM checks, before anything starts, that the caller may run the drill.
type IAM interface {
	SimulatePrincipalPolicy(ctx context.Context, params *iam.SimulatePrincipalPolicyInput, optFns ...func(*iam.Options)) (*iam.SimulatePrincipalPolicyOutput, error)
}

// STS tells who the caller is.
type STS interface {
	GetCallerIdentity(ctx context.Context, params *sts.GetCallerIdentityInput, optFns ...func(*sts.Options)) (*sts.GetCallerIdentityOutput, error)
}

// Clients are the drill's AWS clients; Stack finds the stack
// (bootstrap's status).
type Clients struct {
	Stack       *bootstrap.Stack
	FIS         FIS
	ELB         ELB
	EC2         EC2
	AutoScaling AutoScaling
	CloudWatch  CloudWatch
	IAM         IAM
	STS         STS
}

// Config is one drill.
type Config struct {
	Stack     string
	Region    string
	Instances int           // how many to interrupt
	Before    time.Duration // the notice's lead (durationBeforeInterruption)
	Rate      float64       // requests a second
	Baseline  time.Duration // load before the experiment starts
	After     time.Duration // load after the replacement is healthy
	Timeout   time.Duration // bound on the drill from the experiment's start
	Poll      time.Duration // how often the experiment, targets and fleet are read
	// ConnectTo sends the load for HOST:PORT to HOST2:PORT2 (the load
	// balancer's name stays in the URL and Host header).
	ConnectTo map[string]string
	// RequestTimeout bounds one request.
	RequestTimeout time.Duration
}

// Defaults.
const (
	DefaultRate     = 20
	DefaultBaseline = time.Minute
	DefaultAfter    = 30 * time.Second
	DefaultTimeout  = 15 * time.Minute
	DefaultPoll     = 5 * time.Second
)

// Validate checks the configuration before any AWS call.
func (c *Config) Validate() error {
	var errs []error
	bad := func(flag, format string, a ...any) {
		errs = append(errs, &bootstrap.FlagError{Flag: flag, Problem: fmt.Sprintf(format, a...)})
	}
	if err := bootstrap.ValidateName(c.Stack); err != nil {
		errs = append(errs, err)
	}
	if c.Instances < 1 || c.Instances > 20 {
		bad("instances", "%d is out of range 1..20", c.Instances)
	}
	if c.Before < bootstrap.MinNotice || c.Before > bootstrap.MaxNotice || c.Before%time.Second != 0 {
		bad("before", "%s: FIS takes whole seconds from %s to %s", c.Before, bootstrap.MinNotice, bootstrap.MaxNotice)
	}
	if c.Rate <= 0 || c.Rate > 1000 {
		bad("rate", "%g requests a second is out of range (0, 1000]: the drill measures, it does not load-test", c.Rate)
	}
	if c.Baseline < 0 || c.Baseline > 30*time.Minute {
		bad("baseline", "%s is out of range 0..30m", c.Baseline)
	}
	if c.Timeout < c.Before+time.Minute || c.Timeout > 2*time.Hour {
		bad("timeout", "%s: at least --before and a minute (%s), at most 2h", c.Timeout, c.Before+time.Minute)
	}
	if c.Poll < 100*time.Millisecond || c.Poll > time.Minute {
		bad("poll-interval", "%s is out of range 100ms..1m", c.Poll)
	}
	return errors.Join(errs...)
}

// PreflightError is a drill that cannot start: something is missing, and
// nothing was started or changed.
type PreflightError struct{ Problem string }

func (e *PreflightError) Error() string { return e.Problem }

// ErrFailed is a drill that ran and saw failed requests (or could not
// finish): the report says what.
var ErrFailed = errors.New("the drill failed")

// Drill is one run.
type Drill struct {
	cfg  Config
	c    Clients
	dial Dialer
	now  func() time.Time
	log  func(string)

	rep       *Report
	load      *Load
	restore   []func(context.Context) error
	found     found
	experimnt string
}

// found is the stack as the drill needs it.
type found struct {
	tg, lbARN, dns, fleetKind, fleetID string
	template                           string
	alarm                              string
	min                                *int32
	healthy                            []string // targets healthy at the start
	targets                            map[string]bool
	instances                          map[string]bool // the fleet's at the start
}

// New returns a drill; progress gets a line per event (nil: none).
func New(cfg Config, c Clients, progress func(string)) *Drill {
	if progress == nil {
		progress = func(string) {}
	}
	dial := ConnectTo(cfg.ConnectTo)
	return &Drill{cfg: cfg, c: c, dial: dial, now: time.Now, log: progress}
}

// Run runs the drill and returns its report: with ErrFailed when requests
// failed or the drill could not finish (the report says why), a
// *PreflightError when it could not start. A cancelled ctx (Ctrl-C) stops
// the experiment and the load, and the report is still returned.
func (d *Drill) Run(ctx context.Context) (*Report, error) {
	d.rep = &Report{Stack: d.cfg.Stack, Region: d.cfg.Region, Instances: d.cfg.Instances, Before: d.cfg.Before.String(), Rate: d.cfg.Rate}
	if err := d.preflight(ctx); err != nil {
		return nil, err
	}
	defer d.undo()
	d.load.Start(context.WithoutCancel(ctx))
	d.rep.LoadStarted = d.now()
	d.event("load started", "", fmt.Sprintf("%g requests a second against http://%s/", d.cfg.Rate, d.found.dns))
	err := d.drill(ctx)
	var pe *PreflightError
	if errors.As(err, &pe) { // refused at StartExperiment: nothing started
		d.load.Stop()
		return nil, err
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		d.rep.Problems = append(d.rep.Problems, err.Error())
	}
	if ctx.Err() != nil {
		d.rep.Interrupted = fmt.Sprint(context.Cause(ctx))
	}
	d.stopExperiment()
	d.load.Stop()
	d.rep.Ended = d.now()
	d.event("load stopped", "", "")
	d.rep.Requests, d.rep.Latency, d.rep.Seconds = d.load.Totals()
	d.alb5xx(context.WithoutCancel(ctx))
	d.rep.judge()
	if !d.rep.Pass {
		return d.rep, ErrFailed
	}
	return d.rep, nil
}

// undo puts back what the drill changed (the template's selection and
// notice, the alarm's threshold), on a context of its own: even after a
// Ctrl-C.
func (d *Drill) undo() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := len(d.restore) - 1; i >= 0; i-- {
		if err := d.restore[i](ctx); err != nil {
			d.rep.Problems = append(d.rep.Problems, "restore: "+err.Error())
			d.log("could not restore: " + err.Error())
		}
	}
	d.restore = nil
}

// preflight finds the stack and checks everything a drill needs before
// anything starts: a *PreflightError says what is missing.
func (d *Drill) preflight(ctx context.Context) error {
	st, err := d.c.Stack.Status(ctx)
	if err != nil {
		return fmt.Errorf("find stack %s: %w", d.cfg.Stack, err)
	}
	if !st.Exists() {
		return &PreflightError{fmt.Sprintf("no stack %s in %s: nothing carries %s=%s (build it with spot-agent bootstrap --name %s)", d.cfg.Stack, d.cfg.Region, bootstrap.StackTag, d.cfg.Stack, d.cfg.Stack)}
	}
	o := st.Outputs
	f := found{tg: o.TargetGroupARN, lbARN: o.LoadBalancerARN, dns: strings.TrimSuffix(strings.TrimPrefix(o.URL, "http://"), "/"),
		fleetKind: o.FleetType, fleetID: o.FleetID, template: o.ExperimentTemplateID, alarm: o.StopAlarmARN, targets: map[string]bool{}, instances: map[string]bool{}}
	var missing []string
	for _, m := range [][2]string{{f.tg, "target group"}, {f.dns, "load balancer"}, {f.template, "FIS experiment template"}} {
		if m[0] == "" {
			missing = append(missing, m[1])
		}
	}
	if len(missing) > 0 {
		return &PreflightError{fmt.Sprintf("stack %s has no %s: run spot-agent bootstrap --name %s again to add what a drill needs", d.cfg.Stack, strings.Join(missing, ", no "), d.cfg.Stack)}
	}
	if st.Fleet != nil {
		f.min = st.Fleet.Min
	}
	for _, t := range st.Targets {
		f.targets[t.ID] = true
		if t.State == "healthy" {
			f.healthy = append(f.healthy, t.ID)
		}
	}
	for _, i := range st.Instances {
		f.instances[i.ID] = true
	}
	d.found = f
	d.rep.TemplateID, d.rep.TargetGroup, d.rep.LoadBalancer = f.template, f.tg, f.dns
	if len(f.healthy) < d.cfg.Instances+1 {
		return &PreflightError{fmt.Sprintf("stack %s has %d healthy targets, and interrupting %d needs at least %d: an interruption must not empty the group (raise the capacity, or wait for the targets to pass their health checks)",
			d.cfg.Stack, len(f.healthy), d.cfg.Instances, d.cfg.Instances+1)}
	}
	if err := d.permissions(ctx); err != nil {
		return err
	}
	d.load = NewLoad("http://"+f.dns+"/", d.cfg.Rate, d.cfg.RequestTimeout, d.dial)
	var probe error
	for i := 0; i < 3; i++ {
		pctx, cancel := context.WithTimeout(ctx, d.cfg.RequestTimeout)
		probe = d.load.Probe(pctx)
		cancel()
		if probe == nil || ctx.Err() != nil {
			break
		}
		time.Sleep(time.Second)
	}
	if probe != nil {
		return &PreflightError{fmt.Sprintf("the load balancer does not answer: %v (is http://%s/ reachable from here? --connect-to sends the load elsewhere)", probe, f.dns)}
	}
	return nil
}

// drillActions are the IAM actions a drill needs beside status's, with the
// resources SimulatePrincipalPolicy checks them on.
func (d *Drill) drillActions(account string) [][2]string {
	tmpl := fmt.Sprintf("arn:%s:fis:%s:%s:experiment-template/%s", secret.Partition(d.cfg.Region), d.cfg.Region, account, d.found.template)
	exp := fmt.Sprintf("arn:%s:fis:%s:%s:experiment/*", secret.Partition(d.cfg.Region), d.cfg.Region, account)
	out := [][2]string{{"fis:StartExperiment", tmpl}, {"fis:StartExperiment", exp}, {"fis:GetExperiment", exp}, {"fis:StopExperiment", exp},
		{"fis:ListExperimentResolvedTargets", exp}, {"fis:GetExperimentTemplate", tmpl}}
	if d.cfg.Instances != bootstrap.DefaultInterruptCount || d.cfg.Before != bootstrap.DefaultNotice {
		out = append(out, [2]string{"fis:UpdateExperimentTemplate", tmpl})
	}
	return out
}

var assumedRole = regexp.MustCompile(`^arn:([^:]+):sts::(\d+):assumed-role/([^/]+)/.*$`)

// permissions asks IAM whether the caller may run the experiment. IAM's
// simulator may itself be denied (or missing): then the report says the
// check was not made, and StartExperiment's AccessDenied, which starts
// nothing, is the check.
func (d *Drill) permissions(ctx context.Context) error {
	who, err := d.c.STS.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		return fmt.Errorf("who am I (sts:GetCallerIdentity): %w", err)
	}
	arn := aws.ToString(who.Arn)
	if m := assumedRole.FindStringSubmatch(arn); m != nil {
		arn = fmt.Sprintf("arn:%s:iam::%s:role/%s", m[1], m[2], m[3]) // the simulator takes the role, not the session
	}
	var denied []string
	for _, a := range d.drillActions(aws.ToString(who.Account)) {
		out, err := d.c.IAM.SimulatePrincipalPolicy(ctx, &iam.SimulatePrincipalPolicyInput{PolicySourceArn: aws.String(arn), ActionNames: []string{a[0]}, ResourceArns: []string{a[1]}})
		if err != nil {
			d.rep.Permissions = fmt.Sprintf("not checked: iam:SimulatePrincipalPolicy for %s failed (%s); StartExperiment's answer is the check, and it starts nothing when denied", arn, shortErr(err))
			d.log("permissions " + d.rep.Permissions)
			return nil
		}
		for _, r := range out.EvaluationResults {
			if r.EvalDecision != iamtypes.PolicyEvaluationDecisionTypeAllowed {
				denied = append(denied, fmt.Sprintf("%s on %s (%s)", aws.ToString(r.EvalActionName), a[1], r.EvalDecision))
			}
		}
	}
	if len(denied) > 0 {
		return &PreflightError{fmt.Sprintf("%s may not run the drill: IAM's simulator denies %s; nothing was started", arn, strings.Join(denied, ", "))}
	}
	d.rep.Permissions = "checked with iam:SimulatePrincipalPolicy for " + arn
	return nil
}

func shortErr(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode() + ": " + ae.ErrorMessage()
	}
	return err.Error()
}

// accessDenied names the action an AccessDenied error refuses.
func accessDenied(err error, action string) error {
	var ae smithy.APIError
	if errors.As(err, &ae) && (strings.Contains(ae.ErrorCode(), "AccessDenied") || ae.ErrorCode() == "UnauthorizedOperation") {
		return &PreflightError{fmt.Sprintf("the caller may not %s (%s: %s); nothing was started: allow it (docs/drill-iam-policy.json is the policy a drill needs)", action, ae.ErrorCode(), ae.ErrorMessage())}
	}
	return nil
}

// prepare changes the template (and the stop alarm) for this run's count
// and notice, and records how to put them back.
func (d *Drill) prepare(ctx context.Context) error {
	out, err := d.c.FIS.GetExperimentTemplate(ctx, &fis.GetExperimentTemplateInput{Id: aws.String(d.found.template)})
	if err != nil {
		if e := accessDenied(err, "fis:GetExperimentTemplate"); e != nil {
			return e
		}
		return fmt.Errorf("read the experiment template %s: %w", d.found.template, err)
	}
	t := out.ExperimentTemplate
	want := func(sel, dur string) *fis.UpdateExperimentTemplateInput {
		up := &fis.UpdateExperimentTemplateInput{Id: t.Id, Targets: map[string]fistypes.UpdateExperimentTemplateTargetInput{}, Actions: map[string]fistypes.UpdateExperimentTemplateActionInputItem{}}
		for k, v := range t.Targets {
			var in fistypes.UpdateExperimentTemplateTargetInput
			convert(v, &in)
			in.SelectionMode = aws.String(sel)
			up.Targets[k] = in
		}
		for k, v := range t.Actions {
			var in fistypes.UpdateExperimentTemplateActionInputItem
			convert(v, &in)
			in.Parameters = map[string]string{}
			for pk, pv := range v.Parameters {
				in.Parameters[pk] = pv
			}
			if aws.ToString(v.ActionId) == bootstrap.InterruptActionID {
				in.Parameters[bootstrap.DurationParameter] = dur
			}
			up.Actions[k] = in
		}
		return up
	}
	var sel, dur string
	for _, v := range t.Targets {
		sel = aws.ToString(v.SelectionMode)
	}
	for _, v := range t.Actions {
		if aws.ToString(v.ActionId) == bootstrap.InterruptActionID {
			dur = v.Parameters[bootstrap.DurationParameter]
		}
	}
	if sel == "" || dur == "" {
		return &PreflightError{fmt.Sprintf("experiment template %s has no %s action with a target: run spot-agent bootstrap --name %s again", d.found.template, bootstrap.InterruptActionID, d.cfg.Stack)}
	}
	wantSel, wantDur := bootstrap.SelectionCount(d.cfg.Instances), bootstrap.ISODuration(d.cfg.Before)
	if sel != wantSel || dur != wantDur {
		if _, err := d.c.FIS.UpdateExperimentTemplate(ctx, want(wantSel, wantDur)); err != nil {
			if e := accessDenied(err, "fis:UpdateExperimentTemplate"); e != nil {
				return e
			}
			return fmt.Errorf("set the template to %s %s for this run: %w", wantSel, wantDur, err)
		}
		back := want(sel, dur)
		d.restore = append(d.restore, func(ctx context.Context) error {
			_, err := d.c.FIS.UpdateExperimentTemplate(ctx, back)
			return err
		})
		d.event("template set for this run", "", fmt.Sprintf("%s, %s (restored to %s, %s at the end)", wantSel, wantDur, sel, dur))
	}
	return d.prepareAlarm(ctx)
}

// prepareAlarm lowers the stop alarm's threshold for a run that interrupts
// more instances than the template's one (bootstrap.StopThreshold), and
// records how to put it back.
func (d *Drill) prepareAlarm(ctx context.Context) error {
	if d.found.alarm == "" || d.found.min == nil {
		return nil
	}
	name := d.found.alarm[strings.LastIndex(d.found.alarm, ":")+1:]
	out, err := d.c.CloudWatch.DescribeAlarms(ctx, &cloudwatch.DescribeAlarmsInput{AlarmNames: []string{name}})
	if err != nil || len(out.MetricAlarms) == 0 {
		return err
	}
	a := out.MetricAlarms[0]
	want := bootstrap.StopThreshold(int(*d.found.min), d.cfg.Instances)
	if aws.ToFloat64(a.Threshold) <= want {
		return nil
	}
	put := func(threshold float64) *cloudwatch.PutMetricAlarmInput {
		return &cloudwatch.PutMetricAlarmInput{AlarmName: a.AlarmName, AlarmDescription: a.AlarmDescription, Namespace: a.Namespace, MetricName: a.MetricName,
			Dimensions: a.Dimensions, Statistic: a.Statistic, Period: a.Period, EvaluationPeriods: a.EvaluationPeriods, DatapointsToAlarm: a.DatapointsToAlarm,
			Threshold: aws.Float64(threshold), ComparisonOperator: a.ComparisonOperator, TreatMissingData: a.TreatMissingData, ActionsEnabled: a.ActionsEnabled,
			AlarmActions: a.AlarmActions, OKActions: a.OKActions, InsufficientDataActions: a.InsufficientDataActions}
	}
	if _, err := d.c.CloudWatch.PutMetricAlarm(ctx, put(want)); err != nil {
		return fmt.Errorf("lower the stop alarm's threshold to %g for %d instances: %w", want, d.cfg.Instances, err)
	}
	old := aws.ToFloat64(a.Threshold)
	d.restore = append(d.restore, func(ctx context.Context) error {
		_, err := d.c.CloudWatch.PutMetricAlarm(ctx, put(old))
		return err
	})
	d.event("stop alarm set for this run", "", fmt.Sprintf("healthy hosts < %g (restored to < %g at the end)", want, old))
	return nil
}

func convert(from, to any) {
	b, _ := json.Marshal(from)
	_ = json.Unmarshal(b, to)
}

// drill runs the baseline, the experiment and the following.
func (d *Drill) drill(ctx context.Context) error {
	if err := d.prepare(ctx); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d.cfg.Baseline):
	}
	d.load.During()
	out, err := d.c.FIS.StartExperiment(ctx, &fis.StartExperimentInput{ExperimentTemplateId: aws.String(d.found.template),
		ClientToken: aws.String(fmt.Sprintf("spot-agent-drill-%d", d.now().UnixNano())),
		Tags:        map[string]string{bootstrap.StackTag: d.cfg.Stack, "Name": "spot-agent drill"}})
	if err != nil {
		if e := accessDenied(err, "fis:StartExperiment"); e != nil {
			return e
		}
		return fmt.Errorf("start the experiment: %w", err)
	}
	d.experimnt = aws.ToString(out.Experiment.Id)
	d.rep.ExperimentID = d.experimnt
	d.rep.ExperimentStarted = d.now()
	d.event("experiment started", "", d.experimnt)
	return d.follow(ctx)
}

// stopExperiment stops the experiment if it still runs (Ctrl-C, a
// timeout), on a context of its own.
func (d *Drill) stopExperiment() {
	if d.experimnt == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := d.c.FIS.GetExperiment(ctx, &fis.GetExperimentInput{Id: aws.String(d.experimnt)})
	if err == nil && out.Experiment.State != nil {
		switch out.Experiment.State.Status {
		case fistypes.ExperimentStatusCompleted, fistypes.ExperimentStatusFailed, fistypes.ExperimentStatusStopped, fistypes.ExperimentStatusCancelled:
			return
		}
	}
	if _, err := d.c.FIS.StopExperiment(ctx, &fis.StopExperimentInput{Id: aws.String(d.experimnt)}); err != nil {
		d.rep.Problems = append(d.rep.Problems, fmt.Sprintf("stop experiment %s: %v (stop it in the FIS console)", d.experimnt, err))
		return
	}
	d.event("experiment stopped", "", "by the drill")
}

// event adds a line to the timeline, once per what and instance.
func (d *Drill) event(what, instance, detail string) {
	for _, e := range d.rep.Timeline {
		if e.What == what && e.Instance == instance && what != "experiment state" {
			return
		}
	}
	at := d.now()
	e := Event{At: at, What: what, Instance: instance, Detail: detail}
	if !d.rep.LoadStarted.IsZero() {
		e.Offset = at.Sub(d.rep.LoadStarted).Seconds()
	}
	d.rep.Timeline = append(d.rep.Timeline, e)
	line := what
	if instance != "" {
		line += " " + instance
	}
	if detail != "" {
		line += ": " + detail
	}
	d.log(fmt.Sprintf("[%6.1fs] %s", e.Offset, line))
}

// follow reads the experiment, the target group and the fleet every Poll
// until the experiment is over and as many replacements as instances
// interrupted are healthy (then the load runs on for After), or Timeout.
func (d *Drill) follow(ctx context.Context) error {
	tick := time.NewTicker(d.cfg.Poll)
	defer tick.Stop()
	deadline := d.now().Add(d.cfg.Timeout)
	var chosen []string
	state := map[string]string{} // the chosen instances' target state
	replacements := map[string]string{}
	status := ""
	over := false
	var doneAt time.Time
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		if d.now().After(deadline) {
			return fmt.Errorf("no replacement healthy %s after the experiment started (--timeout)", d.cfg.Timeout)
		}
		if !over {
			out, err := d.c.FIS.GetExperiment(ctx, &fis.GetExperimentInput{Id: aws.String(d.experimnt)})
			if err != nil {
				d.log("read the experiment: " + err.Error())
				continue
			}
			e := out.Experiment
			if st := e.State; st != nil && string(st.Status) != status {
				status = string(st.Status)
				d.rep.ExperimentStatus, d.rep.ExperimentReason = status, aws.ToString(st.Reason)
				d.event("experiment "+status, "", aws.ToString(st.Reason))
				for _, a := range e.Actions {
					if a.StartTime != nil && status == "running" {
						noticeAt := a.StartTime.Add(d.cfg.Before - 2*time.Minute)
						d.rep.NoticeAt, d.rep.InterruptAt = noticeAt, a.StartTime.Add(d.cfg.Before)
					}
				}
				switch st.Status {
				case fistypes.ExperimentStatusFailed, fistypes.ExperimentStatusStopped, fistypes.ExperimentStatusCancelled:
					if len(chosen) == 0 {
						return fmt.Errorf("the experiment %s: %s", status, aws.ToString(st.Reason))
					}
					over = true
				case fistypes.ExperimentStatusCompleted:
					over = true
				}
			}
			if len(chosen) == 0 && (status == "running" || over) {
				chosen = d.resolved(ctx)
				d.rep.Chosen = chosen
				for _, id := range chosen {
					d.event("chosen", id, "")
					state[id] = "healthy"
				}
			}
		}
		if !d.rep.NoticeAt.IsZero() && !d.now().Before(d.rep.NoticeAt) {
			for _, id := range chosen {
				d.eventAt("notice", id, fmt.Sprintf("interruption at %s", d.rep.InterruptAt.Format(time.RFC3339)), d.rep.NoticeAt)
			}
		}
		healthy := d.targets(ctx, chosen, state, replacements)
		d.instances(ctx, chosen)
		d.fleet(ctx, replacements)
		done := len(chosen) > 0 && over && healthy >= len(chosen)
		if done && doneAt.IsZero() {
			doneAt = d.now()
			d.event("load continues", "", fmt.Sprintf("for %s after the replacement", d.cfg.After))
		}
		if !doneAt.IsZero() && d.now().Sub(doneAt) >= d.cfg.After {
			return nil
		}
	}
}

// eventAt is event at a known time (the notice, computed from the action's
// start).
func (d *Drill) eventAt(what, instance, detail string, at time.Time) {
	for _, e := range d.rep.Timeline {
		if e.What == what && e.Instance == instance {
			return
		}
	}
	now := d.now
	d.now = func() time.Time { return at }
	d.event(what, instance, detail)
	d.now = now
	slices.SortStableFunc(d.rep.Timeline, func(a, b Event) int { return a.At.Compare(b.At) })
}

var instanceID = regexp.MustCompile(`\bi-[0-9a-f]{8,17}\b`)

// resolved names the instances the experiment chose.
func (d *Drill) resolved(ctx context.Context) []string {
	out, err := d.c.FIS.ListExperimentResolvedTargets(ctx, &fis.ListExperimentResolvedTargetsInput{ExperimentId: aws.String(d.experimnt)})
	if err != nil {
		d.log("resolved targets: " + err.Error())
		return nil
	}
	var ids []string
	for _, t := range out.ResolvedTargets {
		for _, v := range t.TargetInformation {
			if id := instanceID.FindString(v); id != "" && !slices.Contains(ids, id) {
				ids = append(ids, id)
			}
		}
	}
	return ids
}

// targets reads the target group: the chosen instances' way out
// (healthy → draining → gone), the replacements' way in, and the healthy
// count; it returns how many replacements are healthy.
func (d *Drill) targets(ctx context.Context, chosen []string, state, replacements map[string]string) int {
	out, err := d.c.ELB.DescribeTargetHealth(ctx, &elbv2.DescribeTargetHealthInput{TargetGroupArn: aws.String(d.found.tg)})
	if err != nil {
		d.log("target health: " + err.Error())
		return 0
	}
	now := map[string]string{}
	sample := Capacity{At: d.now()}
	for _, t := range out.TargetHealthDescriptions {
		id, st := aws.ToString(t.Target.Id), string(t.TargetHealth.State)
		now[id] = st
		switch st {
		case "healthy":
			sample.Healthy++
		case "draining":
			sample.Draining++
		}
	}
	if !d.rep.LoadStarted.IsZero() {
		sample.Offset = sample.At.Sub(d.rep.LoadStarted).Seconds()
	}
	d.rep.Capacity = append(d.rep.Capacity, sample)
	for _, id := range chosen {
		st, ok := now[id]
		switch {
		case st == "draining" && state[id] != "draining":
			d.event("deregistration seen", id, "target draining")
		case (!ok || st == "unused") && state[id] != "gone":
			st = "gone"
			d.event("target gone", id, "")
		}
		state[id] = st
	}
	healthy := 0
	for id, st := range now {
		if d.found.targets[id] || slices.Contains(chosen, id) {
			continue
		}
		if replacements[id] == "" {
			d.event("replacement registered", id, st)
		}
		if st == "healthy" && replacements[id] != "healthy" {
			d.event("replacement healthy", id, "")
		}
		replacements[id] = st
		if st == "healthy" {
			healthy++
		}
	}
	return healthy
}

// instances reads the chosen instances' state: terminated is the
// interruption.
func (d *Drill) instances(ctx context.Context, chosen []string) {
	if len(chosen) == 0 {
		return
	}
	out, err := d.c.EC2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: chosen})
	if err != nil {
		return // a terminated instance may be gone from the answer: the next read
	}
	for _, r := range out.Reservations {
		for _, i := range r.Instances {
			if i.State != nil && (i.State.Name == "shutting-down" || i.State.Name == "terminated" || i.State.Name == "stopping" || i.State.Name == "stopped") {
				d.event("instance "+string(i.State.Name), aws.ToString(i.InstanceId), "")
			}
		}
	}
}

// fleet reads an Auto Scaling group's instances: a replacement launched
// and in service. Other fleets' replacements show in the target group.
func (d *Drill) fleet(ctx context.Context, replacements map[string]string) {
	if d.found.fleetKind != bootstrap.FleetASG || d.found.fleetID == "" {
		return
	}
	out, err := d.c.AutoScaling.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{d.found.fleetID}})
	if err != nil || len(out.AutoScalingGroups) == 0 {
		return
	}
	for _, i := range out.AutoScalingGroups[0].Instances {
		id := aws.ToString(i.InstanceId)
		if d.found.instances[id] {
			continue
		}
		d.event("replacement launched", id, "")
		if i.LifecycleState == "InService" {
			d.event("replacement in service", id, "in the Auto Scaling group")
		}
	}
}

// alb5xx reads the load balancer's own and its targets' 5xx over the drill
// from CloudWatch. CloudWatch sums ALB metrics per minute and publishes
// them within minutes: no datapoint yet is "no data", never a zero.
func (d *Drill) alb5xx(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	lb := d.found.lbARN
	if _, after, ok := strings.Cut(lb, ":loadbalancer/"); ok {
		lb = after
	}
	start, end := d.rep.LoadStarted.Add(-time.Minute).Truncate(time.Minute), d.rep.Ended.Add(2*time.Minute).Truncate(time.Minute)
	q := func(id, metric string) cwtypes.MetricDataQuery {
		return cwtypes.MetricDataQuery{Id: aws.String(id), MetricStat: &cwtypes.MetricStat{Period: aws.Int32(60), Stat: aws.String("Sum"),
			Metric: &cwtypes.Metric{Namespace: aws.String("AWS/ApplicationELB"), MetricName: aws.String(metric),
				Dimensions: []cwtypes.Dimension{{Name: aws.String("LoadBalancer"), Value: aws.String(lb)}}}}}
	}
	out, err := d.c.CloudWatch.GetMetricData(ctx, &cloudwatch.GetMetricDataInput{StartTime: aws.Time(start), EndTime: aws.Time(end),
		MetricDataQueries: []cwtypes.MetricDataQuery{q("elb", "HTTPCode_ELB_5XX_Count"), q("target", "HTTPCode_Target_5XX_Count")}})
	d.rep.ALB = ALBMetrics{Window: fmt.Sprintf("%s .. %s", start.Format(time.RFC3339), end.Format(time.RFC3339))}
	if err != nil {
		d.rep.ALB.Note = "unavailable: " + shortErr(err)
		return
	}
	points := 0
	for _, r := range out.MetricDataResults {
		sum := 0.0
		for _, v := range r.Values {
			sum += v
		}
		points += len(r.Values)
		if len(r.Values) == 0 {
			continue
		}
		switch aws.ToString(r.Id) {
		case "elb":
			d.rep.ALB.ELB5xx = aws.Float64(sum)
		case "target":
			d.rep.ALB.Target5xx = aws.Float64(sum)
		}
	}
	if points == 0 {
		d.rep.ALB.Note = "no data: CloudWatch had no datapoint for the window (it publishes a minute's sum within minutes, and none for a minute without such errors); the load's own counts stand"
	}
}
