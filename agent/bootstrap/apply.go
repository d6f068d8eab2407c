package bootstrap

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"
)

// Plan is what bootstrap would do (or did): one Change per resource.
type Plan struct {
	Stack   string   `json:"stack"`
	Region  string   `json:"region"`
	Fleet   string   `json:"fleet,omitempty"`
	Changes []Change `json:"resources"`
	// Pools are the instance selection: types per architecture, zones,
	// Spot placement scores.
	Pools    *Pools   `json:"pools,omitempty"`
	Warnings []string `json:"warnings,omitempty"`
}

// Count returns how many resources have the action.
func (p *Plan) Count(a Action) int {
	n := 0
	for _, c := range p.Changes {
		if c.Action == a {
			n++
		}
	}
	return n
}

// Outputs are what a user of the stack needs.
type Outputs struct {
	Stack           string `json:"stack"`
	Region          string `json:"region"`
	URL             string `json:"alb_url,omitempty"`
	TargetGroupARN  string `json:"target_group_arn,omitempty"`
	LoadBalancerARN string `json:"load_balancer_arn,omitempty"`
	FleetType       string `json:"fleet_type,omitempty"`
	FleetID         string `json:"fleet_id,omitempty"`
	RoleARN         string `json:"instance_role_arn,omitempty"`
	InstanceProfile string `json:"instance_profile_arn,omitempty"`
	// LaunchTemplate is the fleet's main launch template (its first
	// architecture's); LaunchTemplates are all of them by architecture.
	LaunchTemplate  string            `json:"launch_template_id,omitempty"`
	LaunchTemplates map[string]string `json:"launch_template_ids,omitempty"`
	TopicARN        string            `json:"topic_arn,omitempty"`
	RuleARN         string            `json:"rule_arn,omitempty"`
	// AgentURL is the first architecture's package; AgentURLs are all of
	// them by architecture, when there is one per architecture.
	AgentURL  string            `json:"agent_url,omitempty"`
	AgentURLs map[string]string `json:"agent_urls,omitempty"`
	VPCID     string            `json:"vpc_id,omitempty"`
	// The interruption drill's (spot-agent drill): the FIS experiment
	// template, its role and its stop condition.
	ExperimentTemplateID string `json:"experiment_template_id,omitempty"`
	FISRoleARN           string `json:"fis_role_arn,omitempty"`
	StopAlarmARN         string `json:"stop_alarm_arn,omitempty"`
}

func (s *state) outputs() Outputs {
	o := Outputs{
		Stack: s.cfg.Name, Region: s.cfg.Region, TargetGroupARN: s.tgARN, LoadBalancerARN: s.albARN,
		FleetType: s.fleetKind, FleetID: s.fleetID, RoleARN: s.roleARN, InstanceProfile: s.profileARN,
		TopicARN: s.topicARN, RuleARN: s.ruleARN, VPCID: s.vpcID,
		ExperimentTemplateID: s.experimentID, FISRoleARN: s.fisRoleARN, StopAlarmARN: s.alarmARN,
	}
	if s.albDNS != "" {
		o.URL = "http://" + s.albDNS + "/"
	}
	if s.cfg.bootstrapping() {
		o.AgentURL = s.agentURL()
		if urls := s.agentURLs(); len(urls) > 1 {
			o.AgentURLs = urls // a fresh map
		}
	}
	if len(s.ltIDs) > 0 {
		o.LaunchTemplates = map[string]string{}
		for a, id := range s.ltIDs {
			if a != "" {
				o.LaunchTemplates[a] = id
			}
		}
		o.LaunchTemplate = s.mainLT()
	}
	return o
}

// Step is one resource as apply went through it.
type Step struct {
	Resource string        `json:"resource"`
	Action   Action        `json:"action"`
	ID       string        `json:"id,omitempty"`
	Elapsed  time.Duration `json:"elapsed_ns"`
}

// Result is what apply did.
type Result struct {
	Plan    *Plan   `json:"plan"`
	Steps   []Step  `json:"steps"`
	Outputs Outputs `json:"outputs"`
	// Changed is false when every resource was already as wanted.
	Changed bool `json:"changed"`
}

// Plan looks every resource up and says what Apply would do, making no
// mutating call. A --user-data-file that will not do is a *FlagError before
// any call.
func (st *Stack) Plan(ctx context.Context) (*Plan, error) {
	if err := st.preflight(ctx); err != nil {
		return nil, err
	}
	s, err := st.newState(ctx, st.cfg)
	if err != nil {
		return nil, err
	}
	_, p, err := st.plan(ctx, s)
	return p, err
}

func (st *Stack) plan(ctx context.Context, s *state) ([]resource, *Plan, error) {
	rs := resources(st.cfg, false)
	changes, err := findAll(ctx, s, rs)
	if err != nil {
		return nil, nil, err
	}
	return rs, &Plan{Stack: st.cfg.Name, Region: st.cfg.Region, Fleet: st.cfg.Fleet, Changes: changes, Pools: s.pools, Warnings: st.cfg.Warnings()}, nil
}

// recreateError lists what would have to be recreated.
func recreateError(p *Plan) error {
	var parts []string
	for _, c := range p.Changes {
		if c.Action != Recreate {
			continue
		}
		msg := c.Resource
		if len(c.Diffs) > 0 {
			var ds []string
			for _, d := range c.Diffs {
				ds = append(ds, d.String())
			}
			msg += " (" + strings.Join(ds, "; ") + ")"
		}
		if c.Note != "" {
			msg += ": " + c.Note
		}
		parts = append(parts, msg)
	}
	if len(parts) == 0 {
		return nil
	}
	return fmt.Errorf("%w, nothing was changed: %s; run 'spot-agent teardown --name %s' first, or keep the old settings",
		ErrRecreate, strings.Join(parts, "; "), p.Stack)
}

