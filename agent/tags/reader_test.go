package tags_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/spot-agent/spot-agent/agent/imds"
	"github.com/spot-agent/spot-agent/agent/tags"
	"github.com/spot-agent/spot-agent/internal/testbed"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbed.StopShared()
	os.Exit(code)
}

type apiCalls map[string]int

func (a apiCalls) ObserveAPI(op string, err error, _ time.Duration) {
	if err != nil {
		op += " error"
	}
	a[op]++
}

var _ tags.Observer = apiCalls(nil)

func TestLookupReadsOnlyThisInstancesTagWhenOthersHaveTheSameKey(t *testing.T) {
	// The workshop's Lambda lost its resource-id filter and read another
	// instance's tag. Two instances carry the key; the reader must get its own.
	moto := testbed.SharedMoto(t)
	other := moto.Instance(t, map[string]string{"loadBalancerTargetGroup": "other-value"})
	self := moto.Instance(t, map[string]string{"loadBalancerTargetGroup": "own-value", "Name": "web"})
	_ = other
	m := testbed.NewIMDS(t, self) // instance tags disabled in metadata
	calls := apiCalls{}
	r := &tags.Reader{InstanceID: self, IMDS: imds.New(imds.Options{Endpoint: m.URL, Timeout: time.Second}), EC2: moto.EC2(), Observer: calls}
	got, src, err := r.Lookup(context.Background(), "loadBalancerTargetGroup", "absent")
	if err != nil {
		t.Fatal(err)
	}
	if src != tags.SourceDescribeTags || len(got) != 1 || got["loadBalancerTargetGroup"] != "own-value" {
		t.Fatalf("got %v from %s, want only loadBalancerTargetGroup=own-value from describe-tags", got, src)
	}
	if calls["ec2:DescribeTags"] != 1 {
		t.Fatalf("API calls = %v, want one DescribeTags", calls)
	}
}

func TestLookupUsesMetadataTagsWithoutAnAPICallWhenTheyHaveEveryKey(t *testing.T) {
	moto := testbed.SharedMoto(t)
	self := moto.Instance(t, map[string]string{"loadBalancerTargetGroup": "from-api"})
	m := testbed.NewIMDS(t, self)
	m.SetTags(map[string]string{"loadBalancerTargetGroup": "from-imds"})
	calls := apiCalls{}
	r := &tags.Reader{InstanceID: self, IMDS: imds.New(imds.Options{Endpoint: m.URL, Timeout: time.Second}), EC2: moto.EC2(), Observer: calls}
	got, src, err := r.Lookup(context.Background(), "loadBalancerTargetGroup")
	if err != nil || src != tags.SourceIMDS || got["loadBalancerTargetGroup"] != "from-imds" {
		t.Fatalf("got %v from %s, %v", got, src, err)
	}
	if len(calls) != 0 {
		t.Fatalf("API calls = %v, want none", calls)
	}
}

func TestLookupAsksTheAPIForKeysMissingFromMetadata(t *testing.T) {
	moto := testbed.SharedMoto(t)
	self := moto.Instance(t, map[string]string{"aws:autoscaling:groupName": "web-asg"})
	m := testbed.NewIMDS(t, self)
	m.SetTags(map[string]string{"Name": "web"})
	r := &tags.Reader{InstanceID: self, IMDS: imds.New(imds.Options{Endpoint: m.URL, Timeout: time.Second}), EC2: moto.EC2()}
	got, _, err := r.Lookup(context.Background(), "Name", "aws:autoscaling:groupName")
	if err != nil || got["Name"] != "web" || got["aws:autoscaling:groupName"] != "web-asg" {
		t.Fatalf("got %v, %v", got, err)
	}
}

func TestLookupReportsAPIErrors(t *testing.T) {
	m := testbed.NewIMDS(t, "i-0123456789abcdef0")
	port := testbed.Port(t)
	moto := &testbed.Moto{URL: "http://127.0.0.1:" + itoa(port)} // nothing listens there
	calls := apiCalls{}
	r := &tags.Reader{InstanceID: "i-0123456789abcdef0", IMDS: imds.New(imds.Options{Endpoint: m.URL, Timeout: time.Second}), EC2: moto.EC2(), Observer: calls}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, _, err := r.Lookup(ctx, "k"); err == nil {
		t.Fatal("no error from an unreachable EC2 endpoint")
	}
	if calls["ec2:DescribeTags error"] != 1 {
		t.Fatalf("API calls = %v", calls)
	}
}
