//go:build !agentonly

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/spot-agent/spot-agent/agent/bootstrap"
	"github.com/spot-agent/spot-agent/agent/daemon"
)

// requirementFlags are the flags of attribute-based instance type selection,
// which --instance-types replaces.
var requirementFlags = []string{"vcpus", "memory", "burstable", "instance-generations", "max-spot-price-percent", "arch"}

// bootstrapFlags registers every flag of `spot-agent bootstrap` on fs, filling
// cfg. The returned function, once parsing is done, copies the list flags into
// cfg, reads the instance selection and --agent-env, and gives the agent port
// its default with --app-port.
func bootstrapFlags(fs *flag.FlagSet, cfg *bootstrap.Config, sf *stackFlags, dryRun *bool) (finish func() error) {
	def := bootstrap.DefaultConfig()
	*cfg = def
	req := bootstrap.DefaultRequirements()
	types := &listFlag{}
	vcpus, memory := req.VCPUs.String(), req.MemoryText()
	generations := &listFlag{values: req.Generations, fromEnv: true} // the default is replaced, not extended
	arches := &listFlag{}
	amis := &listFlag{}
	agentFiles := &repeatedFlag{name: "agent-file"}
	agentSHA256 := &repeatedFlag{name: "agent-sha256"}
	subnets := &listFlag{}
	agentEnv := &agentEnvFlag{repeatedFlag{name: "agent-env"}}
	sf.register(fs, true)
	fs.StringVar(&cfg.Fleet, "fleet", def.Fleet, "fleet kind: asg (Auto Scaling group, MixedInstancesPolicy), spot-fleet (the workshop's Spot Fleet request) or ec2-fleet (EC2 Fleet; the agent registers itself)")
	fs.Var(types, "instance-types", "a fixed list of instance types instead of requirements, comma-separated or repeated; x86 and Graviton types may mix (each architecture gets its launch template)")
	fs.StringVar(&vcpus, "vcpus", vcpus, "requirement: vCPUs per instance, N or MIN..MAX (MIN.. for no maximum)")
	fs.StringVar(&memory, "memory", memory, "requirement: memory per instance, with its unit, e.g. 8GiB or 4GiB..16GiB")
	fs.StringVar(&req.Burstable, "burstable", req.Burstable, "requirement: burstable (T) instance types included, excluded or required")
	fs.Var(generations, "instance-generations", "requirement: current and/or previous instance generations")
	fs.Var(asInt32(&req.SpotMaxPricePercent), "max-spot-price-percent", "requirement: price protection, no type whose Spot price is more than this percentage above the cheapest matching C, M or R type's (0: AWS's default, 100)")
	fs.Var(arches, "arch", "requirement: the architectures, x86_64 and/or arm64 (Graviton), a launch template each (default: every one the agent's packages and --ami cover)")
	fs.IntVar(&cfg.Min, "min", def.Min, "minimum capacity")
	fs.IntVar(&cfg.Max, "max", def.Max, "maximum capacity")
	fs.IntVar(&cfg.Capacity, "capacity", def.Capacity, "initial desired capacity, between --min and --max")
	fs.Float64Var(&cfg.RequestsPerTarget, "requests-per-target", def.RequestsPerTarget, "target tracking value of ALBRequestCountPerTarget")
	fs.BoolVar(&cfg.CapacityRebalance, "capacity-rebalance", def.CapacityRebalance, "launch a replacement when an instance gets a rebalance recommendation: the ASG's Capacity Rebalancing (the at-risk instance then drains through the lifecycle hook), a fleet's launch-before-terminate")
	fs.StringVar(&cfg.HealthCheckType, "health-check-type", "", "ASG: ec2 (replace an instance only when its EC2 status checks fail) or elb (also when the target group's check of the agent's /healthz fails after --health-check-grace) (default: elb, or ec2 with --app-port: an application's start is its own)")
	fs.DurationVar(&cfg.HealthCheckGrace, "health-check-grace", def.HealthCheckGrace, "ASG: how long a new instance is in service before a failed health check replaces it, whole seconds, 0s..2h: it must cover the first boot (cloud-init, the install, the agent's start), and with --health-check-type elb --app-port the application's start too")
	fs.IntVar(&cfg.DeregistrationDelay, "deregistration-delay", def.DeregistrationDelay, "target group deregistration delay in seconds, 0..3600 (keep it under the 120 s notice)")
	fs.DurationVar(&cfg.Stickiness, "stickiness", 0, "load balancer cookie stickiness duration, e.g. 1h (0: off)")
	fs.StringVar(&cfg.VPCID, "vpc-id", "", "use this VPC instead of creating one (with --subnets)")
	fs.Var(subnets, "subnets", "with --vpc-id: two or more public subnets in two Availability Zones")
	fs.StringVar(&cfg.VPCCIDR, "vpc-cidr", def.VPCCIDR, "network of a new VPC; its two halves are the subnets")
	fs.StringVar(&cfg.IngressCIDR, "ingress-cidr", def.IngressCIDR, "who may reach the load balancer on port 80")
	fs.StringVar(&cfg.MetricsCIDR, "metrics-cidr", "", "who may reach the agent's metrics on the instances' --admin-port (default: nobody; the agent then listens on loopback only)")
	fs.Var(amis, "ami", "AMI id for the fleet's one architecture, or one per architecture as x86_64=ami-…,arm64=ami-… (default: the latest Amazon Linux 2023 of each, from its public SSM parameter)")
	fs.StringVar(&cfg.Distribution, "distribution", def.Distribution, "the AMI's distribution: al2023, debian or ubuntu (decides rpm or deb)")
	fs.StringVar(&cfg.AgentURL, "agent-url", "", "https:// or s3:// URL of the agent's .rpm (al2023) or .deb (debian, ubuntu) that instances install; {arch} in it stands for each architecture's (amd64/arm64 in a .deb, x86_64/aarch64 in an .rpm) (default: a release build's own release packages, each instance its architecture's)")
	fs.Var(agentFiles, "agent-file", "local .rpm or .deb to upload to a private bucket of the stack instead of --agent-url; give it twice for both architectures (read from the file names)")
	fs.Var(agentSHA256, "agent-sha256", "the SHA-256 the instances check the package against before they install it: HEX, or ARCH=HEX (amd64, arm64) for each architecture's package of an --agent-url with {arch} or a release (default: a release's from its checksums.txt, an --agent-url's as bootstrap reads it now; an --agent-file's from the file)")
	fs.IntVar(&cfg.AgentPort, "agent-port", def.AgentPort, fmt.Sprintf("the agent's port on the instances: the target group's, or with --app-port the one its health check goes to (then %d unless given)", bootstrap.AppAgentPort))
	fs.IntVar(&cfg.AdminPort, "admin-port", def.AdminPort, "the agent's metrics port on the instances")
	fs.IntVar(&cfg.AppPort, "app-port", 0, "the port of your application on the instances: the target group sends the traffic there and health-checks the agent, whose /healthz follows the application's health and notices (0: none, the agent's hello page is served)")
	fs.StringVar(&cfg.AppHealthPath, "app-health-path", def.AppHealthPath, "with --app-port: the path the agent checks the application on (2xx or 3xx is healthy)")
	fs.Var(agentEnv, "agent-env", "an agent setting for the instances, SPOT_AGENT_<FLAG>=VALUE for a flag of 'spot-agent run', e.g. SPOT_AGENT_DRAIN_ON=rebalance (repeatable); a secret (SPOT_AGENT_NOTIFY_WEBHOOK, SPOT_AGENT_NOTIFY_BODY) as ssm:/NAME of a SecureString parameter, which the instance role is allowed to read")
	fs.StringVar(&cfg.SSMKMSKeyARN, "ssm-kms-key-arn", "", "the customer managed KMS key of the parameters --agent-env names as ssm:/NAME: the instance role may decrypt with it through SSM (default: the AWS managed key aws/ssm, which needs no grant)")
	fs.StringVar(&cfg.UserDataFile, "user-data-file", "", "your own user-data, a #cloud-config document or a #! script; it runs before the agent's install (the two go into one MIME multipart user-data)")
	fs.StringVar(&cfg.NotifyEmail, "notify-email", "", "subscribe this address to the stack's interruption topic")
	fs.BoolVar(dryRun, "dry-run", false, "print the plan (create, adopt, unchanged, update, with key settings) and change nothing")
	return func() error {
		cfg.InstanceTypes, cfg.Subnets, cfg.AgentFiles, cfg.AgentSHA256 = types.values, subnets.values, agentFiles.resolve(), agentSHA256.resolve()
		selErr := selection(fs, cfg, &req, vcpus, memory, generations.values, arches.values)
		amiErr := parseAMIs(cfg, amis.values)
		if cfg.AppPort != 0 && !given(fs, "agent-port") {
			cfg.AgentPort = bootstrap.AppAgentPort // the application owns 80
		}
		if cfg.AgentURL == "" && len(cfg.AgentFiles) == 0 {
			// A release build installs its own release's packages; a
			// development build has none (Validate says how to make one).
			v, _, _ := buildInfo()
			if rel, ok := releaseVersion(v); ok {
				cfg.AgentRelease = rel
			}
		}
		env, err := agentEnv.settings()
		err = errors.Join(selErr, amiErr, err)
		cfg.AgentEnv = env
		if given(fs, "health-check-grace") && cfg.Fleet != bootstrap.FleetASG {
			err = errors.Join(err, &bootstrap.FlagError{Flag: "health-check-grace", Problem: "only with --fleet asg: Spot Fleet and EC2 Fleet do not replace instances on health checks here"})
		}
		return err
	}
}

