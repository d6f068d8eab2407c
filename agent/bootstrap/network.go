package bootstrap

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// ec2Filter selects the stack's resources of one component.
func (s *state) ec2Filter(component string) []ec2types.Filter {
	f := []ec2types.Filter{{Name: aws.String("tag:" + StackTag), Values: []string{s.cfg.Name}}}
	if component != "" {
		f = append(f, ec2types.Filter{Name: aws.String("tag:" + componentTag), Values: []string{component}})
	}
	return f
}

// ec2Tags are the tags of a new EC2 resource.
func (s *state) ec2Tags(rt ec2types.ResourceType, component string) []ec2types.TagSpecification {
	return []ec2types.TagSpecification{{ResourceType: rt, Tags: []ec2types.Tag{
		{Key: aws.String(StackTag), Value: aws.String(s.cfg.Name)},
		{Key: aws.String(componentTag), Value: aws.String(component)},
		{Key: aws.String("Name"), Value: aws.String(s.cfg.Name + "-" + component)},
	}}}
}

func ec2Tag(tags []ec2types.Tag, key string) string {
	for _, t := range tags {
		if deref(t.Key) == key {
			return deref(t.Value)
		}
	}
	return ""
}

// vpc is the stack's VPC, or the one given with --vpc-id. The stack's own has
// DNS support and DNS hostnames on, as a workshop's VPC does: instances get
// DNS names, and names inside the VPC resolve (an EFS file system mounted by
// its DNS name needs both). AWS turns DNS hostnames off in a new VPC, and a
// given VPC is never changed, only reported.
// https://docs.aws.amazon.com/vpc/latest/userguide/AmazonDNS-concepts.html#vpc-dns-support
type vpc struct {
	found                    bool
	cidr                     string
	dnsSupport, dnsHostnames bool
}

func (r *vpc) name() string { return "vpc" }

func (r *vpc) find(ctx context.Context, s *state) (bool, error) {
	in := &ec2.DescribeVpcsInput{Filters: s.ec2Filter("vpc")}
	if s.cfg.VPCID != "" {
		in = &ec2.DescribeVpcsInput{VpcIds: []string{s.cfg.VPCID}}
	}
	out, err := s.c.EC2.DescribeVpcs(ctx, in)
	if err != nil {
		if s.cfg.VPCID != "" && notFound(err) {
			return false, fmt.Errorf("--vpc-id %s does not exist", s.cfg.VPCID)
		}
		return false, err
	}
	if len(out.Vpcs) == 0 {
		return false, nil
	}
	r.found, r.cidr, s.vpcID = true, deref(out.Vpcs[0].CidrBlock), deref(out.Vpcs[0].VpcId)
	if r.dnsSupport, err = s.vpcDNS(ctx, ec2types.VpcAttributeNameEnableDnsSupport); err != nil {
		return false, err
	}
	if r.dnsHostnames, err = s.vpcDNS(ctx, ec2types.VpcAttributeNameEnableDnsHostnames); err != nil {
		return false, err
	}
	return true, nil
}

// vpcDNS reads one of the VPC's DNS attributes (one per call).
func (s *state) vpcDNS(ctx context.Context, name ec2types.VpcAttributeName) (bool, error) {
	out, err := s.c.EC2.DescribeVpcAttribute(ctx, &ec2.DescribeVpcAttributeInput{VpcId: aws.String(s.vpcID), Attribute: name})
	if err != nil {
		return false, fmt.Errorf("%s: %w", name, err)
	}
	v := out.EnableDnsSupport
	if name == ec2types.VpcAttributeNameEnableDnsHostnames {
		v = out.EnableDnsHostnames
	}
	return v != nil && deref(v.Value), nil
}

func (r *vpc) plan(s *state) Change {
	c := Change{Resource: r.name(), ID: s.vpcID, Settings: []Setting{{"cidr", s.cfg.VPCCIDR}, {"dns", "support and hostnames on"}}}
	switch {
	case s.cfg.VPCID != "":
		c.Action, c.Settings, c.Note = Adopt, []Setting{{"cidr", r.cidr}, {"dns", r.dnsText()}}, "given with --vpc-id: used, never changed or deleted"
		if !r.dnsSupport || !r.dnsHostnames {
			c.Note += "; its DNS " + r.dnsText() + ": names inside the VPC (an EFS file system's, for one) need both on"
		}
		return c
	case !r.found:
		c.Action = Create
		return c
	case r.cidr != s.cfg.VPCCIDR:
		c.Action, c.Diffs = Recreate, []Diff{{"cidr", r.cidr, s.cfg.VPCCIDR}}
		return c
	}
	if !r.dnsSupport {
		c.Diffs = append(c.Diffs, Diff{"dns-support", "off", "on"})
	}
	if !r.dnsHostnames {
		c.Diffs = append(c.Diffs, Diff{"dns-hostnames", "off", "on"})
	}
	return c.updateOnDiffs()
}

