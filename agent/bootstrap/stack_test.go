package bootstrap_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/sns"

	"github.com/spot-agent/spot-agent/agent/bootstrap"
	"github.com/spot-agent/spot-agent/internal/testbed"
)

// Each fleet kind: bootstrap, check every setting with the AWS CLI, re-run
// (no mutating call), status, teardown (nothing tagged left).
func TestBootstrapEachFleetKindThenRerunStatusAndTeardown(t *testing.T) {
	m := testbed.SharedMoto(t)
	for _, fleet := range []string{bootstrap.FleetASG, bootstrap.FleetSpotFleet, bootstrap.FleetEC2Fleet} {
		t.Run(fleet, func(t *testing.T) {
			t.Parallel()
			name := "k-" + fleet
			cfg := testConfig(name, fleet)
			if fleet == bootstrap.FleetSpotFleet {
				cfg.Stickiness = time.Hour
				cfg.NotifyEmail = "ops@example.com"
			}
			st, rec := newStack(t, m.URL, cfg)
			start := time.Now()
			res, err := st.Apply(ctx(t))
			if err != nil {
				t.Fatalf("bootstrap: %v", err)
			}
			reads, changes := rec.Totals()
			t.Logf("fresh bootstrap of %s: %s, %d reads, %d mutating calls:\n%s", fleet, time.Since(start).Round(time.Millisecond), reads, changes, rec)
			if !res.Changed {
				t.Error("a fresh bootstrap reported no change")
			}
			out := res.Outputs
			if out.FleetType != fleet || out.FleetID == "" || out.TargetGroupARN == "" || !strings.HasPrefix(out.URL, "http://"+name+"-alb") || out.RoleARN == "" {
				t.Errorf("outputs: %+v", out)
			}

			checkVPC(t, m, out)
			checkLoadBalancing(t, m, cfg, out)
			checkLaunchTemplate(t, m, cfg, out)
			checkInstanceRole(t, m, cfg, out)
			checkServiceLinkedRoles(t, m, fleet)
			checkFleetAndScaling(t, m, cfg, out)
			checkNotifications(t, m, cfg, out)

			rec.Reset()
			start = time.Now()
			res, err = st.Apply(ctx(t))
			if err != nil {
				t.Fatalf("re-run: %v", err)
			}
			reads, changes = rec.Totals()
			t.Logf("re-run of %s: %s, %d reads, %d mutating calls:\n%s", fleet, time.Since(start).Round(time.Millisecond), reads, changes, rec)
			if mc := rec.MutatingCalls(); len(mc) != 0 || res.Changed {
				t.Errorf("re-run made mutating calls: %v", mc)
			}
			for _, c := range res.Plan.Changes {
				if c.Action != bootstrap.Unchanged && c.Action != bootstrap.Skip {
					t.Errorf("re-run: %s is %s %v", c.Resource, c.Action, c.Diffs)
				}
			}

			status, err := st.Status(ctx(t))
			if err != nil {
				t.Fatalf("status: %v", err)
			}
			if status.Fleet == nil || status.Fleet.Type != fleet || status.Fleet.Desired != 2 || status.Fleet.Fulfilled != 2 || len(status.Instances) != 2 {
				t.Errorf("status: fleet %+v, instances %+v", status.Fleet, status.Instances)
			}
			switch fleet {
			case bootstrap.FleetASG:
				// moto registers an ASG's instances in its target groups (and
				// launches them on-demand: its ASGs ignore the Spot distribution).
				if len(status.Targets) != 2 {
					t.Errorf("status: targets %+v, want the ASG's two instances", status.Targets)
				}
			case bootstrap.FleetSpotFleet:
				// moto gap: Spot Fleet does not register its instances in the
				// target group (LoadBalancersConfig is ignored), so there is no
				// target to show; AWS would show two.
				for _, i := range status.Instances {
					if i.Lifecycle != "spot" || i.Zone == "" || i.Type == "" {
						t.Errorf("status: instance %+v", i)
					}
				}
			case bootstrap.FleetEC2Fleet:
				// EC2 Fleet has no load balancer integration: the agent registers
				// itself once it runs (SPOT_AGENT_REGISTER=true); nothing runs in moto.
				if len(status.Targets) != 0 {
					t.Errorf("status: targets %+v", status.Targets)
				}
			}

			rec.Reset()
			start = time.Now()
			td, err := st.Teardown(ctx(t), false, nil)
			if err != nil {
				t.Fatalf("teardown: %v", err)
			}
			t.Logf("teardown of %s: %s, %d resources, calls:\n%s", fleet, time.Since(start).Round(time.Millisecond), td.Found(), rec)
			assertNothingLeft(t, m, name)

			// Idempotent: a second teardown finds nothing and changes nothing.
			rec.Reset()
			td, err = st.Teardown(ctx(t), false, nil)
			if err != nil || td.Found() != 0 || len(rec.MutatingCalls()) != 0 {
				t.Errorf("second teardown: %v, found %d, mutating %v", err, td.Found(), rec.MutatingCalls())
			}
		})
	}
}