// selection reads the instance selection: a fixed --instance-types list, or
// requirements, not both.
func selection(fs *flag.FlagSet, cfg *bootstrap.Config, req *bootstrap.Requirements, vcpus, memory string, generations, arches []string) error {
	var errs []error
	if len(cfg.InstanceTypes) > 0 {
		cfg.Requirements = nil
		var both []string
		for _, f := range requirementFlags {
			if given(fs, f) {
				both = append(both, "--"+f)
			}
		}
		if len(both) > 0 {
			errs = append(errs, &bootstrap.FlagError{Flag: "instance-types", Problem: fmt.Sprintf("give instance types or requirements (%s), not both", strings.Join(both, ", "))})
		}
		return errors.Join(errs...)
	}
	var err error
	if req.VCPUs, err = bootstrap.ParseRange(vcpus, bootstrap.ParseCount); err != nil {
		errs = append(errs, &bootstrap.FlagError{Flag: "vcpus", Problem: err.Error() + ": give N or MIN..MAX, e.g. 2..4"})
	}
	if req.MemoryMiB, err = bootstrap.ParseRange(memory, bootstrap.ParseMiB); err != nil {
		errs = append(errs, &bootstrap.FlagError{Flag: "memory", Problem: err.Error() + ": give a size or MIN..MAX, e.g. 4GiB..16GiB"})
	}
	req.Generations = generations
	cfg.Requirements, cfg.Arches = req, arches
	return errors.Join(errs...)
}