func (r *vpc) dnsText() string {
	onOff := func(b bool) string {
		if b {
			return "on"
		}
		return "off"
	}
	return "support " + onOff(r.dnsSupport) + ", hostnames " + onOff(r.dnsHostnames)
}

func (r *vpc) input(s *state) *ec2.CreateVpcInput {
	return &ec2.CreateVpcInput{CidrBlock: aws.String(s.cfg.VPCCIDR), TagSpecifications: s.ec2Tags(ec2types.ResourceTypeVpc, "vpc")}
}

func (r *vpc) create(ctx context.Context, s *state) error {
	out, err := s.c.EC2.CreateVpc(ctx, r.input(s))
	if err != nil {
		return err
	}
	s.vpcID, r.found = deref(out.Vpc.VpcId), true
	return r.update(ctx, s, Change{})
}

// update turns DNS support on, then DNS hostnames, which need it: one
// attribute per call.
func (r *vpc) update(ctx context.Context, s *state, _ Change) error {
	if !r.dnsSupport {
		_, err := s.c.EC2.ModifyVpcAttribute(ctx, &ec2.ModifyVpcAttributeInput{VpcId: aws.String(s.vpcID), EnableDnsSupport: &ec2types.AttributeBooleanValue{Value: aws.Bool(true)}})
		if err != nil {
			return fmt.Errorf("dns support: %w", err)
		}
		r.dnsSupport = true
	}
	if !r.dnsHostnames {
		_, err := s.c.EC2.ModifyVpcAttribute(ctx, &ec2.ModifyVpcAttributeInput{VpcId: aws.String(s.vpcID), EnableDnsHostnames: &ec2types.AttributeBooleanValue{Value: aws.Bool(true)}})
		if err != nil {
			return fmt.Errorf("dns hostnames: %w", err)
		}
		r.dnsHostnames = true
	}
	return nil
}

// template: a given VPC is a parameter; the stack's own has DNS support and
// hostnames on, as update makes them.
func (r *vpc) template(s *state, b *cfnBuilder) error {
	if s.cfg.VPCID != "" {
		s.vpcID = b.parameter("VpcId", cfnParameter{Type: "AWS::EC2::VPC::Id", Default: s.cfg.VPCID, Description: "the VPC (--vpc-id): used, never changed"})
		return nil
	}
	in := r.input(s)
	b.resource("VPC", "AWS::EC2::VPC", map[string]any{
		"CidrBlock": in.CidrBlock, "EnableDnsSupport": true, "EnableDnsHostnames": true, "Tags": specTags(in.TagSpecifications),
	})
	s.vpcID = b.ref("VPC")
	return nil
}

func (r *vpc) delete(ctx context.Context, s *state) error {
	return s.retryInUse(ctx, "the VPC's dependencies to go", func(ctx context.Context) error {
		_, err := s.c.EC2.DeleteVpc(ctx, &ec2.DeleteVpcInput{VpcId: aws.String(s.vpcID)})
		return err
	})
}

// subnets are two public subnets in two Availability Zones: the halves of
// the VPC's network. With --vpc-id they are the ones given with --subnets.
type subnets struct {
	have  map[string]ec2types.Subnet // component (subnet-1, subnet-2) → subnet
	zones []string                   // the first two zones, for new subnets
	adopt []ec2types.Subnet
}

func (r *subnets) name() string { return "subnets" }

var subnetComponents = []string{"subnet-1", "subnet-2"}

