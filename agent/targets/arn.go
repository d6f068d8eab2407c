package targets

import (
	"fmt"
	"regexp"
	"strings"
)

// MaxGroups bounds how many target groups one instance handles. An instance tag
// value holds at most 256 characters (two ARNs); a list longer than this is a
// mistake, and refusing it keeps a bad value from turning into dozens of API calls.
const MaxGroups = 10

// tgARN matches arn:PARTITION:elasticloadbalancing:REGION:ACCOUNT:targetgroup/NAME/ID.
var tgARN = regexp.MustCompile(`^arn:aws(-[a-z]+)*:elasticloadbalancing:[a-z]{2}(-[a-z]+)+-\d:\d{12}:targetgroup/[A-Za-z0-9-]{1,32}/[0-9a-f]{16}$`)

// ValidARN reports whether s is a target group ARN.
func ValidARN(s string) bool { return tgARN.MatchString(s) }

// ParseARNs splits a comma-separated list of target group ARNs (a tag value, or
// flags), trimming spaces and dropping duplicates. Every element must be a
// target group ARN; nothing is returned if any is not.
func ParseARNs(values ...string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, v := range values {
		for _, part := range strings.Split(v, ",") {
			part = strings.TrimSpace(part)
			if part == "" {
				continue
			}
			if !ValidARN(part) {
				return nil, fmt.Errorf("%q is not a target group ARN (want arn:aws:elasticloadbalancing:REGION:ACCOUNT:targetgroup/NAME/ID)", clip(part))
			}
			if !seen[part] {
				seen[part] = true
				out = append(out, part)
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no target group ARN in %q", clip(strings.Join(values, ",")))
	}
	if len(out) > MaxGroups {
		return nil, fmt.Errorf("%d target groups: at most %d are handled", len(out), MaxGroups)
	}
	return out, nil
}

func clip(s string) string {
	if len(s) > 120 {
		return s[:120] + "..."
	}
	return s
}
