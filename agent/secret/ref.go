// Package secret reads the settings that can hold a secret (a chat webhook's
// URL, a webhook body carrying an API key) from AWS Systems Manager Parameter
// Store instead of the settings file: the setting's value is a reference,
// ssm:NAME or ssm:ARN, to a SecureString parameter, which the agent reads
// with GetParameter and decryption, with its own instance role. The value is
// kept in memory only; nothing of it reaches a log line, a metric, an error
// or the page.
//
// It also holds AWS's rules for a reference, so that `spot-agent run`,
// `policy` and `bootstrap` refuse a bad one alike, before any AWS call.
package secret

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws/arn"
)

// Prefix marks a setting's value as a reference to a parameter.
const Prefix = "ssm:"

// Parameter name limits, as PutParameter documents them:
// https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_PutParameter.html
const (
	// MaxARNLength bounds a parameter's name together with the part of its
	// ARN before it (arn:aws:ssm:us-east-2:111122223333:parameter/).
	MaxARNLength = 1011
	// MaxLevels is the deepest hierarchy a name may have.
	MaxLevels = 15
	// shortestARNPrefix is the shortest ARN before a name (a region of nine
	// characters, such as us-east-1): a name that does not fit beside it fits
	// nowhere. Where the region is known, ARN checks the exact length.
	shortestARNPrefix = len("arn:aws:ssm:us-east-1:123456789012:parameter/")
)

var (
	// nameCharsRE: "Parameter names can include only the following symbols
	// and letters: a-zA-Z0-9_.-", and the slash between levels.
	nameCharsRE = regexp.MustCompile(`^[a-zA-Z0-9_.\-/]+$`)
	accountRE   = regexp.MustCompile(`^[0-9]{12}$`)
	regionRE    = regexp.MustCompile(`^[a-z]{2,4}(-[a-z]+)+-[0-9]+$`)
)

// Ref is a reference to a parameter: its name (with its leading slash when it
// is in a hierarchy), or its ARN.
type Ref struct {
	raw   string  // as given, after the prefix
	name  string  // the parameter's name; for an ARN, "/"+ its resource's name when it has levels
	arn   arn.ARN // set when given as an ARN
	isARN bool
}

// IsRef reports whether a setting's value is a reference (starts with ssm:).
func IsRef(v string) bool { return strings.HasPrefix(v, Prefix) }

// ParseRef reads ssm:NAME or ssm:arn:PARTITION:ssm:REGION:ACCOUNT:parameter/NAME
// and holds NAME to AWS's rules for parameter names. Its errors say what to
// fix; they quote the reference, which is no secret.
func ParseRef(v string) (Ref, error) {
	raw, ok := strings.CutPrefix(v, Prefix)
	if !ok {
		return Ref{}, fmt.Errorf("%q is not a reference: it starts with %s", v, Prefix)
	}
	if strings.HasPrefix(raw, "arn:") {
		return parseARN(v, raw)
	}
	r := Ref{raw: raw, name: raw}
	switch {
	case raw == "":
		return Ref{}, fmt.Errorf("%s names no parameter: give %s/NAME (e.g. %s/spot-agent/webhook) or the parameter's ARN", v, Prefix, Prefix)
	case strings.Contains(raw, "/") && !strings.HasPrefix(raw, "/"):
		return Ref{}, fmt.Errorf("%s: a name in a hierarchy begins with a slash: give %s/%s", v, Prefix, raw)
	}
	if err := checkName(strings.TrimPrefix(raw, "/")); err != nil {
		return Ref{}, fmt.Errorf("%s: %w", v, err)
	}
	if n := shortestARNPrefix + len(strings.TrimPrefix(raw, "/")); n > MaxARNLength {
		return Ref{}, fmt.Errorf("%s: the name is too long: with its ARN it is %d characters, over AWS's %d", v, n, MaxARNLength)
	}
	return r, nil
}

