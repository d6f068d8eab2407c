package testbed

import (
	"context"
	"fmt"
	"html"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// EC2Fake is a reverse proxy in front of moto that speaks the EC2 query
// protocol (form-encoded POST, XML answers) for what moto 5.2.1 lacks of
// attribute-based instance type selection:
//
//   - GetInstanceTypesFromInstanceRequirements and GetSpotPlacementScores,
//     which moto does not implement, are answered here, matched against
//     moto's own catalog of instance types (DescribeInstanceTypes and
//     DescribeInstanceTypeOfferings: AWS's data as moto ships it);
//   - CreateFleet, ModifyFleet, RequestSpotFleet and ModifySpotFleetRequest
//     whose overrides hold InstanceRequirements are held to AWS's rules for
//     them here, then forwarded with the first matching type of the launch
//     template's AMI's architecture added to each such override: moto
//     launches only an override's InstanceType, and fails with a 500 without
//     one, where AWS would launch one of the matching types; and, as moto
//     takes one subnet per override, a comma-separated SubnetId (which an
//     EC2 Fleet's override takes) is cut to its first subnet;
//   - DescribeSpotFleetRequests answers, as AWS does, each request's
//     LaunchTemplateConfigs and SpotMaintenanceStrategies as RequestSpotFleet
//     (or a later ModifySpotFleetRequest) gave them: moto drops both; and a
//     ModifySpotFleetRequest without TargetCapacity, to which moto answers a
//     500, is taken here.
//
// Everything else goes to moto unchanged. The placement scores are not AWS's
// model (which is not public): a zone's score grows with the matching types
// offered there and shrinks with the capacity asked, so that a test can tell
// a wide selection from a narrow one.
type EC2Fake struct {
	URL string

	ec2   *ec2.Client // moto's
	proxy *httputil.ReverseProxy

	mu         sync.Mutex
	spotFleets map[string]url.Values // Spot Fleet request id → the configuration moto drops
	catalog    []catalogType
	offered    map[string]map[string]bool // zone id, or "" for the region → types offered
	zones      []ec2types.AvailabilityZone
	calls      map[string]int
}

// catalogType is one instance type's attributes that requirements select on.
type catalogType struct {
	name            string
	archs, virt     []string
	vcpus           int64
	memMiB          int64
	manufacturer    string // as requirements name it: intel, amd, amazon-web-services, apple
	current         bool
	burstable, bare bool
	accelerators    int64
}

const ec2APIVersion = "2016-11-15"

// NewEC2Fake starts the fake in front of m, stopped when the test ends.
func NewEC2Fake(t testing.TB, m *Moto) *EC2Fake {
	t.Helper()
	f, stop, err := LaunchEC2Fake(m)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return f
}

// LaunchEC2Fake starts the fake in front of m for a program (the bench);
// call stop when done.
func LaunchEC2Fake(m *Moto) (f *EC2Fake, stop func(), err error) {
	target, err := url.Parse(m.URL)
	if err != nil {
		return nil, nil, err
	}
	f = &EC2Fake{ec2: m.EC2(), proxy: httputil.NewSingleHostReverseProxy(target), calls: map[string]int{}, spotFleets: map[string]url.Values{}}
	f.proxy.ModifyResponse = f.spotFleetConfigs
	srv := httptest.NewServer(http.HandlerFunc(f.serve))
	f.URL = srv.URL
	return f, srv.Close, nil
}

// Env is the environment that points an SDK (or the spot-agent binary) at
// the fake, as Moto.Env does at moto.
func (f *EC2Fake) Env() []string { return endpointEnv(f.URL) }

// Calls returns how many requests for an EC2 action the fake saw.
func (f *EC2Fake) Calls(action string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[action]
}

func (f *EC2Fake) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		f.proxy.ServeHTTP(w, r)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		ec2Error(w, http.StatusBadRequest, "MalformedQueryString", err.Error())
		return
	}
	form, err := url.ParseQuery(string(body))
	if err == nil && form.Get("Version") == ec2APIVersion {
		action := form.Get("Action")
		f.mu.Lock()
		f.calls[action]++
		f.mu.Unlock()
		switch action {
		case "GetInstanceTypesFromInstanceRequirements":
			f.instanceTypes(r.Context(), w, form)
			return
		case "GetSpotPlacementScores":
			f.scores(r.Context(), w, form)
			return
		case "CreateFleet", "ModifyFleet", "RequestSpotFleet", "ModifySpotFleetRequest":
			r = r.WithContext(context.WithValue(r.Context(), requestForm{}, cloneValues(form)))
			code, msg := f.launchable(r.Context(), action, form)
			if code != "" {
				status := http.StatusBadRequest
				if code == "InternalError" {
					status = http.StatusInternalServerError
				}
				ec2Error(w, status, code, msg)
				return
			}
			if action == "ModifySpotFleetRequest" && form.Get("TargetCapacity") == "" {
				// moto 5.2.1 answers a 500 without TargetCapacity, which AWS
				// does not require: the fake takes the new configuration.
				f.mu.Lock()
				f.changeSpotFleet(r.Context().Value(requestForm{}).(url.Values))
				f.mu.Unlock()
				w.Header().Set("Content-Type", "text/xml")
				fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><ModifySpotFleetRequestResponse xmlns="http://ec2.amazonaws.com/doc/%s/"><requestId>8f0c4f2e-0000-4000-8000-000000000003</requestId><return>true</return></ModifySpotFleetRequestResponse>`, ec2APIVersion)
				return
			}
			body = []byte(form.Encode())
		case "DescribeSpotFleetRequests":
			r = r.WithContext(context.WithValue(r.Context(), requestForm{}, form))
		}
	}
	r.Body = io.NopCloser(strings.NewReader(string(body)))
	r.ContentLength = int64(len(body))
	r.Header.Set("Content-Length", strconv.Itoa(len(body)))
	f.proxy.ServeHTTP(w, r)
}

// ec2Error answers an EC2 query-protocol error.
func ec2Error(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "text/xml")
	w.WriteHeader(status)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>%s</Code><Message>%s</Message></Error></Errors><RequestID>8f0c4f2e-0000-4000-8000-000000000000</RequestID></Response>`,
		html.EscapeString(code), html.EscapeString(msg))
}

// load reads moto's catalog once: every instance type, and where each is offered.
func (f *EC2Fake) load(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.catalog != nil {
		return nil
	}
	var catalog []catalogType
	p := ec2.NewDescribeInstanceTypesPaginator(f.ec2, &ec2.DescribeInstanceTypesInput{})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("moto's instance types: %w", err)
		}
		for _, it := range page.InstanceTypes {
			catalog = append(catalog, catalogEntry(it))
		}
	}
	zones, err := f.ec2.DescribeAvailabilityZones(ctx, &ec2.DescribeAvailabilityZonesInput{})
	if err != nil {
		return fmt.Errorf("moto's zones: %w", err)
	}
	offered := map[string]map[string]bool{}
	add := func(key string, in *ec2.DescribeInstanceTypeOfferingsInput) error {
		out, err := f.ec2.DescribeInstanceTypeOfferings(ctx, in)
		if err != nil {
			return fmt.Errorf("moto's offerings: %w", err)
		}
		offered[key] = map[string]bool{}
		for _, o := range out.InstanceTypeOfferings {
			offered[key][string(o.InstanceType)] = true
		}
		return nil
	}
	if err := add("", &ec2.DescribeInstanceTypeOfferingsInput{LocationType: ec2types.LocationTypeRegion}); err != nil {
		return err
	}
	for _, z := range zones.AvailabilityZones {
		err := add(aws.ToString(z.ZoneId), &ec2.DescribeInstanceTypeOfferingsInput{LocationType: ec2types.LocationTypeAvailabilityZoneId,
			Filters: []ec2types.Filter{{Name: aws.String("location"), Values: []string{aws.ToString(z.ZoneId)}}}})
		if err != nil {
			return err
		}
	}
	sort.Slice(catalog, func(i, j int) bool { return catalog[i].name < catalog[j].name })
	f.catalog, f.offered, f.zones = catalog, offered, zones.AvailabilityZones
	return nil
}

