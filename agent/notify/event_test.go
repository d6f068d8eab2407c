package notify_test

import (
	"testing"
	"time"

	"github.com/spot-agent/spot-agent/agent/notice"
	"github.com/spot-agent/spot-agent/agent/notify"
	"github.com/spot-agent/spot-agent/agent/targets"
)

func TestSummary(t *testing.T) {
	detected := notify.SampleEvent(notify.PhaseDetected)
	drained := notify.SampleEvent(notify.PhaseDrained)
	failed := notify.SampleEvent(notify.PhaseDrained)
	failed.Outcomes = append(failed.Outcomes, notify.Outcome{TargetGroup: "arn:tg/b", Result: "error"})
	dry := detected
	dry.DryRun = true
	anonymous := notify.Event{Phase: notify.PhaseDetected, Kind: "signal", Action: "terminated"}
	for _, tc := range []struct {
		name string
		e    notify.Event
		want string
	}{
		{"a detected spot notice gives its deadline and the time left", detected, "spot terminate on i-0123456789abcdef0 (c5.large, us-east-1a), deadline 12:02:00Z (in 2m0s)"},
		{"a drained event counts the groups left", drained, "i-0123456789abcdef0 drained after spot terminate: left all 1 target groups"},
		{"a drained event shouts a failure", failed, "i-0123456789abcdef0 drained after spot terminate: FAILED to leave 1 of 2 target groups"},
		{"a dry run says so", dry, "spot terminate on i-0123456789abcdef0 (c5.large, us-east-1a), deadline 12:02:00Z (in 2m0s) [dry run]"},
		{"an event before the identity is known still reads", anonymous, "signal terminated on unknown instance"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.e.Summary(); got != tc.want {
				t.Errorf("Summary() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestDrainedWithoutGroupsReportsNoTargetGroups(t *testing.T) {
	e := notify.Drained(notice.Decision{Reason: "spot terminate", Deadline: time.Now()}, nil, notify.DrainPhases{})
	if len(e.Outcomes) != 1 || e.Outcomes[0].Result != targets.ResultNoGroups || !e.Failed() {
		t.Errorf("outcomes = %+v, want one no_target_groups, failed", e.Outcomes)
	}
}

func TestFailed(t *testing.T) {
	for _, tc := range []struct {
		result string
		want   bool
	}{
		{targets.ResultSuccess, false},
		{targets.ResultNotRegistered, false},
		{targets.ResultDryRun, false},
		{targets.ResultError, true},
		{targets.ResultTimeout, true},
		{targets.ResultNoGroups, true},
	} {
		e := notify.Event{Phase: notify.PhaseDrained, Outcomes: []notify.Outcome{{Result: targets.ResultSuccess}, {Result: tc.result}}}
		if got := e.Failed(); got != tc.want {
			t.Errorf("Failed() with a %s outcome = %v, want %v", tc.result, got, tc.want)
		}
	}
}
