//go:build !agentonly

package main_test

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/spot-agent/spot-agent/internal/testbed"
)

const testAgentURL = "https://example.com/spot-agent_1.0.0_x86_64.rpm"

// testAgentSHA256 pins testAgentURL, which is never downloaded.
const testAgentSHA256 = "f6a20be45dea7c9f898c32048eab773fcf5df89a7273eda35cb695c09abaa619"

// The commands against moto behind testbed.EC2Fake, which answers the
// previews of attribute-based selection (the default) that moto lacks.
func TestBootstrapStatusTeardownCommandsAgainstMoto(t *testing.T) {
	t.Parallel()
	env := testbed.NewEC2Fake(t, testbed.SharedMoto(t)).Env()
	name := "cli-e2e"

	code, stdout, stderr := runCLI(t, env, "", "bootstrap", "--name", name, "--agent-url", testAgentURL, "--agent-sha256", testAgentSHA256, "--poll-interval", "10ms", "-o", "json")
	if code != 0 {
		t.Fatalf("bootstrap: exit %d\n%s\n%s", code, stdout, stderr)
	}
	var res struct {
		Outputs struct {
			URL            string `json:"alb_url"`
			TargetGroupARN string `json:"target_group_arn"`
			FleetType      string `json:"fleet_type"`
			FleetID        string `json:"fleet_id"`
			Role           string `json:"instance_role_arn"`
		} `json:"outputs"`
		Calls struct {
			Mutating int `json:"mutating"`
		} `json:"calls"`
	}
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("bootstrap -o json: %v\n%s", err, stdout)
	}
	if !strings.HasPrefix(res.Outputs.URL, "http://"+name+"-alb") || res.Outputs.FleetType != "asg" || res.Outputs.FleetID != "spot-agent-"+name ||
		!strings.Contains(res.Outputs.TargetGroupARN, ":targetgroup/"+name+"-tg/") || !strings.HasSuffix(res.Outputs.Role, "role/spot-agent-"+name+"-instance") || res.Calls.Mutating == 0 {
		t.Errorf("outputs: %+v", res)
	}
	for _, step := range []string{"vpc", "load-balancer", "launch-template", "asg", "rule"} {
		if !strings.Contains(stderr, "s] "+step) {
			t.Errorf("no progress line for %s:\n%s", step, stderr)
		}
	}

	code, stdout, stderr = runCLI(t, env, "", "bootstrap", "--name", name, "--agent-url", testAgentURL, "--agent-sha256", testAgentSHA256, "--poll-interval", "10ms")
	if code != 0 || !strings.Contains(stdout, "is up to date: no change made") || !strings.Contains(stdout, " 0 mutating") || !strings.Contains(stdout, "url:") {
		t.Errorf("re-run: exit %d\n%s\n%s", code, stdout, stderr)
	}

	code, stdout, stderr = runCLI(t, env, "", "status", "--name", name, "-o", "json")
	var st struct {
		URL   string `json:"alb_url"`
		Fleet struct {
			Desired   int     `json:"desired"`
			Fulfilled float64 `json:"fulfilled"`
		} `json:"fleet"`
		Instances []struct{ ID, Zone string }  `json:"instances"`
		Targets   []struct{ ID, State string } `json:"targets"`
	}
	if err := json.Unmarshal([]byte(stdout), &st); code != 0 || err != nil || st.URL != res.Outputs.URL || st.Fleet.Desired != 2 || len(st.Instances) != 2 || len(st.Targets) != 2 {
		t.Errorf("status: exit %d, %v, %+v\n%s", code, err, st, stderr)
	}
	code, stdout, _ = runCLI(t, env, "", "status", "--name", name)
	if code != 0 || !strings.Contains(stdout, "TARGET") || !strings.Contains(stdout, "healthy") {
		t.Errorf("status text: exit %d\n%s", code, stdout)
	}

	// No terminal and no answer: --yes is named, nothing is deleted.
	code, stdout, stderr = runCLI(t, env, "", "teardown", "--name", name, "--poll-interval", "10ms")
	if code != 2 || !strings.Contains(stderr, "spot-agent teardown: no answer: standard input is not a terminal, or closed: give --yes to delete without asking (nothing was deleted)\n") {
		t.Errorf("teardown without a terminal: exit %d\n%s\n%s", code, stdout, stderr)
	}
	// Declined: nothing is deleted.
	code, stdout, stderr = runCLI(t, env, "no\n", "teardown", "--name", name, "--poll-interval", "10ms")
	if code != 1 || !strings.Contains(stderr, "Type yes to confirm") || !strings.Contains(stderr, "not confirmed: nothing was deleted") {
		t.Errorf("teardown answered no: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if _, stdout, _ := runCLI(t, env, "", "status", "--name", name, "-o", "json"); !strings.Contains(stdout, res.Outputs.TargetGroupARN) {
		t.Errorf("the stack changed after a declined teardown:\n%s", stdout)
	}
	code, stdout, stderr = runCLI(t, env, "", "teardown", "--name", name, "--yes", "--poll-interval", "10ms")
	if code != 0 || !strings.Contains(stdout, "stack "+name+" deleted") {
		t.Errorf("teardown --yes: exit %d\n%s\n%s", code, stdout, stderr)
	}
	code, stdout, _ = runCLI(t, env, "", "teardown", "--name", name, "--yes")
	if code != 0 || !strings.Contains(stdout, "nothing to delete") {
		t.Errorf("second teardown: exit %d\n%s", code, stdout)
	}
	code, stdout, stderr = runCLI(t, env, "", "status", "--name", name)
	if code != 1 || stdout != "" || !strings.Contains(stderr, "spot-agent status: no stack "+name+" in us-east-1: no resource carries the tag spot-agent:stack="+name+" (another --region?") {
		t.Errorf("status after teardown: exit %d\n%s\n%s", code, stdout, stderr)
	}
	code, stdout, _ = runCLI(t, env, "", "status", "--name", name, "-o", "json")
	if code != 1 || !strings.Contains(stdout, `"stack": "`+name+`"`) {
		t.Errorf("status -o json after teardown: exit %d\n%s", code, stdout)
	}
}

