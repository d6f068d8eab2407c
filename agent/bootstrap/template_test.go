package bootstrap_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	snstypes "github.com/aws/aws-sdk-go-v2/service/sns/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"gopkg.in/yaml.v3"

	"github.com/spot-agent/spot-agent/agent/bootstrap"
	"github.com/spot-agent/spot-agent/internal/testbed"
)

// templateCase is one configuration whose template cfn-lint checks: every
// fleet kind, and every option that changes the template.
type templateCase struct {
	name  string
	edit  func(t *testing.T, c *bootstrap.Config)
	check func(t *testing.T, tmpl map[string]any) // what the option must change; nil for the base
}

// templateBase is what 'bootstrap --name tpl' builds by default: an ASG of
// every type with 2 vCPUs and 4 to 8 GiB, x86 and Graviton.
func templateBase() bootstrap.Config {
	cfg := bootstrap.DefaultConfig()
	cfg.Name, cfg.Region = "tpl", testbed.Region
	cfg.AgentURL = "https://example.com/spot-agent-1.2.3-1.{arch}.rpm"
	return cfg
}

var templateCases = []templateCase{
	{"asg-requirements", func(*testing.T, *bootstrap.Config) {}, nil},
	{"asg-instance-types", func(_ *testing.T, c *bootstrap.Config) {
		c.Requirements, c.InstanceTypes = nil, []string{"c6i.large", "c7g.large", "m6i.large"}
	}, func(t *testing.T, tm map[string]any) {
		ov := path(tm, "Resources", "AutoScalingGroup", "Properties", "MixedInstancesPolicy", "LaunchTemplate", "Overrides")
		if got := len(ov.([]any)); got != 3 || path(ov, "1", "InstanceType") != "c7g.large" || path(ov, "1", "LaunchTemplateSpecification", "LaunchTemplateId", "Ref") != "LaunchTemplateArm64" {
			t.Errorf("overrides %v: want each type, the Graviton one from its own template", ov)
		}
	}},
	{"asg-graviton-price-protection", func(_ *testing.T, c *bootstrap.Config) {
		c.Arches = []string{bootstrap.ArchARM}
		c.Requirements = &bootstrap.Requirements{VCPUs: bootstrap.Range{Min: 2, Max: 4}, MemoryMiB: bootstrap.Range{Min: 4096},
			Burstable: "included", Generations: []string{"current", "previous"}, SpotMaxPricePercent: 50}
	}, func(t *testing.T, tm map[string]any) {
		req := path(tm, "Resources", "AutoScalingGroup", "Properties", "MixedInstancesPolicy", "LaunchTemplate", "Overrides", "0", "InstanceRequirements")
		if path(req, "SpotMaxPricePercentageOverLowestPrice") != 50.0 || path(req, "MemoryMiB", "Max") != nil || path(tm, "Resources", "LaunchTemplateX8664") != nil {
			t.Errorf("requirements %v: want price protection 50, no memory maximum, Graviton only", req)
		}
	}},
	{"asg-application", func(t *testing.T, c *bootstrap.Config) {
		c.AppPort, c.AgentPort, c.AppHealthPath = 8080, bootstrap.AppAgentPort, "/health"
		c.HealthCheckType, c.HealthCheckGrace = bootstrap.HealthELB, 10*time.Minute
		c.UserDataFile = writeFile(t, "app.yaml", appCloudConfig)
	}, func(t *testing.T, tm map[string]any) {
		tg := path(tm, "Resources", "TargetGroup", "Properties")
		if path(tg, "Port") != 8080.0 || path(tg, "HealthCheckPort") != "8081" {
			t.Errorf("target group %v: want traffic on 8080, health checks on 8081", tg)
		}
		if n := len(path(tm, "Resources", "InstanceSecurityGroup", "Properties", "SecurityGroupIngress").([]any)); n != 2 {
			t.Errorf("%d ingress rules for the instances, want the agent's and the application's", n)
		}
		if path(tm, "Resources", "AutoScalingGroup", "Properties", "HealthCheckGracePeriod") != 600.0 {
			t.Error("the health check grace is not 600 s")
		}
	}},
	{"asg-load-balancer-settings", func(_ *testing.T, c *bootstrap.Config) {
		c.MetricsCIDR, c.AdminPort, c.Stickiness, c.DeregistrationDelay, c.RequestsPerTarget = "10.1.0.0/16", 9200, time.Hour, 30, 250
		c.IngressCIDR, c.VPCCIDR, c.Min, c.Max, c.Capacity = "203.0.113.0/24", "10.20.0.0/20", 1, 4, 3
	}, func(t *testing.T, tm map[string]any) {
		attrs := path(tm, "Resources", "TargetGroup", "Properties", "TargetGroupAttributes").([]any)
		if len(attrs) != 4 || path(tm, "Resources", "Subnet2", "Properties", "CidrBlock") != "10.20.8.0/21" {
			t.Errorf("attributes %v, subnets: want stickiness and the new VPC's halves", attrs)
		}
		if path(tm, "Resources", "InstanceSecurityGroup", "Properties", "SecurityGroupIngress", "1", "FromPort") != 9200.0 {
			t.Error("the metrics port is not open to --metrics-cidr")
		}
		if path(tm, "Resources", "ScalingPolicy", "Properties", "TargetTrackingConfiguration", "TargetValue") != 250.0 {
			t.Error("the target tracking value is not 250")
		}
		if path(tm, "Resources", "AutoScalingGroup", "Properties", "LifecycleHookSpecificationList", "0", "HeartbeatTimeout") != 90.0 {
			t.Error("the hook's timeout does not follow the deregistration delay")
		}
	}},
	{"asg-no-capacity-rebalance", func(_ *testing.T, c *bootstrap.Config) { c.CapacityRebalance = false }, func(t *testing.T, tm map[string]any) {
		if path(tm, "Resources", "AutoScalingGroup", "Properties", "CapacityRebalance") != false {
			t.Error("Capacity Rebalancing is still on")
		}
	}},
	{"asg-existing-vpc", func(_ *testing.T, c *bootstrap.Config) {
		c.VPCID, c.Subnets = "vpc-0123456789abcdef0", []string{"subnet-0123456789abcdef0", "subnet-0123456789abcdef1", "subnet-0123456789abcdef2"}
	}, func(t *testing.T, tm map[string]any) {
		for _, gone := range []string{"VPC", "Subnet1", "InternetGateway", "RouteTable"} {
			if path(tm, "Resources", gone) != nil {
				t.Errorf("%s is in the template of a given VPC", gone)
			}
		}
		if path(tm, "Parameters", "SubnetId3", "Default") != "subnet-0123456789abcdef2" || path(tm, "Parameters", "VpcId", "Type") != "AWS::EC2::VPC::Id" {
			t.Errorf("parameters %v: want the VPC and each subnet", path(tm, "Parameters"))
		}
	}},
	{"asg-debian-amis", func(_ *testing.T, c *bootstrap.Config) {
		c.Distribution, c.AgentURL = "debian", "https://example.com/spot-agent_1.2.3_{arch}.deb"
		c.AMIs = map[string]string{bootstrap.ArchX86: "ami-0123456789abcdef0", bootstrap.ArchARM: "ami-0123456789abcdef1"}
	}, func(t *testing.T, tm map[string]any) {
		if path(tm, "Parameters", "ImageIdArm64", "Type") != "AWS::EC2::Image::Id" || path(tm, "Parameters", "ImageIdArm64", "Default") != "ami-0123456789abcdef1" {
			t.Errorf("parameters %v: want the given AMIs", path(tm, "Parameters"))
		}
	}},
	{"asg-agent-settings", func(_ *testing.T, c *bootstrap.Config) {
		c.AgentURL = "s3://artifacts.example/spot-agent/spot-agent-1.2.3-1.{arch}.rpm"
		c.AgentSHA256 = []string{"amd64=" + sha256Hex("x86 rpm"), "arm64=" + sha256Hex("arm rpm")} // a template reads no s3:// package
		c.AgentEnv = map[string]string{"SPOT_AGENT_NOTIFY_SNS_TOPIC": topicARNHere, "SPOT_AGENT_TARGET_GROUP_ARN": otherGroup, "SPOT_AGENT_DRAIN_ON": "scheduled",
			"SPOT_AGENT_NOTIFY_WEBHOOK": "ssm:/spot-agent/web/webhook", "SPOT_AGENT_NOTIFY_BODY": "ssm:" + sharedParameter}
		c.SSMKMSKeyARN = kmsKey
		c.NotifyEmail = "ops@example.com"
	}, func(t *testing.T, tm map[string]any) {
		doc, _ := json.Marshal(path(tm, "Resources", "InstanceRole", "Properties", "Policies", "0", "PolicyDocument"))
		for _, want := range []string{topicARNHere, otherGroup, "arn:${AWS::Partition}:s3:::artifacts.example/spot-agent/spot-agent-1.2.3-1.aarch64.rpm",
			// A name's ARN in the stack's region and account, with one slash after "parameter".
			`"Resource":["` + sharedParameter + `",{"Fn::Sub":"arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter/spot-agent/web/webhook"}]`,
			`"Action":["kms:Decrypt"],"Condition":{"StringEquals":{"kms:ViaService":"ssm.us-east-1.amazonaws.com"}},"Effect":"Allow","Resource":"` + kmsKey + `"`} {
			if !strings.Contains(string(doc), want) {
				t.Errorf("the instance role's policy lacks %s: %s", want, doc)
			}
		}
		// The user-data holds the reference, not a value.
		encoded, _ := path(tm, "Resources", "LaunchTemplateX8664", "Properties", "LaunchTemplateData", "UserData").(string)
		ud, err := base64.StdEncoding.DecodeString(encoded)
		if err != nil || !strings.Contains(string(ud), `SPOT_AGENT_NOTIFY_WEBHOOK="ssm:/spot-agent/web/webhook"`) {
			t.Errorf("the user-data lacks the reference (%v):\n%s", err, ud)
		}
		if path(tm, "Resources", "EmailSubscription", "Properties", "Endpoint") != "ops@example.com" {
			t.Error("no email subscription")
		}
	}},
	{"asg-release", func(_ *testing.T, c *bootstrap.Config) { c.AgentURL, c.AgentRelease = "", "1.2.3" }, nil},
	{"spot-fleet-instance-types", func(_ *testing.T, c *bootstrap.Config) {
		c.Fleet, c.Requirements, c.InstanceTypes = bootstrap.FleetSpotFleet, nil, []string{"c6i.large", "c7g.large", "m7g.large"}
	}, func(t *testing.T, tm map[string]any) {
		cfgs := path(tm, "Resources", "SpotFleet", "Properties", "SpotFleetRequestConfigData", "LaunchTemplateConfigs").([]any)
		if len(cfgs) != 2 || len(path(cfgs, "1", "Overrides").([]any)) != 4 || path(tm, "Resources", "SpotFleetRole") == nil || path(tm, "Resources", "ScalableTarget") == nil {
			t.Errorf("configs %v: want a template per architecture, each type in each subnet, the fleet's role and its scaling", cfgs)
		}
	}},
	{"spot-fleet-graviton-requirements", func(_ *testing.T, c *bootstrap.Config) {
		c.Fleet, c.Arches, c.CapacityRebalance = bootstrap.FleetSpotFleet, []string{bootstrap.ArchARM}, false
	}, func(t *testing.T, tm map[string]any) {
		data := path(tm, "Resources", "SpotFleet", "Properties", "SpotFleetRequestConfigData")
		if path(data, "LaunchTemplateConfigs", "0", "Overrides", "1", "InstanceRequirements", "CpuManufacturers", "0") != "amazon-web-services" || path(data, "SpotMaintenanceStrategies") != nil {
			t.Errorf("spot fleet %v: want Graviton requirements per subnet, no Capacity Rebalancing", data)
		}
	}},
	{"spot-fleet-existing-vpc", func(_ *testing.T, c *bootstrap.Config) {
		c.Fleet, c.Requirements, c.InstanceTypes = bootstrap.FleetSpotFleet, nil, []string{"c6i.large", "m6i.large"}
		c.VPCID, c.Subnets = "vpc-0123456789abcdef0", []string{"subnet-0123456789abcdef0", "subnet-0123456789abcdef1"}
	}, func(t *testing.T, tm map[string]any) {
		if path(tm, "Resources", "SpotFleet", "Properties", "SpotFleetRequestConfigData", "LaunchTemplateConfigs", "0", "Overrides", "1", "SubnetId", "Ref") != "SubnetId2" {
			t.Error("the overrides do not name the given subnets")
		}
	}},
	{"ec2-fleet-requirements", func(_ *testing.T, c *bootstrap.Config) {
		c.Fleet, c.Min, c.Max = bootstrap.FleetEC2Fleet, 2, 2
	}, func(t *testing.T, tm map[string]any) {
		if path(tm, "Resources", "ScalingPolicy") != nil || path(tm, "Resources", "EC2Fleet", "Properties", "LaunchTemplateConfigs", "0", "Overrides", "0", "SubnetId", "Fn::Sub") != "${Subnet1},${Subnet2}" {
			t.Errorf("EC2 Fleet %v: want no scaling, requirements in both subnets", path(tm, "Resources", "EC2Fleet"))
		}
	}},
	{"ec2-fleet-types-application", func(_ *testing.T, c *bootstrap.Config) {
		c.Fleet, c.Requirements, c.InstanceTypes = bootstrap.FleetEC2Fleet, nil, []string{"c6i.large", "m6i.large"}
		c.AppPort, c.AgentPort = 8080, bootstrap.AppAgentPort
	}, func(t *testing.T, tm map[string]any) {
		if n := len(path(tm, "Resources", "EC2Fleet", "Properties", "LaunchTemplateConfigs", "0", "Overrides").([]any)); n != 4 {
			t.Errorf("%d overrides, want each type in each subnet", n)
		}
	}},
}

