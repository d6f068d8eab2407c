package daemon

// Fakes of the daemon's small interfaces, for the in-process tests of the loop
// and the drain under testing/synctest (fake time, no sockets). The real
// packages behind them (targets, tags, lifecycle, watch, web) run as they are;
// only the wire below them is faked, with the answers the real APIs give.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	"github.com/aws/smithy-go"

	"github.com/spot-agent/spot-agent/agent/imds"
	"github.com/spot-agent/spot-agent/agent/lifecycle"
	"github.com/spot-agent/spot-agent/agent/metrics"
	"github.com/spot-agent/spot-agent/agent/notice"
	"github.com/spot-agent/spot-agent/agent/notify"
	"github.com/spot-agent/spot-agent/agent/tags"
	"github.com/spot-agent/spot-agent/agent/targets"
	"github.com/spot-agent/spot-agent/agent/web"
	"github.com/spot-agent/spot-agent/internal/testbed"
)

const (
	testInstance = "i-0123456789abcdef0"
	tgA          = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web-a/0123456789abcdef"
	tgB          = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web-b/0123456789abcdef"
)

// fakeIMDS answers identity and notice reads from what the test set; nothing
// set is a 404, as IMDS answers.
type fakeIMDS struct {
	mu          sync.Mutex
	unreachable bool // every read fails, as with no route to 169.254.169.254
	action      *notice.InstanceAction
	lifecycle   string
	rebalance   *notice.Rebalance
}

var _ metadata = (*fakeIMDS)(nil)

func (f *fakeIMDS) setAction(a *notice.InstanceAction) { f.mu.Lock(); f.action = a; f.mu.Unlock() }
func (f *fakeIMDS) setLifecycle(s string)              { f.mu.Lock(); f.lifecycle = s; f.mu.Unlock() }
func (f *fakeIMDS) setRebalance(r *notice.Rebalance)   { f.mu.Lock(); f.rebalance = r; f.mu.Unlock() }

// errUnreachable is what an IMDS read gives when the service cannot be reached.
var errUnreachable = errors.New("dial tcp 169.254.169.254:80: connect: network is unreachable")

func (f *fakeIMDS) Identity(context.Context) (imds.Identity, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.unreachable {
		return imds.Identity{}, errUnreachable
	}
	return imds.Identity{InstanceID: testInstance, Region: "us-east-1", AvailabilityZone: "us-east-1a", InstanceType: "c5.large", AccountID: "123456789012"}, nil
}

func (f *fakeIMDS) InstanceAction(context.Context) (notice.InstanceAction, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.unreachable {
		return notice.InstanceAction{}, errUnreachable
	}
	if f.action == nil {
		return notice.InstanceAction{}, imds.ErrNotFound
	}
	return *f.action, nil
}

func (f *fakeIMDS) Rebalance(context.Context) (notice.Rebalance, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.rebalance == nil {
		return notice.Rebalance{}, imds.ErrNotFound
	}
	return *f.rebalance, nil
}

func (f *fakeIMDS) LifecycleState(context.Context) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.lifecycle == "" {
		return "", imds.ErrNotFound
	}
	return f.lifecycle, nil
}

func (f *fakeIMDS) ScheduledEvents(context.Context) ([]notice.ScheduledEvent, error) {
	return nil, imds.ErrNotFound
}

func (f *fakeIMDS) Tag(context.Context, string) (string, error) { return "", imds.ErrNotFound }
func (f *fakeIMDS) TagsEnabled(context.Context) (bool, error)   { return false, nil }

// elbCall is one call the fake ELB answered.
type elbCall struct {
	op    string // Register, Deregister, Health (DescribeTargetHealth naming targets)
	arn   string
	ports []int32
	at    time.Time
	err   error
}