// connCounter is an AWS endpoint that must never be reached.
func connCounter(t *testing.T) (string, *atomic.Int64) { return testbed.Unreachable(t) }

func TestBootstrapStatusTeardownBadFlagsExitTwoNamingTheFlagBeforeAnyAPICall(t *testing.T) {
	t.Parallel()
	endpoint, conns := connCounter(t)
	base := []string{"AWS_ENDPOINT_URL=" + endpoint, "AWS_ACCESS_KEY_ID=testing", "AWS_SECRET_ACCESS_KEY=testing"}
	withRegion := append(append([]string{}, base...), "AWS_REGION=us-east-1")
	unpinned := []string{"bootstrap", "--name", "flags", "--agent-url", testAgentURL}
	ok := slices.Clip(append(slices.Clone(unpinned), "--agent-sha256", testAgentSHA256))
	dir := t.TempDir()
	userData := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	notCloudConfig := userData("plain.yaml", "packages: [nginx]\n")
	badYAML := userData("bad.yaml", "#cloud-config\npackages: [nginx\n")
	tooBig := userData("big.sh", "#!/bin/sh\n"+strings.Repeat("echo 0123456789abcdef0123456789abcdef0123456789abcdef0123456789\n", 250))
	for _, tc := range []struct {
		name string
		env  []string
		args []string
		flag string
	}{
		{"min above max", withRegion, append(ok, "--min", "5", "--max", "3"), "--min: 5 is above --max 3"},
		{"delay out of range", withRegion, append(ok, "--deregistration-delay", "4000"), "--deregistration-delay: 4000 is out of range 0..3600"},
		{"negative delay", withRegion, append(ok, "--deregistration-delay", "-1"), "--deregistration-delay"},
		{"not an instance type", withRegion, append(ok, "--instance-types", "c5.large,c5large"), `--instance-types: "c5large" is not an instance type`},
		{"no region", base, ok, "--region: no region"},
		{"bad region", withRegion, append(ok, "--region", "mars"), `--region: "mars" is not a region`},
		{"bad CIDR", withRegion, append(ok, "--ingress-cidr", "10.0.0.0/33"), "--ingress-cidr"},
		{"bad VPC CIDR", withRegion, append(ok, "--vpc-cidr", "10.0.0.1/16"), "--vpc-cidr"},
		{"bad name", withRegion, []string{"bootstrap", "--name", "Bad_Name", "--agent-url", testAgentURL, "--agent-sha256", testAgentSHA256}, "--name"},
		{"long name", withRegion, []string{"bootstrap", "--name", "a-name-of-21-letters-", "--agent-url", testAgentURL, "--agent-sha256", testAgentSHA256}, "--name"},
		{"no name", withRegion, []string{"bootstrap", "--agent-url", testAgentURL, "--agent-sha256", testAgentSHA256}, "--name: is required"},
		{"a name AWS refuses for the load balancer", withRegion, []string{"bootstrap", "--name", "internal", "--agent-url", testAgentURL, "--agent-sha256", testAgentSHA256},
			`--name: "internal" would name the load balancer "internal-alb", which must not begin with "internal-"`},
		{"a name AWS refuses for the security groups", withRegion, []string{"bootstrap", "--name", "sg-web", "--agent-url", testAgentURL, "--agent-sha256", testAgentSHA256},
			`--name: "sg-web" would name the security group "sg-web-alb", which must not begin with "sg-"`},
		{"bad fleet", withRegion, append(ok, "--fleet", "lambda"), "--fleet"},
		{"bad health check type", withRegion, append(ok, "--health-check-type", "lb"), `--health-check-type: "lb" is not ec2 or elb`},
		{"health check grace not in seconds", withRegion, append(ok, "--health-check-grace", "1500ms"), "--health-check-grace: 1.5s: give whole seconds"},
		{"health check grace for a spot fleet", withRegion, append(ok, "--fleet", "spot-fleet", "--health-check-grace", "10m"), "--health-check-grace: only with --fleet asg"},
		{"no agent", withRegion, []string{"bootstrap", "--name", "flags"}, "--agent-url"},
		{"deb on al2023", withRegion, []string{"bootstrap", "--name", "flags", "--agent-url", "https://example.com/a.deb"}, "--agent-url"},
		{"subnets without vpc", withRegion, append(ok, "--subnets", "subnet-0123456789abcdef0"), "--subnets"},
		{"bad value from the environment", append(withRegion, "SPOT_AGENT_MIN=x"), ok, "SPOT_AGENT_MIN (--min)"},
		{"app on the agent's port", withRegion, append(ok, "--app-port", "8080", "--agent-port", "8080"), "--agent-port: 8080 is also --app-port: the agent needs a port of its own beside the application; leave --agent-port out (8081 with --app-port) or pick another"},
		{"app on the metrics port", withRegion, append(ok, "--app-port", "10190"), "--admin-port: 10190 is also --app-port"},
		{"relative health path", withRegion, append(ok, "--app-port", "8080", "--app-health-path", "health"), `--app-health-path: "health" must start with /`},
		{"health path without app", withRegion, append(ok, "--app-health-path", "/health"), "--app-health-path: only with --app-port"},
		{"agent-env no run flag", withRegion, append(ok, "--agent-env", "SPOT_AGENT_ON_DRAIN_EXC=x"), "--agent-env: SPOT_AGENT_ON_DRAIN_EXC is not a setting of 'spot-agent run'"},
		{"agent-env bootstrap's own", withRegion, append(ok, "--agent-env", "SPOT_AGENT_LISTEN=:9000"), "--agent-env: SPOT_AGENT_LISTEN is set by bootstrap itself, from --agent-port"},
		{"agent-env hello", withRegion, append(ok, "--app-port", "8080", "--agent-env", "SPOT_AGENT_HELLO=true"), "--agent-env: SPOT_AGENT_HELLO is set by bootstrap itself, from --app-port"},
		{"agent-env from the environment", append(append([]string{}, withRegion...), "SPOT_AGENT_AGENT_ENV=SPOT_AGENT_REGISTER_PORT=1"), ok, "--agent-env: SPOT_AGENT_REGISTER_PORT is set by bootstrap itself"},
		{"agent-env line break", withRegion, append(ok, "--agent-env", "SPOT_AGENT_ON_DRAIN_EXEC=a\nSPOT_AGENT_LISTEN=:1"), "--agent-env: SPOT_AGENT_ON_DRAIN_EXEC: the value has a line break"},
		{"agent-env not KEY=VALUE", withRegion, append(ok, "--agent-env", "on-drain-exec"), `--agent-env: "on-drain-exec" is not KEY=VALUE`},
		{"user-data-file missing", withRegion, append(ok, "--user-data-file", filepath.Join(dir, "missing")), "--user-data-file: cannot be read: open "},
		{"user-data-file not cloud-config", withRegion, append(ok, "--user-data-file", notCloudConfig), `--user-data-file: ` + notCloudConfig + ` starts with "packages: [nginx]": it must start with the line #cloud-config`},
		{"user-data-file bad YAML", withRegion, append(ok, "--user-data-file", badYAML), "is #cloud-config but not valid YAML"},
		{"user-data-file too big", withRegion, append(ok, "--user-data-file", tooBig, "--dry-run"), "over EC2's 16384-byte limit"},
		{"vcpus not a number", withRegion, append(ok, "--vcpus", "two"), `--vcpus: "two" is not a whole number: give N or MIN..MAX`},
		{"vcpus upside down", withRegion, append(ok, "--vcpus", "4..2"), "--vcpus: 4..2: the maximum is below the minimum"},
		{"vcpus zero", withRegion, append(ok, "--vcpus", "0"), "--vcpus: give a range of vCPUs"},
		{"memory without unit", withRegion, append(ok, "--memory", "4..8"), `--memory: "4": give the unit, GiB or MiB`},
		{"memory in GB", withRegion, append(ok, "--memory", "4GB"), `--memory: "4GB": give the unit, GiB or MiB`},
		{"memory not whole MiB", withRegion, append(ok, "--memory", "0.0001GiB"), "is not a whole number of MiB"},
		{"bad burstable", withRegion, append(ok, "--burstable", "maybe"), `--burstable: "maybe" is not included, excluded or required`},
		{"bad generation", withRegion, append(ok, "--instance-generations", "next"), `--instance-generations: "next" is not current or previous`},
		{"price protection out of range", withRegion, append(ok, "--max-spot-price-percent", "1000000"), "--max-spot-price-percent: 1000000 is out of range 1..999999"},
		{"price protection not a number", withRegion, append(ok, "--max-spot-price-percent", "half"), "-max-spot-price-percent"},
		{"bad arch", withRegion, append(ok, "--arch", "sparc"), `--arch: "sparc" is not x86_64 or arm64`},
		{"types and requirements", withRegion, append(ok, "--instance-types", "c5.large", "--vcpus", "2", "--arch", "x86_64"), "--instance-types: give instance types or requirements (--vcpus, --arch), not both"},
		{"a type twice", withRegion, append(ok, "--instance-types", "c5.large,c5.large"), "--instance-types: c5.large is given twice"},
		{"one AMI for two architectures", withRegion, []string{"bootstrap", "--name", "flags", "--agent-url", "https://example.com/spot-agent-1-1.{arch}.rpm", "--ami", "ami-0123456789abcdef0"},
			"--ami: ami-0123456789abcdef0 is one AMI, and one AMI boots one architecture while the fleet takes x86_64 and arm64: give one per architecture"},
		{"an AMI for no architecture", withRegion, append(ok, "--ami", "sparc=ami-0123456789abcdef0"), `--ami: "sparc" is not an architecture`},
		{"an AMI the fleet does not use", withRegion, append(ok, "--arch", "x86_64", "--ami", "arm64=ami-0123456789abcdef0"), "--ami: an AMI for arm64, which the fleet does not use"},
		{"no AMI for Debian on Graviton", withRegion, []string{"bootstrap", "--name", "flags", "--distribution", "debian", "--agent-url", "https://example.com/spot-agent_1_{arch}.deb",
			"--arch", "x86_64,arm64", "--ami", "x86_64=ami-0123456789abcdef0"}, "--ami: --distribution debian needs an AMI for the arm64 instances"},
		{"two packages of one architecture", withRegion, []string{"bootstrap", "--name", "flags", "--agent-file", "a/spot-agent-1-1.x86_64.rpm", "--agent-file", "b/spot-agent-2-1.x86_64.rpm"},
			`--agent-file: "a/spot-agent-1-1.x86_64.rpm" and "b/spot-agent-2-1.x86_64.rpm" are both x86_64 packages`},
		{"packages whose names tell nothing", withRegion, []string{"bootstrap", "--name", "flags", "--agent-file", "a/agent.rpm", "--agent-file", "b/agent2.rpm"},
			`--agent-file: "a/agent.rpm": its name does not say its architecture`},
		{"a package file missing", withRegion, []string{"bootstrap", "--name", "flags", "--agent-file", filepath.Join(dir, "spot-agent-1-1.x86_64.rpm")},
			"--agent-file: cannot be read: open "},
		{"no package for Graviton types", withRegion, append(ok, "--instance-types", "c5.large,c7g.large"), "--agent-url: no package for the arm64 instances"},
		{"one unnamed package for two architectures", withRegion, []string{"bootstrap", "--name", "flags", "--agent-url", "https://example.com/agent.rpm", "--arch", "x86_64,arm64"},
			"--agent-url: one package for x86_64 and arm64 instances, and its name does not say which it is"},
		{"sha256 not hex", withRegion, append(unpinned, "--agent-sha256", "xyz"), `--agent-sha256: "xyz" is 3 characters long, and a SHA-256 is 64 hex digits`},
		{"sha256 for no architecture", withRegion, append(unpinned, "--agent-sha256", "sparc="+testAgentSHA256), `--agent-sha256: sparc=…: "sparc" is not an architecture: give amd64 (or x86_64) or arm64 (or aarch64)`},
		{"sha256 twice", withRegion, append(ok, "--agent-sha256", testAgentSHA256), "--agent-sha256: two digests for one package"},
		{"sha256 for an architecture the fleet lacks", withRegion, []string{"bootstrap", "--name", "flags", "--agent-url", "https://example.com/spot-agent-1-1.{arch}.rpm", "--arch", "x86_64",
			"--agent-sha256", "amd64=" + testAgentSHA256, "--agent-sha256", "arm64=" + testAgentSHA256}, "--agent-sha256: a digest for arm64, and no instance installs an arm64 package (the packages: amd64)"},
		{"sha256 missing for an architecture", withRegion, []string{"bootstrap", "--name", "flags", "--agent-url", "https://example.com/spot-agent-1-1.{arch}.rpm",
			"--agent-sha256", "amd64=" + testAgentSHA256}, "--agent-sha256: no digest for the arm64 package (https://example.com/spot-agent-1-1.aarch64.rpm)"},
		{"sha256 with a package file", withRegion, []string{"bootstrap", "--name", "flags", "--agent-file", "a/spot-agent-1-1.x86_64.rpm", "--agent-sha256", testAgentSHA256},
			"--agent-sha256: the digests of --agent-file packages are computed from the files bootstrap uploads"},
		{"a URL that cannot be read, no sha256", withRegion, []string{"bootstrap", "--name", "flags", "--agent-url", "https://127.0.0.1:1/spot-agent_1_x86_64.rpm"},
			"--agent-sha256: https://127.0.0.1:1/spot-agent_1_x86_64.rpm cannot be read (Get \"https://127.0.0.1:1/spot-agent_1_x86_64.rpm\": dial tcp 127.0.0.1:1: connect: connection refused), and without --agent-sha256 bootstrap pins the package as it reads it: give its SHA-256, --agent-sha256 amd64=HEX"},
		{"status without name", withRegion, []string{"status"}, "--name"},
		{"status bad output", withRegion, []string{"status", "--name", "flags", "-o", "yaml"}, "--output"},
		{"teardown no region", base, []string{"teardown", "--name", "flags", "--yes"}, "--region"},
		{"teardown bad name", withRegion, []string{"teardown", "--name", "x_y", "--yes"}, "--name"},
		{"teardown a name AWS refuses", withRegion, []string{"teardown", "--name", "internal", "--yes"}, `--name: "internal" would name the load balancer`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, tc.env, "", tc.args...)
			if code != 2 || !strings.Contains(stderr, tc.flag) {
				t.Errorf("exit %d, want 2 with %q\nstdout: %s\nstderr: %s", code, tc.flag, stdout, stderr)
			}
		})
	}
	if n := conns.Load(); n != 0 {
		t.Errorf("bad flags reached the AWS endpoint %d times", n)
	}
	// -h is not an error.
	if code, _, stderr := runCLI(t, withRegion, "", "bootstrap", "-h"); code != 0 || !strings.Contains(stderr, "-deregistration-delay") {
		t.Errorf("bootstrap -h: exit %d\n%s", code, stderr)
	}
	if n := conns.Load(); n != 0 {
		t.Errorf("-h reached the AWS endpoint %d times", n)
	}
}

