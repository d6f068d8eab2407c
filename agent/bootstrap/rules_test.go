package bootstrap_test

// moto is the peer for how the stack behaves; this test is the peer for
// AWS's rules, which moto mostly does not enforce. It captures every request
// bootstrap, status and teardown send, for each fleet kind, distribution,
// package source and option that changes a request, and holds them to what
// AWS documents: each name to its resource's rule, every tag to the tag
// limits, the user-data to its size, every statement of the policies the
// stack writes to the Service Authorization Reference (iam_test.go), the
// agent's calls to the role written for its settings, the event pattern to
// AWS's sample events (eventpattern_test.go). From the same requests it
// writes the policy the person running bootstrap needs
// (docs/bootstrap-iam-policy.json), so that it cannot go stale.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	appas "github.com/aws/aws-sdk-go-v2/service/applicationautoscaling"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/smithy-go/middleware"

	"github.com/spot-agent/spot-agent/agent/bootstrap"
	"github.com/spot-agent/spot-agent/agent/lifecycle"
	"github.com/spot-agent/spot-agent/agent/notify"
	"github.com/spot-agent/spot-agent/agent/secret"
	"github.com/spot-agent/spot-agent/agent/tags"
	"github.com/spot-agent/spot-agent/agent/targets"
	"github.com/spot-agent/spot-agent/internal/testbed"
)

var update = flag.Bool("update", false, "rewrite docs/bootstrap-iam-policy.json from the captured requests")

const (
	account   = "123456789012" // moto's
	partition = "aws"
)

// request is one request as the SDK got it: service, operation, input.
type request struct {
	service, op string
	input       any
}

func (r request) String() string { return r.service + "." + r.op }

// capture records every request made through the clients it is attached to.
type capture struct {
	mu   sync.Mutex
	reqs []request
}

func (c *capture) apiOption(stack *middleware.Stack) error {
	return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("captureRequests",
		func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			c.mu.Lock()
			c.reqs = append(c.reqs, request{awsmiddleware.GetServiceID(ctx), awsmiddleware.GetOperationName(ctx), in.Parameters})
			c.mu.Unlock()
			return next.HandleInitialize(ctx, in)
		}), middleware.After)
}

func (c *capture) requests() []request {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.reqs)
}

// ruleStack is one configuration the requests are captured for, and a
// change to it that is made in place (its update requests).
type ruleStack struct {
	name   string
	edit   func(t *testing.T, c *bootstrap.Config)
	change func(c *bootstrap.Config)
}

const (
	otherGroup = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/app-tg/0123456789abcdef"
	topicARN   = "arn:aws:sns:eu-west-1:123456789012:interruptions"
)

