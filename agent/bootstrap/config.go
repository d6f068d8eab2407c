package bootstrap

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spot-agent/spot-agent/agent/notify"
	"github.com/spot-agent/spot-agent/agent/secret"
	"github.com/spot-agent/spot-agent/userdata"
)

// Fleet kinds.
const (
	FleetASG       = "asg"
	FleetSpotFleet = "spot-fleet"
	FleetEC2Fleet  = "ec2-fleet"
)

// Config is what one stack should be. The command line fills it; the library
// never sees flags.
type Config struct {
	Name   string // the stack: letters, digits, hyphens, at most MaxNameLen
	Region string

	Fleet string // asg, spot-fleet or ec2-fleet
	// InstanceTypes are a fixed list of the fleet's instance types, of either
	// architecture or both; exclusive with Requirements.
	InstanceTypes []string
	// Requirements select the instance types by their attributes
	// (attribute-based instance type selection), on every architecture in
	// Arches; exclusive with InstanceTypes.
	Requirements *Requirements
	// Arches are the architectures a requirements-based fleet spans (x86_64,
	// arm64); empty: every one the agent's packages and AMIs cover.
	Arches            []string
	Min, Max          int     // capacity bounds
	Capacity          int     // initial desired capacity, between Min and Max
	RequestsPerTarget float64 // target tracking value of ALBRequestCountPerTarget
	// CapacityRebalance launches a replacement when an instance gets a
	// rebalance recommendation: the ASG's Capacity Rebalancing, a fleet's
	// launch-before-terminate maintenance strategy (capacityrebalance.go).
	CapacityRebalance bool

	// HealthCheckType is how the ASG tells an unhealthy instance to replace:
	// HealthEC2 (EC2 status checks only) or HealthELB (also the target
	// group's health check); "" is the mode's default (HealthCheckTypeFor).
	HealthCheckType string
	// HealthCheckGrace is how long a new instance is in service before the
	// ASG acts on a failed health check: whole seconds, 0..MaxHealthCheckGrace.
	HealthCheckGrace time.Duration

	DeregistrationDelay int           // seconds, 0..3600
	Stickiness          time.Duration // lb_cookie duration; 0 = off

	VPCID       string   // use this VPC instead of creating one
	Subnets     []string // with VPCID: at least two subnets in two AZs
	VPCCIDR     string   // for a new VPC
	IngressCIDR string   // who may reach the ALB on port 80
	MetricsCIDR string   // who may reach the agent's admin port; empty = nobody

	// AMI is one AMI, for the fleet's only architecture; AMIs are one per
	// architecture. Without either, the Amazon Linux 2023 public SSM
	// parameter of each architecture.
	AMI          string
	AMIs         map[string]string
	Distribution string // al2023, debian or ubuntu: how user-data installs the agent
	// AgentURL is the https:// or s3:// location of the agent's .rpm or .deb;
	// ArchPlaceholder in it stands for each architecture's.
	AgentURL string
	// AgentFiles are local .rpm or .deb packages to upload to the stack's
	// bucket: one, or one per architecture.
	AgentFiles []string
	// AgentRelease is a release version (1.2.3) whose published packages
	// the instances install, each its architecture's: the default of a
	// release build of spot-agent, which takes its own version's.
	AgentRelease string
	// AgentSHA256 pins the packages of AgentURL or AgentRelease as
	// --agent-sha256 gives them (userdata.ParsePins): HEX for the one
	// package, or ARCH=HEX for each architecture's. Without it the digests
	// are the release's checksums.txt's, or an AgentURL's as bootstrap reads
	// it once; AgentFiles' are computed from the files.
	AgentSHA256 []string
	AgentPort   int // the agent's traffic port (its --listen port)
	AdminPort   int // the agent's admin port (its --admin-listen port)

	// AppPort is the port of the application the instances serve beside the
	// agent: the target group's traffic port, while its health check goes to
	// the agent's /healthz on AgentPort, which follows the application's
	// health. 0: no application, the agent's hello page is what is served.
	AppPort int
	// AppHealthPath is the path on AppPort the agent checks (2xx or 3xx is
	// healthy); empty means "/".
	AppHealthPath string
	// AgentEnv holds extra settings for the agent's environment file on the
	// instances, SPOT_AGENT_<FLAG> to value; the settings bootstrap writes
	// itself (ManagesAgentSetting) cannot be among them.
	AgentEnv map[string]string
	// UserDataFile is the user's own user-data, a #cloud-config document or a
	// script starting with #!, combined with the agent's cloud-config into a
	// MIME multipart user-data. It is read (with Options.ReadFile) and checked
	// by Plan and Apply before any AWS call.
	UserDataFile string
	// SSMKMSKeyARN is the customer managed KMS key that encrypts the
	// parameters AgentEnv names as ssm:NAME: the instance role may decrypt
	// with it through SSM. Empty: the AWS managed key aws/ssm, whose key
	// policy lets the account's principals use it through SSM without a grant.
	SSMKMSKeyARN string

	NotifyEmail string // optional email subscription to the topic

	// agentOnly: the configuration of an AgentInstall (UserData), which
	// has no stack and no --agent-file.
	agentOnly bool
}

