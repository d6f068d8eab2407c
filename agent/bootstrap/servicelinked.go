package bootstrap

import (
	"context"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
)

// serviceLinkedRole is an account-wide role an AWS service acts through.
type serviceLinkedRole struct {
	service string // the service principal, e.g. spot.amazonaws.com
	role    string // the role AWS names for it
	doc     string // where AWS says the fleet needs it
}

// The service-linked roles each fleet kind needs. The console creates them
// on first use; through the API, AWS says, the caller must make sure they
// exist. Auto Scaling would create its own on the first group, but only
// when the caller may: bootstrap creates it explicitly, so that a missing
// permission is one clear error at this step.
var (
	slrAutoScaling = serviceLinkedRole{"autoscaling.amazonaws.com", "AWSServiceRoleForAutoScaling",
		"https://docs.aws.amazon.com/autoscaling/ec2/userguide/autoscaling-service-linked-role.html"}
	slrSpot = serviceLinkedRole{"spot.amazonaws.com", "AWSServiceRoleForEC2Spot",
		"https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/spot-fleet-prerequisites.html#service-linked-roles-spot-instances"}
	slrSpotFleet = serviceLinkedRole{"spotfleet.amazonaws.com", "AWSServiceRoleForEC2SpotFleet",
		"https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/spot-fleet-prerequisites.html#service-linked-roles-spot-fleet-requests"}
	slrEC2Fleet = serviceLinkedRole{"ec2fleet.amazonaws.com", "AWSServiceRoleForEC2Fleet",
		"https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/ec2-fleet-prerequisites.html"}
)

// serviceLinkedRolesFor lists the service-linked roles a fleet kind needs:
// Spot Fleet its own and Spot's; EC2 Fleet (type maintain) its own and
// Spot's, for its Spot Instances; an ASG Auto Scaling's.
func serviceLinkedRolesFor(fleet string) []serviceLinkedRole {
	switch fleet {
	case FleetSpotFleet:
		return []serviceLinkedRole{slrSpotFleet, slrSpot}
	case FleetEC2Fleet:
		return []serviceLinkedRole{slrEC2Fleet, slrSpot}
	}
	return []serviceLinkedRole{slrAutoScaling}
}

// serviceLinkedRoles makes sure the fleet's service-linked roles exist. They
// belong to the account, not to the stack: teardown leaves them.
type serviceLinkedRoles struct {
	missing []serviceLinkedRole
}

func (r *serviceLinkedRoles) name() string { return "service-roles" }

// find lists the roles under each service's path: a service-linked role's
// path is /aws-service-role/SERVICE/.
func (r *serviceLinkedRoles) find(ctx context.Context, s *state) (bool, error) {
	r.missing = nil
	for _, slr := range serviceLinkedRolesFor(s.cfg.Fleet) {
		out, err := s.c.IAM.ListRoles(ctx, &iam.ListRolesInput{PathPrefix: aws.String("/aws-service-role/" + slr.service + "/")})
		if err != nil {
			return false, fmt.Errorf("%s: %w", slr.role, err)
		}
		if len(out.Roles) == 0 {
			r.missing = append(r.missing, slr)
		}
	}
	return len(r.missing) == 0, nil
}

func (r *serviceLinkedRoles) plan(s *state) Change {
	var names []string
	for _, slr := range serviceLinkedRolesFor(s.cfg.Fleet) {
		names = append(names, slr.role)
	}
	c := Change{Resource: r.name(), ID: strings.Join(names, ","), Action: Unchanged, Note: "the account's, for the " + s.cfg.Fleet + "; teardown keeps them"}
	for _, slr := range r.missing {
		c.Action = Create
		c.Settings = append(c.Settings, Setting{slr.role, "for " + slr.service + " (" + slr.doc + ")"})
	}
	return c
}

// create makes each missing role. A role made meanwhile (by the console, or
// by the service itself) is taken as there: IAM then says its name "has been
// taken".
func (r *serviceLinkedRoles) create(ctx context.Context, s *state) error {
	for _, slr := range r.missing {
		_, err := s.c.IAM.CreateServiceLinkedRole(ctx, &iam.CreateServiceLinkedRoleInput{AWSServiceName: aws.String(slr.service)})
		if err != nil && !hasCode(err, "EntityAlreadyExists") && !(hasCode(err, "InvalidInput") && strings.Contains(err.Error(), "has been taken")) {
			return fmt.Errorf("%s for %s: %w", slr.role, slr.service, err)
		}
	}
	r.missing = nil
	return nil
}

func (r *serviceLinkedRoles) update(ctx context.Context, s *state, _ Change) error {
	return r.create(ctx, s)
}

// template adds nothing: the roles are the account's, listed in the
// template's metadata (cfnBuilder.finish).
func (r *serviceLinkedRoles) template(*state, *cfnBuilder) error { return nil }

// delete leaves the roles: other stacks and the account's own fleets use them.
func (r *serviceLinkedRoles) delete(context.Context, *state) error { return nil }
