package bootstrap

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"gopkg.in/yaml.v3"
)

// The stack as a CloudFormation template (bootstrap --template), with no AWS
// call. It is built from the same ordered list of resources as Apply, and
// each resource's template method does what its create does, from the same
// functions (a launch template's want, the group's input, the agent's
// policy): it records the resource's ids in the state and adds the resource
// to the template instead of calling AWS. An id that is not known before the
// stack exists is a token in the state, which becomes Ref, Fn::GetAtt or
// Fn::Sub in the template; what bootstrap looks up in AWS is a parameter (the
// AMIs, a given VPC and its subnets) or a pseudo parameter or function (the
// account, the partition, the region, the Availability Zones). A new
// resource type adds its template method, nothing else.

// Template formats.
const (
	TemplateJSON = "json"
	TemplateYAML = "yaml"
)

// Template is the stack as a CloudFormation template. Parameters, resources
// and outputs keep the stack's order.
type Template struct {
	AWSTemplateFormatVersion string         `json:"AWSTemplateFormatVersion" yaml:"AWSTemplateFormatVersion"`
	Description              string         `json:"Description" yaml:"Description"`
	Metadata                 map[string]any `json:"Metadata,omitempty" yaml:"Metadata,omitempty"`
	Parameters               entries        `json:"Parameters,omitempty" yaml:"Parameters,omitempty"`
	Resources                entries        `json:"Resources" yaml:"Resources"`
	Outputs                  entries        `json:"Outputs,omitempty" yaml:"Outputs,omitempty"`
}

// Write writes the template as JSON or YAML (TemplateJSON, TemplateYAML).
func (t *Template) Write(w io.Writer, format string) error {
	switch format {
	case TemplateJSON:
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false) // AWS::SSM::Parameter::Value<...> as written
		enc.SetIndent("", "  ")
		return enc.Encode(t)
	case TemplateYAML:
		enc := yaml.NewEncoder(w)
		enc.SetIndent(2)
		if err := enc.Encode(t); err != nil {
			return err
		}
		return enc.Close()
	}
	return fmt.Errorf("template format %q is not json or yaml", format)
}

// entry is one named value of a template section.
type entry struct {
	name  string
	value any
}

// entries are a template section in the order its entries were added
// (encoding/json and yaml.v3 would sort a map's keys).
type entries []entry

func (es entries) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, e := range es {
		if i > 0 {
			b.WriteByte(',')
		}
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(e.name); err != nil {
			return nil, err
		}
		b.WriteByte(':')
		if err := enc.Encode(e.value); err != nil {
			return nil, err
		}
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

func (es entries) MarshalYAML() (any, error) {
	n := &yaml.Node{Kind: yaml.MappingNode}
	for _, e := range es {
		v := &yaml.Node{}
		if err := v.Encode(e.value); err != nil {
			return nil, err
		}
		n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: e.name}, v)
	}
	return n, nil
}

// cfnResource is one resource of the template.
type cfnResource struct {
	Type       string   `json:"Type" yaml:"Type"`
	DependsOn  []string `json:"DependsOn,omitempty" yaml:"DependsOn,omitempty"`
	Properties any      `json:"Properties" yaml:"Properties"`
}

// cfnParameter is one parameter of the template.
type cfnParameter struct {
	Type        string `json:"Type" yaml:"Type"`
	Default     string `json:"Default,omitempty" yaml:"Default,omitempty"`
	Description string `json:"Description" yaml:"Description"`
}

// cfnOutput is one output of the template.
type cfnOutput struct {
	Description string `json:"Description" yaml:"Description"`
	Value       any    `json:"Value" yaml:"Value"`
}

// Logical ids that more than one resource names.
const (
	lidInternetGatewayAttachment = "InternetGatewayAttachment"
	lidTargetGroup               = "TargetGroup"
	lidLoadBalancer              = "LoadBalancer"
	lidListener                  = "Listener"
)