// DefaultConfig returns the defaults of every setting the command line offers.
func DefaultConfig() Config {
	def := DefaultRequirements()
	return Config{
		Fleet:               FleetASG,
		Requirements:        &def,
		CapacityRebalance:   true,
		Min:                 2,
		Max:                 10,
		Capacity:            2,
		RequestsPerTarget:   100,
		HealthCheckGrace:    DefaultHealthCheckGrace,
		DeregistrationDelay: 90,
		VPCCIDR:             "10.0.0.0/16",
		IngressCIDR:         "0.0.0.0/0",
		Distribution:        "al2023",
		AgentPort:           80,
		AdminPort:           10190,
		AppHealthPath:       "/",
	}
}

// ASG health check types.
const (
	HealthEC2 = "ec2"
	HealthELB = "elb"
)

// DefaultHealthCheckGrace is the grace period of an ASG's health checks: the
// console's default, and room for a first boot (cloud-init, the package
// install, the agent's start), which takes one to three minutes.
// https://docs.aws.amazon.com/autoscaling/ec2/userguide/health-check-grace-period.html
const DefaultHealthCheckGrace = 300 * time.Second

// MaxHealthCheckGrace bounds --health-check-grace: AWS documents no maximum,
// and a longer grace would leave a broken instance in service for hours.
const MaxHealthCheckGrace = 2 * time.Hour

// minBootGrace is the shortest grace in which an instance's first boot
// reliably installs and starts the agent.
const minBootGrace = 3 * time.Minute

// HealthCheckTypeFor is the ASG health check type: the configured one, else
// the mode's default. Without an application the target group checks the
// agent, which answers as soon as it runs: ELB checks replace an instance
// whose agent never came up. With an application (--app-port) the agent's
// /healthz follows the application, whose start bootstrap cannot know (a
// CodeDeploy deployment may come minutes later): EC2 checks keep such an
// instance, out of the load balancer's rotation, instead of replacing it over
// and over.
func (c *Config) HealthCheckTypeFor() string {
	switch {
	case c.HealthCheckType != "":
		return c.HealthCheckType
	case c.AppPort != 0:
		return HealthEC2
	}
	return HealthELB
}

// AppAgentPort is the agent's port the command line defaults to with an
// application (--app-port), which then owns port 80.
const AppAgentPort = 8081

// managedAgentSettings are the agent settings bootstrap writes itself, each
// with the flags that decide it.
var managedAgentSettings = map[string]string{
	"SPOT_AGENT_LISTEN":         "--agent-port",
	"SPOT_AGENT_ADMIN_LISTEN":   "--admin-port and --metrics-cidr",
	"SPOT_AGENT_REGISTER":       "--fleet: EC2 Fleet instances register themselves",
	"SPOT_AGENT_REGISTER_PORT":  "--app-port (EC2 Fleet instances register on it)",
	"SPOT_AGENT_HELLO":          "--app-port (an application replaces the hello page)",
	"SPOT_AGENT_APP_HEALTH_URL": "--app-port and --app-health-path",
}

// ManagedAgentSettings lists the agent settings bootstrap writes itself.
func ManagedAgentSettings() []string { return sortedKeys(managedAgentSettings) }

// ManagesAgentSetting tells whether bootstrap writes the agent setting key
// (SPOT_AGENT_<FLAG>) itself, from its own flags, so that --agent-env may not.
func ManagesAgentSetting(key string) bool {
	_, ok := managedAgentSettings[key]
	return ok
}

