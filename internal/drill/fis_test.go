package drill

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"

	"github.com/spot-agent/spot-agent/agent/bootstrap"
	"github.com/spot-agent/spot-agent/internal/testbed"
)

// The drill command end to end: `spot-agent drill` against stacks that
// bootstrap built at moto, through the FIS fake in front of moto
// (testbed.FIS: StartExperiment gives the chosen instance's metadata mock
// its notice, and at the deadline terminates it), with the ALB stand-in's
// HAProxy as the load balancer (--connect-to sends the load for the stack's
// DNS name there). Each stack's fleet is three Spot Instances at moto,
// attached to the stack's Auto Scaling group, and one more, stopped, as a
// warm pool's: when the fake terminates the chosen instance, the test plays
// the Auto Scaling group and brings the warm one into service (started,
// attached, so registered in the group), whose agent has waited for it.
//
// The fleets run side by side, so that their two-minute notices overlap:
//
//   - agents: spot-agent on every instance; the drill passes, not one
//     request failed;
//   - dry-run: spot-agent run --dry-run, which does not deregister but turns
//     its readiness to 503 at the notice: the load balancer's health checks
//     take the instance out before it stops serving;
//   - none: a web server (nginx) with no interruption handler, as the
//     workshop without its Lambda: the instance dies while in service, and
//     the drill fails (exit 1) with the failed requests counted.
//
// A fourth stack of two agents takes the bad input: a missing stack, too
// few healthy targets for --instances, the caller refused
// fis:StartExperiment, an unreachable load balancer, and a Ctrl-C in the
// middle of an experiment (stopped, the template put back).
//
// The agents' drill and the Ctrl-C run with an access key of their own
// (policyCaller): once both passed, the calls they made are the policy of
// whoever runs a drill, docs/drill-iam-policy.json (policyRuns.check).
func TestDrillCommandThroughFIS(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("a drill lasts the two-minute notice and a replacement")
	}
	moto := testbed.SharedMoto(t)
	ec2fake := testbed.NewEC2Fake(t, moto)
	var policy policyRuns
	t.Cleanup(func() { policy.check(t, moto) }) // after the parallel subtests
	for _, kind := range []string{"agents", "dry-run", "none", "bad-input"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			members := 3
			if kind == "bad-input" {
				members = 2
			}
			f := newFISFleet(t, moto, ec2fake, kind, members)
			switch kind {
			case "bad-input":
				badInput(t, moto, f)
			case "agents":
				f.drill(t, kind, withEnv(f.env, "AWS_ACCESS_KEY_ID", policyCaller))
			default:
				f.drill(t, kind, f.env)
			}
			if (kind == "agents" || kind == "bad-input") && !t.Failed() {
				policy.passed(kind, f)
			}
		})
	}
}

// fisFleet is one stack at moto with its instances behind the stand-in.
type fisFleet struct {
	name    string
	kind    string
	moto    *testbed.Moto
	alb     *testbed.ALB
	out     bootstrap.Outputs
	members []*fisMember
	spare   *fisMember // the warm pool's instance, stopped until the replacement
	env     []string
	events  chan func() // hook work for the test goroutine
	mu      sync.Mutex
	log     []string
}

type fisMember struct {
	id    string
	imds  *testbed.AEMM
	agent *testbed.Agent
	app   *testbed.Nginx
}

func (f *fisFleet) note(format string, a ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.log = append(f.log, time.Now().Format("15:04:05.000")+" "+fmt.Sprintf(format, a...))
}

func awsConfig(endpoint string) aws.Config {
	return aws.Config{Region: testbed.Region, Credentials: credentials.NewStaticCredentialsProvider("testing", "testing", ""), BaseEndpoint: aws.String(endpoint)}
}