// checkVPC: the new VPC resolves names, as the workshop's does (an EFS file
// system mounted by its DNS name needs both attributes).
func checkVPC(t *testing.T, m *testbed.Moto, out bootstrap.Outputs) {
	t.Helper()
	for attr, key := range map[string]string{"enableDnsSupport": "EnableDnsSupport", "enableDnsHostnames": "EnableDnsHostnames"} {
		if got := testbed.JSONPath(m.CLI(t, "ec2", "describe-vpc-attribute", "--vpc-id", out.VPCID, "--attribute", attr), key, "Value"); got != true {
			t.Errorf("VPC %s %s = %v, want true", out.VPCID, attr, got)
		}
	}
}

func checkLoadBalancing(t *testing.T, m *testbed.Moto, cfg bootstrap.Config, out bootstrap.Outputs) {
	t.Helper()
	tg := testbed.JSONPath(m.CLI(t, "elbv2", "describe-target-groups", "--names", cfg.Name+"-tg"), "TargetGroups", "0")
	for k, want := range map[string]any{
		"Protocol": "HTTP", "Port": 80.0, "HealthCheckPath": "/healthz", "HealthCheckIntervalSeconds": 5.0,
		"HealthCheckTimeoutSeconds": 4.0, "HealthyThresholdCount": 2.0, "UnhealthyThresholdCount": 2.0, "TargetType": "instance",
		"TargetGroupArn": out.TargetGroupARN,
	} {
		if got := testbed.JSONPath(tg, k); got != want {
			t.Errorf("target group %s = %v, want %v", k, got, want)
		}
	}
	attrs := map[string]string{}
	for _, a := range testbed.JSONPath(m.CLI(t, "elbv2", "describe-target-group-attributes", "--target-group-arn", out.TargetGroupARN), "Attributes").([]any) {
		attrs[str(testbed.JSONPath(a, "Key"))] = str(testbed.JSONPath(a, "Value"))
	}
	want := map[string]string{"deregistration_delay.timeout_seconds": "90", "stickiness.enabled": "false"}
	if cfg.Stickiness > 0 {
		want = map[string]string{"deregistration_delay.timeout_seconds": "90", "stickiness.enabled": "true", "stickiness.type": "lb_cookie",
			"stickiness.lb_cookie.duration_seconds": fmt.Sprint(int(cfg.Stickiness.Seconds()))}
	}
	for k, v := range want {
		if attrs[k] != v {
			t.Errorf("target group attribute %s = %q, want %q", k, attrs[k], v)
		}
	}
	lb := testbed.JSONPath(m.CLI(t, "elbv2", "describe-load-balancers", "--names", cfg.Name+"-alb"), "LoadBalancers", "0")
	if str(testbed.JSONPath(lb, "Scheme")) != "internet-facing" || str(testbed.JSONPath(lb, "Type")) != "application" ||
		len(testbed.JSONPath(lb, "AvailabilityZones").([]any)) != 2 || str(testbed.JSONPath(lb, "State", "Code")) != "active" {
		t.Errorf("load balancer: %v", lb)
	}
	l := testbed.JSONPath(m.CLI(t, "elbv2", "describe-listeners", "--load-balancer-arn", out.LoadBalancerARN), "Listeners", "0")
	if num(testbed.JSONPath(l, "Port")) != 80 || str(testbed.JSONPath(l, "Protocol")) != "HTTP" ||
		str(testbed.JSONPath(l, "DefaultActions", "0", "Type")) != "forward" || str(testbed.JSONPath(l, "DefaultActions", "0", "TargetGroupArn")) != out.TargetGroupARN {
		t.Errorf("listener: %v", l)
	}
	sgs := testbed.JSONPath(m.CLI(t, "ec2", "describe-security-groups", "--filters", "Name=tag:spot-agent:stack,Values="+cfg.Name), "SecurityGroups").([]any)
	rules := map[string]string{}
	for _, g := range sgs {
		p := testbed.JSONPath(g, "IpPermissions", "0")
		from := str(testbed.JSONPath(p, "IpRanges", "0", "CidrIp")) + str(testbed.JSONPath(p, "UserIdGroupPairs", "0", "GroupId"))
		rules[str(testbed.JSONPath(g, "GroupName"))] = fmt.Sprintf("%v from %s", testbed.JSONPath(p, "FromPort"), from)
	}
	albSG := str(testbed.JSONPath(lb, "SecurityGroups", "0"))
	if rules[cfg.Name+"-alb"] != "80 from 0.0.0.0/0" || rules[cfg.Name+"-instances"] != "80 from "+albSG {
		t.Errorf("security group rules: %v (the ALB's group is %s)", rules, albSG)
	}
}