// appHealthURL is the agent's --app-health-url with an application.
func (c *Config) appHealthURL() string {
	p := c.AppHealthPath
	if p == "" {
		p = "/"
	}
	return "http://127.0.0.1:" + itoa(c.AppPort) + p
}

// trafficPort is the target group's port: the application's, else the agent's.
func (c *Config) trafficPort() int {
	if c.AppPort != 0 {
		return c.AppPort
	}
	return c.AgentPort
}

// MaxNameLen keeps derived names within AWS's limits: the ALB and target
// group names (NAME-alb, NAME-tg) within 32 characters, the bucket name
// (spot-agent-NAME-ACCOUNT-REGION) within 63.
const MaxNameLen = 20

// NoticeWindow is how long a Spot interruption notice gives; the deregistration
// delay must fit in it, less the agent's exit margin.
const NoticeWindow = 120 * time.Second

// agentExitMargin is the agent's default --exit-margin.
const agentExitMargin = 10 * time.Second

var (
	nameRE         = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)
	instanceTypeRE = regexp.MustCompile(`^[a-z][a-z0-9-]*\.[a-z0-9]+$`)
	regionRE       = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-\d+$`)
	vpcIDRE        = regexp.MustCompile(`^vpc-[0-9a-f]{8,17}$`)
	subnetIDRE     = regexp.MustCompile(`^subnet-[0-9a-f]{8,17}$`)
	amiRE          = regexp.MustCompile(`^ami-[0-9a-f]{8,17}$`)
	emailRE        = regexp.MustCompile(`^[^@\s]+@[^@\s]+\.[^@\s]+$`)
	agentEnvKeyRE  = regexp.MustCompile(`^SPOT_AGENT_[A-Z0-9_]+$`)
)

// FlagError is a configuration error that names the flag to fix.
type FlagError struct {
	Flag    string
	Problem string
}

func (e *FlagError) Error() string { return fmt.Sprintf("--%s: %s", e.Flag, e.Problem) }

// ValidateName checks a stack name alone (status and teardown need no more):
// the stack's own rule, then every name derived from it against the rule of
// its resource (names.go), such as a load balancer's, which must not begin
// with "internal-", or a security group's, which must not begin with "sg-".
func ValidateName(name string) error {
	switch {
	case name == "":
		return &FlagError{"name", "is required: the stack's name, e.g. --name workshop"}
	case len(name) > MaxNameLen:
		return &FlagError{"name", fmt.Sprintf("%q is longer than %d characters (derived names must fit the load balancer's 32)", name, MaxNameLen)}
	case !nameRE.MatchString(name) || strings.HasSuffix(name, "-") || strings.Contains(name, "--"):
		return &FlagError{"name", fmt.Sprintf("%q: use lowercase letters, digits and single hyphens, starting with a letter (it names a bucket and a load balancer)", name)}
	}
	return checkDerivedNames(name, "")
}

// ValidateRegion checks a region name; empty is an error: nothing defaults to a
// region, so no command reaches an account by accident.
func ValidateRegion(region string) error {
	if region == "" {
		return &FlagError{"region", "no region: pass --region or set AWS_REGION (or a profile's region)"}
	}
	if !regionRE.MatchString(region) {
		return &FlagError{"region", fmt.Sprintf("%q is not a region name like us-east-1", region)}
	}
	return nil
}

// Validate checks every field and returns all problems, each naming its flag.
func (c *Config) Validate() error {
	var errs []error
	bad := func(flag, format string, args ...any) {
		errs = append(errs, &FlagError{Flag: flag, Problem: fmt.Sprintf(format, args...)})
	}
	if err := ValidateName(c.Name); err != nil {
		errs = append(errs, err)
	}
	if err := ValidateRegion(c.Region); err != nil {
		errs = append(errs, err)
	} else if len(c.AgentFiles) > 0 && ValidateName(c.Name) == nil {
		// The bucket's name ends with the region.
		if err := checkDerivedNames(c.Name, c.Region); err != nil {
			errs = append(errs, err)
		}
	}
	switch c.Fleet {
	case FleetASG, FleetSpotFleet, FleetEC2Fleet:
	default:
		bad("fleet", "%q is not asg, spot-fleet or ec2-fleet", c.Fleet)
	}
	c.validateSelection(bad)
	if c.Min < 0 {
		bad("min", "%d is negative", c.Min)
	}
	if c.Max < 1 || c.Max > 1000 {
		bad("max", "%d is out of range 1..1000", c.Max)
	}
	if c.Min > c.Max {
		bad("min", "%d is above --max %d", c.Min, c.Max)
	}
	if c.Capacity < c.Min || c.Capacity > c.Max {
		bad("capacity", "%d is outside --min %d .. --max %d", c.Capacity, c.Min, c.Max)
	}
	switch c.HealthCheckType {
	case "", HealthEC2, HealthELB:
	default:
		bad("health-check-type", "%q is not ec2 or elb", c.HealthCheckType)
	}
	if c.HealthCheckType != "" && c.Fleet != FleetASG {
		bad("health-check-type", "only with --fleet asg: Spot Fleet and EC2 Fleet do not replace instances on health checks here")
	}
	if g := c.HealthCheckGrace; g < 0 || g > MaxHealthCheckGrace || g%time.Second != 0 {
		bad("health-check-grace", "%s: give whole seconds, 0s..%s (0 turns the grace off)", g, MaxHealthCheckGrace)
	}
	if c.RequestsPerTarget <= 0 {
		bad("requests-per-target", "%v must be positive", c.RequestsPerTarget)
	}
	if c.DeregistrationDelay < 0 || c.DeregistrationDelay > 3600 {
		bad("deregistration-delay", "%d is out of range 0..3600 seconds", c.DeregistrationDelay)
	}
	if c.Stickiness != 0 && (c.Stickiness < time.Second || c.Stickiness > 7*24*time.Hour) {
		bad("stickiness", "%s is out of range 1s..168h (0 turns stickiness off)", c.Stickiness)
	}
	if c.VPCID != "" {
		if !vpcIDRE.MatchString(c.VPCID) {
			bad("vpc-id", "%q is not a VPC id like vpc-0123456789abcdef0", c.VPCID)
		}
		if len(c.Subnets) < 2 {
			bad("subnets", "--vpc-id needs at least two subnets in two Availability Zones")
		}
	} else if len(c.Subnets) > 0 {
		bad("subnets", "only with --vpc-id")
	}
	for _, s := range c.Subnets {
		if !subnetIDRE.MatchString(s) {
			bad("subnets", "%q is not a subnet id like subnet-0123456789abcdef0", s)
		}
	}
	if p, err := netip.ParsePrefix(c.VPCCIDR); err != nil || !p.Addr().Is4() || p.Masked() != p {
		bad("vpc-cidr", "%q is not an IPv4 network like 10.0.0.0/16", c.VPCCIDR)
	} else if p.Bits() < 16 || p.Bits() > 26 {
		bad("vpc-cidr", "%q: the prefix must be /16../26 (the two subnets are its halves)", c.VPCCIDR)
	}
	if _, err := parseCIDR(c.IngressCIDR); err != nil {
		bad("ingress-cidr", "%v", err)
	}
	if c.MetricsCIDR != "" {
		if _, err := parseCIDR(c.MetricsCIDR); err != nil {
			bad("metrics-cidr", "%v", err)
		}
	}
	if c.AMI != "" && !amiRE.MatchString(c.AMI) {
		bad("ami", "%q is not an AMI id like ami-0123456789abcdef0", c.AMI)
	}
	for _, a := range sortedKeys(c.AMIs) {
		switch {
		case !slices.Contains(Arches, a):
			bad("ami", "%q is not an architecture: give x86_64=ami-… or arm64=ami-…", a)
		case !amiRE.MatchString(c.AMIs[a]):
			bad("ami", "%s=%q is not an AMI id like ami-0123456789abcdef0", a, c.AMIs[a])
		}
	}
	if c.AMI != "" && len(c.AMIs) > 0 {
		bad("ami", "give one AMI, or one per architecture (x86_64=ami-…,arm64=ami-…), not both")
	}
	c.validateDistribution(bad)
	if _, err := userdata.ParsePins(c.AgentSHA256); err != nil {
		errs = append(errs, sha256FlagError(err))
	}
	if c.validatePackages(bad) && (len(c.InstanceTypes) > 0) != (c.Requirements != nil) {
		c.validateArches(bad)
	}
	for flag, p := range map[string]int{"agent-port": c.AgentPort, "admin-port": c.AdminPort} {
		if p < 1 || p > 65535 {
			bad(flag, "%d is not a port", p)
		}
	}
	if c.AgentPort == c.AdminPort {
		bad("admin-port", "%d is also --agent-port: the metrics need a port of their own; leave --admin-port out (%d) or pick another", c.AdminPort, DefaultConfig().AdminPort)
	}
	c.validateApp(bad)
	c.validateAgentEnv(bad)
	c.checkRoleSettings(bad)
	if c.NotifyEmail != "" && !emailRE.MatchString(c.NotifyEmail) {
		bad("notify-email", "%q is not an email address", c.NotifyEmail)
	}
	return errors.Join(errs...)
}

// validateDistribution checks --distribution.
func (c *Config) validateDistribution(bad func(flag, format string, args ...any)) {
	switch c.Distribution {
	case "al2023", "debian", "ubuntu":
	default:
		bad("distribution", "%q is not al2023, debian or ubuntu", c.Distribution)
	}
}

// validateApp checks --app-port and --app-health-path.
func (c *Config) validateApp(bad func(flag, format string, args ...any)) {
	if c.AppPort == 0 {
		if c.AppHealthPath != "" && c.AppHealthPath != "/" {
			bad("app-health-path", "only with --app-port: without an application the agent has nothing to check")
		}
		return
	}
	if c.AppPort < 0 || c.AppPort > 65535 {
		bad("app-port", "%d is not a port (0: no application, the agent's hello page is served)", c.AppPort)
		return
	}
	if c.AgentPort == c.AppPort {
		bad("agent-port", "%d is also --app-port: the agent needs a port of its own beside the application; leave --agent-port out (%d with --app-port) or pick another", c.AgentPort, AppAgentPort)
	}
	if c.AdminPort == c.AppPort {
		bad("admin-port", "%d is also --app-port: the agent's metrics need a port the application does not use; leave --admin-port out (%d) or pick another", c.AdminPort, DefaultConfig().AdminPort)
	}
	p := c.AppHealthPath
	switch {
	case p == "":
	case !strings.HasPrefix(p, "/"):
		bad("app-health-path", "%q must start with /, e.g. /health", p)
	case strings.ContainsFunc(p, func(r rune) bool { return r <= ' ' || r == 0x7f }):
		bad("app-health-path", "%q has a space or control character: percent-encode it", p)
	case strings.Contains(p, "#"):
		bad("app-health-path", "%q has a #fragment, which is never sent to the application", p)
	default:
		if _, err := url.Parse(c.appHealthURL()); err != nil {
			bad("app-health-path", "%q does not make a URL: %v", p, err)
		}
	}
}

// validateAgentEnv checks --agent-env: names of the agent's settings that
// bootstrap does not write itself, one line each. Whether a name is a flag of
// `spot-agent run` is the command line's to check: it has the flags.
func (c *Config) validateAgentEnv(bad func(flag, format string, args ...any)) {
	for _, k := range sortedKeys(c.AgentEnv) {
		if ManagesAgentSetting(k) {
			bad("agent-env", "%s is set by bootstrap itself, from %s: it cannot be given here", k, managedAgentSettings[k])
		}
	}
	c.validateAgentEnvValues(bad)
}

// validateAgentEnvValues checks that each --agent-env setting is named like
// one, and its value is one line of UTF-8 text.
func (c *Config) validateAgentEnvValues(bad func(flag, format string, args ...any)) {
	for _, k := range sortedKeys(c.AgentEnv) {
		v := c.AgentEnv[k]
		switch {
		case !agentEnvKeyRE.MatchString(k):
			bad("agent-env", "%q is not an agent setting: give SPOT_AGENT_<FLAG>=VALUE for a flag of 'spot-agent run', e.g. SPOT_AGENT_DRAIN_ON=rebalance", k)
		case strings.ContainsAny(v, "\n\r"):
			bad("agent-env", "%s: the value has a line break: the settings file holds one line per setting (join the commands with ; or &&)", k)
		case strings.ContainsFunc(v, func(r rune) bool { return r < ' ' || r == 0x7f }):
			i := strings.IndexFunc(v, func(r rune) bool { return r < ' ' || r == 0x7f })
			bad("agent-env", "%s: the value has a control character (%q at byte %d)", k, v[i], i)
		case !utf8.ValidString(v):
			bad("agent-env", "%s: the value is not UTF-8 (systemd would ignore the setting)", k)
		}
	}
}

// Warnings are settings that work but defeat the stack's purpose.
func (c *Config) Warnings() []string {
	var w []string
	if d := time.Duration(c.DeregistrationDelay) * time.Second; d+agentExitMargin > NoticeWindow {
		w = append(w, fmt.Sprintf("--deregistration-delay %d: the drain does not fit the %s Spot notice (less the agent's %s exit margin): connections still open then are cut", c.DeregistrationDelay, NoticeWindow, agentExitMargin))
	}
	if c.Fleet == FleetASG && c.HealthCheckTypeFor() == HealthELB {
		switch {
		case c.AppPort != 0:
			w = append(w, fmt.Sprintf("--health-check-type elb with --app-port: Auto Scaling replaces every instance whose application does not answer within --health-check-grace %s of entering service (boot, cloud-init, your install and the application's start), over and over if it never does", c.HealthCheckGrace))
		case c.HealthCheckGrace < minBootGrace:
			w = append(w, fmt.Sprintf("--health-check-grace %s: a first boot (cloud-init, the package install, the agent's start) can take longer; an instance whose agent is not answering by then is replaced, over and over", c.HealthCheckGrace))
		}
	}
	if c.Fleet == FleetEC2Fleet && c.Min != c.Max {
		w = append(w, "EC2 Fleet has no target tracking (Application Auto Scaling does not scale it): its capacity stays at --capacity")
	}
	if drain := c.drainOnRebalanceWarning(); drain != "" {
		w = append(w, drain)
	}
	for _, k := range sortedKeys(c.AgentEnv) {
		why, ok := rewiringAgentSettings[k]
		if k == envTargetGroups {
			why, ok = c.describeTargetGroupGrant(), true
		}
		if ok {
			w = append(w, fmt.Sprintf("--agent-env %s: %s", k, why))
		}
	}
	return append(w, SecretWarnings(c.AgentEnv)...)
}

// urlRE finds the URLs in a setting: a webhook, or one in a command or a body.
var urlRE = regexp.MustCompile("https?://[^\\s\"'`<>]+")