// Without --agent-sha256, the binary reads the --agent-url once over https,
// trusting the machine's CAs (here SSL_CERT_FILE, as Go's crypto/x509 reads
// it), and its plan pins the package as read.
func TestBootstrapDryRunPinsThePackageAsItReadsIt(t *testing.T) {
	t.Parallel()
	fake := testbed.NewEC2Fake(t, testbed.SharedMoto(t))
	caPEM, cert := testbed.NewCA(t, "127.0.0.1")
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, caPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	var gets atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gets.Add(1)
		_, _ = w.Write([]byte("the package"))
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	url := srv.URL + "/spot-agent_1.0.0_x86_64.rpm"
	code, stdout, stderr := runCLI(t, append(fake.Env(), "SSL_CERT_FILE="+ca), "", "bootstrap", "--name", "cli-read", "--agent-url", url, "--dry-run")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	sum := sha256.Sum256([]byte("the package"))
	if want := "agent-sha256: amd64 " + hex.EncodeToString(sum[:]) + " (read from the URL by this run: no --agent-sha256)"; !strings.Contains(stdout, want) {
		t.Errorf("the dry run lacks %q:\n%s", want, stdout)
	}
	if n := gets.Load(); n != 1 {
		t.Errorf("the package was read %d times, want once", n)
	}
}

