package testbed

import (
	"context"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	appas "github.com/aws/aws-sdk-go-v2/service/applicationautoscaling"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	"github.com/aws/aws-sdk-go-v2/service/fis"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// The fake names each request's IAM action by its caller, whatever the
// protocol, and what it passes on reaches the endpoint whole: the SDK's own
// requests, to an endpoint that records what it gets.
func TestFISNamesTheActionOfEveryRequestByItsCaller(t *testing.T) {
	var mu sync.Mutex
	var bodies []string
	endpoint := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, string(b))
		mu.Unlock()
		w.WriteHeader(http.StatusOK) // the SDK may not parse it: the request is what counts
	}))
	defer endpoint.Close()
	f, err := NewFIS(endpoint.URL, nil, nil, "123456789012")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	front := httptest.NewServer(f)
	defer front.Close()
	cfg := func(key string) aws.Config {
		return aws.Config{Region: Region, Credentials: credentials.NewStaticCredentialsProvider(key, "secret", ""),
			BaseEndpoint: aws.String(front.URL), RetryMaxAttempts: 1}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	drill, other := cfg("drill"), cfg("other")
	// Query (a form's Action), twice.
	for range 2 {
		_, _ = autoscaling.NewFromConfig(drill).DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{"web"}})
	}
	// JSON (X-Amz-Target).
	_, _ = appas.NewFromConfig(drill).DescribeScalableTargets(ctx, &appas.DescribeScalableTargetsInput{ServiceNamespace: "ec2"})
	// Smithy RPC v2, signed for monitoring: CloudWatch's IAM prefix.
	_, _ = cloudwatch.NewFromConfig(drill).DescribeAlarms(ctx, &cloudwatch.DescribeAlarmsInput{AlarmNames: []string{"a"}})
	// REST: FIS's own (answered by the fake) and S3's.
	if _, err := fis.NewFromConfig(drill).ListExperimentTemplates(ctx, &fis.ListExperimentTemplatesInput{}); err != nil {
		t.Errorf("ListExperimentTemplates: %v", err)
	}
	s3c := s3.NewFromConfig(drill, func(o *s3.Options) { o.UsePathStyle = true })
	_, _ = s3c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String("b")})
	_, _ = s3c.GetBucketTagging(ctx, &s3.GetBucketTaggingInput{Bucket: aws.String("b")})
	_, _ = s3c.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String("b")})
	// Another caller's.
	_, _ = autoscaling.NewFromConfig(other).DescribeLifecycleHooks(ctx, &autoscaling.DescribeLifecycleHooksInput{AutoScalingGroupName: aws.String("web")})

	want := map[string]int{"autoscaling:DescribeAutoScalingGroups": 2, "application-autoscaling:DescribeScalableTargets": 1,
		"cloudwatch:DescribeAlarms": 1, "fis:ListExperimentTemplates": 1, "s3:ListBucket": 1, "s3:GetBucketTagging": 1,
		"s3:? DELETE /b": 1}
	if got := f.Actions("drill"); !maps.Equal(got, want) {
		t.Errorf("the drill's actions:\n%v\nwant\n%v", got, want)
	}
	if got := f.Actions("other"); !maps.Equal(got, map[string]int{"autoscaling:DescribeLifecycleHooks": 1}) {
		t.Errorf("the other caller's actions: %v", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.ContainsFunc(bodies, func(b string) bool {
		return strings.Contains(b, "Action=DescribeAutoScalingGroups") && strings.Contains(b, "AutoScalingGroupNames.member.1=web")
	}) {
		t.Errorf("the endpoint did not get the query request's form whole: %q", bodies)
	}
}
