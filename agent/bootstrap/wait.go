package bootstrap

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/smithy-go"
)

// wait polls cond every PollInterval until it is true, bounded by Timeout.
func (s *state) wait(ctx context.Context, what string, cond func(context.Context) (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	t := time.NewTicker(s.opts.PollInterval)
	defer t.Stop()
	for {
		ok, err := cond(ctx)
		if err != nil {
			return fmt.Errorf("wait for %s: %w", what, err)
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s: %w", what, context.Cause(ctx))
		case <-t.C:
		}
	}
}

// retryInUse repeats f while AWS answers that something still depends on the
// resource (an ALB's network interfaces linger after it is deleted; public
// addresses keep an internet gateway attached for a while).
func (s *state) retryInUse(ctx context.Context, what string, f func(context.Context) error) error {
	var last error
	err := s.wait(ctx, what, func(ctx context.Context) (bool, error) {
		err := f(ctx)
		if err != nil && hasCode(err, "DependencyViolation", "ResourceInUse", "InvalidGroup.InUse", "ResourceInUseException") {
			last = err
			return false, nil
		}
		return true, err
	})
	if err != nil && last != nil && errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w (last: %v)", err, last)
	}
	return err
}

// propagationTimeout bounds how long a call that names a new role or
// instance profile is retried while AWS says it is invalid: IAM is
// eventually consistent, and a new instance profile usually becomes usable
// by EC2 within seconds, sometimes a minute or two.
// https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_general.html#troubleshoot_general_eventual-consistency
const propagationTimeout = 3 * time.Minute

// notYetPropagated reports whether err says a role or instance profile that
// exists is not yet known where it is used: EC2 and Auto Scaling answer
// "Value (NAME) for parameter iamInstanceProfile.name is invalid. Invalid IAM
// Instance Profile name" (InvalidParameterValue, or ValidationError from
// CreateAutoScalingGroup), Spot Fleet names its IamFleetRole.
func notYetPropagated(err error) bool {
	var ae smithy.APIError
	if !errors.As(err, &ae) || !slices.Contains([]string{"InvalidParameterValue", "ValidationError", "InvalidSpotFleetRequestConfig"}, ae.ErrorCode()) {
		return false
	}
	msg := ae.ErrorMessage()
	return strings.Contains(msg, "Invalid IAM Instance Profile") || strings.Contains(msg, "iamInstanceProfile") || strings.Contains(msg, "IamFleetRole")
}

// retryPropagation repeats f while its error says a new role or instance
// profile is not usable yet, every PollInterval, for propagationTimeout at
// most (Timeout if shorter).
func (s *state) retryPropagation(ctx context.Context, what string, f func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, min(propagationTimeout, s.opts.Timeout))
	defer cancel()
	t := time.NewTicker(s.opts.PollInterval)
	defer t.Stop()
	for {
		err := f(ctx)
		if !notYetPropagated(err) {
			return err
		}
		fmt.Fprintf(s.opts.Progress, "waiting for %s: %v\n", what, err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s: %w", what, err)
		case <-t.C:
		}
	}
}

// hasCode reports whether err is an AWS API error with one of the codes.
func hasCode(err error, codes ...string) bool {
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		return false
	}
	return slices.Contains(codes, ae.ErrorCode())
}

// notFound reports whether err says the resource does not exist.
func notFound(err error) bool {
	if err == nil {
		return false
	}
	if hasCode(err, "NoSuchEntity", "NotFound", "ResourceNotFoundException", "LoadBalancerNotFound",
		"TargetGroupNotFound", "ListenerNotFound", "NoSuchBucket", "InvalidGroup.NotFound", "InvalidVpcID.NotFound",
		"InvalidSubnetID.NotFound", "InvalidInternetGatewayID.NotFound", "InvalidRouteTableID.NotFound",
		"InvalidLaunchTemplateName.NotFoundException", "InvalidLaunchTemplateId.NotFound", "ObjectNotFoundException",
		"InvalidSpotFleetRequestId.NotFound", "InvalidFleetId.NotFound", "NoSuchKey", "ParameterNotFound") {
		return true
	}
	var re interface{ HTTPStatusCode() int }
	return errors.As(err, &re) && re.HTTPStatusCode() == 404
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

func itoa[T ~int | ~int32 | ~int64](v T) string { return strconv.FormatInt(int64(v), 10) }

// sameJSON compares two JSON documents by meaning. IAM returns documents
// URL-encoded; both forms are accepted.
func sameJSON(a, b string) bool {
	var x, y any
	if json.Unmarshal([]byte(decodeDoc(a)), &x) != nil || json.Unmarshal([]byte(decodeDoc(b)), &y) != nil {
		return false
	}
	return reflect.DeepEqual(normalizeJSON(x), normalizeJSON(y))
}

func decodeDoc(s string) string {
	if strings.HasPrefix(s, "%7B") || strings.HasPrefix(s, "%7b") {
		if d, err := url.QueryUnescape(s); err == nil {
			return d
		}
	}
	return s
}

// normalizeJSON makes a one-element list and its element equal, as IAM and
// EventBridge treat them ("Action": "x" is ["x"]).
func normalizeJSON(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			t[k] = normalizeJSON(e)
		}
		return t
	case []any:
		if len(t) == 1 {
			return normalizeJSON(t[0])
		}
		for i, e := range t {
			t[i] = normalizeJSON(e)
		}
		return t
	}
	return v
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v) // only called on maps and slices of strings built here
	return string(b)
}

func sortedCopy(in []string) []string {
	out := slices.Clone(in)
	slices.Sort(out)
	return out
}

func sameSet(a, b []string) bool { return slices.Equal(sortedCopy(a), sortedCopy(b)) }

func join(v []string) string {
	if len(v) == 0 {
		return "(none)"
	}
	return strings.Join(v, ",")
}