// Tokens stand in the state for what only CloudFormation knows: a token is
// a number between two characters of Unicode's private use area, which no
// name, ARN or setting bootstrap takes contains, and survives every
// encoding on the way (JSON policies, SDK structs).
const (
	tokenOpen  = "\uE000"
	tokenClose = "\uE001"
)

// cfnBuilder is the template being built.
type cfnBuilder struct {
	parameters entries
	resources  entries
	tokens     []token
}

// token is what a token stands for: the intrinsic function alone, and in a
// Fn::Sub string, the name within ${} ("" for a function Fn::Sub has no
// name for, which then gets a variable).
type token struct {
	value any
	sub   string
}

func (b *cfnBuilder) token(t token) string {
	b.tokens = append(b.tokens, t)
	return tokenOpen + strconv.Itoa(len(b.tokens)-1) + tokenClose
}

// ref stands for a resource's or a parameter's Ref (a pseudo parameter's too).
func (b *cfnBuilder) ref(id string) string {
	return b.token(token{map[string]any{"Ref": id}, id})
}

// att stands for a resource's attribute (Fn::GetAtt).
func (b *cfnBuilder) att(id, attr string) string {
	return b.token(token{map[string]any{"Fn::GetAtt": []string{id, attr}}, id + "." + attr})
}

// fn stands for any other intrinsic function.
func (b *cfnBuilder) fn(v any) string { return b.token(token{value: v}) }

// resource adds a resource; props are a map or an SDK input whose fields are
// the resource's properties (values may be SDK structs and hold tokens),
// made CloudFormation's by finish.
func (b *cfnBuilder) resource(id, typ string, props any, dependsOn ...string) {
	b.resources = append(b.resources, entry{id, cfnResource{Type: typ, DependsOn: dependsOn, Properties: props}})
}

// parameter adds a parameter and returns the token of its Ref.
func (b *cfnBuilder) parameter(id string, p cfnParameter) string {
	b.parameters = append(b.parameters, entry{id, p})
	return b.ref(id)
}

// specTags are the Tags property of a resource that EC2's API tags with
// TagSpecifications: the first specification's tags.
func specTags(specs []ec2types.TagSpecification) []ec2types.Tag {
	if len(specs) == 0 {
		return nil
	}
	return specs[0].Tags
}

// finish makes every resource's properties CloudFormation's: the SDK
// structs and Go values as JSON (without the fields left unset), and each
// token as its intrinsic function.
func (b *cfnBuilder) finish(s *state) (*Template, error) {
	t := &Template{
		AWSTemplateFormatVersion: "2010-09-09",
		Description:              fmt.Sprintf("spot-agent %s: the stack 'spot-agent bootstrap --name %s' builds (fleet: %s), as written by 'spot-agent bootstrap --template'", s.cfg.Name, s.cfg.Name, s.cfg.Fleet),
		Parameters:               b.parameters,
	}
	if slrs := serviceLinkedRolesFor(s.cfg.Fleet); len(slrs) > 0 {
		var names []string
		for _, r := range slrs {
			names = append(names, r.role+" ("+r.service+")")
		}
		// The account's, not the stack's: bootstrap makes sure of them before
		// the fleet and never deletes them; a template that created them
		// would fail wherever they exist, and delete them with the stack.
		t.Metadata = map[string]any{"spot-agent": map[string]any{
			"ServiceLinkedRoles": names,
			"Note":               "the fleet needs these service-linked roles of the account; 'spot-agent bootstrap' creates the missing ones, this template does not (aws iam create-service-linked-role --aws-service-name SERVICE)",
		}}
	}
	for _, e := range b.resources {
		r := e.value.(cfnResource)
		props, err := b.cfn(r.Properties)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", e.name, err)
		}
		r.Properties = props
		t.Resources = append(t.Resources, entry{e.name, r})
	}
	for _, o := range s.templateOutputs() {
		v, err := b.cfn(o.value.(cfnOutput).Value)
		if err != nil {
			return nil, fmt.Errorf("output %s: %w", o.name, err)
		}
		out := o.value.(cfnOutput)
		out.Value = v
		t.Outputs = append(t.Outputs, entry{o.name, out})
	}
	return t, nil
}

