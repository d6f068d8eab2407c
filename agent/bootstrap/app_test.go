package bootstrap_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"

	"github.com/spot-agent/spot-agent/agent/bootstrap"
	"github.com/spot-agent/spot-agent/internal/testbed"
)

// appCloudConfig is the user's own user-data in these tests: nginx on 8080.
const appCloudConfig = `#cloud-config
packages: [nginx]
write_files:
  - path: /etc/nginx/conf.d/app.conf
    content: |
      server { listen 8080; location / { return 200 "app\n"; } }
runcmd:
  - [systemctl, enable, --now, nginx]
`

// drainExec is an --agent-env value with spaces and both kinds of quote.
const drainExec = `systemctl stop nginx && logger -t app "it's drained"`

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// targetGroupOf reads the stack's target group with a plain SDK client.
func targetGroupOf(t *testing.T, m *testbed.Moto, name string) (port int32, healthPort, healthPath string) {
	t.Helper()
	out, err := m.ELB().DescribeTargetGroups(context.Background(), &elbv2.DescribeTargetGroupsInput{Names: []string{name + "-tg"}})
	if err != nil || len(out.TargetGroups) != 1 {
		t.Fatalf("target group: %v", err)
	}
	tg := out.TargetGroups[0]
	return aws.ToInt32(tg.Port), aws.ToString(tg.HealthCheckPort), aws.ToString(tg.HealthCheckPath)
}

// instanceRules lists the instances' security group's ingress as "PORT from GROUP".
func instanceRules(t *testing.T, m *testbed.Moto, name string) []string {
	t.Helper()
	out, err := m.EC2().DescribeSecurityGroups(context.Background(), &ec2.DescribeSecurityGroupsInput{Filters: []ec2types.Filter{
		{Name: aws.String("group-name"), Values: []string{name + "-instances"}}, {Name: aws.String("tag:spot-agent:stack"), Values: []string{name}},
	}})
	if err != nil || len(out.SecurityGroups) != 1 {
		t.Fatalf("instances' security group: %v", err)
	}
	var rules []string
	for _, p := range out.SecurityGroups[0].IpPermissions {
		for _, g := range p.UserIdGroupPairs {
			rules = append(rules, strconv.Itoa(int(aws.ToInt32(p.FromPort)))+" from "+aws.ToString(g.GroupId))
		}
		for _, r := range p.IpRanges {
			rules = append(rules, strconv.Itoa(int(aws.ToInt32(p.FromPort)))+" from "+aws.ToString(r.CidrIp))
		}
	}
	slices.Sort(rules)
	return rules
}

func albGroup(t *testing.T, m *testbed.Moto, name string) string {
	t.Helper()
	out, err := m.ELB().DescribeLoadBalancers(context.Background(), &elbv2.DescribeLoadBalancersInput{Names: []string{name + "-alb"}})
	if err != nil || len(out.LoadBalancers) != 1 {
		t.Fatalf("load balancer: %v", err)
	}
	return out.LoadBalancers[0].SecurityGroups[0]
}

// userDataPart is one part of a launch template's user-data.
type userDataPart struct {
	contentType, mergeType, filename string
	body                             string
}

// launchTemplateUserData returns the default version's user-data, split into
// its MIME parts (one part of type text/cloud-config when it is not MIME).
func launchTemplateUserData(t *testing.T, m *testbed.Moto, name string) (raw []byte, parts []userDataPart) {
	t.Helper()
	ctx := context.Background()
	lts, err := m.EC2().DescribeLaunchTemplates(ctx, &ec2.DescribeLaunchTemplatesInput{LaunchTemplateNames: []string{"spot-agent-" + name + "-x86_64"}})
	if err != nil || len(lts.LaunchTemplates) != 1 {
		t.Fatalf("launch template: %v", err)
	}
	v, err := m.EC2().DescribeLaunchTemplateVersions(ctx, &ec2.DescribeLaunchTemplateVersionsInput{
		LaunchTemplateId: lts.LaunchTemplates[0].LaunchTemplateId, Versions: []string{"$Default"},
	})
	if err != nil || len(v.LaunchTemplateVersions) != 1 {
		t.Fatalf("launch template version: %v", err)
	}
	raw, err = base64.StdEncoding.DecodeString(aws.ToString(v.LaunchTemplateVersions[0].LaunchTemplateData.UserData))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.HasPrefix(raw, []byte("#cloud-config\n")) {
		return raw, []userDataPart{{contentType: "text/cloud-config", body: string(raw)}}
	}
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("user-data is neither #cloud-config nor MIME: %v\n%s", err, raw)
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/mixed" || msg.Header.Get("MIME-Version") != "1.0" {
		t.Fatalf("user-data Content-Type %q (%v), MIME-Version %q", msg.Header.Get("Content-Type"), err, msg.Header.Get("MIME-Version"))
	}
	r := multipart.NewReader(msg.Body, params["boundary"])
	for {
		p, err := r.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(p)
		if p.Header.Get("Content-Transfer-Encoding") == "base64" {
			body, _ = base64.StdEncoding.DecodeString(strings.ReplaceAll(string(body), "\n", ""))
		}
		ct, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
		parts = append(parts, userDataPart{contentType: ct, mergeType: p.Header.Get("Merge-Type"), filename: p.FileName(), body: string(body)})
	}
	return raw, parts
}

