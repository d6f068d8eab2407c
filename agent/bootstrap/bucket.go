package bootstrap

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// shaKey is the object metadata that tells whether the uploaded agent is the
// local file (an ETag is not a digest for multipart uploads): its pin.
const shaKey = "sha256"

// bucket holds the agent's packages when bootstrap uploads them
// (--agent-file, one per architecture). It is private; only the instance role
// may read the objects.
type bucket struct {
	found    bool
	untagged bool // our derived name, but the tagging call never happened
	uploads  []upload
}

// upload is one --agent-file and its object.
type upload struct {
	key     string
	body    []byte
	wantSHA string
	haveSHA string // of the object in the bucket; "" if absent
}

func (r *bucket) name() string { return "agent-bucket" }

// setAgentObject sets where uploaded packages go (--agent-file): the
// stack's bucket, and each object's key by the package's architecture ("" for
// one package whose name does not say it).
func (s *state) setAgentObject() {
	s.bucket = s.bucketName()
	s.objectKeys = nil
	for _, f := range s.cfg.AgentFiles {
		if s.objectKeys == nil {
			s.objectKeys = map[string]string{}
		}
		s.objectKeys[PackageArch(f)] = "agent/" + filepath.Base(f)
	}
}

func (r *bucket) find(ctx context.Context, s *state) (bool, error) {
	s.setAgentObject()
	r.uploads = nil
	for _, f := range s.cfg.AgentFiles {
		b, ok := s.packages[f] // read and pinned by preflight
		if !ok {
			return false, &FlagError{"agent-file", f + " was not read"}
		}
		r.uploads = append(r.uploads, upload{key: "agent/" + filepath.Base(f), body: b, wantSHA: s.pins[PackageArch(f)].sha256})
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
	for i := range r.uploads {
		u := &r.uploads[i]
		head, err := s.c.S3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(u.key)})
		switch {
		case notFound(err):
		case err != nil:
			return false, err
		default:
			u.haveSHA = head.Metadata[shaKey]
		}
	}
	return true, nil
}

func (r *bucket) plan(s *state) Change {
	c := Change{Resource: r.name(), ID: s.bucket, Settings: []Setting{{"bucket", s.bucket}, {"access", "private; s3:GetObject for the instance role only"}}}
	for _, u := range r.uploads {
		c.Settings = append(c.Settings, Setting{"object", fmt.Sprintf("%s (%d bytes, sha256 %.12s)", u.key, len(u.body), u.wantSHA)})
	}
	switch {
	case !r.found:
		c.Action = Create
		return c
	case r.untagged:
		c.Diffs = append(c.Diffs, Diff{"tags", "(none)", StackTag + "=" + s.cfg.Name})
	}
	for _, u := range r.uploads {
		if u.haveSHA != u.wantSHA {
			c.Diffs = append(c.Diffs, Diff{u.key + " sha256", orNone(u.haveSHA), u.wantSHA})
		}
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
	for i := range r.uploads {
		u := &r.uploads[i]
		if u.haveSHA == u.wantSHA {
			continue
		}
		_, err := s.c.S3.PutObject(ctx, &s3.PutObjectInput{
			Bucket: aws.String(s.bucket), Key: aws.String(u.key), Body: bytes.NewReader(u.body),
			Metadata: map[string]string{shaKey: u.wantSHA},
		})
		if err != nil {
			return fmt.Errorf("upload %s: %w", u.key, err)
		}
		u.haveSHA = u.wantSHA
	}
	return nil
}

// template: a template cannot upload the packages (templateProblems
// refuses --agent-file before this is reached).
func (r *bucket) template(*state, *cfnBuilder) error {
	return &FlagError{"agent-file", "a template cannot upload a file"}
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