// cfn turns a Go value into CloudFormation's: JSON as the SDK would send it,
// without null, empty strings, lists and objects (the fields left unset),
// with each token as its intrinsic function.
func (b *cfnBuilder) cfn(v any) (any, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var out any
	if err := dec.Decode(&out); err != nil {
		return nil, err
	}
	return b.resolve(prune(out))
}

// prune drops what is unset; numbers become integers where they are.
func prune(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			if e = prune(e); e == nil {
				delete(t, k)
			} else {
				t[k] = e
			}
		}
		if len(t) == 0 {
			return nil
		}
	case []any:
		out := t[:0]
		for _, e := range t {
			if e = prune(e); e != nil {
				out = append(out, e)
			}
		}
		if len(out) == 0 {
			return nil
		}
		return out
	case string:
		if t == "" {
			return nil
		}
	case json.Number:
		if n, err := t.Int64(); err == nil {
			return n
		}
		f, _ := t.Float64()
		return f
	}
	return v
}

func (b *cfnBuilder) resolve(v any) (any, error) {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			if strings.Contains(k, tokenOpen) {
				return nil, fmt.Errorf("a key holds a token: %q", k)
			}
			r, err := b.resolve(e)
			if err != nil {
				return nil, err
			}
			t[k] = r
		}
	case []any:
		for i, e := range t {
			r, err := b.resolve(e)
			if err != nil {
				return nil, err
			}
			t[i] = r
		}
	case string:
		return b.resolveString(t)
	}
	return v, nil
}

// resolveString turns a string that holds tokens into the intrinsic function
// of its one token, or a Fn::Sub, in which a literal "${" is written "${!".
func (b *cfnBuilder) resolveString(s string) (any, error) {
	if !strings.Contains(s, tokenOpen) {
		return s, nil
	}
	var sub strings.Builder
	vars := map[string]any{}
	rest, whole := s, -1
	for rest != "" {
		i := strings.Index(rest, tokenOpen)
		if i < 0 {
			sub.WriteString(strings.ReplaceAll(rest, "${", "${!"))
			break
		}
		sub.WriteString(strings.ReplaceAll(rest[:i], "${", "${!"))
		j := strings.Index(rest, tokenClose)
		n, err := strconv.Atoi(rest[i+len(tokenOpen) : max(j, i+len(tokenOpen))])
		if j < i || err != nil || n >= len(b.tokens) {
			return nil, fmt.Errorf("a broken token in %q", s)
		}
		if i == 0 && j+len(tokenClose) == len(s) {
			whole = n
		}
		tok := b.tokens[n]
		name := tok.sub
		if name == "" {
			name = "V" + strconv.Itoa(n)
			vars[name] = tok.value
		}
		sub.WriteString("${" + name + "}")
		rest = rest[j+len(tokenClose):]
	}
	switch {
	case whole >= 0:
		return b.tokens[whole].value, nil
	case len(vars) > 0:
		return map[string]any{"Fn::Sub": []any{sub.String(), vars}}, nil
	}
	return map[string]any{"Fn::Sub": sub.String()}, nil
}