// ruleStacks cover every fleet kind, every distribution, every package
// source (https, s3, an uploaded file, a release), both architectures, and
// every option that changes a request.
var ruleStacks = []ruleStack{
	{"rules-asg", func(*testing.T, *bootstrap.Config) {}, func(c *bootstrap.Config) {
		// The capacity stays: moto 5.2.1 fails to launch from a launch
		// template version it made from new user-data.
		c.Max, c.DeregistrationDelay, c.RequestsPerTarget = 12, 60, 250
		c.InstanceTypes = []string{"m6i.large", "c6i.large"}
		c.HealthCheckGrace, c.MetricsCIDR, c.CapacityRebalance = 10*time.Minute, "10.1.0.0/16", true
		c.AgentEnv = map[string]string{"SPOT_AGENT_NOTIFY_SNS_TOPIC": topicARN, "SPOT_AGENT_DRAIN_ON": "rebalance"}
	}},
	{"rules-asg-debian", func(t *testing.T, c *bootstrap.Config) {
		c.Distribution, c.AMI, c.AgentURL, c.AgentSHA256 = "debian", "ami-0123456789abcdef0", "", nil
		c.AgentFiles = []string{writeFile(t, "spot-agent_1.2.3_amd64.deb", "a package")}
		c.AppPort, c.AgentPort, c.AppHealthPath = 80, bootstrap.AppAgentPort, "/health"
		c.UserDataFile = writeFile(t, "app.yaml", appCloudConfig)
		c.AgentEnv = map[string]string{"SPOT_AGENT_NOTIFY_SNS_TOPIC": topicARN, "SPOT_AGENT_TARGET_GROUP_ARN": otherGroup,
			"SPOT_AGENT_ON_DRAIN_EXEC": drainExec, "SPOT_AGENT_NOTIFY_WEBHOOK": "ssm:/spot-agent/rules/webhook",
			"SPOT_AGENT_NOTIFY_BODY": "ssm:arn:aws:ssm:us-east-1:210987654321:parameter/shared/spot-agent-body"}
		c.SSMKMSKeyARN = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
		c.MetricsCIDR, c.Stickiness, c.NotifyEmail, c.CapacityRebalance = "10.1.0.0/16", time.Hour, "ops@example.com", true
		c.HealthCheckType, c.HealthCheckGrace = bootstrap.HealthELB, 10*time.Minute
	}, func(c *bootstrap.Config) { c.AgentPort, c.Stickiness = 8082, 2*time.Hour }},
	// An s3:// package without --agent-sha256: bootstrap reads the object
	// once (GetObject) and pins it.
	{"rules-spot-ubuntu", func(t *testing.T, c *bootstrap.Config) {
		c.Fleet, c.Distribution, c.AMI = bootstrap.FleetSpotFleet, "ubuntu", "ami-0123456789abcdef0"
		c.InstanceTypes = []string{"c7g.large", "m7g.large", "c6g.large"}
		c.AgentURL, c.AgentSHA256 = "s3://artifacts.example/spot-agent/spot-agent_1.2.3_arm64.deb", nil
		putObject(t, "artifacts.example", "spot-agent/spot-agent_1.2.3_arm64.deb", "an arm64 deb in the user's bucket")
		c.AgentEnv = map[string]string{"SPOT_AGENT_NOTIFY_SNS_TOPIC": topicARN, "SPOT_AGENT_NOTIFY_WEBHOOK": "ssm:webhook"}
	}, func(c *bootstrap.Config) {
		c.Min, c.Max, c.InstanceTypes = 1, 6, []string{"m7g.large", "c7g.large"}
		c.AgentEnv = nil
	}},
	{"rules-ec2-fleet", func(_ *testing.T, c *bootstrap.Config) {
		c.Fleet, c.AgentURL, c.AgentRelease = bootstrap.FleetEC2Fleet, "", "1.2.3"
		c.InstanceTypes = []string{"c7g.large", "m7g.large"}
		c.AppPort, c.AgentPort = 8080, bootstrap.AppAgentPort
		c.Min, c.Max, c.Capacity = 2, 2, 2
	}, func(c *bootstrap.Config) { c.DeregistrationDelay, c.IngressCIDR = 30, "203.0.113.0/24" }},
	// Attribute-based selection on both architectures, packages per
	// architecture from an s3:// URL with {arch}, price protection; the change
	// narrows the requirements and turns Capacity Rebalancing off.
	{"rules-asg-mixed", func(_ *testing.T, c *bootstrap.Config) {
		c.InstanceTypes, c.Requirements = nil, &bootstrap.Requirements{VCPUs: bootstrap.Range{Min: 2, Max: 4}, MemoryMiB: bootstrap.Range{Min: 4096, Max: 16384},
			Burstable: "excluded", Generations: []string{"current"}, SpotMaxPricePercent: 50}
		c.AgentURL, c.AgentSHA256 = "s3://artifacts.example/spot-agent/spot-agent-1.2.3-1.{arch}.rpm", bothPins
		c.AgentEnv = map[string]string{"SPOT_AGENT_DRAIN_ON": "scheduled"}
	}, func(c *bootstrap.Config) {
		r := *c.Requirements
		r.VCPUs = bootstrap.Range{Min: 2, Max: 2}
		c.Requirements, c.CapacityRebalance = &r, false
	}},
	{"rules-ec2-mixed", func(_ *testing.T, c *bootstrap.Config) {
		c.Fleet, c.AgentURL, c.AgentRelease, c.AgentSHA256 = bootstrap.FleetEC2Fleet, "", "1.2.3", bothPins
		c.InstanceTypes, c.Requirements = nil, ptr(bootstrap.DefaultRequirements())
		c.Min, c.Max, c.Capacity = 2, 2, 2
	}, func(c *bootstrap.Config) { c.DeregistrationDelay = 45 }},
	// A fixed list that mixes x86 and Graviton types, a package file per
	// architecture; the change drops a Graviton type.
	{"rules-spot-mixed", func(t *testing.T, c *bootstrap.Config) {
		c.Fleet, c.AgentURL, c.AgentSHA256 = bootstrap.FleetSpotFleet, "", nil
		c.InstanceTypes = []string{"c7g.large", "c6i.large", "m7g.large", "m6i.large"}
		c.AgentFiles = []string{writeFile(t, "spot-agent-1.2.3-1.x86_64.rpm", "x86"), writeFile(t, "spot-agent-1.2.3-1.aarch64.rpm", "arm")}
	}, func(c *bootstrap.Config) { c.InstanceTypes, c.Max = []string{"c7g.large", "c6i.large", "m6i.large"}, 8 }},
	// Requirements on Graviton only: few enough overrides for a Spot Fleet
	// to take the requirements themselves.
	{"rules-spot-graviton", func(_ *testing.T, c *bootstrap.Config) {
		c.Fleet, c.InstanceTypes, c.Requirements, c.Arches = bootstrap.FleetSpotFleet, nil, ptr(bootstrap.DefaultRequirements()), []string{bootstrap.ArchARM}
		c.AgentURL = "https://example.com/spot-agent-1.2.3-1.{arch}.rpm"
	}, func(c *bootstrap.Config) { c.Max = 8 }},
}

func ptr[T any](v T) *T { return &v }

// captured is what one configuration sent, and what it built.
type captured struct {
	cfg      bootstrap.Config
	changed  bootstrap.Config // the configuration after the change in place
	changeAt int              // the first request of the change
	reqs     []request
	out      bootstrap.Outputs
	calls    map[string][2]int // fresh and re-run: reads, mutating
}

func TestBootstrapRequestsFollowAWSRules(t *testing.T) {
	m := testbed.SharedMoto(t)
	// moto behind the fake, which answers the previews of attribute-based
	// selection moto lacks and lets moto launch fleets of requirements.
	fake := testbed.NewEC2Fake(t, m)
	results := make([]*captured, len(ruleStacks))
	t.Run("stacks", func(t *testing.T) {
		for i, rs := range ruleStacks {
			t.Run(rs.name, func(t *testing.T) {
				t.Parallel()
				results[i] = captureStack(t, fake.URL, rs)
			})
		}
	})
	var all []request
	for i, r := range results {
		if r == nil {
			t.Fatalf("%s captured nothing", ruleStacks[i].name)
		}
		t.Run(ruleStacks[i].name, func(t *testing.T) {
			checkNames(t, r.reqs)
			checkTagsAndSizes(t, r.reqs)
			checkPolicies(t, r)
			checkEventPattern(t, r.reqs)
			checkFindings(t, r)
			checkSelection(t, r)
		})
		all = append(all, r.reqs...)
	}
	checkOperatorPolicy(t, all)
}

