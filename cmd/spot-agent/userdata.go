//go:build !agentonly

package main

import (
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/spot-agent/spot-agent/agent/bootstrap"
)

func userDataCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("user-data", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var in bootstrap.AgentInstall
	var encode bool
	sha := &repeatedFlag{name: "agent-sha256"}
	arches := &listFlag{}
	agentEnv := &agentEnvFlag{repeatedFlag{name: "agent-env"}}
	fs.StringVar(&in.Distribution, "distribution", bootstrap.DefaultConfig().Distribution, "the instances' distribution: al2023 (rpm, dnf, /etc/sysconfig/spot-agent), debian or ubuntu (deb, apt, /etc/default/spot-agent)")
	fs.StringVar(&in.AgentURL, "agent-url", "", "https:// or s3:// URL of the agent's .rpm (al2023) or .deb (debian, ubuntu); "+bootstrap.ArchPlaceholder+" in it stands for each architecture's (amd64/arm64 in a .deb, x86_64/aarch64 in an .rpm), and each instance installs its own (default: a release build's own release packages)")
	fs.Var(sha, "agent-sha256", "the SHA-256 each instance checks the package against before it installs it: HEX, or ARCH=HEX (amd64, arm64) for each architecture's package (default: a release's from its checksums.txt, an https:// --agent-url's as read now; an s3:// one needs it)")
	fs.Var(arches, "arch", "the instances' architectures, x86_64 and/or arm64 (default: every one the packages cover)")
	fs.Var(agentEnv, "agent-env", "a setting of the agent on the instances, SPOT_AGENT_<FLAG>=VALUE for a flag of 'spot-agent run' (repeatable), written before the package is installed, so that its first start has it: e.g. SPOT_AGENT_LISTEN=:8081 and SPOT_AGENT_HELLO=false beside an application on port 80; each checked as run reads it")
	fs.StringVar(&in.UserDataFile, "user-data-file", "", "your own user-data, a #cloud-config document or a #! script: it runs first, and the two go into one MIME multipart user-data")
	fs.BoolVar(&encode, "base64", false, "print the user-data base64-encoded, as a launch template's LaunchTemplateData.UserData takes it")
	fs.Usage = func() {
		fmt.Fprintln(stderr, `Usage: spot-agent user-data --agent-url URL [--agent-sha256 [ARCH=]HEX ...] [--agent-env KEY=VALUE ...] [--user-data-file FILE]

Print the user-data that installs the agent on an instance of a fleet built
elsewhere (your launch template's): a #cloud-config that writes the agent's
settings, downloads the package of the instance's architecture, checks its
SHA-256, installs it and starts the service; with --user-data-file, your
user-data first and the agent's after it in one MIME multipart document.
It is what 'spot-agent bootstrap' puts into its launch templates for the
same flags, from the same code. It makes no AWS call.
  spot-agent user-data --agent-url https://.../spot-agent_1.2.3_{arch}.deb --distribution debian \
    --agent-sha256 amd64=HEX --agent-sha256 arm64=HEX > user-data
docs/existing-fleet.md shows where it goes. Every flag can also be set as
SPOT_AGENT_<FLAG>.

Flags:`)
		fs.PrintDefaults()
	}
	if err := parse(fs, args); err != nil {
		return err
	}
	env, err := agentEnv.fileSettings()
	if err != nil {
		return &usageError{err}
	}
	in.AgentEnv, in.Arches, in.AgentSHA256 = env, arches.values, sha.resolve()
	if in.AgentURL == "" {
		v, _, _ := buildInfo()
		in.AgentRelease, _ = releaseVersion(v)
	}
	b, err := bootstrap.UserData(ctx, in, bootstrap.Options{})
	if err != nil {
		var fe *bootstrap.FlagError
		if errors.As(err, &fe) {
			return &usageError{err}
		}
		return err
	}
	if in.AgentURL != "" && len(in.AgentSHA256) == 0 {
		fmt.Fprintf(stderr, "spot-agent user-data: no --agent-sha256: %s was read now and pinned as read; check it against a digest you trust (docs/verify.md), then give it with --agent-sha256\n", in.AgentURL)
	}
	printWarnings(stderr, bootstrap.SecretWarnings(env))
	if encode {
		_, err = fmt.Fprintln(stdout, base64.StdEncoding.EncodeToString(b))
		return err
	}
	_, err = stdout.Write(b)
	return err
}