// newFISFleet bootstraps a stack (an Auto Scaling group of none: the test
// brings its own Spot Instances) and starts its instances.
func newFISFleet(t *testing.T, moto *testbed.Moto, ec2fake *testbed.EC2Fake, kind string, n int) *fisFleet {
	name := fmt.Sprintf("fis-%s-%d", strings.ReplaceAll(kind, "-", ""), time.Now().UnixNano()%100000)
	f := &fisFleet{name: name, kind: kind, moto: moto, events: make(chan func(), 16)}
	cfg := bootstrap.DefaultConfig()
	cfg.Name, cfg.Region, cfg.Fleet = name, testbed.Region, bootstrap.FleetASG
	cfg.InstanceTypes, cfg.Requirements = []string{"c5.large", "m5.large"}, nil
	cfg.AgentURL, cfg.AgentSHA256 = "https://example.com/spot-agent_1.0.0_x86_64.rpm", []string{strings.Repeat("a", 64)}
	cfg.Min, cfg.Capacity, cfg.Max, cfg.DeregistrationDelay = 0, 0, 6, 30
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := bootstrap.New(cfg, bootstrap.NewClients(awsConfig(ec2fake.URL)), bootstrap.Options{PollInterval: 10 * time.Millisecond, Timeout: 30 * time.Second}).Apply(ctx)
	if err != nil {
		t.Fatalf("bootstrap %s: %v", name, err)
	}
	f.out = res.Outputs
	f.alb = testbed.NewALB(t, moto, testbed.ALBOptions{TargetGroup: f.out.TargetGroupARN, Lag: 10 * time.Second})
	tags := map[string]string{bootstrap.StackTag: name, bootstrap.TargetGroupTag: f.out.TargetGroupARN}
	var backends []testbed.Backend
	for i := 0; i <= n; i++ {
		spare := i == n
		m := &fisMember{id: launch(t, moto, tags, !spare)}
		m.imds = testbed.StartAEMM(t, testbed.AEMMOptions{Mode: "spot", InstanceID: m.id, NoNotice: true})
		addr := ""
		switch kind {
		case "none":
			m.app = testbed.StartNginx(t)
			addr = m.app.Addr
		default:
			args := []string{"--imds-endpoint", m.imds.URL, "--log-level", "info", "--target-group-arn", f.out.TargetGroupARN}
			if kind == "dry-run" {
				args = append(args, "--dry-run")
			}
			m.agent = testbed.StartAgent(t, f.alb.Env(), args...)
			addr = m.agent.Traffic
		}
		backends = append(backends, testbed.Backend{Name: m.id, Addr: addr})
		if spare {
			f.spare = m
		} else {
			f.members = append(f.members, m)
		}
	}
	for _, m := range f.members {
		if m.agent != nil {
			testbed.Eventually(t, 60*time.Second, "agent ready", func() bool { c, _, _ := m.agent.Get("/healthz"); return c == 200 })
		}
	}
	var ids []string
	for _, m := range f.members {
		ids = append(ids, m.id)
	}
	asg := autoscaling.NewFromConfig(moto.Config())
	if _, err := asg.AttachInstances(ctx, &autoscaling.AttachInstancesInput{AutoScalingGroupName: aws.String(f.out.FleetID), InstanceIds: ids}); err != nil {
		t.Fatalf("attach %v: %v", ids, err)
	}
	f.alb.Start(t, backends)
	f.alb.WaitHealthy(t, ids...)
	for _, m := range append(f.members, f.spare) {
		f.hooks(t, m)
	}
	// The stack's DNS name goes to HAProxy.
	host := strings.TrimSuffix(strings.TrimPrefix(f.out.URL, "http://"), "/")
	// The drill reads the target group through the stand-in (an ALB's
	// draining), everything else at moto (behind its FIS fake).
	f.env = append(os.Environ(), "AWS_ENDPOINT_URL="+moto.URL, "AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING_V2="+f.alb.URL,
		"AWS_ACCESS_KEY_ID=testing", "AWS_SECRET_ACCESS_KEY=testing", "AWS_REGION="+testbed.Region,
		"AWS_EC2_METADATA_DISABLED=true", "SPOT_AGENT_CONNECT_TO="+host+":80:"+f.alb.Frontend)
	return f
}

