package bootstrap

import (
	"cmp"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws/arn"

	"github.com/spot-agent/spot-agent/agent/secret"
)

// The agent settings whose value changes what the agent asks of AWS, so that
// the instance role bootstrap writes must follow them (agentPolicy).
const (
	envSNSTopic      = "SPOT_AGENT_NOTIFY_SNS_TOPIC"
	envTargetGroups  = "SPOT_AGENT_TARGET_GROUP_ARN"
	envRegion        = "SPOT_AGENT_REGION"
	envNotifyWebhook = "SPOT_AGENT_NOTIFY_WEBHOOK"
	envNotifyBody    = "SPOT_AGENT_NOTIFY_BODY"
)

// secretSettings are the agent settings that take ssm:NAME, a SecureString
// parameter the agent reads with the instance role (notify.SecretFlags): a
// chat webhook's URL is its secret, and a body may carry an API key.
var secretSettings = []string{envNotifyWebhook, envNotifyBody}

// SecretSettings lists the agent settings that take ssm:NAME.
func SecretSettings() []string { return slices.Clone(secretSettings) }

// secretGrant is what the instance role does about a setting that takes ssm:NAME.
const secretGrant = "given as ssm:NAME, ssm:GetParameter is allowed on that parameter, and kms:Decrypt through SSM on --ssm-kms-key-arn when given; a value given in clear makes no AWS call"

// agentSettingsForTheRole are the agent settings --agent-env takes that
// decide which AWS calls the agent makes on which resources, each with what
// the instance role does about it. Every other setting of `spot-agent run`
// makes no AWS call the role would have to allow (a test of the command line
// holds every flag of run to this list or to its own list of such settings).
var agentSettingsForTheRole = map[string]string{
	envSNSTopic:                     "sns:Publish is allowed on that topic",
	envTargetGroups:                 "DeregisterTargets and RegisterTargets are allowed on those groups besides the stack's own; groups in another region are refused",
	envRegion:                       "refused unless it is the stack's region, where its target group, group and topic are",
	"SPOT_AGENT_TAG_KEY":            "ec2:DescribeTags is allowed on every instance, for any key",
	"SPOT_AGENT_LIFECYCLE_HOOK":     "the lifecycle calls are allowed on the stack's group, for any hook",
	"SPOT_AGENT_LIFECYCLE_HOOK_TAG": "the lifecycle calls are allowed on the stack's group, for any hook",
	"SPOT_AGENT_DRY_RUN":            "the agent makes no AWS call",
	"SPOT_AGENT_REGISTER":           "set by bootstrap (EC2 Fleet); RegisterTargets is allowed on the stack's group for every fleet",
	"SPOT_AGENT_STATE_DIR":          "the return into the groups a stop or hibernation left calls RegisterTargets, allowed on the stack's group (and SPOT_AGENT_TARGET_GROUP_ARN's) for every fleet; empty turns the return off",
	envNotifyWebhook:                secretGrant,
	envNotifyBody:                   secretGrant,
}

// AgentSettingsForTheRole lists the agent settings that change the agent's
// AWS calls, sorted.
func AgentSettingsForTheRole() []string { return sortedKeys(agentSettingsForTheRole) }

// AgentSettingForTheRole says what the instance role does about an agent
// setting (SPOT_AGENT_<FLAG>) that changes the agent's AWS calls; false for
// a setting that changes none.
func AgentSettingForTheRole(key string) (string, bool) {
	v, ok := agentSettingsForTheRole[key]
	return v, ok
}

var targetGroupResourceRE = regexp.MustCompile(`^targetgroup/[A-Za-z0-9-]{1,32}/[0-9a-f]{16}$`)

