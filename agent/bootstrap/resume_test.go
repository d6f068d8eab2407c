package bootstrap_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"

	"github.com/spot-agent/spot-agent/agent/bootstrap"
	"github.com/spot-agent/spot-agent/internal/testbed"
)

// failOn makes the proxy answer one action with 403 AccessDenied (not retried).
func failOn(p *testbed.Proxy, action string) {
	p.Inject(func(a string) (int, string, bool) {
		return http.StatusForbidden, "AccessDenied", a == action
	})
}

func TestBootstrapFailingAtAMiddleStepResumesOnReRun(t *testing.T) {
	t.Parallel()
	m := testbed.SharedMoto(t)
	proxy := testbed.NewProxy(t, m.URL)
	cfg := testConfig("resume", bootstrap.FleetASG)
	st, rec := newStack(t, proxy.URL, cfg)

	failOn(proxy, "PutRolePolicy")
	_, err := st.Apply(ctx(t))
	var se *bootstrap.StepError
	if !errors.As(err, &se) || se.Resource != "instance-role" {
		t.Fatalf("bootstrap with PutRolePolicy denied: %v, want a StepError naming instance-role", err)
	}
	if _, n := proxy.Count("PutRolePolicy"); n != 1 {
		t.Fatalf("PutRolePolicy injected %d times", n)
	}
	mc := rec.MutatingCalls()
	if mc["EC2.CreateVpc"] != 1 || mc["Elastic Load Balancing v2.CreateLoadBalancer"] != 1 || mc["IAM.CreateRole"] != 1 {
		t.Errorf("the steps before the failure did not run: %v", mc)
	}
	if mc["EC2.CreateLaunchTemplate"] != 0 || mc["Auto Scaling.CreateAutoScalingGroup"] != 0 {
		t.Errorf("steps after the failure ran: %v", mc)
	}

	proxy.Inject(nil)
	rec.Reset()
	res, err := st.Apply(ctx(t))
	if err != nil {
		t.Fatalf("re-run: %v", err)
	}
	mc = rec.MutatingCalls()
	for _, op := range []string{"EC2.CreateVpc", "EC2.CreateSubnet", "Elastic Load Balancing v2.CreateLoadBalancer", "Elastic Load Balancing v2.CreateTargetGroup"} {
		if mc[op] != 0 {
			t.Errorf("re-run repeated %s: %v", op, mc)
		}
	}
	// The instance role is there: the one role made is the drill's, after
	// the failed step; the policies are the instance role's and its.
	if mc["IAM.CreateRole"] != 1 || mc["IAM.PutRolePolicy"] != 2 || mc["EC2.CreateLaunchTemplate"] != 1 || mc["Auto Scaling.CreateAutoScalingGroup"] != 1 {
		t.Errorf("re-run did not resume at the failed step: %v", mc)
	}
	for _, c := range res.Plan.Changes {
		if c.Resource == "instance-role" && c.Action != bootstrap.Update {
			t.Errorf("instance-role on resume: %s, want update (role there, policy missing)", c.Action)
		}
	}
	checkInstanceRole(t, m, cfg, res.Outputs)

	rec.Reset()
	if _, err := st.Apply(ctx(t)); err != nil || len(rec.MutatingCalls()) != 0 {
		t.Errorf("third run: %v, mutating %v", err, rec.MutatingCalls())
	}
	if _, err := st.Teardown(ctx(t), false, nil); err != nil {
		t.Fatal(err)
	}
	assertNothingLeft(t, m, cfg.Name)
}

func TestTeardownCleansAHalfBuiltStack(t *testing.T) {
	t.Parallel()
	m := testbed.SharedMoto(t)
	proxy := testbed.NewProxy(t, m.URL)
	cfg := testConfig("half", bootstrap.FleetSpotFleet)
	st, _ := newStack(t, proxy.URL, cfg)
	failOn(proxy, "RequestSpotFleet")
	_, err := st.Apply(ctx(t))
	var se *bootstrap.StepError
	if !errors.As(err, &se) || se.Resource != bootstrap.FleetSpotFleet {
		t.Fatalf("bootstrap with RequestSpotFleet denied: %v", err)
	}
	proxy.Inject(nil)
	td, err := st.Teardown(ctx(t), false, nil)
	if err != nil {
		t.Fatalf("teardown of a half-built stack: %v", err)
	}
	if td.Found() < 12 {
		t.Errorf("teardown found %d resources of the half-built stack", td.Found())
	}
	for _, c := range td.Changes {
		if c.Resource == bootstrap.FleetSpotFleet && c.Action != bootstrap.Absent {
			t.Errorf("a fleet was found in a stack whose fleet request failed: %+v", c)
		}
	}
	assertNothingLeft(t, m, cfg.Name)
}