// captureStack bootstraps the configuration, runs it again, plans it, shows
// its status and tears it down, capturing every request.
func captureStack(t *testing.T, endpoint string, rs ruleStack) *captured {
	cfg := testConfig(rs.name, bootstrap.FleetASG)
	rs.edit(t, &cfg)
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	c := &capture{}
	st, rec := newStackVia(t, endpoint, via{apiOptions: []func(*middleware.Stack) error{c.apiOption}}, cfg)
	r := &captured{cfg: cfg, calls: map[string][2]int{}}
	res, err := st.Apply(ctx(t))
	if err != nil {
		t.Fatalf("bootstrap: %v", err)
	}
	r.out = res.Outputs
	reads, changes := rec.Totals()
	r.calls["fresh"] = [2]int{reads, changes}
	rec.Reset()
	if res, err = st.Apply(ctx(t)); err != nil || res.Changed {
		t.Fatalf("re-run: %v (changed %v)", err, res != nil && res.Changed)
	}
	reads, changes = rec.Totals()
	r.calls["re-run"] = [2]int{reads, changes}
	if _, err := st.Plan(ctx(t)); err != nil {
		t.Fatalf("plan: %v", err)
	}
	changed := cfg
	rs.change(&changed)
	r.changeAt = len(c.requests())
	st2, _ := newStackVia(t, endpoint, via{apiOptions: []func(*middleware.Stack) error{c.apiOption}}, changed)
	res, err = st2.Apply(ctx(t))
	if err != nil || !res.Changed {
		t.Fatalf("a change in place: %v (changed %v)", err, res != nil && res.Changed)
	}
	r.changed = changed
	if _, err := st.Status(ctx(t)); err != nil {
		t.Fatalf("status: %v", err)
	}
	if _, err := st.Teardown(ctx(t), true, nil); err != nil {
		t.Fatalf("teardown --dry-run: %v", err)
	}
	rec.Reset()
	if _, err := st.Teardown(ctx(t), false, nil); err != nil {
		t.Fatalf("teardown: %v", err)
	}
	reads, changes = rec.Totals()
	r.calls["teardown"] = [2]int{reads, changes}
	t.Logf("%s: fresh %d reads, %d mutating; re-run %d reads, %d mutating; teardown %d reads, %d mutating",
		rs.name, r.calls["fresh"][0], r.calls["fresh"][1], r.calls["re-run"][0], r.calls["re-run"][1], r.calls["teardown"][0], r.calls["teardown"][1])
	r.reqs = c.requests()
	return r
}

// named is one name a request gives a resource, with its rule.
type named struct {
	value string
	rule  bootstrap.NameRule
}

// namesIn lists the names a request gives.
func namesIn(in any) []named {
	switch v := in.(type) {
	case *elbv2.CreateLoadBalancerInput:
		return []named{{aws.ToString(v.Name), bootstrap.RuleLoadBalancer}}
	case *elbv2.CreateTargetGroupInput:
		return []named{{aws.ToString(v.Name), bootstrap.RuleTargetGroup}}
	case *iam.CreateRoleInput:
		return []named{{aws.ToString(v.RoleName), bootstrap.RuleRole}}
	case *iam.CreateInstanceProfileInput:
		return []named{{aws.ToString(v.InstanceProfileName), bootstrap.RuleInstanceProfile}}
	case *iam.PutRolePolicyInput:
		return []named{{aws.ToString(v.PolicyName), bootstrap.RuleRolePolicy}}
	case *ec2.CreateLaunchTemplateInput:
		return []named{{aws.ToString(v.LaunchTemplateName), bootstrap.RuleLaunchTemplate}}
	case *ec2.CreateSecurityGroupInput:
		return []named{{aws.ToString(v.GroupName), bootstrap.RuleSecurityGroup}, {aws.ToString(v.Description), bootstrap.RuleSecurityGroupDescription}}
	case *autoscaling.CreateAutoScalingGroupInput:
		out := []named{{aws.ToString(v.AutoScalingGroupName), bootstrap.RuleAutoScalingGroup}}
		for _, h := range v.LifecycleHookSpecificationList {
			out = append(out, named{aws.ToString(h.LifecycleHookName), bootstrap.RuleLifecycleHook})
		}
		return out
	case *autoscaling.PutLifecycleHookInput:
		return []named{{aws.ToString(v.LifecycleHookName), bootstrap.RuleLifecycleHook}}
	case *autoscaling.PutScalingPolicyInput:
		return []named{{aws.ToString(v.PolicyName), bootstrap.RuleScalingPolicy}}
	case *appas.PutScalingPolicyInput:
		return []named{{aws.ToString(v.PolicyName), bootstrap.RuleAppScalingPolicy}}
	case *sns.CreateTopicInput:
		return []named{{aws.ToString(v.Name), bootstrap.RuleTopic}}
	case *eventbridge.PutRuleInput:
		return []named{{aws.ToString(v.Name), bootstrap.RuleEventRule}}
	case *eventbridge.PutTargetsInput:
		var out []named
		for _, tg := range v.Targets {
			out = append(out, named{aws.ToString(tg.Id), bootstrap.RuleEventTarget})
		}
		return out
	case *s3.CreateBucketInput:
		return []named{{aws.ToString(v.Bucket), bootstrap.RuleBucket}}
	}
	return nil
}

func checkNames(t *testing.T, reqs []request) {
	seen := 0
	for _, r := range reqs {
		for _, n := range namesIn(r.input) {
			seen++
			if p := n.rule.Check(n.value); p != "" {
				t.Errorf("%s: %q %s (%s)", r, n.value, p, n.rule.Doc())
			}
		}
	}
	if seen < 12 {
		t.Errorf("only %d names checked: the stack names more than that", seen)
	}
}

// tagSet is the tags one request gives one resource.
type tagSet struct {
	where string
	tags  map[string]string
	n     int
}

// tagsIn finds every tag list in an input, whatever its type: a field
// named Tags or TagSet holding Key/Value pairs, or a map of strings.
func tagsIn(v reflect.Value, where string, out *[]tagSet) {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			tagsIn(v.Elem(), where, out)
		}
	case reflect.Slice:
		for i := 0; i < v.Len(); i++ {
			tagsIn(v.Index(i), fmt.Sprintf("%s[%d]", where, i), out)
		}
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			f := v.Type().Field(i)
			if !f.IsExported() {
				continue
			}
			fv := v.Field(i)
			if f.Name != "Tags" && f.Name != "TagSet" {
				tagsIn(fv, where+"."+f.Name, out)
				continue
			}
			ts := tagSet{where: where + "." + f.Name, tags: map[string]string{}}
			switch fv.Kind() {
			case reflect.Map:
				for _, k := range fv.MapKeys() {
					ts.tags[k.String()] = fv.MapIndex(k).String()
				}
			case reflect.Slice:
				for j := 0; j < fv.Len(); j++ {
					e := reflect.Indirect(fv.Index(j))
					key, value := e.FieldByName("Key"), e.FieldByName("Value")
					ts.tags[aws.ToString(key.Interface().(*string))] = aws.ToString(value.Interface().(*string))
				}
			}
			ts.n = fv.Len()
			if ts.n > 0 {
				*out = append(*out, ts)
			}
		}
	}
}

