package secret_test

import (
	"strings"
	"testing"

	"github.com/spot-agent/spot-agent/agent/secret"
)

// References held to AWS's rules for parameter names
// (https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_PutParameter.html):
// letters, digits, _ . - and / between levels, at most 15 levels, not
// beginning with aws or ssm, at most 1011 characters with the ARN before the
// name; a name in a hierarchy begins with a slash, and its ARN does not
// repeat it.
func TestReferencesFollowAWSsRulesForParameterNames(t *testing.T) {
	long := "/" + strings.Repeat("a", secret.MaxARNLength-len("arn:aws:ssm:us-east-1:123456789012:parameter/"))
	for _, tt := range []struct {
		ref, name, arn string // the ARN in aws, us-east-1, 123456789012
	}{
		{"ssm:/spot-agent/webhook", "/spot-agent/webhook", "arn:aws:ssm:us-east-1:123456789012:parameter/spot-agent/webhook"},
		{"ssm:webhook", "webhook", "arn:aws:ssm:us-east-1:123456789012:parameter/webhook"},
		{"ssm:/Prod/web_1/Slack.Hook-2", "/Prod/web_1/Slack.Hook-2", "arn:aws:ssm:us-east-1:123456789012:parameter/Prod/web_1/Slack.Hook-2"},
		{"ssm:/l1/l2/l3/l4/l5/l6/l7/l8/l9/l10/l11/l12/l13/l14/l15", "/l1/l2/l3/l4/l5/l6/l7/l8/l9/l10/l11/l12/l13/l14/l15", ""},
		{"ssm:" + long, long, ""},
		// An ARN is read as it is: a parameter shared by another account, in another region.
		{"ssm:arn:aws:ssm:eu-west-1:210987654321:parameter/shared/hook", "arn:aws:ssm:eu-west-1:210987654321:parameter/shared/hook", "arn:aws:ssm:eu-west-1:210987654321:parameter/shared/hook"},
		{"ssm:arn:aws-cn:ssm:cn-north-1:123456789012:parameter/hook", "arn:aws-cn:ssm:cn-north-1:123456789012:parameter/hook", "arn:aws-cn:ssm:cn-north-1:123456789012:parameter/hook"},
	} {
		r, err := secret.ParseRef(tt.ref)
		if err != nil {
			t.Errorf("%s: %v", tt.ref, err)
			continue
		}
		if r.String() != tt.ref || r.Name() != tt.name {
			t.Errorf("%s: String %q, Name %q; want %q", tt.ref, r.String(), r.Name(), tt.name)
		}
		if got := r.ARN("aws", "us-east-1", "123456789012"); tt.arn != "" && got != tt.arn {
			t.Errorf("%s: ARN %s, want %s", tt.ref, got, tt.arn)
		}
	}
	for ref, want := range map[string]string{
		"/spot/webhook":        "is not a reference: it starts with ssm:",
		"ssm:":                 "names no parameter: give ssm:/NAME",
		"ssm:spot/webhook":     "a name in a hierarchy begins with a slash: give ssm:/spot/webhook",
		"ssm:/spot/web hook":   `' ' is not allowed in a parameter's name: only letters, digits and _ . - / are (AWS's rule)`,
		"ssm:/spot/héllo":      `'é' is not allowed`,
		"ssm:/spot/hook:3":     `':' is not allowed`,
		"ssm:/spot//hook":      "has an empty level (// or a trailing /)",
		"ssm:/spot/":           "has an empty level",
		"ssm:/":                "names no parameter",
		"ssm:/aws/reference/x": "names beginning with aws or ssm are reserved by AWS",
		"ssm:/SSM-hook":        "names beginning with aws or ssm are reserved by AWS",
		"ssm:awsHook":          "names beginning with aws or ssm are reserved by AWS",
		"ssm:" + long + "a":    "the name is too long: with its ARN it is 1012 characters, over AWS's 1011",
		"ssm:/1/2/3/4/5/6/7/8/9/10/11/12/13/14/15/16":                 "has 16 levels, over AWS's 15",
		"ssm:arn:aws:ssm:us-east-1:123456789012:parameter//spot/hook": "a parameter's ARN has one slash after parameter, not two: arn:aws:ssm:us-east-1:123456789012:parameter/spot/hook",
		"ssm:arn:aws:sns:us-east-1:123456789012:topic":                "is not a parameter's ARN like arn:aws:ssm:us-east-1:123456789012:parameter/spot-agent/webhook",
		"ssm:arn:aws:ssm:us-east-1:123456789012:document/x":           "is not a parameter's ARN",
		"ssm:arn:aws:ssm:us-east-1:1234:parameter/x":                  `"1234" is not an account id of 12 digits`,
		"ssm:arn:aws:ssm::123456789012:parameter/x":                   `"" is not a region like us-east-1`,
		"ssm:arn:aws:ssm:us-east-1:123456789012:parameter/aws/x":      "reserved by AWS",
	} {
		_, err := secret.ParseRef(ref)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v\nwant %s", ref, err, want)
		}
	}
}

func TestPartitions(t *testing.T) {
	for region, want := range map[string]string{"us-east-1": "aws", "cn-north-1": "aws-cn", "us-gov-west-1": "aws-us-gov", "eu-central-2": "aws"} {
		if got := secret.Partition(region); got != want {
			t.Errorf("%s: %s, want %s", region, got, want)
		}
	}
}