func checkLaunchTemplate(t *testing.T, m *testbed.Moto, cfg bootstrap.Config, out bootstrap.Outputs) {
	t.Helper()
	v := testbed.JSONPath(m.CLI(t, "ec2", "describe-launch-template-versions", "--launch-template-id", out.LaunchTemplate, "--versions", "$Default"), "LaunchTemplateVersions", "0", "LaunchTemplateData")
	for k, want := range map[string]any{"HttpTokens": "required", "HttpPutResponseHopLimit": 1.0, "InstanceMetadataTags": "enabled", "HttpEndpoint": "enabled"} {
		if got := testbed.JSONPath(v, "MetadataOptions", k); got != want {
			t.Errorf("launch template metadata %s = %v, want %v", k, got, want)
		}
	}
	if str(testbed.JSONPath(v, "ImageId")) == "" || str(testbed.JSONPath(v, "IamInstanceProfile", "Name")) != "spot-agent-"+cfg.Name+"-instance" {
		t.Errorf("launch template image/profile: %v / %v", testbed.JSONPath(v, "ImageId"), testbed.JSONPath(v, "IamInstanceProfile"))
	}
	tags := map[string]string{}
	for _, ts := range testbed.JSONPath(v, "TagSpecifications").([]any) {
		if str(testbed.JSONPath(ts, "ResourceType")) != "instance" {
			continue
		}
		for _, tag := range testbed.JSONPath(ts, "Tags").([]any) {
			tags[str(testbed.JSONPath(tag, "Key"))] = str(testbed.JSONPath(tag, "Value"))
		}
	}
	if tags["loadBalancerTargetGroup"] != out.TargetGroupARN || tags["spot-agent:stack"] != cfg.Name {
		t.Errorf("instance tags: %v", tags)
	}
	ud, err := base64.StdEncoding.DecodeString(str(testbed.JSONPath(v, "UserData")))
	if err != nil || !strings.HasPrefix(string(ud), "#cloud-config") || !strings.Contains(string(ud), cfg.AgentURL) {
		t.Errorf("user-data (%v):\n%s", err, ud)
	}
	if register := strings.Contains(string(ud), "SPOT_AGENT_REGISTER"); register != (cfg.Fleet == bootstrap.FleetEC2Fleet) {
		t.Errorf("user-data sets SPOT_AGENT_REGISTER: %v, want only for EC2 Fleet:\n%s", register, ud)
	}
	// moto gap: instances do not get the template's MetadataOptions, security
	// groups or profile, so only the template itself is checked.
}

// statements returns a role's inline policy: resource by action.
func statements(t *testing.T, m *testbed.Moto, role, policy string) map[string]string {
	t.Helper()
	doc := testbed.JSONPath(m.CLI(t, "iam", "get-role-policy", "--role-name", role, "--policy-name", policy), "PolicyDocument")
	if s, ok := doc.(string); ok { // URL-encoded or plain JSON text
		if err := json.Unmarshal([]byte(s), &doc); err != nil {
			t.Fatalf("policy document: %v", err)
		}
	}
	out := map[string]string{}
	for _, st := range testbed.JSONPath(doc, "Statement").([]any) {
		if str(testbed.JSONPath(st, "Effect")) != "Allow" {
			t.Errorf("statement %v", st)
		}
		res := fmt.Sprint(testbed.JSONPath(st, "Resource"))
		switch a := testbed.JSONPath(st, "Action").(type) {
		case string:
			out[a] = res
		case []any:
			for _, x := range a {
				out[str(x)] = res
			}
		}
	}
	return out
}