// Limits AWS documents, beside the tags' and the names'.
const (
	maxUserData        = 16384 // bytes, before base64: https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/user-data.html
	maxEventPattern    = 4096  // https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_PutRule.html
	maxRuleDescription = 512   // the same page
	maxRoleDescription = 1000  // https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreateRole.html
	maxLTVersionDesc   = 255   // https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CreateLaunchTemplate.html
	minHeartbeat       = 30    // seconds, https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_PutLifecycleHook.html
	maxHeartbeat       = 7200
	maxFleetOverrides  = 300 // across a maintain EC2 Fleet's launch templates: https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_FleetLaunchTemplateConfigRequest.html
	// IAM quotas: https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html
	maxRoleInlinePolicies = 10240 // a role's inline policies together, white space not counted
	maxTrustPolicy        = 2048
	maxManagedPolicy      = 6144
	maxTopicPolicy        = 30720 // bytes: https://docs.aws.amazon.com/general/latest/gr/sns.html
)

func checkTagsAndSizes(t *testing.T, reqs []request) {
	tagged := 0
	for _, r := range reqs {
		var sets []tagSet
		tagsIn(reflect.ValueOf(r.input), r.String(), &sets)
		for _, ts := range sets {
			tagged++
			if ts.n > bootstrap.MaxTagsPerResource {
				t.Errorf("%s: %d tags, over %d (%s)", ts.where, ts.n, bootstrap.MaxTagsPerResource, bootstrap.TagDoc)
			}
			for k, v := range ts.tags {
				if k == "" || len(k) > bootstrap.MaxTagKeyLen || strings.HasPrefix(strings.ToLower(k), "aws:") || len(v) > bootstrap.MaxTagValueLen {
					t.Errorf("%s: tag %q=%q breaks the tag rules (%s)", ts.where, k, v, bootstrap.TagDoc)
				}
			}
		}
		checkSizes(t, r)
	}
	if tagged < 10 {
		t.Errorf("only %d tag lists checked", tagged)
	}
}

func checkSizes(t *testing.T, r request) {
	userData := func(data *ec2types.RequestLaunchTemplateData) {
		b, err := base64.StdEncoding.DecodeString(aws.ToString(data.UserData))
		if err != nil || len(b) == 0 || len(b) > maxUserData {
			t.Errorf("%s: user-data of %d bytes (%v), limit %d", r, len(b), err, maxUserData)
		}
	}
	hook := func(name string, timeout *int32) {
		if s := aws.ToInt32(timeout); s < minHeartbeat || s > maxHeartbeat {
			t.Errorf("%s: hook %s heartbeat timeout %ds, outside %d..%d", r, name, s, minHeartbeat, maxHeartbeat)
		}
	}
	switch v := r.input.(type) {
	case *ec2.CreateLaunchTemplateInput:
		userData(v.LaunchTemplateData)
		if len(aws.ToString(v.VersionDescription)) > maxLTVersionDesc {
			t.Errorf("%s: version description over %d", r, maxLTVersionDesc)
		}
	case *ec2.CreateLaunchTemplateVersionInput:
		userData(v.LaunchTemplateData)
	case *eventbridge.PutRuleInput:
		if len(aws.ToString(v.EventPattern)) > maxEventPattern || len(aws.ToString(v.Description)) > maxRuleDescription {
			t.Errorf("%s: pattern %d, description %d characters", r, len(aws.ToString(v.EventPattern)), len(aws.ToString(v.Description)))
		}
	case *iam.CreateRoleInput:
		if d := aws.ToString(v.Description); len(d) > maxRoleDescription || strings.ContainsFunc(d, func(c rune) bool { return c < 0x20 || c > 0xff }) {
			t.Errorf("%s: description %q", r, d)
		}
		if n := policyLength(aws.ToString(v.AssumeRolePolicyDocument)); n > maxTrustPolicy {
			t.Errorf("%s: trust policy of %d characters, over %d", r, n, maxTrustPolicy)
		}
	case *autoscaling.CreateAutoScalingGroupInput:
		for _, h := range v.LifecycleHookSpecificationList {
			hook(aws.ToString(h.LifecycleHookName), h.HeartbeatTimeout)
		}
	case *autoscaling.PutLifecycleHookInput:
		hook(aws.ToString(v.LifecycleHookName), v.HeartbeatTimeout)
	case *ec2.CreateFleetInput:
		n := 0
		for _, c := range v.LaunchTemplateConfigs {
			n += len(c.Overrides)
		}
		if n > maxFleetOverrides {
			t.Errorf("%s: %d overrides, over %d", r, n, maxFleetOverrides)
		}
	case *sns.CreateTopicInput:
		if n := len(v.Attributes["Policy"]); n > maxTopicPolicy {
			t.Errorf("%s: topic policy of %d bytes", r, n)
		}
	}
}

// agentCall is one AWS call the agent's code can make: when, and on which
// resources, for a stack's configuration.
type agentCall struct {
	when      func(c bootstrap.Config) bool
	resources func(c bootstrap.Config, out bootstrap.Outputs) []string
}

func always(bootstrap.Config) bool                       { return true }
func every(bootstrap.Config, bootstrap.Outputs) []string { return []string{"*"} }

// groups are the target groups the agent leaves: the stack's, and those
// --agent-env names.
func groups(c bootstrap.Config, out bootstrap.Outputs) []string {
	arns := []string{out.TargetGroupARN}
	if extra := c.AgentEnv["SPOT_AGENT_TARGET_GROUP_ARN"]; extra != "" {
		arns = append(arns, strings.Split(extra, ",")...)
	}
	return arns
}

func groupARN(_ bootstrap.Config, out bootstrap.Outputs) []string {
	return []string{fmt.Sprintf("arn:aws:autoscaling:us-east-1:%s:autoScalingGroup:5e9b2c7a-1d4f-4e8b-a3c6-0f7d2b9e1a45:autoScalingGroupName/%s", account, out.FleetID)}
}

