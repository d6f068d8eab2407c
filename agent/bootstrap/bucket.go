package bootstrap

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// shaKey is the object metadata that tells whether the uploaded agent is the
// local file (an ETag is not a digest for multipart uploads).
const shaKey = "sha256"

// bucket holds the agent's package or binary when bootstrap uploads it
// (--agent-file). It is private; only the instance role may read the object.
type bucket struct {
	found    bool
	untagged bool   // our derived name, but the tagging call never happened
	haveSHA  string // of the object in the bucket; "" if absent
	body     []byte
	wantSHA  string
}

func (r *bucket) name() string { return "agent-bucket" }

// setAgentObject sets where an uploaded agent goes (--agent-file): the
// stack's bucket and the object's key.
func (s *state) setAgentObject() {
	s.bucket = s.bucketName()
	if s.cfg.AgentFile != "" {
		s.objectKey = "agent/" + filepath.Base(s.cfg.AgentFile)
	}
}

func (r *bucket) find(ctx context.Context, s *state) (bool, error) {
	s.setAgentObject()
	if s.cfg.AgentFile != "" {
		read := s.opts.ReadFile
		if read == nil {
			read = os.ReadFile
		}
		b, err := read(s.cfg.AgentFile)
		if err != nil {
			return false, fmt.Errorf("--agent-file: %w", err)
		}
		sum := sha256.Sum256(b)
		r.body, r.wantSHA = b, hex.EncodeToString(sum[:])
	}
	if _, err := s.c.S3.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(s.bucket)}); err != nil {
		if notFound(err) {
			return false, nil
		}
		return false, err
	}
	tags, err := s.c.S3.GetBucketTagging(ctx, &s3.GetBucketTaggingInput{Bucket: aws.String(s.bucket)})
	switch {
	case hasCode(err, "NoSuchTagSet"):
		r.untagged = true
	case err != nil:
		return false, err
	default:
		ours := false
		for _, t := range tags.TagSet {
			ours = ours || (deref(t.Key) == StackTag && deref(t.Value) == s.cfg.Name)
		}
		if !ours {
			return false, fmt.Errorf("bucket %s exists but does not carry %s=%s", s.bucket, StackTag, s.cfg.Name)
		}
	}
	r.found = true
	if s.objectKey != "" {
		head, err := s.c.S3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(s.objectKey)})
		switch {
		case notFound(err):
		case err != nil:
			return false, err
		default:
			r.haveSHA = head.Metadata[shaKey]
		}
	}
	return true, nil
}

func (r *bucket) plan(s *state) Change {
	c := Change{Resource: r.name(), ID: s.bucket, Settings: []Setting{{"bucket", s.bucket}, {"access", "private; s3:GetObject for the instance role only"}}}
	if s.objectKey != "" {
		c.Settings = append(c.Settings, Setting{"object", fmt.Sprintf("%s (%d bytes, sha256 %.12s)", s.objectKey, len(r.body), r.wantSHA)})
	}
	switch {
	case !r.found:
		c.Action = Create
		return c
	case r.untagged:
		c.Diffs = append(c.Diffs, Diff{"tags", "(none)", StackTag + "=" + s.cfg.Name})
	}
	if s.objectKey != "" && r.haveSHA != r.wantSHA {
		c.Diffs = append(c.Diffs, Diff{"object sha256", orNone(r.haveSHA), r.wantSHA})
	}
	return c.updateOnDiffs()
}

func (r *bucket) create(ctx context.Context, s *state) error {
	in := &s3.CreateBucketInput{Bucket: aws.String(s.bucket)}
	if s.cfg.Region != "us-east-1" {
		in.CreateBucketConfiguration = &s3types.CreateBucketConfiguration{LocationConstraint: s3types.BucketLocationConstraint(s.cfg.Region)}
	}
	if _, err := s.c.S3.CreateBucket(ctx, in); err != nil {
		return err
	}
	r.found, r.untagged = true, true
	return r.update(ctx, s, Change{})
}

func (r *bucket) update(ctx context.Context, s *state, _ Change) error {
	if r.untagged {
		_, err := s.c.S3.PutBucketTagging(ctx, &s3.PutBucketTaggingInput{Bucket: aws.String(s.bucket), Tagging: &s3types.Tagging{TagSet: []s3types.Tag{
			{Key: aws.String(StackTag), Value: aws.String(s.cfg.Name)}, {Key: aws.String(componentTag), Value: aws.String("agent-bucket")},
		}}})
		if err != nil {
			return fmt.Errorf("tag: %w", err)
		}
		_, err = s.c.S3.PutPublicAccessBlock(ctx, &s3.PutPublicAccessBlockInput{Bucket: aws.String(s.bucket), PublicAccessBlockConfiguration: &s3types.PublicAccessBlockConfiguration{
			BlockPublicAcls: aws.Bool(true), BlockPublicPolicy: aws.Bool(true), IgnorePublicAcls: aws.Bool(true), RestrictPublicBuckets: aws.Bool(true),
		}})
		if err != nil {
			return fmt.Errorf("block public access: %w", err)
		}
		r.untagged = false
	}
	if s.objectKey != "" && r.haveSHA != r.wantSHA {
		_, err := s.c.S3.PutObject(ctx, &s3.PutObjectInput{
			Bucket: aws.String(s.bucket), Key: aws.String(s.objectKey), Body: bytes.NewReader(r.body),
			Metadata: map[string]string{shaKey: r.wantSHA},
		})
		if err != nil {
			return fmt.Errorf("upload %s: %w", s.objectKey, err)
		}
		r.haveSHA = r.wantSHA
	}
	return nil
}

func (r *bucket) delete(ctx context.Context, s *state) error {
	p := s3.NewListObjectsV2Paginator(s.c.S3, &s3.ListObjectsV2Input{Bucket: aws.String(s.bucket)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return err
		}
		for _, o := range page.Contents {
			if _, err := s.c.S3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(s.bucket), Key: o.Key}); err != nil {
				return fmt.Errorf("delete %s: %w", deref(o.Key), err)
			}
		}
	}
	_, err := s.c.S3.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String(s.bucket)})
	return err
}
