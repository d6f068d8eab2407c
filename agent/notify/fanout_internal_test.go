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
)

func TestRetryable(t *testing.T) {
	refused := &url.Error{Op: "Post", URL: "http://127.0.0.1:1", Err: &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"a 500 may pass", &StatusError{Code: 500}, true},
		{"a 429 asks to come back later", &StatusError{Code: 429}, true},
		{"a 403 will not change", &StatusError{Code: 403}, false},
		{"a refused connection may be a restart", refused, true},
		{"an attempt's own timeout is worth another try", fmt.Errorf("post: %w", context.DeadlineExceeded), true},
		{"a cancel is final", context.Canceled, false},
		{"SNS throttling is retried", &smithy.GenericAPIError{Code: "Throttling", Fault: smithy.FaultClient}, true},
		{"an SNS 5xx code is retried", &smithy.GenericAPIError{Code: "InternalError", Fault: smithy.FaultServer}, true},
		{"a missing topic is not", &smithy.GenericAPIError{Code: "NotFound", Fault: smithy.FaultClient}, false},
		{"no permission is not", &smithy.GenericAPIError{Code: "AuthorizationError", Fault: smithy.FaultClient}, false},
		{"a bad template is not", &permanentError{errors.New("render")}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := retryable(tc.err); got != tc.want {
				t.Errorf("retryable(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
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
