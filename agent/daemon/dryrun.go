package daemon

import (
	"context"
	"encoding/json"
	"log/slog"

	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
)

// With --dry-run the AWS clients are replaced by these: each call is logged
// with its parameters and answered with an empty result, and nothing is sent.
// Reads answer empty too, so in a dry run the target groups come from
// instance-metadata tags or --target-group-arn.

func logCall(log *slog.Logger, op string, params any) {
	b, err := json.Marshal(params)
	if err != nil {
		b = []byte(err.Error())
	}
	log.Info("dry run: would call", "operation", op, "params", string(b))
}

type dryEC2 struct{ log *slog.Logger }

func (d dryEC2) DescribeTags(_ context.Context, in *ec2.DescribeTagsInput, _ ...func(*ec2.Options)) (*ec2.DescribeTagsOutput, error) {
	logCall(d.log, "ec2:DescribeTags", in)
	return &ec2.DescribeTagsOutput{}, nil
}

type dryELB struct{ log *slog.Logger }

func (d dryELB) DescribeTargetHealth(_ context.Context, in *elbv2.DescribeTargetHealthInput, _ ...func(*elbv2.Options)) (*elbv2.DescribeTargetHealthOutput, error) {
	logCall(d.log, "elasticloadbalancing:DescribeTargetHealth", in)
	return &elbv2.DescribeTargetHealthOutput{}, nil
}

func (d dryELB) DescribeTargetGroupAttributes(_ context.Context, in *elbv2.DescribeTargetGroupAttributesInput, _ ...func(*elbv2.Options)) (*elbv2.DescribeTargetGroupAttributesOutput, error) {
	logCall(d.log, "elasticloadbalancing:DescribeTargetGroupAttributes", in)
	return &elbv2.DescribeTargetGroupAttributesOutput{}, nil
}

func (d dryELB) DeregisterTargets(_ context.Context, in *elbv2.DeregisterTargetsInput, _ ...func(*elbv2.Options)) (*elbv2.DeregisterTargetsOutput, error) {
	logCall(d.log, "elasticloadbalancing:DeregisterTargets", in)
	return &elbv2.DeregisterTargetsOutput{}, nil
}

func (d dryELB) RegisterTargets(_ context.Context, in *elbv2.RegisterTargetsInput, _ ...func(*elbv2.Options)) (*elbv2.RegisterTargetsOutput, error) {
	logCall(d.log, "elasticloadbalancing:RegisterTargets", in)
	return &elbv2.RegisterTargetsOutput{}, nil
}

type dryASG struct{ log *slog.Logger }

func (d dryASG) CompleteLifecycleAction(_ context.Context, in *autoscaling.CompleteLifecycleActionInput, _ ...func(*autoscaling.Options)) (*autoscaling.CompleteLifecycleActionOutput, error) {
	logCall(d.log, "autoscaling:CompleteLifecycleAction", in)
	return &autoscaling.CompleteLifecycleActionOutput{}, nil
}

func (d dryASG) RecordLifecycleActionHeartbeat(_ context.Context, in *autoscaling.RecordLifecycleActionHeartbeatInput, _ ...func(*autoscaling.Options)) (*autoscaling.RecordLifecycleActionHeartbeatOutput, error) {
	logCall(d.log, "autoscaling:RecordLifecycleActionHeartbeat", in)
	return &autoscaling.RecordLifecycleActionHeartbeatOutput{}, nil
}
