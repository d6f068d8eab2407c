package bootstrap

import (
	"cmp"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/spot-agent/spot-agent/userdata"
)

// amiParameter is the public SSM parameter of the latest Amazon Linux 2023 AMI.
func amiParameter(arch string) string {
	return "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-" + arch
}

// launchTemplate is what every instance of one architecture boots with: the
// architecture's AMI, the instance profile, the instances' security group,
// IMDSv2 only with a hop limit of 1 and instance tags in metadata, the
// instance tags the agent reads, and the user-data that installs and starts
// it. There is one per architecture: "one launch template for each AMI", each
// paired with its types or requirements in the fleet's overrides.
// https://docs.aws.amazon.com/autoscaling/ec2/userguide/ec2-auto-scaling-mixed-instances-groups-launch-template-overrides.html
type launchTemplate struct {
	arch    string // x86_64 or arm64; "" for a stack's one template before issue 15 (teardown, status)
	found   bool
	version int64
	data    *ec2types.ResponseLaunchTemplateData
	ud      string // base64 user-data, rendered by find
}

func (r *launchTemplate) name() string { return r.component() }

func (r *launchTemplate) component() string {
	if r.arch == "" {
		return "launch-template"
	}
	return "launch-template-" + r.arch
}

// used tells whether the fleet launches this architecture (bootstrap only).
func (r *launchTemplate) used(s *state) bool {
	return r.arch != "" && s.cfg.bootstrapping() && slices.Contains(s.archList(), r.arch)
}

func (r *launchTemplate) find(ctx context.Context, s *state) (bool, error) {
	out, err := s.c.EC2.DescribeLaunchTemplates(ctx, &ec2.DescribeLaunchTemplatesInput{Filters: s.ec2Filter(r.component())})
	if err != nil {
		return false, err
	}
	if s.ltIDs == nil {
		s.ltIDs, s.amis = map[string]string{}, map[string]string{}
	}
	if len(out.LaunchTemplates) > 0 {
		lt := out.LaunchTemplates[0]
		s.ltIDs[r.arch], r.version = deref(lt.LaunchTemplateId), deref(lt.DefaultVersionNumber)
		v, err := s.c.EC2.DescribeLaunchTemplateVersions(ctx, &ec2.DescribeLaunchTemplateVersionsInput{
			LaunchTemplateId: lt.LaunchTemplateId, Versions: []string{strconv.FormatInt(r.version, 10)},
		})
		if err != nil {
			return false, err
		}
		if len(v.LaunchTemplateVersions) == 0 {
			return false, fmt.Errorf("launch template %s has no version %d", s.ltIDs[r.arch], r.version)
		}
		r.found, r.data = true, v.LaunchTemplateVersions[0].LaunchTemplateData
	}
	if !r.used(s) { // teardown, status, or an architecture the fleet left
		return r.found, nil
	}
	// The AMI: --ami, else the one the template already has (so that a new
	// Amazon Linux release does not make a re-run change anything), else the
	// latest from the architecture's public parameter.
	switch {
	case s.cfg.AMIs[r.arch] != "":
		s.amis[r.arch] = s.cfg.AMIs[r.arch]
	case s.cfg.AMI != "":
		s.amis[r.arch] = s.cfg.AMI
	case r.found:
		s.amis[r.arch] = deref(r.data.ImageId)
	default:
		p, err := s.c.SSM.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String(amiParameter(r.arch))})
		if err != nil {
			return false, fmt.Errorf("latest Amazon Linux 2023 AMI (%s): %w", amiParameter(r.arch), err)
		}
		s.amis[r.arch] = deref(p.Parameter.Value)
	}
	ud, err := s.userData()
	if err != nil {
		return false, err
	}
	r.ud = ud
	return r.found, nil
}

// agentEnv is the agent's environment on the instances (AgentSettings).
func (s *state) agentEnv() map[string]string { return s.cfg.AgentSettings() }

