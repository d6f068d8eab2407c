package packaging

import (
	"bytes"
	"testing"
)

func TestDefaultEnvReturnsACopy(t *testing.T) {
	a := DefaultEnv()
	a[0] = 'X'
	if b := DefaultEnv(); b[0] == 'X' {
		t.Fatal("a caller changed the embedded environment file")
	}
}

// The file only documents: every line is blank or a comment, so installing it
// changes no setting. (cmd/spot-agent checks each commented setting against
// the flags of `run`.)
func TestDefaultEnvSetsNothing(t *testing.T) {
	for i, line := range bytes.Split(DefaultEnv(), []byte("\n")) {
		if len(line) > 0 && line[0] != '#' {
			t.Errorf("line %d sets something: %q", i+1, line)
		}
	}
}