// Template builds the stack as a CloudFormation template, making no AWS
// call: the configuration's checks, the user-data's (preflight), then every
// resource of the stack in order. What only bootstrap can do is refused as
// a *FlagError, before anything else: uploading --agent-file, or pinning an
// s3:// package by reading it. The packages are pinned as bootstrap pins
// them (pinPackages): an https:// one with no --agent-sha256 is read once.
func (st *Stack) Template(ctx context.Context) (*Template, error) {
	if err := st.cfg.templateProblems(); err != nil {
		return nil, err
	}
	if err := st.preflight(ctx); err != nil {
		return nil, err
	}
	b := &cfnBuilder{}
	s := &state{cfg: st.cfg, opts: st.opts, userPart: st.userPart, packages: st.packages, pins: st.pins, tmpl: b}
	s.account, s.partition, s.region = b.ref("AWS::AccountId"), b.ref("AWS::Partition"), b.ref("AWS::Region")
	for _, r := range resources(st.cfg, false) {
		if r.plan(s).Action == Skip { // not part of this configuration
			continue
		}
		if err := r.template(s, b); err != nil {
			return nil, &StepError{Resource: r.name(), Err: err}
		}
	}
	return b.finish(s)
}

// templateProblems are the settings a template cannot carry.
func (c *Config) templateProblems() error {
	var errs []error
	if len(c.AgentFiles) > 0 {
		errs = append(errs, &FlagError{"agent-file", "a template cannot upload a file: upload the packages to a bucket of yours (aws s3 cp) and give --agent-url s3://BUCKET/KEY (" + ArchPlaceholder + " in it for each architecture's); the instance role is allowed to read them"})
	}
	if strings.HasPrefix(c.AgentURL, "s3://") && len(c.AgentSHA256) == 0 {
		errs = append(errs, &FlagError{"agent-sha256", "a template makes no AWS call, so it cannot read an s3:// package to pin it: give each package's SHA-256 (sha256sum FILE prints it), --agent-sha256 HEX, or one per architecture, --agent-sha256 amd64=HEX --agent-sha256 arm64=HEX"})
	}
	// A Spot Fleet that needs the types the requirements match gets them
	// from GetInstanceTypesFromInstanceRequirements, an AWS call.
	if s := (&state{cfg: *c}); s.spotFleetNeedsTypes() {
		errs = append(errs, &FlagError{"fleet", fmt.Sprintf("a Spot Fleet takes at most %d InstanceRequirements and one per architecture and subnet (%d × %d here): its overrides would list the types the requirements match, which only AWS can tell; give --arch with one architecture, or --instance-types, or --fleet asg or ec2-fleet", maxFleetRequirements, len(s.archList()), c.subnetCount())})
	}
	return errors.Join(errs...)
}

// templateOutputs are the stack's outputs (what Apply returns), as the
// template's.
func (s *state) templateOutputs() entries {
	o := s.outputs()
	var out entries
	add := func(name, desc, value string) {
		if value != "" {
			out = append(out, entry{name, cfnOutput{Description: desc, Value: value}})
		}
	}
	add("URL", "the load balancer's URL", o.URL)
	add("TargetGroupARN", "the target group", o.TargetGroupARN)
	add("LoadBalancerARN", "the load balancer", o.LoadBalancerARN)
	add("FleetID", "the fleet ("+o.FleetType+")", o.FleetID)
	add("InstanceRoleARN", "the instances' role", o.RoleARN)
	add("InstanceProfileARN", "the instances' instance profile", o.InstanceProfile)
	for _, a := range Arches {
		add("LaunchTemplate"+logicalArch(a), "the "+a+" instances' launch template", o.LaunchTemplates[a])
	}
	add("TopicARN", "the topic of interruption warnings and rebalance recommendations", o.TopicARN)
	add("RuleARN", "the rule that sends them to the topic", o.RuleARN)
	add("VPCID", "the VPC", o.VPCID)
	add("ExperimentTemplateID", "the interruption drill's FIS experiment template (spot-agent drill)", o.ExperimentTemplateID)
	add("StopAlarmARN", "the alarm that stops the drill's experiment", o.StopAlarmARN)
	return out
}

// logicalArch is an architecture as a logical id spells it.
func logicalArch(arch string) string {
	if arch == ArchARM {
		return "Arm64"
	}
	return "X8664"
}