// parseAMIs reads --ami: one bare AMI id, or ARCH=AMI pairs.
func parseAMIs(cfg *bootstrap.Config, values []string) error {
	var errs []error
	for _, v := range values {
		arch, ami, ok := strings.Cut(v, "=")
		switch {
		case !ok && cfg.AMI != "":
			errs = append(errs, &bootstrap.FlagError{Flag: "ami", Problem: fmt.Sprintf("%s and %s: give one AMI, or one per architecture as x86_64=ami-…,arm64=ami-…", cfg.AMI, v)})
		case !ok:
			cfg.AMI = v
		case cfg.AMIs[arch] != "":
			errs = append(errs, &bootstrap.FlagError{Flag: "ami", Problem: fmt.Sprintf("%s is given twice", arch)})
		default:
			if cfg.AMIs == nil {
				cfg.AMIs = map[string]string{}
			}
			cfg.AMIs[arch] = ami
		}
	}
	return errors.Join(errs...)
}

// int32Flag is an int32 flag.
type int32Flag struct{ p *int32 }

func asInt32(p *int32) *int32Flag { return &int32Flag{p} }

func (f *int32Flag) String() string {
	if f == nil || f.p == nil {
		return "0"
	}
	return strconv.FormatInt(int64(*f.p), 10)
}

