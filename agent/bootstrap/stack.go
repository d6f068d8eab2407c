// Package bootstrap builds, shows and removes the workshop's whole stack —
// network, security groups, load balancer, IAM, launch template, fleet,
// scaling, notifications — as an ordered list of resources, each found again
// by the tag spot-agent:stack=NAME. Plan (dry run), apply, status and teardown
// all walk that one list: apply in order, teardown in reverse; Template walks
// it too, to print the same stack as a CloudFormation template.
package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/spot-agent/spot-agent/agent/secret"
	"github.com/spot-agent/spot-agent/userdata"
)

// Tag keys.
const (
	// StackTag marks every resource of a stack; its value is the stack's name.
	StackTag = "spot-agent:stack"
	// componentTag tells the stack's resources of one type apart (two security
	// groups, two subnets).
	componentTag = "spot-agent:component"
	// HookTag names the ASG termination lifecycle hook on instances (the agent's
	// --lifecycle-hook-tag default).
	HookTag = "spot-agent:lifecycle-hook"
	// TargetGroupTag holds the target group ARN on instances (the agent's
	// --tag-key default).
	TargetGroupTag = "loadBalancerTargetGroup"
)

// Action is what a plan does with one resource.
type Action string

// Actions.
const (
	Create    Action = "create"    // absent: will be created
	Adopt     Action = "adopt"     // given by the user (--vpc-id, --subnets): used, never changed or deleted
	Unchanged Action = "unchanged" // present and as wanted
	Update    Action = "update"    // present; the differences can be changed in place
	Recreate  Action = "recreate"  // present; a difference cannot be changed in place
	Delete    Action = "delete"    // teardown: present, will be deleted
	Absent    Action = "absent"    // teardown or status: not there
	Skip      Action = "skip"      // not part of this configuration
)

// Diff is one setting that differs from what is wanted.
type Diff struct {
	Field string `json:"field"`
	Have  string `json:"have"`
	Want  string `json:"want"`
}

func (d Diff) String() string { return fmt.Sprintf("%s: %s → %s", d.Field, d.Have, d.Want) }

// Setting is one key setting of a resource, shown in the plan.
type Setting struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// Change is the plan for one resource.
type Change struct {
	Resource string    `json:"resource"`
	Action   Action    `json:"action"`
	ID       string    `json:"id,omitempty"`
	Settings []Setting `json:"settings,omitempty"`
	Diffs    []Diff    `json:"diffs,omitempty"`
	Note     string    `json:"note,omitempty"`
}

// updateOnDiffs is the plan of a resource that exists: Update when anything
// differs from what the configuration wants, else Unchanged.
func (c Change) updateOnDiffs() Change {
	c.Action = Unchanged
	if len(c.Diffs) > 0 {
		c.Action = Update
	}
	return c
}

// resource is one part of the stack. find looks it up (by the stack tag, or by
// its derived name then the tag) and records its ids in the state; plan is pure
// and compares what find saw with what the configuration wants; create and
// update make it so; delete removes it and waits until it is gone.
type resource interface {
	name() string
	find(ctx context.Context, s *state) (bool, error)
	plan(s *state) Change
	create(ctx context.Context, s *state) error
	update(ctx context.Context, s *state, c Change) error
	delete(ctx context.Context, s *state) error
	// template adds the resource to a CloudFormation template as create
	// would make it, with no AWS call, and records its ids in the state as
	// tokens (template.go).
	template(s *state, b *cfnBuilder) error
}

// Options tune how the stack is driven, not what it is.
type Options struct {
	// Progress receives one line per step; nil discards them.
	Progress io.Writer
	// PollInterval is how often waiters poll (default 5 s; tests use a few ms).
	PollInterval time.Duration
	// Timeout bounds each wait (default 10 min).
	Timeout time.Duration
	// UserData renders the launch template's user-data (default
	// userdata.Render: the #cloud-config the packages' docs describe,
	// combined with the user's own into a MIME multipart document when there
	// is one).
	UserData func(userdata.Config) ([]byte, error)
	// ReadFile reads --agent-file and --user-data-file (default os.ReadFile).
	ReadFile func(string) ([]byte, error)
	// HTTPClient reads a release's checksums.txt and an https:// --agent-url
	// given without --agent-sha256 (default: a client that gives up after
	// DownloadTimeout).
	HTTPClient *http.Client
}

