package bootstrap_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// matchPattern tells whether an EventBridge event pattern matches an event,
// for the subset of the pattern syntax the stack uses: a pattern is an object
// whose fields are either arrays of values, of which the event's field (or,
// if it is an array, one of its elements) must equal one, or objects matched
// the same way one level down; a field the event lacks never matches.
// Content filters (prefix, anything-but, numeric, exists...) are refused, not
// guessed at.
// https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-event-patterns.html
func matchPattern(pattern, event map[string]any) (bool, error) {
	for field, want := range pattern {
		got, ok := event[field]
		switch w := want.(type) {
		case map[string]any:
			sub, isObject := got.(map[string]any)
			if !ok || !isObject {
				return false, nil
			}
			m, err := matchPattern(w, sub)
			if err != nil || !m {
				return false, err
			}
		case []any:
			m, err := matchValues(w, got, ok)
			if err != nil || !m {
				return false, err
			}
		default:
			return false, fmt.Errorf("pattern field %q: %v is neither an array of values nor an object", field, want)
		}
	}
	return true, nil
}

// matchValues tells whether the event's value (present or not) equals one
// of the pattern's values.
func matchValues(values []any, got any, present bool) (bool, error) {
	for _, v := range values {
		if _, isObject := v.(map[string]any); isObject {
			return false, fmt.Errorf("content filter %v: not in the subset this matcher knows", v)
		}
	}
	if !present {
		return false, nil
	}
	candidates := []any{got}
	if list, ok := got.([]any); ok {
		candidates = list
	}
	for _, c := range candidates {
		for _, v := range values {
			if reflect.DeepEqual(c, v) {
				return true, nil
			}
		}
	}
	return false, nil
}

func decodeJSON(t *testing.T, text string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(text), &m); err != nil {
		t.Fatalf("%v: %s", err, text)
	}
	return m
}

// The matcher itself, on cases that separate right from wrong.
func TestEventPatternMatcher(t *testing.T) {
	event := decodeJSON(t, `{"source":"aws.ec2","detail-type":"X","resources":["a","b"],"detail":{"state":"running","n":5,"tags":null}}`)
	for _, tt := range []struct {
		pattern string
		match   bool
		err     bool
	}{
		{`{"source":["aws.ec2"]}`, true, false},
		{`{"source":["aws.ec2","aws.s3"],"detail-type":["X"]}`, true, false},
		{`{"source":["aws.s3"]}`, false, false},
		{`{"source":["aws.ec2"],"detail-type":["Y"]}`, false, false},
		{`{"resources":["b"]}`, true, false},
		{`{"resources":["c"]}`, false, false},
		{`{"detail":{"state":["running"]}}`, true, false},
		{`{"detail":{"state":["stopped"]}}`, false, false},
		{`{"detail":{"n":[5]}}`, true, false},
		{`{"detail":{"n":["5"]}}`, false, false},
		{`{"detail":{"missing":["x"]}}`, false, false},
		{`{"account":["123"]}`, false, false},
		{`{"detail":["running"]}`, false, false},
		{`{"source":"aws.ec2"}`, false, true},
		{`{"source":[{"prefix":"aws."}]}`, false, true},
	} {
		got, err := matchPattern(decodeJSON(t, tt.pattern), event)
		if got != tt.match || (err != nil) != tt.err {
			t.Errorf("%s: %v, %v; want %v (error %v)", tt.pattern, got, err, tt.match, tt.err)
		}
	}
}

// sampleEvents reads the events written from AWS's documented examples.
func sampleEvents(t *testing.T) map[string]map[string]any {
	t.Helper()
	files, err := filepath.Glob("testdata/events/*.json")
	if err != nil || len(files) < 4 {
		t.Fatalf("sample events: %v %v", files, err)
	}
	out := map[string]map[string]any{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(f)] = decodeJSON(t, string(b))
	}
	return out
}
