package bootstrap

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	cwtypes "github.com/aws/aws-sdk-go-v2/service/cloudwatch/types"
	"github.com/aws/aws-sdk-go-v2/service/fis"
	fistypes "github.com/aws/aws-sdk-go-v2/service/fis/types"
	"github.com/aws/aws-sdk-go-v2/service/iam"
)

// The stack's interruption drill (spot-agent drill): an AWS Fault Injection
// Service experiment template that sends a Spot interruption notice to one
// of the stack's instances, the role FIS runs it with, and the CloudWatch
// alarm that stops it. What is relied on, from AWS's documentation:
//
//   - the action aws:ec2:send-spot-instance-interruptions takes
//     durationBeforeInterruption, ISO 8601 from PT2M to PT15M; over two
//     minutes the instance gets a rebalance recommendation at once and the
//     interruption notice two minutes before the end; its target is
//     SpotInstances, of resource type aws:ec2:spot-instance
//     (https://docs.aws.amazon.com/fis/latest/userguide/fis-actions-reference.html#send-spot-instance-interruptions);
//   - the action needs ec2:SendSpotInstanceInterruptions on the instances and
//     ec2:DescribeInstances, which supports no resource (the same page; the
//     Service Authorization Reference for EC2);
//   - a target selects resources by tags and filters (State.Name running),
//     then ALL, COUNT(n) or PERCENT(n) of them
//     (https://docs.aws.amazon.com/fis/latest/userguide/targets.html);
//   - a stop condition is a CloudWatch alarm: FIS stops the experiment when
//     the alarm enters the ALARM state
//     (https://docs.aws.amazon.com/fis/latest/userguide/stop-conditions.html);
//   - the role trusts fis.amazonaws.com, narrowed by aws:SourceAccount and
//     aws:SourceArn (https://docs.aws.amazon.com/fis/latest/userguide/getting-started-iam-service-role.html).
const (
	// InterruptActionID is FIS's action that interrupts Spot Instances.
	InterruptActionID = "aws:ec2:send-spot-instance-interruptions"
	// SpotTargetType is the resource type of its targets.
	SpotTargetType = "aws:ec2:spot-instance"
	// SpotTargetKey is the action's target key, and the template's target name.
	SpotTargetKey = "SpotInstances"
	// InterruptActionName is the template's name for its one action.
	InterruptActionName = "interrupt"
	// DurationParameter is the action's parameter for the notice's lead time.
	DurationParameter = "durationBeforeInterruption"
	// DefaultInterruptCount is how many instances the template interrupts:
	// one, never all of them.
	DefaultInterruptCount = 1
	// DefaultNotice is the template's notice: EC2's two minutes.
	DefaultNotice = 2 * time.Minute
	// MinNotice and MaxNotice bound durationBeforeInterruption.
	MinNotice = 2 * time.Minute
	MaxNotice = 15 * time.Minute

	fisPolicyName = "spot-agent-fis"
	// alarmSource is a stop condition's source for a CloudWatch alarm.
	alarmSource = "aws:cloudwatch:alarm"
)

// ISODuration writes d as FIS's ISO 8601 duration: PT2M, PT2M30S.
func ISODuration(d time.Duration) string {
	m, s := int(d/time.Minute), int((d%time.Minute)/time.Second)
	out := "PT"
	if m > 0 {
		out += fmt.Sprintf("%dM", m)
	}
	if s > 0 || m == 0 {
		out += fmt.Sprintf("%dS", s)
	}
	return out
}

// ParseISODuration reads the minutes and seconds of an ISO 8601 duration
// (PT2M, PT90S, PT1M30S), as FIS writes its parameters.
func ParseISODuration(v string) (time.Duration, error) {
	rest, ok := strings.CutPrefix(v, "PT")
	if !ok || rest == "" {
		return 0, fmt.Errorf("%q is not an ISO 8601 duration of minutes and seconds (PT2M)", v)
	}
	var d time.Duration
	for rest != "" {
		i := strings.IndexAny(rest, "HMS")
		if i <= 0 {
			return 0, fmt.Errorf("%q is not an ISO 8601 duration of minutes and seconds (PT2M)", v)
		}
		var n int
		if _, err := fmt.Sscanf(rest[:i], "%d", &n); err != nil || fmt.Sprint(n) != rest[:i] {
			return 0, fmt.Errorf("%q is not an ISO 8601 duration of minutes and seconds (PT2M)", v)
		}
		unit := map[byte]time.Duration{'H': time.Hour, 'M': time.Minute, 'S': time.Second}[rest[i]]
		d += time.Duration(n) * unit
		rest = rest[i+1:]
	}
	return d, nil
}