// secretIn says why the setting k=v, given in clear, looks like it holds a
// secret, or "" when it does not (a reference, ssm:NAME, holds none).
func secretIn(k, v string) string {
	if secret.IsRef(v) {
		return ""
	}
	for _, u := range urlRE.FindAllString(v, -1) {
		if why := notify.SecretInURL(u); why != "" {
			return why
		}
	}
	if k == envNotifyBody {
		return notify.SecretInBody(v)
	}
	return ""
}

// shownSetting is the value of a setting as the plan shows it: one that
// looks like it holds a secret (secretIn) with its URLs cut to their hosts
// (notify.Redacted), or not at all. The plan goes to terminals and CI logs;
// the warning says where the value goes.
func shownSetting(k, v string) string {
	if secretIn(k, v) == "" {
		return v
	}
	cut := urlRE.ReplaceAllStringFunc(v, func(u string) string {
		if notify.SecretInURL(u) != "" {
			return notify.Redacted(u)
		}
		return u
	})
	if cut == v || k == envNotifyBody {
		return "(not shown: it looks like it holds a secret)"
	}
	return cut
}

// SecretWarnings are the agent settings given in clear whose value looks
// like it holds a secret (notify.SecretInURL: a chat webhook's token in its
// URL; notify.SecretInBody: a body's API key), each with what to do: those
// that take ssm:NAME are told to; for the others, what uses the secret should
// read it on the instance. The user-data holds the settings in clear, for
// anyone allowed ec2:DescribeLaunchTemplateVersions and every process on the
// instances (instance metadata). bootstrap puts them in its plan; policy,
// user-data and --template print them on stderr.
func SecretWarnings(env map[string]string) []string {
	var w []string
	for _, k := range sortedKeys(env) {
		v := env[k]
		why := secretIn(k, v)
		if why == "" {
			continue
		}
		const clear = "it is written in clear into the launch template's user-data (readable by anyone allowed ec2:DescribeLaunchTemplateVersions, and by every process on the instances through instance metadata) and the instances' settings file"
		if slices.Contains(secretSettings, k) {
			name := "/spot-agent/" + strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(k, "SPOT_AGENT_")), "_", "-")
			w = append(w, fmt.Sprintf("--agent-env %s: the value looks like it holds a secret (%s), and %s: keep it in SSM Parameter Store as a SecureString instead, aws ssm put-parameter --name %s --type SecureString --value '...', and give %s=ssm:%s (the instance role is allowed to read that parameter)",
				k, why, clear, name, k, name))
			continue
		}
		w = append(w, fmt.Sprintf("--agent-env %s: the value looks like it holds a secret (%s), and %s: only %s take ssm:NAME: keep the secret out of the setting (a hook's command can read it from a root-only file, or from the parameter store, when it runs)",
			k, why, clear, strings.Join(secretSettings, " and ")))
	}
	return w
}