func (r *subnets) find(ctx context.Context, s *state) (bool, error) {
	r.have = map[string]ec2types.Subnet{}
	if s.cfg.VPCID != "" {
		out, err := s.c.EC2.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{SubnetIds: s.cfg.Subnets})
		if err != nil {
			return false, fmt.Errorf("--subnets: %w", err)
		}
		zones := map[string]bool{}
		for _, sn := range out.Subnets {
			if deref(sn.VpcId) != s.cfg.VPCID {
				return false, fmt.Errorf("--subnets: %s is in %s, not --vpc-id %s", deref(sn.SubnetId), deref(sn.VpcId), s.cfg.VPCID)
			}
			zones[deref(sn.AvailabilityZone)] = true
			s.subnetIDs = append(s.subnetIDs, deref(sn.SubnetId))
		}
		if len(zones) < 2 {
			return false, fmt.Errorf("--subnets: the load balancer needs subnets in two Availability Zones, these are in %d", len(zones))
		}
		r.adopt = out.Subnets
		s.zones = sortedKeys(zones)
		return true, nil
	}
	out, err := s.c.EC2.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{Filters: s.ec2Filter("")})
	if err != nil {
		return false, err
	}
	for _, sn := range out.Subnets {
		if comp := ec2Tag(sn.Tags, componentTag); slices.Contains(subnetComponents, comp) {
			r.have[comp] = sn
		}
	}
	r.setIDs(s)
	if len(r.have) < len(subnetComponents) && s.cfg.VPCCIDR != "" {
		azs, err := s.c.EC2.DescribeAvailabilityZones(ctx, &ec2.DescribeAvailabilityZonesInput{
			Filters: []ec2types.Filter{{Name: aws.String("zone-type"), Values: []string{"availability-zone"}}, {Name: aws.String("state"), Values: []string{"available"}}},
		})
		if err != nil {
			return false, err
		}
		for _, z := range azs.AvailabilityZones {
			r.zones = append(r.zones, deref(z.ZoneName))
		}
		sort.Strings(r.zones)
		if len(r.zones) < 2 {
			return false, fmt.Errorf("region %s has %d available zones: the load balancer needs two", s.cfg.Region, len(r.zones))
		}
	}
	_, s.zones = r.want(s)
	return len(r.have) > 0, nil
}

func (r *subnets) setIDs(s *state) {
	s.subnetIDs = nil
	for _, comp := range subnetComponents {
		if sn, ok := r.have[comp]; ok {
			s.subnetIDs = append(s.subnetIDs, deref(sn.SubnetId))
		}
	}
}

// want returns the CIDR and zone of each subnet: the VPC's halves, in the
// first two zones (or the zones of subnets that already exist).
func (r *subnets) want(s *state) (cidrs, zones []string) {
	p, err := netip.ParsePrefix(s.cfg.VPCCIDR)
	if err != nil {
		return nil, nil
	}
	half := p.Bits() + 1
	lo := netip.PrefixFrom(p.Addr(), half)
	a := p.Addr().As4()
	hostBits := 32 - half
	n := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	n += 1 << hostBits
	hi := netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}), half)
	cidrs = []string{lo.String(), hi.String()}
	used := map[string]bool{}
	for _, sn := range r.have {
		used[deref(sn.AvailabilityZone)] = true
	}
	free := slices.DeleteFunc(slices.Clone(r.zones), func(z string) bool { return used[z] })
	for _, comp := range subnetComponents {
		if sn, ok := r.have[comp]; ok {
			zones = append(zones, deref(sn.AvailabilityZone))
			continue
		}
		z := ""
		if len(free) > 0 {
			z, free = free[0], free[1:]
		}
		zones = append(zones, z)
	}
	return cidrs, zones
}

func (r *subnets) plan(s *state) Change {
	c := Change{Resource: r.name(), ID: strings.Join(s.subnetIDs, ",")}
	if s.cfg.VPCID != "" {
		for _, sn := range r.adopt {
			c.Settings = append(c.Settings, Setting{deref(sn.SubnetId), deref(sn.AvailabilityZone) + " " + deref(sn.CidrBlock)})
		}
		c.Action, c.Note = Adopt, "given with --subnets: used, never changed or deleted"
		return c
	}
	cidrs, zones := r.want(s)
	for i, comp := range subnetComponents {
		if i < len(cidrs) {
			c.Settings = append(c.Settings, Setting{comp, zones[i] + " " + cidrs[i] + " public"})
		}
		sn, ok := r.have[comp]
		switch {
		case !ok:
			c.Action = Create
		case i < len(cidrs) && deref(sn.CidrBlock) != cidrs[i]:
			c.Diffs = append(c.Diffs, Diff{comp + ".cidr", deref(sn.CidrBlock), cidrs[i]})
			c.Action = Recreate
		case !deref(sn.MapPublicIpOnLaunch):
			c.Diffs = append(c.Diffs, Diff{comp + ".map-public-ip", "false", "true"})
		}
	}
	switch {
	case c.Action != "":
	case len(c.Diffs) > 0:
		c.Action = Update
	default:
		c.Action = Unchanged
	}
	return c
}