// The dry run of a stack with an application shows where the traffic and the
// health checks go, the agent's settings and the user's user-data.
func TestBootstrapDryRunWithAnApplication(t *testing.T) {
	t.Parallel()
	fake := testbed.NewEC2Fake(t, testbed.SharedMoto(t))
	ud := filepath.Join(t.TempDir(), "app.yaml")
	content := "#cloud-config\npackages: [nginx]\nruncmd:\n  - [systemctl, enable, --now, nginx]\n"
	if err := os.WriteFile(ud, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	const slackToken = "T0123ABCD/B0123ABCD/abcdefghijklmnopqrstuvwx"
	code, stdout, stderr := runCLI(t, fake.Env(), "", "bootstrap", "--name", "cli-app", "--agent-url", testAgentURL, "--agent-sha256", testAgentSHA256, "--dry-run",
		"--app-port", "80", "--app-health-path", "/health", "--agent-env", "SPOT_AGENT_ON_DRAIN_EXEC=systemctl stop nginx", "--user-data-file", ud,
		"--agent-env", "SPOT_AGENT_NOTIFY_WEBHOOK=https://hooks.slack.com/services/"+slackToken, "--agent-env", "SPOT_AGENT_NOTIFY_FORMAT=slack")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	for _, want := range []string{
		"target: HTTP:80 instance", "health-check: GET /healthz on port 8081 every 5s",
		"health-check: EC2: only an instance failing its EC2 status checks (after a 5m0s grace) is replaced; one whose application does not answer stays, out of the load balancer's rotation (--health-check-type elb to replace it)",
		"ingress: tcp/8081 from (new); tcp/80 from (new)",
		"SPOT_AGENT_APP_HEALTH_URL=http://127.0.0.1:80/health,SPOT_AGENT_HELLO=false,SPOT_AGENT_LISTEN=:8081,SPOT_AGENT_NOTIFY_FORMAT=slack,SPOT_AGENT_NOTIFY_WEBHOOK=https://hooks.slack.com/...,SPOT_AGENT_ON_DRAIN_EXEC=systemctl stop nginx",
		fmt.Sprintf("; MIME multipart with %s (%d bytes) first", ud, len(content)), "no change made",
		// A webhook's token in clear: the plan warns, names ssm:, and does not print it.
		"warning: --agent-env SPOT_AGENT_NOTIFY_WEBHOOK: the value looks like it holds a secret (a Slack webhook's path is its token)",
		"aws ssm put-parameter --name /spot-agent/notify-webhook --type SecureString --value '...', and give SPOT_AGENT_NOTIFY_WEBHOOK=ssm:/spot-agent/notify-webhook",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("the dry run lacks %q:\n%s", want, stdout)
		}
	}
	if strings.Contains(stdout+stderr, slackToken) {
		t.Errorf("the dry run prints the webhook's token:\n%s\n%s", stdout, stderr)
	}
}