// SelectionCount is FIS's selection mode for n instances.
func SelectionCount(n int) string { return fmt.Sprintf("COUNT(%d)", n) }

// StopThreshold is the stop alarm's threshold for a drill that interrupts n
// instances of a fleet whose minimum is min: the group's healthy hosts may
// fall by the n interrupted, not below that. A normal drill at the minimum
// takes the count to min − n until the replacements are healthy, which does
// not trip it; fewer than that (another instance failing, a replacement
// that never comes while a second drill runs) does. It is never below 1:
// an empty group always stops the experiment.
func StopThreshold(min, n int) float64 { return float64(max(1, min-n)) }

// Names of the drill's resources.
func (s *state) fisRoleName() string { return s.prefixed() + "-fis" }
func (s *state) alarmName() string   { return s.prefixed() + "-healthy-hosts" }

func (s *state) alarmARNFor() string {
	return fmt.Sprintf("arn:%s:cloudwatch:%s:%s:alarm:%s", s.partition, s.region, s.account, s.alarmName())
}

// fisTrustPolicy lets FIS assume the role for this account's experiments
// only (the confused deputy: https://docs.aws.amazon.com/IAM/latest/UserGuide/confused-deputy.html).
func (s *state) fisTrustPolicy() string {
	return mustJSON(policyDoc{Version: "2012-10-17", Statement: []policyStatement{{
		Effect: "Allow", Principal: map[string]string{"Service": "fis.amazonaws.com"}, Action: []string{"sts:AssumeRole"},
		Condition: map[string]any{
			"StringEquals": map[string]string{"aws:SourceAccount": s.account},
			"ArnLike":      map[string]string{"aws:SourceArn": fmt.Sprintf("arn:%s:fis:%s:%s:experiment/*", s.partition, s.region, s.account)},
		},
	}}})
}

// fisPolicy lets FIS interrupt the stack's instances only (those carrying
// its tag), and find them.
func (s *state) fisPolicy() string {
	return mustJSON(policyDoc{Version: "2012-10-17", Statement: []policyStatement{
		{Sid: "InterruptTheStacksInstances", Effect: "Allow", Action: []string{"ec2:SendSpotInstanceInterruptions"},
			Resource:  s.ec2ARN("instance/*"),
			Condition: map[string]any{"StringEquals": map[string]string{"aws:ResourceTag/" + StackTag: s.cfg.Name}}},
		{Sid: "ResolveTargets", Effect: "Allow", Action: []string{"ec2:DescribeInstances"}, Resource: "*"},
	}})
}

// fisRole is the role the experiment runs with.
type fisRole struct {
	found  bool
	policy string
}

func (r *fisRole) name() string { return "fis-role" }

func (r *fisRole) find(ctx context.Context, s *state) (bool, error) {
	role, err := s.findRole(ctx, s.fisRoleName())
	if err != nil || role == nil {
		return false, err
	}
	r.found, s.fisRoleARN = true, deref(role.Arn)
	r.policy, err = s.rolePolicy(ctx, s.fisRoleName(), fisPolicyName)
	return err == nil, err
}

func (r *fisRole) plan(s *state) Change {
	c := Change{Resource: r.name(), ID: s.fisRoleARN, Settings: []Setting{
		{"role", s.fisRoleName()}, {"trust", "fis.amazonaws.com, this account's experiments"}, {"policy", s.fisPolicy()},
	}}
	if !r.found {
		c.Action = Create
		return c
	}
	if !sameJSON(r.policy, s.fisPolicy()) {
		c.Diffs = append(c.Diffs, Diff{"policy", orNone(r.policy), s.fisPolicy()})
	}
	return c.updateOnDiffs()
}

func (r *fisRole) input(s *state) *iam.CreateRoleInput {
	in := s.roleInput(s.fisRoleName(), "fis.amazonaws.com", "the interruption drill's experiments (spot-agent drill)")
	in.AssumeRolePolicyDocument = aws.String(s.fisTrustPolicy())
	return in
}

func (r *fisRole) create(ctx context.Context, s *state) error {
	out, err := s.c.IAM.CreateRole(ctx, r.input(s))
	if err != nil {
		return err
	}
	r.found, s.fisRoleARN = true, deref(out.Role.Arn)
	return r.update(ctx, s, Change{})
}

func (r *fisRole) update(ctx context.Context, s *state, _ Change) error {
	if err := s.putRolePolicy(ctx, s.fisRoleName(), fisPolicyName, r.policy, s.fisPolicy()); err != nil {
		return err
	}
	r.policy = s.fisPolicy()
	return nil
}