func (f *int32Flag) Set(v string) error {
	n, err := strconv.ParseInt(v, 10, 32)
	if err != nil {
		return fmt.Errorf("%q is not a whole number", v)
	}
	*f.p = int32(n)
	return nil
}

// repeatedFlag is a flag given once per value, commas and all (a file
// name). A value from the environment is replaced, not extended, by the
// command line.
type repeatedFlag struct {
	name   string
	values []string
}

func (f *repeatedFlag) String() string { return strings.Join(f.values, " ") }

func (f *repeatedFlag) Set(v string) error {
	f.values = append(f.values, v)
	return nil
}

// resolve returns the values, the environment's dropped when the command
// line gave any (the environment is applied first).
func (f *repeatedFlag) resolve() []string {
	if v, ok := os.LookupEnv(envName(f.name)); ok && len(f.values) > 1 && f.values[0] == v {
		return f.values[1:]
	}
	return f.values
}

// releaseVersion tells whether v, this build's version, is a release's: a
// semantic version (goreleaser's ldflags give 1.2.3, go install v1.2.3),
// not a snapshot's (1.2.4-next) or a pseudo-version (v0.0.0-2026...-abcdef),
// which have no published packages.
func releaseVersion(v string) (string, bool) {
	v = strings.TrimPrefix(v, "v")
	if !releaseRE.MatchString(v) || strings.HasSuffix(v, "-next") {
		return "", false
	}
	return v, true
}

var releaseRE = regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.]+)?$`)

// given reports whether a flag was set, on the command line or from the environment.
func given(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// agentEnvFlag is --agent-env KEY=VALUE, repeatable; a value is taken whole,
// commas and all. A value from the environment (SPOT_AGENT_AGENT_ENV, one
// setting) is replaced, not extended, by the command line.
type agentEnvFlag struct{ repeatedFlag }

// settings returns the settings, each checked to be KEY=VALUE, given once, and
// for a SPOT_AGENT_ key, the setting of a flag of `spot-agent run` (unless
// bootstrap writes it itself, which Config.Validate refuses with the flag to
// use instead).
func (f *agentEnvFlag) settings() (map[string]string, error) {
	values := f.resolve()
	if len(values) == 0 {
		return nil, nil
	}
	run := runSettings()
	env := map[string]string{}
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, &bootstrap.FlagError{Flag: "agent-env", Problem: fmt.Sprintf(format, args...)})
	}
	for _, kv := range values {
		k, v, ok := strings.Cut(kv, "=")
		switch _, dup := env[k]; {
		case !ok || k == "":
			bad("%q is not KEY=VALUE, e.g. SPOT_AGENT_DRAIN_ON=rebalance", kv)
			continue
		case dup:
			bad("%s is given twice", k)
		case strings.HasPrefix(k, envPrefix) && !run[k] && !bootstrap.ManagesAgentSetting(k):
			flagName := strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(k, envPrefix)), "_", "-")
			if norm := envName(flagName); run[norm] {
				bad("%s: the setting of --%s is spelt %s", k, flagName, norm)
				break
			}
			bad("%s is not a setting of 'spot-agent run': it has no --%s flag ('spot-agent run -h' lists them)%s", k, flagName, closestSetting(k, runFlagNames()))
		}
		env[k] = v
	}
	return env, errors.Join(errs...)
}

// runSettings are the environment names (SPOT_AGENT_<FLAG>) of the flags of
// `spot-agent run`, from its own flag set.
func runSettings() map[string]bool {
	names := map[string]bool{}
	for k := range runFlagNames() {
		names[k] = true
	}
	return names
}

// runFlagNames are the flags of `spot-agent run` by their environment names.
func runFlagNames() map[string]string {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	runFlags(fs, &daemon.Config{}, &logFlags{})
	names := map[string]string{}
	fs.VisitAll(func(f *flag.Flag) { names[envName(f.Name)] = f.Name })
	return names
}

func bootstrapCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bootstrap", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg bootstrap.Config
	var sf stackFlags
	var dryRun bool
	finish := bootstrapFlags(fs, &cfg, &sf, &dryRun)
	var tmpl templateFlag
	fs.Var(&tmpl, "template", "print the stack as a CloudFormation template instead of building it, with no AWS call: --template or --template=json for JSON, --template=yaml for YAML (AMIs, a given VPC and subnets are parameters)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, `Usage: spot-agent bootstrap --name NAME [--region REGION] [flags]