// checkSpotFleetRole: the Spot Fleet role has only its inline policy, scoped
// to the stack, not the AWS managed one with RunInstances, TerminateInstances
// and PassRole on every resource.
func checkSpotFleetRole(t *testing.T, m *testbed.Moto, cfg bootstrap.Config, out bootstrap.Outputs) {
	t.Helper()
	role := "spot-agent-" + cfg.Name + "-spot-fleet"
	if attached := m.CLI(t, "iam", "list-attached-role-policies", "--role-name", role); len(testbed.JSONPath(attached, "AttachedPolicies").([]any)) != 0 {
		t.Errorf("spot fleet role has managed policies: %v", attached)
	}
	here := "arn:aws:ec2:us-east-1:123456789012:"
	want := map[string]string{
		"ec2:DescribeImages": "*", "ec2:DescribeInstanceStatus": "*", "ec2:DescribeSubnets": "*",
		"ec2:RequestSpotInstances":             "[" + here + "* arn:aws:ec2:us-east-1::image/*]",
		"ec2:RunInstances":                     "[" + here + "* arn:aws:ec2:us-east-1::image/*]",
		"ec2:CreateTags":                       "[" + here + "instance/* " + here + "network-interface/* " + here + "spot-instances-request/* " + here + "volume/*]",
		"ec2:TerminateInstances":               here + "instance/*",
		"iam:PassRole":                         out.RoleARN,
		"elasticloadbalancing:RegisterTargets": out.TargetGroupARN,
	}
	if got := statements(t, m, role, "spot-agent-spot-fleet"); !mapsEqual(got, want) {
		t.Errorf("spot fleet role policy:\n got %v\nwant %v", got, want)
	}
}

// checkServiceLinkedRoles: the roles AWS says the fleet kind needs exist.
func checkServiceLinkedRoles(t *testing.T, m *testbed.Moto, fleet string) {
	t.Helper()
	services := map[string][]string{
		bootstrap.FleetASG: {"autoscaling.amazonaws.com"}, bootstrap.FleetSpotFleet: {"spotfleet.amazonaws.com", "spot.amazonaws.com"},
		bootstrap.FleetEC2Fleet: {"ec2fleet.amazonaws.com", "spot.amazonaws.com"},
	}[fleet]
	for _, svc := range services {
		roles := testbed.JSONPath(m.CLI(t, "iam", "list-roles", "--path-prefix", "/aws-service-role/"+svc+"/"), "Roles").([]any)
		if len(roles) != 1 {
			t.Errorf("service-linked roles for %s: %v", svc, roles)
		}
	}
}

func checkInstanceRole(t *testing.T, m *testbed.Moto, cfg bootstrap.Config, out bootstrap.Outputs) {
	t.Helper()
	role := "spot-agent-" + cfg.Name + "-instance"
	want := map[string]string{
		"elasticloadbalancing:DeregisterTargets":             out.TargetGroupARN,
		"elasticloadbalancing:RegisterTargets":               out.TargetGroupARN, // the return after a restart, on every fleet
		"elasticloadbalancing:DescribeTargetHealth":          "*",
		"elasticloadbalancing:DescribeTargetGroupAttributes": "*",
		"ec2:DescribeTags":                                   "*",
	}
	switch cfg.Fleet {
	case bootstrap.FleetASG:
		asgARN := "arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:*:autoScalingGroupName/spot-agent-" + cfg.Name
		want["autoscaling:CompleteLifecycleAction"] = asgARN
		want["autoscaling:RecordLifecycleActionHeartbeat"] = asgARN
	}
	if got := statements(t, m, role, "spot-agent"); !mapsEqual(got, want) {
		t.Errorf("instance role policy:\n got %v\nwant %v", got, want)
	}
	prof := m.CLI(t, "iam", "get-instance-profile", "--instance-profile-name", role)
	if str(testbed.JSONPath(prof, "InstanceProfile", "Roles", "0", "RoleName")) != role {
		t.Errorf("instance profile: %v", prof)
	}
	trust := testbed.JSONPath(m.CLI(t, "iam", "get-role", "--role-name", role), "Role", "AssumeRolePolicyDocument")
	if !strings.Contains(fmt.Sprint(trust), "ec2.amazonaws.com") {
		t.Errorf("trust policy: %v", trust)
	}
}