// withEnv is env with key set to value (replaced, not added twice).
func withEnv(env []string, key, value string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, key+"=") {
			out = append(out, kv)
		}
	}
	return append(out, key+"="+value)
}

// launch runs an instance at moto with tags: a Spot Instance, or (the warm
// pool's) an On-Demand one, which FIS never chooses, stopped.
func launch(t *testing.T, moto *testbed.Moto, tags map[string]string, spot bool) string {
	var ts []ec2types.Tag
	for k, v := range tags {
		ts = append(ts, ec2types.Tag{Key: aws.String(k), Value: aws.String(v)})
	}
	in := &ec2.RunInstancesInput{ImageId: aws.String("ami-12c6146b"), InstanceType: ec2types.InstanceTypeC5Large, MinCount: aws.Int32(1), MaxCount: aws.Int32(1),
		TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeInstance, Tags: ts}}}
	if spot {
		in.InstanceMarketOptions = &ec2types.InstanceMarketOptionsRequest{MarketType: ec2types.MarketTypeSpot}
	}
	out, err := moto.EC2().RunInstances(context.Background(), in)
	if err != nil {
		t.Fatalf("run instance: %v", err)
	}
	id := aws.ToString(out.Instances[0].InstanceId)
	if !spot {
		if _, err := moto.EC2().StopInstances(context.Background(), &ec2.StopInstancesInput{InstanceIds: []string{id}}); err != nil {
			t.Fatalf("stop the warm instance: %v", err)
		}
	}
	return id
}

// hooks: what an interruption does to m, done on the test's goroutine
// (f.serve): its metadata serves the notice; at the deadline it dies, and
// the warm instance comes into service in its place.
func (f *fisFleet) hooks(t *testing.T, m *fisMember) {
	f.moto.FIS.Instance(m.id, testbed.InstanceHooks{
		Notice: func(deadline time.Time) {
			f.events <- func() {
				f.note("notice on %s, interruption at %s", m.id, deadline.Format(time.RFC3339))
				m.imds.Restart(t, testbed.AEMMOptions{Mode: "spot", Action: "terminate", NoticeTime: deadline})
			}
		},
		Terminated: func() {
			f.events <- func() {
				f.note("%s terminated", m.id)
				if m.agent != nil {
					m.agent.Signal(syscall.SIGKILL)
				}
				if m.app != nil {
					m.app.Kill()
				}
				ctx := context.Background()
				if _, err := f.moto.EC2().StartInstances(ctx, &ec2.StartInstancesInput{InstanceIds: []string{f.spare.id}}); err != nil {
					t.Errorf("start the warm instance: %v", err)
				}
				asg := autoscaling.NewFromConfig(f.moto.Config())
				if _, err := asg.AttachInstances(ctx, &autoscaling.AttachInstancesInput{AutoScalingGroupName: aws.String(f.out.FleetID), InstanceIds: []string{f.spare.id}}); err != nil {
					t.Errorf("attach the warm instance: %v", err)
				}
				f.note("%s in service in place of %s", f.spare.id, m.id)
			}
		},
	})
}

// run runs `spot-agent drill` with args, serving the hooks meanwhile, and
// returns its exit code, stdout and stderr. signal, when given, is sent to
// it once its stderr matches after.
func (f *fisFleet) run(t *testing.T, env []string, after, signal string, args ...string) (int, string, string) {
	cmd := exec.Command(testbed.AgentBinary(t), append([]string{"drill", "--name", f.name, "--yes"}, args...)...)
	cmd.Env = env
	var stdout bytes.Buffer
	stderr := &testbed.Buffer{}
	cmd.Stdout, cmd.Stderr = &stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case fn := <-f.events:
			fn()
		case <-tick.C:
			if signal != "" && strings.Contains(stderr.String(), after) {
				_ = cmd.Process.Signal(syscall.SIGINT)
				signal = ""
			}
		case err := <-done:
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			return code, stdout.String(), stderr.String()
		}
	}
}