Build the workshop's stack, or bring it to these flags: VPC and subnets,
security groups, load balancer, target group and listener, instance role,
a launch template per architecture with the agent's user-data, the fleet,
target tracking, and an SNS topic with an EventBridge rule for interruption
warnings. The fleet takes every instance type, x86 and Graviton, that has
--vcpus and --memory (attribute-based selection; --dry-run lists them with
a Spot placement score per Availability Zone), or the --instance-types
given. Every
resource carries the tag spot-agent:stack=NAME and is found by it again:
re-running changes nothing, and says so. With --app-port, the instances'
own application (set up by --user-data-file) serves the traffic and the
agent its health and drain. With --template it prints the same stack as a
CloudFormation template (JSON, or YAML with --template=yaml) and calls no
AWS API: deploy it with 'aws cloudformation deploy --capabilities
CAPABILITY_NAMED_IAM'.
Every flag can also be set as SPOT_AGENT_<FLAG>.

Flags:`)
		fs.PrintDefaults()
	}
	if err := parse(fs, args); err != nil {
		if a := fs.Arg(0); tmpl.format != "" && (a == bootstrap.TemplateJSON || a == bootstrap.TemplateYAML) {
			return &usageError{fmt.Errorf("--template takes its format after an equals sign: --template=%s", a)}
		}
		return err
	}
	if err := finish(); err != nil {
		return &usageError{err}
	}
	cfg.Name = sf.name
	if err := sf.validate(true); err != nil {
		return &usageError{err}
	}
	if tmpl.format != "" {
		return templateCommand(ctx, fs, cfg, &sf, tmpl.format, stdout, stderr)
	}
	awsCfg, err := sf.awsConfig(ctx)
	if err != nil {
		return err
	}
	cfg.Region = awsCfg.Region
	if err := validateBootstrap(cfg); err != nil {
		return err
	}
	rec := bootstrap.NewRecorder()
	clients, err := sf.clientsOf(ctx, awsCfg, rec)
	if err != nil {
		return err
	}
	st := bootstrap.New(cfg, clients, bootstrap.Options{Progress: stderr, PollInterval: sf.poll, Timeout: sf.timeout})
	if dryRun {
		p, err := st.Plan(ctx)
		if err != nil {
			return explain(err)
		}
		if sf.output == "json" {
			return writeJSON(stdout, struct {
				DryRun bool `json:"dry_run"`
				*bootstrap.Plan
				Calls callSummary `json:"calls"`
			}{true, p, summarize(rec)})
		}
		p.WriteText(stdout)
		reads, _ := rec.Totals()
		fmt.Fprintf(stdout, "dry run: %d read calls, no change made\n", reads)
		return nil
	}
	start := time.Now()
	res, err := st.Apply(ctx)
	if err != nil {
		if res != nil && res.Plan != nil && errors.Is(err, bootstrap.ErrRecreate) {
			res.Plan.WriteText(stderr)
		}
		return explain(err)
	}
	calls := summarize(rec)
	if sf.output == "json" {
		return writeJSON(stdout, struct {
			*bootstrap.Result
			Calls callSummary `json:"calls"`
		}{res, calls})
	}
	if calls.Mutating == 0 {
		fmt.Fprintf(stdout, "stack %s is up to date: no change made (%d read calls, 0 mutating)\n", cfg.Name, calls.Reads)
	} else {
		fmt.Fprintf(stdout, "stack %s ready in %s (%d mutating calls, %d reads)\n", cfg.Name, time.Since(start).Round(100*time.Millisecond), calls.Mutating, calls.Reads)
	}
	res.Outputs.WriteText(stdout)
	return nil
}

// validateBootstrap checks the configuration (Config.Validate), then the
// settings file the instances get, bootstrap's own settings with
// --agent-env's, as run reads it: one typo would otherwise stop the agent
// on every instance.
func validateBootstrap(cfg bootstrap.Config) error {
	if err := cfg.Validate(); err != nil {
		return &usageError{err}
	}
	if err := checkRunSettings(cfg.AgentSettings()); err != nil {
		return &usageError{err}
	}
	return nil
}

// templateFlag is --template[=json|yaml]: a boolean flag that also takes the
// template's format.
type templateFlag struct{ format string }

func (f *templateFlag) String() string { return f.format }

func (f *templateFlag) IsBoolFlag() bool { return true }

func (f *templateFlag) Set(v string) error {
	switch v {
	case "true", bootstrap.TemplateJSON:
		f.format = bootstrap.TemplateJSON
	case bootstrap.TemplateYAML:
		f.format = bootstrap.TemplateYAML
	case "false":
		f.format = ""
	default:
		return fmt.Errorf("%q is not json or yaml (--template alone is JSON)", v)
	}
	return nil
}

// apiOnlyFlags are bootstrap's flags that only drive AWS, which a template
// does not, each with what to do instead.
var apiOnlyFlags = []struct{ flag, instead string }{
	{"dry-run", "the template is what would be built, and nothing is looked up: leave --dry-run out"},
	{"poll-interval", "CloudFormation does the waiting: leave it out"},
	{"timeout", "CloudFormation does the waiting: leave it out"},
	{"output", "the template's format is --template=json or --template=yaml"},
	{"o", "the template's format is --template=json or --template=yaml"},
}

// templateCommand prints the stack as a CloudFormation template: the
// configuration checked as for a build, the region resolved as for a build
// (it checks the ARNs --agent-env names), and no AWS call. The plan's
// warnings go to stderr.
func templateCommand(ctx context.Context, fs *flag.FlagSet, cfg bootstrap.Config, sf *stackFlags, format string, stdout, stderr io.Writer) error {
	var errs []error
	for _, f := range apiOnlyFlags {
		if given(fs, f.flag) {
			errs = append(errs, &bootstrap.FlagError{Flag: f.flag, Problem: "does not go with --template: " + f.instead})
		}
	}
	if err := errors.Join(errs...); err != nil {
		return &usageError{err}
	}
	awsCfg, err := sf.awsConfig(ctx)
	if err != nil {
		return err
	}
	cfg.Region = awsCfg.Region
	if err := validateBootstrap(cfg); err != nil {
		return err
	}
	t, err := bootstrap.New(cfg, bootstrap.Clients{}, bootstrap.Options{}).Template(ctx)
	if err != nil {
		return explain(err)
	}
	printWarnings(stderr, cfg.Warnings())
	return t.Write(stdout, format)
}