func catalogEntry(it ec2types.InstanceTypeInfo) catalogType {
	c := catalogType{name: string(it.InstanceType), current: aws.ToBool(it.CurrentGeneration),
		burstable: aws.ToBool(it.BurstablePerformanceSupported), bare: aws.ToBool(it.BareMetal)}
	if p := it.ProcessorInfo; p != nil {
		for _, a := range p.SupportedArchitectures {
			c.archs = append(c.archs, string(a))
		}
		c.manufacturer = map[string]string{"Intel": "intel", "AMD": "amd", "AWS": "amazon-web-services", "Apple": "apple"}[aws.ToString(p.Manufacturer)]
	}
	for _, v := range it.SupportedVirtualizationTypes {
		c.virt = append(c.virt, string(v))
	}
	if it.VCpuInfo != nil {
		c.vcpus = int64(aws.ToInt32(it.VCpuInfo.DefaultVCpus))
	}
	if it.MemoryInfo != nil {
		c.memMiB = aws.ToInt64(it.MemoryInfo.SizeInMiB)
	}
	if g := it.GpuInfo; g != nil {
		for _, d := range g.Gpus {
			c.accelerators += int64(aws.ToInt32(d.Count))
		}
	}
	if fp := it.FpgaInfo; fp != nil {
		for _, d := range fp.Fpgas {
			c.accelerators += int64(aws.ToInt32(d.Count))
		}
	}
	if in := it.InferenceAcceleratorInfo; in != nil {
		for _, d := range in.Accelerators {
			c.accelerators += int64(aws.ToInt32(d.Count))
		}
	}
	return c
}

