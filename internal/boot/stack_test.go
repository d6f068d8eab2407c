//go:build boot

package boot

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"gopkg.in/yaml.v3"

	"github.com/spot-agent/spot-agent/internal/testbed"
)

// stackName is the bootstrap stack the instance belongs to.
const stackName = "boot"

// The application recipe (docs/recipes/application.md): its cloud-config
// and the drain hook it gives the agent.
const (
	recipeCloudConfig = "../../docs/recipes/koel/cloud-config.yaml"
	recipeDoc         = "../../docs/recipes/application.md"
	recipeHook        = "systemctl start --no-block koel-drain.service"
	recipeRule        = "/etc/polkit-1/rules.d/50-spot-agent-koel-drain.rules"
	recipeUnit        = "/etc/systemd/system/koel-drain.service"
)

// stack is what bootstrap built at moto, as the instance sees it.
type stack struct {
	userData   []byte // the launch template's, decoded
	instanceID string // the ASG instance this container plays
	asg        string
	tg         string // the target group ARN
}

// bootstrapStack runs `spot-agent bootstrap` (the full build) in the peers'
// namespace against moto, with the test's own --user-data-file part, and
// reads back what it put into the launch template and which instances the
// group launched. Without --agent-sha256, bootstrap reads the package at
// agentURL once and pins it: it trusts the package server's CA (caPEM) as
// Go's crypto/x509 reads SSL_CERT_FILE.
func bootstrapStack(t testing.TB, ns *netns, agentURL string, caPEM, userPart []byte) stack {
	t.Helper()
	bin, err := testbed.BuildAgent()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	part, ca := filepath.Join(dir, "user-data-part.yaml"), filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(part, userPart, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ca, caPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{bin, "bootstrap", "--name", stackName, "--region", region, "--fleet", "asg",
		"--distribution", "debian", "--ami", "ami-12c6146b", "--agent-url", agentURL, "--user-data-file", part,
		// A short drain on systemctl stop: the scenarios stop and restart.
		"--deregistration-delay", "5",
		"--agent-env", "SPOT_AGENT_ON_DRAIN_EXEC=" + recipeHook,
		"--poll-interval", "100ms", "-o", "json"}
	argv := ns.command(args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(append(append([]string{}, cleanEnv...), motoEnv()...), "HOME="+dir, "SSL_CERT_FILE="+ca)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	if err != nil {
		t.Fatalf("bootstrap against moto: %v\n%s\n%s", err, stdout, stderr.String())
	}
	t.Logf("bootstrap --name %s (its progress):\n%s", stackName, stderr.String())
	var res struct {
		Outputs struct {
			TG    string `json:"target_group_arn"`
			Fleet string `json:"fleet_id"`
			LT    string `json:"launch_template_id"`
		} `json:"outputs"`
	}
	if err := json.Unmarshal(stdout, &res); err != nil {
		t.Fatalf("bootstrap -o json: %v\n%s", err, stdout)
	}
	st := stack{asg: res.Outputs.Fleet, tg: res.Outputs.TG}
	lt := res.Outputs.LT
	if lt == "" || st.asg == "" || st.tg == "" {
		t.Fatalf("bootstrap -o json names no launch template, group or target group in its outputs:\n%s", stdout)
	}

	ctx := context.Background()
	moto := motoIn(ns)
	ec := moto.EC2()
	v, err := ec.DescribeLaunchTemplateVersions(ctx, &ec2.DescribeLaunchTemplateVersionsInput{LaunchTemplateId: aws.String(lt), Versions: []string{"$Default"}})
	if err != nil || len(v.LaunchTemplateVersions) != 1 || v.LaunchTemplateVersions[0].LaunchTemplateData.UserData == nil {
		t.Fatalf("the launch template's default version: %v, %+v", err, v)
	}
	st.userData, err = base64.StdEncoding.DecodeString(*v.LaunchTemplateVersions[0].LaunchTemplateData.UserData)
	if err != nil {
		t.Fatalf("the launch template's user-data is not base64: %v", err)
	}
	// Both parts: the test's own and the agent's, which installs the package.
	for _, want := range [][]byte{[]byte("Content-Type: multipart/mixed"), []byte(userPartMarker), []byte(agentURL)} {
		if !bytes.Contains(st.userData, want) {
			t.Fatalf("the launch template's user-data lacks %q:\n%s", want, st.userData)
		}
	}

	g, err := autoscaling.NewFromConfig(moto.Config()).DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{st.asg}})
	if err != nil || len(g.AutoScalingGroups) != 1 || len(g.AutoScalingGroups[0].Instances) == 0 {
		t.Fatalf("the group %s and its instances: %v, %+v", st.asg, err, g)
	}
	st.instanceID = aws.ToString(g.AutoScalingGroups[0].Instances[0].InstanceId)

	// The agent finds its target groups in its instance's tags (from the
	// launch template's tag specifications), and an ASG instance carries its
	// group's name. moto 5.2.1 gives an ASG's instances both; a moto that does
	// not gets what is missing from the test, with CreateTags, and the log
	// says so.
	want := map[string]string{"loadBalancerTargetGroup": st.tg, "aws:autoscaling:groupName": st.asg}
	tags, err := ec.DescribeTags(ctx, &ec2.DescribeTagsInput{Filters: []ec2types.Filter{{Name: aws.String("resource-id"), Values: []string{st.instanceID}}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tag := range tags.Tags {
		if want[aws.ToString(tag.Key)] == aws.ToString(tag.Value) {
			delete(want, aws.ToString(tag.Key))
		}
	}
	if len(want) == 0 {
		t.Logf("moto tagged %s with loadBalancerTargetGroup and aws:autoscaling:groupName itself", st.instanceID)
	}
	for k, v := range want {
		t.Logf("moto did not tag %s with %s=%s (a real ASG does, from the launch template and the group): adding it with CreateTags", st.instanceID, k, v)
		if _, err := ec.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{st.instanceID}, Tags: []ec2types.Tag{{Key: aws.String(k), Value: aws.String(v)}}}); err != nil {
			t.Fatal(err)
		}
	}
	return st
}

// userPartMarker is in the test's own part of the user-data.
const userPartMarker = "The boot test's own part (internal/boot)"

// userDataPart is the test's own --user-data-file: what a real instance has
// and this one lacks (testBedCloudConfig), and the application recipe's
// drain unit and polkit rule, taken from the recipe's cloud-config as they
// are.
func userDataPart(t testing.TB, caPEM []byte) []byte {
	t.Helper()
	recipe := recipeFiles(t)
	doc := testBedCloudConfig(caPEM)
	doc["write_files"] = append(doc["write_files"].([]any),
		map[string]any{"path": recipeUnit, "content": recipe[recipeUnit]},
		map[string]any{"path": recipeRule, "content": recipe[recipeRule]})
	b, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return append([]byte("#cloud-config\n# "+userPartMarker+", given to bootstrap --user-data-file.\n"), b...)
}

// testBedCloudConfig is what every instance of the test bed needs in its
// user-data and a real one has without: a locale the image has, the package
// server's CA, and the AWS endpoint (moto) and credentials of the agent.
func testBedCloudConfig(caPEM []byte) map[string]any {
	return map[string]any{
		// en_US.UTF-8, cloud-init's default, is not generated in the image.
		"locale": "C.UTF-8",
		// The package server's CA, trusted the way a user's own would be.
		"ca_certs": map[string]any{"trusted": []string{string(caPEM)}},
		"write_files": []any{
			map[string]any{
				// On EC2 the SDK finds the endpoints and the instance role's
				// credentials itself; here moto stands in for AWS.
				"path": "/etc/systemd/system/spot-agent.service.d/boot-test.conf",
				"content": "# The boot test's AWS: moto, in the peers' namespace (internal/boot).\n[Service]\n" +
					"Environment=AWS_ENDPOINT_URL=" + motoURL + "\n" +
					"Environment=AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=" + region + "\n",
			},
		},
	}
}

// recipeFiles returns the drain unit and the polkit rule that the
// application recipe's cloud-config writes, by path.
func recipeFiles(t testing.TB) map[string]string {
	t.Helper()
	b, err := os.ReadFile(recipeCloudConfig)
	if err != nil {
		t.Fatal(err)
	}
	var cc struct {
		WriteFiles []struct {
			Path    string `yaml:"path"`
			Content string `yaml:"content"`
		} `yaml:"write_files"`
	}
	if err := yaml.Unmarshal(b, &cc); err != nil {
		t.Fatalf("%s: %v", recipeCloudConfig, err)
	}
	out := map[string]string{}
	for _, f := range cc.WriteFiles {
		if f.Path == recipeUnit || f.Path == recipeRule {
			out[f.Path] = f.Content
		}
	}
	if len(out) != 2 {
		t.Fatalf("%s writes no %s or no %s", recipeCloudConfig, recipeUnit, recipeRule)
	}
	doc, err := os.ReadFile(recipeDoc)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), "SPOT_AGENT_ON_DRAIN_EXEC='"+recipeHook+"'") {
		t.Fatalf("%s does not give the agent the hook this test runs, SPOT_AGENT_ON_DRAIN_EXEC='%s'", recipeDoc, recipeHook)
	}
	return out
}

