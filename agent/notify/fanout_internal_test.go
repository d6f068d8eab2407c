package notify

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"testing"

	"github.com/aws/smithy-go"

	"github.com/spot-agent/spot-agent/agent/retry"
)

// What each sink's errors mean to agent/retry: the answers a webhook or SNS
// gives that may change are retried, the others are not.
func TestSinkErrorsAreClassified(t *testing.T) {
	refused := &url.Error{Op: "Post", URL: "http://127.0.0.1:1", Err: &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}}
	for _, tc := range []struct {
		name      string
		err       error
		permanent bool
	}{
		{"a 500 may pass", &StatusError{Code: 500}, false},
		{"a 429 asks to come back later", &StatusError{Code: 429}, false},
		{"a 408 is the receiver's own timeout", &StatusError{Code: 408}, false},
		{"a 403 will not change", &StatusError{Code: 403}, true},
		{"a redirect is not followed", &StatusError{Code: 302}, true},
		{"a refused connection may be a restart", refused, false},
		{"an attempt's own timeout is worth another try", fmt.Errorf("post: %w", context.DeadlineExceeded), false},
		{"SNS throttling is retried", &smithy.GenericAPIError{Code: "Throttling", Fault: smithy.FaultClient}, false},
		{"a missing topic is not", &smithy.GenericAPIError{Code: "NotFound", Fault: smithy.FaultClient}, true},
		{"no permission is not", &smithy.GenericAPIError{Code: "AuthorizationError", Fault: smithy.FaultClient}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := retry.Permanent(tc.err); got != tc.permanent {
				t.Errorf("retry.Permanent(%v) = %v, want %v", tc.err, got, tc.permanent)
			}
		})
	}
	if got := retry.Throttled(&StatusError{Code: 429}); !got {
		t.Error("a 429 is not taken for throttling")
	}
}

func TestSubject(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{"a short line is kept", "spot terminate on i-0abc", "spot terminate on i-0abc"},
		{"line breaks and non-ASCII become spaces", "a\nb\tc é", "a b c  "},
		{"a long line is cut under 100", strings.Repeat("x", 120), strings.Repeat("x", 96) + "..."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := subject(tc.in); got != tc.want || len(got) >= 100 {
				t.Errorf("subject(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}