// DownloadTimeout bounds the default HTTPClient's reading of one URL: a
// package is a few MiB.
const DownloadTimeout = 5 * time.Minute

// Stack drives one stack.
type Stack struct {
	cfg  Config
	c    Clients
	opts Options
	log  io.Writer

	userPart []byte            // --user-data-file, read by preflight
	packages map[string][]byte // --agent-file, by path, read by preflight
	pins     map[string]pin    // the packages' digests by architecture, found by preflight
}

// New returns a Stack for cfg. For status and teardown only Name and Region matter.
func New(cfg Config, c Clients, opts Options) *Stack {
	if opts.PollInterval <= 0 {
		opts.PollInterval = 5 * time.Second
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Minute
	}
	if opts.Progress == nil {
		opts.Progress = io.Discard
	}
	if opts.UserData == nil {
		opts.UserData = userdata.Render
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: DownloadTimeout}
	}
	if opts.ReadFile == nil {
		opts.ReadFile = os.ReadFile
	}
	return &Stack{cfg: cfg, c: c, opts: opts, log: opts.Progress}
}

// state is what one run knows: the configuration and every id found or made.
type state struct {
	cfg       Config
	c         Clients
	opts      Options
	account   string
	partition string
	region    string            // cfg.Region, or in a template AWS::Region
	tmpl      *cfnBuilder       // the template being built; nil when driving AWS
	userPart  []byte            // the user's own user-data, nil if none
	packages  map[string][]byte // the --agent-file packages, by path
	pins      map[string]pin    // the packages' digests, by architecture as agentURLs has them
	ud        string            // the launch templates' base64 user-data, once rendered

	vpcID        string
	subnetIDs    []string
	zones        []string // the Availability Zones of the subnets (those to be made too)
	igwID        string
	rtID         string
	albSG        string
	instanceSG   string
	tgARN        string
	albARN       string
	albDNS       string
	listenerARN  string
	bucket       string
	objectKeys   map[string]string // uploaded packages' keys by architecture
	roleName     string
	roleARN      string
	profileARN   string
	fleetRole    string
	amis         map[string]string // by architecture
	ltIDs        map[string]string // launch templates by architecture
	fleetKind    string
	fleetID      string
	topicARN     string
	ruleARN      string
	hookMade     bool // the ASG was created with its lifecycle hook in this run
	fisRoleARN   string
	alarmARN     string
	experimentID string // the FIS experiment template's id

	// The instance selection, found by instancePools (bootstrap only).
	arches   []string            // the fleet's architectures
	typeArch map[string]string   // a fixed list's types → architecture, from the API
	matched  map[string][]string // by architecture: the types requirements match
	pools    *Pools
}

// pending stands for an id that is not known before the resource is created.
const pending = "(new)"

func orPending(id string) string {
	if id == "" {
		return pending
	}
	return id
}

// Names derived from the stack's name.
func (s *state) albName() string  { return s.cfg.Name + "-alb" }
func (s *state) tgName() string   { return s.cfg.Name + "-tg" }
func (s *state) prefixed() string { return "spot-agent-" + s.cfg.Name }
func (s *state) asgName() string  { return s.prefixed() }
func (s *state) ltName(arch string) string {
	if arch == "" { // bootstrap before issue 15: one template
		return s.prefixed()
	}
	return s.prefixed() + "-" + arch
}
func (s *state) roleNameFor() string { return s.prefixed() + "-instance" }
func (s *state) fleetRoleName() string {
	return s.prefixed() + "-spot-fleet"
}
func (s *state) topicName() string { return s.prefixed() }
func (s *state) ruleName() string  { return s.prefixed() + "-interruptions" }

// The hook and the policy are scoped to their group in AWS; the stack's name in
// them still helps in the console, and moto keys policies by name alone.
func (s *state) hookName() string   { return s.prefixed() + "-drain" }
func (s *state) policyName() string { return s.prefixed() + "-requests-per-target" }
func (s *state) bucketName() string {
	return s.prefixed() + "-" + s.account + "-" + s.region
}

