package bootstrap_test

import (
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// sarAction is one IAM action the stack grants (in a role's policy or the
// topic's), as the Service Authorization Reference lists it: the resource
// types a statement may name (none: the action takes only "*"), each with
// its ARN format, and the condition keys the stack uses with it.
type sarAction struct {
	resources  map[string]string // resource type → ARN format
	conditions []string          // service condition keys the stack uses (global aws: keys always pass)
	doc        string            // the service's page of the reference
}

// The service pages of the Service Authorization Reference.
const (
	sarELB = "https://docs.aws.amazon.com/service-authorization/latest/reference/list_awselasticloadbalancingv2.html"
	sarEC2 = "https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonec2.html"
	sarASG = "https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonec2autoscaling.html"
	sarSNS = "https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonsns.html"
	sarS3  = "https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazons3.html"
	sarIAM = "https://docs.aws.amazon.com/service-authorization/latest/reference/list_awsidentityandaccessmanagementiam.html"
	sarSTS = "https://docs.aws.amazon.com/service-authorization/latest/reference/list_awssecuritytokenservice.html"
	sarSSM = "https://docs.aws.amazon.com/service-authorization/latest/reference/list_awssystemsmanager.html"
	sarKMS = "https://docs.aws.amazon.com/service-authorization/latest/reference/list_awskeymanagementservice.html"
)

// ARN formats of the resource types, as the reference writes them.
const (
	arnTargetGroup     = "arn:${Partition}:elasticloadbalancing:${Region}:${Account}:targetgroup/${TargetGroupName}/${TargetGroupId}"
	arnASG             = "arn:${Partition}:autoscaling:${Region}:${Account}:autoScalingGroup:${GroupId}:autoScalingGroupName/${GroupFriendlyName}"
	arnTopic           = "arn:${Partition}:sns:${Region}:${Account}:${TopicName}"
	arnObject          = "arn:${Partition}:s3:::${BucketName}/${ObjectName}"
	arnRole            = "arn:${Partition}:iam::${Account}:role/${RoleNameWithPath}"
	arnInstance        = "arn:${Partition}:ec2:${Region}:${Account}:instance/${InstanceId}"
	arnImage           = "arn:${Partition}:ec2:${Region}::image/${ImageId}"
	arnNetworkIface    = "arn:${Partition}:ec2:${Region}:${Account}:network-interface/${NetworkInterfaceId}"
	arnSecurityGroup   = "arn:${Partition}:ec2:${Region}:${Account}:security-group/${SecurityGroupId}"
	arnSubnet          = "arn:${Partition}:ec2:${Region}:${Account}:subnet/${SubnetId}"
	arnVolume          = "arn:${Partition}:ec2:${Region}:${Account}:volume/${VolumeId}"
	arnLaunchTemplate  = "arn:${Partition}:ec2:${Region}:${Account}:launch-template/${LaunchTemplateId}"
	arnKeyPair         = "arn:${Partition}:ec2:${Region}:${Account}:key-pair/${KeyPairName}"
	arnSpotRequest     = "arn:${Partition}:ec2:${Region}:${Account}:spot-instances-request/${SpotInstanceRequestId}"
	arnPlacementGroup  = "arn:${Partition}:ec2:${Region}:${Account}:placement-group/${PlacementGroupName}"
	arnSnapshot        = "arn:${Partition}:ec2:${Region}::snapshot/${SnapshotId}"
	arnCapacityReserve = "arn:${Partition}:ec2:${Region}:${Account}:capacity-reservation/${CapacityReservationId}"
	arnParameter       = "arn:${Partition}:ssm:${Region}:${Account}:parameter/${ParameterNameWithoutLeadingSlash}"
	arnKey             = "arn:${Partition}:kms:${Region}:${Account}:key/${KeyId}"
)

// sarTable holds every action the stack's roles and topic grant. An action
// that is not here fails the test: add its row from the reference.
var sarTable = map[string]sarAction{
	"elasticloadbalancing:DeregisterTargets":             {map[string]string{"targetgroup": arnTargetGroup}, nil, sarELB},
	"elasticloadbalancing:RegisterTargets":               {map[string]string{"targetgroup": arnTargetGroup}, nil, sarELB},
	"elasticloadbalancing:DescribeTargetHealth":          {nil, nil, sarELB},
	"elasticloadbalancing:DescribeTargetGroupAttributes": {nil, nil, sarELB},
	"ec2:DescribeTags":                                   {nil, nil, sarEC2},
	"ec2:DescribeImages":                                 {nil, nil, sarEC2},
	"ec2:DescribeSubnets":                                {nil, nil, sarEC2},
	"ec2:DescribeInstanceStatus":                         {nil, nil, sarEC2},
	// The drill's FIS role: the action aws:ec2:send-spot-instance-interruptions
	// needs both (https://docs.aws.amazon.com/fis/latest/userguide/fis-actions-reference.html).
	"ec2:SendSpotInstanceInterruptions": {map[string]string{"instance": arnInstance}, nil, sarEC2},
	"ec2:DescribeInstances":             {nil, nil, sarEC2},
	// The operator's calls of instance selection (checkOperatorPolicy).
	"ec2:DescribeInstanceTypes":                    {nil, nil, sarEC2},
	"ec2:GetInstanceTypesFromInstanceRequirements": {nil, nil, sarEC2},
	"ec2:GetSpotPlacementScores":                   {nil, nil, sarEC2},
	"ec2:RunInstances": {map[string]string{
		"image": arnImage, "instance": arnInstance, "network-interface": arnNetworkIface, "security-group": arnSecurityGroup,
		"subnet": arnSubnet, "volume": arnVolume, "launch-template": arnLaunchTemplate, "key-pair": arnKeyPair,
		"spot-instances-request": arnSpotRequest, "placement-group": arnPlacementGroup, "snapshot": arnSnapshot,
		"capacity-reservation": arnCapacityReserve,
	}, nil, sarEC2},
	"ec2:RequestSpotInstances": {map[string]string{
		"spot-instances-request": arnSpotRequest, "image": arnImage, "key-pair": arnKeyPair, "security-group": arnSecurityGroup, "subnet": arnSubnet,
	}, nil, sarEC2},
	"ec2:CreateTags": {map[string]string{
		"instance": arnInstance, "volume": arnVolume, "network-interface": arnNetworkIface, "spot-instances-request": arnSpotRequest,
		"security-group": arnSecurityGroup, "subnet": arnSubnet, "launch-template": arnLaunchTemplate, "image": arnImage,
	}, []string{"ec2:CreateAction"}, sarEC2},
	"ec2:TerminateInstances":                     {map[string]string{"instance": arnInstance}, []string{"ec2:ResourceTag/${TagKey}"}, sarEC2},
	"autoscaling:CompleteLifecycleAction":        {map[string]string{"autoScalingGroup": arnASG}, nil, sarASG},
	"autoscaling:RecordLifecycleActionHeartbeat": {map[string]string{"autoScalingGroup": arnASG}, nil, sarASG},
	"sns:Publish":                  {map[string]string{"topic": arnTopic}, nil, sarSNS},
	"sns:GetTopicAttributes":       {map[string]string{"topic": arnTopic}, nil, sarSNS},
	"sns:SetTopicAttributes":       {map[string]string{"topic": arnTopic}, nil, sarSNS},
	"sns:AddPermission":            {map[string]string{"topic": arnTopic}, nil, sarSNS},
	"sns:RemovePermission":         {map[string]string{"topic": arnTopic}, nil, sarSNS},
	"sns:DeleteTopic":              {map[string]string{"topic": arnTopic}, nil, sarSNS},
	"sns:Subscribe":                {map[string]string{"topic": arnTopic}, nil, sarSNS},
	"sns:ListSubscriptionsByTopic": {map[string]string{"topic": arnTopic}, nil, sarSNS},
	"s3:GetObject":                 {map[string]string{"object": arnObject}, nil, sarS3},
	"iam:PassRole":                 {map[string]string{"role": arnRole}, []string{"iam:PassedToService"}, sarIAM},
	"ssm:GetParameter":             {map[string]string{"parameter": arnParameter}, nil, sarSSM},
	"kms:Decrypt":                  {map[string]string{"key": arnKey}, []string{"kms:ViaService"}, sarKMS},
	"sts:AssumeRole":               {map[string]string{"role": arnRole}, nil, sarSTS}, // in trust policies, which name no resource
}

// statement is one policy statement, in any of IAM's spellings.
type statement struct {
	Sid       string
	Effect    string
	Principal any
	Action    stringOrList
	Resource  stringOrList
	Condition map[string]map[string]stringOrList
}

type stringOrList []string

func (s *stringOrList) UnmarshalJSON(b []byte) error {
	var one string
	if json.Unmarshal(b, &one) == nil {
		*s = []string{one}
		return nil
	}
	var many []string
	err := json.Unmarshal(b, &many)
	*s = many
	return err
}

type policy struct {
	Version   string
	Statement []statement
}

func parsePolicy(t *testing.T, doc string) policy {
	t.Helper()
	if strings.HasPrefix(doc, "%7B") { // IAM answers URL-encoded
		d, err := url.QueryUnescape(doc)
		if err != nil {
			t.Fatal(err)
		}
		doc = d
	}
	var p policy
	if err := json.Unmarshal([]byte(doc), &p); err != nil {
		t.Fatalf("policy: %v\n%s", err, doc)
	}
	return p
}

// policyLength is the length IAM counts against its quotas: characters,
// white space not counted.
// https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html#reference_iam-quotas-entity-length
func policyLength(doc string) int {
	n := 0
	for _, r := range doc {
		if r != ' ' && r != '\n' && r != '\t' && r != '\r' {
			n++
		}
	}
	return n
}

// arnRE turns an ARN format into a regexp: the partition as given, any
// region and account (a policy may name a topic or a group elsewhere), a
// variable said to be without its leading slash one that does not begin
// with one, every other variable one or more characters that are not ':'.
func arnRE(format, partition string) *regexp.Regexp {
	quoted := regexp.QuoteMeta(format)
	r := strings.NewReplacer(regexp.QuoteMeta("${Partition}"), regexp.QuoteMeta(partition),
		regexp.QuoteMeta("${Region}"), `[a-z0-9-]+`, regexp.QuoteMeta("${Account}"), `[0-9]{12}`)
	quoted = r.Replace(quoted)
	quoted = regexp.MustCompile(`\\\$\\\{[A-Za-z]+WithoutLeadingSlash\\\}`).ReplaceAllString(quoted, `[^:/][^:]*`)
	quoted = regexp.MustCompile(`\\\$\\\{[A-Za-z]+\\\}`).ReplaceAllString(quoted, `[^:]+`)
	return regexp.MustCompile("^" + quoted + "$")
}

// globRE is a policy's Resource (or condition) value as IAM matches it: *
// any run of characters, ? one.
func globRE(glob string) *regexp.Regexp {
	q := regexp.QuoteMeta(glob)
	q = strings.ReplaceAll(q, `\*`, `.*`)
	q = strings.ReplaceAll(q, `\?`, `.`)
	return regexp.MustCompile("^" + q + "$")
}

// example fills an ARN format's variables.
func example(format, partition, region, account string) string {
	return regexp.MustCompile(`\$\{[A-Za-z]+\}`).ReplaceAllStringFunc(format, func(v string) string {
		switch v {
		case "${Partition}":
			return partition
		case "${Region}":
			return region
		case "${Account}":
			return account
		}
		return "example"
	})
}

// resourceTypesOf tells which of the action's resource types a statement's
// resource can name: its pattern, with each * a sample value, is an ARN of
// the type, or the type's sample ARN is one the pattern matches.
func resourceTypesOf(a sarAction, resource, partition, region, account string) []string {
	var out []string
	for typ, format := range a.resources {
		if arnRE(format, partition).MatchString(strings.ReplaceAll(resource, "*", "x")) ||
			globRE(resource).MatchString(example(format, partition, region, account)) {
			out = append(out, typ)
		}
	}
	slices.Sort(out)
	return out
}

// checkGrants holds every statement of an identity policy (or a resource
// policy's statements that name a resource) to the reference: each action is
// in sarTable; an action with resource types names resources of those types
// only, never "*"; one without names "*"; every condition key is the
// action's or a global aws: key.
func checkGrants(t *testing.T, what string, p policy, partition, region, account string) {
	t.Helper()
	for _, st := range p.Statement {
		if st.Effect != "Allow" {
			t.Errorf("%s: statement %q is %s", what, st.Sid, st.Effect)
		}
		for _, action := range st.Action {
			service, name, _ := strings.Cut(action, ":")
			a, ok := sarTable[strings.ToLower(service)+":"+name] // the service prefix is case-insensitive
			if !ok {
				t.Errorf("%s: %s is not in sarTable: add its row from the Service Authorization Reference", what, action)
				continue
			}
			for _, res := range st.Resource {
				switch {
				case len(a.resources) == 0 && res != "*":
					t.Errorf("%s: %s supports no resource-level permissions (%s), yet names %s", what, action, a.doc, res)
				case len(a.resources) > 0 && res == "*":
					t.Errorf("%s: %s on every resource: it can be scoped to %v (%s)", what, action, slices.Sorted(mapKeys(a.resources)), a.doc)
				case len(a.resources) > 0 && len(resourceTypesOf(a, res, partition, region, account)) == 0:
					t.Errorf("%s: %s names %s, which is none of its resource types %v (%s)", what, action, res, slices.Sorted(mapKeys(a.resources)), a.doc)
				}
			}
			for _, keys := range st.Condition {
				for key := range keys {
					if strings.HasPrefix(key, "aws:") {
						continue
					}
					ok := slices.ContainsFunc(a.conditions, func(k string) bool {
						return k == key || (strings.HasSuffix(k, "${TagKey}") && strings.HasPrefix(key, strings.TrimSuffix(k, "${TagKey}")))
					})
					if !ok {
						t.Errorf("%s: %s with condition key %s, which the reference does not list for it (%s)", what, action, key, a.doc)
					}
				}
			}
		}
	}
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// allowed evaluates an identity policy as IAM does for the subset the stack
// writes (Allow statements, action and resource globs, the String and Arn
// condition operators), for one request: action, resource and the request's
// condition context. A statement whose condition keys the context lacks does
// not apply.
func allowed(p policy, action, resource string, context map[string]string) bool {
	for _, st := range p.Statement {
		if st.Effect != "Allow" {
			continue
		}
		if !slices.ContainsFunc(st.Action, func(a string) bool { return globRE(strings.ToLower(a)).MatchString(strings.ToLower(action)) }) {
			continue
		}
		if !slices.ContainsFunc(st.Resource, func(r string) bool { return globRE(r).MatchString(resource) }) {
			continue
		}
		if conditionsHold(st.Condition, context) {
			return true
		}
	}
	return false
}

func conditionsHold(conds map[string]map[string]stringOrList, context map[string]string) bool {
	for op, keys := range conds {
		for key, values := range keys {
			got, ok := context[key]
			if !ok {
				return false
			}
			var match func(string) bool
			switch op {
			case "StringEquals", "ArnEquals":
				match = func(v string) bool { return v == got }
			case "StringLike", "ArnLike":
				match = func(v string) bool { return globRE(v).MatchString(got) }
			default:
				panic(fmt.Sprintf("condition operator %s: not in the subset the evaluator knows", op))
			}
			if !slices.ContainsFunc(values, match) {
				return false
			}
		}
	}
	return true
}

// The evaluator and the resource check, on cases that separate right from
// wrong.
func TestPolicyEvaluatorAndResourceTypes(t *testing.T) {
	p := parsePolicy(t, `{"Version":"2012-10-17","Statement":[
		{"Effect":"Allow","Action":"elasticloadbalancing:DeregisterTargets","Resource":"arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web-tg/0123456789abcdef"},
		{"Effect":"Allow","Action":["ec2:TerminateInstances"],"Resource":"arn:aws:ec2:us-east-1:123456789012:instance/*","Condition":{"StringEquals":{"ec2:ResourceTag/spot-agent:stack":"web"}}},
		{"Effect":"Allow","Action":"ec2:Describe*","Resource":"*"}]}`)
	tg := "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web-tg/0123456789abcdef"
	for _, tt := range []struct {
		action, resource string
		ctx              map[string]string
		want             bool
	}{
		{"elasticloadbalancing:DeregisterTargets", tg, nil, true},
		{"elasticloadbalancing:DeregisterTargets", strings.Replace(tg, "web-tg", "other", 1), nil, false},
		{"elasticloadbalancing:RegisterTargets", tg, nil, false},
		{"ec2:TerminateInstances", "arn:aws:ec2:us-east-1:123456789012:instance/i-1", map[string]string{"ec2:ResourceTag/spot-agent:stack": "web"}, true},
		{"ec2:TerminateInstances", "arn:aws:ec2:us-east-1:123456789012:instance/i-1", map[string]string{"ec2:ResourceTag/spot-agent:stack": "other"}, false},
		{"ec2:TerminateInstances", "arn:aws:ec2:us-east-1:123456789012:instance/i-1", nil, false},
		{"ec2:TerminateInstances", "arn:aws:ec2:eu-west-1:123456789012:instance/i-1", map[string]string{"ec2:ResourceTag/spot-agent:stack": "web"}, false},
		{"ec2:DescribeTags", "*", nil, true},
	} {
		if got := allowed(p, tt.action, tt.resource, tt.ctx); got != tt.want {
			t.Errorf("%s on %s with %v: %v, want %v", tt.action, tt.resource, tt.ctx, got, tt.want)
		}
	}
	run := sarTable["ec2:RunInstances"]
	for res, want := range map[string][]string{
		"arn:aws:ec2:us-east-1:123456789012:instance/*": {"instance"},
		"arn:aws:ec2:us-east-1::image/*":                {"image"},
		"arn:aws:ec2:us-east-1:123456789012:*":          {"capacity-reservation", "instance", "key-pair", "launch-template", "network-interface", "placement-group", "security-group", "spot-instances-request", "subnet", "volume"},
		"arn:aws:ec2:us-east-1:123456789012:vpc/*":      nil,
		"arn:aws:s3:::bucket/key":                       nil,
	} {
		if got := resourceTypesOf(run, res, "aws", "us-east-1", "123456789012"); !slices.Equal(got, want) {
			t.Errorf("RunInstances on %s: types %v, want %v", res, got, want)
		}
	}
	if got := resourceTypesOf(sarTable["autoscaling:CompleteLifecycleAction"], "arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:*:autoScalingGroupName/spot-agent-web", "aws", "us-east-1", "123456789012"); !slices.Equal(got, []string{"autoScalingGroup"}) {
		t.Errorf("the group's ARN pattern: %v", got)
	}
	if got := resourceTypesOf(sarTable["s3:GetObject"], "arn:aws:s3:::bucket/agent/spot-agent_1_amd64.deb", "aws", "us-east-1", "123456789012"); !slices.Equal(got, []string{"object"}) {
		t.Errorf("an object's ARN: %v", got)
	}
	// A parameter's ARN does not repeat its name's leading slash.
	for res, want := range map[string][]string{
		"arn:aws:ssm:us-east-1:123456789012:parameter/spot-agent/webhook":  {"parameter"},
		"arn:aws:ssm:us-east-1:123456789012:parameter//spot-agent/webhook": nil,
		"arn:aws:ssm:us-east-1:123456789012:document/spot-agent":           nil,
	} {
		if got := resourceTypesOf(sarTable["ssm:GetParameter"], res, "aws", "us-east-1", "123456789012"); !slices.Equal(got, want) {
			t.Errorf("GetParameter on %s: types %v, want %v", res, got, want)
		}
	}
	decrypt := parsePolicy(t, `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:Decrypt","Resource":"arn:aws:kms:us-east-1:123456789012:key/k","Condition":{"StringEquals":{"kms:ViaService":"ssm.us-east-1.amazonaws.com"}}}]}`)
	for ctx, want := range map[string]bool{"ssm.us-east-1.amazonaws.com": true, "s3.us-east-1.amazonaws.com": false, "": false} {
		c := map[string]string{"kms:ViaService": ctx}
		if ctx == "" {
			c = nil // a direct call to KMS has no kms:ViaService
		}
		if got := allowed(decrypt, "kms:Decrypt", "arn:aws:kms:us-east-1:123456789012:key/k", c); got != want {
			t.Errorf("kms:Decrypt via %q: %v, want %v", ctx, got, want)
		}
	}
}