// requirements are an InstanceRequirements structure as the query protocol
// spells it (the request type's CpuManufacturer.N or the response type's
// CpuManufacturerSet.N alike).
type requirements struct {
	present                          bool
	vcpuMin, vcpuMax, memMin, memMax *int64
	accelMin, accelMax               *int64
	manufacturers, generations       []string
	excluded, allowed                []string
	burstable, bareMetal             string
	priceProtection                  bool
}

var listKeyRE = regexp.MustCompile(`^([A-Za-z]+?)(Set)?\.\d+$`)

// parseRequirements reads the fields under prefix (ending in a dot).
func parseRequirements(form url.Values, prefix string) requirements {
	var r requirements
	num := func(v string) *int64 {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil
		}
		return &n
	}
	for k, vs := range form {
		field, ok := strings.CutPrefix(k, prefix)
		if !ok || len(vs) == 0 {
			continue
		}
		r.present = true
		v := vs[0]
		switch field {
		case "VCpuCount.Min":
			r.vcpuMin = num(v)
		case "VCpuCount.Max":
			r.vcpuMax = num(v)
		case "MemoryMiB.Min":
			r.memMin = num(v)
		case "MemoryMiB.Max":
			r.memMax = num(v)
		case "AcceleratorCount.Min":
			r.accelMin = num(v)
		case "AcceleratorCount.Max":
			r.accelMax = num(v)
		case "BurstablePerformance":
			r.burstable = v
		case "BareMetal":
			r.bareMetal = v
		case "SpotMaxPricePercentageOverLowestPrice", "OnDemandMaxPricePercentageOverLowestPrice", "MaxSpotPriceAsPercentageOfOptimalOnDemandPrice":
			r.priceProtection = true
		}
		if m := listKeyRE.FindStringSubmatch(field); m != nil {
			switch m[1] {
			case "CpuManufacturer":
				r.manufacturers = append(r.manufacturers, v)
			case "InstanceGeneration":
				r.generations = append(r.generations, v)
			case "ExcludedInstanceType":
				r.excluded = append(r.excluded, v)
			case "AllowedInstanceType":
				r.allowed = append(r.allowed, v)
			}
		}
	}
	return r
}