// topicARNHere is a topic in the test region.
const topicARNHere = "arn:aws:sns:us-east-1:123456789012:interruptions"

// templateOptions are the options of a template's stack: its https://
// packages and the release's checksums.txt come from a site of the test
// (newSite), and a template pins them as bootstrap does, by reading them.
func templateOptions(t *testing.T) bootstrap.Options {
	t.Helper()
	files := map[string]string{"/assets/checksums.txt": ""}
	for _, name := range []string{"spot-agent-1.2.3-1.x86_64.rpm", "spot-agent-1.2.3-1.aarch64.rpm", "spot-agent_1.2.3_amd64.deb", "spot-agent_1.2.3_arm64.deb"} {
		files["/"+name] = "package " + name
		files["/assets/checksums.txt"] += sha256Hex("package "+name) + "  " + name + "\n"
	}
	_, client := newSite(t, files)
	client.Transport = redirectChecksums{client.Transport}
	return bootstrap.Options{HTTPClient: client}
}

// path walks a decoded template (testbed.JSONPath).
func path(v any, p ...string) any { return testbed.JSONPath(v, p...) }

// templateOf builds cfg's template and writes it to dir as JSON.
func templateOf(t *testing.T, cfg bootstrap.Config, dir, name string) (file string, tmpl map[string]any) {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	tp, err := bootstrap.New(cfg, bootstrap.Clients{}, templateOptions(t)).Template(context.Background())
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	var b bytes.Buffer
	if err := tp.Write(&b, bootstrap.TemplateJSON); err != nil {
		t.Fatal(err)
	}
	file = filepath.Join(dir, name+".json")
	if err := os.WriteFile(file, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b.Bytes(), &tmpl); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return file, tmpl
}

