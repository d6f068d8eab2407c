package bootstrap_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/spot-agent/spot-agent/agent/bootstrap"
	"github.com/spot-agent/spot-agent/internal/testbed"
)

// faultClient is the SDK's HTTP client in front of moto that answers a
// query-protocol action with an error document of the real wire format
// instead of forwarding it, n times: errors moto never gives, such as a
// new instance profile that is not usable yet.
type faultClient struct {
	mu     sync.Mutex
	action string
	left   int
	code   string
	msg    string
	seen   int
}

func (f *faultClient) Do(r *http.Request) (*http.Response, error) {
	if r.Body != nil && strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return nil, err
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		if v, _ := url.ParseQuery(string(body)); v.Get("Action") == f.action {
			f.mu.Lock()
			f.seen++
			inject := f.left > 0
			f.left--
			f.mu.Unlock()
			if inject {
				doc := fmt.Sprintf(`<ErrorResponse><Error><Type>Sender</Type><Code>%s</Code><Message>%s</Message></Error><RequestId>0</RequestId></ErrorResponse>`, f.code, f.msg)
				return &http.Response{StatusCode: http.StatusBadRequest, Status: "400 Bad Request", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
					Header: http.Header{"Content-Type": {"text/xml"}}, Body: io.NopCloser(strings.NewReader(doc)), ContentLength: int64(len(doc)), Request: r}, nil
			}
		}
	}
	return http.DefaultClient.Do(r)
}

func (f *faultClient) attempts() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.seen
}

// A new instance profile is not usable by Auto Scaling for a while: the
// group is created again until it is, bounded; any other ValidationError is
// not retried.
func TestBootstrapWaitsForANewInstanceProfileToPropagate(t *testing.T) {
	t.Parallel()
	m := testbed.SharedMoto(t)
	name := "propagate"
	fc := &faultClient{action: "CreateAutoScalingGroup", left: 2, code: "ValidationError",
		msg: "You must use a valid fully-formed launch template. Value (spot-agent-" + name + "-instance) for parameter iamInstanceProfile.name is invalid. Invalid IAM Instance Profile name"}
	var progress testbed.Buffer
	st, _ := newStackVia(t, m.URL, via{client: fc}, testConfig(name, bootstrap.FleetASG), func(o *bootstrap.Options) { o.Progress = &progress })
	if _, err := st.Apply(ctx(t)); err != nil {
		t.Fatalf("bootstrap: %v\n%s", err, progress.String())
	}
	t.Cleanup(func() { _, _ = st.Teardown(context.Background(), false, nil) })
	if n := fc.attempts(); n != 3 {
		t.Errorf("CreateAutoScalingGroup sent %d times, want 3 (two refusals, then the group)", n)
	}
	if !strings.Contains(progress.String(), "waiting for the new instance profile to be usable: ") {
		t.Errorf("progress does not say what it waits for:\n%s", progress.String())
	}

	other := &faultClient{action: "CreateAutoScalingGroup", left: 5, code: "ValidationError", msg: "Max bound, 1, must be greater than or equal to min bound, 2"}
	st2, _ := newStackVia(t, m.URL, via{client: other}, testConfig("propagate-no", bootstrap.FleetASG))
	_, err := st2.Apply(ctx(t))
	t.Cleanup(func() { _, _ = st2.Teardown(context.Background(), false, nil) })
	if err == nil || !strings.Contains(err.Error(), "Max bound") || other.attempts() != 1 {
		t.Errorf("another ValidationError: %v after %d attempts, want it at once", err, other.attempts())
	}
}

// A stack from an earlier bootstrap has the AWS managed policy on its Spot
// Fleet role: the scoped inline policy is put first, then the managed one
// detached.
func TestBootstrapReplacesTheManagedSpotFleetPolicy(t *testing.T) {
	t.Parallel()
	m := testbed.SharedMoto(t)
	cfg := testConfig("fleet-role", bootstrap.FleetSpotFleet)
	st, _ := newStack(t, m.URL, cfg)
	res, err := st.Apply(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = st.Teardown(context.Background(), false, nil) })
	role := "spot-agent-fleet-role-spot-fleet"
	m.CLI(t, "iam", "delete-role-policy", "--role-name", role, "--policy-name", "spot-agent-spot-fleet")
	m.CLI(t, "iam", "attach-role-policy", "--role-name", role, "--policy-arn", "arn:aws:iam::aws:policy/service-role/AmazonEC2SpotFleetTaggingRole")

	st2, rec := newStack(t, m.URL, cfg)
	p, err := st2.Plan(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	c := changesOf(p)["spot-fleet-role"]
	if c.Action != bootstrap.Update || len(c.Diffs) != 2 || c.Diffs[0].Field != "policy" || c.Diffs[1].Field != "managed-policy" {
		t.Errorf("spot-fleet-role: %s %v, want the policy put and the managed one detached", c.Action, c.Diffs)
	}
	if _, err := st2.Apply(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if mc := rec.MutatingCalls(); !intMapsEqual(mc, map[string]int{"IAM.PutRolePolicy": 1, "IAM.DetachRolePolicy": 1}) {
		t.Errorf("the migration made %v", mc)
	}
	checkSpotFleetRole(t, m, cfg, res.Outputs)
}