// check is AWS's rule for a requirements structure: VCpuCount and MemoryMiB
// with their minimums are required, and AllowedInstanceTypes and
// ExcludedInstanceTypes exclude each other.
// https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_InstanceRequirementsRequest.html
func (r requirements) check() string {
	switch {
	case r.vcpuMin == nil:
		return "InstanceRequirements.VCpuCount.Min is required"
	case r.memMin == nil:
		return "InstanceRequirements.MemoryMiB.Min is required"
	case len(r.allowed) > 0 && len(r.excluded) > 0:
		return "AllowedInstanceTypes and ExcludedInstanceTypes cannot both be given"
	}
	return ""
}

// matches tells whether c has the attributes, with AWS's defaults for what r
// leaves out (burstable and bare metal excluded, both generations).
func (r requirements) matches(c catalogType, archs, virt []string) bool {
	within := func(n int64, lo, hi *int64) bool { return (lo == nil || n >= *lo) && (hi == nil || n <= *hi) }
	tri := func(setting string, has bool) bool {
		switch setting {
		case "required":
			return has
		case "included":
			return true
		}
		return !has // excluded, the default
	}
	gen := "previous"
	if c.current {
		gen = "current"
	}
	switch {
	case len(archs) > 0 && !overlaps(archs, c.archs), len(virt) > 0 && !overlaps(virt, c.virt):
		return false
	case !within(c.vcpus, r.vcpuMin, r.vcpuMax), !within(c.memMiB, r.memMin, r.memMax), !within(c.accelerators, r.accelMin, r.accelMax):
		return false
	case len(r.manufacturers) > 0 && !slices.Contains(r.manufacturers, c.manufacturer):
		return false
	case len(r.generations) > 0 && !slices.Contains(r.generations, gen):
		return false
	case !tri(r.burstable, c.burstable), !tri(r.bareMetal, c.bare):
		return false
	case slices.ContainsFunc(r.excluded, func(p string) bool { ok, _ := path.Match(p, c.name); return ok }):
		return false
	case len(r.allowed) > 0 && !slices.ContainsFunc(r.allowed, func(p string) bool { ok, _ := path.Match(p, c.name); return ok }):
		return false
	}
	return true
}

func overlaps(a, b []string) bool {
	return slices.ContainsFunc(a, func(x string) bool { return slices.Contains(b, x) })
}

// list returns the values of prefix.1, prefix.2, ...
func list(form url.Values, prefix string) []string {
	var out []string
	for i := 1; ; i++ {
		v, ok := form[prefix+"."+strconv.Itoa(i)]
		if !ok {
			return out
		}
		out = append(out, v[0])
	}
}

// match lists the catalog's types offered in the zone ("": the region)
// that have the requirements.
func (f *EC2Fake) match(r requirements, archs, virt []string, zone string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, c := range f.catalog {
		if f.offered[zone][c.name] && r.matches(c, archs, virt) {
			out = append(out, c.name)
		}
	}
	return out
}

