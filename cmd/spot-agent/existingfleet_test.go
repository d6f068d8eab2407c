//go:build !agentonly

package main_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"gopkg.in/yaml.v3"

	"github.com/spot-agent/spot-agent/internal/testbed"
)

// docBlock is the fenced block that follows "<!-- test: NAME -->" in a page
// of docs/: the test runs what the page shows, so the two never differ.
func docBlock(t *testing.T, page, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("../../docs", page))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)<!-- test: " + regexp.QuoteMeta(name) + " -->\n```[a-z]*\n(.*?)```").FindSubmatch(b)
	if m == nil {
		t.Fatalf("docs/%s has no block marked %q", page, name)
	}
	return string(m[1])
}

// policyOf runs `spot-agent policy` and returns its document, decoded.
func policyOf(t *testing.T, args ...string) any {
	t.Helper()
	code, stdout, stderr := runCLI(t, nil, "", append([]string{"policy"}, args...)...)
	var doc any
	if code != 0 || json.Unmarshal([]byte(stdout), &doc) != nil {
		t.Fatalf("spot-agent policy %v: exit %d\n%s", args, code, stderr)
	}
	return doc
}

// The existing-fleet page's CloudFormation snippet passes cfn-lint with no
// finding, and its role's policy is what `spot-agent policy` prints for the
// same target group and Auto Scaling group.
func TestExistingFleetCloudFormationSnippet(t *testing.T) {
	t.Parallel()
	snippet := docBlock(t, "existing-fleet.md", "existing-fleet-cloudformation")
	file := filepath.Join(t.TempDir(), "existing-fleet.yaml")
	if err := os.WriteFile(file, []byte(snippet), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, f := range testbed.CFNLint(t, file) {
		t.Errorf("cfn-lint: %s", f)
	}
	var root yaml.Node
	if err := yaml.Unmarshal([]byte(snippet), &root); err != nil {
		t.Fatal(err)
	}
	values := map[string]string{"TargetGroupArn": sampleGroup, "GroupName": "web", "AWS::Partition": "aws", "AWS::Region": "us-east-1", "AWS::AccountId": "123456789012"}
	doc := resolveYAML(t, find(t, root.Content[0], "Resources", "InstanceRole", "Properties", "Policies", "0", "PolicyDocument"), values)
	if want := policyOf(t, "--target-group-arn", sampleGroup, "--asg-name", "web"); !sameDoc(doc, want) {
		t.Errorf("the snippet's policy\n%s\nis not spot-agent policy's\n%s", mustJSON(doc), mustJSON(want))
	}
}

// find walks a YAML node by mapping keys and sequence indexes.
func find(t *testing.T, n *yaml.Node, path ...string) *yaml.Node {
	t.Helper()
	for _, p := range path {
		switch n.Kind {
		case yaml.MappingNode:
			var next *yaml.Node
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == p {
					next = n.Content[i+1]
				}
			}
			n = next
		case yaml.SequenceNode:
			i := 0
			for _, c := range p {
				i = i*10 + int(c-'0')
			}
			n = n.Content[i]
		}
		if n == nil {
			t.Fatalf("no %s in the snippet", strings.Join(path, "/"))
		}
	}
	return n
}