func (r *fisRole) template(s *state, b *cfnBuilder) error {
	b.resource("FISRole", "AWS::IAM::Role", roleTemplate(r.input(s), fisPolicyName, s.fisPolicy()))
	s.fisRoleARN = b.att("FISRole", "Arn")
	return nil
}

func (r *fisRole) delete(ctx context.Context, s *state) error {
	return s.deleteRole(ctx, s.fisRoleName())
}

// stopAlarm is the experiment's stop condition: the target group's healthy
// hosts, each minute's minimum, below StopThreshold of the stack's minimum
// and the template's one instance. A minute without data (a new load
// balancer) does not count against it.
type stopAlarm struct {
	found bool
	have  cwtypes.MetricAlarm
}

func (r *stopAlarm) name() string { return "stop-alarm" }

// dimensions are the ALB metrics' dimensions of the stack's group and load
// balancer: the ARNs' ends (targetgroup/NAME/ID, app/NAME/ID).
func (s *state) alarmDimensions() []cwtypes.Dimension {
	tg, lb := pending, pending
	switch {
	case s.tmpl != nil:
		tg, lb = s.tmpl.att(lidTargetGroup, "TargetGroupFullName"), s.tmpl.att(lidLoadBalancer, "LoadBalancerFullName")
	default:
		if i := strings.LastIndex(s.tgARN, ":"); i >= 0 {
			tg = s.tgARN[i+1:]
		}
		if _, after, ok := strings.Cut(s.albARN, ":loadbalancer/"); ok {
			lb = after
		}
	}
	return []cwtypes.Dimension{{Name: aws.String("TargetGroup"), Value: aws.String(tg)}, {Name: aws.String("LoadBalancer"), Value: aws.String(lb)}}
}

// AlarmInput is the stop alarm's definition; the drill puts it again with
// another threshold for a run that interrupts more instances.
func (s *state) alarmInput() *cloudwatch.PutMetricAlarmInput {
	return &cloudwatch.PutMetricAlarmInput{
		AlarmName: aws.String(s.alarmName()),
		AlarmDescription: aws.String(fmt.Sprintf("spot-agent %s: fewer healthy targets than the stack's minimum (%d) less the drill's interruption; stops spot-agent drill's experiment",
			s.cfg.Name, s.cfg.Min)),
		Namespace: aws.String("AWS/ApplicationELB"), MetricName: aws.String("HealthyHostCount"), Dimensions: s.alarmDimensions(),
		Statistic: cwtypes.StatisticMinimum, Period: aws.Int32(60), EvaluationPeriods: aws.Int32(1), DatapointsToAlarm: aws.Int32(1),
		Threshold: aws.Float64(StopThreshold(s.cfg.Min, DefaultInterruptCount)), ComparisonOperator: cwtypes.ComparisonOperatorLessThanThreshold,
		TreatMissingData: aws.String("notBreaching"),
		Tags:             []cwtypes.Tag{{Key: aws.String(StackTag), Value: aws.String(s.cfg.Name)}},
	}
}

func (r *stopAlarm) find(ctx context.Context, s *state) (bool, error) {
	out, err := s.c.CloudWatch.DescribeAlarms(ctx, &cloudwatch.DescribeAlarmsInput{AlarmNames: []string{s.alarmName()}})
	if err != nil || len(out.MetricAlarms) == 0 {
		return false, err
	}
	a := out.MetricAlarms[0]
	tags, err := s.c.CloudWatch.ListTagsForResource(ctx, &cloudwatch.ListTagsForResourceInput{ResourceARN: a.AlarmArn})
	if err != nil {
		return false, err
	}
	ours := false
	for _, t := range tags.Tags {
		ours = ours || (deref(t.Key) == StackTag && deref(t.Value) == s.cfg.Name)
	}
	if !ours {
		return false, fmt.Errorf("alarm %s exists but does not carry %s=%s: it is not this stack's", s.alarmName(), StackTag, s.cfg.Name)
	}
	r.found, r.have, s.alarmARN = true, a, deref(a.AlarmArn)
	return true, nil
}

// alarmShape is what the stack sets of an alarm, comparable.
func alarmShape(ns, metric string, dims []cwtypes.Dimension, stat cwtypes.Statistic, period, evals, points *int32, threshold *float64,
	op cwtypes.ComparisonOperator, missing *string) map[string]string {
	var ds []string
	for _, d := range dims {
		ds = append(ds, deref(d.Name)+"="+deref(d.Value))
	}
	return map[string]string{
		"metric": ns + " " + metric, "dimensions": strings.Join(slices.Sorted(slices.Values(ds)), ","), "statistic": string(stat),
		"period": itoa(deref(period)), "evaluation-periods": itoa(deref(evals)), "datapoints": itoa(deref(points)),
		"threshold": fmt.Sprint(deref(threshold)), "comparison": string(op), "missing-data": deref(missing),
	}
}