func (s *state) topicARNFor() string {
	return fmt.Sprintf("arn:%s:sns:%s:%s:%s", s.partition, s.region, s.account, s.topicName())
}

func (s *state) ruleARNFor() string {
	return fmt.Sprintf("arn:%s:events:%s:%s:rule/%s", s.partition, s.region, s.account, s.ruleName())
}

func (s *state) asgARNPattern() string {
	return asgARNPattern(s.partition, s.region, s.account, s.asgName())
}

// asgARNPattern is the ARN of the Auto Scaling group of that name, whatever
// its id.
func asgARNPattern(partition, region, account, name string) string {
	return fmt.Sprintf("arn:%s:autoscaling:%s:%s:autoScalingGroup:*:autoScalingGroupName/%s", partition, region, account, name)
}

// resources is the stack in dependency order. With all set (teardown and
// status), every optional part is included, so whatever an earlier run built
// is found whatever the flags say now. Every fleet kind is always looked up:
// a stack whose --fleet changed must not get a second fleet.
func resources(cfg Config, all bool) []resource {
	rs := []resource{&vpc{}, &subnets{}}
	if !all {
		rs = append(rs, &instancePools{})
	}
	rs = append(rs, &internetGateway{}, &routeTable{},
		&securityGroup{component: "alb-sg"}, &securityGroup{component: "instance-sg"},
		&targetGroup{}, &loadBalancer{}, &listener{})
	if all || len(cfg.AgentFiles) > 0 {
		rs = append(rs, &bucket{})
	}
	rs = append(rs, &instanceRole{})
	if all || cfg.Fleet == FleetSpotFleet {
		rs = append(rs, &spotFleetRole{})
	}
	if all {
		rs = append(rs, &launchTemplate{}) // one of the stacks made before per-architecture templates
	}
	for _, a := range Arches {
		rs = append(rs, &launchTemplate{arch: a})
	}
	if !all {
		// The account's, not the stack's: never looked at by status or teardown.
		rs = append(rs, &serviceLinkedRoles{})
	}
	if all {
		// Before the fleets, so that teardown (in reverse) terminates what
		// still runs only once no fleet would replace it.
		rs = append(rs, &strayInstances{})
	}
	rs = append(rs, newFleet(FleetASG), newFleet(FleetSpotFleet), newFleet(FleetEC2Fleet))
	if all || cfg.Fleet == FleetASG {
		rs = append(rs, &lifecycleHook{})
	}
	// The drill's: after the group and load balancer its alarm watches.
	return append(rs, &scaling{}, &topic{}, &rule{}, &fisRole{}, &stopAlarm{}, &experimentTemplate{})
}

// newState starts a run. Teardown and status pass only the name and region:
// they find what carries the tag, whatever the flags of the bootstrap were.
func (st *Stack) newState(ctx context.Context, cfg Config) (*state, error) {
	s := &state{cfg: cfg, c: st.c, opts: st.opts, partition: secret.Partition(cfg.Region), region: cfg.Region, userPart: st.userPart, packages: st.packages, pins: st.pins}
	out, err := st.c.STS.GetCallerIdentity(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("who am I (sts:GetCallerIdentity): %w", err)
	}
	s.account = deref(out.Account)
	return s, nil
}

// StepError is a failure at one step: re-running resumes from there.
type StepError struct {
	Resource string
	Err      error
}

func (e *StepError) Error() string { return fmt.Sprintf("%s: %v", e.Resource, e.Err) }
func (e *StepError) Unwrap() error { return e.Err }

// ErrRecreate means a change cannot be made in place.
var ErrRecreate = errors.New("cannot be changed in place")

// findAll runs every resource's find in order and returns the plan.
func findAll(ctx context.Context, s *state, rs []resource) ([]Change, error) {
	var plan []Change
	for _, r := range rs {
		if _, err := r.find(ctx, s); err != nil {
			return nil, &StepError{Resource: r.name(), Err: fmt.Errorf("look up: %w", err)}
		}
		plan = append(plan, r.plan(s))
	}
	return plan, nil
}