// cfnLintAccepted are cfn-lint's findings a template may have, each with
// why. None today: a finding that is not here fails the test.
var cfnLintAccepted = map[string]string{}

// The template of every fleet kind and option that changes it passes
// cfn-lint (AWS's resource schemas, offline) with no error and no warning,
// and each option changes what it should. The YAML form is the same
// template.
func TestTemplateOfEveryKindAndOptionPassesCfnLint(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var files []string
	byFile := map[string]string{}
	var base map[string]any
	for _, tc := range templateCases {
		cfg := templateBase()
		tc.edit(t, &cfg)
		file, tmpl := templateOf(t, cfg, dir, tc.name)
		files, byFile[file] = append(files, file), tc.name
		if tc.check == nil && base == nil {
			base = tmpl
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			if reflect.DeepEqual(tmpl, base) {
				t.Fatal("the template is the default's: the option changes nothing")
			}
			if tc.check != nil {
				tc.check(t, tmpl)
			}
		})
	}
	// The YAML form of one, beside them.
	cfg := templateBase()
	tp, err := bootstrap.New(cfg, bootstrap.Clients{}, templateOptions(t)).Template(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var y bytes.Buffer
	if err := tp.Write(&y, bootstrap.TemplateYAML); err != nil {
		t.Fatal(err)
	}
	var fromYAML any
	if err := yaml.Unmarshal(y.Bytes(), &fromYAML); err != nil {
		t.Fatal(err)
	}
	if j, _ := json.Marshal(fromYAML); !jsonEqual(t, j, mustMarshal(t, base)) {
		t.Errorf("the YAML template is not the JSON one:\n%s", y.String())
	}
	yamlFile := filepath.Join(dir, "asg-requirements.yaml")
	if err := os.WriteFile(yamlFile, y.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	files, byFile[yamlFile] = append(files, yamlFile), "asg-requirements (YAML)"

	findings := testbed.CFNLint(t, files...)
	perFile := map[string][]string{}
	for _, f := range findings {
		perFile[f.File] = append(perFile[f.File], f.String())
		if why, ok := cfnLintAccepted[f.Rule]; ok {
			t.Logf("accepted: %s (%s)", f, why)
			continue
		}
		if f.Level != "Informational" {
			t.Errorf("%s: %s", byFile[f.File], f)
		} else {
			t.Logf("%s: %s", byFile[f.File], f)
		}
	}
	for _, f := range files {
		if len(perFile[f]) == 0 {
			t.Logf("cfn-lint %s: no finding", byFile[f])
		}
	}
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

// Bad input to a template: what only bootstrap can do is refused, naming
// the flag and what to do instead.
func TestTemplateRefusesWhatOnlyBootstrapCanDo(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(c *bootstrap.Config)
		want string
	}{
		{"an uploaded package", func(c *bootstrap.Config) {
			c.AgentURL, c.AgentFiles = "", []string{"dist/spot-agent-1.2.3-1.x86_64.rpm", "dist/spot-agent-1.2.3-1.aarch64.rpm"}
		}, "--agent-file: a template cannot upload a file: upload the packages to a bucket of yours (aws s3 cp) and give --agent-url s3://BUCKET/KEY"},
		{"an s3:// package without its digest", func(c *bootstrap.Config) {
			c.AgentURL = "s3://artifacts.example/spot-agent-1.2.3-1.{arch}.rpm"
		}, "--agent-sha256: a template makes no AWS call, so it cannot read an s3:// package to pin it"},
		{"a Spot Fleet of requirements on both architectures", func(c *bootstrap.Config) { c.Fleet = bootstrap.FleetSpotFleet },
			"--fleet: a Spot Fleet takes at most 3 InstanceRequirements and one per architecture and subnet (2 × 2 here)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := templateBase()
			tc.edit(&cfg)
			_, err := bootstrap.New(cfg, bootstrap.Clients{}, bootstrap.Options{ReadFile: func(string) ([]byte, error) { return []byte("rpm"), nil }}).Template(context.Background())
			var fe *bootstrap.FlagError
			if !errors.As(err, &fe) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%v, want a *FlagError with %q", err, tc.want)
			}
		})
	}
}

