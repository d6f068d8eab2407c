package targets_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"

	"github.com/spot-agent/spot-agent/agent/targets"
	"github.com/spot-agent/spot-agent/internal/testbed"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbed.StopShared()
	os.Exit(code)
}

// observer records what metrics would see.
type observer struct {
	mu      sync.Mutex
	api     map[string]int
	dereg   map[string]int
	reg     map[string]int
	latency []time.Duration
	groups  int
	errs    int
}

func newObserver() *observer {
	return &observer{api: map[string]int{}, dereg: map[string]int{}, reg: map[string]int{}}
}

func (o *observer) ObserveAPI(op string, err error, _ time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.api[op+" "+targets.ErrorCode(err)]++
}

func (o *observer) ObserveDeregistration(result string, since time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.dereg[result]++
	if result == targets.ResultSuccess {
		o.latency = append(o.latency, since)
	}
}

func (o *observer) ObserveRegistration(result string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.reg[result]++
}

func (o *observer) ObserveResolve(groups int, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if err != nil {
		o.errs++
		return
	}
	o.groups = groups
}

var _ targets.Observer = (*observer)(nil)

func fixed(arns ...string) targets.GroupsFunc {
	return func(context.Context) ([]string, string, error) { return arns, "flag", nil }
}

func resolver(id string, elb targets.ELB, groups targets.GroupsFunc, obs *observer, log *bytes.Buffer) *targets.Resolver {
	if log == nil {
		log = &bytes.Buffer{}
	}
	return &targets.Resolver{InstanceID: id, ELB: elb, Groups: groups, Observer: obs,
		Log: slog.New(slog.NewTextHandler(log, nil)), Refresh: time.Minute, Timeout: 10 * time.Second}
}