// instanceTypes answers GetInstanceTypesFromInstanceRequirements.
// https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_GetInstanceTypesFromInstanceRequirements.html
func (f *EC2Fake) instanceTypes(ctx context.Context, w http.ResponseWriter, form url.Values) {
	archs, virt := list(form, "ArchitectureType"), list(form, "VirtualizationType")
	r := parseRequirements(form, "InstanceRequirements.")
	code, msg := "", ""
	switch {
	case len(archs) == 0, len(virt) == 0, !r.present:
		code, msg = "MissingParameter", "ArchitectureTypes, VirtualizationTypes and InstanceRequirements are required"
	case r.check() != "":
		code, msg = "InvalidParameterValue", r.check()
	case r.priceProtection:
		// "This parameter is not supported for GetSpotPlacementScores and
		// GetInstanceTypesFromInstanceRequirements."
		code, msg = "InvalidParameterCombination", "price protection is not supported by GetInstanceTypesFromInstanceRequirements"
	}
	if !f.ready(ctx, w, code, msg) {
		return
	}
	types := f.match(r, archs, virt, "")
	start, size := pageOf(form, 50, len(types))
	end := min(start+size, len(types))
	w.Header().Set("Content-Type", "text/xml")
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><GetInstanceTypesFromInstanceRequirementsResponse xmlns="http://ec2.amazonaws.com/doc/%s/"><requestId>8f0c4f2e-0000-4000-8000-000000000001</requestId><instanceTypeSet>`, ec2APIVersion)
	for _, t := range types[start:end] {
		fmt.Fprintf(w, "<item><instanceType>%s</instanceType></item>", t)
	}
	fmt.Fprint(w, "</instanceTypeSet>")
	if end < len(types) {
		fmt.Fprintf(w, "<nextToken>%d</nextToken>", end)
	}
	fmt.Fprint(w, "</GetInstanceTypesFromInstanceRequirementsResponse>")
}

// ready answers a request's problem (code and message), or a failure to
// read moto's catalog; true when there is neither.
func (f *EC2Fake) ready(ctx context.Context, w http.ResponseWriter, code, msg string) bool {
	if code != "" {
		ec2Error(w, http.StatusBadRequest, code, msg)
		return false
	}
	if err := f.load(ctx); err != nil {
		ec2Error(w, http.StatusInternalServerError, "InternalError", err.Error())
		return false
	}
	return true
}

// pageOf reads NextToken (an offset here) and MaxResults.
func pageOf(form url.Values, def, n int) (start, size int) {
	start, _ = strconv.Atoi(form.Get("NextToken"))
	size = def
	if m, err := strconv.Atoi(form.Get("MaxResults")); err == nil && m > 0 {
		size = m
	}
	return min(max(start, 0), n), size
}

// scores answers GetSpotPlacementScores, per zone or for the region.
// https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_GetSpotPlacementScores.html
func (f *EC2Fake) scores(ctx context.Context, w http.ResponseWriter, form url.Values) {
	capacity, err := strconv.Atoi(form.Get("TargetCapacity"))
	types := list(form, "InstanceType")
	const meta = "InstanceRequirementsWithMetadata."
	r := parseRequirements(form, meta+"InstanceRequirements.")
	archs, virt := list(form, meta+"ArchitectureType"), list(form, meta+"VirtualizationType")
	code, msg := "", ""
	switch {
	case err != nil || capacity < 1 || capacity > 2000000000:
		code, msg = "InvalidParameterValue", "TargetCapacity must be 1 to 2000000000"
	case (len(types) > 0) == r.present:
		code, msg = "InvalidParameterCombination", "give InstanceTypes or InstanceRequirementsWithMetadata, one of them"
	case r.present && r.check() != "":
		code, msg = "InvalidParameterValue", r.check()
	case r.priceProtection:
		code, msg = "InvalidParameterCombination", "price protection is not supported by GetSpotPlacementScores"
	}
	if !f.ready(ctx, w, code, msg) {
		return
	}
	type score struct {
		zone  string
		score int
	}
	candidates := func(zone string) int {
		if !r.present {
			n := 0
			for _, t := range types {
				if f.offered[zone][t] {
					n++
				}
			}
			return n
		}
		return len(f.match(r, archs, virt, zone))
	}
	var out []score
	regions := list(form, "RegionName")
	if len(regions) == 0 || slices.Contains(regions, Region) {
		if form.Get("SingleAvailabilityZone") == "true" {
			for _, z := range f.zones {
				out = append(out, score{aws.ToString(z.ZoneId), placementScore(candidates(aws.ToString(z.ZoneId)), capacity)})
			}
		} else {
			out = append(out, score{"", placementScore(candidates(""), capacity)})
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].score > out[j].score })
	start, size := pageOf(form, 10, len(out))
	end := min(start+size, len(out))
	w.Header().Set("Content-Type", "text/xml")
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><GetSpotPlacementScoresResponse xmlns="http://ec2.amazonaws.com/doc/%s/"><requestId>8f0c4f2e-0000-4000-8000-000000000002</requestId><spotPlacementScoreSet>`, ec2APIVersion)
	for _, s := range out[start:end] {
		fmt.Fprintf(w, "<item><region>%s</region>", Region)
		if s.zone != "" {
			fmt.Fprintf(w, "<availabilityZoneId>%s</availabilityZoneId>", s.zone)
		}
		fmt.Fprintf(w, "<score>%d</score></item>", s.score)
	}
	fmt.Fprint(w, "</spotPlacementScoreSet>")
	if end < len(out) {
		fmt.Fprintf(w, "<nextToken>%d</nextToken>", end)
	}
	fmt.Fprint(w, "</GetSpotPlacementScoresResponse>")
}

