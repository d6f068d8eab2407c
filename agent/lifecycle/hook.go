// Package lifecycle completes an Auto Scaling termination lifecycle action for
// this instance, and keeps it alive with heartbeats while the drain lasts.
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"

	"github.com/spot-agent/spot-agent/agent/retry"
)

// API is the part of the Auto Scaling API this package calls.
type API interface {
	CompleteLifecycleAction(ctx context.Context, params *autoscaling.CompleteLifecycleActionInput, optFns ...func(*autoscaling.Options)) (*autoscaling.CompleteLifecycleActionOutput, error)
	RecordLifecycleActionHeartbeat(ctx context.Context, params *autoscaling.RecordLifecycleActionHeartbeatInput, optFns ...func(*autoscaling.Options)) (*autoscaling.RecordLifecycleActionHeartbeatOutput, error)
}

// Observer receives what metrics need.
type Observer interface {
	ObserveAPI(operation string, err error, took time.Duration)
	ObserveLifecycle(call, result string)
}

// Hook names the lifecycle action of this instance.
type Hook struct {
	Group      string
	Name       string
	InstanceID string
}

// Validate says what is missing.
func (h Hook) Validate() error {
	switch {
	case h.Group == "":
		return errors.New("auto scaling group name unknown: the instance has no aws:autoscaling:groupName tag")
	case h.Name == "":
		return errors.New("lifecycle hook name unknown: pass --lifecycle-hook or tag the instance")
	case h.InstanceID == "":
		return errors.New("instance id unknown")
	}
	return nil
}

// Completer makes the calls.
type Completer struct {
	API      API
	Observer Observer
	Log      *slog.Logger
}

// Heartbeat records a heartbeat every interval until ctx is done, so that the
// hook's heartbeat timeout does not end the wait while the drain still runs.
// Errors are logged and counted; they do not stop the drain.
func (c *Completer) Heartbeat(ctx context.Context, h Hook, every time.Duration) error {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		start := time.Now()
		_, err := c.API.RecordLifecycleActionHeartbeat(ctx, &autoscaling.RecordLifecycleActionHeartbeatInput{
			AutoScalingGroupName: aws.String(h.Group),
			LifecycleHookName:    aws.String(h.Name),
			InstanceId:           aws.String(h.InstanceID),
		})
		c.Observer.ObserveAPI("autoscaling:RecordLifecycleActionHeartbeat", err, time.Since(start))
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			c.Observer.ObserveLifecycle("heartbeat", "error")
			c.Log.Warn("lifecycle heartbeat failed", "group", h.Group, "hook", h.Name, "err", err)
			continue
		}
		c.Observer.ObserveLifecycle("heartbeat", "success")
	}
}

// Complete sends CompleteLifecycleAction with result CONTINUE, retrying with
// capped backoff until it succeeds, fails for good, or ctx ends.
func (c *Completer) Complete(ctx context.Context, h Hook) error {
	if err := h.Validate(); err != nil {
		c.Observer.ObserveLifecycle("complete", "error")
		return fmt.Errorf("complete lifecycle action: %w", err)
	}
	in := &autoscaling.CompleteLifecycleActionInput{
		AutoScalingGroupName:  aws.String(h.Group),
		LifecycleHookName:     aws.String(h.Name),
		InstanceId:            aws.String(h.InstanceID),
		LifecycleActionResult: aws.String("CONTINUE"),
	}
	p := retry.Policy{OnRetry: func(attempt int, err error, _ time.Duration) {
		c.Log.Warn("lifecycle completion retrying", "attempt", attempt, "err", err)
	}}
	attempts, err := p.Do(ctx, func() error {
		start := time.Now()
		_, err := c.API.CompleteLifecycleAction(ctx, in)
		c.Observer.ObserveAPI("autoscaling:CompleteLifecycleAction", err, time.Since(start))
		return err
	})
	if err != nil {
		c.Observer.ObserveLifecycle("complete", "error")
		return fmt.Errorf("autoscaling:CompleteLifecycleAction %s/%s: %w", h.Group, h.Name, err)
	}
	c.Observer.ObserveLifecycle("complete", "success")
	c.Log.Info("lifecycle action completed", "group", h.Group, "hook", h.Name, "attempts", attempts)
	return nil
}
