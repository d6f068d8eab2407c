//go:build agentonly

package main

import (
	"context"
	"errors"
	"io"
)

// The on-instance build (the deb and rpm packages) leaves out bootstrap,
// status, teardown, policy, user-data and drill: their AWS clients would
// quadruple the binary that every instance runs. They are in the full build
// (the release tarballs).
var errAgentOnly = errors.New("this is the on-instance build of spot-agent, without bootstrap, status, teardown, policy, user-data and drill: use the full build from the release tarball")

func bootstrapCommand(context.Context, []string, io.Writer, io.Writer) error { return errAgentOnly }

func statusCommand(context.Context, []string, io.Writer, io.Writer) error { return errAgentOnly }

func policyCommand(context.Context, []string, io.Writer, io.Writer) error { return errAgentOnly }

func userDataCommand(context.Context, []string, io.Writer, io.Writer) error { return errAgentOnly }

func teardownCommand(context.Context, []string, io.Reader, io.Writer, io.Writer) error {
	return errAgentOnly
}

func drillCommand(context.Context, []string, io.Reader, io.Writer, io.Writer) error {
	return errAgentOnly
}

// stackCommands are none here: the usage lists the commands of this build only.
var stackCommands []command

// buildNote says, in the usage, which build this is.
const buildNote = `
This is the on-instance build (the deb and rpm packages). The full build (the
release tarballs) also has the commands that build a fleet from your machine.
`