// placementScore is the fake's score, 1 to 10: AWS "always" scores one or two
// types low; more types than instances asked scores high.
func placementScore(types, capacity int) int {
	if types < 3 {
		return 1
	}
	return max(1, min(10, types*10/(types+capacity)))
}

// fleetPrefixes are where each fleet action's launch template configs are.
var fleetPrefixes = map[string]string{
	"CreateFleet": "LaunchTemplateConfigs.", "ModifyFleet": "LaunchTemplateConfig.",
	"RequestSpotFleet": "SpotFleetRequestConfig.LaunchTemplateConfigs.", "ModifySpotFleetRequest": "LaunchTemplateConfig.",
}

var overrideKeyRE = regexp.MustCompile(`^(\d+)\.Overrides\.(\d+)\.(.+)$`)

// maxFleetRequirements: "You can specify a maximum of three InstanceRequirements
// structures in a request configuration."
// https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/ec2-fleet-attribute-based-instance-type-selection.html
const maxFleetRequirements = 3

// launchable checks a fleet request's InstanceRequirements overrides against
// AWS's rules and adds the type moto needs to launch; an error code and
// message when the request breaks a rule.
func (f *EC2Fake) launchable(ctx context.Context, action string, form url.Values) (code, msg string) {
	prefix := fleetPrefixes[action]
	invalid := "InvalidFleetConfig"
	if strings.Contains(action, "SpotFleet") {
		invalid = "InvalidSpotFleetRequestConfig"
	}
	type override struct{ config, index string }
	fields := map[override]map[string]string{}
	for k, vs := range form {
		rest, ok := strings.CutPrefix(k, prefix)
		if !ok {
			continue
		}
		if m := overrideKeyRE.FindStringSubmatch(rest); m != nil {
			o := override{m[1], m[2]}
			if fields[o] == nil {
				fields[o] = map[string]string{}
			}
			fields[o][m[3]] = vs[0]
		}
	}
	var withReqs, withTypes []override
	for o, fs := range fields {
		hasReqs := false
		for k := range fs {
			hasReqs = hasReqs || strings.HasPrefix(k, "InstanceRequirements.")
		}
		switch {
		case hasReqs && fs["InstanceType"] != "":
			// "If you specify InstanceRequirements, you can't specify InstanceType."
			return invalid, "an override takes InstanceRequirements or InstanceType, not both"
		case hasReqs && (fs["WeightedCapacity"] != "" || fs["Priority"] != ""):
			// "when you specify instance attributes as overrides, you can't also specify weights or priorities"
			return invalid, "an override with InstanceRequirements takes no WeightedCapacity or Priority"
		case hasReqs:
			withReqs = append(withReqs, o)
		default:
			withTypes = append(withTypes, o)
		}
	}
	switch {
	case len(withReqs) == 0:
		return "", ""
	case len(withTypes) > 0:
		// "You can specify either instance types or instance attributes [...], but not both at the same time."
		return invalid, "the overrides mix InstanceType and InstanceRequirements"
	case len(withReqs) > maxFleetRequirements:
		return invalid, fmt.Sprintf("%d InstanceRequirements structures: at most %d in a request", len(withReqs), maxFleetRequirements)
	}
	if err := f.load(ctx); err != nil {
		return "InternalError", err.Error()
	}
	for _, o := range withReqs {
		r := parseRequirements(form, prefix+o.config+".Overrides."+o.index+".InstanceRequirements.")
		if p := r.check(); p != "" {
			return invalid, p
		}
		arch, err := f.templateArch(ctx, form, prefix+o.config+".LaunchTemplateSpecification.", r)
		if err != nil {
			return "InternalError", err.Error()
		}
		types := f.match(r, []string{arch}, []string{"hvm"}, "")
		if len(types) == 0 {
			return invalid, fmt.Sprintf("no %s instance type matches the InstanceRequirements of override %s.%s", arch, o.config, o.index)
		}
		form.Set(prefix+o.config+".Overrides."+o.index+".InstanceType", types[0])
	}
	// moto takes one subnet per override, where an EC2 Fleet's takes them
	// comma-separated: moto gets the first.
	for o := range fields {
		key := prefix + o.config + ".Overrides." + o.index + ".SubnetId"
		if first, _, ok := strings.Cut(form.Get(key), ","); ok {
			form.Set(key, strings.TrimSpace(first))
		}
	}
	return "", ""
}

