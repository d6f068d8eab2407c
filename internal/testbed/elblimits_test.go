package testbed

import (
	"testing"
	"time"
)

func TestELBLimitsAreTheDocumentedBuckets(t *testing.T) {
	now := time.Now()
	l := NewELBLimits()
	l.now = func() time.Time { return now }
	n := 0
	for l.Take("DeregisterTargets") {
		n++
	}
	if n != 20 {
		t.Errorf("%d DeregisterTargets at once, want the registration bucket's 20", n)
	}
	for l.Take("DescribeTargetHealth") {
		n++
	}
	if n != 40 {
		t.Errorf("%d calls at once in all, want the account bucket's 40", n)
	}
	now = now.Add(300 * time.Millisecond) // 3 account tokens, 1.2 registration tokens
	if !l.Take("DescribeTargetHealth") || !l.Take("DeregisterTargets") || l.Take("DeregisterTargets") {
		t.Error("after 300 ms: want one more DeregisterTargets (4 a second), and a Describe")
	}
	if !l.Take("DescribeTargetHealth") || l.Take("DescribeTargetHealth") {
		t.Error("after 300 ms: want three calls in all (the account's 10 a second)")
	}
}
