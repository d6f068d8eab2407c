// Package tags reads this instance's own tags: from instance metadata when
// instance tags are enabled there (no API call, no IAM permission), else with
// one ec2:DescribeTags call filtered on this instance AND the wanted keys.
//
// The workshop's Lambda built its filter as a Python dict with two "Name" keys,
// so only the key filter survived and it read another instance's tag. Here both
// filters are sent, and every returned tag is checked against this instance.
package tags

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/spot-agent/spot-agent/agent/imds"
)

// EC2 is the part of the EC2 API the reader calls.
type EC2 interface {
	DescribeTags(ctx context.Context, params *ec2.DescribeTagsInput, optFns ...func(*ec2.Options)) (*ec2.DescribeTagsOutput, error)
}

// IMDS is the part of the metadata client the reader calls.
type IMDS interface {
	Tag(ctx context.Context, key string) (string, error)
	TagsEnabled(ctx context.Context) (bool, error)
}

// Observer counts API calls, for metrics.
type Observer interface {
	ObserveAPI(operation string, err error, took time.Duration)
}

// Reader looks up tags of one instance.
type Reader struct {
	InstanceID string
	IMDS       IMDS
	// EC2 may be nil when only IMDS tags are to be used.
	EC2      EC2
	Observer Observer
}

// Source says where a tag set came from.
type Source string

// Sources of tags.
const (
	SourceIMDS         Source = "imds"
	SourceDescribeTags Source = "describe-tags"
)

// Lookup returns the values of the wanted keys that exist; missing keys are
// simply absent from the map. Keys are read from instance metadata first when
// instance tags are enabled there; whatever is still missing (tags disabled,
// or a tag added after launch that IMDS does not show yet) is asked of
// DescribeTags in one call. The source is where the last answer came from.
func (r *Reader) Lookup(ctx context.Context, keys ...string) (map[string]string, Source, error) {
	out := map[string]string{}
	missing := keys
	if enabled, err := r.IMDS.TagsEnabled(ctx); err == nil && enabled {
		missing = nil
		for _, k := range keys {
			v, err := r.IMDS.Tag(ctx, k)
			switch {
			case err == nil:
				out[k] = v
			case errors.Is(err, imds.ErrNotFound):
				missing = append(missing, k)
			default:
				return nil, SourceIMDS, fmt.Errorf("read tag %s from instance metadata: %w", k, err)
			}
		}
		if len(missing) == 0 {
			return out, SourceIMDS, nil
		}
	}
	if r.EC2 == nil {
		return out, SourceIMDS, nil
	}
	start := time.Now()
	in := &ec2.DescribeTagsInput{Filters: []ec2types.Filter{
		{Name: aws.String("resource-id"), Values: []string{r.InstanceID}},
		{Name: aws.String("key"), Values: missing},
	}}
	p := ec2.NewDescribeTagsPaginator(r.EC2, in)
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if r.Observer != nil {
			r.Observer.ObserveAPI("ec2:DescribeTags", err, time.Since(start))
		}
		if err != nil {
			return nil, SourceDescribeTags, fmt.Errorf("ec2:DescribeTags for %s: %w", r.InstanceID, err)
		}
		for _, t := range page.Tags {
			if aws.ToString(t.ResourceId) != r.InstanceID {
				continue // never act on another instance's tag
			}
			out[aws.ToString(t.Key)] = aws.ToString(t.Value)
		}
		start = time.Now()
	}
	return out, SourceDescribeTags, nil
}