// rewiringAgentSettings are agent settings --agent-env accepts that undo what
// the stack wires up for the agent, each with what it costs.
var rewiringAgentSettings = map[string]string{
	"SPOT_AGENT_TAG_KEY":            "the instances carry the stack's target group in the " + TargetGroupTag + " tag; another key finds no group to leave",
	"SPOT_AGENT_DRY_RUN":            "the agent makes no AWS call: on a notice it neither deregisters nor completes the lifecycle action",
	"SPOT_AGENT_LIFECYCLE_HOOK":     "the stack's termination lifecycle hook is named in the instance's tag; another name is never completed",
	"SPOT_AGENT_LIFECYCLE_HOOK_TAG": "the stack names its termination lifecycle hook in the " + HookTag + " tag; another tag finds none",
}

func parseCIDR(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil || !p.Addr().Is4() || p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("%q is not an IPv4 CIDR like 203.0.113.0/24", s)
	}
	return p, nil
}

// MaxInstanceTypes bounds --instance-types: an Auto Scaling group takes up to
// 40 instance types.
// https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_LaunchTemplateOverrides.html
const MaxInstanceTypes = 40

// MaxFleetOverrides bounds a maintain EC2 Fleet's overrides across its launch
// templates. A fixed list makes one override per type and subnet.
// https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_FleetLaunchTemplateConfigRequest.html
const MaxFleetOverrides = 300

