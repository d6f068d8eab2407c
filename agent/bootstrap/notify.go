package bootstrap

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	snstypes "github.com/aws/aws-sdk-go-v2/service/sns/types"
)

// Event detail types the rule forwards to the topic.
var eventTypes = []string{"EC2 Spot Instance Interruption Warning", "EC2 Instance Rebalance Recommendation"}

// eventPattern matches the two interruption events. Neither event carries
// the instance's tags (only its id), so the pattern cannot be narrowed to this
// stack's instances: it matches the account's events in this region, and a
// subscriber tells the stack's instances by id.
func eventPattern() string {
	return mustJSON(map[string]any{"source": []string{"aws.ec2"}, "detail-type": eventTypes})
}

// topicPolicy lets the account manage the topic and EventBridge publish to it,
// from this stack's rule only.
func (s *state) topicPolicy() string {
	topic := s.topicARNFor()
	return mustJSON(map[string]any{
		"Version": "2012-10-17",
		"Id":      "spot-agent",
		"Statement": []map[string]any{
			{
				"Sid": "AccountOwner", "Effect": "Allow",
				"Principal": map[string]string{"AWS": fmt.Sprintf("arn:%s:iam::%s:root", s.partition, s.account)},
				"Action": []string{"SNS:GetTopicAttributes", "SNS:SetTopicAttributes", "SNS:AddPermission", "SNS:RemovePermission",
					"SNS:DeleteTopic", "SNS:Subscribe", "SNS:ListSubscriptionsByTopic", "SNS:Publish"},
				"Resource": topic,
			},
			{
				"Sid": "EventBridge", "Effect": "Allow",
				"Principal": map[string]string{"Service": "events.amazonaws.com"},
				"Action":    []string{"sns:Publish"},
				"Resource":  topic,
				"Condition": map[string]any{"ArnEquals": map[string]string{"aws:SourceArn": s.ruleARNFor()}},
			},
		},
	})
}

// topic is the stack's SNS topic for interruption events, with an email
// subscription when --notify-email is given.
type topic struct {
	found  bool
	policy string
	emails map[string]bool
}

func (r *topic) name() string { return "topic" }

func (r *topic) find(ctx context.Context, s *state) (bool, error) {
	r.emails = map[string]bool{}
	arn := s.topicARNFor()
	out, err := s.c.SNS.GetTopicAttributes(ctx, &sns.GetTopicAttributesInput{TopicArn: aws.String(arn)})
	if notFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	tags, err := s.c.SNS.ListTagsForResource(ctx, &sns.ListTagsForResourceInput{ResourceArn: aws.String(arn)})
	if err != nil {
		return false, err
	}
	ours := false
	for _, t := range tags.Tags {
		ours = ours || (deref(t.Key) == StackTag && deref(t.Value) == s.cfg.Name)
	}
	if !ours {
		return false, fmt.Errorf("topic %s exists but does not carry %s=%s", arn, StackTag, s.cfg.Name)
	}
	r.found, r.policy, s.topicARN = true, out.Attributes["Policy"], arn
	subs, err := s.c.SNS.ListSubscriptionsByTopic(ctx, &sns.ListSubscriptionsByTopicInput{TopicArn: aws.String(arn)})
	if err != nil {
		return false, err
	}
	for _, sub := range subs.Subscriptions {
		if deref(sub.Protocol) == "email" {
			r.emails[deref(sub.Endpoint)] = true
		}
	}
	return true, nil
}

func (r *topic) plan(s *state) Change {
	c := Change{Resource: r.name(), ID: s.topicARN, Settings: []Setting{{"name", s.topicName()}, {"publishers", "events.amazonaws.com from rule " + s.ruleName()}}}
	if s.cfg.NotifyEmail != "" {
		c.Settings = append(c.Settings, Setting{"email", s.cfg.NotifyEmail + " (confirm from the email)"})
	}
	switch {
	case !s.cfg.bootstrapping():
		c.Action = Unchanged
		return c
	case !r.found:
		c.Action = Create
		return c
	}
	if !sameJSON(r.policy, s.topicPolicy()) {
		c.Diffs = append(c.Diffs, Diff{"policy", orNone(r.policy), s.topicPolicy()})
	}
	if s.cfg.NotifyEmail != "" && !r.emails[s.cfg.NotifyEmail] {
		c.Diffs = append(c.Diffs, Diff{"email", join(sortedKeys(r.emails)), s.cfg.NotifyEmail})
	}
	return c.updateOnDiffs()
}