func TestTeardownFailingMidwayIsFinishedByTheNextTeardown(t *testing.T) {
	t.Parallel()
	m := testbed.SharedMoto(t)
	proxy := testbed.NewProxy(t, m.URL)
	cfg := testConfig("td-resume", bootstrap.FleetEC2Fleet)
	st, _ := newStack(t, proxy.URL, cfg)
	if _, err := st.Apply(ctx(t)); err != nil {
		t.Fatal(err)
	}
	failOn(proxy, "DeleteTargetGroup")
	_, err := st.Teardown(ctx(t), false, nil)
	var se *bootstrap.StepError
	if !errors.As(err, &se) || se.Resource != "target-group" {
		t.Fatalf("teardown with DeleteTargetGroup denied: %v", err)
	}
	proxy.Inject(nil)
	td, err := st.Teardown(ctx(t), false, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range td.Changes {
		if c.Action == bootstrap.Delete && c.Resource == bootstrap.FleetEC2Fleet {
			t.Errorf("the fleet deleted by the first teardown was found again")
		}
	}
	assertNothingLeft(t, m, cfg.Name)
}

func TestBootstrapChangedFlagsUpdateInPlaceOrRefuse(t *testing.T) {
	t.Parallel()
	m := testbed.SharedMoto(t)
	cfg := testConfig("update", bootstrap.FleetASG)
	st, _ := newStack(t, m.URL, cfg)
	res, err := st.Apply(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = st.Teardown(context.Background(), false, nil) })
	// Someone turned the VPC's DNS hostnames off: bootstrap turns them on again.
	m.CLI(t, "ec2", "modify-vpc-attribute", "--vpc-id", res.Outputs.VPCID, "--no-enable-dns-hostnames")

	changed := cfg
	changed.Min, changed.Max, changed.Capacity = 3, 12, 3
	changed.DeregistrationDelay = 60
	changed.InstanceTypes = []string{"m6i.large", "c6i.large"}
	changed.RequestsPerTarget = 250
	changed.HealthCheckGrace = 10 * time.Minute
	st2, rec := newStack(t, m.URL, changed)
	p, err := st2.Plan(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if c := changesOf(p)["vpc"]; len(c.Diffs) != 1 || c.Diffs[0] != (bootstrap.Diff{Field: "dns-hostnames", Have: "off", Want: "on"}) {
		t.Errorf("vpc plan %+v, want dns-hostnames off → on", c)
	}
	updates := map[string]bool{}
	for _, c := range p.Changes {
		if c.Action == bootstrap.Update {
			updates[c.Resource] = true
		}
	}
	for _, r := range []string{"vpc", "target-group", "asg", "lifecycle-hook", "scaling"} {
		if !updates[r] {
			t.Errorf("plan does not update %s: %+v", r, p.Changes)
		}
	}
	if len(rec.MutatingCalls()) != 0 {
		t.Errorf("plan made mutating calls: %v", rec.MutatingCalls())
	}
	if _, err := st2.Apply(ctx(t)); err != nil {
		t.Fatal(err)
	}
	mc := rec.MutatingCalls()
	want := map[string]int{
		"Auto Scaling.UpdateAutoScalingGroup": 1, "Elastic Load Balancing v2.ModifyTargetGroupAttributes": 1,
		"Auto Scaling.PutLifecycleHook": 1, "Auto Scaling.PutScalingPolicy": 1, "EC2.ModifyVpcAttribute": 1,
		"CloudWatch.PutMetricAlarm": 1, // the stop alarm follows --min
	}
	if !intMapsEqual(mc, want) {
		t.Errorf("update made %v, want %v", mc, want)
	}
	g := testbed.JSONPath(m.CLI(t, "autoscaling", "describe-auto-scaling-groups", "--auto-scaling-group-names", "spot-agent-update"), "AutoScalingGroups", "0")
	if num(testbed.JSONPath(g, "MinSize")) != 3 || num(testbed.JSONPath(g, "MaxSize")) != 12 ||
		str(testbed.JSONPath(g, "MixedInstancesPolicy", "LaunchTemplate", "Overrides", "0", "InstanceType")) != "m6i.large" ||
		num(testbed.JSONPath(g, "HealthCheckGracePeriod")) != 600 {
		t.Errorf("group after update: %v", g)
	}
	attrs := m.CLI(t, "elbv2", "describe-target-group-attributes", "--target-group-arn", str(testbed.JSONPath(g, "TargetGroupARNs", "0")))
	delay := ""
	for _, a := range testbed.JSONPath(attrs, "Attributes").([]any) {
		if str(testbed.JSONPath(a, "Key")) == "deregistration_delay.timeout_seconds" {
			delay = str(testbed.JSONPath(a, "Value"))
		}
	}
	if delay != "60" {
		t.Errorf("deregistration delay %q after update, want 60", delay)
	}

	// A change that cannot be made in place is refused before any change.
	moved := changed
	moved.VPCCIDR = "10.9.0.0/16"
	st3, rec3 := newStack(t, m.URL, moved)
	_, err = st3.Apply(ctx(t))
	if !errors.Is(err, bootstrap.ErrRecreate) || !strings.Contains(err.Error(), "vpc (cidr: 10.0.0.0/16 → 10.9.0.0/16)") {
		t.Errorf("a new VPC CIDR: %v, want ErrRecreate naming the VPC", err)
	}
	if len(rec3.MutatingCalls()) != 0 {
		t.Errorf("refused change made calls: %v", rec3.MutatingCalls())
	}
	other := changed
	other.Fleet = bootstrap.FleetSpotFleet
	st4, rec4 := newStack(t, m.URL, other)
	if _, err := st4.Apply(ctx(t)); !errors.Is(err, bootstrap.ErrRecreate) || !strings.Contains(err.Error(), "asg") || len(rec4.MutatingCalls()) != 0 {
		t.Errorf("changing --fleet: %v, mutating %v; want a refusal naming the asg", err, rec4.MutatingCalls())
	}
}

func intMapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestBootstrapDryRunPlansEveryResourceAndChangesNothing(t *testing.T) {
	t.Parallel()
	m := testbed.SharedMoto(t)
	cfg := testConfig("dry", bootstrap.FleetSpotFleet)
	st, rec := newStack(t, m.URL, cfg)
	p, err := st.Plan(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.MutatingCalls()) != 0 {
		t.Fatalf("dry run made mutating calls: %v", rec.MutatingCalls())
	}
	var creates []string
	for _, c := range p.Changes {
		if c.Action == bootstrap.Create {
			creates = append(creates, c.Resource)
		}
	}
	want := "vpc subnets internet-gateway route-table alb-sg instance-sg target-group load-balancer listener instance-role spot-fleet-role launch-template-x86_64 spot-fleet scaling topic rule fis-role stop-alarm experiment-template"
	if strings.Join(creates, " ") != want {
		t.Errorf("dry run creates\n %s\nwant\n %s", strings.Join(creates, " "), want)
	}
	td, err := st.Teardown(ctx(t), true, nil)
	if err != nil || td.Found() != 0 {
		t.Errorf("after a dry run the stack has %d resources (%v)", td.Found(), err)
	}
}

func TestBootstrapRefusesASameNamedResourceWithoutTheTag(t *testing.T) {
	t.Parallel()
	m := testbed.SharedMoto(t)
	vpc := m.VPC(t)
	_, err := m.ELB().CreateTargetGroup(context.Background(), &elbv2.CreateTargetGroupInput{
		Name: aws.String("foreign-tg"), Protocol: "HTTP", Port: aws.Int32(80), VpcId: aws.String(vpc),
	})
	if err != nil {
		t.Fatal(err)
	}
	st, rec := newStack(t, m.URL, testConfig("foreign", bootstrap.FleetASG))
	_, err = st.Apply(ctx(t))
	var se *bootstrap.StepError
	if !errors.As(err, &se) || se.Resource != "target-group" || !strings.Contains(err.Error(), "does not carry spot-agent:stack=foreign") {
		t.Errorf("bootstrap over a foreign target group: %v", err)
	}
	if len(rec.MutatingCalls()) != 0 {
		t.Errorf("mutating calls: %v", rec.MutatingCalls())
	}
	if _, err := st.Teardown(ctx(t), false, nil); err == nil {
		t.Error("teardown went past a same-named resource that is not the stack's")
	}
}

func TestBootstrapInAGivenVPCLeavesItOnTeardown(t *testing.T) {
	t.Parallel()
	m := testbed.SharedMoto(t)
	c := context.Background()
	vpc, err := m.EC2().CreateVpc(c, &ec2.CreateVpcInput{CidrBlock: aws.String("10.50.0.0/16")})
	if err != nil {
		t.Fatal(err)
	}
	var subnets []string
	for i, az := range []string{"us-east-1a", "us-east-1b"} {
		sn, err := m.EC2().CreateSubnet(c, &ec2.CreateSubnetInput{VpcId: vpc.Vpc.VpcId, CidrBlock: aws.String("10.50." + string(rune('1'+i)) + ".0/24"), AvailabilityZone: aws.String(az)})
		if err != nil {
			t.Fatal(err)
		}
		subnets = append(subnets, *sn.Subnet.SubnetId)
	}
	cfg := testConfig("given-vpc", bootstrap.FleetEC2Fleet)
	cfg.VPCID, cfg.Subnets = *vpc.Vpc.VpcId, subnets
	cfg.AgentURL, cfg.AgentSHA256, cfg.AgentFiles = "", nil, []string{filepath.Join(t.TempDir(), "spot-agent_1.2.3_x86_64.rpm")}
	if err := os.WriteFile(cfg.AgentFiles[0], []byte("not really an rpm"), 0o644); err != nil {
		t.Fatal(err)
	}
	st, rec := newStack(t, m.URL, cfg)
	res, err := st.Apply(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, ch := range res.Plan.Changes {
		if (ch.Resource == "vpc" || ch.Resource == "subnets") && ch.Action != bootstrap.Adopt {
			t.Errorf("%s: %s, want adopt", ch.Resource, ch.Action)
		}
		if (ch.Resource == "internet-gateway" || ch.Resource == "route-table") && ch.Action != bootstrap.Skip {
			t.Errorf("%s: %s, want skip", ch.Resource, ch.Action)
		}
	}
	if mc := rec.MutatingCalls(); mc["EC2.CreateVpc"]+mc["EC2.CreateSubnet"]+mc["EC2.ModifySubnetAttribute"] != 0 {
		t.Errorf("a given VPC was changed: %v", mc)
	}
	// The agent was uploaded to the stack's private bucket; only the instance
	// role may read it, and user-data fetches it from there.
	bucket := "spot-agent-given-vpc-123456789012-us-east-1"
	// The user-data pins it by the file's digest, which the object carries.
	pin := sha256Hex("not really an rpm")
	head := m.CLI(t, "s3api", "head-object", "--bucket", bucket, "--key", "agent/spot-agent_1.2.3_x86_64.rpm")
	if got := testbed.JSONPath(head, "Metadata", "sha256"); got != pin {
		t.Errorf("uploaded object's sha256 %v, want %s: %v", got, pin, head)
	}
	if ud, _ := launchTemplateUserData(t, m, cfg.Name); !strings.Contains(string(ud), "/agent/spot-agent_1.2.3_x86_64.rpm' pkg_sha256="+pin+"\n") {
		t.Errorf("the user-data does not pin the uploaded package to %s:\n%s", pin, ud)
	}
	if c := changesOf(res.Plan)["launch-template-x86_64"]; !slices.Contains(c.Settings, bootstrap.Setting{Key: "agent-sha256", Value: "amd64 " + pin + " (of the --agent-file)"}) {
		t.Errorf("the plan of the launch template: %v", c.Settings)
	}
	if got := statements(t, m, "spot-agent-given-vpc-instance", "spot-agent")["s3:GetObject"]; got != "arn:aws:s3:::"+bucket+"/agent/spot-agent_1.2.3_x86_64.rpm" {
		t.Errorf("s3:GetObject on %q", got)
	}
	if !strings.HasPrefix(res.Outputs.AgentURL, "s3://"+bucket+"/agent/") {
		t.Errorf("agent url %s", res.Outputs.AgentURL)
	}
	rec.Reset()
	if _, err := st.Apply(ctx(t)); err != nil || len(rec.MutatingCalls()) != 0 {
		t.Errorf("re-run: %v, %v", err, rec.MutatingCalls())
	}
	if _, err := st.Teardown(ctx(t), false, nil); err != nil {
		t.Fatal(err)
	}
	assertNothingLeft(t, m, cfg.Name)
	if out, err := m.CLIRaw(t, "s3api", "head-bucket", "--bucket", bucket); err == nil {
		t.Errorf("bucket left: %s", out)
	}
	left, err := m.EC2().DescribeSubnets(c, &ec2.DescribeSubnetsInput{SubnetIds: subnets})
	if err != nil || len(left.Subnets) != 2 {
		t.Errorf("teardown touched the given subnets: %v", err)
	}
}