// userDataConfig is what the launch template's user-data is made of: the
// packages of the fleet's architectures, each with its pin, the agent's
// settings, and the user's own part.
func (s *state) userDataConfig() userdata.Config {
	c := userdata.Config{Distribution: userdata.Distribution(s.cfg.Distribution), Env: s.agentEnv(), UserData: s.userPart}
	pkgs := s.installs()
	if len(pkgs) != 1 {
		c.Packages = pkgs
		return c
	}
	for _, p := range pkgs { // one package, under "" or its architecture
		c.Package = p
	}
	return c
}

// renderUserData renders the launch template's user-data.
func (s *state) renderUserData() ([]byte, error) {
	if s.opts.UserData == nil {
		return nil, errors.New("no user-data renderer")
	}
	return s.opts.UserData(s.userDataConfig())
}

// userData is the launch templates' user-data, base64-encoded. It is the
// same for every architecture (each instance picks its own package), so it is
// rendered once, by the first template's find (after the bucket's, which sets
// the uploaded packages' objects).
func (s *state) userData() (string, error) {
	if s.ud != "" {
		return s.ud, nil
	}
	b, err := s.renderUserData()
	if err != nil {
		return "", fmt.Errorf("render user-data: %w", err)
	}
	s.ud = base64.StdEncoding.EncodeToString(b)
	return s.ud, nil
}

// instanceTags are the tags every instance carries: the stack, and the target
// group the agent leaves on a notice.
func (s *state) instanceTags() map[string]string {
	return map[string]string{
		StackTag:       s.cfg.Name,
		"Name":         s.cfg.Name + "-instance",
		TargetGroupTag: orPending(s.tgARN),
	}
}

func tagList(m map[string]string) []ec2types.Tag {
	var out []ec2types.Tag
	for _, k := range sortedKeys(m) {
		out = append(out, ec2types.Tag{Key: aws.String(k), Value: aws.String(m[k])})
	}
	return out
}

func (r *launchTemplate) want(s *state) *ec2types.RequestLaunchTemplateData {
	return &ec2types.RequestLaunchTemplateData{
		ImageId:            aws.String(s.amis[r.arch]),
		IamInstanceProfile: &ec2types.LaunchTemplateIamInstanceProfileSpecificationRequest{Name: aws.String(s.roleName)},
		SecurityGroupIds:   []string{s.instanceSG},
		MetadataOptions: &ec2types.LaunchTemplateInstanceMetadataOptionsRequest{
			HttpEndpoint:            ec2types.LaunchTemplateInstanceMetadataEndpointStateEnabled,
			HttpTokens:              ec2types.LaunchTemplateHttpTokensStateRequired,
			HttpPutResponseHopLimit: aws.Int32(1),
			InstanceMetadataTags:    ec2types.LaunchTemplateInstanceMetadataTagsStateEnabled,
		},
		UserData: aws.String(r.ud),
		TagSpecifications: []ec2types.LaunchTemplateTagSpecificationRequest{
			{ResourceType: ec2types.ResourceTypeInstance, Tags: tagList(s.instanceTags())},
			{ResourceType: ec2types.ResourceTypeVolume, Tags: tagList(map[string]string{StackTag: s.cfg.Name})},
		},
	}
}

