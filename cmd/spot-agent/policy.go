//go:build !agentonly

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spot-agent/spot-agent/agent/bootstrap"
	"github.com/spot-agent/spot-agent/agent/daemon"
)

func policyCommand(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("policy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var role bootstrap.AgentRole
	groups := &listFlag{}
	agentEnv := &agentEnvFlag{repeatedFlag{name: "agent-env"}}
	fs.Var(groups, "target-group-arn", "a target group the instances are in (their "+bootstrap.TargetGroupTag+" tag's value), repeatable or comma-separated; the region and account of the other grants are the groups'")
	fs.StringVar(&role.ASGName, "asg-name", "", "the Auto Scaling group whose termination lifecycle actions the agent completes (none: a Spot Fleet, an EC2 Fleet or single instances)")
	fs.Var(agentEnv, "agent-env", "an agent setting of the instances, SPOT_AGENT_<FLAG>=VALUE as in their settings file (repeatable): SPOT_AGENT_NOTIFY_SNS_TOPIC, SPOT_AGENT_TARGET_GROUP_ARN and a secret given as ssm:/NAME (SPOT_AGENT_NOTIFY_WEBHOOK, SPOT_AGENT_NOTIFY_BODY) widen the policy; every setting is checked as 'spot-agent run' would")
	fs.StringVar(&role.AgentURL, "agent-url", "", "where the instances fetch the agent's package: an s3://BUCKET/KEY is allowed s3:GetObject ("+bootstrap.ArchPlaceholder+" in it for each architecture's)")
	fs.StringVar(&role.Distribution, "distribution", "al2023", "with --agent-url: al2023 (rpm) or debian or ubuntu (deb), which spell "+bootstrap.ArchPlaceholder+" differently")
	fs.StringVar(&role.SSMKMSKeyARN, "ssm-kms-key-arn", "", "the customer managed KMS key of the parameters --agent-env names as ssm:/NAME: allowed kms:Decrypt through SSM (default: the AWS managed key aws/ssm, which needs no grant)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, `Usage: spot-agent policy --target-group-arn ARN [--asg-name NAME] [--agent-env KEY=VALUE ...]

Print the identity policy (JSON) of the instance role the agent needs on a
fleet built elsewhere, for these settings: DeregisterTargets and
RegisterTargets on its target groups, the read-only calls, the lifecycle
calls on its Auto Scaling group, sns:Publish on its topic, s3:GetObject on
its package, ssm:GetParameter on the parameters its secrets are read from
(and kms:Decrypt through SSM on their key). It is the policy 'spot-agent bootstrap' gives its own instance
role, from the same builder, and it makes no AWS call. Put it on the role:
  spot-agent policy ... > policy.json
  aws iam put-role-policy --role-name ROLE --policy-name spot-agent --policy-document file://policy.json
Every flag can also be set as SPOT_AGENT_<FLAG>.

Flags:`)
		fs.PrintDefaults()
	}
	if err := parse(fs, args); err != nil {
		return err
	}
	env, err := agentEnv.fileSettings()
	if role.AgentURL == "" && given(fs, "distribution") {
		err = errors.Join(err, &bootstrap.FlagError{Flag: "distribution", Problem: "only with --agent-url: it says how the package's architecture is spelt"})
	}
	if err != nil {
		return &usageError{err}
	}
	role.TargetGroupARNs, role.AgentEnv = groups.values, env
	doc, err := role.Policy()
	if err != nil {
		return explain(err)
	}
	printWarnings(stderr, bootstrap.SecretWarnings(env))
	return writeJSON(stdout, json.RawMessage(doc))
}

// printWarnings writes each warning on a line of its own, as bootstrap's
// plan does: on stderr, beside a document printed on stdout.
func printWarnings(w io.Writer, warnings []string) {
	for _, s := range warnings {
		fmt.Fprintf(w, "warning: %s\n", s)
	}
}

// fileSettings are the settings (agentEnvFlag.settings) of an instance's
// whole settings file, each checked as run reads it (checkRunSettings).
func (f *agentEnvFlag) fileSettings() (map[string]string, error) {
	env, err := f.settings()
	if err != nil {
		return env, err
	}
	return env, checkRunSettings(env)
}

// checkRunSettings checks settings of the agent (SPOT_AGENT_<FLAG> to value)
// as 'spot-agent run' reads them from its settings file: each a flag of run,
// each value its flag's, all of them together a configuration run starts
// with. Every problem is a *bootstrap.FlagError of --agent-env that names the
// setting.
func checkRunSettings(env map[string]string) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var cfg daemon.Config
	var lf logFlags
	finish := runFlags(fs, &cfg, &lf)
	flags := map[string]string{} // setting → flag
	fs.VisitAll(func(f *flag.Flag) { flags[envName(f.Name)] = f.Name })
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, &bootstrap.FlagError{Flag: "agent-env", Problem: fmt.Sprintf(format, args...)})
	}
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		name, ok := flags[k]
		if !ok {
			hint := closestSetting(k, flags)
			if f, prefixed := flags[envPrefix+k]; prefixed {
				hint = fmt.Sprintf("; did you mean %s%s (--%s)?", envPrefix, k, f)
			}
			bad("%s is not a setting of 'spot-agent run' ('spot-agent run -h' lists them)%s", k, hint)
			continue
		}
		if err := fs.Set(name, env[k]); err != nil {
			bad("%s=%s: %s (the setting of --%s)", k, env[k], valueProblem(fs.Lookup(name), err), name)
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	finish()
	if b := cfg.Notify.Body; b != "" && !strings.Contains(b, "${") {
		// A file on the instance, read by the agent at its start: what can
		// be checked here is the rest, with an inline body in its place.
		cfg.Notify.Body = `"${summary}"`
	}
	if _, err := lf.logger(); err != nil { // "--log-level: ..."
		flagName, problem, _ := strings.Cut(strings.TrimPrefix(errors.Unwrap(err).Error(), "--"), ": ")
		bad("%s: %s (the setting of --%s)", envName(flagName), problem, flagName)
	}
	var fe *daemon.FlagError
	for _, e := range flatten(cfg.Validate()) {
		if errors.As(e, &fe) {
			bad("%s: %s (the setting of --%s)", envName(fe.Flag), fe.Problem, fe.Flag)
		} else {
			bad("%v", e)
		}
	}
	return errors.Join(errs...)
}

// valueProblem says what is wrong with a flag's value in words: the flag
// package says "parse error" of a duration, a number or a boolean.
func valueProblem(f *flag.Flag, err error) string {
	g, ok := f.Value.(flag.Getter)
	if !ok { // a flag type of run's own says what it wants
		return err.Error()
	}
	switch g.Get().(type) {
	case time.Duration:
		return "not a duration like 500ms, 30s or 2m"
	case bool:
		return "not true or false"
	case int, int64, uint, uint64:
		return "not a whole number"
	case float64:
		return "not a number"
	}
	return err.Error()
}

// flatten lists the errors inside an errors.Join.
func flatten(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// closestSetting names the setting of flags nearest to key as a hint to
// append to an error; "" when none is near.
func closestSetting(key string, flags map[string]string) string {
	setting, name := nearestSetting(key, flags)
	if setting == "" {
		return ""
	}
	return fmt.Sprintf("; did you mean %s (--%s)?", setting, name)
}
