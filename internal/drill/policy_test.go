package drill

import (
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"unicode"

	agentdrill "github.com/spot-agent/spot-agent/agent/drill"
	"github.com/spot-agent/spot-agent/internal/testbed"
)

var update = flag.Bool("update", false, "rewrite docs/drill-iam-policy.json from the calls the drill made (TestDrillCommandThroughFIS)")

// policyCaller is the access key id of the drills whose calls make the
// policy (moto takes any): the FIS fake, which sees every request to moto,
// names their calls apart from the test's own.
const policyCaller = "drillpolicy"

// The drill's resources as the policy names them, in the Service
// Authorization Reference's ARN formats: FIS's experiment templates,
// experiments and actions, and the stop alarms bootstrap names
// spot-agent-NAME-healthy-hosts.
const (
	arnTemplates   = "arn:aws:fis:*:*:experiment-template/*"
	arnExperiments = "arn:aws:fis:*:*:experiment/*"
	arnFISActions  = "arn:aws:fis:*:*:action/*"
	arnStopAlarms  = "arn:aws:cloudwatch:*:*:alarm:spot-agent-*-healthy-hosts"
)

// scoped are the drill's writes, and its FIS reads, on the resource types
// their rows in the Service Authorization Reference name; every other
// action of the drill is a read (Describe, Get, List; IAM's simulator) and
// takes "*".
// https://docs.aws.amazon.com/service-authorization/latest/reference/list_awsfaultinjectionservice.html
// https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazoncloudwatch.html
var scoped = map[string][]string{
	"fis:StartExperiment":               {arnTemplates, arnExperiments}, // experiment-template* and experiment*
	"fis:TagResource":                   {arnExperiments},               // StartExperiment's tags, on the experiment
	"fis:GetExperiment":                 {arnExperiments},
	"fis:ListExperimentResolvedTargets": {arnExperiments},
	"fis:StopExperiment":                {arnExperiments},
	"fis:GetExperimentTemplate":         {arnTemplates},
	"fis:UpdateExperimentTemplate":      {arnTemplates, arnFISActions}, // experiment-template*, and action: the update names the template's
	"cloudwatch:PutMetricAlarm":         {arnStopAlarms},
}

// statements are the policy's, in order: a name and the resources of the
// actions they grant.
var statements = []struct{ sid, resources string }{
	{"FindTheStackAndFollowTheDrill", "*"},
	{"StartTheStacksExperiment", arnTemplates + " " + arnExperiments},
	{"FollowTagAndStopTheExperiment", arnExperiments},
	{"ReadTheTemplate", arnTemplates},
	{"SetTheTemplateForTheRun", arnTemplates + " " + arnFISActions},
	{"SetTheStopAlarmForTheRun", arnStopAlarms},
}

// implied are the actions a drill's calls need beside their own: the
// experiment's tags (StartExperiment's dependent action).
var implied = []string{"fis:TagResource"}

// statusElsewhere are the reads of bootstrap's status, which finds the
// stack for the drill, on stacks this test does not build: a Spot Fleet's
// instances, scaling and role's attached policies, an EC2 Fleet's
// instances, an agent bucket's tags, a role whose GetRole shows no tags.
// Each is one of docs/bootstrap-iam-policy.json's, which bootstrap's rules
// test derives from status's requests on every kind of stack.
var statusElsewhere = []string{
	"ec2:DescribeSpotFleetInstances", "application-autoscaling:DescribeScalableTargets",
	"application-autoscaling:DescribeScalingPolicies", "iam:ListAttachedRolePolicies",
	"ec2:DescribeFleetInstances", "s3:GetBucketTagging", "iam:ListRoleTags",
}

// noPermission are the calls IAM does not authorize: "No permissions are
// required to perform this operation" (STS's API reference).
var noPermission = []string{"sts:GetCallerIdentity"}