func (r *stopAlarm) plan(s *state) Change {
	in := s.alarmInput()
	want := alarmShape(deref(in.Namespace), deref(in.MetricName), in.Dimensions, in.Statistic, in.Period, in.EvaluationPeriods, in.DatapointsToAlarm, in.Threshold, in.ComparisonOperator, in.TreatMissingData)
	c := Change{Resource: r.name(), ID: s.alarmARN, Settings: []Setting{
		{"name", s.alarmName()},
		{"condition", fmt.Sprintf("%s %s (minimum over %ds) < %g: the stop condition of the drill's experiment", want["metric"], orPending(strings.Split(want["dimensions"], ",")[0]), 60, deref(in.Threshold))},
	}}
	if !r.found {
		c.Action = Create
		return c
	}
	a := r.have
	have := alarmShape(deref(a.Namespace), deref(a.MetricName), a.Dimensions, a.Statistic, a.Period, a.EvaluationPeriods, a.DatapointsToAlarm, a.Threshold, a.ComparisonOperator, a.TreatMissingData)
	for _, k := range sortedKeys(want) {
		if have[k] != want[k] {
			c.Diffs = append(c.Diffs, Diff{k, orNone(have[k]), want[k]})
		}
	}
	return c.updateOnDiffs()
}

func (r *stopAlarm) create(ctx context.Context, s *state) error {
	if _, err := s.c.CloudWatch.PutMetricAlarm(ctx, s.alarmInput()); err != nil {
		return err
	}
	r.found, s.alarmARN = true, s.alarmARNFor()
	return nil
}

func (r *stopAlarm) update(ctx context.Context, s *state, _ Change) error { return r.create(ctx, s) }

// template: the alarm; its Tags, which PutMetricAlarm takes, are a property
// of AWS::CloudWatch::Alarm too.
func (r *stopAlarm) template(s *state, b *cfnBuilder) error {
	b.resource("StopAlarm", "AWS::CloudWatch::Alarm", s.alarmInput())
	s.alarmARN = b.att("StopAlarm", "Arn")
	return nil
}

func (r *stopAlarm) delete(ctx context.Context, s *state) error {
	_, err := s.c.CloudWatch.DeleteAlarms(ctx, &cloudwatch.DeleteAlarmsInput{AlarmNames: []string{s.alarmName()}})
	return err
}

// experimentTemplate is the FIS experiment template: interrupt one of the
// stack's running Spot Instances with a two-minute notice, stopped by the
// alarm. FIS templates have no name: it is found by its stack tag.
type experimentTemplate struct {
	found bool
	have  templateShape
}

func (r *experimentTemplate) name() string { return "experiment-template" }

// templateShape is what the stack sets of a template, comparable, in the
// SDK's field names (those of every template input and output).
type templateShape struct {
	Description    string
	RoleArn        string
	StopConditions []fistypes.CreateExperimentTemplateStopConditionInput
	Targets        map[string]fistypes.CreateExperimentTemplateTargetInput
	Actions        map[string]fistypes.CreateExperimentTemplateActionInput
}

// experimentInput is the template the stack creates.
func (s *state) experimentInput() *fis.CreateExperimentTemplateInput {
	return &fis.CreateExperimentTemplateInput{
		Description: aws.String(fmt.Sprintf("spot-agent %s: interrupt %d of the stack's running Spot Instances with a %d-minute notice (spot-agent drill)",
			s.cfg.Name, DefaultInterruptCount, int(DefaultNotice/time.Minute))),
		RoleArn:        aws.String(orPending(s.fisRoleARN)),
		StopConditions: []fistypes.CreateExperimentTemplateStopConditionInput{{Source: aws.String(alarmSource), Value: aws.String(orPending(s.alarmARN))}},
		Targets: map[string]fistypes.CreateExperimentTemplateTargetInput{SpotTargetKey: {
			ResourceType: aws.String(SpotTargetType), SelectionMode: aws.String(SelectionCount(DefaultInterruptCount)),
			ResourceTags: map[string]string{StackTag: s.cfg.Name},
			Filters:      []fistypes.ExperimentTemplateTargetInputFilter{{Path: aws.String("State.Name"), Values: []string{"running"}}},
		}},
		Actions: map[string]fistypes.CreateExperimentTemplateActionInput{InterruptActionName: {
			ActionId:    aws.String(InterruptActionID),
			Description: aws.String("a Spot interruption notice, then the interruption"),
			Parameters:  map[string]string{DurationParameter: ISODuration(DefaultNotice)},
			Targets:     map[string]string{SpotTargetKey: SpotTargetKey},
		}},
		Tags: map[string]string{StackTag: s.cfg.Name, "Name": s.prefixed() + "-drill"},
	}
}