// agentCalls are the calls of the agent's AWS interfaces (targets.ELB,
// tags.EC2, lifecycle.API, notify.SNSAPI, secret.API), as IAM actions.
var agentCalls = map[string]agentCall{
	"elasticloadbalancing:DescribeTargetHealth":          {always, every},
	"elasticloadbalancing:DescribeTargetGroupAttributes": {always, every},
	"elasticloadbalancing:DeregisterTargets":             {always, groups},
	"elasticloadbalancing:RegisterTargets":               {always, groups}, // --register (EC2 Fleet), and the return after a restart on every fleet
	"ec2:DescribeTags":                                   {always, every},
	"autoscaling:CompleteLifecycleAction":                {func(c bootstrap.Config) bool { return c.Fleet == bootstrap.FleetASG }, groupARN},
	"autoscaling:RecordLifecycleActionHeartbeat":         {func(c bootstrap.Config) bool { return c.Fleet == bootstrap.FleetASG }, groupARN},
	"sns:Publish": {func(c bootstrap.Config) bool { return c.AgentEnv["SPOT_AGENT_NOTIFY_SNS_TOPIC"] != "" },
		func(c bootstrap.Config, _ bootstrap.Outputs) []string {
			return []string{c.AgentEnv["SPOT_AGENT_NOTIFY_SNS_TOPIC"]}
		}},
	"ssm:GetParameter": {func(c bootstrap.Config) bool { return len(parameters(c)) > 0 },
		func(c bootstrap.Config, _ bootstrap.Outputs) []string { return parameters(c) }},
}

// parameters are the ARNs of the parameters the settings name as ssm:NAME,
// as the agent reads them: a name in the instance's region and account.
func parameters(c bootstrap.Config) []string {
	var out []string
	for _, k := range bootstrap.SecretSettings() {
		if r, err := secret.ParseRef(c.AgentEnv[k]); err == nil {
			out = append(out, r.ARN(partition, c.Region, account))
		}
	}
	return out
}

// The table of the agent's calls is its interfaces' methods, no more, no
// less: a new AWS call in the agent fails here until the role allows it.
func TestAgentCallsAreTheAgentsInterfaces(t *testing.T) {
	ifaces := map[string]reflect.Type{
		"elasticloadbalancing": reflect.TypeFor[targets.ELB](), "ec2": reflect.TypeFor[tags.EC2](),
		"autoscaling": reflect.TypeFor[lifecycle.API](), "sns": reflect.TypeFor[notify.SNSAPI](), "ssm": reflect.TypeFor[secret.API](),
	}
	var methods []string
	for prefix, it := range ifaces {
		for i := 0; i < it.NumMethod(); i++ {
			methods = append(methods, prefix+":"+it.Method(i).Name)
		}
	}
	slices.Sort(methods)
	if table := slices.Sorted(mapKeys(agentCalls)); !slices.Equal(methods, table) {
		t.Errorf("the agent's AWS calls %v\ndiffer from agentCalls %v", methods, table)
	}
}

// policiesIn returns each role's last inline policies, by role then name.
func policiesIn(reqs []request) map[string]map[string]string {
	out := map[string]map[string]string{}
	for _, r := range reqs {
		if v, ok := r.input.(*iam.PutRolePolicyInput); ok {
			role := aws.ToString(v.RoleName)
			if out[role] == nil {
				out[role] = map[string]string{}
			}
			out[role][aws.ToString(v.PolicyName)] = aws.ToString(v.PolicyDocument)
		}
	}
	return out
}

func checkPolicies(t *testing.T, r *captured) {
	region := r.cfg.Region
	for role, docs := range policiesIn(r.reqs) {
		total := 0
		for name, doc := range docs {
			total += policyLength(doc)
			checkGrants(t, role+"/"+name, parsePolicy(t, doc), partition, region, account)
		}
		if total > maxRoleInlinePolicies {
			t.Errorf("role %s: inline policies of %d characters, over %d", role, total, maxRoleInlinePolicies)
		}
	}
	for _, req := range r.reqs {
		if v, ok := req.input.(*sns.CreateTopicInput); ok {
			p := parsePolicy(t, v.Attributes["Policy"])
			checkGrants(t, "topic policy", p, partition, region, account)
		}
	}
	// The role as the stack was built, and after the change in place.
	checkAgentCalls(t, r.cfg, r.out, policiesIn(r.reqs[:r.changeAt]))
	checkAgentCalls(t, r.changed, r.out, policiesIn(r.reqs))
	instanceRole := parsePolicy(t, policiesIn(r.reqs[:r.changeAt])["spot-agent-"+r.cfg.Name+"-instance"]["spot-agent"])
	// The install reads an s3:// package, each architecture's, with the role.
	for _, pkg := range append([]string{r.out.AgentURL}, slices.Collect(maps.Values(r.out.AgentURLs))...) {
		if u, ok := strings.CutPrefix(pkg, "s3://"); ok && !allowed(instanceRole, "s3:GetObject", "arn:aws:s3:::"+u, nil) {
			t.Errorf("the instance role cannot read its package %s", pkg)
		}
	}
	if r.cfg.Fleet == bootstrap.FleetSpotFleet {
		checkSpotFleetGrants(t, r)
	}
	checkFISGrants(t, r)
}