// drillClients are agent/drill's clients: every call a drill makes besides
// status's is a method of one of them, named by the service's IAM prefix.
var drillClients = map[string]reflect.Type{
	"fis": reflect.TypeFor[agentdrill.FIS](), "elasticloadbalancing": reflect.TypeFor[agentdrill.ELB](),
	"ec2": reflect.TypeFor[agentdrill.EC2](), "autoscaling": reflect.TypeFor[agentdrill.AutoScaling](),
	"cloudwatch": reflect.TypeFor[agentdrill.CloudWatch](), "iam": reflect.TypeFor[agentdrill.IAM](),
	"sts": reflect.TypeFor[agentdrill.STS](),
}

// policyRuns are the drills run as policyCaller that passed, by fleet kind.
type policyRuns struct {
	mu     sync.Mutex
	fleets map[string]*fisFleet
}

func (p *policyRuns) passed(kind string, f *fisFleet) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fleets == nil {
		p.fleets = map[string]*fisFleet{}
	}
	p.fleets[kind] = f
}

// check derives the policy of whoever runs a drill from the calls the
// drills run as policyCaller made (the agents' fleet's whole drill, and the
// bad input's Ctrl-C in the middle of an experiment with another --before),
// every call agent/drill's clients can make and what the calls imply, and
// holds docs/drill-iam-policy.json to it (-update writes it): every call
// made is granted, on the resources it was made on.
func (p *policyRuns) check(t *testing.T, moto *testbed.Moto) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fleets["agents"] == nil || p.fleets["bad-input"] == nil {
		t.Logf("docs/drill-iam-policy.json is not checked: it takes the agents' drill and the bad input's Ctrl-C, both passed (have %v)", slices.Sorted(maps.Keys(p.fleets)))
		return
	}
	seen := moto.FIS.Actions(policyCaller)
	var lines []string
	for _, a := range slices.Sorted(maps.Keys(seen)) {
		lines = append(lines, fmt.Sprintf("%4d %s", seen[a], a))
	}
	t.Logf("the drills' calls (requests, IAM action):\n%s", strings.Join(lines, "\n"))
	b, err := json.MarshalIndent(drillPolicy(t, seen), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	b = append(b, '\n')
	if n := len(strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) {
			return -1
		}
		return r
	}, string(b))); n > 6144 {
		t.Errorf("the drill's policy is %d characters, over a managed policy's 6,144", n)
	}
	golden := filepath.Join("..", "..", "docs", "drill-iam-policy.json")
	if *update {
		if err := os.WriteFile(golden, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if want, err := os.ReadFile(golden); err != nil || string(want) != string(b) {
		t.Errorf("%s is not what the drill's calls need (%v): go test ./internal/drill -run TestDrillCommandThroughFIS -update, then review:\n%s", golden, err, b)
	}
	// What is written grants every call made, on what it was made on.
	written := readPolicy(t, golden)
	for a := range seen {
		if !slices.Contains(noPermission, a) && !written.grants(a, "") {
			t.Errorf("%s grants no %s, which the drill called", golden, a)
		}
	}
	for _, u := range p.uses(moto) {
		if !written.grants(u[0], u[1]) {
			t.Errorf("%s grants no %s on %s, which the drill needs", golden, u[0], u[1])
		}
	}
}

// drillPolicy is the policy of the calls seen, every call agent/drill's
// clients can make, what they imply and status's elsewhere: each action on
// the resources its row of the reference names, a read on "*".
func drillPolicy(t *testing.T, seen map[string]int) iamPolicy {
	actions := map[string]bool{}
	for a := range seen {
		if strings.Contains(a, "?") {
			t.Errorf("the drill made a call the FIS fake cannot name: %s", a)
			continue
		}
		actions[a] = true
	}
	for prefix, it := range drillClients {
		for i := range it.NumMethod() {
			actions[prefix+":"+it.Method(i).Name] = true
		}
	}
	bootstrapPolicy := readPolicy(t, filepath.Join("..", "..", "docs", "bootstrap-iam-policy.json"))
	for _, a := range statusElsewhere {
		if !bootstrapPolicy.grants(a, "") {
			t.Errorf("%s: not one of docs/bootstrap-iam-policy.json's actions, which status's calls are", a)
		}
		actions[a] = true
	}
	for _, a := range implied {
		actions[a] = true
	}
	for _, a := range noPermission {
		delete(actions, a)
	}
	// Group the actions into statements by their resources.
	byResources := map[string][]string{}
	for a := range actions {
		res, ok := scoped[a]
		if !ok {
			if !isRead(a) {
				t.Errorf("%s: a write with no resources: add its resource types from the Service Authorization Reference to scoped", a)
			}
			res = []string{"*"}
		}
		key := strings.Join(res, " ")
		byResources[key] = append(byResources[key], a)
	}
	doc := iamPolicy{Version: "2012-10-17"}
	for _, st := range statements {
		if acts := byResources[st.resources]; len(acts) > 0 {
			doc.Statement = append(doc.Statement, iamStatement{Sid: st.sid, Effect: "Allow", Action: slices.Sorted(slices.Values(acts)), Resource: strings.Fields(st.resources)})
			delete(byResources, st.resources)
		}
	}
	for res, acts := range byResources {
		t.Errorf("%v on %s: no statement for these resources (statements)", acts, res)
	}
	return doc
}

// uses are the resource-level calls of the drills run as policyCaller, on
// the ARNs of their stacks' template, experiments and stop alarm.
func (p *policyRuns) uses(moto *testbed.Moto) [][2]string {
	const account = "123456789012" // moto's
	var out [][2]string
	for _, f := range p.fleets {
		tmpl := fmt.Sprintf("arn:aws:fis:%s:%s:experiment-template/%s", testbed.Region, account, f.out.ExperimentTemplateID)
		out = append(out, [2]string{"fis:StartExperiment", tmpl}, [2]string{"fis:GetExperimentTemplate", tmpl},
			[2]string{"fis:UpdateExperimentTemplate", tmpl}, [2]string{"cloudwatch:PutMetricAlarm", f.out.StopAlarmARN})
		for _, e := range moto.FIS.Experiments() {
			if e.TemplateID != f.out.ExperimentTemplateID {
				continue
			}
			exp := fmt.Sprintf("arn:aws:fis:%s:%s:experiment/%s", testbed.Region, account, e.ID)
			for _, a := range []string{"fis:StartExperiment", "fis:TagResource", "fis:GetExperiment", "fis:ListExperimentResolvedTargets", "fis:StopExperiment"} {
				out = append(out, [2]string{a, exp})
			}
		}
	}
	return out
}

// isRead is an action that only reads (AWS's naming: Describe, Get, List)
// or IAM's simulator, which evaluates the caller's own policies.
func isRead(action string) bool {
	_, op, _ := strings.Cut(action, ":")
	return strings.HasPrefix(op, "Describe") || strings.HasPrefix(op, "Get") || strings.HasPrefix(op, "List") || action == "iam:SimulatePrincipalPolicy"
}

type iamPolicy struct {
	Version   string
	Statement []iamStatement
}

type iamStatement struct {
	Sid      string
	Effect   string
	Action   stringList
	Resource stringList
}

// stringList is a policy element IAM takes as a string or a list.
type stringList []string

func (s *stringList) UnmarshalJSON(b []byte) error {
	var one string
	if json.Unmarshal(b, &one) == nil {
		*s = []string{one}
		return nil
	}
	return json.Unmarshal(b, (*[]string)(s))
}

func readPolicy(t *testing.T, path string) iamPolicy {
	t.Helper()
	var p iamPolicy
	b, err := os.ReadFile(path)
	if err == nil {
		err = json.Unmarshal(b, &p)
	}
	if err != nil {
		t.Errorf("%s: %v", path, err)
	}
	return p
}

// grants: an Allow statement names the action (exactly) on a resource that
// matches arn with IAM's wildcards; arn "" is any resource.
func (p iamPolicy) grants(action, arn string) bool {
	for _, st := range p.Statement {
		if st.Effect != "Allow" || !slices.Contains(st.Action, action) {
			continue
		}
		for _, r := range st.Resource {
			if arn == "" || wildcard(r).MatchString(arn) {
				return true
			}
		}
	}
	return false
}

// wildcard is an IAM resource pattern (* any run of characters, ? one).
func wildcard(pattern string) *regexp.Regexp {
	re := regexp.QuoteMeta(pattern)
	re = strings.NewReplacer(`\*`, ".*", `\?`, ".").Replace(re)
	return regexp.MustCompile("^" + re + "$")
}