// fakeELB keeps this instance's registrations per target group, and answers
// as Elastic Load Balancing does: deregistering a target that is not
// registered is InvalidTarget; after DeregisterTargets a target is draining
// (Target.DeregistrationInProgress) for its group's drainFor, then unused
// (Target.NotRegistered) when named, and not listed at all when not.
type fakeELB struct {
	mu          sync.Mutex
	delay       map[string]int            // deregistration_delay.timeout_seconds per group
	members     map[string]map[int32]bool // group → ports this instance is registered on
	others      map[string]int            // group → how many other instances it holds
	drainFor    map[string]time.Duration  // group → how long a deregistered target is draining
	drainEnd    map[string]map[int32]time.Time
	calls       []elbCall
	describeErr error            // returned by DescribeTargetHealth when set
	readErr     map[string]error // group → what DescribeTargetHealth naming targets answers, when set
	throttled   time.Time        // DescribeTargetHealth naming targets is throttled until then
	registerErr error            // returned by RegisterTargets when set
}

var _ targets.ELB = (*fakeELB)(nil)

func newFakeELB(delaySeconds int, registered map[string][]int32) *fakeELB {
	f := &fakeELB{delay: map[string]int{}, members: map[string]map[int32]bool{}, others: map[string]int{},
		drainFor: map[string]time.Duration{}, drainEnd: map[string]map[int32]time.Time{}, readErr: map[string]error{}}
	for arn, ports := range registered {
		f.delay[arn] = delaySeconds
		f.members[arn] = map[int32]bool{}
		for _, p := range ports {
			f.members[arn][p] = true
		}
	}
	return f
}

func (f *fakeELB) registered(arn string) []int32 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Sorted(maps.Keys(f.members[arn]))
}

func (f *fakeELB) callsOf(op string) []elbCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []elbCall
	for _, c := range f.calls {
		if c.op == op {
			out = append(out, c)
		}
	}
	return out
}

func (f *fakeELB) DescribeTargetHealth(_ context.Context, in *elbv2.DescribeTargetHealthInput, _ ...func(*elbv2.Options)) (*elbv2.DescribeTargetHealthOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	arn := aws.ToString(in.TargetGroupArn)
	if f.describeErr != nil {
		return nil, f.describeErr
	}
	out := &elbv2.DescribeTargetHealthOutput{}
	if len(in.Targets) > 0 {
		return f.named(arn, in.Targets)
	}
	for _, p := range slices.Sorted(maps.Keys(f.members[arn])) {
		out.TargetHealthDescriptions = append(out.TargetHealthDescriptions, elbtypes.TargetHealthDescription{
			Target:       &elbtypes.TargetDescription{Id: aws.String(testInstance), Port: aws.Int32(p)},
			TargetHealth: &elbtypes.TargetHealth{State: elbtypes.TargetHealthStateEnumHealthy},
		})
	}
	for i := range f.others[arn] {
		out.TargetHealthDescriptions = append(out.TargetHealthDescriptions, elbtypes.TargetHealthDescription{
			Target:       &elbtypes.TargetDescription{Id: aws.String(fmt.Sprintf("i-%017x", i+1)), Port: aws.Int32(80)},
			TargetHealth: &elbtypes.TargetHealth{State: elbtypes.TargetHealthStateEnumHealthy},
		})
	}
	return out, nil
}

// named answers DescribeTargetHealth for the targets named, as AWS does: each
// named target is described, unused when it is not registered.
func (f *fakeELB) named(arn string, targets []elbtypes.TargetDescription) (*elbv2.DescribeTargetHealthOutput, error) {
	call := elbCall{op: "Health", arn: arn, at: time.Now()}
	for _, t := range targets {
		call.ports = append(call.ports, aws.ToInt32(t.Port))
	}
	switch {
	case time.Now().Before(f.throttled):
		call.err = &smithy.GenericAPIError{Code: "Throttling", Message: "Rate exceeded", Fault: smithy.FaultClient}
	case f.readErr[arn] != nil:
		call.err = f.readErr[arn]
	}
	f.calls = append(f.calls, call)
	if call.err != nil {
		return nil, call.err
	}
	out := &elbv2.DescribeTargetHealthOutput{}
	for _, t := range targets {
		p := aws.ToInt32(t.Port)
		h := &elbtypes.TargetHealth{State: elbtypes.TargetHealthStateEnumUnused, Reason: elbtypes.TargetHealthReasonEnumNotRegistered,
			Description: aws.String("Target is not registered to the target group")}
		switch {
		case f.members[arn][p]:
			h = &elbtypes.TargetHealth{State: elbtypes.TargetHealthStateEnumHealthy}
		case time.Now().Before(f.drainEnd[arn][p]):
			h = &elbtypes.TargetHealth{State: elbtypes.TargetHealthStateEnumDraining, Reason: elbtypes.TargetHealthReasonEnumDeregistrationInProgress,
				Description: aws.String("Target deregistration is in progress")}
		}
		out.TargetHealthDescriptions = append(out.TargetHealthDescriptions, elbtypes.TargetHealthDescription{
			Target: &elbtypes.TargetDescription{Id: t.Id, Port: aws.Int32(p)}, TargetHealth: h,
		})
	}
	return out, nil
}