// checkFISGrants: the drill's experiments may interrupt the stack's
// instances, and no other; FIS alone may assume the role, for this
// account's experiments.
func checkFISGrants(t *testing.T, r *captured) {
	role := "spot-agent-" + r.cfg.Name + "-fis"
	p := parsePolicy(t, policiesIn(r.reqs)[role]["spot-agent-fis"])
	here := "arn:aws:ec2:us-east-1:" + account + ":instance/i-0123"
	for _, tt := range []struct {
		action, resource string
		ctx              map[string]string
		want             bool
	}{
		{"ec2:SendSpotInstanceInterruptions", here, map[string]string{"aws:ResourceTag/" + bootstrap.StackTag: r.cfg.Name}, true},
		{"ec2:SendSpotInstanceInterruptions", here, map[string]string{"aws:ResourceTag/" + bootstrap.StackTag: "other"}, false},
		{"ec2:SendSpotInstanceInterruptions", here, nil, false},
		{"ec2:SendSpotInstanceInterruptions", "arn:aws:ec2:eu-west-1:" + account + ":instance/i-0123", map[string]string{"aws:ResourceTag/" + bootstrap.StackTag: r.cfg.Name}, false},
		{"ec2:DescribeInstances", "*", nil, true},
		{"ec2:TerminateInstances", here, map[string]string{"aws:ResourceTag/" + bootstrap.StackTag: r.cfg.Name}, false},
	} {
		if got := allowed(p, tt.action, tt.resource, tt.ctx); got != tt.want {
			t.Errorf("FIS role: %s on %s with %v: %v, want %v", tt.action, tt.resource, tt.ctx, got, tt.want)
		}
	}
	var trust policy
	for _, req := range r.reqs {
		if v, ok := req.input.(*iam.CreateRoleInput); ok && aws.ToString(v.RoleName) == role {
			trust = parsePolicy(t, aws.ToString(v.AssumeRolePolicyDocument))
		}
	}
	exp := "arn:aws:fis:us-east-1:" + account + ":experiment/EXP123"
	if len(trust.Statement) != 1 || !conditionsHold(trust.Statement[0].Condition, map[string]string{"aws:SourceAccount": account, "aws:SourceArn": exp}) ||
		conditionsHold(trust.Statement[0].Condition, map[string]string{"aws:SourceAccount": "210987654321", "aws:SourceArn": exp}) ||
		fmt.Sprint(trust.Statement[0].Principal) != "map[Service:fis.amazonaws.com]" {
		t.Errorf("the FIS role's trust: %+v; want fis.amazonaws.com, for this account's experiments only", trust)
	}
}

// checkAgentCalls: every call the agent makes with the configuration is
// allowed by the instance role, and no more than the stack's resources are.
func checkAgentCalls(t *testing.T, cfg bootstrap.Config, out bootstrap.Outputs, policies map[string]map[string]string) {
	t.Helper()
	instanceRole := parsePolicy(t, policies["spot-agent-"+cfg.Name+"-instance"]["spot-agent"])
	for action, call := range agentCalls {
		if !call.when(cfg) {
			if allowed(instanceRole, action, "*", nil) {
				t.Errorf("the instance role allows %s on every resource, which this stack's agent never calls", action)
			}
			continue
		}
		for _, res := range call.resources(cfg, out) {
			if !allowed(instanceRole, action, res, nil) {
				t.Errorf("the agent calls %s on %s, and its role denies it (settings %v)", action, res, cfg.AgentEnv)
			}
		}
	}
	// A SecureString under the customer managed key: SSM decrypts it for
	// the role, which may use the key through SSM in the stack's region only.
	viaSSM := map[string]string{"kms:ViaService": "ssm." + cfg.Region + ".amazonaws.com"}
	if key := cfg.SSMKMSKeyARN; key != "" && (!allowed(instanceRole, "kms:Decrypt", key, viaSSM) || allowed(instanceRole, "kms:Decrypt", key, nil)) {
		t.Errorf("kms:Decrypt on %s: want it through SSM, and only so", key)
	}
	if cfg.SSMKMSKeyARN == "" && allowed(instanceRole, "kms:Decrypt", "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab", viaSSM) {
		t.Error("kms:Decrypt allowed without --ssm-kms-key-arn")
	}
	// Scoped: another group, another Auto Scaling group, another topic.
	for action, res := range map[string]string{
		"ssm:GetParameter":                           "arn:aws:ssm:us-east-1:123456789012:parameter/spot-agent/other",
		"elasticloadbalancing:DeregisterTargets":     strings.Replace(out.TargetGroupARN, "-tg/", "-other/", 1),
		"autoscaling:CompleteLifecycleAction":        "arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:x:autoScalingGroupName/other",
		"sns:Publish":                                "arn:aws:sns:us-east-1:123456789012:other",
		"s3:GetObject":                               "arn:aws:s3:::other-bucket/spot-agent.deb",
		"elasticloadbalancing:RegisterTargets":       otherGroup + "-not",
		"autoscaling:RecordLifecycleActionHeartbeat": "arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:x:autoScalingGroupName/other",
	} {
		if allowed(instanceRole, action, res, nil) {
			t.Errorf("the instance role allows %s on %s, which is not the stack's", action, res)
		}
	}
}

// checkSpotFleetGrants: Spot Fleet may do what AmazonEC2SpotFleetTaggingRole
// lets it do, on this stack's resources only.
func checkSpotFleetGrants(t *testing.T, r *captured) {
	fleet := parsePolicy(t, policiesIn(r.reqs)["spot-agent-"+r.cfg.Name+"-spot-fleet"]["spot-agent-spot-fleet"])
	here := "arn:aws:ec2:us-east-1:" + account + ":"
	stackTag := map[string]string{"ec2:ResourceTag/" + bootstrap.StackTag: r.cfg.Name}
	toEC2 := map[string]string{"iam:PassedToService": "ec2.amazonaws.com"}
	for _, tt := range []struct {
		action, resource string
		ctx              map[string]string
		want             bool
	}{
		{"ec2:RunInstances", here + "instance/i-0123", nil, true},
		{"ec2:RunInstances", here + "subnet/subnet-0123", nil, true},
		{"ec2:RunInstances", "arn:aws:ec2:us-east-1::image/ami-0123", nil, true},
		{"ec2:RunInstances", "arn:aws:ec2:eu-west-1:" + account + ":instance/i-0123", nil, false},
		{"ec2:RequestSpotInstances", here + "spot-instances-request/sir-0123", nil, true},
		{"ec2:CreateTags", here + "instance/i-0123", nil, true},
		{"ec2:CreateTags", here + "vpc/vpc-0123", nil, false},
		{"ec2:DescribeImages", "*", nil, true},
		{"ec2:TerminateInstances", here + "instance/i-0123", stackTag, true},
		{"ec2:TerminateInstances", here + "instance/i-0123", map[string]string{"ec2:ResourceTag/" + bootstrap.StackTag: "other"}, false},
		{"ec2:TerminateInstances", here + "instance/i-0123", nil, false},
		{"iam:PassRole", r.out.RoleARN, toEC2, true},
		{"iam:PassRole", "arn:aws:iam::" + account + ":role/admin", toEC2, false},
		{"iam:PassRole", r.out.RoleARN, map[string]string{"iam:PassedToService": "lambda.amazonaws.com"}, false},
		{"elasticloadbalancing:RegisterTargets", r.out.TargetGroupARN, nil, true},
		{"elasticloadbalancing:RegisterTargets", otherGroup, nil, false},
	} {
		if got := allowed(fleet, tt.action, tt.resource, tt.ctx); got != tt.want {
			t.Errorf("Spot Fleet role: %s on %s with %v: %v, want %v", tt.action, tt.resource, tt.ctx, got, tt.want)
		}
	}
}

