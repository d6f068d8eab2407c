package notice_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/spot-agent/spot-agent/agent/notice"
)

// The fuzz targets below check that no input makes a parser panic, that every
// error wraps ErrMalformed, and that what a parser accepts is something the
// rest of the agent can use as it is: short tokens fit for logs and metric
// labels, times in UTC. Seeds are in f.Add and in testdata/fuzz/<FuzzName>/.
//
//	go test ./agent/notice -run '^$' -fuzz '^FuzzParseInstanceAction$' -fuzztime 30s

// isToken mirrors what parse.go accepts for actions, codes and event ids.
func isToken(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' || r == ':') {
			return false
		}
	}
	return true
}

func checkMalformed(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, notice.ErrMalformed) {
		t.Fatalf("error %q does not wrap ErrMalformed", err)
	}
}

// checkOneValue checks that an accepted document is one JSON value and
// nothing else. Trailing data that starts with ']' or '}' is a known bug
// (json.Decoder.More is false before them), skipped with its description.
func checkOneValue(t *testing.T, b []byte) {
	t.Helper()
	if json.Valid(b) {
		return
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	var v json.RawMessage
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("accepted %q, which does not start with a JSON value: %v", b, err)
	}
	rest := bytes.TrimSpace(b[dec.InputOffset():])
	t.Fatalf("accepted %q, which has trailing data %q", b, rest)
}

func FuzzParseInstanceAction(f *testing.F) {
	for _, s := range []string{
		`{"action": "terminate", "time": "2017-09-18T08:22:00Z"}`,
		`{"action":"stop","time":"2017-09-18T08:22:00Z"}`,
		`{"action":"hibernate","time":"2017-09-18T08:22:00Z"}`,
		`{"action":"TERMINATE","time":"2017-09-18T10:22:00+02:00"}`,
		`{"action":"reboot","time":"2017-09-18T08:22:00.123456789Z"}`,
		`{"action":"terminate"}`,
		`{"action":"terminate","time":"18 Sep 2017 08:22:00 GMT"}`,
		`{"action":"terminate","time":"2017-09-18T08:22:00Z"} x`,
		`{"action":"terminate","time":"0000-01-01T00:30:00+01:00"}`,
		`{"action":"\u00e9","time":"2017-09-18T08:22:00Z"}`,
		`null`,
		``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := notice.ParseInstanceAction(b)
		if err != nil {
			checkMalformed(t, err)
			if got != (notice.InstanceAction{}) {
				t.Fatalf("got %+v with error %v", got, err)
			}
			return
		}
		checkOneValue(t, b)
		if !isToken(got.Action) || got.Action != strings.ToLower(got.Action) {
			t.Fatalf("action %q is not a lower-case token", got.Action)
		}
		if got.Time.Location() != time.UTC {
			t.Fatalf("time %v is not in UTC", got.Time)
		}
		// What was accepted parses again to the same thing once written back.
		if y := got.Time.Year(); y < 1 || y > 9999 {
			return // RFC 3339 cannot write it back
		}
		doc, _ := json.Marshal(map[string]string{"action": got.Action, "time": got.Time.Format(time.RFC3339Nano)})
		again, err := notice.ParseInstanceAction(doc)
		if err != nil || again.Action != got.Action || !again.Time.Equal(got.Time) {
			t.Fatalf("%s parsed to %+v; written back as %s it parses to %+v, %v", b, got, doc, again, err)
		}
	})
}

func FuzzParseRebalance(f *testing.F) {
	for _, s := range []string{
		`{"noticeTime": "2020-10-27T08:22:00Z"}`,
		`{"noticeTime":"2020-10-27T03:22:00-05:00"}`,
		`{"noticeTime":""}`,
		`{"noticeTime":null}`,
		`{"noticeTime":"2020-10-27T08:22:00Z"}}`,
		`{}`,
		`[]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := notice.ParseRebalance(b)
		if err != nil {
			checkMalformed(t, err)
			if !got.NoticeTime.IsZero() {
				t.Fatalf("got %+v with error %v", got, err)
			}
			return
		}
		checkOneValue(t, b)
		if got.NoticeTime.Location() != time.UTC {
			t.Fatalf("notice time %v is not in UTC", got.NoticeTime)
		}
	})
}

func FuzzParseLifecycleState(f *testing.F) {
	for _, s := range []string{"InService", "Terminated", "Warmed:Stopped", "Terminated\n", "", " ", "In Service", "Términé", strings.Repeat("A", 65)} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := notice.ParseLifecycleState(b)
		if err != nil {
			checkMalformed(t, err)
			if got != "" {
				t.Fatalf("got %q with error %v", got, err)
			}
			return
		}
		if got == "" || len(got) > 64 {
			t.Fatalf("state %q: want 1 to 64 characters", got)
		}
		for _, r := range got {
			if !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r == ':') {
				t.Fatalf("state %q has %q, outside [A-Za-z:]", got, r)
			}
		}
		if got != strings.TrimSpace(string(b)) {
			t.Fatalf("state %q is not the input %q trimmed", got, b)
		}
	})
}

func FuzzParseScheduledEvents(f *testing.F) {
	for _, s := range []string{
		awsScheduledEvent,
		`[]`,
		`null`,
		`[{"NotBefore":"21 Jan 2019 09:00:43 GMT","Code":"system-reboot","EventId":"instance-event-1","NotAfter":"1 Jan 0001 00:00:00 GMT","NotBeforeDeadline":"1 Jan 0001 00:00:00 GMT","State":"active"}]`,
		`[{"NotBefore":"1 Jan 0001 00:00:00 GMT","Code":"system-reboot","EventId":"instance-event-1"}]`,
		`[{"NotBefore":"21 Jan 2019 09:00:43 GMT","Code":"","EventId":"instance-event-1"}]`,
		`[{"NotBefore":"31 Feb 2019 09:00:43 GMT","Code":"x","EventId":"y"}]`,
		`[{}]`,
		`[] []`,
		`{"Code":"system-reboot"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := notice.ParseScheduledEvents(b)
		if err != nil {
			checkMalformed(t, err)
			if got != nil {
				t.Fatalf("got %+v with error %v", got, err)
			}
			return
		}
		if got == nil {
			t.Fatal("nil events without an error")
		}
		checkOneValue(t, b)
		for i, ev := range got {
			if !isToken(ev.Code) || !isToken(ev.EventID) {
				t.Fatalf("event %d: Code %q or EventId %q is not a token", i, ev.Code, ev.EventID)
			}
			if ev.NotBefore.IsZero() {
				t.Fatalf("event %d: zero NotBefore", i)
			}
			if ev.State != strings.TrimSpace(ev.State) {
				t.Fatalf("event %d: state %q is not trimmed", i, ev.State)
			}
			for _, tm := range []time.Time{ev.NotBefore, ev.NotAfter, ev.NotBeforeDeadline} {
				if tm.IsZero() {
					continue
				}
				if tm.Location() != time.UTC || tm.Year() <= 1 {
					t.Fatalf("event %d: time %v is not a real time in UTC", i, tm)
				}
			}
		}
	})
}