// drill runs the full drill on the fleet and holds it to what the kind
// promises.
func (f *fisFleet) drill(t *testing.T, kind string, env []string) {
	dir := t.TempDir()
	began := time.Now()
	code, stdout, stderr := f.run(t, env, "", "", "--rate", "20", "--baseline", "10s", "--after", "10s", "--poll-interval", "1s",
		"--timeout", "6m", "--report", dir)
	t.Logf("%s: drill exited %d after %s", kind, code, time.Since(began).Round(time.Second))
	var rep struct {
		Requests struct {
			Sent, OK, Failed int
			ByStatus         map[string]int `json:"by_status_class"`
			ByError          map[string]int `json:"by_connection_error"`
		}
		Chosen           []string
		ExperimentStatus string `json:"experiment_status"`
		Timeline         []struct{ What, Instance string }
		Verdict          string
		Pass             bool
	}
	jsons, _ := filepath.Glob(filepath.Join(dir, "drill-*.json"))
	if len(jsons) != 1 {
		t.Fatalf("--report wrote %v; want one JSON\nstdout:\n%s\nstderr:\n%s", jsons, stdout, stderr)
	}
	b, err := os.ReadFile(jsons[0])
	if err == nil {
		err = json.Unmarshal(b, &rep)
	}
	if err != nil {
		t.Fatalf("the drill's JSON report: %v\n%s\nstderr:\n%s", err, b, stderr)
	}
	t.Logf("%s: the report:\n%s\nthe test's hooks:\n%s", kind, stdout, strings.Join(f.log, "\n"))
	pngs, _ := filepath.Glob(filepath.Join(dir, "drill-*.png"))
	if len(pngs) != 1 {
		t.Errorf("--report wrote %v %v; want one JSON and one PNG", jsons, pngs)
	} else if b, err := os.ReadFile(pngs[0]); err != nil || !bytes.HasPrefix(b, []byte("\x89PNG")) {
		t.Errorf("the chart %s is not a PNG (%v)", pngs[0], err)
	}
	if out := os.Getenv("DRILL_OUT"); out != "" {
		for _, p := range append(pngs, jsons...) {
			b, _ := os.ReadFile(p)
			_ = os.WriteFile(filepath.Join(out, "fis-"+kind+filepath.Ext(p)), b, 0o644)
		}
	}
	if rep.ExperimentStatus != "completed" || len(rep.Chosen) != 1 {
		t.Errorf("%s: experiment %s, chosen %v; want completed, one instance\nstderr:\n%s", kind, rep.ExperimentStatus, rep.Chosen, stderr)
	}
	seen := map[string]bool{}
	for _, e := range rep.Timeline {
		seen[e.What] = true
	}
	for _, what := range []string{"experiment started", "notice", "instance terminated", "replacement healthy"} {
		if !seen[what] {
			t.Errorf("%s: the timeline lacks %q\nstderr:\n%s", kind, what, stderr)
		}
	}
	if rep.Requests.Sent < 20*60 {
		t.Errorf("%s: %d requests sent; want the rate through the two-minute notice", kind, rep.Requests.Sent)
	}
	switch kind {
	case "agents", "dry-run":
		if code != 0 || !rep.Pass || rep.Requests.Failed != 0 {
			t.Errorf("%s: exit %d, %d failed (%v %v): %s; want 0, none failed\nstderr:\n%s", kind, code, rep.Requests.Failed, rep.Requests.ByStatus, rep.Requests.ByError, rep.Verdict, stderr)
		}
		if kind == "agents" && !seen["deregistration seen"] {
			t.Errorf("the agent's deregistration was not seen\nstderr:\n%s", stderr)
		}
	case "none":
		if code != 1 || rep.Pass || rep.Requests.Failed == 0 {
			t.Errorf("none: exit %d, %d failed: %s; want 1 and failed requests\nstderr:\n%s", code, rep.Requests.Failed, rep.Verdict, stderr)
		}
	}
	for _, e := range f.moto.FIS.Running() {
		if e.TemplateID == f.out.ExperimentTemplateID {
			t.Errorf("an experiment left running: %+v", e)
		}
	}
}

