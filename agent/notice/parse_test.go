package notice_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/spot-agent/spot-agent/agent/notice"
)

// The size limit of every parser (parse.go's maxDocument).
const maxDocument = 64 << 10

// padTo pads a document with trailing spaces to exactly n bytes.
func padTo(doc string, n int) string { return doc + strings.Repeat(" ", n-len(doc)) }

// wantMalformed checks that err wraps ErrMalformed and names the document.
func wantMalformed(t *testing.T, err error, doc string) {
	t.Helper()
	if err == nil {
		t.Fatal("no error")
	}
	if !errors.Is(err, notice.ErrMalformed) {
		t.Errorf("error %q does not wrap ErrMalformed", err)
	}
	if prefix := "malformed IMDS document: " + doc + ": "; !strings.HasPrefix(err.Error(), prefix) {
		t.Errorf("error %q does not start with %q", err, prefix)
	}
}

func TestParseInstanceAction(t *testing.T) {
	const doc = "spot/instance-action"
	at := time.Date(2017, 9, 18, 8, 22, 0, 0, time.UTC)
	valid := `{"action": "terminate", "time": "2017-09-18T08:22:00Z"}`
	tests := []struct {
		name    string
		in      string
		want    notice.InstanceAction
		wantErr string // a part of the error; empty for success
	}{
		{name: "terminate as AWS documents it", in: valid, want: notice.InstanceAction{Action: "terminate", Time: at}},
		{name: "terminate as IMDS sends it, without spaces", in: `{"action":"terminate","time":"2017-09-18T08:22:00Z"}`, want: notice.InstanceAction{Action: "terminate", Time: at}},
		{name: "stop", in: `{"action":"stop","time":"2017-09-18T08:22:00Z"}`, want: notice.InstanceAction{Action: "stop", Time: at}},
		{name: "hibernate", in: `{"action":"hibernate","time":"2017-09-18T08:22:00Z"}`, want: notice.InstanceAction{Action: "hibernate", Time: at}},
		{name: "an action this agent does not know is kept as it is", in: `{"action":"reboot","time":"2017-09-18T08:22:00Z"}`, want: notice.InstanceAction{Action: "reboot", Time: at}},
		{name: "an action in capitals is lowered", in: `{"action":"TERMINATE","time":"2017-09-18T08:22:00Z"}`, want: notice.InstanceAction{Action: "terminate", Time: at}},
		{name: "spaces around the action and the time are trimmed", in: `{"action":" stop ","time":" 2017-09-18T08:22:00Z\n"}`, want: notice.InstanceAction{Action: "stop", Time: at}},
		{name: "a time with an offset is converted to UTC", in: `{"action":"terminate","time":"2017-09-18T10:22:00+02:00"}`, want: notice.InstanceAction{Action: "terminate", Time: at}},
		{name: "fractional seconds are kept", in: `{"action":"terminate","time":"2017-09-18T08:22:00.25Z"}`, want: notice.InstanceAction{Action: "terminate", Time: at.Add(250 * time.Millisecond)}},
		{name: "unknown fields are ignored", in: `{"action":"terminate","time":"2017-09-18T08:22:00Z","region":"us-east-1","extra":{"a":[1,2]}}`, want: notice.InstanceAction{Action: "terminate", Time: at}},
		{name: "field names match whatever their case, as encoding/json does", in: `{"Action":"stop","TIME":"2017-09-18T08:22:00Z"}`, want: notice.InstanceAction{Action: "stop", Time: at}},
		{name: "trailing white space is not trailing data", in: valid + "\n\t \n", want: notice.InstanceAction{Action: "terminate", Time: at}},
		{name: "a document of exactly the size limit is accepted", in: padTo(valid, maxDocument), want: notice.InstanceAction{Action: "terminate", Time: at}},

		{name: "a missing action is an error", in: `{"time":"2017-09-18T08:22:00Z"}`, wantErr: "want both action and time"},
		{name: "a missing time is an error", in: `{"action":"terminate"}`, wantErr: "want both action and time"},
		{name: "a null action is an error", in: `{"action":null,"time":"2017-09-18T08:22:00Z"}`, wantErr: "want both action and time"},
		{name: "an empty object is an error", in: `{}`, wantErr: "want both action and time"},
		{name: "an empty action is an error", in: `{"action":"","time":"2017-09-18T08:22:00Z"}`, wantErr: "action: want 1 to 128 characters, got 0"},
		{name: "an action of spaces only is an error", in: `{"action":"   ","time":"2017-09-18T08:22:00Z"}`, wantErr: "action: want 1 to 128 characters, got 0"},
		{name: "an action with a space inside is an error", in: `{"action":"term inate","time":"2017-09-18T08:22:00Z"}`, wantErr: `action: "term inate" has a character outside [A-Za-z0-9-_.:]`},
		{name: "an action with markup is an error", in: `{"action":"<script>","time":"2017-09-18T08:22:00Z"}`, wantErr: "has a character outside"},
		{name: "an action with a newline inside is an error", in: `{"action":"stop\nnow","time":"2017-09-18T08:22:00Z"}`, wantErr: "has a character outside"},
		{name: "an action longer than 128 characters is an error", in: `{"action":"` + strings.Repeat("a", 129) + `","time":"2017-09-18T08:22:00Z"}`, wantErr: "want 1 to 128 characters, got 129"},
		{name: "an action that is a number is an error", in: `{"action":1,"time":"2017-09-18T08:22:00Z"}`, wantErr: "cannot unmarshal number"},
		{name: "a time without a T is an error", in: `{"action":"terminate","time":"2017-09-18 08:22:00Z"}`, wantErr: `time "2017-09-18 08:22:00Z" is not RFC 3339`},
		{name: "a time without a zone is an error", in: `{"action":"terminate","time":"2017-09-18T08:22:00"}`, wantErr: "is not RFC 3339"},
		{name: "a time in the scheduled-event layout is an error", in: `{"action":"terminate","time":"18 Sep 2017 08:22:00 GMT"}`, wantErr: "is not RFC 3339"},
		{name: "an empty time is an error", in: `{"action":"terminate","time":""}`, wantErr: `time "" is not RFC 3339`},
		{name: "a time that is a number is an error", in: `{"action":"terminate","time":1505722920}`, wantErr: "cannot unmarshal number"},
		{name: "an empty document is an error", in: ``, wantErr: "EOF"},
		{name: "white space only is an error", in: " \n", wantErr: "EOF"},
		{name: "plain text is an error", in: `terminate`, wantErr: "invalid character"},
		{name: "an array is an error", in: `[` + valid + `]`, wantErr: "cannot unmarshal array"},
		{name: "null is an error", in: `null`, wantErr: "want both action and time"},
		{name: "a truncated object is an error", in: `{"action":"terminate","time":"2017-09-18T08:2`, wantErr: "unexpected EOF"},
		{name: "trailing text is an error", in: valid + ` x`, wantErr: "trailing data after the object"},
		{name: "a second object is an error", in: valid + valid, wantErr: "trailing data after the object"},
		{name: "a trailing closing bracket is an error", in: valid + `]`, wantErr: "trailing data after the object"},
		{name: "a trailing closing brace and garbage is an error", in: valid + `}garbage`, wantErr: "trailing data after the object"},
		{name: "a document one byte over the size limit is an error", in: padTo(valid, maxDocument+1), wantErr: "65537 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := notice.ParseInstanceAction([]byte(tt.in))
			if tt.wantErr != "" {
				wantMalformed(t, err, doc)
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("error %q does not contain %q", err, tt.wantErr)
				}
				if got != (notice.InstanceAction{}) {
					t.Errorf("got %+v with an error, want the zero value", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if got.Action != tt.want.Action || !got.Time.Equal(tt.want.Time) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
			if got.Time.Location() != time.UTC {
				t.Errorf("time %v is in %v, want UTC", got.Time, got.Time.Location())
			}
		})
	}
}

func TestParseRebalance(t *testing.T) {
	const doc = "events/recommendations/rebalance"
	at := time.Date(2020, 10, 27, 8, 22, 0, 0, time.UTC)
	valid := `{"noticeTime": "2020-10-27T08:22:00Z"}`
	tests := []struct {
		name    string
		in      string
		want    time.Time
		wantErr string
	}{
		{name: "a rebalance recommendation as AWS documents it", in: valid, want: at},
		{name: "a time with an offset is converted to UTC", in: `{"noticeTime":"2020-10-27T03:22:00-05:00"}`, want: at},
		{name: "spaces around the time are trimmed", in: `{"noticeTime":" 2020-10-27T08:22:00Z "}`, want: at},
		{name: "unknown fields are ignored", in: `{"noticeTime":"2020-10-27T08:22:00Z","x":true}`, want: at},
		{name: "a document of exactly the size limit is accepted", in: padTo(valid, maxDocument), want: at},

		{name: "an empty object is an error", in: `{}`, wantErr: "want noticeTime"},
		{name: "a null time is an error", in: `{"noticeTime":null}`, wantErr: "want noticeTime"},
		{name: "the spot document is an error", in: `{"action":"terminate","time":"2017-09-18T08:22:00Z"}`, wantErr: "want noticeTime"},
		{name: "an empty time is an error", in: `{"noticeTime":""}`, wantErr: `noticeTime "" is not RFC 3339`},
		{name: "a time that is not RFC 3339 is an error", in: `{"noticeTime":"27 Oct 2020 08:22:00 GMT"}`, wantErr: `noticeTime "27 Oct 2020 08:22:00 GMT" is not RFC 3339`},
		{name: "a time that is a number is an error", in: `{"noticeTime":1603786920}`, wantErr: "cannot unmarshal number"},
		{name: "an empty document is an error", in: ``, wantErr: "EOF"},
		{name: "plain text is an error", in: `rebalance`, wantErr: "invalid character"},
		{name: "trailing text is an error", in: valid + "\nx", wantErr: "trailing data after the object"},
		{name: "a trailing closing brace is an error", in: valid + `}`, wantErr: "trailing data after the object"},
		{name: "a document one byte over the size limit is an error", in: padTo(valid, maxDocument+1), wantErr: "65537 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := notice.ParseRebalance([]byte(tt.in))
			if tt.wantErr != "" {
				wantMalformed(t, err, doc)
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("error %q does not contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if !got.NoticeTime.Equal(tt.want) || got.NoticeTime.Location() != time.UTC {
				t.Errorf("got %v, want %v in UTC", got.NoticeTime, tt.want)
			}
		})
	}
}

func TestParseLifecycleState(t *testing.T) {
	const doc = "autoscaling/target-lifecycle-state"
	tests := []struct {
		name    string
		in      string
		want    string
		wantErr string
	}{
		{name: "in service", in: "InService", want: "InService"},
		{name: "terminated", in: "Terminated", want: "Terminated"},
		{name: "a warm pool state with a colon", in: "Warmed:Stopped", want: "Warmed:Stopped"},
		{name: "a warm pool state with two colons", in: "Warmed:Pending:Wait", want: "Warmed:Pending:Wait"},
		{name: "a trailing newline is trimmed", in: "Terminated\n", want: "Terminated"},
		{name: "surrounding white space is trimmed", in: " \tInService\r\n", want: "InService"},
		{name: "a state of 64 letters is accepted", in: strings.Repeat("A", 64), want: strings.Repeat("A", 64)},
		{name: "a state within the size limit thanks to trimming is accepted", in: padTo("InService", maxDocument), want: "InService"},

		{name: "an empty document is an error", in: "", wantErr: "want a state word, got 0 bytes"},
		{name: "white space only is an error", in: " \n\t", wantErr: "want a state word, got 0 bytes"},
		{name: "a state of 65 letters is an error", in: strings.Repeat("A", 65), wantErr: "want a state word, got 65 bytes"},
		{name: "a space inside is an error", in: "In Service", wantErr: `state "In Service" has a character outside A-Z, a-z and ':'`},
		{name: "a digit is an error", in: "State1", wantErr: "has a character outside"},
		{name: "a hyphen is an error", in: "In-Service", wantErr: "has a character outside"},
		{name: "a second line is an error", in: "InService\nTerminated", wantErr: "has a character outside"},
		{name: "a letter outside ASCII is an error", in: "Términé", wantErr: "has a character outside"},
		{name: "JSON is an error", in: `{"state":"InService"}`, wantErr: "has a character outside"},
		{name: "a document one byte over the size limit is an error", in: padTo("InService", maxDocument+1), wantErr: "65537 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := notice.ParseLifecycleState([]byte(tt.in))
			if tt.wantErr != "" {
				wantMalformed(t, err, doc)
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("error %q does not contain %q", err, tt.wantErr)
				}
				if got != "" {
					t.Errorf("got %q with an error", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// awsScheduledEvent is the example of the EC2 user guide, as IMDS prints it.
const awsScheduledEvent = `[
  {
    "NotBefore" : "21 Jan 2019 09:00:43 GMT",
    "Code" : "system-reboot",
    "Description" : "scheduled reboot",
    "EventId" : "instance-event-0d59937288b749b32",
    "NotAfter" : "21 Jan 2019 09:17:23 GMT",
    "State" : "active"
  }
]`

func TestParseScheduledEvents(t *testing.T) {
	const doc = "events/maintenance/scheduled"
	reboot := notice.ScheduledEvent{
		Code:        "system-reboot",
		Description: "scheduled reboot",
		State:       "active",
		EventID:     "instance-event-0d59937288b749b32",
		NotBefore:   time.Date(2019, 1, 21, 9, 0, 43, 0, time.UTC),
		NotAfter:    time.Date(2019, 1, 21, 9, 17, 23, 0, time.UTC),
	}
	// event builds a one-event document from the example with one field replaced.
	event := func(field, value string) string {
		fields := map[string]string{
			"NotBefore": `"21 Jan 2019 09:00:43 GMT"`, "Code": `"system-reboot"`, "Description": `"scheduled reboot"`,
			"EventId": `"instance-event-0d59937288b749b32"`, "NotAfter": `"21 Jan 2019 09:17:23 GMT"`, "State": `"active"`,
		}
		if value == "" {
			delete(fields, field)
		} else {
			fields[field] = value
		}
		var parts []string
		for _, k := range []string{"NotBefore", "Code", "Description", "EventId", "NotAfter", "State", "NotBeforeDeadline"} {
			if v, ok := fields[k]; ok {
				parts = append(parts, `"`+k+`":`+v)
			}
		}
		return "[{" + strings.Join(parts, ",") + "}]"
	}
	with := func(f func(*notice.ScheduledEvent)) notice.ScheduledEvent {
		ev := reboot
		f(&ev)
		return ev
	}
	tests := []struct {
		name    string
		in      string
		want    []notice.ScheduledEvent
		wantErr string
	}{
		{name: "the event of the EC2 user guide", in: awsScheduledEvent, want: []notice.ScheduledEvent{reboot}},
		{name: "an empty array is no event", in: `[]`, want: []notice.ScheduledEvent{}},
		{name: "an empty array with white space is no event", in: " [ ]\n", want: []notice.ScheduledEvent{}},
		{name: "null is read as no event", in: `null`, want: []notice.ScheduledEvent{}},
		{name: "AEMM's zero time for an unset NotBeforeDeadline means not given",
			in:   event("NotBeforeDeadline", `"1 Jan 0001 00:00:00 GMT"`),
			want: []notice.ScheduledEvent{reboot}},
		{name: "AEMM's zero time for NotAfter means not given",
			in:   event("NotAfter", `"1 Jan 0001 00:00:00 GMT"`),
			want: []notice.ScheduledEvent{with(func(e *notice.ScheduledEvent) { e.NotAfter = time.Time{} })}},
		{name: "an empty NotAfter means not given",
			in:   event("NotAfter", `""`),
			want: []notice.ScheduledEvent{with(func(e *notice.ScheduledEvent) { e.NotAfter = time.Time{} })}},
		{name: "a missing NotAfter means not given",
			in:   event("NotAfter", ""),
			want: []notice.ScheduledEvent{with(func(e *notice.ScheduledEvent) { e.NotAfter = time.Time{} })}},
		{name: "a NotBeforeDeadline is parsed",
			in:   event("NotBeforeDeadline", `"28 Jan 2019 09:00:43 GMT"`),
			want: []notice.ScheduledEvent{with(func(e *notice.ScheduledEvent) { e.NotBeforeDeadline = time.Date(2019, 1, 28, 9, 0, 43, 0, time.UTC) })}},
		{name: "a day of one digit is parsed",
			in:   event("NotBefore", `"1 Feb 2019 23:59:59 GMT"`),
			want: []notice.ScheduledEvent{with(func(e *notice.ScheduledEvent) { e.NotBefore = time.Date(2019, 2, 1, 23, 59, 59, 0, time.UTC) })}},
		{name: "spaces around the state and the times are trimmed",
			in:   event("State", `" canceled "`),
			want: []notice.ScheduledEvent{with(func(e *notice.ScheduledEvent) { e.State = "canceled" })}},
		{name: "a missing description and state are empty",
			in: `[{"NotBefore":"21 Jan 2019 09:00:43 GMT","Code":"system-reboot","EventId":"instance-event-0d59937288b749b32"}]`,
			want: []notice.ScheduledEvent{with(func(e *notice.ScheduledEvent) {
				e.Description, e.State, e.NotAfter = "", "", time.Time{}
			})}},
		{name: "a canceled event and an active one are both kept, in order",
			in: `[{"NotBefore":"21 Jan 2019 09:00:43 GMT","Code":"instance-stop","EventId":"instance-event-1","State":"canceled","Description":"[Canceled] scheduled stop"},` +
				`{"NotBefore":"22 Jan 2019 10:00:00 GMT","Code":"instance-retirement","EventId":"instance-event-2","State":"active"}]`,
			want: []notice.ScheduledEvent{
				{Code: "instance-stop", Description: "[Canceled] scheduled stop", State: "canceled", EventID: "instance-event-1", NotBefore: time.Date(2019, 1, 21, 9, 0, 43, 0, time.UTC)},
				{Code: "instance-retirement", State: "active", EventID: "instance-event-2", NotBefore: time.Date(2019, 1, 22, 10, 0, 0, 0, time.UTC)},
			}},
		{name: "a description with any text is kept as it is",
			in:   event("Description", `"The instance is running on degraded hardware \u003cb\u003e!"`),
			want: []notice.ScheduledEvent{with(func(e *notice.ScheduledEvent) { e.Description = "The instance is running on degraded hardware <b>!" })}},

		{name: "a missing NotBefore is an error", in: event("NotBefore", ""), wantErr: `event 0: NotBefore "" is not like "2 Jan 2006 15:04:05 GMT"`},
		{name: "AEMM's zero time for NotBefore is an error", in: event("NotBefore", `"1 Jan 0001 00:00:00 GMT"`), wantErr: `event 0: NotBefore "1 Jan 0001 00:00:00 GMT" is not like`},
		{name: "an RFC 3339 NotBefore is an error", in: event("NotBefore", `"2019-01-21T09:00:43Z"`), wantErr: `event 0: NotBefore "2019-01-21T09:00:43Z" is not like`},
		{name: "a NotBefore in another zone is an error", in: event("NotBefore", `"21 Jan 2019 09:00:43 UTC"`), wantErr: "NotBefore"},
		{name: "a bad NotAfter is an error", in: event("NotAfter", `"soon"`), wantErr: `event 0: NotAfter: "soon" is not like "2 Jan 2006 15:04:05 GMT"`},
		{name: "a bad NotBeforeDeadline is an error", in: event("NotBeforeDeadline", `"2019-01-28"`), wantErr: `event 0: NotBeforeDeadline: "2019-01-28" is not like`},
		{name: "a missing Code is an error", in: event("Code", ""), wantErr: "event 0: Code: want 1 to 128 characters, got 0"},
		{name: "a Code with a space is an error", in: event("Code", `"system reboot"`), wantErr: `event 0: Code: "system reboot" has a character outside`},
		{name: "a missing EventId is an error", in: event("EventId", ""), wantErr: "event 0: EventId: want 1 to 128 characters, got 0"},
		{name: "an EventId with a slash is an error", in: event("EventId", `"../../etc"`), wantErr: "event 0: EventId:"},
		{name: "the second event's error names it", in: `[` + strings.Trim(awsScheduledEvent, "[]\n ") + `,{"Code":"x"}]`, wantErr: "event 1: EventId"},
		{name: "a Code that is a number is an error", in: event("Code", `7`), wantErr: "cannot unmarshal number"},
		{name: "an object instead of an array is an error", in: strings.Trim(awsScheduledEvent, "[]\n "), wantErr: "cannot unmarshal object"},
		{name: "an empty document is an error", in: ``, wantErr: "EOF"},
		{name: "plain text is an error", in: `none`, wantErr: "invalid character"},
		{name: "a truncated array is an error", in: awsScheduledEvent[:40], wantErr: "unexpected EOF"},
		{name: "trailing text is an error", in: awsScheduledEvent + " x", wantErr: "trailing data after the array"},
		{name: "a second array is an error", in: `[][]`, wantErr: "trailing data after the array"},
		{name: "a trailing closing bracket is an error", in: `[]]`, wantErr: "trailing data after the array"},
		{name: "a document one byte over the size limit is an error", in: padTo(`[]`, maxDocument+1), wantErr: "65537 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := notice.ParseScheduledEvents([]byte(tt.in))
			if tt.wantErr != "" {
				wantMalformed(t, err, doc)
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("error %q does not contain %q", err, tt.wantErr)
				}
				if got != nil {
					t.Errorf("got %+v with an error, want nil", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if got == nil || len(got) != len(tt.want) {
				t.Fatalf("got %d events (%#v), want %d", len(got), got, len(tt.want))
			}
			for i := range got {
				g, w := got[i], tt.want[i]
				if g.Code != w.Code || g.Description != w.Description || g.State != w.State || g.EventID != w.EventID ||
					!g.NotBefore.Equal(w.NotBefore) || !g.NotAfter.Equal(w.NotAfter) || !g.NotBeforeDeadline.Equal(w.NotBeforeDeadline) {
					t.Errorf("event %d:\n got %+v\nwant %+v", i, g, w)
				}
				for _, tm := range []time.Time{g.NotBefore, g.NotAfter, g.NotBeforeDeadline} {
					if !tm.IsZero() && tm.Location() != time.UTC {
						t.Errorf("event %d: time %v is not in UTC", i, tm)
					}
				}
			}
		})
	}
}