// inputs are the subnets to create, by component.
func (r *subnets) inputs(s *state) []*ec2.CreateSubnetInput {
	cidrs, zones := r.want(s)
	var out []*ec2.CreateSubnetInput
	for i, comp := range subnetComponents {
		out = append(out, &ec2.CreateSubnetInput{
			VpcId: aws.String(s.vpcID), CidrBlock: aws.String(cidrs[i]), AvailabilityZone: aws.String(zones[i]),
			TagSpecifications: s.ec2Tags(ec2types.ResourceTypeSubnet, comp),
		})
	}
	return out
}

func (r *subnets) create(ctx context.Context, s *state) error {
	for i, in := range r.inputs(s) {
		comp := subnetComponents[i]
		if _, ok := r.have[comp]; ok {
			continue
		}
		out, err := s.c.EC2.CreateSubnet(ctx, in)
		if err != nil {
			return fmt.Errorf("%s: %w", comp, err)
		}
		r.have[comp] = *out.Subnet
		r.setIDs(s)
	}
	return r.update(ctx, s, Change{})
}

// update turns on public addresses: instances fetch the agent and reach the
// APIs through the internet gateway.
func (r *subnets) update(ctx context.Context, s *state, _ Change) error {
	for _, comp := range subnetComponents {
		sn := r.have[comp]
		if deref(sn.MapPublicIpOnLaunch) {
			continue
		}
		_, err := s.c.EC2.ModifySubnetAttribute(ctx, &ec2.ModifySubnetAttributeInput{
			SubnetId: sn.SubnetId, MapPublicIpOnLaunch: &ec2types.AttributeBooleanValue{Value: aws.Bool(true)},
		})
		if err != nil {
			return fmt.Errorf("%s: %w", comp, err)
		}
		sn.MapPublicIpOnLaunch = aws.Bool(true)
		r.have[comp] = sn
	}
	return nil
}

// template: given subnets are parameters; the stack's own are in the
// region's first two Availability Zones, with public addresses, as create
// and update make them.
func (r *subnets) template(s *state, b *cfnBuilder) error {
	s.subnetIDs = nil
	if s.cfg.VPCID != "" {
		for i, id := range s.cfg.Subnets {
			s.subnetIDs = append(s.subnetIDs, b.parameter(fmt.Sprintf("SubnetId%d", i+1), cfnParameter{
				Type: "AWS::EC2::Subnet::Id", Default: id, Description: fmt.Sprintf("subnet %d of --subnets (in --vpc-id; at least two Availability Zones among them): used, never changed", i+1)}))
		}
		return nil
	}
	r.have, r.zones = map[string]ec2types.Subnet{}, nil
	for i := range subnetComponents {
		r.zones = append(r.zones, b.fn(map[string]any{"Fn::Select": []any{i, map[string]any{"Fn::GetAZs": ""}}}))
	}
	for i, in := range r.inputs(s) {
		id := fmt.Sprintf("Subnet%d", i+1)
		b.resource(id, "AWS::EC2::Subnet", map[string]any{
			"VpcId": in.VpcId, "CidrBlock": in.CidrBlock, "AvailabilityZone": in.AvailabilityZone, "MapPublicIpOnLaunch": true, "Tags": specTags(in.TagSpecifications),
		})
		s.subnetIDs = append(s.subnetIDs, b.ref(id))
	}
	_, s.zones = r.want(s)
	return nil
}

func (r *subnets) delete(ctx context.Context, s *state) error {
	for _, comp := range subnetComponents {
		sn, ok := r.have[comp]
		if !ok {
			continue
		}
		err := s.retryInUse(ctx, comp+"'s network interfaces to go", func(ctx context.Context) error {
			_, err := s.c.EC2.DeleteSubnet(ctx, &ec2.DeleteSubnetInput{SubnetId: sn.SubnetId})
			return err
		})
		if err != nil && !notFound(err) {
			return fmt.Errorf("%s: %w", comp, err)
		}
	}
	return nil
}

// internetGateway is the new VPC's way out (none with --vpc-id).
type internetGateway struct {
	found    bool
	attached string // VPC id
}

func (r *internetGateway) name() string { return "internet-gateway" }