// shapeOf reads any of the SDK's template structures (they share their field
// names) as a templateShape.
func shapeOf(v any) templateShape {
	var sh templateShape
	b, _ := json.Marshal(v)
	_ = json.Unmarshal(b, &sh)
	return sh
}

func (r *experimentTemplate) find(ctx context.Context, s *state) (bool, error) {
	id, err := FindExperimentTemplate(ctx, s.c.FIS, s.cfg.Name)
	if err != nil || id == "" {
		return false, err
	}
	out, err := s.c.FIS.GetExperimentTemplate(ctx, &fis.GetExperimentTemplateInput{Id: aws.String(id)})
	if err != nil {
		return false, err
	}
	r.found, r.have, s.experimentID = true, shapeOf(out.ExperimentTemplate), id
	return true, nil
}

// FindExperimentTemplate returns the id of the stack's experiment template,
// found by its tag; "" when there is none.
func FindExperimentTemplate(ctx context.Context, c FIS, stack string) (string, error) {
	p := fis.NewListExperimentTemplatesPaginator(c, &fis.ListExperimentTemplatesInput{})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return "", err
		}
		for _, t := range page.ExperimentTemplates {
			if t.Tags[StackTag] == stack {
				return deref(t.Id), nil
			}
		}
	}
	return "", nil
}

func (r *experimentTemplate) plan(s *state) Change {
	in := s.experimentInput()
	c := Change{Resource: r.name(), ID: s.experimentID, Settings: []Setting{
		{"action", InterruptActionID + " " + DurationParameter + "=" + ISODuration(DefaultNotice)},
		{"targets", fmt.Sprintf("%s %s carrying %s=%s, running", SelectionCount(DefaultInterruptCount), SpotTargetType, StackTag, s.cfg.Name)},
		{"stop-condition", "alarm " + s.alarmName()}, {"role", s.fisRoleName()},
	}}
	if !r.found {
		c.Action = Create
		return c
	}
	want := shapeOf(in)
	for _, f := range []struct {
		name       string
		have, want any
	}{
		{"description", r.have.Description, want.Description}, {"role", r.have.RoleArn, want.RoleArn},
		{"stop-conditions", r.have.StopConditions, want.StopConditions}, {"targets", r.have.Targets, want.Targets},
		{"actions", r.have.Actions, want.Actions},
	} {
		if !reflect.DeepEqual(f.have, f.want) {
			c.Diffs = append(c.Diffs, Diff{f.name, mustJSON(f.have), mustJSON(f.want)})
		}
	}
	return c.updateOnDiffs()
}

func (r *experimentTemplate) create(ctx context.Context, s *state) error {
	in := s.experimentInput()
	out, err := s.c.FIS.CreateExperimentTemplate(ctx, in)
	if err != nil {
		return err
	}
	r.found, r.have, s.experimentID = true, shapeOf(in), deref(out.ExperimentTemplate.Id)
	return nil
}

// update puts the whole template as the stack wants it: the same that
// undoes what a drill interrupted by a crash left changed.
func (r *experimentTemplate) update(ctx context.Context, s *state, _ Change) error {
	in := s.experimentInput()
	up := &fis.UpdateExperimentTemplateInput{Id: aws.String(s.experimentID), Description: in.Description, RoleArn: in.RoleArn}
	b, _ := json.Marshal(struct {
		StopConditions any
		Targets        any
		Actions        any
	}{in.StopConditions, in.Targets, in.Actions})
	if err := json.Unmarshal(b, up); err != nil {
		return err
	}
	if _, err := s.c.FIS.UpdateExperimentTemplate(ctx, up); err != nil {
		return err
	}
	r.have = shapeOf(in)
	return nil
}

// template: AWS::FIS::ExperimentTemplate takes the create call's fields.
func (r *experimentTemplate) template(s *state, b *cfnBuilder) error {
	b.resource("DrillExperimentTemplate", "AWS::FIS::ExperimentTemplate", s.experimentInput())
	s.experimentID = b.ref("DrillExperimentTemplate")
	return nil
}

func (r *experimentTemplate) delete(ctx context.Context, s *state) error {
	_, err := s.c.FIS.DeleteExperimentTemplate(ctx, &fis.DeleteExperimentTemplateInput{Id: aws.String(s.experimentID)})
	return err
}