// badInput: each a clear message, a non-zero exit, and no experiment left
// running.
func badInput(t *testing.T, moto *testbed.Moto, f *fisFleet) {
	// The other fleets' drills run beside: this stack's experiments only.
	ours := func() []testbed.FISExperiment {
		var out []testbed.FISExperiment
		for _, e := range moto.FIS.Experiments() {
			if e.TemplateID == f.out.ExperimentTemplateID {
				out = append(out, e)
			}
		}
		return out
	}
	experiments := func() int { return len(ours()) }
	for _, tc := range []struct {
		name string
		env  []string
		args []string
		want string
		code int
	}{
		{"missing stack", f.env, []string{"--name", "nosuchstack"}, "no stack nosuchstack in us-east-1", 2},
		{"too few healthy targets", f.env, []string{"--instances", "2"}, "has 2 healthy targets, and interrupting 2 needs at least 3", 2},
		{"unreachable load balancer", withEnv(f.env, "SPOT_AGENT_CONNECT_TO", strings.TrimSuffix(strings.TrimPrefix(f.out.URL, "http://"), "/")+":80:127.0.0.1:1"),
			nil, "the load balancer does not answer", 2},
		{"no FIS permission", withEnv(f.env, "AWS_ACCESS_KEY_ID", "denied"), nil, "may not fis:StartExperiment (AccessDeniedException", 2},
	} {
		before := experiments()
		if tc.name == "no FIS permission" {
			moto.FIS.Deny("denied", "fis:StartExperiment")
		}
		code, stdout, stderr := f.run(t, tc.env, "", "", append([]string{"--baseline", "1s", "--timeout", "3m"}, append(tc.args, "--rate", "5", "--poll-interval", "1s")...)...)
		if code != tc.code || !strings.Contains(stderr, tc.want) || strings.Contains(stderr, "for usage") {
			t.Errorf("%s: exit %d, stderr:\n%s\nwant exit %d and %q", tc.name, code, stderr, tc.code, tc.want)
		}
		if experiments() != before {
			t.Errorf("%s: an experiment was started: %+v", tc.name, ours())
		}
		t.Logf("%s: exit %d:\n%s%s", tc.name, code, stderr, stdout)
	}
	// Ctrl-C in the middle of a three-minute notice's experiment: stopped,
	// the template put back, the report written (its calls are the
	// policy's: those of another --before, and of Ctrl-C).
	code, stdout, stderr := f.run(t, withEnv(f.env, "AWS_ACCESS_KEY_ID", policyCaller), "experiment started", "SIGINT", "--before", "3m", "--rate", "5", "--baseline", "2s", "--poll-interval", "1s")
	if code != 1 || !strings.Contains(stdout, "interrupted (received SIGINT)") || !strings.Contains(stderr, "experiment stopped") {
		t.Errorf("Ctrl-C: exit %d\nstdout:\n%s\nstderr:\n%s\nwant exit 1, the report interrupted, the experiment stopped", code, stdout, stderr)
	}
	all := ours()
	if len(all) == 0 || all[len(all)-1].Status != "stopped" && all[len(all)-1].Status != "stopping" {
		t.Errorf("Ctrl-C: experiments %+v; want the last one stopped", all)
	}
	if sel, dur, _ := moto.FIS.Template(f.out.ExperimentTemplateID); sel != "COUNT(1)" || dur != "PT2M" {
		t.Errorf("Ctrl-C: the template is left at %s %s; want COUNT(1) PT2M", sel, dur)
	}
	t.Logf("Ctrl-C: exit %d, %s", code, lastLine(stdout))
	// Nothing happened to the fleet.
	out, err := moto.ELB().DescribeTargetHealth(context.Background(), &elbv2.DescribeTargetHealthInput{TargetGroupArn: aws.String(f.out.TargetGroupARN)})
	if err != nil || len(out.TargetHealthDescriptions) != 2 {
		t.Errorf("targets after the bad input: %v %v", out, err)
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