func (r *topic) input(s *state) *sns.CreateTopicInput {
	return &sns.CreateTopicInput{
		Name:       aws.String(s.topicName()),
		Attributes: map[string]string{"Policy": s.topicPolicy()},
		Tags:       []snstypes.Tag{{Key: aws.String(StackTag), Value: aws.String(s.cfg.Name)}},
	}
}

// emailSubscription is --notify-email's subscription to the topic.
func (s *state) emailSubscription() *sns.SubscribeInput {
	return &sns.SubscribeInput{TopicArn: aws.String(s.topicARN), Protocol: aws.String("email"), Endpoint: aws.String(s.cfg.NotifyEmail)}
}

func (r *topic) create(ctx context.Context, s *state) error {
	out, err := s.c.SNS.CreateTopic(ctx, r.input(s))
	if err != nil {
		return err
	}
	r.found, r.policy, s.topicARN = true, s.topicPolicy(), deref(out.TopicArn)
	return r.update(ctx, s, Change{})
}

func (r *topic) update(ctx context.Context, s *state, _ Change) error {
	if !sameJSON(r.policy, s.topicPolicy()) {
		_, err := s.c.SNS.SetTopicAttributes(ctx, &sns.SetTopicAttributesInput{TopicArn: aws.String(s.topicARN), AttributeName: aws.String("Policy"), AttributeValue: aws.String(s.topicPolicy())})
		if err != nil {
			return fmt.Errorf("policy: %w", err)
		}
		r.policy = s.topicPolicy()
	}
	if s.cfg.NotifyEmail != "" && !r.emails[s.cfg.NotifyEmail] {
		_, err := s.c.SNS.Subscribe(ctx, s.emailSubscription())
		if err != nil {
			return fmt.Errorf("subscribe %s: %w", s.cfg.NotifyEmail, err)
		}
		r.emails[s.cfg.NotifyEmail] = true
	}
	return nil
}

// template: the topic, its policy (a resource of its own in
// CloudFormation) and --notify-email's subscription.
func (r *topic) template(s *state, b *cfnBuilder) error {
	topic := r.input(s)
	b.resource("Topic", "AWS::SNS::Topic", map[string]any{"TopicName": topic.Name, "Tags": topic.Tags})
	s.topicARN = b.ref("Topic")
	b.resource("TopicPolicy", "AWS::SNS::TopicPolicy", map[string]any{"PolicyDocument": json.RawMessage(topic.Attributes["Policy"]), "Topics": []string{s.topicARN}})
	if s.cfg.NotifyEmail != "" {
		in := s.emailSubscription() // ReturnSubscriptionArn is the call's, not the subscription's
		b.resource("EmailSubscription", "AWS::SNS::Subscription", map[string]any{"TopicArn": in.TopicArn, "Protocol": in.Protocol, "Endpoint": in.Endpoint})
	}
	return nil
}

// delete deletes the topic and with it its subscriptions.
func (r *topic) delete(ctx context.Context, s *state) error {
	_, err := s.c.SNS.DeleteTopic(ctx, &sns.DeleteTopicInput{TopicArn: aws.String(s.topicARN)})
	return err
}

// ruleTargetID is the id of the rule's one target, the topic.
const ruleTargetID = "spot-agent-topic"

// rule sends the interruption events to the topic.
type rule struct {
	found   bool
	pattern string
	state   ebtypes.RuleState
	target  string // ARN of the target with ruleTargetID
}

func (r *rule) name() string { return "rule" }

func (r *rule) find(ctx context.Context, s *state) (bool, error) {
	out, err := s.c.Events.DescribeRule(ctx, &eventbridge.DescribeRuleInput{Name: aws.String(s.ruleName())})
	if notFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	tags, err := s.c.Events.ListTagsForResource(ctx, &eventbridge.ListTagsForResourceInput{ResourceARN: out.Arn})
	if err != nil {
		return false, err
	}
	ours := false
	for _, t := range tags.Tags {
		ours = ours || (deref(t.Key) == StackTag && deref(t.Value) == s.cfg.Name)
	}
	if !ours {
		return false, fmt.Errorf("rule %s exists but does not carry %s=%s", s.ruleName(), StackTag, s.cfg.Name)
	}
	r.found, r.pattern, r.state, s.ruleARN = true, deref(out.EventPattern), out.State, deref(out.Arn)
	targets, err := s.c.Events.ListTargetsByRule(ctx, &eventbridge.ListTargetsByRuleInput{Rule: aws.String(s.ruleName())})
	if err != nil {
		return false, err
	}
	for _, t := range targets.Targets {
		if deref(t.Id) == ruleTargetID {
			r.target = deref(t.Arn)
		}
	}
	return true, nil
}