// seed is the first instance's NoCloud seed (nocloud) with the recipe's
// application, nginx, off the agent's port 80.
func seed(t testing.TB, st stack) map[string]string {
	t.Helper()
	binds := nocloud(t, st.userData, st.instanceID)
	site := filepath.Join(t.TempDir(), "nginx-site")
	if err := os.WriteFile(site, []byte("server {\n\tlisten 127.0.0.1:8080 default_server;\n\troot /var/www/html;\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	binds[site] = "/etc/nginx/sites-available/default"
	return binds
}

// nocloud writes the NoCloud seed (the user-data and meta-data cloud-init
// reads instead of EC2's) and cloud-init's datasource settings; it returns
// the bind mounts that put them into the container.
func nocloud(t testing.TB, userData []byte, instanceID string) map[string]string {
	t.Helper()
	dir := t.TempDir()
	seedDir := filepath.Join(dir, "nocloud")
	if err := os.Mkdir(seedDir, 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		filepath.Join(seedDir, "user-data"): string(userData),
		filepath.Join(seedDir, "meta-data"): fmt.Sprintf("instance-id: %s\n", instanceID),
		// AEMM serves only /latest/, which the Ec2 datasource cannot use, and
		// the veth is configured from outside (TESTBED.md).
		filepath.Join(dir, "datasource.cfg"): "datasource_list: [NoCloud, None]\nnetwork: {config: disabled}\n",
	}
	for p, c := range files {
		if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return map[string]string{
		seedDir:                              "/var/lib/cloud/seed/nocloud",
		filepath.Join(dir, "datasource.cfg"): "/etc/cloud/cloud.cfg.d/99-spot-agent-boot.cfg",
	}
}