// templateArch is the architecture of the launch template's AMI: AWS
// launches "a compatible CPU architecture based on the AMI". When moto does
// not know the AMI, the CPU manufacturers tell it, else x86_64.
func (f *EC2Fake) templateArch(ctx context.Context, form url.Values, prefix string, r requirements) (string, error) {
	id, version := form.Get(prefix+"LaunchTemplateId"), form.Get(prefix+"Version")
	if version == "" {
		version = "$Default"
	}
	if id != "" {
		v, err := f.ec2.DescribeLaunchTemplateVersions(ctx, &ec2.DescribeLaunchTemplateVersionsInput{LaunchTemplateId: aws.String(id), Versions: []string{version}})
		if err != nil {
			return "", fmt.Errorf("launch template %s: %w", id, err)
		}
		if len(v.LaunchTemplateVersions) > 0 && v.LaunchTemplateVersions[0].LaunchTemplateData != nil {
			if ami := aws.ToString(v.LaunchTemplateVersions[0].LaunchTemplateData.ImageId); ami != "" {
				if im, err := f.ec2.DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: []string{ami}}); err == nil && len(im.Images) == 1 {
					return string(im.Images[0].Architecture), nil
				}
			}
		}
	}
	if len(r.manufacturers) > 0 && !slices.ContainsFunc(r.manufacturers, func(m string) bool { return m != "amazon-web-services" }) {
		return "arm64", nil
	}
	return "x86_64", nil
}

// requestForm is the context key of a request's form as the SDK sent it.
type requestForm struct{}

func cloneValues(v url.Values) url.Values {
	out := url.Values{}
	for k, vs := range v {
		out[k] = slices.Clone(vs)
	}
	return out
}

var (
	spotFleetIDRE   = regexp.MustCompile(`<spotFleetRequestId>([^<]+)</spotFleetRequestId>`)
	spotFleetItemRE = regexp.MustCompile(`(?s)(<spotFleetRequestConfig>.*?)(</spotFleetRequestConfig>\s*<spotFleetRequestId>([^<]+)</spotFleetRequestId>)`)
)

