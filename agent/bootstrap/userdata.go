package bootstrap

import (
	"context"
	"errors"
	"fmt"

	"github.com/spot-agent/spot-agent/agent/secret"
	"github.com/spot-agent/spot-agent/userdata"
)

// standInAccount takes the place of the account id before it is known: the
// user-data holds it only in an uploaded agent's bucket name, and every
// account id has 12 digits, so the size comes out the same.
const standInAccount = "000000000000"

// preflight reads and checks --user-data-file and --agent-file, pins the
// packages (pinPackages), and renders the launch template's user-data once,
// before any other AWS call: a file that will not do, a package that cannot
// be pinned, or a user-data over EC2's limit, is a *FlagError while nothing
// has been asked of AWS yet (but an s3:// --agent-url's GetObject when it is
// read to be pinned).
func (st *Stack) preflight(ctx context.Context) error {
	st.userPart, st.packages, st.pins = nil, map[string][]byte{}, nil
	for _, f := range st.cfg.AgentFiles {
		b, err := st.opts.ReadFile(f)
		if err != nil {
			return &FlagError{"agent-file", fmt.Sprintf("cannot be read: %v", err)}
		}
		st.packages[f] = b
	}
	if f := st.cfg.UserDataFile; f != "" {
		b, err := st.opts.ReadFile(f)
		if err != nil {
			return &FlagError{"user-data-file", fmt.Sprintf("cannot be read: %v", err)}
		}
		if _, err := userdata.CheckUserData(b); err != nil {
			return &FlagError{"user-data-file", fmt.Sprintf("%s %v", f, err)}
		}
		st.userPart = b
	}
	s := &state{cfg: st.cfg, opts: st.opts, partition: secret.Partition(st.cfg.Region), region: st.cfg.Region, account: standInAccount, userPart: st.userPart}
	s.setAgentObject()
	pins, err := st.pinPackages(ctx, s)
	if err != nil {
		return err
	}
	st.pins, s.pins = pins, pins
	b, err := s.renderUserData()
	if err == nil && len(b) > userdata.MaxSize { // a renderer other than userdata.Render
		err = &userdata.InputError{Input: "size", Problem: fmt.Sprintf("%d bytes, over EC2's %d-byte limit", len(b), userdata.MaxSize)}
	}
	if err == nil {
		return nil
	}
	// Too big: the user's file, unless the agent's part alone is too big.
	agentOnly := *s
	agentOnly.userPart = nil
	b, aerr := agentOnly.renderUserData()
	var ie *userdata.InputError
	tooBig := (aerr == nil && len(b) > userdata.MaxSize) || (errors.As(aerr, &ie) && ie.Input == "size")
	return st.userDataFlagError(err, tooBig)
}

// userDataFlagError names the flag behind each problem the renderer found;
// agentTooBig tells whether the agent's part alone is over the size limit.
func (st *Stack) userDataFlagError(err error, agentTooBig bool) error {
	var errs []error
	for _, e := range flatten(err) {
		var ie *userdata.InputError
		if !errors.As(e, &ie) {
			errs = append(errs, fmt.Errorf("render user-data: %w", e))
			continue
		}
		fe := &FlagError{Problem: ie.Problem}
		switch ie.Input {
		case "distribution":
			fe.Flag = "distribution"
		case "package URL":
			fe.Flag = "agent-url"
			if len(st.cfg.AgentFiles) > 0 {
				fe.Flag = "agent-file"
			}
		case "sha256":
			fe.Flag = "agent-sha256"
		case "env":
			fe.Flag = "agent-env"
		case "user data":
			fe.Flag, fe.Problem = "user-data-file", st.cfg.UserDataFile+" "+ie.Problem
		case "size":
			fe.Flag, fe.Problem = "agent-env", "the launch template's user-data would be "+ie.Problem+": fewer or shorter settings"
			if st.cfg.UserDataFile != "" && !agentTooBig {
				fe.Flag, fe.Problem = "user-data-file", st.cfg.UserDataFile+": with it the launch template's user-data would be "+ie.Problem
			}
		default:
			fe.Flag = "user-data-file"
		}
		errs = append(errs, fe)
	}
	return errors.Join(errs...)
}

// flatten lists the errors inside an errors.Join.
func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}