func (f *fakeELB) DescribeTargetGroupAttributes(_ context.Context, in *elbv2.DescribeTargetGroupAttributesInput, _ ...func(*elbv2.Options)) (*elbv2.DescribeTargetGroupAttributesOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := strconv.Itoa(f.delay[aws.ToString(in.TargetGroupArn)])
	return &elbv2.DescribeTargetGroupAttributesOutput{Attributes: []elbtypes.TargetGroupAttribute{
		{Key: aws.String("deregistration_delay.timeout_seconds"), Value: aws.String(d)},
	}}, nil
}

func (f *fakeELB) DeregisterTargets(_ context.Context, in *elbv2.DeregisterTargetsInput, _ ...func(*elbv2.Options)) (*elbv2.DeregisterTargetsOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	arn := aws.ToString(in.TargetGroupArn)
	var ports []int32
	for _, t := range in.Targets {
		p := aws.ToInt32(t.Port)
		if !f.members[arn][p] {
			return nil, &smithy.GenericAPIError{Code: "InvalidTarget", Message: fmt.Sprintf("The following targets are not registered in target group: %s:%d", testInstance, p)}
		}
		ports = append(ports, p)
	}
	for _, p := range ports {
		delete(f.members[arn], p)
		if f.drainEnd[arn] == nil {
			f.drainEnd[arn] = map[int32]time.Time{}
		}
		f.drainEnd[arn][p] = time.Now().Add(f.drainFor[arn])
	}
	f.calls = append(f.calls, elbCall{op: "Deregister", arn: arn, ports: ports, at: time.Now()})
	return &elbv2.DeregisterTargetsOutput{}, nil
}

func (f *fakeELB) RegisterTargets(_ context.Context, in *elbv2.RegisterTargetsInput, _ ...func(*elbv2.Options)) (*elbv2.RegisterTargetsOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	arn := aws.ToString(in.TargetGroupArn)
	if f.registerErr != nil {
		return nil, f.registerErr
	}
	if f.members[arn] == nil {
		f.members[arn] = map[int32]bool{}
	}
	var ports []int32
	for _, t := range in.Targets {
		f.members[arn][aws.ToInt32(t.Port)] = true
		ports = append(ports, aws.ToInt32(t.Port))
	}
	f.calls = append(f.calls, elbCall{op: "Register", arn: arn, ports: ports, at: time.Now()})
	return &elbv2.RegisterTargetsOutput{}, nil
}

// fakeEC2 answers DescribeTags with this instance's tags.
type fakeEC2 struct{ tags map[string]string }

var _ tags.EC2 = fakeEC2{}

func (f fakeEC2) DescribeTags(_ context.Context, in *ec2.DescribeTagsInput, _ ...func(*ec2.Options)) (*ec2.DescribeTagsOutput, error) {
	var keys []string
	for _, flt := range in.Filters {
		if aws.ToString(flt.Name) == "key" {
			keys = flt.Values
		}
	}
	out := &ec2.DescribeTagsOutput{}
	for _, k := range keys {
		if v, ok := f.tags[k]; ok {
			out.Tags = append(out.Tags, ec2types.TagDescription{Key: aws.String(k), Value: aws.String(v), ResourceId: aws.String(testInstance), ResourceType: ec2types.ResourceTypeInstance})
		}
	}
	return out, nil
}