// The README's mixed-architecture, requirements-based example, run as
// written (with --dry-run) against moto behind testbed.EC2Fake: every line of
// the plan the README shows is in the binary's plan (a line ending in "…" as
// a prefix). It has a moto of its own: the plan's account-wide lines (the
// service-linked roles) are a fresh account's, as the README says, whatever
// the other tests on the shared server have created.
func TestReadmeBootstrapExampleIsTheBinarysPlan(t *testing.T) {
	t.Parallel()
	fake := testbed.NewEC2Fake(t, testbed.StartMoto(t))
	doc := readme(t)
	const start = "spot-agent bootstrap --name web "
	i := strings.Index(doc, "```sh\n"+start)
	if i < 0 {
		t.Fatalf("README has no block starting with %q", start)
	}
	block := doc[i+len("```sh\n"):]
	command, rest, _ := strings.Cut(block, "```")
	plan, _, ok := strings.Cut(strings.TrimPrefix(strings.TrimLeft(rest, "\n"), "```text\n"), "```")
	if !ok || !strings.HasPrefix(strings.TrimLeft(rest, "\n"), "```text\n") {
		t.Fatalf("README's example is not followed by its plan in a text block")
	}
	args := strings.Fields(strings.NewReplacer("\\\n", " ", "'", "").Replace(command))
	code, stdout, stderr := runCLI(t, fake.Env(), "", args[1:]...)
	if code != 0 {
		t.Fatalf("%s: exit %d\n%s\n%s", command, code, stdout, stderr)
	}
	for _, line := range strings.Split(strings.TrimSpace(plan), "\n") {
		want, prefix := strings.CutSuffix(strings.TrimSpace(line), "…")
		found := false
		for _, got := range strings.Split(stdout, "\n") {
			got = strings.TrimSpace(got)
			found = found || got == want || (prefix && strings.HasPrefix(got, want))
		}
		if !found && want != "" && want != "..." {
			t.Errorf("README's plan line %q is not in the binary's plan", line)
		}
	}
	if t.Failed() {
		t.Logf("the binary's plan:\n%s", stdout)
	}
}