// subnetCount is how many subnets the fleet launches into: the given ones in
// an existing VPC, else the new VPC's.
func (c *Config) subnetCount() int {
	if c.VPCID != "" {
		return len(c.Subnets)
	}
	return len(subnetComponents)
}

// validateSelection checks how the fleet selects its instance types: a fixed
// list or requirements, not both.
func (c *Config) validateSelection(bad func(flag, format string, args ...any)) {
	switch {
	case len(c.InstanceTypes) > 0 && c.Requirements != nil:
		bad("instance-types", "give instance types or requirements (--vcpus, --memory, --burstable, --instance-generations, --max-spot-price-percent), not both")
	case len(c.InstanceTypes) == 0 && c.Requirements == nil:
		bad("instance-types", "give instance types, or requirements with --vcpus and --memory")
	}
	for i, t := range c.InstanceTypes {
		switch {
		case !instanceTypeRE.MatchString(t):
			bad("instance-types", "%q is not an instance type like c5.large", t)
		case slices.Contains(c.InstanceTypes[:i], t):
			bad("instance-types", "%s is given twice", t)
		}
	}
	if len(c.InstanceTypes) > MaxInstanceTypes {
		bad("instance-types", "%d types: an Auto Scaling group takes at most %d (requirements take every type that matches)", len(c.InstanceTypes), MaxInstanceTypes)
	} else if n := len(c.InstanceTypes) * c.subnetCount(); c.Fleet == FleetEC2Fleet && n > MaxFleetOverrides {
		bad("instance-types", "%d types in %d subnets are %d EC2 Fleet overrides (one per type and subnet), and a fleet takes at most %d: give fewer types or subnets, or requirements (--vcpus, --memory), which take one override per architecture", len(c.InstanceTypes), c.subnetCount(), n, MaxFleetOverrides)
	}
	if c.Requirements != nil {
		c.Requirements.validate(bad)
	}
	c.validateArchNames(bad)
	if len(c.Arches) > 0 && len(c.InstanceTypes) > 0 {
		bad("arch", "only with requirements: with --instance-types each type's own architecture counts")
	}
}