func changesOf(p *bootstrap.Plan) map[string]bootstrap.Change {
	out := map[string]bootstrap.Change{}
	for _, c := range p.Changes {
		out[c.Resource] = c
	}
	return out
}

// An existing stack takes an application on the port its agent had, in place:
// the target group's health check moves to the agent's new port, the
// instances' group opens it, and the launch template gets a new version with
// the user's user-data before the agent's. The same flags again change
// nothing; a new user-data file or agent port is updated in place; a new
// application port is refused, naming the target group.
func TestBootstrapTakesAnApplicationBesideTheAgent(t *testing.T) {
	t.Parallel()
	m := testbed.SharedMoto(t)
	name := "app-asg"
	cfg := testConfig(name, bootstrap.FleetASG)
	st, _ := newStack(t, m.URL, cfg)
	if _, err := st.Apply(ctx(t)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = st.Teardown(context.Background(), false, nil) })
	if port, hp, _ := targetGroupOf(t, m, name); port != 80 || hp != "traffic-port" {
		t.Fatalf("target group without an application: port %d, health-check port %s", port, hp)
	}
	_, plain := launchTemplateUserData(t, m, name)

	app := cfg
	app.AppPort, app.AgentPort, app.AppHealthPath = 80, bootstrap.AppAgentPort, "/health"
	app.AgentEnv = map[string]string{"SPOT_AGENT_ON_DRAIN_EXEC": drainExec}
	app.UserDataFile = writeFile(t, "app.yaml", appCloudConfig)
	st2, rec := newStack(t, m.URL, app)
	p, err := st2.Plan(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	ch := changesOf(p)
	if c := ch["target-group"]; c.Action != bootstrap.Update || len(c.Diffs) != 1 || c.Diffs[0].String() != "health-check.port: traffic-port → 8081" {
		t.Errorf("target group: %s %v, want the health-check port updated in place", c.Action, c.Diffs)
	}
	for _, r := range []string{"instance-sg", "launch-template-x86_64"} {
		if ch[r].Action != bootstrap.Update {
			t.Errorf("%s: %s %v, want update", r, ch[r].Action, ch[r].Diffs)
		}
	}
	// The application's start is its own: EC2 health checks keep an instance
	// whose application is late instead of replacing it.
	if c := ch["asg"]; c.Action != bootstrap.Update || len(c.Diffs) != 1 || c.Diffs[0].String() != "health-check-type: ELB → EC2" {
		t.Errorf("asg: %s %v, want the health check type moved to EC2", c.Action, c.Diffs)
	}
	var text bytes.Buffer
	p.WriteText(&text)
	if !strings.Contains(text.String(), "~ health-check.port: traffic-port → 8081") || !strings.Contains(text.String(), "~ health-check-type: ELB → EC2") ||
		!strings.Contains(text.String(), "0 to create, 4 to update") {
		t.Errorf("plan:\n%s", text.String())
	}
	if mc := rec.MutatingCalls(); len(mc) != 0 {
		t.Errorf("plan made %v", mc)
	}
	if _, err := st2.Apply(ctx(t)); err != nil {
		t.Fatal(err)
	}
	want := map[string]int{
		"Elastic Load Balancing v2.ModifyTargetGroup": 1, "EC2.AuthorizeSecurityGroupIngress": 1,
		"EC2.CreateLaunchTemplateVersion": 1, "EC2.ModifyLaunchTemplate": 1, "Auto Scaling.UpdateAutoScalingGroup": 1,
	}
	if mc := rec.MutatingCalls(); !intMapsEqual(mc, want) {
		t.Errorf("taking an application made %v, want %v", mc, want)
	}
	g := testbed.JSONPath(m.CLI(t, "autoscaling", "describe-auto-scaling-groups", "--auto-scaling-group-names", "spot-agent-"+name), "AutoScalingGroups", "0")
	if str(testbed.JSONPath(g, "HealthCheckType")) != "EC2" || num(testbed.JSONPath(g, "HealthCheckGracePeriod")) != 300 {
		t.Errorf("group health check %v after %vs, want EC2 after 300s", testbed.JSONPath(g, "HealthCheckType"), testbed.JSONPath(g, "HealthCheckGracePeriod"))
	}
	if port, hp, path := targetGroupOf(t, m, name); port != 80 || hp != "8081" || path != "/healthz" {
		t.Errorf("target group: port %d, health check %s on %s; want port 80, /healthz on 8081", port, path, hp)
	}
	alb := albGroup(t, m, name)
	if rules := instanceRules(t, m, name); !slices.Equal(rules, []string{"80 from " + alb, "8081 from " + alb}) {
		t.Errorf("instances' ingress %v, want 80 and 8081 from the load balancer's group %s", rules, alb)
	}
	raw, parts := launchTemplateUserData(t, m, name)
	t.Logf("user-data: %d bytes with the application (%d of them the user's), %d without", len(raw), len(appCloudConfig), len(plain[0].body))
	if len(parts) != 2 {
		t.Fatalf("user-data has %d parts:\n%s", len(parts), raw)
	}
	if u := parts[0]; u.contentType != "text/cloud-config" || u.body != appCloudConfig || u.mergeType != "list(append)+dict(no_replace,recurse_list)+str()" {
		t.Errorf("the user's part: %+v", u)
	}
	agent := parts[1]
	if agent.contentType != "text/cloud-config" || agent.mergeType == "" || !strings.HasPrefix(agent.body, "#cloud-config\n") {
		t.Errorf("the agent's part: %+v", agent)
	}
	for _, line := range []string{
		`SPOT_AGENT_LISTEN=":8081"`, `SPOT_AGENT_HELLO="false"`, `SPOT_AGENT_APP_HEALTH_URL="http://127.0.0.1:80/health"`,
		`SPOT_AGENT_ON_DRAIN_EXEC="systemctl stop nginx && logger -t app \"it's drained\""`,
	} {
		if !strings.Contains(agent.body, "      "+line+"\n") {
			t.Errorf("the agent's settings lack %s:\n%s", line, agent.body)
		}
	}
	if strings.Contains(agent.body, "SPOT_AGENT_REGISTER") {
		t.Errorf("an ASG's agent registers itself:\n%s", agent.body)
	}

	// Again: nothing to do.
	rec.Reset()
	res, err := st2.Apply(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	reads, _ := rec.Totals()
	t.Logf("re-run with the application and the user-data file: %d reads, mutating %v", reads, rec.MutatingCalls())
	if mc := rec.MutatingCalls(); len(mc) != 0 || res.Changed {
		t.Errorf("re-run made %v", mc)
	}

	status, err := st2.Status(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if tg := status.TargetGroup; tg == nil || *tg != (bootstrap.TargetGroupStatus{Port: 80, HealthCheckPort: "8081", HealthCheckPath: "/healthz"}) {
		t.Errorf("status target group: %+v", tg)
	}
	text.Reset()
	status.WriteText(&text)
	if !strings.Contains(text.String(), "target group: HTTP:80, health check GET /healthz on port 8081\n") {
		t.Errorf("status:\n%s", text.String())
	}

	// A changed user-data file: a new launch template version, nothing else.
	if err := os.WriteFile(app.UserDataFile, []byte(appCloudConfig+"final_message: ready\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rec.Reset()
	res, err = st2.Apply(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if mc := rec.MutatingCalls(); !intMapsEqual(mc, map[string]int{"EC2.CreateLaunchTemplateVersion": 1, "EC2.ModifyLaunchTemplate": 1}) {
		t.Errorf("a changed user-data file made %v", mc)
	}
	if c := changesOf(res.Plan)["launch-template-x86_64"]; c.Action != bootstrap.Update || len(c.Diffs) != 1 || c.Diffs[0].Field != "user-data" {
		t.Errorf("launch template: %s %v", c.Action, c.Diffs)
	}
	if _, parts := launchTemplateUserData(t, m, name); len(parts) != 2 || !strings.HasSuffix(parts[0].body, "final_message: ready\n") {
		t.Errorf("the new version's user part: %+v", parts)
	}

	// A new agent port: the health check follows in place.
	moved := app
	moved.AgentPort = 8082
	st3, rec3 := newStack(t, m.URL, moved)
	if _, err := st3.Apply(ctx(t)); err != nil {
		t.Fatal(err)
	}
	want = map[string]int{
		"Elastic Load Balancing v2.ModifyTargetGroup": 1, "EC2.AuthorizeSecurityGroupIngress": 1, "EC2.RevokeSecurityGroupIngress": 1,
		"EC2.CreateLaunchTemplateVersion": 1, "EC2.ModifyLaunchTemplate": 1,
	}
	if mc := rec3.MutatingCalls(); !intMapsEqual(mc, want) {
		t.Errorf("a new agent port made %v, want %v", mc, want)
	}
	if _, hp, _ := targetGroupOf(t, m, name); hp != "8082" {
		t.Errorf("health-check port %s after --agent-port 8082", hp)
	}
	if rules := instanceRules(t, m, name); !slices.Equal(rules, []string{"80 from " + alb, "8082 from " + alb}) {
		t.Errorf("instances' ingress %v after --agent-port 8082", rules)
	}

	// A new application port cannot be had in place: refused, nothing changed.
	other := moved
	other.AppPort = 8080
	st4, rec4 := newStack(t, m.URL, other)
	_, err = st4.Apply(ctx(t))
	if !errors.Is(err, bootstrap.ErrRecreate) || !strings.Contains(err.Error(), "target-group (port: 80 → 8080") ||
		!strings.Contains(err.Error(), "AWS cannot change a target group's port, which is --app-port") {
		t.Errorf("a new --app-port: %v, want a refusal naming the target group's port", err)
	}
	if mc := rec4.MutatingCalls(); len(mc) != 0 {
		t.Errorf("the refused change made %v", mc)
	}
}

// A new stack with an application, in an EC2 Fleet: the target group is
// created on the application's port with its health check on the agent's,
// and the agents register the instances on the application's port.
func TestBootstrapAnEC2FleetWithAnApplication(t *testing.T) {
	t.Parallel()
	m := testbed.SharedMoto(t)
	name := "app-ec2"
	cfg := testConfig(name, bootstrap.FleetEC2Fleet)
	cfg.AppPort, cfg.AgentPort = 8080, bootstrap.AppAgentPort
	script := "#!/bin/sh\ndnf install -y nginx && systemctl enable --now nginx\n"
	cfg.UserDataFile = writeFile(t, "app.sh", script)
	st, rec := newStack(t, m.URL, cfg)
	p, err := st.Plan(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	var settings []string
	for _, c := range p.Changes {
		for _, s := range c.Settings {
			settings = append(settings, c.Resource+" "+s.Key+": "+s.Value)
		}
	}
	all := strings.Join(settings, "\n")
	for _, want := range []string{
		"target-group target: HTTP:8080 instance", "target-group health-check: GET /healthz on port 8081 every 5s",
		"SPOT_AGENT_REGISTER=true,SPOT_AGENT_REGISTER_PORT=8080", "; MIME multipart with " + cfg.UserDataFile + " (" + strconv.Itoa(len(script)) + " bytes) first",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("the plan lacks %q:\n%s", want, all)
		}
	}
	if _, err := st.Apply(ctx(t)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = st.Teardown(context.Background(), false, nil) })
	if port, hp, path := targetGroupOf(t, m, name); port != 8080 || hp != "8081" || path != "/healthz" {
		t.Errorf("target group: port %d, health check %s on %s", port, path, hp)
	}
	alb := albGroup(t, m, name)
	if rules := instanceRules(t, m, name); !slices.Equal(rules, []string{"8080 from " + alb, "8081 from " + alb}) {
		t.Errorf("instances' ingress %v", rules)
	}
	raw, parts := launchTemplateUserData(t, m, name)
	t.Logf("user-data: %d bytes", len(raw))
	if len(parts) != 2 || parts[0].contentType != "text/x-shellscript" || parts[0].mergeType != "" || parts[1].contentType != "text/cloud-config" {
		t.Fatalf("parts: %+v", parts)
	}
	for _, line := range []string{`SPOT_AGENT_REGISTER="true"`, `SPOT_AGENT_REGISTER_PORT="8080"`, `SPOT_AGENT_HELLO="false"`, `SPOT_AGENT_APP_HEALTH_URL="http://127.0.0.1:8080/"`} {
		if !strings.Contains(parts[1].body, line) {
			t.Errorf("the agent's settings lack %s", line)
		}
	}
	rec.Reset()
	if _, err := st.Apply(ctx(t)); err != nil || len(rec.MutatingCalls()) != 0 {
		t.Errorf("re-run: %v, %v", err, rec.MutatingCalls())
	}
}

// A --user-data-file that will not do, or a user-data over EC2's limit, is a
// *FlagError from Plan and Apply before any AWS call.
func TestBootstrapRefusesABadUserDataFileBeforeAnyAPICall(t *testing.T) {
	t.Parallel()
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusInternalServerError)
	}))
	t.Cleanup(srv.Close)
	big := "#!/bin/sh\n" + strings.Repeat("echo 0123456789abcdef0123456789abcdef0123456789abcdef0123456789\n", 240)
	for _, tt := range []struct {
		name, content string // content "" with no file: a missing file
		edit          func(*bootstrap.Config)
		flag, want    string
	}{
		{"a missing file", "", nil, "user-data-file", "cannot be read: open "},
		{"an empty file", "\n", nil, "user-data-file", "is empty"},
		{"gzip", "\x1f\x8b\x08\x00", nil, "user-data-file", "is gzip-compressed"},
		{"not UTF-8", "#!/bin/sh\necho caf\xe9\n", nil, "user-data-file", "is not UTF-8"},
		{"neither cloud-config nor a script", "packages: [nginx]\n", nil, "user-data-file", `starts with "packages: [nginx]": it must start with the line #cloud-config`},
		{"bad YAML", "#cloud-config\npackages: [nginx\n", nil, "user-data-file", "is #cloud-config but not valid YAML"},
		{"a YAML list", "#cloud-config\n- nginx\n", nil, "user-data-file", "not a mapping"},
		{"too big", big, nil, "user-data-file", "with it the launch template's user-data would be "},
		{"too big with an uploaded agent", big, func(c *bootstrap.Config) {
			c.AgentURL, c.AgentSHA256, c.AgentFiles = "", nil, []string{writeFile(t, "spot-agent_1_x86_64.rpm", "rpm")}
		}, "user-data-file", "over EC2's 16384-byte limit"},
		{"too many settings", "#!/bin/sh\n", func(c *bootstrap.Config) {
			// The agent's part alone is too big: the settings are to blame.
			c.AgentEnv = map[string]string{"SPOT_AGENT_NOTIFY_BODY": strings.Repeat("x", 16000)}
		}, "agent-env", "the launch template's user-data would be "},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig("bad-ud", bootstrap.FleetASG)
			cfg.UserDataFile = filepath.Join(t.TempDir(), "missing")
			if tt.content != "" {
				cfg.UserDataFile = writeFile(t, "user-data", tt.content)
			}
			if tt.edit != nil {
				tt.edit(&cfg)
			}
			if err := cfg.Validate(); err != nil {
				t.Fatalf("the configuration itself: %v", err)
			}
			st, rec := newStack(t, srv.URL, cfg)
			_, perr := st.Plan(ctx(t))
			_, aerr := st.Apply(ctx(t))
			for what, err := range map[string]error{"Plan": perr, "Apply": aerr} {
				var fe *bootstrap.FlagError
				if !errors.As(err, &fe) || fe.Flag != tt.flag || !strings.Contains(err.Error(), tt.want) {
					t.Errorf("%s: %v\nwant a *FlagError on --%s with %q", what, err, tt.flag, tt.want)
				}
			}
			if n := len(rec.Counts()); n != 0 {
				t.Errorf("AWS calls: %s", rec)
			}
			t.Log(aerr)
		})
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("the AWS endpoint was reached %d times", n)
	}
}
