// Package packaging holds what the deb and rpm packages ship beside the binary
// and the unit: the default environment file, the maintainer scripts and the
// lintian overrides. Only the environment file is needed by the binary itself
// (`spot-agent install` writes it), so only it is embedded.
package packaging

import (
	_ "embed" // for the environment file
)

//go:embed spot-agent.env
var env []byte

// DefaultEnv returns a copy of the default environment file: every useful
// SPOT_AGENT_* setting, commented out, with its default.
func DefaultEnv() []byte { return append([]byte(nil), env...) }