func parseARN(v, raw string) (Ref, error) {
	a, err := arn.Parse(raw)
	if err != nil || a.Service != "ssm" || !strings.HasPrefix(a.Resource, "parameter/") {
		return Ref{}, fmt.Errorf("%s is not a parameter's ARN like arn:aws:ssm:us-east-1:123456789012:parameter/spot-agent/webhook", v)
	}
	switch {
	case !regionRE.MatchString(a.Region):
		return Ref{}, fmt.Errorf("%s: %q is not a region like us-east-1", v, a.Region)
	case !accountRE.MatchString(a.AccountID):
		return Ref{}, fmt.Errorf("%s: %q is not an account id of 12 digits", v, a.AccountID)
	case len(raw) > MaxARNLength:
		return Ref{}, fmt.Errorf("%s: %d characters, over AWS's %d for a parameter's ARN", v, len(raw), MaxARNLength)
	}
	rest := strings.TrimPrefix(a.Resource, "parameter/")
	if strings.HasPrefix(rest, "/") {
		// The ARN of /a/b is parameter/a/b: its name's leading slash is not repeated.
		return Ref{}, fmt.Errorf("%s: a parameter's ARN has one slash after parameter, not two: arn:%s:ssm:%s:%s:parameter/%s", v, a.Partition, a.Region, a.AccountID, strings.TrimLeft(rest, "/"))
	}
	if err := checkName(rest); err != nil {
		return Ref{}, fmt.Errorf("%s: %w", v, err)
	}
	name := rest
	if strings.Contains(rest, "/") {
		name = "/" + rest
	}
	return Ref{raw: raw, name: name, arn: a, isARN: true}, nil
}

// checkName holds a name, without its leading slash, to AWS's rules.
func checkName(n string) error {
	switch {
	case n == "":
		return fmt.Errorf("names no parameter")
	case !nameCharsRE.MatchString(n):
		i := strings.IndexFunc(n, func(r rune) bool { return !nameCharsRE.MatchString(string(r)) })
		return fmt.Errorf("%q is not allowed in a parameter's name: only letters, digits and _ . - / are (AWS's rule)", []rune(n[i:])[0])
	case strings.Contains(n, "//") || strings.HasSuffix(n, "/"):
		return fmt.Errorf("has an empty level (// or a trailing /)")
	case strings.Count(n, "/")+1 > MaxLevels:
		return fmt.Errorf("has %d levels, over AWS's %d", strings.Count(n, "/")+1, MaxLevels)
	}
	if first := strings.ToLower(n); strings.HasPrefix(first, "aws") || strings.HasPrefix(first, "ssm") {
		return fmt.Errorf("names beginning with aws or ssm are reserved by AWS (public parameters): store yours under another name, such as /spot-agent/webhook")
	}
	return nil
}

// String is the reference as given, ssm: included.
func (r Ref) String() string { return Prefix + r.raw }

// Name is what GetParameter takes: the ARN when given one (a parameter of
// another account, shared with this one, is read by its ARN), else the name.
func (r Ref) Name() string {
	if r.isARN {
		return r.raw
	}
	return r.name
}

// Region is the ARN's region; "" for a name, which is read in the agent's.
func (r Ref) Region() string { return r.arn.Region }

// IsARN reports whether the reference is an ARN.
func (r Ref) IsARN() bool { return r.isARN }

// ARN is the parameter's ARN: as given, or the name's in the partition,
// region and account (a name's leading slash is not repeated after
// "parameter/"). It is what a policy names to allow ssm:GetParameter.
func (r Ref) ARN(partition, region, account string) string {
	if r.isARN {
		return r.raw
	}
	return fmt.Sprintf("arn:%s:ssm:%s:%s:parameter/%s", partition, region, account, strings.TrimPrefix(r.name, "/"))
}

// Partition is the partition of a region's ARNs.
func Partition(region string) string {
	switch {
	case strings.HasPrefix(region, "cn-"):
		return "aws-cn"
	case strings.HasPrefix(region, "us-gov-"):
		return "aws-us-gov"
	}
	return "aws"
}
