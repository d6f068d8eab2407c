package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"strings"

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

// AgentInstall is what the user-data that installs the agent is made of, on
// the instances of a fleet built elsewhere (spot-agent user-data): the
// fields of Config that bootstrap renders its launch templates' user-data
// from, nothing of the stack.
type AgentInstall struct {
	Distribution string   // al2023, debian or ubuntu (Config.Distribution)
	AgentURL     string   // https:// or s3://, ArchPlaceholder for each architecture's (Config.AgentURL)
	AgentRelease string   // a release's packages instead of AgentURL (Config.AgentRelease)
	AgentSHA256  []string // --agent-sha256 as given (Config.AgentSHA256)
	// Arches are the instances' architectures (x86_64, arm64); empty: every
	// one the packages cover.
	Arches []string
	// AgentEnv is the instances' settings file, SPOT_AGENT_<FLAG> to value:
	// every setting, as given (bootstrap writes none of its own here).
	AgentEnv map[string]string
	// UserDataFile is the user's own user-data, merged first (Config.UserDataFile).
	UserDataFile string
}

// UserData renders the user-data that installs the agent as bootstrap's
// launch templates carry it for the same packages, pins, settings and user
// part: the same code (a Stack's preflight, which pins the packages, and
// renderUserData), so the two never differ. Problems are *FlagErrors named
// as bootstrap's flags. It makes no AWS call: an s3:// package needs its
// --agent-sha256; an https:// one without is read once to be pinned, and a
// release's pins come from its checksums.txt.
func UserData(ctx context.Context, in AgentInstall, opts Options) ([]byte, error) {
	cfg := DefaultConfig()
	cfg.Distribution, cfg.AgentURL, cfg.AgentRelease, cfg.AgentSHA256 = in.Distribution, in.AgentURL, in.AgentRelease, in.AgentSHA256
	cfg.Arches, cfg.AgentEnv, cfg.UserDataFile = in.Arches, in.AgentEnv, in.UserDataFile
	cfg.agentOnly = true
	if err := cfg.validateAgentInstall(); err != nil {
		return nil, err
	}
	st := New(cfg, Clients{}, opts)
	if err := st.preflight(ctx); err != nil {
		return nil, err
	}
	s := &state{cfg: st.cfg, opts: st.opts, userPart: st.userPart, pins: st.pins}
	return s.renderUserData()
}

// validateAgentInstall checks the fields of an AgentInstall (UserData), as
// Validate checks them for a stack.
func (c *Config) validateAgentInstall() error {
	var errs []error
	bad := func(flag, format string, args ...any) {
		errs = append(errs, &FlagError{Flag: flag, Problem: fmt.Sprintf(format, args...)})
	}
	c.validateDistribution(bad)
	if _, err := userdata.ParsePins(c.AgentSHA256); err != nil {
		errs = append(errs, sha256FlagError(err))
	}
	c.validateArchNames(bad)
	if c.validatePackages(bad) {
		c.checkPackages(c.plannedArches(), bad)
	}
	if strings.HasPrefix(c.AgentURL, "s3://") && len(c.AgentSHA256) == 0 {
		bad("agent-sha256", "reading an s3:// package to pin it is an AWS call, which spot-agent user-data does not make: give each package's SHA-256 (aws s3 cp %s - | sha256sum prints it), --agent-sha256 HEX, or one per architecture, --agent-sha256 amd64=HEX --agent-sha256 arm64=HEX", c.AgentURL)
	}
	c.validateAgentEnvValues(bad)
	return errors.Join(errs...)
}