// checkRoleSettings checks the --agent-env settings the instance role must
// follow: a topic that is an SNS topic's ARN, target groups in the stack's
// region, the stack's region.
func (c *Config) checkRoleSettings(bad func(flag, format string, args ...any)) {
	if v := c.AgentEnv[envSNSTopic]; v != "" && !isTopicARN(v, secret.Partition(c.Region)) {
		bad("agent-env", "%s: %q is not an SNS topic's ARN like arn:%s:sns:%s:123456789012:interruptions (the instance role is allowed sns:Publish on it)", envSNSTopic, v, secret.Partition(c.Region), c.Region)
	}
	for _, tg := range c.extraTargetGroups() {
		a, ok := parseTargetGroupARN(tg, secret.Partition(c.Region))
		switch {
		case !ok:
			bad("agent-env", "%s: %q is not a target group's ARN like arn:%s:elasticloadbalancing:%s:123456789012:targetgroup/web/0123456789abcdef", envTargetGroups, tg, secret.Partition(c.Region), c.Region)
		case a.Region != c.Region:
			bad("agent-env", "%s: %s is in %s; the agent on the stack's instances calls Elastic Load Balancing in %s: give groups in %s", envTargetGroups, tg, a.Region, c.Region, c.Region)
		}
	}
	if v, ok := c.AgentEnv[envRegion]; ok && v != c.Region {
		bad("agent-env", "%s=%s: the stack is in %s, and so are its target group, group and topic: leave the setting out (the agent takes the instance's region)", envRegion, v, c.Region)
	}
	checkSecretSettings(c.AgentEnv, secret.Partition(c.Region), c.Region, c.SSMKMSKeyARN, bad)
}

// parameterRefs are the references (ssm:NAME) of the settings that take
// them, by setting; a reference that does not parse is left out
// (checkSecretSettings says why).
func parameterRefs(env map[string]string) map[string]secret.Ref {
	out := map[string]secret.Ref{}
	for _, k := range secretSettings {
		if r, err := secret.ParseRef(env[k]); err == nil {
			out[k] = r
		}
	}
	return out
}