func TestResolveFindsPortsAndDeregistrationDelayOfEveryGroup(t *testing.T) {
	moto := testbed.SharedMoto(t)
	id := moto.Instance(t, nil)
	other := moto.Instance(t, nil)
	a := moto.TargetGroup(t, "resolve-a", 80, 90*time.Second)
	b := moto.TargetGroup(t, "resolve-b", 8080, 30*time.Second)
	moto.Register(t, a, id, 80)
	moto.Register(t, a, other, 80)
	// moto keys targets by instance id (a second port replaces the first), so
	// several ports per group cannot be set up here.
	moto.Register(t, b, id, 8080)
	obs := newObserver()
	res, err := resolver(id, moto.ELB(), fixed(a, b), obs, nil).Resolve(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []targets.Group{
		{ARN: a, Ports: []int32{80}, DeregistrationDelay: 90 * time.Second},
		{ARN: b, Ports: []int32{8080}, DeregistrationDelay: 30 * time.Second},
	}
	if !slices.EqualFunc(res.Groups, want, func(x, y targets.Group) bool {
		return x.ARN == y.ARN && slices.Equal(x.Ports, y.Ports) && x.DeregistrationDelay == y.DeregistrationDelay
	}) {
		t.Fatalf("groups = %+v, want %+v", res.Groups, want)
	}
	if res.MaxDeregistrationDelay() != 90*time.Second || obs.groups != 2 {
		t.Fatalf("max delay %s, observed groups %d", res.MaxDeregistrationDelay(), obs.groups)
	}
}

func TestDeregisterTakesTheInstanceOutOfEveryGroupInOneCallEach(t *testing.T) {
	moto := testbed.SharedMoto(t)
	id := moto.Instance(t, nil)
	other := moto.Instance(t, nil)
	a := moto.TargetGroup(t, "dereg-a", 80, 90*time.Second)
	b := moto.TargetGroup(t, "dereg-b", 80, 90*time.Second)
	moto.Register(t, a, id, 80)
	moto.Register(t, a, other, 80)
	moto.Register(t, b, id, 8080)
	obs := newObserver()
	r := resolver(id, moto.ELB(), fixed(a, b), obs, nil)
	if _, err := r.Resolve(context.Background()); err != nil {
		t.Fatal(err)
	}
	seen := time.Now()
	out, err := r.Deregister(context.Background(), seen)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range out {
		if o.Result != targets.ResultSuccess || o.Attempts != 1 {
			t.Errorf("%s: %+v", o.ARN, o)
		}
	}
	if p := moto.Registered(t, a, id); len(p) != 0 {
		t.Errorf("still registered in a on %v", p)
	}
	if p := moto.Registered(t, b, id); len(p) != 0 {
		t.Errorf("still registered in b on %v", p)
	}
	if p := moto.Registered(t, a, other); !slices.Equal(p, []int32{80}) {
		t.Errorf("the other instance was touched: %v", p)
	}
	if obs.api["elasticloadbalancing:DeregisterTargets success"] != 2 || obs.dereg[targets.ResultSuccess] != 2 || len(obs.latency) != 2 {
		t.Errorf("observed %+v", obs)
	}
}

func TestDeregisterWithoutAPriorResolutionResolvesFirst(t *testing.T) {
	moto := testbed.SharedMoto(t)
	id := moto.Instance(t, nil)
	a := moto.TargetGroup(t, "cold-a", 80, 10*time.Second)
	moto.Register(t, a, id, 80)
	r := resolver(id, moto.ELB(), fixed(a), newObserver(), nil)
	if _, err := r.Deregister(context.Background(), time.Now()); err != nil {
		t.Fatal(err)
	}
	if p := moto.Registered(t, a, id); len(p) != 0 {
		t.Fatalf("still registered on %v", p)
	}
}

func TestDeregisterLooksAgainWhenTheCacheSaysNotRegistered(t *testing.T) {
	moto := testbed.SharedMoto(t)
	id := moto.Instance(t, nil)
	a := moto.TargetGroup(t, "late-a", 80, 10*time.Second)
	obs := newObserver()
	r := resolver(id, moto.ELB(), fixed(a), obs, nil)
	if _, err := r.Resolve(context.Background()); err != nil {
		t.Fatal(err)
	}
	moto.Register(t, a, id, 80) // the fleet registers it after the agent looked
	out, err := r.Deregister(context.Background(), time.Now())
	if err != nil || out[0].Result != targets.ResultSuccess {
		t.Fatalf("%+v, %v", out, err)
	}
	if p := moto.Registered(t, a, id); len(p) != 0 {
		t.Fatalf("still registered on %v", p)
	}
	// Not registered at all: nothing to do, and it says so.
	out, err = r.Deregister(context.Background(), time.Now())
	if err != nil || out[0].Result != targets.ResultNotRegistered {
		t.Fatalf("second time: %+v, %v", out, err)
	}
}

func TestDeregisterRetriesThrottlingUntilItSucceeds(t *testing.T) {
	moto := testbed.SharedMoto(t)
	id := moto.Instance(t, nil)
	a := moto.TargetGroup(t, "throttled-a", 80, 10*time.Second)
	moto.Register(t, a, id, 80)
	proxy := testbed.NewProxy(t, moto.URL)
	var mu sync.Mutex
	left := 4
	proxy.Inject(func(action string) (int, string, bool) {
		mu.Lock()
		defer mu.Unlock()
		if action == "DeregisterTargets" && left > 0 {
			left--
			if left%2 == 0 {
				return http.StatusServiceUnavailable, "ServiceUnavailable", true
			}
			return http.StatusBadRequest, "Throttling", true
		}
		return 0, "", false
	})
	cfg := moto.Config()
	cfg.BaseEndpoint = &proxy.URL
	cfg.RetryMaxAttempts = 1
	obs := newObserver()
	logs := &bytes.Buffer{}
	r := resolver(id, elbv2.NewFromConfig(cfg), fixed(a), obs, logs)
	if _, err := r.Resolve(context.Background()); err != nil {
		t.Fatal(err)
	}
	out, err := r.Deregister(context.Background(), time.Now())
	if err != nil || out[0].Result != targets.ResultSuccess || out[0].Attempts != 5 {
		t.Fatalf("%+v, %v", out, err)
	}
	if obs.api["elasticloadbalancing:DeregisterTargets Throttling"] != 2 || obs.api["elasticloadbalancing:DeregisterTargets ServiceUnavailable"] != 2 {
		t.Fatalf("observed API calls %v", obs.api)
	}
	if total, injected := proxy.Count("DeregisterTargets"); total != 5 || injected != 4 {
		t.Fatalf("proxy saw %d calls, %d injected", total, injected)
	}
	if !strings.Contains(logs.String(), "deregister retrying") {
		t.Fatalf("no retry logged:\n%s", logs)
	}
}

func TestDeregisterGivesUpAtTheDeadline(t *testing.T) {
	moto := testbed.SharedMoto(t)
	id := moto.Instance(t, nil)
	a := moto.TargetGroup(t, "deadline-a", 80, 10*time.Second)
	moto.Register(t, a, id, 80)
	proxy := testbed.NewProxy(t, moto.URL)
	proxy.Inject(func(action string) (int, string, bool) {
		return http.StatusBadRequest, "Throttling", action == "DeregisterTargets"
	})
	cfg := moto.Config()
	cfg.BaseEndpoint = &proxy.URL
	cfg.RetryMaxAttempts = 1
	obs := newObserver()
	r := resolver(id, elbv2.NewFromConfig(cfg), fixed(a), obs, nil)
	if _, err := r.Resolve(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	out, err := r.Deregister(ctx, start)
	if err == nil || out[0].Result != targets.ResultTimeout || out[0].Attempts < 2 {
		t.Fatalf("%+v, %v", out, err)
	}
	if took := time.Since(start); took > 1500*time.Millisecond {
		t.Fatalf("gave up after %s, past its 1s deadline", took)
	}
	if obs.dereg[targets.ResultTimeout] != 1 {
		t.Fatalf("observed %v", obs.dereg)
	}
}

func TestDeregisterStopsAtOnceOnAPermissionError(t *testing.T) {
	moto := testbed.SharedMoto(t)
	id := moto.Instance(t, nil)
	a := moto.TargetGroup(t, "denied-a", 80, 10*time.Second)
	moto.Register(t, a, id, 80)
	proxy := testbed.NewProxy(t, moto.URL)
	proxy.Inject(func(action string) (int, string, bool) {
		return http.StatusForbidden, "AccessDenied", action == "DeregisterTargets"
	})
	cfg := moto.Config()
	cfg.BaseEndpoint = &proxy.URL
	obs := newObserver()
	r := resolver(id, elbv2.NewFromConfig(cfg), fixed(a), obs, nil)
	if _, err := r.Resolve(context.Background()); err != nil {
		t.Fatal(err)
	}
	out, err := r.Deregister(context.Background(), time.Now())
	if err == nil || out[0].Result != targets.ResultError || out[0].Attempts != 1 || !strings.Contains(err.Error(), "AccessDenied") {
		t.Fatalf("%+v, %v", out, err)
	}
}

func TestMissingGroupsFailFastWithTheReason(t *testing.T) {
	moto := testbed.SharedMoto(t)
	obs := newObserver()
	groups := func(context.Context) ([]string, string, error) {
		return nil, "imds", fmt.Errorf("%w: instance has no loadBalancerTargetGroup tag", targets.ErrNoGroups)
	}
	r := resolver("i-0123456789abcdef0", moto.ELB(), groups, obs, nil)
	start := time.Now()
	_, err := r.Deregister(context.Background(), start)
	if !errors.Is(err, targets.ErrNoGroups) || time.Since(start) > time.Second {
		t.Fatalf("err = %v after %s", err, time.Since(start))
	}
	if obs.dereg[targets.ResultNoGroups] != 1 || obs.errs != 1 {
		t.Fatalf("observed %+v", obs)
	}
}

func TestRegisterPutsTheInstanceInEveryGroupOnce(t *testing.T) {
	moto := testbed.SharedMoto(t)
	id := moto.Instance(t, nil)
	a := moto.TargetGroup(t, "register-a", 80, 10*time.Second)
	b := moto.TargetGroup(t, "register-b", 80, 10*time.Second)
	moto.Register(t, b, id, 8080)
	obs := newObserver()
	r := resolver(id, moto.ELB(), fixed(a, b), obs, nil)
	if err := r.Register(context.Background(), 8080); err != nil {
		t.Fatal(err)
	}
	if p := moto.Registered(t, a, id); !slices.Equal(p, []int32{8080}) {
		t.Fatalf("a: %v", p)
	}
	if obs.reg[targets.ResultSuccess] != 1 || obs.api["elasticloadbalancing:RegisterTargets success"] != 1 {
		t.Fatalf("observed %+v (b was already registered and must not be registered again)", obs)
	}
	if res, _ := r.Current(); !slices.Equal(res.Groups[0].Ports, []int32{8080}) {
		t.Fatalf("resolution not refreshed after registering: %+v", res)
	}
}

func TestRunKeepsTheViewFreshAndStopsWithItsContext(t *testing.T) {
	moto := testbed.SharedMoto(t)
	id := moto.Instance(t, nil)
	a := moto.TargetGroup(t, "run-a", 80, 10*time.Second)
	r := resolver(id, moto.ELB(), fixed(a), newObserver(), nil)
	r.Refresh = 100 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- r.Run(ctx) }()
	testbed.Eventually(t, 5*time.Second, "first resolution", func() bool { _, ok := r.Current(); return ok })
	moto.Register(t, a, id, 80)
	testbed.Eventually(t, 5*time.Second, "refresh to see the registration", func() bool {
		res, _ := r.Current()
		return slices.Equal(res.Groups[0].Ports, []int32{80})
	})
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func TestJoinGoesBackOnEachPortOnceAndSkipsAGroupNoLongerOurs(t *testing.T) {
	moto := testbed.SharedMoto(t)
	id := moto.Instance(t, nil)
	a := moto.TargetGroup(t, "join-a", 80, 10*time.Second)
	b := moto.TargetGroup(t, "join-b", 80, 10*time.Second)
	gone := moto.TargetGroup(t, "join-gone", 80, 10*time.Second)
	moto.Register(t, b, id, 8080)
	var log bytes.Buffer
	obs := newObserver()
	r := resolver(id, moto.ELB(), fixed(a, b), obs, &log)
	// What a stop left: A on 80, B on 8080 (still there), and a group the
	// instance's tag no longer names. (moto keeps one port per instance and
	// group — it keys targets by id — so two ports in one group are not
	// tried here.)
	err := r.Join(context.Background(), []targets.Group{
		{ARN: a, Ports: []int32{80}}, {ARN: b, Ports: []int32{8080}}, {ARN: gone, Ports: []int32{80}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if p := moto.Registered(t, a, id); !slices.Equal(p, []int32{80}) {
		t.Errorf("A: %v, want 80", p)
	}
	if p := moto.Registered(t, gone, id); len(p) != 0 {
		t.Errorf("registered in a group that is no longer this instance's: %v", p)
	}
	if n := obs.api["elasticloadbalancing:RegisterTargets success"]; n != 1 {
		t.Errorf("%d RegisterTargets calls, want 1 (A:80; B:8080 was there already)", n)
	}
	if !strings.Contains(log.String(), "no longer one of this instance's target groups") {
		t.Errorf("the skipped group is not logged:\n%s", log.String())
	}
	if res, _ := r.Current(); !slices.Equal(res.Groups[0].Ports, []int32{80}) {
		t.Errorf("resolution after Join: %+v", res.Groups)
	}
}

// Against moto (which forgets a deregistered target at once), Follow's first
// read names the instance's own target and finds it unused: out, by the
// target health, with AWS's reason.
func TestFollowReadsTheInstancesOwnTargetsUntilTheGroupLetsGo(t *testing.T) {
	moto := testbed.SharedMoto(t)
	id := moto.Instance(t, nil)
	other := moto.Instance(t, nil)
	a := moto.TargetGroup(t, "follow-a", 80, 10*time.Second)
	moto.Register(t, a, id, 80)
	moto.Register(t, a, other, 80)
	obs := newObserver()
	r := resolver(id, moto.ELB(), fixed(a), obs, nil)
	res, err := r.Resolve(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if res.Groups[0].Targets != 2 {
		t.Errorf("the group holds %d targets, want 2 (this instance and the other)", res.Groups[0].Targets)
	}
	out, err := r.Deregister(context.Background(), time.Now())
	if err != nil || out[0].DeregisteredAt.IsZero() {
		t.Fatalf("%+v, %v", out, err)
	}
	var changes []targets.Outcome
	start := time.Now()
	got := r.Follow(context.Background(), out, func(o targets.Outcome) { changes = append(changes, o) })
	o := got[0]
	if !o.Out() || o.OutBy != targets.OutByTargetHealth || o.State != "unused" || o.Reason != "Target.NotRegistered" || o.Reads != 1 {
		t.Fatalf("followed %+v; want out by the target health in one read", o)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Follow took %s; one round is at most 1.5 s for a group of 2", took)
	}
	if len(changes) != 1 || !changes[0].Out() {
		t.Errorf("changes %+v, want the one of the group letting go", changes)
	}
	if !slices.Equal(moto.Registered(t, a, other), []int32{80}) {
		t.Error("the other instance was touched")
	}
	if obs.api["elasticloadbalancing:DescribeTargetHealth success"] != 2 {
		t.Errorf("API calls %v, want two reads (the resolution, one round)", obs.api)
	}
}