func (r *rule) plan(s *state) Change {
	c := Change{Resource: r.name(), ID: s.ruleARN, Settings: []Setting{
		{"name", s.ruleName()}, {"pattern", eventPattern()}, {"target", orPending(s.topicARN)},
		{"scope", "the events carry no tags: the rule matches the account's in this region"},
	}}
	switch {
	case !s.cfg.bootstrapping():
		c.Action = Unchanged
		return c
	case !r.found:
		c.Action = Create
		return c
	}
	if !sameJSON(r.pattern, eventPattern()) {
		c.Diffs = append(c.Diffs, Diff{"pattern", r.pattern, eventPattern()})
	}
	if r.state != ebtypes.RuleStateEnabled {
		c.Diffs = append(c.Diffs, Diff{"state", string(r.state), "ENABLED"})
	}
	if r.target != s.topicARN || s.topicARN == "" {
		c.Diffs = append(c.Diffs, Diff{"target", orNone(r.target), orPending(s.topicARN)})
	}
	return c.updateOnDiffs()
}

func (r *rule) input(s *state) *eventbridge.PutRuleInput {
	return &eventbridge.PutRuleInput{
		Name: aws.String(s.ruleName()), EventPattern: aws.String(eventPattern()), State: ebtypes.RuleStateEnabled,
		Description: aws.String("spot-agent " + s.cfg.Name + ": Spot interruption warnings and rebalance recommendations to the stack's topic"),
		Tags:        []ebtypes.Tag{{Key: aws.String(StackTag), Value: aws.String(s.cfg.Name)}},
	}
}

// target is the rule's one target: the topic.
func (s *state) ruleTarget() ebtypes.Target {
	return ebtypes.Target{Id: aws.String(ruleTargetID), Arn: aws.String(s.topicARN)}
}

func (r *rule) create(ctx context.Context, s *state) error {
	out, err := s.c.Events.PutRule(ctx, r.input(s))
	if err != nil {
		return err
	}
	r.found, r.pattern, r.state, s.ruleARN = true, eventPattern(), ebtypes.RuleStateEnabled, deref(out.RuleArn)
	return r.update(ctx, s, Change{})
}

func (r *rule) update(ctx context.Context, s *state, _ Change) error {
	if !sameJSON(r.pattern, eventPattern()) || r.state != ebtypes.RuleStateEnabled {
		_, err := s.c.Events.PutRule(ctx, &eventbridge.PutRuleInput{Name: aws.String(s.ruleName()), EventPattern: aws.String(eventPattern()), State: ebtypes.RuleStateEnabled})
		if err != nil {
			return err
		}
		r.pattern, r.state = eventPattern(), ebtypes.RuleStateEnabled
	}
	if r.target != s.topicARN {
		out, err := s.c.Events.PutTargets(ctx, &eventbridge.PutTargetsInput{Rule: aws.String(s.ruleName()), Targets: []ebtypes.Target{s.ruleTarget()}})
		if err != nil {
			return fmt.Errorf("target: %w", err)
		}
		if out.FailedEntryCount > 0 && len(out.FailedEntries) > 0 {
			return fmt.Errorf("target: %s", deref(out.FailedEntries[0].ErrorMessage))
		}
		r.target = s.topicARN
	}
	return nil
}

// template: the rule with its target (a property in CloudFormation).
func (r *rule) template(s *state, b *cfnBuilder) error {
	b.resource("InterruptionRule", "AWS::Events::Rule", struct {
		*eventbridge.PutRuleInput
		EventPattern json.RawMessage
		Targets      []ebtypes.Target
	}{r.input(s), json.RawMessage(eventPattern()), []ebtypes.Target{s.ruleTarget()}})
	s.ruleARN = b.att("InterruptionRule", "Arn")
	return nil
}

func (r *rule) delete(ctx context.Context, s *state) error {
	out, err := s.c.Events.ListTargetsByRule(ctx, &eventbridge.ListTargetsByRuleInput{Rule: aws.String(s.ruleName())})
	if err != nil && !notFound(err) {
		return err
	}
	if out != nil && len(out.Targets) > 0 {
		var ids []string
		for _, t := range out.Targets {
			ids = append(ids, deref(t.Id))
		}
		if _, err := s.c.Events.RemoveTargets(ctx, &eventbridge.RemoveTargetsInput{Rule: aws.String(s.ruleName()), Ids: ids}); err != nil {
			return fmt.Errorf("remove targets: %w", err)
		}
	}
	_, err = s.c.Events.DeleteRule(ctx, &eventbridge.DeleteRuleInput{Name: aws.String(s.ruleName())})
	return err
}
