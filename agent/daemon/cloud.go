package daemon

import (
	"context"
	"fmt"
	"log/slog"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"

	"github.com/spot-agent/spot-agent/agent/imds"
	"github.com/spot-agent/spot-agent/agent/lifecycle"
	"github.com/spot-agent/spot-agent/agent/metrics"
	"github.com/spot-agent/spot-agent/agent/tags"
	"github.com/spot-agent/spot-agent/agent/targets"
)

// asgNameTag is set by Auto Scaling on every instance it launches.
const asgNameTag = "aws:autoscaling:groupName"

// cloud is the AWS side of the agent: who this instance is, and the parts that
// call AWS for it. It is made once, when the identity is known, and never
// changes after; the loop, the drain and the registration all read the same
// value (through a latch).
type cloud struct {
	id        imds.Identity
	cfg       Config
	tags      *tags.Reader
	resolver  *targets.Resolver
	completer *lifecycle.Completer
}

// awsClients are the API clients the cloud calls, as the small interfaces of
// the packages that call them.
type awsClients struct {
	ec2 tags.EC2
	elb targets.ELB
	asg lifecycle.API
}

// newCloud puts the cloud together from its clients.
func newCloud(cfg Config, id imds.Identity, clients awsClients, md tags.IMDS, m *metrics.Metrics, log *slog.Logger) *cloud {
	c := &cloud{id: id, cfg: cfg}
	c.tags = &tags.Reader{InstanceID: id.InstanceID, IMDS: md, EC2: clients.ec2, Observer: m}
	c.resolver = &targets.Resolver{
		InstanceID: id.InstanceID,
		ELB:        clients.elb,
		Groups:     c.groups,
		Observer:   m,
		Log:        log.With("component", "targets"),
		Refresh:    cfg.RefreshInterval,
		Timeout:    resolveTimeout,
		DryRun:     cfg.DryRun,
	}
	c.completer = &lifecycle.Completer{API: clients.asg, Observer: m, Log: log.With("component", "lifecycle")}
	return c
}

// sdkClients builds the AWS SDK clients for the instance's region (or
// --region), or the dry-run stand-ins that only log.
func sdkClients(ctx context.Context, cfg Config, id imds.Identity, log *slog.Logger) (awsClients, error) {
	if cfg.DryRun {
		dl := log.With("component", "dry-run")
		return awsClients{ec2: dryEC2{dl}, elb: dryELB{dl}, asg: dryASG{dl}}, nil
	}
	region := cfg.Region
	if region == "" {
		region = id.Region
	}
	opts := []func(*awsconfig.LoadOptions) error{
		awsconfig.WithRegion(region),
		// The agent retries with its own backoff, bounded by the notice's
		// deadline; SDK retries underneath would hide attempts and delays.
		awsconfig.WithRetryMaxAttempts(1),
	}
	if cfg.IMDSEndpoint != "" {
		opts = append(opts, awsconfig.WithEC2IMDSEndpoint(cfg.IMDSEndpoint))
	}
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return awsClients{}, fmt.Errorf("load AWS configuration: %w", err)
	}
	return awsClients{ec2: ec2.NewFromConfig(awsCfg), elb: elbv2.NewFromConfig(awsCfg), asg: autoscaling.NewFromConfig(awsCfg)}, nil
}

// groups returns the target groups: --target-group-arn, else the instance tag.
func (c *cloud) groups(ctx context.Context) ([]string, string, error) {
	if len(c.cfg.TargetGroupARNs) > 0 {
		arns, err := targets.ParseARNs(c.cfg.TargetGroupARNs...)
		return arns, "flag", err
	}
	vals, src, err := c.tags.Lookup(ctx, c.cfg.TagKey)
	if err != nil {
		return nil, string(src), err
	}
	v, ok := vals[c.cfg.TagKey]
	if !ok {
		return nil, string(src), fmt.Errorf("%w: instance %s has no %s tag (looked in %s): tag it with the target group ARN(s), comma-separated, or pass --target-group-arn",
			targets.ErrNoGroups, c.id.InstanceID, c.cfg.TagKey, src)
	}
	arns, err := targets.ParseARNs(v)
	if err != nil {
		return nil, string(src), fmt.Errorf("%w: tag %s on %s: %w", targets.ErrNoGroups, c.cfg.TagKey, c.id.InstanceID, err)
	}
	return arns, string(src), nil
}

// groupARNs are the target groups as last resolved.
func (c *cloud) groupARNs() []string {
	res, _ := c.resolver.Current()
	arns := make([]string, 0, len(res.Groups))
	for _, g := range res.Groups {
		arns = append(arns, g.ARN)
	}
	return arns
}

// resolved reports whether the target groups have been resolved at least once.
func (c *cloud) resolved() bool {
	_, ok := c.resolver.Current()
	return ok
}

// lifecycleHook finds this instance's ASG termination lifecycle hook: the
// group from the aws:autoscaling:groupName tag, the hook from --lifecycle-hook
// or its tag.
func (c *cloud) lifecycleHook(ctx context.Context) (lifecycle.Hook, error) {
	h := lifecycle.Hook{InstanceID: c.id.InstanceID, Name: c.cfg.LifecycleHook}
	keys := []string{asgNameTag}
	if h.Name == "" && c.cfg.LifecycleHookTag != "" {
		keys = append(keys, c.cfg.LifecycleHookTag)
	}
	vals, _, err := c.tags.Lookup(ctx, keys...)
	if err != nil {
		return h, fmt.Errorf("find lifecycle hook: %w", err)
	}
	h.Group = vals[asgNameTag]
	if h.Name == "" {
		h.Name = vals[c.cfg.LifecycleHookTag]
	}
	return h, h.Validate()
}