// fakeASG records the lifecycle calls.
type fakeASG struct {
	mu         sync.Mutex
	heartbeats []time.Time
	completed  []time.Time
	order      []string // "heartbeat" and "complete", in call order
}

var _ lifecycle.API = (*fakeASG)(nil)

func (f *fakeASG) CompleteLifecycleAction(_ context.Context, in *autoscaling.CompleteLifecycleActionInput, _ ...func(*autoscaling.Options)) (*autoscaling.CompleteLifecycleActionOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if aws.ToString(in.LifecycleActionResult) != "CONTINUE" || aws.ToString(in.InstanceId) != testInstance {
		return nil, &smithy.GenericAPIError{Code: "ValidationError", Message: fmt.Sprintf("unexpected %+v", in)}
	}
	f.completed = append(f.completed, time.Now())
	f.order = append(f.order, "complete")
	return &autoscaling.CompleteLifecycleActionOutput{}, nil
}

func (f *fakeASG) RecordLifecycleActionHeartbeat(context.Context, *autoscaling.RecordLifecycleActionHeartbeatInput, ...func(*autoscaling.Options)) (*autoscaling.RecordLifecycleActionHeartbeatOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.heartbeats = append(f.heartbeats, time.Now())
	f.order = append(f.order, "heartbeat")
	return &autoscaling.RecordLifecycleActionHeartbeatOutput{}, nil
}

// fakeSystemd records what the daemon tells the service manager.
type fakeSystemd struct {
	mu       sync.Mutex
	statuses []string
	ready    int
	stopping int
}

var _ serviceManager = (*fakeSystemd)(nil)

func (f *fakeSystemd) Ready()    { f.mu.Lock(); f.ready++; f.mu.Unlock() }
func (f *fakeSystemd) Stopping() { f.mu.Lock(); f.stopping++; f.mu.Unlock() }
func (f *fakeSystemd) Status(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.statuses = append(f.statuses, fmt.Sprintf(format, args...))
}

func (f *fakeSystemd) last() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.statuses) == 0 {
		return ""
	}
	return f.statuses[len(f.statuses)-1]
}

// commandRun is one drain command the daemon ran.
type commandRun struct {
	name, command string
	start, end    time.Time
	bound         time.Time
	env           []string
}

// fakeCommands runs a drain command as a process that works until it is
// stopped: it ends when its context ends or at its bound, as drainexec's
// SIGTERM and SIGKILL make a real one.
type fakeCommands struct {
	mu   sync.Mutex
	runs []commandRun
}

func (f *fakeCommands) run(ctx context.Context, name, command string, bound time.Time, env []string) {
	r := commandRun{name: name, command: command, start: time.Now(), bound: bound, env: env}
	t := time.NewTimer(time.Until(bound))
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
	r.end = time.Now()
	f.mu.Lock()
	f.runs = append(f.runs, r)
	f.mu.Unlock()
}

func (f *fakeCommands) all() []commandRun {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.runs)
}

// fakeServer serves until Shutdown, or fails when told to.
type fakeServer struct {
	fail chan error
	stop chan struct{}
	once sync.Once
}

func newFakeServer() *fakeServer {
	return &fakeServer{fail: make(chan error, 1), stop: make(chan struct{})}
}

func (s *fakeServer) Serve() error {
	select {
	case err := <-s.fail:
		return err
	case <-s.stop:
		return nil
	}
}

func (s *fakeServer) Shutdown(context.Context) error {
	s.once.Do(func() { close(s.stop) })
	return nil
}

// world is one in-process daemon and the fakes around it.
type world struct {
	t        *testing.T
	cfg      Config
	imds     *fakeIMDS
	elb      *fakeELB
	ec2      fakeEC2
	asg      *fakeASG
	systemd  *fakeSystemd
	commands *fakeCommands
	server   *fakeServer
	logs     *testbed.Buffer
	metrics  *metrics.Metrics
	gate     *web.Hello
	slept    time.Duration // what sleptSinceBoot answers; guarded by mu
	mu       sync.Mutex

	d      *Daemon
	stop   context.CancelCauseFunc
	result chan error
	ended  time.Time
}