// resolveYAML decodes a CloudFormation YAML node with !Ref and !Sub of the
// given parameters' values.
func resolveYAML(t *testing.T, n *yaml.Node, values map[string]string) any {
	t.Helper()
	sub := regexp.MustCompile(`\$\{([A-Za-z0-9:]+)\}`)
	switch {
	case n.Tag == "!Ref":
		return values[n.Value]
	case n.Tag == "!Sub":
		return sub.ReplaceAllStringFunc(n.Value, func(m string) string { return values[m[2:len(m)-1]] })
	case n.Kind == yaml.MappingNode:
		out := map[string]any{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			out[n.Content[i].Value] = resolveYAML(t, n.Content[i+1], values)
		}
		return out
	case n.Kind == yaml.SequenceNode:
		var out []any
		for _, c := range n.Content {
			out = append(out, resolveYAML(t, c, values))
		}
		return out
	}
	var v any
	if err := n.Decode(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// sameDoc compares two decoded JSON documents.
func sameDoc(a, b any) bool { return string(mustJSON(a)) == string(mustJSON(b)) }

// The existing-fleet page's AWS CLI commands, run as shown against moto on
// an Auto Scaling group made there, tag the group (propagated at launch),
// add the termination hook, make a default launch template version with
// instance tags in IMDSv2-only metadata, and put spot-agent policy's policy
// on the role.
func TestExistingFleetCLICommands(t *testing.T) {
	t.Parallel()
	awsCLI, err := testbed.AWSCLIPath()
	testbed.Need(t, "the AWS CLI (apt-get install awscli)", err)
	m := testbed.SharedMoto(t)
	ctx := context.Background()
	asgName, role := "existing-web", "existing-web-instance"
	lt, err := m.EC2().CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{LaunchTemplateName: aws.String(asgName),
		LaunchTemplateData: &ec2types.RequestLaunchTemplateData{ImageId: aws.String("ami-12c6146b"), InstanceType: ec2types.InstanceTypeC5Large}})
	if err != nil {
		t.Fatal(err)
	}
	ltID := aws.ToString(lt.LaunchTemplate.LaunchTemplateId)
	vpc := m.VPC(t)
	sn, err := m.EC2().CreateSubnet(ctx, &ec2.CreateSubnetInput{VpcId: aws.String(vpc), CidrBlock: aws.String("10.0.77.0/24"), AvailabilityZone: aws.String("us-east-1a")})
	if err != nil {
		t.Fatal(err)
	}
	tg, err := m.ELB().CreateTargetGroup(ctx, &elbv2.CreateTargetGroupInput{Name: aws.String(asgName), Protocol: elbtypes.ProtocolEnumHttp, Port: aws.Int32(80), VpcId: aws.String(vpc)})
	if err != nil {
		t.Fatal(err)
	}
	tgARN := aws.ToString(tg.TargetGroups[0].TargetGroupArn)
	as := autoscaling.NewFromConfig(m.Config())
	if _, err := as.CreateAutoScalingGroup(ctx, &autoscaling.CreateAutoScalingGroupInput{AutoScalingGroupName: aws.String(asgName),
		LaunchTemplate: &astypes.LaunchTemplateSpecification{LaunchTemplateId: aws.String(ltID), Version: aws.String("$Latest")}, MinSize: aws.Int32(0), MaxSize: aws.Int32(2),
		VPCZoneIdentifier: sn.Subnet.SubnetId, TargetGroupARNs: []string{tgARN}}); err != nil {
		t.Fatal(err)
	}
	iamc := iam.NewFromConfig(m.Config())
	if _, err := iamc.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String(role), AssumeRolePolicyDocument: aws.String(
		`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}`)}); err != nil {
		t.Fatal(err)
	}

	// The page's commands, as a user runs them: aws is the CLI at moto
	// (Debian's ignores AWS_ENDPOINT_URL), spot-agent this binary.
	bin := t.TempDir()
	if err := os.Symlink(binary, filepath.Join(bin, "spot-agent")); err != nil {
		t.Fatal(err)
	}
	// First the user-data of "Installing the agent", with the page's
	// application: a release's packages and their digests.
	work := t.TempDir()
	if err := os.WriteFile(filepath.Join(work, "app.yaml"), []byte(docBlock(t, "existing-fleet.md", "existing-fleet-app")), 0o644); err != nil {
		t.Fatal(err)
	}
	const amd, arm = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
	script := "set -euo pipefail\naws() { " + awsCLI + " --endpoint-url \"$MOTO\" --region us-east-1 \"$@\"; }\n" +
		docBlock(t, "existing-fleet.md", "existing-fleet-user-data") + docBlock(t, "existing-fleet.md", "existing-fleet-cli")
	cmd := exec.Command("bash", "-c", script)
	cmd.Dir = work
	cmd.Env = []string{"PATH=" + bin + ":" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "MOTO=" + m.URL,
		"AWS_ACCESS_KEY_ID=testing", "AWS_SECRET_ACCESS_KEY=testing", "AWS_PAGER=", "AWS_EC2_METADATA_DISABLED=true",
		"ASG=" + asgName, "TG_ARN=" + tgARN, "LT_ID=" + ltID, "ROLE=" + role, "VERSION=1.2.3", "AMD64_SHA256=" + amd, "ARM64_SHA256=" + arm}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the page's commands: %v\n%s", err, out)
	}
	userData, err := os.ReadFile(filepath.Join(work, "user-data"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Content-Type: multipart/mixed", "hello from the application", `SPOT_AGENT_LISTEN=":8081"`, `SPOT_AGENT_HELLO="false"`,
		`SPOT_AGENT_APP_HEALTH_URL="http://127.0.0.1/"`, "releases/download/v1.2.3/spot-agent_1.2.3_amd64.deb' pkg_sha256=" + amd, "spot-agent_1.2.3_arm64.deb' pkg_sha256=" + arm} {
		if !strings.Contains(string(userData), want) {
			t.Errorf("the page's user-data lacks %q:\n%s", want, userData)
		}
	}

	tags, err := as.DescribeTags(ctx, &autoscaling.DescribeTagsInput{Filters: []astypes.Filter{{Name: aws.String("auto-scaling-group"), Values: []string{asgName}}}})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"loadBalancerTargetGroup": tgARN, "spot-agent:lifecycle-hook": "spot-agent-drain"}
	for _, tag := range tags.Tags {
		if v, ok := want[aws.ToString(tag.Key)]; ok && v == aws.ToString(tag.Value) && aws.ToBool(tag.PropagateAtLaunch) {
			delete(want, aws.ToString(tag.Key))
		}
	}
	if len(want) > 0 {
		t.Errorf("the group lacks the tags %v propagated at launch", want)
	}
	hooks, err := as.DescribeLifecycleHooks(ctx, &autoscaling.DescribeLifecycleHooksInput{AutoScalingGroupName: aws.String(asgName)})
	if err != nil || len(hooks.LifecycleHooks) != 1 {
		t.Fatalf("hooks: %v %v", hooks, err)
	}
	if h := hooks.LifecycleHooks[0]; aws.ToString(h.LifecycleHookName) != "spot-agent-drain" || aws.ToString(h.LifecycleTransition) != "autoscaling:EC2_INSTANCE_TERMINATING" ||
		aws.ToInt32(h.HeartbeatTimeout) != 150 || aws.ToString(h.DefaultResult) != "CONTINUE" {
		t.Errorf("the hook %+v", h)
	}
	// moto 5.2.1 does not copy the source version's data into the new
	// version (AWS does): only MetadataOptions is checked.
	v, err := m.EC2().DescribeLaunchTemplateVersions(ctx, &ec2.DescribeLaunchTemplateVersionsInput{LaunchTemplateId: aws.String(ltID), Versions: []string{"$Default"}})
	if err != nil || len(v.LaunchTemplateVersions) != 1 {
		t.Fatalf("launch template: %v", err)
	}
	mo := v.LaunchTemplateVersions[0].LaunchTemplateData.MetadataOptions
	if aws.ToInt64(v.LaunchTemplateVersions[0].VersionNumber) != 2 || mo == nil || mo.HttpTokens != ec2types.LaunchTemplateHttpTokensStateRequired ||
		mo.InstanceMetadataTags != ec2types.LaunchTemplateInstanceMetadataTagsStateEnabled {
		t.Errorf("the default version %d has metadata options %+v", aws.ToInt64(v.LaunchTemplateVersions[0].VersionNumber), mo)
	}
	if ud, err := base64.StdEncoding.DecodeString(aws.ToString(v.LaunchTemplateVersions[0].LaunchTemplateData.UserData)); err != nil || !bytes.Equal(ud, userData) {
		t.Errorf("the default version's user-data is not the page's user-data file: %v\n%s", err, ud)
	}
	g, err := m.ELB().DescribeTargetGroups(ctx, &elbv2.DescribeTargetGroupsInput{TargetGroupArns: []string{tgARN}})
	if err != nil || len(g.TargetGroups) != 1 || aws.ToString(g.TargetGroups[0].HealthCheckPort) != "8081" || aws.ToString(g.TargetGroups[0].HealthCheckPath) != "/healthz" {
		t.Errorf("the target group's health check: %v %+v", err, g)
	}
	p, err := iamc.GetRolePolicy(ctx, &iam.GetRolePolicyInput{RoleName: aws.String(role), PolicyName: aws.String("spot-agent")})
	if err != nil {
		t.Fatal(err)
	}
	doc, _ := url.QueryUnescape(aws.ToString(p.PolicyDocument))
	var got any
	if err := json.Unmarshal([]byte(doc), &got); err != nil {
		t.Fatalf("the role's policy %s: %v", doc, err)
	}
	if want := policyOf(t, "--target-group-arn", tgARN, "--asg-name", asgName); !sameDoc(got, want) {
		t.Errorf("the role's policy\n%s\nis not spot-agent policy's\n%s", mustJSON(got), mustJSON(want))
	}
}

// The README's quick start for a fleet of your own is docs/existing-fleet.md's
// commands, which TestExistingFleetCLICommands runs at moto: each of its
// lines is one of theirs.
func TestReadmeQuickStartIsTheExistingFleetPagesCommands(t *testing.T) {
	blocks := regexp.MustCompile("(?s)<!-- test: quickstart-existing-fleet -->\n\\s*```sh\n(.*?)```").FindAllStringSubmatch(readme(t), -1)
	if len(blocks) < 3 {
		t.Fatalf("README's quick start has %d blocks marked quickstart-existing-fleet, want the user-data, the policy, the tag and hook", len(blocks))
	}
	tested := map[string]bool{}
	for _, name := range []string{"existing-fleet-user-data", "existing-fleet-cli"} {
		for _, l := range strings.Split(docBlock(t, "existing-fleet.md", name), "\n") {
			tested[strings.TrimSpace(l)] = true
		}
	}
	for _, b := range blocks {
		for _, l := range strings.Split(b[1], "\n") {
			if l = strings.TrimSpace(l); l != "" && !tested[l] {
				t.Errorf("README's quick start line %q is not among docs/existing-fleet.md's tested commands", l)
			}
		}
	}
}