// checkEventPattern: the rule matches AWS's sample interruption warning and
// rebalance recommendation, and neither an Auto Scaling lifecycle action nor
// another EC2 event.
func checkEventPattern(t *testing.T, reqs []request) {
	n := 0
	for _, r := range reqs {
		v, ok := r.input.(*eventbridge.PutRuleInput)
		if !ok || v.EventPattern == nil {
			continue
		}
		n++
		pattern := decodeJSON(t, aws.ToString(v.EventPattern))
		for file, event := range sampleEvents(t) {
			want := file == "spot-interruption-warning.json" || file == "rebalance-recommendation.json"
			got, err := matchPattern(pattern, event)
			if err != nil || got != want {
				t.Errorf("pattern %s on %s: %v, %v; want %v", aws.ToString(v.EventPattern), file, got, err, want)
			}
		}
	}
	if n == 0 {
		t.Error("no PutRule with a pattern was sent")
	}
}

// checkFindings holds the requests to the findings: names AWS takes
// (checkNames), a VPC with DNS hostnames, the hook with the group, the
// fleet's service-linked roles, no AWS managed Spot Fleet policy.
func checkFindings(t *testing.T, r *captured) {
	dns := map[string]bool{}
	var hookWithGroup, managedPolicy bool
	listed := map[string]bool{}
	for _, req := range r.reqs {
		switch v := req.input.(type) {
		case *ec2.ModifyVpcAttributeInput:
			dns["support"] = dns["support"] || (v.EnableDnsSupport != nil && aws.ToBool(v.EnableDnsSupport.Value))
			dns["hostnames"] = dns["hostnames"] || (v.EnableDnsHostnames != nil && aws.ToBool(v.EnableDnsHostnames.Value))
		case *autoscaling.CreateAutoScalingGroupInput:
			hookWithGroup = len(v.LifecycleHookSpecificationList) == 1 &&
				aws.ToString(v.LifecycleHookSpecificationList[0].LifecycleTransition) == "autoscaling:EC2_INSTANCE_TERMINATING"
			if want := strings.ToUpper(r.cfg.HealthCheckTypeFor()); aws.ToString(v.HealthCheckType) != want ||
				aws.ToInt32(v.HealthCheckGracePeriod) != int32(r.cfg.HealthCheckGrace/time.Second) {
				t.Errorf("health check %s after %ds, want %s after %s", aws.ToString(v.HealthCheckType), aws.ToInt32(v.HealthCheckGracePeriod), want, r.cfg.HealthCheckGrace)
			}
		case *iam.AttachRolePolicyInput:
			managedPolicy = managedPolicy || strings.HasSuffix(aws.ToString(v.PolicyArn), "AmazonEC2SpotFleetTaggingRole")
		case *iam.ListRolesInput:
			listed[strings.Trim(strings.TrimPrefix(aws.ToString(v.PathPrefix), "/aws-service-role/"), "/")] = true
		}
	}
	if !dns["support"] || !dns["hostnames"] {
		t.Errorf("the new VPC's DNS: %v, want support and hostnames turned on", dns)
	}
	if hookWithGroup != (r.cfg.Fleet == bootstrap.FleetASG) {
		t.Errorf("CreateAutoScalingGroup with its termination hook: %v", hookWithGroup)
	}
	if managedPolicy {
		t.Error("AmazonEC2SpotFleetTaggingRole attached")
	}
	for _, svc := range bootstrap.ServiceLinkedRolesFor(r.cfg.Fleet) {
		if !listed[svc] {
			t.Errorf("the service-linked role for %s was not looked up", svc)
		}
	}
}

// servicePrefix is each SDK service's IAM prefix.
var servicePrefix = map[string]string{
	"EC2": "ec2", "Elastic Load Balancing v2": "elasticloadbalancing", "Auto Scaling": "autoscaling",
	"Application Auto Scaling": "application-autoscaling", "IAM": "iam", "SNS": "sns", "EventBridge": "events",
	"SSM": "ssm", "STS": "sts", "S3": "s3", "fis": "fis", "CloudWatch": "cloudwatch",
}

// s3Actions are the S3 operations whose IAM action has another name.
// https://docs.aws.amazon.com/AmazonS3/latest/userguide/using-with-s3-policy-actions.html
var s3Actions = map[string]string{
	"HeadBucket": "s3:ListBucket", "ListObjectsV2": "s3:ListBucket", "HeadObject": "s3:GetObject",
	"PutPublicAccessBlock": "s3:PutBucketPublicAccessBlock",
}

// launchActions are what launching from a launch template with an instance
// profile asks of the caller, besides the fleet call itself.
// https://docs.aws.amazon.com/autoscaling/ec2/userguide/ec2-auto-scaling-launch-template-permissions.html
var launchActions = []string{"ec2:RunInstances", "ec2:CreateTags", "iam:PassRole"}