// keysOf lists a decoded JSON object's keys, sorted.
func keysOf(v any) []string {
	m, _ := v.(map[string]any)
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// deployCase is a template deployed to moto's CloudFormation, with what
// moto leaves out and bootstrap's plan of the deployed stack therefore finds
// missing or different: by resource, the plan's action and the fields it
// finds different.
type deployCase struct {
	name string
	edit func(t *testing.T, c *bootstrap.Config)
	// strip are resources moto's CloudFormation cannot take at all (with
	// what names them): AWS::EC2::SpotFleet with LaunchTemplateConfigs
	// answers HTTP 500 (KeyError 'LaunchSpecifications').
	strip []string
	// gaps are the plan's changes that only moto's gaps explain.
	gaps map[string]gap
	// skipped are the template's resource types moto's CloudFormation
	// skips without a word (the stack still completes).
	skipped []string
}

// gap is what bootstrap's plan says of a resource moto's CloudFormation
// left incomplete.
type gap struct {
	action bootstrap.Action
	fields []string
}

// motoGaps are what moto 5.2.1's CloudFormation leaves out of every stack
// of this template: a VPC's EnableDnsHostnames, a subnet's
// MapPublicIpOnLaunch and a target group's TargetGroupAttributes are
// ignored; an AWS::EC2::SubnetRouteTableAssociation is recorded apart from
// its route table, whose associations stay empty; a role's inline policy is
// stored as Python's repr of the document (checked equal to the template's
// separately); the topic's policy (AWS::SNS::TopicPolicy) is skipped.
var motoGaps = map[string]gap{
	"vpc":           {bootstrap.Update, []string{"dns-hostnames"}},
	"subnets":       {bootstrap.Update, []string{"subnet-1.map-public-ip", "subnet-2.map-public-ip"}},
	"route-table":   {bootstrap.Update, []string{"associations"}},
	"target-group":  {bootstrap.Update, []string{"deregistration_delay.timeout_seconds"}},
	"instance-role": {bootstrap.Update, []string{"policy"}},
	"topic":         {bootstrap.Update, []string{"policy"}},
	"fis-role":      {bootstrap.Update, []string{"policy"}},
	// moto's CloudFormation has no AWS::CloudWatch::Alarm, and fails on an
	// output's Fn::GetAtt of one: the alarm is removed before deploying,
	// with the experiment template that names it.
	"stop-alarm":          {bootstrap.Create, nil},
	"experiment-template": {bootstrap.Create, nil},
}

// drillStrip are the resources every case removes before deploying (see
// motoGaps).
var drillStrip = []string{"StopAlarm"}

var deployCases = []deployCase{
	{name: "cfn-asg", edit: func(t *testing.T, c *bootstrap.Config) {
		c.AppPort, c.AgentPort = 8080, bootstrap.AppAgentPort
		c.MetricsCIDR = "10.1.0.0/16"
		c.AgentEnv = map[string]string{"SPOT_AGENT_NOTIFY_SNS_TOPIC": topicARNHere, "SPOT_AGENT_TARGET_GROUP_ARN": otherGroup}
		c.UserDataFile = writeFile(t, "app.yaml", appCloudConfig)
	}, gaps: map[string]gap{
		// Dropped from AWS::AutoScaling::AutoScalingGroup: CapacityRebalance
		// and LifecycleHookSpecificationList.
		"asg":            {bootstrap.Update, []string{"capacity-rebalance"}},
		"lifecycle-hook": {bootstrap.Create, nil},
		"scaling":        {bootstrap.Create, nil},
	}, skipped: []string{"AWS::AutoScaling::ScalingPolicy", "AWS::SNS::TopicPolicy"}},
	{name: "cfn-spot-fleet", edit: func(_ *testing.T, c *bootstrap.Config) {
		c.Fleet, c.Requirements, c.InstanceTypes = bootstrap.FleetSpotFleet, nil, []string{"c6i.large", "c7g.large"}
		c.NotifyEmail = "ops@example.com"
	}, strip: []string{"SpotFleet"}, gaps: map[string]gap{
		"spot-fleet-role": {bootstrap.Update, []string{"policy"}},
		"spot-fleet":      {bootstrap.Create, nil},
		"scaling":         {bootstrap.Create, nil},
		"topic":           {bootstrap.Update, []string{"policy", "email"}},
	}, skipped: []string{"AWS::SNS::Subscription", "AWS::SNS::TopicPolicy"}},
	{name: "cfn-ec2-fleet", edit: func(_ *testing.T, c *bootstrap.Config) {
		c.Fleet, c.Min, c.Max = bootstrap.FleetEC2Fleet, 2, 2
	}, gaps: map[string]gap{
		"ec2-fleet": {bootstrap.Create, nil},
	}, skipped: []string{"AWS::EC2::EC2Fleet", "AWS::SNS::TopicPolicy"}},
}

// The template deploys to moto's CloudFormation, and bootstrap's own plan of
// the deployed stack finds every resource as bootstrap would have built it
// (unchanged), but where moto's CloudFormation leaves something out: one
// desired state, two outputs. The launch templates' AMIs come from the
// public SSM parameter the template names.
func TestTemplateDeploysToMotoAsBootstrapWouldBuildIt(t *testing.T) {
	t.Parallel()
	m := testbed.SharedMoto(t)
	for _, dc := range deployCases {
		t.Run(dc.name, func(t *testing.T) {
			cfg := templateBase()
			cfg.Name = dc.name
			dc.edit(t, &cfg)
			_, tmpl := templateOf(t, cfg, t.TempDir(), dc.name)
			stripped := stripResources(tmpl, append(slices.Clone(dc.strip), drillStrip...)...)
			file := filepath.Join(t.TempDir(), dc.name+"-stripped.json")
			if err := os.WriteFile(file, mustMarshal(t, tmpl), 0o644); err != nil {
				t.Fatal(err)
			}
			m.CLI(t, "cloudformation", "create-stack", "--stack-name", dc.name, "--template-body", "file://"+file, "--capabilities", "CAPABILITY_NAMED_IAM")
			if st := path(m.CLI(t, "cloudformation", "describe-stacks", "--stack-name", dc.name), "Stacks", "0", "StackStatus"); st != "CREATE_COMPLETE" {
				t.Fatalf("stack %s", st)
			}
			physical := checkCoverage(t, m, dc, tmpl, stripped)
			fillMotoTags(t, m, tmpl, physical)
			checkAMIs(t, m, cfg)

			st, _ := newStack(t, m.URL, cfg, withHTTP(templateOptions(t).HTTPClient)) // the packages the template pinned
			p, err := st.Plan(ctx(t))
			if err != nil {
				t.Fatalf("bootstrap's plan of the deployed stack: %v", err)
			}
			for _, c := range p.Changes {
				if c.Resource == "service-roles" {
					// The account's, not the stack's: the template lists them
					// in its metadata and creates none; an earlier test in this
					// moto may have made them.
					continue
				}
				g, known := dc.gaps[c.Resource]
				if !known {
					g, known = motoGaps[c.Resource]
				}
				var fields []string
				for _, d := range c.Diffs {
					fields = append(fields, d.Field)
					if d.Field == "policy" && strings.HasSuffix(c.Resource, "role") {
						// moto answers Python's repr of the document.
						if have := strings.ReplaceAll(d.Have, "'", `"`); !jsonEqual(t, []byte(have), []byte(d.Want)) {
							t.Errorf("%s: moto holds the policy %s, bootstrap wants %s", c.Resource, d.Have, d.Want)
						}
					}
				}
				switch {
				case c.Action == bootstrap.Unchanged || c.Action == bootstrap.Skip:
					if known {
						t.Errorf("%s is %s: moto's CloudFormation no longer leaves %v out? Drop it from the gaps", c.Resource, c.Action, g.fields)
					}
				case !known:
					t.Errorf("%s: the plan says %s %v (%s): the template does not build what bootstrap would", c.Resource, c.Action, c.Diffs, c.Note)
				case c.Action != g.action || !slices.Equal(fields, g.fields):
					t.Errorf("%s: the plan says %s %v, the known gap is %s %v", c.Resource, c.Action, c.Diffs, g.action, g.fields)
				}
			}
		})
	}
}

// stripResources removes resources from a decoded template, with every
// resource that names them and the outputs that do, and returns what it
// removed.
func stripResources(tmpl map[string]any, ids ...string) []string {
	res, _ := tmpl["Resources"].(map[string]any)
	outs, _ := tmpl["Outputs"].(map[string]any)
	removed := slices.Clone(ids)
	for i := 0; i < len(removed); i++ {
		id := removed[i]
		delete(res, id)
		for other, v := range res {
			if refersTo(v, id) && !slices.Contains(removed, other) {
				removed = append(removed, other)
			}
		}
		for o, v := range outs {
			if refersTo(v, id) {
				delete(outs, o)
			}
		}
	}
	return removed
}

// refersTo tells whether a part of a template names the resource id: Ref,
// Fn::GetAtt, DependsOn, or ${id} in Fn::Sub.
func refersTo(v any, id string) bool {
	b, _ := json.Marshal(v)
	s := string(b)
	return strings.Contains(s, `"`+id+`"`) || strings.Contains(s, "${"+id+"}") || strings.Contains(s, "${"+id+".")
}

// checkCoverage holds what moto's CloudFormation deployed of the template
// to what the case expects, logs it, and returns the deployed resources'
// physical ids by logical id.
func checkCoverage(t *testing.T, m *testbed.Moto, dc deployCase, tmpl map[string]any, stripped []string) map[string]string {
	t.Helper()
	physical := map[string]string{}
	for _, r := range path(m.CLI(t, "cloudformation", "list-stack-resources", "--stack-name", dc.name), "StackResourceSummaries").([]any) {
		if id, _ := path(r, "LogicalResourceId").(string); id != "" { // a skipped resource is listed without one
			physical[id], _ = path(r, "PhysicalResourceId").(string)
		}
	}
	var deployed, skipped []string
	for _, id := range keysOf(tmpl["Resources"]) {
		typ := path(tmpl, "Resources", id, "Type").(string)
		if _, ok := physical[id]; ok {
			deployed = append(deployed, typ)
		} else {
			skipped = append(skipped, typ)
		}
	}
	slices.Sort(deployed)
	slices.Sort(skipped)
	deployed, skipped = slices.Compact(deployed), slices.Compact(skipped)
	want := slices.Sorted(slices.Values(dc.skipped))
	if !slices.Equal(skipped, want) {
		t.Errorf("moto's CloudFormation skipped %v, the case expects %v", skipped, want)
	}
	t.Logf("moto deployed %d types: %s", len(deployed), strings.Join(deployed, " "))
	t.Logf("moto skipped: %s; removed before deploying (moto fails on them): %v", strings.Join(skipped, " "), stripped)
	return physical
}

// fillMotoTags puts the template's own Tags on the resources whose Tags
// moto's CloudFormation drops (internet gateway, route table, target group,
// load balancer, topic), so that bootstrap finds them by its tags as it
// would on AWS.
func fillMotoTags(t *testing.T, m *testbed.Moto, tmpl map[string]any, physical map[string]string) {
	t.Helper()
	c := context.Background()
	snsc := sns.NewFromConfig(m.Config())
	for _, id := range keysOf(tmpl["Resources"]) {
		raw, _ := path(tmpl, "Resources", id, "Properties", "Tags").([]any)
		var ec2Tags []ec2types.Tag
		var elbTags []elbtypes.Tag
		var snsTags []snstypes.Tag
		for _, tg := range raw {
			k, v := path(tg, "Key").(string), path(tg, "Value").(string)
			ec2Tags = append(ec2Tags, ec2types.Tag{Key: aws.String(k), Value: aws.String(v)})
			elbTags = append(elbTags, elbtypes.Tag{Key: aws.String(k), Value: aws.String(v)})
			snsTags = append(snsTags, snstypes.Tag{Key: aws.String(k), Value: aws.String(v)})
		}
		var err error
		switch path(tmpl, "Resources", id, "Type") {
		case "AWS::EC2::InternetGateway", "AWS::EC2::RouteTable":
			_, err = m.EC2().CreateTags(c, &ec2.CreateTagsInput{Resources: []string{physical[id]}, Tags: ec2Tags})
		case "AWS::ElasticLoadBalancingV2::TargetGroup", "AWS::ElasticLoadBalancingV2::LoadBalancer":
			_, err = m.ELB().AddTags(c, &elbv2.AddTagsInput{ResourceArns: []string{physical[id]}, Tags: elbTags})
		case "AWS::SNS::Topic":
			_, err = snsc.TagResource(c, &sns.TagResourceInput{ResourceArn: aws.String(physical[id]), Tags: snsTags})
		}
		if err != nil {
			t.Fatalf("tag %s %s: %v", id, physical[id], err)
		}
	}
}

// checkAMIs: each launch template boots the AMI of the public SSM
// parameter its template parameter names, as moto resolved it.
func checkAMIs(t *testing.T, m *testbed.Moto, cfg bootstrap.Config) {
	t.Helper()
	c := context.Background()
	ssmc := ssm.NewFromConfig(m.Config())
	for _, a := range bootstrap.PlannedArches(&cfg) {
		want, err := ssmc.GetParameter(c, &ssm.GetParameterInput{Name: aws.String("/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-" + a)})
		if err != nil {
			t.Fatal(err)
		}
		out, err := m.EC2().DescribeLaunchTemplateVersions(c, &ec2.DescribeLaunchTemplateVersionsInput{
			LaunchTemplateName: aws.String("spot-agent-" + cfg.Name + "-" + a), Versions: []string{"$Default"}})
		if err != nil || len(out.LaunchTemplateVersions) != 1 {
			t.Fatalf("the %s launch template: %v", a, err)
		}
		if got := aws.ToString(out.LaunchTemplateVersions[0].LaunchTemplateData.ImageId); got != aws.ToString(want.Parameter.Value) {
			t.Errorf("the %s launch template boots %s, the SSM parameter says %s", a, got, aws.ToString(want.Parameter.Value))
		}
	}
}
