package targets_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/spot-agent/spot-agent/agent/targets"
)

const (
	arnWeb = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123456789abcdef"
	arnAPI = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/api-v2/fedcba9876543210"
)

func TestValidARN(t *testing.T) {
	tests := []struct {
		name string
		arn  string
		want bool
	}{
		{"a target group in the aws partition", arnWeb, true},
		{"a target group in a three-part region", "arn:aws:elasticloadbalancing:ap-southeast-2:123456789012:targetgroup/web/0123456789abcdef", true},
		{"a target group in the China partition", "arn:aws-cn:elasticloadbalancing:cn-north-1:123456789012:targetgroup/web/0123456789abcdef", true},
		{"a target group in GovCloud", "arn:aws-us-gov:elasticloadbalancing:us-gov-west-1:123456789012:targetgroup/web/0123456789abcdef", true},
		{"a target group in an ISO partition", "arn:aws-iso-b:elasticloadbalancing:us-isob-east-1:123456789012:targetgroup/web/0123456789abcdef", true},
		{"a name of 32 characters", "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/" + strings.Repeat("a", 32) + "/0123456789abcdef", true},
		{"a name of one character", "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/A/0123456789abcdef", true},

		{"empty", "", false},
		{"not an ARN", "web", false},
		{"a load balancer ARN", "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/web/50dc6c495c0c9188", false},
		{"a listener ARN", "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/web/50dc6c495c0c9188/f2f7dc8efc522ab2", false},
		{"a classic load balancer ARN", "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/web", false},
		{"an EC2 instance ARN", "arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0", false},
		{"a target group of another service", "arn:aws:ec2:us-east-1:123456789012:targetgroup/web/0123456789abcdef", false},
		{"an unknown partition word without the aws prefix", "arn:azure:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123456789abcdef", false},
		{"a region without its number", "arn:aws:elasticloadbalancing:us-east:123456789012:targetgroup/web/0123456789abcdef", false},
		{"no region", "arn:aws:elasticloadbalancing::123456789012:targetgroup/web/0123456789abcdef", false},
		{"an account of 11 digits", "arn:aws:elasticloadbalancing:us-east-1:12345678901:targetgroup/web/0123456789abcdef", false},
		{"an account with a letter", "arn:aws:elasticloadbalancing:us-east-1:12345678901x:targetgroup/web/0123456789abcdef", false},
		{"a name of 33 characters", "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/" + strings.Repeat("a", 33) + "/0123456789abcdef", false},
		{"a name with an underscore", "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/my_web/0123456789abcdef", false},
		{"no name", "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup//0123456789abcdef", false},
		{"an id in capitals", "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123456789ABCDEF", false},
		{"an id of 15 digits", "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123456789abcde", false},
		{"an id of 17 digits", "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123456789abcdef0", false},
		{"no id", "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web", false},
		{"a space before", " " + arnWeb, false},
		{"a newline after", arnWeb + "\n", false},
		{"two ARNs with a comma", arnWeb + "," + arnAPI, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := targets.ValidARN(tt.arn); got != tt.want {
				t.Errorf("ValidARN(%q) = %v, want %v", tt.arn, got, tt.want)
			}
		})
	}
}

func TestParseARNs(t *testing.T) {
	// eleven distinct target group ARNs.
	var eleven []string
	for i := range 11 {
		eleven = append(eleven, fmt.Sprintf("arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/tg-%d/%016x", i, i))
	}
	tests := []struct {
		name    string
		values  []string
		want    []string
		wantErr string // the whole error
	}{
		{name: "one ARN", values: []string{arnWeb}, want: []string{arnWeb}},
		{name: "a comma-separated list, as a tag holds it", values: []string{arnWeb + "," + arnAPI}, want: []string{arnWeb, arnAPI}},
		{name: "spaces around the elements are trimmed", values: []string{"  " + arnWeb + " ,\t" + arnAPI + "\n"}, want: []string{arnWeb, arnAPI}},
		{name: "empty elements are skipped", values: []string{"," + arnWeb + ",,", ""}, want: []string{arnWeb}},
		{name: "duplicates are dropped, first seen first", values: []string{arnAPI + "," + arnWeb, arnAPI, arnWeb + " , " + arnAPI}, want: []string{arnAPI, arnWeb}},
		{name: "several values, as repeated flags give them", values: []string{arnWeb, arnAPI}, want: []string{arnWeb, arnAPI}},
		{name: "the China and GovCloud partitions", values: []string{
			"arn:aws-cn:elasticloadbalancing:cn-northwest-1:123456789012:targetgroup/web/0123456789abcdef",
			"arn:aws-us-gov:elasticloadbalancing:us-gov-east-1:123456789012:targetgroup/web/0123456789abcdef",
		}, want: []string{
			"arn:aws-cn:elasticloadbalancing:cn-northwest-1:123456789012:targetgroup/web/0123456789abcdef",
			"arn:aws-us-gov:elasticloadbalancing:us-gov-east-1:123456789012:targetgroup/web/0123456789abcdef",
		}},
		{name: "ten ARNs are the most allowed", values: []string{strings.Join(eleven[:10], ",")}, want: eleven[:10]},
		{name: "eleven ARNs with a duplicate are ten", values: []string{strings.Join(eleven[:10], ","), eleven[3]}, want: eleven[:10]},

		{name: "nothing at all is an error", values: nil, wantErr: `no target group ARN in ""`},
		{name: "an empty value is an error", values: []string{""}, wantErr: `no target group ARN in ""`},
		{name: "commas and spaces only are an error", values: []string{" , ", ","}, wantErr: `no target group ARN in " , ,,"`},
		{name: "a word is not an ARN", values: []string{"web"},
			wantErr: `"web" is not a target group ARN (want arn:aws:elasticloadbalancing:REGION:ACCOUNT:targetgroup/NAME/ID)`},
		{name: "a load balancer ARN instead of a target group ARN is an error", values: []string{arnWeb + ",arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/web/50dc6c495c0c9188"},
			wantErr: `"arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/web/50dc6c495c0c9188" is not a target group ARN (want arn:aws:elasticloadbalancing:REGION:ACCOUNT:targetgroup/NAME/ID)`},
		{name: "one bad element spoils the list", values: []string{arnWeb, arnAPI + ";x"},
			wantErr: `"` + arnAPI + `;x" is not a target group ARN (want arn:aws:elasticloadbalancing:REGION:ACCOUNT:targetgroup/NAME/ID)`},
		{name: "a long bad value is clipped to 120 bytes", values: []string{strings.Repeat("x", 500)},
			wantErr: `"` + strings.Repeat("x", 120) + `..." is not a target group ARN (want arn:aws:elasticloadbalancing:REGION:ACCOUNT:targetgroup/NAME/ID)`},
		{name: "eleven ARNs are an error that names the limit", values: []string{strings.Join(eleven, ",")},
			wantErr: "11 target groups: at most 10 are handled"},
		{name: "eleven ARNs over several values are an error too", values: []string{strings.Join(eleven[:5], ","), strings.Join(eleven[5:], ",")},
			wantErr: "11 target groups: at most 10 are handled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := targets.ParseARNs(tt.values...)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("error %v,\nwant %q", err, tt.wantErr)
				}
				if got != nil {
					t.Errorf("got %q with an error", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
	if targets.MaxGroups != 10 {
		t.Errorf("MaxGroups is %d; the table above assumes 10", targets.MaxGroups)
	}
}
