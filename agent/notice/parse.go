package notice

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// maxDocument bounds what a parser accepts; IMDS documents are a few hundred bytes.
const maxDocument = 64 << 10

// ErrMalformed is wrapped by every parser error.
var ErrMalformed = errors.New("malformed IMDS document")

func malformed(doc, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrMalformed, doc, fmt.Sprintf(format, args...))
}

// InstanceAction is the spot/instance-action document:
// {"action": "terminate", "time": "2017-09-18T08:22:00Z"}.
type InstanceAction struct {
	Action string
	Time   time.Time
}

// ParseInstanceAction parses spot/instance-action. An action this agent does not
// know is kept as it is (Decide treats it like terminate, the safe reading);
// a missing action or an unparsable time is an error.
func ParseInstanceAction(b []byte) (InstanceAction, error) {
	const doc = "spot/instance-action"
	var raw struct {
		Action *string `json:"action"`
		Time   *string `json:"time"`
	}
	if err := decodeObject(b, &raw); err != nil {
		return InstanceAction{}, malformed(doc, "%v", err)
	}
	if raw.Action == nil || raw.Time == nil {
		return InstanceAction{}, malformed(doc, "want both action and time")
	}
	action, err := token(*raw.Action)
	if err != nil {
		return InstanceAction{}, malformed(doc, "action: %v", err)
	}
	t, err := time.Parse(time.RFC3339, strings.TrimSpace(*raw.Time))
	if err != nil {
		return InstanceAction{}, malformed(doc, "time %q is not RFC 3339", *raw.Time)
	}
	return InstanceAction{Action: strings.ToLower(action), Time: t.UTC()}, nil
}

// Rebalance is the events/recommendations/rebalance document:
// {"noticeTime": "2020-10-27T08:22:00Z"}.
type Rebalance struct {
	NoticeTime time.Time
}

// ParseRebalance parses events/recommendations/rebalance.
func ParseRebalance(b []byte) (Rebalance, error) {
	const doc = "events/recommendations/rebalance"
	var raw struct {
		NoticeTime *string `json:"noticeTime"`
	}
	if err := decodeObject(b, &raw); err != nil {
		return Rebalance{}, malformed(doc, "%v", err)
	}
	if raw.NoticeTime == nil {
		return Rebalance{}, malformed(doc, "want noticeTime")
	}
	t, err := time.Parse(time.RFC3339, strings.TrimSpace(*raw.NoticeTime))
	if err != nil {
		return Rebalance{}, malformed(doc, "noticeTime %q is not RFC 3339", *raw.NoticeTime)
	}
	return Rebalance{NoticeTime: t.UTC()}, nil
}

// ParseLifecycleState parses autoscaling/target-lifecycle-state, a bare word
// such as InService, Terminated or Warmed:Stopped.
func ParseLifecycleState(b []byte) (string, error) {
	const doc = "autoscaling/target-lifecycle-state"
	if len(b) > maxDocument {
		return "", malformed(doc, "%d bytes", len(b))
	}
	s := strings.TrimSpace(string(b))
	if s == "" || len(s) > 64 {
		return "", malformed(doc, "want a state word, got %d bytes", len(s))
	}
	for _, r := range s {
		if !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r == ':') {
			return "", malformed(doc, "state %q has a character outside A-Z, a-z and ':'", s)
		}
	}
	return s, nil
}

// ScheduledEvent is one entry of events/maintenance/scheduled.
type ScheduledEvent struct {
	Code              string
	Description       string
	State             string
	EventID           string
	NotBefore         time.Time
	NotAfter          time.Time
	NotBeforeDeadline time.Time
}

// eventTimeLayout is how IMDS writes scheduled event times: "21 Jan 2019 09:00:43 GMT".
const eventTimeLayout = "2 Jan 2006 15:04:05 GMT"

// ParseScheduledEvents parses events/maintenance/scheduled, a JSON array.
// Code, EventId and NotBefore are required; the other times may be absent or empty.
func ParseScheduledEvents(b []byte) ([]ScheduledEvent, error) {
	const doc = "events/maintenance/scheduled"
	if len(b) > maxDocument {
		return nil, malformed(doc, "%d bytes", len(b))
	}
	var raw []struct {
		Code              string `json:"Code"`
		Description       string `json:"Description"`
		State             string `json:"State"`
		EventID           string `json:"EventId"`
		NotBefore         string `json:"NotBefore"`
		NotAfter          string `json:"NotAfter"`
		NotBeforeDeadline string `json:"NotBeforeDeadline"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&raw); err != nil {
		return nil, malformed(doc, "%v", err)
	}
	if !atEOF(dec) {
		return nil, malformed(doc, "trailing data after the array")
	}
	out := make([]ScheduledEvent, 0, len(raw))
	for i, r := range raw {
		code, err := token(r.Code)
		if err != nil {
			return nil, malformed(doc, "event %d: Code: %v", i, err)
		}
		id, err := token(r.EventID)
		if err != nil {
			return nil, malformed(doc, "event %d: EventId: %v", i, err)
		}
		ev := ScheduledEvent{Code: code, Description: r.Description, State: strings.TrimSpace(r.State), EventID: id}
		if ev.NotBefore, err = eventTime(r.NotBefore); err != nil || ev.NotBefore.IsZero() {
			return nil, malformed(doc, "event %d: NotBefore %q is not like %q", i, r.NotBefore, eventTimeLayout)
		}
		if ev.NotAfter, err = eventTime(r.NotAfter); err != nil {
			return nil, malformed(doc, "event %d: NotAfter: %v", i, err)
		}
		if ev.NotBeforeDeadline, err = eventTime(r.NotBeforeDeadline); err != nil {
			return nil, malformed(doc, "event %d: NotBeforeDeadline: %v", i, err)
		}
		out = append(out, ev)
	}
	return out, nil
}

// eventTime parses a scheduled event time; empty, and the zero time that some
// mocks print for an unset field, both mean "not given".
func eventTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(eventTimeLayout, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is not like %q", s, eventTimeLayout)
	}
	if t.Year() <= 1 {
		return time.Time{}, nil
	}
	return t.UTC(), nil
}

// decodeObject decodes exactly one JSON object.
func decodeObject(b []byte, v any) error {
	if len(b) > maxDocument {
		return fmt.Errorf("%d bytes", len(b))
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(v); err != nil {
		return err
	}
	if !atEOF(dec) {
		return errors.New("trailing data after the object")
	}
	return nil
}

// atEOF reports whether nothing but white space follows the decoded value.
// (dec.More is false before a stray ']' or '}', so it cannot tell.)
func atEOF(dec *json.Decoder) bool {
	_, err := dec.Token()
	return err == io.EOF
}

// token checks a short identifier-like value (an action, a code, an id) so that
// nothing odd reaches logs or metric labels.
func token(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > 128 {
		return "", fmt.Errorf("want 1 to 128 characters, got %d", len(s))
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' || r == ':') {
			return "", fmt.Errorf("%q has a character outside [A-Za-z0-9-_.:]", s)
		}
	}
	return s, nil
}