// Apply builds the stack or brings it to the configuration: it checks
// --user-data-file and the user-data's size (a *FlagError before any AWS
// call), looks every resource up, refuses before any change if something would
// have to be recreated, then creates or updates each resource in order. A
// failure stops at the step that failed; running Apply again resumes from there.
func (st *Stack) Apply(ctx context.Context) (*Result, error) {
	start := time.Now()
	if err := st.preflight(ctx); err != nil {
		return nil, err
	}
	s, err := st.newState(ctx, st.cfg)
	if err != nil {
		return nil, err
	}
	rs, p, err := st.plan(ctx, s)
	if err != nil {
		return nil, err
	}
	for _, w := range p.Warnings {
		fmt.Fprintf(st.log, "warning: %s\n", w)
	}
	if err := recreateError(p); err != nil {
		return &Result{Plan: p}, err
	}
	res := &Result{Plan: p}
	for _, r := range rs {
		c := r.plan(s) // again: ids created by earlier steps change what later ones want
		var err error
		switch c.Action {
		case Create:
			err = r.create(ctx, s)
		case Update:
			err = r.update(ctx, s, c)
		case Recreate:
			err = recreateError(&Plan{Stack: st.cfg.Name, Changes: []Change{c}})
		case Skip:
			if c.Note == "" {
				continue
			}
		}
		if err != nil {
			fmt.Fprintf(st.log, "[%6.1fs] %-22s %-9s failed: %v\n", time.Since(start).Seconds(), r.name(), c.Action, err)
			res.Outputs = s.outputs()
			return res, &StepError{Resource: r.name(), Err: err}
		}
		if c.Action == Create || c.Action == Update {
			res.Changed = true
		}
		id := r.plan(s).ID
		res.Steps = append(res.Steps, Step{Resource: r.name(), Action: c.Action, ID: id, Elapsed: time.Since(start)})
		line := fmt.Sprintf("[%6.1fs] %-22s %-9s %s", time.Since(start).Seconds(), r.name(), c.Action, id)
		if c.Action == Update {
			var ds []string
			for _, d := range c.Diffs {
				ds = append(ds, d.Field)
			}
			line += " (" + strings.Join(ds, ", ") + ")"
		}
		if c.Action == Skip {
			line += "(" + c.Note + ")"
		}
		fmt.Fprintln(st.log, strings.TrimRight(line, " "))
	}
	res.Outputs = s.outputs()
	return res, nil
}

// WriteText prints the plan, one resource per line with its key settings.
func (p *Plan) WriteText(w io.Writer) {
	fmt.Fprintf(w, "stack %s in %s", p.Stack, p.Region)
	if p.Fleet != "" {
		fmt.Fprintf(w, " (fleet: %s)", p.Fleet)
	}
	fmt.Fprintln(w)
	for _, c := range p.Changes {
		if c.Action == Skip && c.Note == "" {
			continue
		}
		fmt.Fprintf(w, "  %-9s %-22s %s\n", c.Action, c.Resource, c.ID)
		for _, d := range c.Diffs {
			fmt.Fprintf(w, "      ~ %s\n", d)
		}
		if c.Action == Create || c.Action == Adopt {
			for _, kv := range c.Settings {
				fmt.Fprintf(w, "      %s: %s\n", kv.Key, kv.Value)
			}
		}
		if c.Note != "" {
			fmt.Fprintf(w, "      (%s)\n", c.Note)
		}
	}
	if p.Pools != nil {
		p.Pools.WriteText(w)
	}
	for _, wn := range p.Warnings {
		fmt.Fprintf(w, "warning: %s\n", wn)
	}
	fmt.Fprintf(w, "%d to create, %d to update, %d unchanged, %d adopted, %d to recreate\n",
		p.Count(Create), p.Count(Update), p.Count(Unchanged), p.Count(Adopt), p.Count(Recreate))
}

// WriteText prints the outputs.
func (o Outputs) WriteText(w io.Writer) {
	for _, kv := range [][2]string{
		{"url", o.URL}, {"target group", o.TargetGroupARN}, {"fleet", strings.TrimSpace(o.FleetType + " " + o.FleetID)},
		{"instance role", o.RoleARN}, {"instance profile", o.InstanceProfile}, {"launch template", o.launchTemplates()},
		{"topic", o.TopicARN}, {"rule", o.RuleARN}, {"agent", o.agents()},
		{"drill template", o.ExperimentTemplateID}, {"drill alarm", o.StopAlarmARN},
	} {
		if kv[1] != "" {
			fmt.Fprintf(w, "%-17s %s\n", kv[0]+":", kv[1])
		}
	}
}

// launchTemplates lists the launch templates, by architecture when several.
func (o Outputs) launchTemplates() string { return byArch(o.LaunchTemplates, o.LaunchTemplate) }

// agents lists the agent's packages, by architecture when several.
func (o Outputs) agents() string { return byArch(o.AgentURLs, o.AgentURL) }

// byArch lists m's values with their architectures; one when m has fewer
// than two.
func byArch(m map[string]string, one string) string {
	if len(m) < 2 {
		return one
	}
	var out []string
	for _, a := range Arches {
		if v := m[a]; v != "" {
			out = append(out, a+" "+v)
		}
	}
	return strings.Join(out, ", ")
}
