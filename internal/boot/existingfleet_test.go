//go:build boot

package boot

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/spot-agent/spot-agent/internal/testbed"
)

// The existing fleet: an Auto Scaling group, its launch template, target
// group and role made with the AWS CLI at moto, as a team's own
// CloudFormation or Terraform would make them, with what
// docs/existing-fleet.md adds; never by bootstrap.
const (
	fleetName   = "existing-web"
	fleetDoc    = "../../docs/existing-fleet.md"
	otherIP     = "169.254.10.30" // another instance of the fleet, behind the same load balancer
	agentPort   = 8081            // the agent's, beside the application on port 80
	balancerURL = "127.0.0.1:8080"
)

// existingFleetBoot boots one more first boot of the root file system, an
// instance of a fleet built elsewhere: its launch template's user-data is
// `spot-agent user-data` (the agent beside an application, with the
// application's own cloud-config of docs/existing-fleet.md merged), its role's
// policy `spot-agent policy`'s. The application (nginx) owns port 80 before the
// agent's package is installed; the agent's first start is on 8081, with its
// page off, its readiness following nginx. Behind a load balancer (HAProxy in
// the peers' namespace, checking the agent's /healthz on 8081, sending the
// traffic to port 80) with another instance, the instance then gets a spot
// notice under load, and is terminated at the notice's time: no request
// fails.
func existingFleetBoot(t *testing.T, in *instance, rootfs string, pkg *packageServer, deb string, clk *clock) {
	ns := in.net.peers
	url := pkg.add("fleet/"+filepath.Base(deb), deb)
	f := buildExistingFleet(t, ns, url, fileSHA256(t, deb), pkg.caPEM)
	clk.step(t, "existing fleet at moto with the AWS CLI (policy, user-data, group)")

	ex := &instance{net: in.net, aemm: in.aemm, moto: in.moto, st: f, http: in.http, agentURL: fmt.Sprintf("http://127.0.0.1:%d", agentPort)}
	ex.aemm.become(t, f.instanceID)
	binds := nocloud(t, f.userData, f.instanceID)
	// The instance reaches no package repository: apt has no sources, and
	// the image carries nginx, so that the application's `packages: [nginx]`
	// (apt-get update, then install) finds it installed.
	noSources := filepath.Join(t.TempDir(), "sources.list")
	if err := os.WriteFile(noSources, []byte("# the boot test's instance reaches no repository\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	binds[noSources] = "/etc/apt/sources.list"
	ex.c = boot(t, bootOptions{rootfs: rootfs, netns: in.net.instance, binds: binds})
	state := ex.c.booted(t)
	clk.step(t, "existing fleet: booted, cloud-init included")
	if state != "running" {
		failed, _ := ex.c.exec("systemctl", "--failed", "--no-pager")
		t.Errorf("systemctl is-system-running: %q, want running\n%s", state, failed)
	}

	if !t.Run("cloud-init ran the application's cloud-config, then the agent's", func(t *testing.T) {
		out := ex.c.must(t, "cloud-init", "status", "--wait", "--format", "json")
		var s struct {
			Status string   `json:"status"`
			Errors []string `json:"errors"`
		}
		if err := json.Unmarshal([]byte(out), &s); err != nil || s.Status != "done" || len(s.Errors) > 0 {
			long, _ := ex.c.exec("cloud-init", "status", "--long")
			t.Fatalf("cloud-init status: %v; want done without errors:\n%s\n%s", err, out, long)
		}
		log := ex.c.must(t, "cat", "/var/log/cloud-init-output.log")
		for _, want := range []string{"spot-agent user-data: " + url + ": SHA-256 " + fileSHA256(t, deb) + ", as planned", "installed and started"} {
			if len(lines(log, want)) != 1 {
				t.Errorf("the agent's install script did not say %q:\n%s", want, tail(log, 3000))
			}
		}
		if code, body, err := ex.get("http://127.0.0.1:80/"); code != http.StatusOK || !strings.Contains(body, "hello from the application") {
			t.Errorf("the application on port 80: %d %q %v", code, body, err)
		}
	}) {
		t.FailNow()
	}

	ex.waitReady(t, 60*time.Second)
	clk.step(t, "existing fleet: agent in service")
	t.Run("the agent's first start was on 8081 beside the application: one start, no bind failure", func(t *testing.T) {
		p := ex.show(t, unit, "ActiveState", "NRestarts", "StatusText")
		if p["ActiveState"] != "active" || p["NRestarts"] != "0" || p["StatusText"] != "in service as "+f.instanceID {
			t.Errorf("%v; want active, no restart, in service as %s", p, f.instanceID)
		}
		j := ex.journal(t, unit)
		if starts := lines(j, "msg=spot-agent version="); len(starts) != 1 {
			t.Errorf("the agent started %d times this boot, want once (the package's start, with the settings the user-data wrote first):\n%s", len(starts), strings.Join(starts, "\n"))
		}
		if l := lines(j, "cannot listen"); len(l) > 0 {
			t.Errorf("the agent could not bind its listener:\n%s", strings.Join(l, "\n"))
		}
		if l := lines(j, "msg=listening", "listener=traffic", fmt.Sprintf("addr=[::]:%d", agentPort)); len(l) != 1 {
			t.Errorf("the traffic listener is not on :%d:\n%s", agentPort, strings.Join(lines(j, "msg=listening"), "\n"))
		}
		// The page is off: the agent answers only /healthz; the application serves /.
		if code, _, _ := ex.get(ex.agentURL + "/"); code != http.StatusNotFound {
			t.Errorf("GET / on the agent's port: %d, want 404 (--hello=false)", code)
		}
		if !ex.registered(t) {
			t.Errorf("%s is not in its target group %s at moto (the group registers its instances)", f.instanceID, f.tg)
		}
		// spot-agent user-data wrote the settings root's alone; the agent has them.
		checkRootOnlySettings(t, ex, ex.mainPID(t))
	})

	t.Run("readiness follows the application: nginx stopped, 503; started again, 200", func(t *testing.T) {
		if v := ex.metric(`spot_agent_readiness{state="ready"}`); v != 1 {
			t.Errorf(`spot_agent_readiness{state="ready"} = %v before nginx stops`, v)
		}
		ex.c.must(t, "systemctl", "stop", "nginx.service")
		eventually(t, 10*time.Second, 100*time.Millisecond, "/healthz 503 with nginx stopped", func() error {
			if code, body := ex.healthz(); code != http.StatusServiceUnavailable || !strings.HasPrefix(body, "application unhealthy: GET http://127.0.0.1/") {
				return fmt.Errorf("/healthz %d %s", code, body)
			}
			return nil
		})
		ex.c.must(t, "systemctl", "start", "nginx.service")
		eventually(t, 10*time.Second, 100*time.Millisecond, "/healthz 200 with nginx started again", func() error {
			if code, body := ex.healthz(); code != http.StatusOK {
				return fmt.Errorf("/healthz %d %s", code, body)
			}
			return nil
		})
	})

	lb := startBalancer(t, ns)
	lb.waitUp(t, "instance", "other")
	clk.step(t, "existing fleet: load balancer, both instances UP")

	t.Run("a spot notice under load: out of the load balancer before the instance goes, no request fails", func(t *testing.T) {
		load := startLoad(t, ns, 4)
		eventually(t, 10*time.Second, 100*time.Millisecond, "requests served by the instance", func() error {
			if n := load.servedBy("instance"); n < 20 {
				return fmt.Errorf("%d", n)
			}
			return nil
		})
		deadline := spotNotice(t, ex, "terminate", 30*time.Second)
		noticed := time.Now()
		eventually(t, 10*time.Second, 100*time.Millisecond, "the load balancer to take the instance out", func() error {
			if s := lb.status(t, "instance"); !strings.HasPrefix(s, "DOWN") {
				return fmt.Errorf("the instance is %s in HAProxy", s)
			}
			return nil
		})
		out := time.Since(noticed)
		servedOut := load.servedBy("instance")
		if p := ex.show(t, unit, "ActiveState"); p["ActiveState"] != "active" {
			t.Errorf("the agent is %s when the load balancer takes the instance out: readiness, not the exit, must do it", p["ActiveState"])
		}
		if err := ex.waitRegistered(t, false, 10*time.Second); err != nil {
			t.Errorf("not deregistered at moto: %v", err)
		}
		p := waitInactive(t, ex, time.Until(deadline)+10*time.Second)
		if p["Result"] != "success" || p["ExecMainStatus"] != "0" || !unixTime(p["ExecMainExitTimestamp"]).Before(deadline) {
			t.Errorf("want exit 0 before %s: %v", deadline.Format(time.RFC3339), p)
		}
		// Until then, with the agent gone: without its settings it would
		// take the application's port; it refuses to start, and says why.
		t.Run("an agent without its settings does not take the application's port: it does not start, says which address and setting, and is not restarted", func(t *testing.T) {
			busyPortStart(t, ex)
		})
		// The instance goes at the notice's time, the application with it.
		time.Sleep(time.Until(deadline))
		before := load.servedBy("instance")
		ex.c.stop(t)
		time.Sleep(3 * time.Second)
		r := load.stop()
		t.Logf("out of the load balancer %s after the notice; %d requests, %d by the instance (%d after it was out, %d after it was terminated), %d by the other, %d failed",
			out.Round(100*time.Millisecond), r.total, r.by["instance"], before-servedOut, r.by["instance"]-before, r.by["other"], len(r.failed))
		if len(r.failed) > 0 {
			t.Errorf("%d requests failed through the load balancer, e.g. %q", len(r.failed), r.failed[:min(5, len(r.failed))])
		}
		if r.by["instance"] == 0 || r.by["other"] == 0 {
			t.Errorf("each instance should have served: %v", r.by)
		}
	})
	clk.step(t, "existing fleet: spot notice under load, termination")
}

// buildExistingFleet makes the fleet at moto with the AWS CLI in ns: a VPC
// and subnet, the target group (traffic to port 80, health checks of the
// agent's /healthz on 8081), the role with `spot-agent policy`'s policy and
// its instance profile, the launch template (IMDSv2 only, instance tags in
// IMDS, `spot-agent user-data`'s user-data), and the group with the tags and
// the termination lifecycle hook of docs/existing-fleet.md, launching one
// instance once the hook is there. It returns the fleet as the instance
// sees it.
func buildExistingFleet(t *testing.T, ns *netns, agentURL, sha string, caPEM []byte) stack {
	t.Helper()
	bin, err := testbed.BuildAgent()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cli := func(args ...string) any { return awsCLI(t, ns, dir, args...) }
	id := func(v any, path ...string) string {
		s, _ := testbed.JSONPath(v, path...).(string)
		if s == "" {
			t.Fatalf("no %s in %v", strings.Join(path, "."), v)
		}
		return s
	}
	vpc := id(cli("ec2", "create-vpc", "--cidr-block", "10.8.0.0/16"), "Vpc", "VpcId")
	subnet := id(cli("ec2", "create-subnet", "--vpc-id", vpc, "--cidr-block", "10.8.1.0/24", "--availability-zone", region+"a"), "Subnet", "SubnetId")
	tg := id(cli("elbv2", "create-target-group", "--name", fleetName, "--protocol", "HTTP", "--port", "80", "--vpc-id", vpc,
		"--health-check-port", fmt.Sprint(agentPort), "--health-check-path", "/healthz"), "TargetGroups", "0", "TargetGroupArn")

	// The role: spot-agent policy's policy, put as docs/existing-fleet.md
	// puts it (moto keeps it and enforces nothing: the agent's calls reach
	// moto with the test's keys).
	policy := filepath.Join(dir, "spot-agent-policy.json")
	if err := os.WriteFile(policy, spotAgent(t, bin, "policy", "--target-group-arn", tg, "--asg-name", fleetName), 0o644); err != nil {
		t.Fatal(err)
	}
	cli("iam", "create-role", "--role-name", fleetName, "--assume-role-policy-document",
		`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}`)
	cli("iam", "put-role-policy", "--role-name", fleetName, "--policy-name", "spot-agent", "--policy-document", "file://"+policy)
	cli("iam", "create-instance-profile", "--instance-profile-name", fleetName)
	cli("iam", "add-role-to-instance-profile", "--instance-profile-name", fleetName, "--role-name", fleetName)

	// The user-data: the application's own cloud-config, then the agent's.
	app := filepath.Join(dir, "app.yaml")
	if err := os.WriteFile(app, applicationCloudConfig(t, caPEM), 0o644); err != nil {
		t.Fatal(err)
	}
	userData := spotAgent(t, bin, "user-data", "--distribution", "debian", "--agent-url", agentURL, "--agent-sha256", sha,
		"--agent-env", fmt.Sprintf("SPOT_AGENT_LISTEN=:%d", agentPort), "--agent-env", "SPOT_AGENT_HELLO=false",
		"--agent-env", "SPOT_AGENT_APP_HEALTH_URL=http://127.0.0.1/", "--user-data-file", app)
	data, _ := json.Marshal(map[string]any{
		"ImageId": "ami-12c6146b", "InstanceType": "c5.large", "IamInstanceProfile": map[string]string{"Name": fleetName},
		"UserData":        base64.StdEncoding.EncodeToString(userData),
		"MetadataOptions": map[string]string{"HttpEndpoint": "enabled", "HttpTokens": "required", "InstanceMetadataTags": "enabled"},
	})
	lt := id(cli("ec2", "create-launch-template", "--launch-template-name", fleetName, "--launch-template-data", string(data)), "LaunchTemplate", "LaunchTemplateId")

	// The group: the tags propagated at launch and the hook, as
	// docs/existing-fleet.md adds them, before its first instance.
	cli("autoscaling", "create-auto-scaling-group", "--auto-scaling-group-name", fleetName,
		"--launch-template", "LaunchTemplateId="+lt+",Version=$Latest", "--min-size", "0", "--max-size", "2", "--desired-capacity", "0",
		"--vpc-zone-identifier", subnet, "--target-group-arns", tg, "--tags",
		"ResourceId="+fleetName+",ResourceType=auto-scaling-group,Key=loadBalancerTargetGroup,Value="+tg+",PropagateAtLaunch=true",
		"ResourceId="+fleetName+",ResourceType=auto-scaling-group,Key=spot-agent:lifecycle-hook,Value=spot-agent-drain,PropagateAtLaunch=true")
	cli("autoscaling", "put-lifecycle-hook", "--auto-scaling-group-name", fleetName, "--lifecycle-hook-name", "spot-agent-drain",
		"--lifecycle-transition", "autoscaling:EC2_INSTANCE_TERMINATING", "--heartbeat-timeout", "150", "--default-result", "CONTINUE")
	cli("autoscaling", "set-desired-capacity", "--auto-scaling-group-name", fleetName, "--desired-capacity", "1")
	instanceID := id(cli("autoscaling", "describe-auto-scaling-groups", "--auto-scaling-group-names", fleetName), "AutoScalingGroups", "0", "Instances", "0", "InstanceId")

	// What the instance boots with is what the launch template holds.
	v := cli("ec2", "describe-launch-template-versions", "--launch-template-id", lt, "--versions", "$Latest")
	got, err := base64.StdEncoding.DecodeString(id(v, "LaunchTemplateVersions", "0", "LaunchTemplateData", "UserData"))
	if err != nil || !bytes.Equal(got, userData) {
		t.Fatalf("the launch template's user-data is not spot-agent user-data's: %v", err)
	}

	// The agent reads the group's tags from its instance; moto 5.2.1
	// propagates them. A moto that does not gets them from the test.
	tags := cli("ec2", "describe-tags", "--filters", "Name=resource-id,Values="+instanceID)
	want := map[string]string{"loadBalancerTargetGroup": tg, "spot-agent:lifecycle-hook": "spot-agent-drain", "aws:autoscaling:groupName": fleetName}
	list, _ := testbed.JSONPath(tags, "Tags").([]any)
	for _, tag := range list {
		k, _ := testbed.JSONPath(tag, "Key").(string)
		if val, _ := testbed.JSONPath(tag, "Value").(string); want[k] == val {
			delete(want, k)
		}
	}
	for k, val := range want {
		t.Logf("moto did not tag %s with %s=%s (a real group does, propagated at launch): adding it with create-tags", instanceID, k, val)
		cli("ec2", "create-tags", "--resources", instanceID, "--tags", "Key="+k+",Value="+val)
	}
	return stack{userData: userData, instanceID: instanceID, asg: fleetName, tg: tg}
}

// applicationCloudConfig is the application's cloud-config of
// docs/existing-fleet.md, as the page shows it, with what every instance of
// the test bed needs (testBedCloudConfig) added to it.
func applicationCloudConfig(t testing.TB, caPEM []byte) []byte {
	t.Helper()
	b, err := os.ReadFile(fleetDoc)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)<!-- test: existing-fleet-app -->\n```yaml\n(.*?)```").FindSubmatch(b)
	if m == nil {
		t.Fatalf("%s has no block marked existing-fleet-app", fleetDoc)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(m[1], &doc); err != nil {
		t.Fatalf("the page's application cloud-config: %v", err)
	}
	for k, v := range testBedCloudConfig(caPEM) {
		if list, ok := v.([]any); ok {
			prev, _ := doc[k].([]any)
			v = append(prev, list...)
		}
		doc[k] = v
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return append([]byte("#cloud-config\n# The application of docs/existing-fleet.md, and the boot test's additions (internal/boot).\n"), out...)
}

// spotAgent runs the full build's command and returns its output.
func spotAgent(t testing.TB, bin string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append([]string{}, cleanEnv...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("spot-agent %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return out
}

// awsCLI runs the AWS CLI in ns against moto and returns its JSON output
// decoded (Debian's CLI ignores AWS_ENDPOINT_URL: --endpoint-url).
func awsCLI(t testing.TB, ns *netns, dir string, args ...string) any {
	t.Helper()
	bin, err := testbed.AWSCLIPath()
	testbed.Need(t, "the AWS CLI (apt-get install awscli)", err)
	argv := ns.command(append([]string{bin, "--endpoint-url", motoURL, "--region", region, "--output", "json"}, args...)...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = append(append(append([]string{}, cleanEnv...), motoEnv()...), "HOME="+dir, "AWS_PAGER=", "AWS_EC2_METADATA_DISABLED=true")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("aws %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.String())
	}
	if len(bytes.TrimSpace(out)) == 0 {
		return nil
	}
	var v any
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("aws %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return v
}

// become makes the mock the metadata of another instance, with no notice.
func (a *aemm) become(t testing.TB, instanceID string) {
	t.Helper()
	a.id = instanceID
	a.restart(t, quiet())
}

// balancer is HAProxy in the peers' namespace playing the target group's
// load balancer: the traffic to each instance's port 80, its health checks
// to the agent's /healthz on 8081 (the other instance answers both on 80),
// retries off as an ALB's.
type balancer struct {
	socket string
}

func startBalancer(t *testing.T, ns *netns) *balancer {
	t.Helper()
	bin := testbed.Tool(t, "haproxy", "haproxy")
	ns.run(t, "ip", "addr", "add", otherIP+"/16", "dev", "peer0")
	startOtherInstance(t, ns)
	dir := t.TempDir()
	b := &balancer{socket: filepath.Join(dir, "admin.sock")}
	cfg := filepath.Join(dir, "haproxy.cfg")
	conf := fmt.Sprintf(`global
  stats socket %s mode 600 level admin
defaults
  mode http
  retries 0
  timeout connect 1s
  timeout client 30s
  timeout server 30s
frontend web
  bind %s
  default_backend fleet
backend fleet
  balance roundrobin
  option httpchk
  http-check send meth GET uri /healthz ver HTTP/1.1 hdr Host localhost
  default-server inter 500ms fastinter 500ms downinter 500ms rise 2 fall 2
  server instance %s:80 check port %d
  server other %s:80 check
`, b.socket, balancerURL, instanceIP, agentPort, otherIP)
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	p := start(t, "haproxy", nil, ns.command(bin, "-db", "-f", cfg)...)
	eventually(t, 10*time.Second, 100*time.Millisecond, "haproxy's runtime API", func() error {
		if p.exited() {
			return fmt.Errorf("haproxy exited: %v", p.err)
		}
		_, err := b.command("show info")
		return err
	})
	return b
}

// startOtherInstance is the fleet's other instance: a web server on
// otherIP:80 that stays healthy.
func startOtherInstance(t testing.TB, ns *netns) {
	t.Helper()
	ln, err := ns.Listen(otherIP + ":80")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "hello from the other instance")
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
}

// command sends one runtime API command and returns the answer.
func (b *balancer) command(cmd string) (string, error) { return testbed.RuntimeCommand(b.socket, cmd) }

// status is a server's state in HAProxy's statistics: UP, DOWN, or a
// transition such as "UP 1/2".
func (b *balancer) status(t testing.TB, server string) string {
	t.Helper()
	out, err := b.command("show stat")
	if err != nil {
		t.Fatalf("haproxy show stat: %v", err)
	}
	rows := strings.Split(strings.TrimPrefix(out, "# "), "\n")
	col := slices.Index(strings.Split(rows[0], ","), "status")
	for _, row := range rows[1:] {
		if f := strings.Split(row, ","); col > 1 && len(f) > col && f[0] == "fleet" && f[1] == server {
			return f[col]
		}
	}
	t.Fatalf("no server %s in haproxy's statistics:\n%s", server, out)
	return ""
}

// waitUp waits until each server passed its checks.
func (b *balancer) waitUp(t testing.TB, servers ...string) {
	t.Helper()
	eventually(t, 30*time.Second, 200*time.Millisecond, fmt.Sprintf("%v UP in HAProxy", servers), func() error {
		for _, s := range servers {
			if st := b.status(t, s); st != "UP" {
				return fmt.Errorf("%s is %s", s, st)
			}
		}
		return nil
	})
}

// load sends requests through the load balancer from the peers' namespace,
// as clients on the Internet would, until stopped, and tells by the answer
// which instance served each.
type load struct {
	stopc  chan struct{}
	wg     sync.WaitGroup
	total  atomic.Int64
	byInst atomic.Int64
	byOth  atomic.Int64
	mu     sync.Mutex
	failed []string
}

// loadResult is what a load run saw.
type loadResult struct {
	total  int64
	by     map[string]int64
	failed []string
}

func startLoad(t testing.TB, ns *netns, workers int) *load {
	t.Helper()
	l := &load{stopc: make(chan struct{})}
	client := ns.Client(5 * time.Second)
	for range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for {
				select {
				case <-l.stopc:
					return
				case <-time.After(5 * time.Millisecond): // a few hundred requests a second in all
				}
				l.one(client)
			}
		}()
	}
	t.Cleanup(func() { l.stop() })
	return l
}

func (l *load) one(c *http.Client) {
	l.total.Add(1)
	resp, err := c.Get("http://" + balancerURL + "/")
	if err != nil {
		l.fail(err.Error())
		return
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	switch body := string(b); {
	case err != nil:
		l.fail(err.Error())
	case resp.StatusCode != http.StatusOK:
		l.fail(fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(body)))
	case strings.Contains(body, "hello from the application"):
		l.byInst.Add(1)
	case strings.Contains(body, "hello from the other instance"):
		l.byOth.Add(1)
	default:
		l.fail("200 from nobody known: " + body)
	}
}

func (l *load) fail(what string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.failed = append(l.failed, what)
}

// servedBy is how many requests the instance ("instance") or the other
// ("other") answered so far.
func (l *load) servedBy(who string) int64 {
	if who == "instance" {
		return l.byInst.Load()
	}
	return l.byOth.Load()
}

// stop ends the load, once, and returns what it saw.
func (l *load) stop() loadResult {
	select {
	case <-l.stopc:
	default:
		close(l.stopc)
	}
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return loadResult{total: l.total.Load(), by: map[string]int64{"instance": l.byInst.Load(), "other": l.byOth.Load()}, failed: append([]string(nil), l.failed...)}
}

// busyPortStart starts the agent of an instance whose application owns port
// 80 with none of the user-data's settings (as a package installed without
// them would): the agent's default port is 80 too. It exits 2 at once,
// systemd keeps its STATUS= and does not start it again
// (RestartPreventExitStatus=2), and its journal says which address and
// which setting in one line.
func busyPortStart(t *testing.T, in *instance) {
	t.Helper()
	env := "/etc/default/spot-agent"
	settings := in.c.must(t, "cat", env)
	in.c.must(t, "sh", "-c", "echo '# none: the defaults (--listen :80)' >"+env)
	defer in.c.must(t, "sh", "-c", "cat >"+env+" <<'EOF'\n"+settings+"EOF")
	restarts := in.nRestarts(t)
	start := time.Now()
	if out, err := in.c.exec("systemctl", "start", unit); err == nil {
		t.Errorf("systemctl start succeeded with port 80 taken:\n%s", out)
	}
	time.Sleep(5 * time.Second) // two RestartSec=: long enough for a restart to show
	p := in.show(t, unit, "ActiveState", "Result", "ExecMainStatus", "StatusText", "NRestarts")
	want := "not started: cannot listen on :80 (--listen, SPOT_AGENT_LISTEN): address already in use"
	if p["ActiveState"] != "failed" || p["Result"] != "exit-code" || p["ExecMainStatus"] != "2" || p["StatusText"] != want || p["NRestarts"] != fmt.Sprint(restarts) {
		t.Errorf("%v; want failed, exit-code, status 2, STATUS %q, NRestarts %d", p, want, restarts)
	}
	status, _ := in.c.exec("systemctl", "status", "--no-pager", unit)
	if !strings.Contains(status, `Status: "`+want+`"`) {
		t.Errorf("systemctl status does not show why:\n%s", status)
	}
	j := in.c.must(t, "journalctl", "--no-pager", "-o", "cat", "-u", unit, fmt.Sprintf("--since=@%d", start.Unix()))
	l := lines(j, "level=ERROR")
	if len(l) != 1 || !strings.Contains(l[0], `msg="cannot listen" listener=traffic addr=:80 setting="--listen, SPOT_AGENT_LISTEN" err="address already in use" hint="another program listens on :80`) {
		t.Errorf("want one error line naming :80 and --listen, SPOT_AGENT_LISTEN; the journal:\n%s", j)
	}
	t.Logf("systemctl status:\n%s", strings.Join(lines(status, ""), "\n"))
	in.c.must(t, "systemctl", "reset-failed", unit)
}