// operatorActions are the IAM actions one request needs of the person
// running bootstrap: its own, the tagging action when it tags on creation,
// and what a fleet call or Application Auto Scaling needs besides.
func operatorActions(r request) []string {
	prefix, ok := servicePrefix[r.service]
	if !ok {
		return nil
	}
	switch {
	case r.service == "STS" && r.op == "GetCallerIdentity": // needs no permission
		return nil
	case r.service == "S3" && s3Actions[r.op] != "":
		return []string{s3Actions[r.op]}
	}
	out := []string{prefix + ":" + r.op}
	var sets []tagSet
	if r.input != nil {
		tagsIn(reflect.ValueOf(r.input), "", &sets)
	}
	if len(sets) > 0 {
		switch r.service {
		case "EC2":
			out = append(out, "ec2:CreateTags")
		case "Elastic Load Balancing v2":
			out = append(out, "elasticloadbalancing:AddTags")
		case "IAM":
			out = append(out, "iam:Tag"+strings.TrimPrefix(r.op, "Create"))
		case "SNS", "EventBridge", "Application Auto Scaling", "fis", "CloudWatch":
			out = append(out, prefix+":TagResource")
		case "Auto Scaling":
			out = append(out, "autoscaling:CreateOrUpdateTags")
		}
	}
	switch r.String() {
	case "Auto Scaling.CreateAutoScalingGroup", "Auto Scaling.UpdateAutoScalingGroup", "EC2.CreateFleet", "EC2.ModifyFleet", "EC2.RequestSpotFleet":
		out = append(out, launchActions...)
	}
	if r.service == "Application Auto Scaling" { // https://docs.aws.amazon.com/aws-managed-policy/latest/reference/AmazonEC2SpotFleetAutoscaleRole.html
		out = append(out, "ec2:DescribeSpotFleetRequests", "ec2:ModifySpotFleetRequest", "cloudwatch:DescribeAlarms", "cloudwatch:PutMetricAlarm", "cloudwatch:DeleteAlarms")
	}
	return out
}

// operatorServiceLinkedRoles are the services whose roles bootstrap makes,
// or Elastic Load Balancing and Application Auto Scaling make on first use,
// with the caller's iam:CreateServiceLinkedRole.
func operatorServiceLinkedRoles() []string {
	s := []string{"elasticloadbalancing.amazonaws.com", "ec2.application-autoscaling.amazonaws.com"}
	for _, f := range []string{bootstrap.FleetASG, bootstrap.FleetSpotFleet, bootstrap.FleetEC2Fleet} {
		s = append(s, bootstrap.ServiceLinkedRolesFor(f)...)
	}
	slices.Sort(s)
	return slices.Compact(s)
}

// checkOperatorPolicy derives the policy the person running bootstrap,
// status and teardown needs from every request of every configuration, and
// holds docs/bootstrap-iam-policy.json to it (-update writes it).
func checkOperatorPolicy(t *testing.T, reqs []request) {
	// Every call bootstrap can make is a method of its clients' interfaces,
	// whether or not these configurations made it (an update of a listener,
	// a stray instance's termination); the requests add what tagging on
	// creation and launching need.
	clients := map[string]reflect.Type{
		"EC2": reflect.TypeFor[bootstrap.EC2](), "Elastic Load Balancing v2": reflect.TypeFor[bootstrap.ELB](),
		"Auto Scaling": reflect.TypeFor[bootstrap.AutoScaling](), "Application Auto Scaling": reflect.TypeFor[bootstrap.AppAutoScaling](),
		"IAM": reflect.TypeFor[bootstrap.IAM](), "SNS": reflect.TypeFor[bootstrap.SNS](), "EventBridge": reflect.TypeFor[bootstrap.EventBridge](),
		"SSM": reflect.TypeFor[bootstrap.SSM](), "STS": reflect.TypeFor[bootstrap.STS](), "S3": reflect.TypeFor[bootstrap.S3](),
		"fis": reflect.TypeFor[bootstrap.FIS](), "CloudWatch": reflect.TypeFor[bootstrap.CloudWatch](),
	}
	actions := map[string]bool{}
	for service, it := range clients {
		for i := 0; i < it.NumMethod(); i++ {
			for _, a := range operatorActions(request{service: service, op: it.Method(i).Name}) {
				actions[a] = true
			}
		}
	}
	for _, r := range reqs {
		if it, ok := clients[r.service]; !ok {
			t.Errorf("%s: a service of no client interface", r)
		} else if _, ok := it.MethodByName(r.op); !ok {
			t.Errorf("%s: not a method of its client interface", r)
		}
		for _, a := range operatorActions(r) {
			actions[a] = true
		}
	}
	// The calls of instance selection support no resource-level permission:
	// the operator's policy allows them on "*", as the reference says.
	selection := []string{"ec2:DescribeInstanceTypes", "ec2:GetInstanceTypesFromInstanceRequirements", "ec2:GetSpotPlacementScores"}
	checkGrants(t, "the operator's policy (instance selection)", policy{Statement: []statement{{Effect: "Allow", Action: selection, Resource: []string{"*"}}}}, partition, testbed.Region, account)
	for _, a := range selection {
		if !actions[a] {
			t.Errorf("the operator's policy lacks %s", a)
		}
	}
	delete(actions, "iam:PassRole")
	delete(actions, "iam:CreateServiceLinkedRole")
	sorted := slices.Sorted(mapKeys(actions))
	doc := map[string]any{
		"Version": "2012-10-17",
		"Statement": []map[string]any{
			{"Sid": "BootstrapStatusTeardown", "Effect": "Allow", "Action": sorted, "Resource": "*"},
			{"Sid": "PassTheStacksRoles", "Effect": "Allow", "Action": "iam:PassRole", "Resource": "arn:aws:iam::*:role/spot-agent-*",
				"Condition": map[string]any{"StringEquals": map[string]any{"iam:PassedToService": []string{"ec2.amazonaws.com", "fis.amazonaws.com", "spotfleet.amazonaws.com"}}}},
			{"Sid": "ServiceLinkedRoles", "Effect": "Allow", "Action": "iam:CreateServiceLinkedRole", "Resource": "*",
				"Condition": map[string]any{"StringEquals": map[string]any{"iam:AWSServiceName": operatorServiceLinkedRoles()}}},
		},
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	b = append(b, '\n')
	if n := policyLength(string(b)); n > maxManagedPolicy {
		t.Errorf("the operator policy is %d characters, over a managed policy's %d", n, maxManagedPolicy)
	}
	golden := filepath.Join("..", "..", "docs", "bootstrap-iam-policy.json")
	if *update {
		if err := os.WriteFile(golden, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil || string(want) != string(b) {
		t.Errorf("%s is not what the requests need (%v): go test ./agent/bootstrap -run TestBootstrapRequestsFollowAWSRules -update, then review:\n%s", golden, err, b)
	}
	t.Logf("the operator policy: %d actions, %d characters", len(sorted), policyLength(string(b)))
	var ops []string
	for _, r := range reqs {
		ops = append(ops, r.String())
	}
	sort.Strings(ops)
	t.Logf("operations: %v", slices.Compact(ops))
}