// parameterARNs are the ARNs of the parameters the settings name, sorted,
// each once: a name is the instances' region's and account's.
func parameterARNs(env map[string]string, partition, region, account string) []string {
	var out []string
	for _, r := range parameterRefs(env) {
		if a := r.ARN(partition, region, account); !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	slices.Sort(out)
	return out
}

// kmsKeyRE is a KMS key's ARN: kms:Decrypt is allowed on keys, not aliases.
var kmsKeyRE = regexp.MustCompile(`^arn:(aws|aws-cn|aws-us-gov):kms:([a-z0-9-]+):[0-9]{12}:key/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|mrk-[0-9a-f]{32})$`)

// checkSecretSettings checks the settings given as ssm:NAME for an instance
// role in partition and region: each a parameter's name by AWS's rules, or
// its ARN in the partition (any region or account: a parameter shared with
// this account is read by its ARN); and the KMS key they are encrypted with,
// if given, in their region.
func checkSecretSettings(env map[string]string, partition, region, kmsKey string, bad func(flag, format string, args ...any)) {
	regions := map[string]bool{}
	for _, k := range secretSettings {
		v := env[k]
		if !secret.IsRef(v) {
			continue
		}
		r, err := secret.ParseRef(v)
		switch {
		case err != nil:
			bad("agent-env", "%s: %v", k, err)
			continue
		case r.IsARN() && !strings.HasPrefix(v, secret.Prefix+"arn:"+partition+":"):
			bad("agent-env", "%s: %s is not in the instances' partition %s", k, v, partition)
			continue
		}
		regions[cmp.Or(r.Region(), region)] = true
	}
	if kmsKey == "" {
		return
	}
	m := kmsKeyRE.FindStringSubmatch(kmsKey)
	switch {
	case strings.Contains(kmsKey, ":alias/"):
		bad("ssm-kms-key-arn", "%s is an alias: give the key's ARN (aws kms describe-key --key-id alias/NAME --query KeyMetadata.Arn); kms:Decrypt is allowed on a key, not on an alias", kmsKey)
	case m == nil:
		bad("ssm-kms-key-arn", "%q is not a KMS key's ARN like arn:%s:kms:%s:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab", kmsKey, partition, region)
	case m[1] != partition:
		bad("ssm-kms-key-arn", "%s is not in the instances' partition %s", kmsKey, partition)
	case len(regions) == 0:
		bad("ssm-kms-key-arn", "only with a setting given as ssm:NAME (%s): the key decrypts those parameters", strings.Join(secretSettings, ", "))
	case len(regions) > 1 || !regions[m[2]]:
		bad("ssm-kms-key-arn", "%s is in %s, the parameters given as ssm:NAME in %s: a key decrypts the parameters of its own region", kmsKey, m[2], strings.Join(slices.Sorted(maps.Keys(regions)), " and "))
	}
}

// decryptGrant is the grant of kms:Decrypt on the key, through SSM in the
// key's region only: the key decrypts the parameters for the role when SSM
// asks, never for a direct call.
func decryptGrant(kmsKey string) (key, viaService string) {
	m := kmsKeyRE.FindStringSubmatch(kmsKey)
	if m == nil {
		return "", ""
	}
	suffix := "amazonaws.com"
	if m[1] == "aws-cn" {
		suffix = "amazonaws.com.cn"
	}
	return kmsKey, "ssm." + m[2] + "." + suffix
}

// isTopicARN tells whether v is the ARN of an SNS topic in the partition.
func isTopicARN(v, partition string) bool {
	a, err := arn.Parse(v)
	return err == nil && a.Service == "sns" && a.Partition == partition && accountRE.MatchString(a.AccountID) &&
		a.Region != "" && ruleTopic.check(strings.TrimSuffix(a.Resource, ".fifo")) == ""
}

// parseTargetGroupARN reads the ARN of a target group in the partition.
func parseTargetGroupARN(v, partition string) (arn.ARN, bool) {
	a, err := arn.Parse(v)
	return a, err == nil && a.Service == "elasticloadbalancing" && a.Partition == partition && accountRE.MatchString(a.AccountID) &&
		regionRE.MatchString(a.Region) && targetGroupResourceRE.MatchString(a.Resource)
}

var accountRE = regexp.MustCompile(`^[0-9]{12}$`)

// extraTargetGroups are the groups given with SPOT_AGENT_TARGET_GROUP_ARN,
// sorted, each once.
func (c *Config) extraTargetGroups() []string { return splitGroups(c.AgentEnv[envTargetGroups]) }

// splitGroups reads target groups from comma-separated lists, sorted, each once.
func splitGroups(lists ...string) []string {
	var out []string
	for _, tg := range strings.Split(strings.Join(lists, ","), ",") {
		if tg = strings.TrimSpace(tg); tg != "" && !slices.Contains(out, tg) {
			out = append(out, tg)
		}
	}
	slices.Sort(out)
	return out
}

// snsTopic is the topic the agent publishes to (--agent-env), or "".
func (c *Config) snsTopic() string { return c.AgentEnv[envSNSTopic] }

func (c *Config) describeTargetGroupGrant() string {
	return fmt.Sprintf("overrides the stack's target group tag: the agent leaves %s, not the stack's own group; the instance role's DeregisterTargets is scoped to the stack's own group and these", strings.Join(c.extraTargetGroups(), ", "))
}

// AgentSettings is the agent's settings file on the instances, SPOT_AGENT_<FLAG>
// to value: the --agent-env settings, and what differs from the agent's
// defaults or what the fleet kind or the application needs.
func (c *Config) AgentSettings() map[string]string {
	env := map[string]string{}
	for k, v := range c.AgentEnv {
		env[k] = v
	}
	if c.AgentPort != 80 {
		env["SPOT_AGENT_LISTEN"] = ":" + itoa(c.AgentPort)
	}
	switch {
	case c.MetricsCIDR != "":
		env["SPOT_AGENT_ADMIN_LISTEN"] = ":" + itoa(c.AdminPort)
	case c.AdminPort != 10190:
		env["SPOT_AGENT_ADMIN_LISTEN"] = "127.0.0.1:" + itoa(c.AdminPort)
	}
	if c.AppPort != 0 {
		// The application serves the traffic; the agent's /healthz, which the
		// target group checks, follows the application's health.
		env["SPOT_AGENT_HELLO"] = "false"
		env["SPOT_AGENT_APP_HEALTH_URL"] = c.appHealthURL()
	}
	if c.Fleet == FleetEC2Fleet {
		// EC2 Fleet has no load balancer integration: the agent registers
		// itself, on the application's port when there is one.
		env["SPOT_AGENT_REGISTER"] = "true"
		if c.AppPort != 0 {
			env["SPOT_AGENT_REGISTER_PORT"] = itoa(c.AppPort)
		}
	}
	return env
}