func mapsEqual(a, b map[string]string) bool {
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

func checkFleetAndScaling(t *testing.T, m *testbed.Moto, cfg bootstrap.Config, out bootstrap.Outputs) {
	t.Helper()
	tgLabel := out.TargetGroupARN[strings.LastIndex(out.TargetGroupARN, ":")+1:]
	albLabel := out.LoadBalancerARN[strings.Index(out.LoadBalancerARN, ":loadbalancer/")+len(":loadbalancer/"):]
	label := albLabel + "/" + tgLabel
	checkTracking := func(what string, conf any) {
		t.Helper()
		if str(testbed.JSONPath(conf, "PredefinedMetricSpecification", "PredefinedMetricType")) != "ALBRequestCountPerTarget" ||
			str(testbed.JSONPath(conf, "PredefinedMetricSpecification", "ResourceLabel")) != label || num(testbed.JSONPath(conf, "TargetValue")) != 100 {
			t.Errorf("%s target tracking: %v, want ALBRequestCountPerTarget on %s at 100", what, conf, label)
		}
	}
	switch cfg.Fleet {
	case bootstrap.FleetASG:
		g := testbed.JSONPath(m.CLI(t, "autoscaling", "describe-auto-scaling-groups", "--auto-scaling-group-names", out.FleetID), "AutoScalingGroups", "0")
		if num(testbed.JSONPath(g, "MinSize")) != 2 || num(testbed.JSONPath(g, "MaxSize")) != 10 || num(testbed.JSONPath(g, "DesiredCapacity")) != 2 ||
			str(testbed.JSONPath(g, "TargetGroupARNs", "0")) != out.TargetGroupARN {
			t.Errorf("auto scaling group: %v", g)
		}
		// Without an application the target group checks the agent: ELB
		// checks, with the grace a first boot needs.
		if str(testbed.JSONPath(g, "HealthCheckType")) != "ELB" || num(testbed.JSONPath(g, "HealthCheckGracePeriod")) != 300 {
			t.Errorf("health check %v after %vs, want ELB after 300s", testbed.JSONPath(g, "HealthCheckType"), testbed.JSONPath(g, "HealthCheckGracePeriod"))
		}
		mip := testbed.JSONPath(g, "MixedInstancesPolicy")
		if num(testbed.JSONPath(mip, "InstancesDistribution", "OnDemandPercentageAboveBaseCapacity")) != 0 ||
			num(testbed.JSONPath(mip, "InstancesDistribution", "OnDemandBaseCapacity")) != 0 ||
			str(testbed.JSONPath(mip, "InstancesDistribution", "SpotAllocationStrategy")) != "price-capacity-optimized" ||
			str(testbed.JSONPath(mip, "LaunchTemplate", "LaunchTemplateSpecification", "LaunchTemplateId")) != out.LaunchTemplate {
			t.Errorf("mixed instances policy: %v", mip)
		}
		var types []string
		for _, o := range testbed.JSONPath(mip, "LaunchTemplate", "Overrides").([]any) {
			types = append(types, str(testbed.JSONPath(o, "InstanceType")))
		}
		if !slices.Equal(types, cfg.InstanceTypes) {
			t.Errorf("overrides %v, want %v", types, cfg.InstanceTypes)
		}
		propagated := map[string]string{}
		for _, tag := range testbed.JSONPath(g, "Tags").([]any) {
			if testbed.JSONPath(tag, "PropagateAtLaunch") == true {
				propagated[str(testbed.JSONPath(tag, "Key"))] = str(testbed.JSONPath(tag, "Value"))
			}
		}
		if propagated["spot-agent:lifecycle-hook"] != "spot-agent-"+cfg.Name+"-drain" || propagated["spot-agent:stack"] != cfg.Name {
			t.Errorf("propagated tags: %v", propagated)
		}
		hook := testbed.JSONPath(m.CLI(t, "autoscaling", "describe-lifecycle-hooks", "--auto-scaling-group-name", out.FleetID), "LifecycleHooks", "0")
		if str(testbed.JSONPath(hook, "LifecycleHookName")) != "spot-agent-"+cfg.Name+"-drain" || str(testbed.JSONPath(hook, "LifecycleTransition")) != "autoscaling:EC2_INSTANCE_TERMINATING" ||
			str(testbed.JSONPath(hook, "DefaultResult")) != "CONTINUE" {
			t.Errorf("lifecycle hook: %v", hook)
		}
		pol := testbed.JSONPath(m.CLI(t, "autoscaling", "describe-policies", "--auto-scaling-group-name", out.FleetID), "ScalingPolicies", "0")
		if str(testbed.JSONPath(pol, "PolicyType")) != "TargetTrackingScaling" {
			t.Errorf("scaling policy: %v", pol)
		}
		checkTracking("ASG", testbed.JSONPath(pol, "TargetTrackingConfiguration"))
	case bootstrap.FleetSpotFleet:
		conf := testbed.JSONPath(m.CLI(t, "ec2", "describe-spot-fleet-requests", "--spot-fleet-request-ids", out.FleetID), "SpotFleetRequestConfigs", "0", "SpotFleetRequestConfig")
		role := "arn:aws:iam::123456789012:role/spot-agent-" + cfg.Name + "-spot-fleet"
		if num(testbed.JSONPath(conf, "TargetCapacity")) != 2 || str(testbed.JSONPath(conf, "AllocationStrategy")) != "priceCapacityOptimized" ||
			str(testbed.JSONPath(conf, "IamFleetRole")) != role {
			t.Errorf("spot fleet request: %v", conf)
		}
		// moto gap: describe-spot-fleet-requests returns neither
		// LoadBalancersConfig nor LaunchTemplateConfigs (it turns the first
		// override into LaunchSpecifications), so the target group and the
		// pools cannot be checked here; the request's instances are.
		if lb := testbed.JSONPath(conf, "LoadBalancersConfig"); lb != nil && !strings.Contains(fmt.Sprint(lb), out.TargetGroupARN) {
			t.Errorf("load balancers config: %v", lb)
		}
		checkSpotFleetRole(t, m, cfg, out)
		id := "spot-fleet-request/" + out.FleetID
		target := testbed.JSONPath(m.CLI(t, "application-autoscaling", "describe-scalable-targets", "--service-namespace", "ec2", "--resource-ids", id), "ScalableTargets", "0")
		if num(testbed.JSONPath(target, "MinCapacity")) != 2 || num(testbed.JSONPath(target, "MaxCapacity")) != 10 ||
			str(testbed.JSONPath(target, "ScalableDimension")) != "ec2:spot-fleet-request:TargetCapacity" {
			t.Errorf("scalable target: %v", target)
		}
		pol := testbed.JSONPath(m.CLI(t, "application-autoscaling", "describe-scaling-policies", "--service-namespace", "ec2", "--resource-id", id), "ScalingPolicies", "0")
		checkTracking("Spot Fleet", testbed.JSONPath(pol, "TargetTrackingScalingPolicyConfiguration"))
	case bootstrap.FleetEC2Fleet:
		f := testbed.JSONPath(m.CLI(t, "ec2", "describe-fleets", "--fleet-ids", out.FleetID), "Fleets", "0")
		if str(testbed.JSONPath(f, "Type")) != "maintain" || num(testbed.JSONPath(f, "TargetCapacitySpecification", "TotalTargetCapacity")) != 2 ||
			str(testbed.JSONPath(f, "TargetCapacitySpecification", "DefaultTargetCapacityType")) != "spot" {
			t.Errorf("ec2 fleet: %v", f)
		}
		// EC2 Fleet cannot be scaled by Application Auto Scaling: no policy.
		if n := len(testbed.JSONPath(m.CLI(t, "autoscaling", "describe-policies", "--auto-scaling-group-name", "spot-agent-"+cfg.Name), "ScalingPolicies").([]any)); n != 0 {
			t.Errorf("%d scaling policies for an EC2 Fleet stack", n)
		}
	}
}

func checkNotifications(t *testing.T, m *testbed.Moto, cfg bootstrap.Config, out bootstrap.Outputs) {
	t.Helper()
	rule := m.CLI(t, "events", "describe-rule", "--name", "spot-agent-"+cfg.Name+"-interruptions")
	var pattern struct {
		Source     []string `json:"source"`
		DetailType []string `json:"detail-type"`
	}
	if err := json.Unmarshal([]byte(str(testbed.JSONPath(rule, "EventPattern"))), &pattern); err != nil || !slices.Equal(pattern.Source, []string{"aws.ec2"}) ||
		!slices.Equal(pattern.DetailType, []string{"EC2 Spot Instance Interruption Warning", "EC2 Instance Rebalance Recommendation"}) ||
		str(testbed.JSONPath(rule, "State")) != "ENABLED" {
		t.Errorf("rule: %v (%v)", rule, err)
	}
	targets := m.CLI(t, "events", "list-targets-by-rule", "--rule", "spot-agent-"+cfg.Name+"-interruptions")
	if str(testbed.JSONPath(targets, "Targets", "0", "Arn")) != out.TopicARN {
		t.Errorf("rule targets: %v, want %s", targets, out.TopicARN)
	}
	// moto gap: delivery from EventBridge to SNS answers 500, so the policy is
	// checked, not a delivered event.
	policy := str(testbed.JSONPath(m.CLI(t, "sns", "get-topic-attributes", "--topic-arn", out.TopicARN), "Attributes", "Policy"))
	if !strings.Contains(policy, `"events.amazonaws.com"`) || !strings.Contains(policy, out.RuleARN) {
		t.Errorf("topic policy does not let the rule publish: %s", policy)
	}
	if cfg.NotifyEmail != "" {
		subs := m.CLI(t, "sns", "list-subscriptions-by-topic", "--topic-arn", out.TopicARN)
		if str(testbed.JSONPath(subs, "Subscriptions", "0", "Endpoint")) != cfg.NotifyEmail || str(testbed.JSONPath(subs, "Subscriptions", "0", "Protocol")) != "email" {
			t.Errorf("subscriptions: %v", subs)
		}
	}
}

// assertNothingLeft checks, with the tagging API through the AWS CLI and
// per-service describes through plain SDK clients (not the code under test),
// that no resource of the stack is left.
func assertNothingLeft(t *testing.T, m *testbed.Moto, name string) {
	t.Helper()
	for _, arn := range testbed.JSONPath(m.CLI(t, "resourcegroupstaggingapi", "get-resources", "--tag-filters", "Key=spot-agent:stack,Values="+name), "ResourceTagMappingList").([]any) {
		a := str(testbed.JSONPath(arn, "ResourceARN"))
		if strings.Contains(a, ":instance/") {
			continue // terminated instances keep their tags; checked below
		}
		t.Errorf("left after teardown: %s", a)
	}
	c, bg := bootstrap.NewClients(m.Config()), context.Background()
	tag := []ec2types.Filter{{Name: aws.String("tag:spot-agent:stack"), Values: []string{name}}}
	running, err := c.EC2.DescribeInstances(bg, &ec2.DescribeInstancesInput{Filters: append(tag,
		ec2types.Filter{Name: aws.String("instance-state-name"), Values: []string{"pending", "running", "stopping", "stopped"}})})
	if err != nil || len(running.Reservations) != 0 {
		t.Errorf("instances left: %v %v", err, running)
	}
	lts, err := c.EC2.DescribeLaunchTemplates(bg, &ec2.DescribeLaunchTemplatesInput{Filters: tag})
	if err != nil || len(lts.LaunchTemplates) != 0 {
		t.Errorf("launch templates left: %v %v", err, lts)
	}
	sgs, err := c.EC2.DescribeSecurityGroups(bg, &ec2.DescribeSecurityGroupsInput{Filters: tag})
	if err != nil || len(sgs.SecurityGroups) != 0 {
		t.Errorf("security groups left: %v %v", err, sgs)
	}
	vpcs, err := c.EC2.DescribeVpcs(bg, &ec2.DescribeVpcsInput{Filters: tag})
	if err != nil || len(vpcs.Vpcs) != 0 {
		t.Errorf("VPCs left: %v %v", err, vpcs)
	}
	groups, err := c.AutoScaling.DescribeAutoScalingGroups(bg, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{"spot-agent-" + name}})
	if err != nil || len(groups.AutoScalingGroups) != 0 {
		t.Errorf("auto scaling group left: %v %v", err, groups)
	}
	gone := func(what string, err error) {
		t.Helper()
		if err == nil {
			t.Errorf("left after teardown: %s", what)
		}
	}
	_, err = c.ELB.DescribeLoadBalancers(bg, &elbv2.DescribeLoadBalancersInput{Names: []string{name + "-alb"}})
	gone("load balancer", err)
	_, err = c.ELB.DescribeTargetGroups(bg, &elbv2.DescribeTargetGroupsInput{Names: []string{name + "-tg"}})
	gone("target group", err)
	_, err = c.IAM.GetRole(bg, &iam.GetRoleInput{RoleName: aws.String("spot-agent-" + name + "-instance")})
	gone("instance role", err)
	_, err = c.IAM.GetRole(bg, &iam.GetRoleInput{RoleName: aws.String("spot-agent-" + name + "-spot-fleet")})
	gone("spot fleet role", err)
	_, err = c.IAM.GetInstanceProfile(bg, &iam.GetInstanceProfileInput{InstanceProfileName: aws.String("spot-agent-" + name + "-instance")})
	gone("instance profile", err)
	_, err = c.Events.DescribeRule(bg, &eventbridge.DescribeRuleInput{Name: aws.String("spot-agent-" + name + "-interruptions")})
	gone("rule", err)
	_, err = c.SNS.GetTopicAttributes(bg, &sns.GetTopicAttributesInput{TopicArn: aws.String("arn:aws:sns:us-east-1:123456789012:spot-agent-" + name)})
	gone("topic", err)
	sfrs, err := c.EC2.DescribeSpotFleetRequests(bg, &ec2.DescribeSpotFleetRequestsInput{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range sfrs.SpotFleetRequestConfigs {
		for _, tg := range r.Tags {
			if *tg.Key == "spot-agent:stack" && *tg.Value == name && r.SpotFleetRequestState == ec2types.BatchStateActive {
				t.Errorf("spot fleet request left: %s", *r.SpotFleetRequestId)
			}
		}
	}
	fleets, err := c.EC2.DescribeFleets(bg, &ec2.DescribeFleetsInput{})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fleets.Fleets {
		for _, tg := range f.Tags {
			if *tg.Key == "spot-agent:stack" && *tg.Value == name && f.FleetState == ec2types.FleetStateCodeActive {
				t.Errorf("ec2 fleet left: %s", *f.FleetId)
			}
		}
	}
}

// A release build's default: the plan says which release's packages the
// instances install and pins each by the release's checksums.txt (GitHub
// answers a release asset with a redirect to its object store); the
// user-data holds the fleet's architectures' packages, each with its pin.
func TestBootstrapPlansTheReleasesPackages(t *testing.T) {
	t.Parallel()
	m := testbed.SharedMoto(t)
	const (
		base = "https://github.com/spot-agent/spot-agent/releases/download/v1.2.3/"
		rpm  = "spot-agent-1.2.3-1.x86_64.rpm"
	)
	sums := sha256Hex("x86 rpm") + "  " + rpm + "\n" + sha256Hex("arm rpm") + "  spot-agent-1.2.3-1.aarch64.rpm\n" +
		sha256Hex("a tarball") + "  spot-agent_1.2.3_linux_amd64.tar.gz\n"
	site, client := newSite(t, map[string]string{"/assets/checksums.txt": sums})
	client.Transport = redirectChecksums{client.Transport}
	cfg := testConfig("release", bootstrap.FleetASG)
	cfg.AgentURL, cfg.AgentRelease, cfg.AgentSHA256 = "", "1.2.3", nil
	st, rec := newStack(t, m.URL, cfg, withHTTP(client))
	p, err := st.Plan(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	p.WriteText(&text)
	for _, want := range []string{
		"user-data: al2023, agent from release 1.2.3's package " + base + rpm,
		"agent-sha256: amd64 " + sha256Hex("x86 rpm") + " (from release 1.2.3's checksums.txt)",
	} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("plan:\n%s\nwant %s", text.String(), want)
		}
	}
	if got := site.requests(); !slices.Equal(got, []string{"github.com /redirect/assets/checksums.txt 302", "objects.example.com /assets/checksums.txt 200"}) {
		t.Errorf("the release site saw %q", got)
	}
	if mc := rec.MutatingCalls(); len(mc) != 0 {
		t.Errorf("the plan made %v", mc)
	}
	res, err := st.Apply(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = st.Teardown(context.Background(), false, nil) })
	// The fleet's types are x86: the outputs name the amd64 package.
	if res.Outputs.AgentURL != base+rpm {
		t.Errorf("outputs agent %s", res.Outputs.AgentURL)
	}
	ud, _ := launchTemplateUserData(t, m, "release")
	if want := "pkg_url='" + base + rpm + "' pkg_sha256=" + sha256Hex("x86 rpm") + "\n"; !strings.Contains(string(ud), want) ||
		strings.Contains(string(ud), "aarch64") {
		t.Errorf("the launch template's user-data lacks %q, or has an arm64 package the fleet does not use:\n%s", want, ud)
	}
}

// redirectChecksums sends a release's checksums.txt to the site's
// /redirect/assets/, which answers as GitHub does: 302 to its object store.
type redirectChecksums struct{ next http.RoundTripper }

func (r redirectChecksums) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Host == "github.com" && strings.HasSuffix(req.URL.Path, "/checksums.txt") {
		req = req.Clone(req.Context())
		req.URL.Path = "/redirect/assets/checksums.txt"
	}
	return r.next.RoundTrip(req)
}