// validatePackages checks where the agent's packages come from; false when
// that is too broken to check the architectures against.
func (c *Config) validatePackages(report func(flag, format string, args ...any)) bool {
	ok := true
	bad := func(flag, format string, args ...any) {
		ok = false
		report(flag, format, args...)
	}
	want := ".rpm"
	if c.Distribution == "debian" || c.Distribution == "ubuntu" {
		want = ".deb"
	}
	switch {
	case c.AgentURL != "" && len(c.AgentFiles) > 0:
		bad("agent-url", "give --agent-url or --agent-file, not both")
	case c.AgentURL == "" && c.AgentRelease == "" && c.agentOnly:
		bad("agent-url", "instances need the agent's package, and a development build of spot-agent has no release packages to default to: "+
			"give --agent-url with the https:// or s3:// URL of a %s (%s in it for each architecture's; 'make package' builds them)", want, ArchPlaceholder)
	case c.AgentURL == "" && len(c.AgentFiles) == 0 && c.AgentRelease == "":
		var files []string
		for _, a := range c.plannedArches() {
			files = append(files, fmt.Sprintf("--agent-file \"$(ls %s)\"", c.distPackage(a)))
		}
		bad("agent-url", "instances need the agent's package, and a development build of spot-agent has no release packages to default to: "+
			"run 'make package', then give %s; or give --agent-url with an https:// or s3:// URL of a %s (%s in it for each architecture's)", strings.Join(files, " "), want, ArchPlaceholder)
	case len(c.AgentSHA256) > 0 && len(c.AgentFiles) > 0:
		bad("agent-sha256", "the digests of --agent-file packages are computed from the files bootstrap uploads: leave --agent-sha256 out")
	case c.AgentRelease != "" && (c.AgentURL != "" || len(c.AgentFiles) > 0):
		bad("agent-url", "the release's packages (%s) or --agent-url or --agent-file, not two", c.AgentRelease)
	case c.AgentRelease != "":
		if _, err := userdata.ReleasePackageURLs(c.AgentRelease, userdata.Distribution(c.Distribution)); err != nil {
			bad("agent-url", "no release packages to default to (%v): give --agent-url or --agent-file", err)
		}
	case c.AgentURL != "":
		u, err := url.Parse(strings.ReplaceAll(c.AgentURL, ArchPlaceholder, "arch"))
		if err != nil || (u.Scheme != "https" && u.Scheme != "s3") || u.Host == "" || u.Path == "" || u.User != nil {
			bad("agent-url", "%q is not an https:// URL or an s3://BUCKET/KEY URI", c.AgentURL)
		} else if path.Ext(u.Path) != want {
			bad("agent-url", "%q is not a %s package, which --distribution %s installs", c.AgentURL, want, c.Distribution)
		} else if strings.Contains(u.Host, "arch") && strings.Contains(c.AgentURL, ArchPlaceholder) && !strings.Contains(u.Path, "arch") {
			bad("agent-url", "%s is in the host of %q: put it in the path", ArchPlaceholder, c.AgentURL)
		}
	default:
		archs := map[string]string{}
		for _, f := range c.AgentFiles {
			a := PackageArch(f)
			switch {
			case path.Ext(f) != want:
				bad("agent-file", "%q is not a %s package, which --distribution %s installs", f, want, c.Distribution)
			case len(c.AgentFiles) > 1 && a == "":
				bad("agent-file", "%q: its name does not say its architecture (nfpm's names end in _amd64.deb, _arm64.deb, .x86_64.rpm or .aarch64.rpm)", f)
			case archs[a] != "":
				bad("agent-file", "%q and %q are both %s packages: give one per architecture", archs[a], f, a)
			}
			archs[a] = f
		}
		if len(c.AgentFiles) > len(Arches) {
			bad("agent-file", "%d files: give one package, or one per architecture (x86_64 and arm64)", len(c.AgentFiles))
		}
	}
	return ok
}

// bootstrapping tells a configuration to build (bootstrap's, with its
// instance selection) from the name and region alone that status and
// teardown run with.
func (c *Config) bootstrapping() bool {
	return c.Name != "" && (len(c.InstanceTypes) > 0 || c.Requirements != nil)
}

// validateArchNames checks the names in --arch.
func (c *Config) validateArchNames(bad func(flag, format string, args ...any)) {
	for i, a := range c.Arches {
		switch {
		case !slices.Contains(Arches, a):
			bad("arch", "%q is not x86_64 or arm64", a)
		case slices.Contains(c.Arches[:i], a):
			bad("arch", "%s is given twice", a)
		}
	}
}