func (r *internetGateway) find(ctx context.Context, s *state) (bool, error) {
	if s.cfg.VPCID != "" {
		return false, nil
	}
	out, err := s.c.EC2.DescribeInternetGateways(ctx, &ec2.DescribeInternetGatewaysInput{Filters: s.ec2Filter("igw")})
	if err != nil || len(out.InternetGateways) == 0 {
		return false, err
	}
	g := out.InternetGateways[0]
	r.found, s.igwID = true, deref(g.InternetGatewayId)
	for _, a := range g.Attachments {
		r.attached = deref(a.VpcId)
	}
	return true, nil
}

func (r *internetGateway) plan(s *state) Change {
	c := Change{Resource: r.name(), ID: s.igwID, Settings: []Setting{{"vpc", orPending(s.vpcID)}}}
	switch {
	case s.cfg.VPCID != "":
		c.Action, c.Settings, c.Note = Skip, nil, "the given VPC's routing is left as it is"
	case !r.found:
		c.Action = Create
	case r.attached != s.vpcID:
		c.Action, c.Diffs = Update, []Diff{{"attached-to", orNone(r.attached), orPending(s.vpcID)}}
	default:
		c.Action = Unchanged
	}
	return c
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func (r *internetGateway) input(s *state) *ec2.CreateInternetGatewayInput {
	return &ec2.CreateInternetGatewayInput{TagSpecifications: s.ec2Tags(ec2types.ResourceTypeInternetGateway, "igw")}
}

func (r *internetGateway) create(ctx context.Context, s *state) error {
	out, err := s.c.EC2.CreateInternetGateway(ctx, r.input(s))
	if err != nil {
		return err
	}
	s.igwID = deref(out.InternetGateway.InternetGatewayId)
	return r.update(ctx, s, Change{})
}

func (r *internetGateway) update(ctx context.Context, s *state, _ Change) error {
	if r.attached != "" && r.attached != s.vpcID {
		if _, err := s.c.EC2.DetachInternetGateway(ctx, &ec2.DetachInternetGatewayInput{InternetGatewayId: aws.String(s.igwID), VpcId: aws.String(r.attached)}); err != nil {
			return err
		}
	}
	_, err := s.c.EC2.AttachInternetGateway(ctx, &ec2.AttachInternetGatewayInput{InternetGatewayId: aws.String(s.igwID), VpcId: aws.String(s.vpcID)})
	if err == nil {
		r.attached = s.vpcID
	}
	return err
}

// template: the gateway, attached to the VPC (as update attaches it).
func (r *internetGateway) template(s *state, b *cfnBuilder) error {
	b.resource("InternetGateway", "AWS::EC2::InternetGateway", map[string]any{"Tags": specTags(r.input(s).TagSpecifications)})
	s.igwID = b.ref("InternetGateway")
	b.resource(lidInternetGatewayAttachment, "AWS::EC2::VPCGatewayAttachment", map[string]any{"VpcId": s.vpcID, "InternetGatewayId": s.igwID})
	return nil
}

func (r *internetGateway) delete(ctx context.Context, s *state) error {
	if r.attached != "" {
		err := s.retryInUse(ctx, "public addresses to be released", func(ctx context.Context) error {
			_, err := s.c.EC2.DetachInternetGateway(ctx, &ec2.DetachInternetGatewayInput{InternetGatewayId: aws.String(s.igwID), VpcId: aws.String(r.attached)})
			return err
		})
		if err != nil && !hasCode(err, "Gateway.NotAttached") {
			return err
		}
	}
	_, err := s.c.EC2.DeleteInternetGateway(ctx, &ec2.DeleteInternetGatewayInput{InternetGatewayId: aws.String(s.igwID)})
	return err
}

// routeTable sends the subnets' traffic to the internet gateway.
type routeTable struct {
	found        bool
	defaultRoute string            // gateway of 0.0.0.0/0
	assoc        map[string]string // subnet → association id
}

func (r *routeTable) name() string { return "route-table" }

func (r *routeTable) find(ctx context.Context, s *state) (bool, error) {
	r.assoc = map[string]string{}
	if s.cfg.VPCID != "" {
		return false, nil
	}
	out, err := s.c.EC2.DescribeRouteTables(ctx, &ec2.DescribeRouteTablesInput{Filters: s.ec2Filter("public-rt")})
	if err != nil || len(out.RouteTables) == 0 {
		return false, err
	}
	rt := out.RouteTables[0]
	r.found, s.rtID = true, deref(rt.RouteTableId)
	for _, route := range rt.Routes {
		if deref(route.DestinationCidrBlock) == "0.0.0.0/0" {
			r.defaultRoute = deref(route.GatewayId)
		}
	}
	for _, a := range rt.Associations {
		if a.SubnetId != nil {
			r.assoc[deref(a.SubnetId)] = deref(a.RouteTableAssociationId)
		}
	}
	return true, nil
}

func (r *routeTable) missing(s *state) []string {
	var out []string
	for _, id := range s.subnetIDs {
		if _, ok := r.assoc[id]; !ok {
			out = append(out, id)
		}
	}
	return out
}

func (r *routeTable) plan(s *state) Change {
	c := Change{Resource: r.name(), ID: s.rtID, Settings: []Setting{{"0.0.0.0/0", orPending(s.igwID)}, {"subnets", orPending(join(s.subnetIDs))}}}
	switch {
	case s.cfg.VPCID != "":
		c.Action, c.Settings, c.Note = Skip, nil, "the given VPC's routing is left as it is"
		return c
	case !r.found:
		c.Action = Create
		return c
	}
	if r.defaultRoute != s.igwID || s.igwID == "" {
		c.Diffs = append(c.Diffs, Diff{"0.0.0.0/0", orNone(r.defaultRoute), orPending(s.igwID)})
	}
	if m := r.missing(s); len(m) > 0 || len(s.subnetIDs) < len(subnetComponents) {
		c.Diffs = append(c.Diffs, Diff{"associations", join(sortedKeys(r.assoc)), orPending(join(s.subnetIDs))})
	}
	return c.updateOnDiffs()
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (r *routeTable) input(s *state) *ec2.CreateRouteTableInput {
	return &ec2.CreateRouteTableInput{VpcId: aws.String(s.vpcID), TagSpecifications: s.ec2Tags(ec2types.ResourceTypeRouteTable, "public-rt")}
}

// route sends everything else to the internet gateway.
func (r *routeTable) route(s *state) *ec2.CreateRouteInput {
	return &ec2.CreateRouteInput{RouteTableId: aws.String(s.rtID), DestinationCidrBlock: aws.String("0.0.0.0/0"), GatewayId: aws.String(s.igwID)}
}

func (r *routeTable) create(ctx context.Context, s *state) error {
	out, err := s.c.EC2.CreateRouteTable(ctx, r.input(s))
	if err != nil {
		return err
	}
	s.rtID, r.found = deref(out.RouteTable.RouteTableId), true
	return r.update(ctx, s, Change{})
}

func (r *routeTable) update(ctx context.Context, s *state, _ Change) error {
	if r.defaultRoute != s.igwID {
		if _, err := s.c.EC2.CreateRoute(ctx, r.route(s)); err != nil {
			return fmt.Errorf("default route: %w", err)
		}
		r.defaultRoute = s.igwID
	}
	for _, id := range r.missing(s) {
		out, err := s.c.EC2.AssociateRouteTable(ctx, &ec2.AssociateRouteTableInput{RouteTableId: aws.String(s.rtID), SubnetId: aws.String(id)})
		if err != nil {
			return fmt.Errorf("associate %s: %w", id, err)
		}
		r.assoc[id] = deref(out.AssociationId)
	}
	return nil
}

// template: the table, its default route (once the gateway is attached)
// and an association per subnet, as create and update make them.
func (r *routeTable) template(s *state, b *cfnBuilder) error {
	in := r.input(s)
	b.resource("RouteTable", "AWS::EC2::RouteTable", map[string]any{"VpcId": in.VpcId, "Tags": specTags(in.TagSpecifications)})
	s.rtID = b.ref("RouteTable")
	b.resource("DefaultRoute", "AWS::EC2::Route", r.route(s), lidInternetGatewayAttachment)
	for i, id := range s.subnetIDs {
		b.resource(fmt.Sprintf("Subnet%dRouteTableAssociation", i+1), "AWS::EC2::SubnetRouteTableAssociation", map[string]any{"RouteTableId": s.rtID, "SubnetId": id})
	}
	return nil
}

func (r *routeTable) delete(ctx context.Context, s *state) error {
	for _, a := range sortedKeys(r.assoc) {
		if _, err := s.c.EC2.DisassociateRouteTable(ctx, &ec2.DisassociateRouteTableInput{AssociationId: aws.String(r.assoc[a])}); err != nil && !notFound(err) {
			return fmt.Errorf("disassociate %s: %w", a, err)
		}
	}
	_, err := s.c.EC2.DeleteRouteTable(ctx, &ec2.DeleteRouteTableInput{RouteTableId: aws.String(s.rtID)})
	return err
}