// spotFleetConfigs remembers what a RequestSpotFleet or ModifySpotFleetRequest
// gave that moto drops, and adds it to moto's DescribeSpotFleetRequests.
func (f *EC2Fake) spotFleetConfigs(resp *http.Response) error {
	form, ok := resp.Request.Context().Value(requestForm{}).(url.Values)
	if !ok || resp.StatusCode != http.StatusOK {
		return nil
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	f.mu.Lock()
	switch form.Get("Action") {
	case "RequestSpotFleet":
		if m := spotFleetIDRE.FindSubmatch(body); m != nil {
			f.spotFleets[string(m[1])] = keepParams(form, "SpotFleetRequestConfig.", "LaunchTemplateConfigs", "SpotMaintenanceStrategies")
		}
	case "ModifySpotFleetRequest":
		f.changeSpotFleet(form)
	case "DescribeSpotFleetRequests":
		body = spotFleetItemRE.ReplaceAllFunc(body, func(item []byte) []byte {
			m := spotFleetItemRE.FindSubmatch(item)
			cfg := f.spotFleets[string(m[3])]
			return []byte(string(m[1]) + queryXML(cfg) + string(m[2]))
		})
	}
	f.mu.Unlock()
	resp.Body = io.NopCloser(strings.NewReader(string(body)))
	resp.ContentLength = int64(len(body))
	resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
	return nil
}

// keepParams are the parameters under prefix whose names start with one of
// keys, the prefix cut (and a modification's LaunchTemplateConfig named as
// the request's LaunchTemplateConfigs).
func keepParams(form url.Values, prefix string, keys ...string) url.Values {
	out := url.Values{}
	for k, vs := range form {
		rest, ok := strings.CutPrefix(k, prefix)
		for _, want := range keys {
			if ok && strings.HasPrefix(rest, want+".") {
				out[strings.Replace(rest, "LaunchTemplateConfig.", "LaunchTemplateConfigs.", 1)] = vs
			}
		}
	}
	return out
}

// changeSpotFleet takes a ModifySpotFleetRequest's launch template configs
// for the request's configuration; f.mu is held.
func (f *EC2Fake) changeSpotFleet(form url.Values) {
	cfg, ok := f.spotFleets[form.Get("SpotFleetRequestId")]
	changed := keepParams(form, "", "LaunchTemplateConfig")
	if !ok || len(changed) == 0 {
		return
	}
	for k := range cfg {
		if strings.HasPrefix(k, "LaunchTemplateConfigs.") {
			delete(cfg, k)
		}
	}
	maps.Copy(cfg, changed)
}

// queryXML writes query-protocol parameters (A.B.1.C=v) as the EC2 XML
// answers them (<a><b><item><c>v</c></item></b></a>): names in lower camel
// case, list members as items.
func queryXML(v url.Values) string {
	type node struct {
		value    string
		children map[string]*node
	}
	root := &node{children: map[string]*node{}}
	for k, vs := range v {
		n := root
		for _, part := range strings.Split(k, ".") {
			if n.children[part] == nil {
				n.children[part] = &node{children: map[string]*node{}}
			}
			n = n.children[part]
		}
		n.value = vs[0]
	}
	var b strings.Builder
	var write func(n *node)
	write = func(n *node) {
		keys := slices.Collect(maps.Keys(n.children))
		sort.Slice(keys, func(i, j int) bool {
			a, errA := strconv.Atoi(keys[i])
			c, errC := strconv.Atoi(keys[j])
			if errA == nil && errC == nil {
				return a < c
			}
			return keys[i] < keys[j]
		})
		for _, k := range keys {
			name := "item"
			if _, err := strconv.Atoi(k); err != nil {
				name = strings.ToLower(k[:1]) + k[1:]
			}
			b.WriteString("<" + name + ">")
			if c := n.children[k]; len(c.children) > 0 {
				write(c)
			} else {
				b.WriteString(html.EscapeString(c.value))
			}
			b.WriteString("</" + name + ">")
		}
	}
	write(root)
	return b.String()
}