func (r *launchTemplate) diff(s *state, want *ec2types.RequestLaunchTemplateData) []Diff {
	have := r.data
	var d []Diff
	cmp := func(field, h, w string) {
		if h != w {
			d = append(d, Diff{field, orNone(h), w})
		}
	}
	cmp("image-id", deref(have.ImageId), deref(want.ImageId))
	profile := ""
	if have.IamInstanceProfile != nil {
		profile = deref(have.IamInstanceProfile.Name)
	}
	cmp("instance-profile", profile, s.roleName)
	cmp("security-groups", join(have.SecurityGroupIds), join(want.SecurityGroupIds))
	var mo ec2types.LaunchTemplateInstanceMetadataOptions
	if have.MetadataOptions != nil {
		mo = *have.MetadataOptions
	}
	cmp("metadata.http-tokens", string(mo.HttpTokens), "required")
	cmp("metadata.hop-limit", itoa(deref(mo.HttpPutResponseHopLimit)), "1")
	cmp("metadata.instance-tags", string(mo.InstanceMetadataTags), "enabled")
	if deref(have.UserData) != deref(want.UserData) {
		d = append(d, Diff{"user-data", "(differs)", "(rendered)"})
		// Which package a new instance installs is what a reviewer of the
		// change asks first.
		h, _ := base64.StdEncoding.DecodeString(deref(have.UserData))
		w, _ := base64.StdEncoding.DecodeString(deref(want.UserData))
		if hp, wp := pinsOf(h), pinsOf(w); hp != wp {
			d = append(d, Diff{"agent-sha256", hp, wp})
		}
	}
	// Only the instance and volume tags are the template's; moto also lists the
	// template's own tags here.
	for _, rt := range []ec2types.ResourceType{ec2types.ResourceTypeInstance, ec2types.ResourceTypeVolume} {
		h, w := map[string]string{}, map[string]string{}
		for _, ts := range have.TagSpecifications {
			if ts.ResourceType == rt {
				for _, t := range ts.Tags {
					h[deref(t.Key)] = deref(t.Value)
				}
			}
		}
		for _, ts := range want.TagSpecifications {
			if ts.ResourceType == rt {
				for _, t := range ts.Tags {
					w[deref(t.Key)] = deref(t.Value)
				}
			}
		}
		if !maps.Equal(h, w) {
			d = append(d, Diff{string(rt) + "-tags", mapString(h), mapString(w)})
		}
	}
	return d
}

func mapString(m map[string]string) string {
	out := ""
	for _, k := range sortedKeys(m) {
		if out != "" {
			out += ","
		}
		out += k + "=" + m[k]
	}
	return orNone(out)
}

func (r *launchTemplate) plan(s *state) Change {
	c := Change{Resource: r.name(), ID: s.ltIDs[r.arch], Settings: []Setting{
		{"name", s.ltName(r.arch)}, {"ami", s.amis[r.arch]}, {"instance-profile", s.roleName}, {"security-group", orPending(s.instanceSG)},
		{"metadata", "HttpTokens=required HopLimit=1 InstanceMetadataTags=enabled"},
		{"instance-tags", mapString(s.instanceTags())},
		{"user-data", s.userDataSummary()},
		{"agent-sha256", s.pinSummary()},
	}}
	switch {
	case !s.cfg.bootstrapping(): // teardown and status: nothing to compare
		c.Action = Unchanged
		return c
	case !r.used(s) && r.found:
		c.Action, c.Settings, c.Note = Skip, nil, "the fleet launches no "+r.arch+" instance now; kept until teardown"
		return c
	case !r.used(s):
		c.Action, c.Settings = Skip, nil
		return c
	}
	if !r.found {
		c.Action = Create
		return c
	}
	if r.data == nil { // just created
		c.Action = Unchanged
		return c
	}
	c.Diffs = r.diff(s, r.want(s))
	if c = c.updateOnDiffs(); c.Action == Update {
		c.Note = "a new default version; instances launched from now on use it"
	}
	return c
}

// userDataSummary describes the user-data in the plan.
func (s *state) userDataSummary() string {
	pkgs := s.pinnedPackages()
	var from string
	for _, u := range pkgs { // one package
		from = u
	}
	if len(pkgs) > 1 {
		var each []string
		for _, a := range Arches {
			if u := pkgs[a]; u != "" {
				each = append(each, string(userdataArch(a))+" "+u)
			}
		}
		from = "packages, each instance its architecture's (" + strings.Join(each, ", ") + ")"
	}
	if s.cfg.AgentRelease != "" && len(s.objectKeys) == 0 && s.cfg.AgentURL == "" {
		if len(pkgs) == 1 {
			from = "package " + from
		}
		from = "release " + s.cfg.AgentRelease + "'s " + from
	}
	env := s.agentEnv()
	for k, v := range env {
		env[k] = shownSetting(k, v)
	}
	sum := s.cfg.Distribution + ", agent from " + from + ", env " + mapString(env)
	if s.cfg.UserDataFile != "" {
		sum += fmt.Sprintf("; MIME multipart with %s (%d bytes) first", s.cfg.UserDataFile, len(s.userPart))
	}
	return sum
}