// testConfig is the daemon's configuration in these tests: two target groups
// from the flag, the state in a temporary directory.
func testConfig(t *testing.T) Config {
	cfg := DefaultConfig()
	cfg.TargetGroupARNs = []string{tgA, tgB}
	cfg.SlowPollInterval = time.Second
	cfg.StateDir = t.TempDir()
	return cfg
}

// newWorld makes a daemon from cfg and fakes; elb is who answers for the target groups.
func newWorld(t *testing.T, cfg Config, elb *fakeELB, md *fakeIMDS) *world {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	w := &world{t: t, cfg: cfg, imds: md, elb: elb, asg: &fakeASG{}, systemd: &fakeSystemd{}, commands: &fakeCommands{},
		server: newFakeServer(), logs: &testbed.Buffer{}, metrics: metrics.New(metrics.Build{Version: "test"}),
		ec2: fakeEC2{tags: map[string]string{asgNameTag: "web-asg", "spot-agent:lifecycle-hook": "web-drain"}}}
	log := slog.New(slog.NewTextHandler(w.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	hm := w.metrics.HTTP()
	w.gate = web.NewHello(hm, hm.InFlight)
	if cfg.AppHealthURL != "" {
		w.gate.GateOnApp(cfg.AppHealthURL)
	}
	w.gate.ObserveReadiness(w.metrics)
	fanout, err := notify.New(context.Background(), notify.Options{}, w.metrics, log)
	if err != nil {
		t.Fatal(err)
	}
	state, err := openState(cfg.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	w.d = &Daemon{cfg: cfg, p: parts{
		log:     log,
		metrics: w.metrics,
		imds:    md,
		connect: func(_ context.Context, id imds.Identity) (*cloud, error) {
			return newCloud(cfg, id, awsClients{ec2: w.ec2, elb: elb, asg: w.asg}, md, w.metrics, log), nil
		},
		gate:        w.gate,
		servers:     []server{w.server},
		systemd:     w.systemd,
		notify:      fanout,
		run:         w.commands.run,
		probe:       func(context.Context) bool { return w.gate.Ready() },
		trafficPort: 80,
		state:       state,
		bootTime:    time.Now().Add(-time.Hour),
		slept: func() time.Duration {
			w.mu.Lock()
			defer w.mu.Unlock()
			return w.slept
		},
	}}
	return w
}

// start runs the daemon in the background (inside the test's bubble).
func (w *world) start() {
	ctx, cancel := context.WithCancelCause(context.Background())
	w.stop = cancel
	w.result = make(chan error, 1)
	go func() {
		err := w.d.Run(ctx)
		w.mu.Lock()
		w.ended = time.Now()
		w.mu.Unlock()
		w.result <- err
	}()
}

// signal delivers SIGTERM, as main does.
func (w *world) signal() { w.stop(SignalCause{Name: "SIGTERM"}) }

// wait returns when Run returned and its error; it fails the test if Run
// has not returned within d of fake time.
func (w *world) wait(d time.Duration) (time.Time, error) {
	w.t.Helper()
	select {
	case err := <-w.result:
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.ended, err
	case <-time.After(d):
		w.t.Fatalf("Run did not return within %s; last status %q; logs:\n%s", d, w.systemd.last(), w.logs)
		return time.Time{}, nil
	}
}

// running reports whether Run is still running.
func (w *world) running() bool {
	select {
	case err := <-w.result:
		w.result <- err
		return false
	default:
		return true
	}
}

func (w *world) setSlept(d time.Duration) { w.mu.Lock(); w.slept = d; w.mu.Unlock() }

// readiness is the /healthz state, as the load balancer sees it.
func (w *world) readiness() string {
	switch {
	case w.gate.Ready():
		return "ready"
	case w.gate.Draining():
		return "draining"
	}
	return "not ready"
}

func (w *world) logHas(s string) bool { return strings.Contains(w.logs.String(), s) }