func (r *launchTemplate) input(s *state) *ec2.CreateLaunchTemplateInput {
	return &ec2.CreateLaunchTemplateInput{
		LaunchTemplateName: aws.String(s.ltName(r.arch)), LaunchTemplateData: r.want(s),
		VersionDescription: aws.String("spot-agent bootstrap"),
		TagSpecifications:  s.ec2Tags(ec2types.ResourceTypeLaunchTemplate, r.component()),
	}
}

func (r *launchTemplate) create(ctx context.Context, s *state) error {
	out, err := s.c.EC2.CreateLaunchTemplate(ctx, r.input(s))
	if err != nil {
		return err
	}
	s.ltIDs[r.arch], r.found = deref(out.LaunchTemplate.LaunchTemplateId), true
	return nil
}

func (r *launchTemplate) update(ctx context.Context, s *state, _ Change) error {
	id := s.ltIDs[r.arch]
	out, err := s.c.EC2.CreateLaunchTemplateVersion(ctx, &ec2.CreateLaunchTemplateVersionInput{
		LaunchTemplateId: aws.String(id), LaunchTemplateData: r.want(s), VersionDescription: aws.String("spot-agent bootstrap"),
	})
	if err != nil {
		return err
	}
	v := deref(out.LaunchTemplateVersion.VersionNumber)
	_, err = s.c.EC2.ModifyLaunchTemplate(ctx, &ec2.ModifyLaunchTemplateInput{LaunchTemplateId: aws.String(id), DefaultVersion: aws.String(strconv.FormatInt(v, 10))})
	if err != nil {
		return fmt.Errorf("set default version %d: %w", v, err)
	}
	r.version = v
	return nil
}

// template: the launch template as create makes it. Its AMI is a parameter:
// --ami's, else the architecture's public SSM parameter of the latest Amazon
// Linux 2023, which CloudFormation reads when it creates or updates the
// stack (find reads it when the template is new).
func (r *launchTemplate) template(s *state, b *cfnBuilder) error {
	if s.ltIDs == nil {
		s.ltIDs, s.amis = map[string]string{}, map[string]string{}
	}
	id := "LaunchTemplate" + logicalArch(r.arch)
	p := cfnParameter{Type: "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>", Default: amiParameter(r.arch),
		Description: "the " + r.arch + " instances' AMI: the latest Amazon Linux 2023, from its public SSM parameter"}
	if ami := cmp.Or(s.cfg.AMIs[r.arch], s.cfg.AMI); ami != "" {
		p = cfnParameter{Type: "AWS::EC2::Image::Id", Default: ami, Description: "the " + r.arch + " instances' AMI (--ami), " + s.cfg.Distribution}
	}
	s.amis[r.arch] = b.parameter("ImageId"+logicalArch(r.arch), p)
	ud, err := s.userData()
	if err != nil {
		return err
	}
	// The user-data is literal base64: nothing in it may stand for what only
	// CloudFormation knows (an uploaded package's bucket would, and is refused).
	if raw, err := base64.StdEncoding.DecodeString(ud); err != nil || strings.Contains(string(raw), tokenOpen) {
		return errors.New("the user-data names a resource of the stack, which a template cannot render")
	}
	r.ud = ud
	b.resource(id, "AWS::EC2::LaunchTemplate", r.input(s))
	s.ltIDs[r.arch] = b.ref(id)
	return nil
}

// ltVersion is the launch template version every fleet launches: the
// template's default, which bootstrap moves when it changes the template. A
// CloudFormation fleet names the latest version instead (CloudFormation
// takes neither $Default nor $Latest for an Auto Scaling group), so that a
// change to the template updates the fleet.
func (s *state) ltVersion(arch string) string {
	if s.tmpl != nil {
		return s.tmpl.att("LaunchTemplate"+logicalArch(arch), "LatestVersionNumber")
	}
	return defaultVersion
}

func (r *launchTemplate) delete(ctx context.Context, s *state) error {
	_, err := s.c.EC2.DeleteLaunchTemplate(ctx, &ec2.DeleteLaunchTemplateInput{LaunchTemplateId: aws.String(s.ltIDs[r.arch])})
	if notFound(err) {
		return nil
	}
	return err
}
