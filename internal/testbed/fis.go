package testbed

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/big"
	"mime"
	"net/http"
	"net/http/httputil"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// FIS is a fake of the AWS Fault Injection Service in front of an AWS
// endpoint (moto), speaking FIS's wire format (REST-JSON: JSON bodies,
// errors in X-Amzn-ErrorType). A request signed for the service "fis" is
// answered here; everything else goes to the endpoint behind it unchanged.
//
// moto 5.2.1 creates, deletes and tags experiment templates but cannot get,
// list or update one, and has no experiments: the fake keeps the templates
// itself (moto never sees them) and runs experiments of the one action
// spot-agent uses, aws:ec2:send-spot-instance-interruptions, as AWS's FIS
// user guide describes it:
//
//   - a template is checked as AWS checks it: a description, a role, at
//     least one stop condition (source none, or aws:cloudwatch:alarm with an
//     alarm's ARN), actions of a known action id whose targets name the
//     template's targets by the action's target key (SpotInstances), a
//     durationBeforeInterruption of PT2M to PT15M, targets of resource type
//     aws:ec2:spot-instance selected by tags or ARNs, ALL, COUNT(n) or
//     PERCENT(n);
//   - StartExperiment resolves the targets at the endpoint (DescribeInstances:
//     the tags, the filters, Spot Instances only), picks the selection at
//     random, and for each instance calls its Notice hook when the notice is
//     due (durationBeforeInterruption − 2 minutes from the start: a longer
//     duration gives a rebalance recommendation first, which the fake does
//     not send), then, at the end of the duration, terminates it at the
//     endpoint and calls its Terminated hook; the experiment goes from
//     initiating through running to completed (failed when no target
//     resolves);
//   - StopExperiment stops it (stopping, then stopped) and cancels the
//     terminations not yet done. Assumed, as AWS does not say: a notice
//     already given is not withdrawn, and the instance is not interrupted.
//   - ListExperimentResolvedTargets names the chosen instances (their ARNs,
//     under targetInformation's "identifier").
//   - A caller (its access key id) can be refused an action (Deny): a 403
//     AccessDeniedException naming it, as IAM words it, and nothing done.
//
// It also names the IAM action of every request it sees, FIS's and those it
// passes on, by the caller's access key id (Actions): a test can hold a
// policy to the calls a command really made.
//
// Not modelled: stop conditions are not evaluated (moto computes no alarm
// state from metrics); experiment options, logs and reports.
type FIS struct {
	URL string // set by the caller that serves it (Moto's front)

	upstream *httputil.ReverseProxy
	ec2      *ec2.Client // the endpoint's, for targets and terminations
	account  string

	mu          sync.Mutex
	templates   map[string]*fisTemplate
	experiments map[string]*fisExperiment
	order       []string // experiment ids, oldest first
	hooks       map[string]InstanceHooks
	deny        map[string]map[string]bool // access key id → IAM actions refused
	calls       map[string]int
	actions     map[string]map[string]int    // access key id → IAM action → requests
	tags        map[string]map[string]string // ARN → tags (TagResource)
	wg          sync.WaitGroup
	closed      chan struct{}
}

// InstanceHooks is what happens on an instance the fake interrupts: its
// metadata starts serving the notice (Notice, with the interruption's time),
// and at that time it goes away (Terminated, after the endpoint terminated
// it). Both are called from the fake's own goroutine.
type InstanceHooks struct {
	Notice     func(deadline time.Time)
	Terminated func()
}

type fisTemplate struct {
	ID             string               `json:"-"`
	ARN            string               `json:"-"`
	Description    string               `json:"description"`
	RoleArn        string               `json:"roleArn"`
	StopConditions []fisStopCondition   `json:"stopConditions"`
	Targets        map[string]fisTarget `json:"targets"`
	Actions        map[string]fisAction `json:"actions"`
	Tags           map[string]string    `json:"tags"`
	Created        time.Time            `json:"-"`
	Updated        time.Time            `json:"-"`
}

type fisStopCondition struct {
	Source string `json:"source"`
	Value  string `json:"value,omitempty"`
}

type fisFilter struct {
	Path   string   `json:"path"`
	Values []string `json:"values"`
}

type fisTarget struct {
	ResourceType  string            `json:"resourceType"`
	ResourceArns  []string          `json:"resourceArns,omitempty"`
	ResourceTags  map[string]string `json:"resourceTags,omitempty"`
	Filters       []fisFilter       `json:"filters,omitempty"`
	SelectionMode string            `json:"selectionMode"`
	Parameters    map[string]string `json:"parameters,omitempty"`
}

type fisAction struct {
	ActionID    string            `json:"actionId"`
	Description string            `json:"description,omitempty"`
	Parameters  map[string]string `json:"parameters,omitempty"`
	Targets     map[string]string `json:"targets,omitempty"`
	StartAfter  []string          `json:"startAfter,omitempty"`
}

type fisExperiment struct {
	ID, ARN, TemplateID string
	template            fisTemplate // as it was at the start
	Status, Reason      string
	ActionStatus        string
	Created, Started    time.Time
	Ended               time.Time
	Resolved            []string // instance ids
	Tags                map[string]string
	cancel              context.CancelFunc
}

// The actions the fake knows, with their target key and resource type.
var fisActions = map[string]struct{ targetKey, resourceType string }{
	"aws:ec2:send-spot-instance-interruptions": {"SpotInstances", "aws:ec2:spot-instance"},
}

// noticeLead is how long before the interruption EC2 gives its notice.
const noticeLead = 2 * time.Minute

// NewFIS returns the fake in front of upstream (moto's URL), resolving
// targets with ec2 (an EC2 client of that endpoint; nil: no experiments),
// for the account. Serve it (it is an http.Handler) and set URL; Close
// ends its experiments' goroutines.
func NewFIS(upstream string, client *http.Client, ec2c *ec2.Client, account string) (*FIS, error) {
	u, err := url.Parse(upstream)
	if err != nil {
		return nil, err
	}
	rp := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(u)
		// The Host the SDK signed and addressed (S3's bucket, if virtual-hosted).
		r.Out.Host = r.In.Host
		// Go's HTTP server reads header names canonically
		// (X-Amz-Meta-Sha256): S3's user metadata goes on in the case the
		// SDK sent (x-amz-meta-sha256), or moto stores another key. The
		// answer's way back is metaCase's.
		lowerMeta(r.Out.Header)
	}}
	if client != nil {
		rp.Transport = client.Transport
	}
	return &FIS{upstream: rp, ec2: ec2c, account: account, templates: map[string]*fisTemplate{}, experiments: map[string]*fisExperiment{},
		hooks: map[string]InstanceHooks{}, deny: map[string]map[string]bool{}, calls: map[string]int{}, actions: map[string]map[string]int{}, tags: map[string]map[string]string{},
		closed: make(chan struct{})}, nil
}

// Close stops every experiment and waits for their goroutines.
func (f *FIS) Close() {
	f.mu.Lock()
	select {
	case <-f.closed:
	default:
		close(f.closed)
	}
	for _, e := range f.experiments {
		if e.cancel != nil {
			e.cancel()
		}
	}
	f.mu.Unlock()
	f.wg.Wait()
}

// Instance sets what an interruption of instance id does.
func (f *FIS) Instance(id string, h InstanceHooks) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hooks[id] = h
}

// Deny refuses the caller whose access key id is accessKey the IAM action
// (fis:StartExperiment, ...).
func (f *FIS) Deny(accessKey, action string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.deny[accessKey] == nil {
		f.deny[accessKey] = map[string]bool{}
	}
	f.deny[accessKey][action] = true
}

// Calls returns how many calls of an FIS operation the fake answered.
func (f *FIS) Calls(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[op]
}

// Actions returns the IAM actions (service:Operation) that the caller whose
// access key id is accessKey asked for, at FIS or the endpoint behind it,
// with how many requests each. A request it cannot name is there as
// "service:? METHOD /path", which no policy grants.
func (f *FIS) Actions(accessKey string) map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.actions[accessKey])
}

func (f *FIS) count(accessKey, action string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.actions[accessKey] == nil {
		f.actions[accessKey] = map[string]int{}
	}
	f.actions[accessKey][action]++
}

// FISExperiment is what the fake knows of one experiment.
type FISExperiment struct {
	ID, TemplateID, Status, Reason string
	Resolved                       []string
	Started, Ended                 time.Time
}

// Experiments lists every experiment, oldest first.
func (f *FIS) Experiments() []FISExperiment {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []FISExperiment
	for _, id := range f.order {
		e := f.experiments[id]
		out = append(out, FISExperiment{ID: e.ID, TemplateID: e.TemplateID, Status: e.Status, Reason: e.Reason, Resolved: slices.Clone(e.Resolved), Started: e.Started, Ended: e.Ended})
	}
	return out
}

// Running lists the experiments not over yet (pending, initiating,
// running, stopping).
func (f *FIS) Running() []FISExperiment {
	var out []FISExperiment
	for _, e := range f.Experiments() {
		switch e.Status {
		case "pending", "initiating", "running", "stopping":
			out = append(out, e)
		}
	}
	return out
}

// Template returns a template's targets' selection mode and its action's
// durationBeforeInterruption, as the fake holds them now.
func (f *FIS) Template(id string) (selection, duration string, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := f.templates[id]
	if t == nil {
		return "", "", false
	}
	for _, tg := range t.Targets {
		selection = tg.SelectionMode
	}
	for _, a := range t.Actions {
		duration = a.Parameters["durationBeforeInterruption"]
	}
	return selection, duration, true
}

var fisCredential = regexp.MustCompile(`Credential=([^/]+)/[^/]+/[^/]+/([^/]+)/aws4_request`)

func (f *FIS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m := fisCredential.FindStringSubmatch(r.Header.Get("Authorization"))
	if m == nil || m[2] != "fis" {
		if m != nil {
			action, err := requestAction(m[2], r)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			f.count(m[1], action)
		}
		f.upstream.ServeHTTP(metaCase{w}, r)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		fisError(w, http.StatusBadRequest, "ValidationException", err.Error())
		return
	}
	f.route(w, r, m[1], body)
}

// iamPrefixes are the signing names whose IAM prefix is another.
var iamPrefixes = map[string]string{"monitoring": "cloudwatch"}

// rpcv2Operation is a Smithy RPC v2 request's path (the SDK's default for
// CloudWatch): /service/NAME/operation/OPERATION.
var rpcv2Operation = regexp.MustCompile(`^/service/[^/]+/operation/([^/]+)$`)

// requestAction names the IAM action of a request signed for the service
// scope, by its protocol: JSON (X-Amz-Target: Prefix.Operation), Smithy RPC
// v2, query (the form's Action: its body is read and put back for the
// endpoint) or S3's REST (whose bodies are never read).
func requestAction(scope string, r *http.Request) (string, error) {
	prefix := scope
	if p, ok := iamPrefixes[scope]; ok {
		prefix = p
	}
	if t := r.Header.Get("X-Amz-Target"); t != "" {
		return prefix + ":" + t[strings.LastIndex(t, ".")+1:], nil
	}
	if m := rpcv2Operation.FindStringSubmatch(r.URL.Path); m != nil {
		return prefix + ":" + m[1], nil
	}
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct == "application/x-www-form-urlencoded" && scope != "s3" {
		body, err := io.ReadAll(r.Body)
		_ = r.Body.Close()
		if err != nil {
			return "", fmt.Errorf("read the request: %w", err)
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		if form, err := url.ParseQuery(string(body)); err == nil && form.Get("Action") != "" {
			return prefix + ":" + form.Get("Action"), nil
		}
	}
	if a := r.URL.Query().Get("Action"); a != "" {
		return prefix + ":" + a, nil
	}
	if scope == "s3" && s3Action(r) != "" {
		return s3Action(r), nil
	}
	return fmt.Sprintf("%s:? %s %s", prefix, r.Method, r.URL.Path), nil
}

// s3Action names the IAM action of a path-style S3 request (spot-agent's
// client addresses an endpoint so) on a bucket or an object; "" for the
// calls it does not know.
// https://docs.aws.amazon.com/AmazonS3/latest/userguide/using-with-s3-policy-actions.html
func s3Action(r *http.Request) string {
	bucket, key, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	verb := map[string]string{http.MethodGet: "Get", http.MethodHead: "Get", http.MethodPut: "Put", http.MethodDelete: "Delete"}[r.Method]
	switch {
	case bucket == "" || verb == "":
		return ""
	case key != "":
		return "s3:" + verb + "Object"
	case r.URL.Query().Has("tagging"):
		return "s3:" + verb + "BucketTagging"
	case len(r.URL.Query()) == 0 && verb == "Get", r.URL.Query().Get("list-type") == "2":
		return "s3:ListBucket" // HeadBucket, ListObjects(V2)
	}
	return ""
}

// lowerMeta writes S3's x-amz-meta-* header names in lower case.
func lowerMeta(h http.Header) {
	for k, v := range h {
		if strings.HasPrefix(k, "X-Amz-Meta-") {
			delete(h, k)
			h[strings.ToLower(k)] = v
		}
	}
}

// metaCase answers with S3's metadata header names as moto wrote them
// (the proxy's copy into the answer's header made them canonical), or the
// CLI reads another key.
type metaCase struct{ http.ResponseWriter }

func (m metaCase) WriteHeader(code int) {
	lowerMeta(m.Header())
	m.ResponseWriter.WriteHeader(code)
}

// Unwrap lets the proxy's http.ResponseController reach the server's writer
// (to flush a streamed answer).
func (m metaCase) Unwrap() http.ResponseWriter { return m.ResponseWriter }

// fisError answers a REST-JSON error.
func fisError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Amzn-ErrorType", code)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"message": msg})
}

func fisJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// route dispatches on method and path, as the service's HTTP bindings do.
func (f *FIS) route(w http.ResponseWriter, r *http.Request, caller string, body []byte) {
	parts := strings.Split(strings.Trim(r.URL.EscapedPath(), "/"), "/")
	op := ""
	switch {
	case r.Method == http.MethodPost && len(parts) == 1 && parts[0] == "experimentTemplates":
		op = "CreateExperimentTemplate"
	case r.Method == http.MethodGet && len(parts) == 1 && parts[0] == "experimentTemplates":
		op = "ListExperimentTemplates"
	case len(parts) == 2 && parts[0] == "experimentTemplates":
		op = map[string]string{http.MethodGet: "GetExperimentTemplate", http.MethodPatch: "UpdateExperimentTemplate", http.MethodDelete: "DeleteExperimentTemplate"}[r.Method]
	case r.Method == http.MethodPost && len(parts) == 1 && parts[0] == "experiments":
		op = "StartExperiment"
	case r.Method == http.MethodGet && len(parts) == 1 && parts[0] == "experiments":
		op = "ListExperiments"
	case len(parts) == 2 && parts[0] == "experiments":
		op = map[string]string{http.MethodGet: "GetExperiment", http.MethodDelete: "StopExperiment"}[r.Method]
	case r.Method == http.MethodGet && len(parts) == 3 && parts[0] == "experiments" && parts[2] == "resolvedTargets":
		op = "ListExperimentResolvedTargets"
	case len(parts) == 2 && parts[0] == "tags":
		op = map[string]string{http.MethodGet: "ListTagsForResource", http.MethodPost: "TagResource", http.MethodDelete: "UntagResource"}[r.Method]
	}
	if op == "" {
		fisError(w, http.StatusNotFound, "UnknownOperationException", r.Method+" "+r.URL.Path+": not an operation the fake knows")
		return
	}
	f.count(caller, "fis:"+op)
	f.mu.Lock()
	f.calls[op]++
	denied := f.deny[caller]["fis:"+op]
	f.mu.Unlock()
	if denied {
		fisError(w, http.StatusForbidden, "AccessDeniedException", fmt.Sprintf("User: arn:aws:iam::%s:user/%s is not authorized to perform: fis:%s on resource: arn:aws:fis:%s:%s:%s because no identity-based policy allows the fis:%s action",
			f.account, caller, op, Region, f.account, map[bool]string{true: "experiment-template/*", false: "experiment/*"}[strings.Contains(op, "Template") || op == "StartExperiment"], op))
		return
	}
	id := ""
	if len(parts) >= 2 {
		id, _ = url.PathUnescape(parts[1])
	}
	switch op {
	case "CreateExperimentTemplate":
		f.createTemplate(w, body)
	case "ListExperimentTemplates":
		f.listTemplates(w)
	case "GetExperimentTemplate":
		f.mu.Lock()
		t := f.templates[id]
		f.mu.Unlock()
		if t == nil {
			fisError(w, http.StatusNotFound, "ResourceNotFoundException", "Experiment template not found.")
			return
		}
		fisJSON(w, map[string]any{"experimentTemplate": f.templateJSON(t)})
	case "UpdateExperimentTemplate":
		f.updateTemplate(w, id, body)
	case "DeleteExperimentTemplate":
		f.mu.Lock()
		t := f.templates[id]
		delete(f.templates, id)
		f.mu.Unlock()
		if t == nil {
			fisError(w, http.StatusNotFound, "ResourceNotFoundException", "Experiment template not found.")
			return
		}
		fisJSON(w, map[string]any{"experimentTemplate": f.templateJSON(t)})
	case "StartExperiment":
		f.start(w, body)
	case "ListExperiments":
		var out []any
		for _, e := range f.Experiments() {
			out = append(out, map[string]any{"id": e.ID, "experimentTemplateId": e.TemplateID, "state": map[string]string{"status": e.Status}})
		}
		fisJSON(w, map[string]any{"experiments": out})
	case "GetExperiment", "StopExperiment":
		f.experiment(w, id, op == "StopExperiment")
	case "ListExperimentResolvedTargets":
		f.mu.Lock()
		e := f.experiments[id]
		var out []map[string]any
		if e != nil {
			for _, i := range e.Resolved {
				out = append(out, map[string]any{"resourceType": "aws:ec2:spot-instance", "targetName": "SpotInstances",
					"targetInformation": map[string]string{"identifier": fmt.Sprintf("arn:aws:ec2:%s:%s:instance/%s", Region, f.account, i)}})
			}
		}
		f.mu.Unlock()
		if e == nil {
			fisError(w, http.StatusNotFound, "ResourceNotFoundException", "Experiment not found.")
			return
		}
		fisJSON(w, map[string]any{"resolvedTargets": out})
	case "ListTagsForResource", "TagResource", "UntagResource":
		f.tagging(w, r, op, id, body)
	}
}

func (f *FIS) templateJSON(t *fisTemplate) map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	return map[string]any{"id": t.ID, "arn": t.ARN, "description": t.Description, "roleArn": t.RoleArn, "stopConditions": t.StopConditions,
		"targets": t.Targets, "actions": t.Actions, "tags": t.Tags, "creationTime": epoch(t.Created), "lastUpdateTime": epoch(t.Updated)}
}

func epoch(t time.Time) float64 { return float64(t.UnixMilli()) / 1000 }

func newID(prefix string) string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return prefix + strings.ToUpper(hex.EncodeToString(b))[:15]
}

func (f *FIS) createTemplate(w http.ResponseWriter, body []byte) {
	var t fisTemplate
	if err := json.Unmarshal(body, &t); err != nil {
		fisError(w, http.StatusBadRequest, "ValidationException", err.Error())
		return
	}
	if msg := f.checkTemplate(&t); msg != "" {
		fisError(w, http.StatusBadRequest, "ValidationException", msg)
		return
	}
	t.ID = newID("EXT")
	t.ARN = fmt.Sprintf("arn:aws:fis:%s:%s:experiment-template/%s", Region, f.account, t.ID)
	t.Created, t.Updated = time.Now(), time.Now()
	f.mu.Lock()
	f.templates[t.ID] = &t
	f.mu.Unlock()
	fisJSON(w, map[string]any{"experimentTemplate": f.templateJSON(&t)})
}

func (f *FIS) listTemplates(w http.ResponseWriter) {
	f.mu.Lock()
	var out []map[string]any
	for _, t := range f.templates {
		out = append(out, map[string]any{"id": t.ID, "arn": t.ARN, "description": t.Description, "tags": t.Tags,
			"creationTime": epoch(t.Created), "lastUpdateTime": epoch(t.Updated)})
	}
	f.mu.Unlock()
	slices.SortFunc(out, func(a, b map[string]any) int { return strings.Compare(a["id"].(string), b["id"].(string)) })
	fisJSON(w, map[string]any{"experimentTemplates": out})
}

func (f *FIS) updateTemplate(w http.ResponseWriter, id string, body []byte) {
	var up struct {
		Description    *string               `json:"description"`
		RoleArn        *string               `json:"roleArn"`
		StopConditions []fisStopCondition    `json:"stopConditions"`
		Targets        map[string]fisTarget  `json:"targets"`
		Actions        map[string]*fisAction `json:"actions"`
	}
	if err := json.Unmarshal(body, &up); err != nil {
		fisError(w, http.StatusBadRequest, "ValidationException", err.Error())
		return
	}
	f.mu.Lock()
	cur := f.templates[id]
	f.mu.Unlock()
	if cur == nil {
		fisError(w, http.StatusNotFound, "ResourceNotFoundException", "Experiment template not found.")
		return
	}
	f.mu.Lock()
	t := *cur
	f.mu.Unlock()
	if up.Description != nil {
		t.Description = *up.Description
	}
	if up.RoleArn != nil {
		t.RoleArn = *up.RoleArn
	}
	if up.StopConditions != nil {
		t.StopConditions = up.StopConditions
	}
	// A target or action given replaces the one of its name.
	if up.Targets != nil {
		t.Targets = mapsClone(t.Targets)
		for k, v := range up.Targets {
			t.Targets[k] = v
		}
	}
	if up.Actions != nil {
		t.Actions = mapsClone(t.Actions)
		for k, v := range up.Actions {
			if v == nil {
				delete(t.Actions, k)
			} else {
				t.Actions[k] = *v
			}
		}
	}
	if msg := f.checkTemplate(&t); msg != "" {
		fisError(w, http.StatusBadRequest, "ValidationException", msg)
		return
	}
	t.Updated = time.Now()
	f.mu.Lock()
	f.templates[id] = &t
	f.mu.Unlock()
	fisJSON(w, map[string]any{"experimentTemplate": f.templateJSON(&t)})
}

func mapsClone[V any](m map[string]V) map[string]V {
	out := make(map[string]V, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

var selectionRE = regexp.MustCompile(`^(ALL|COUNT\((\d+)\)|PERCENT\((\d+)\))$`)

// checkTemplate holds a template to AWS's rules for it; "" when it passes.
// https://docs.aws.amazon.com/fis/latest/APIReference/API_CreateExperimentTemplate.html
func (f *FIS) checkTemplate(t *fisTemplate) string {
	switch {
	case t.Description == "" || len(t.Description) > 512:
		return "description is required, at most 512 characters"
	case !strings.HasPrefix(t.RoleArn, "arn:") || !strings.Contains(t.RoleArn, ":role/"):
		return fmt.Sprintf("roleArn %q is not a role's ARN", t.RoleArn)
	case len(t.StopConditions) == 0:
		return "at least one stop condition is required"
	case len(t.Actions) == 0:
		return "at least one action is required"
	}
	for _, sc := range t.StopConditions {
		switch {
		case sc.Source == "none" && sc.Value == "":
		case sc.Source == "aws:cloudwatch:alarm" && regexp.MustCompile(`^arn:aws[a-z-]*:cloudwatch:[a-z0-9-]+:\d{12}:alarm:.+$`).MatchString(sc.Value):
		default:
			return fmt.Sprintf("stop condition %s %q: the source is none, or aws:cloudwatch:alarm with an alarm's ARN", sc.Source, sc.Value)
		}
	}
	for name, tg := range t.Targets {
		m := selectionRE.FindStringSubmatch(tg.SelectionMode)
		switch {
		case tg.ResourceType != "aws:ec2:spot-instance":
			return fmt.Sprintf("target %s: resource type %q is not one the fake knows (aws:ec2:spot-instance)", name, tg.ResourceType)
		case len(tg.ResourceArns) > 0 && len(tg.ResourceTags) > 0:
			return fmt.Sprintf("target %s: resourceArns and resourceTags cannot both be given", name)
		case len(tg.ResourceArns) == 0 && len(tg.ResourceTags) == 0:
			return fmt.Sprintf("target %s: resourceArns or resourceTags is required", name)
		case m == nil:
			return fmt.Sprintf("target %s: selection mode %q is not ALL, COUNT(n) or PERCENT(n)", name, tg.SelectionMode)
		case m[2] != "" && m[2] == "0", m[3] != "" && (m[3] == "0" || len(m[3]) > 3 || atoi(m[3]) > 100):
			return fmt.Sprintf("target %s: selection mode %q out of range", name, tg.SelectionMode)
		}
		for _, fl := range tg.Filters {
			if fl.Path == "" || len(fl.Values) == 0 {
				return fmt.Sprintf("target %s: a filter needs a path and values", name)
			}
		}
	}
	for name, a := range t.Actions {
		known, ok := fisActions[a.ActionID]
		if !ok {
			return fmt.Sprintf("action %s: %q is not an action the fake knows", name, a.ActionID)
		}
		for key, target := range a.Targets {
			if key != known.targetKey {
				return fmt.Sprintf("action %s: target key %q, want %s", name, key, known.targetKey)
			}
			if tg, ok := t.Targets[target]; !ok || tg.ResourceType != known.resourceType {
				return fmt.Sprintf("action %s: target %q is not a target of the template of type %s", name, target, known.resourceType)
			}
		}
		if len(a.Targets) == 0 {
			return fmt.Sprintf("action %s: the target %s is required", name, known.targetKey)
		}
		for k, v := range a.Parameters {
			if k != "durationBeforeInterruption" {
				return fmt.Sprintf("action %s: unknown parameter %q", name, k)
			}
			d, err := isoDuration(v)
			if err != nil || d < 2*time.Minute || d > 15*time.Minute {
				return fmt.Sprintf("action %s: durationBeforeInterruption %q must be an ISO 8601 duration from PT2M to PT15M", name, v)
			}
		}
		if a.Parameters["durationBeforeInterruption"] == "" {
			return fmt.Sprintf("action %s: durationBeforeInterruption is required", name)
		}
	}
	return ""
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }

var isoRE = regexp.MustCompile(`^PT(?:(\d+)M)?(?:(\d+)S)?$`)

func isoDuration(v string) (time.Duration, error) {
	m := isoRE.FindStringSubmatch(v)
	if m == nil || (m[1] == "" && m[2] == "") {
		return 0, fmt.Errorf("%q is not PTnMnS", v)
	}
	return time.Duration(atoi(m[1]))*time.Minute + time.Duration(atoi(m[2]))*time.Second, nil
}

func (f *FIS) start(w http.ResponseWriter, body []byte) {
	var in struct {
		ClientToken          string            `json:"clientToken"`
		ExperimentTemplateID string            `json:"experimentTemplateId"`
		Tags                 map[string]string `json:"tags"`
	}
	if err := json.Unmarshal(body, &in); err != nil {
		fisError(w, http.StatusBadRequest, "ValidationException", err.Error())
		return
	}
	f.mu.Lock()
	t := f.templates[in.ExperimentTemplateID]
	var tmpl fisTemplate
	if t != nil {
		tmpl = *t
	}
	f.mu.Unlock()
	if t == nil {
		fisError(w, http.StatusNotFound, "ResourceNotFoundException", "Experiment template not found.")
		return
	}
	if f.ec2 == nil {
		fisError(w, http.StatusServiceUnavailable, "ServiceQuotaExceededException", "this fake runs no experiments (no EC2 endpoint)")
		return
	}
	e := &fisExperiment{ID: newID("EXP"), TemplateID: tmpl.ID, template: tmpl, Status: "initiating", Created: time.Now(), Tags: in.Tags}
	e.ARN = fmt.Sprintf("arn:aws:fis:%s:%s:experiment/%s", Region, f.account, e.ID)
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	f.mu.Lock()
	f.experiments[e.ID] = e
	f.order = append(f.order, e.ID)
	f.mu.Unlock()
	f.wg.Add(1)
	go f.run(ctx, e)
	fisJSON(w, map[string]any{"experiment": f.experimentJSON(e)})
}

// run resolves the targets, then gives each its notice and, at the end of
// the duration, terminates it, unless the experiment is stopped first.
func (f *FIS) run(ctx context.Context, e *fisExperiment) {
	defer f.wg.Done()
	set := func(status, reason string) {
		f.mu.Lock()
		e.Status, e.Reason = status, reason
		if status == "running" {
			e.Started, e.ActionStatus = time.Now(), "running"
		}
		if status == "completed" || status == "failed" || status == "stopped" {
			e.Ended = time.Now()
			e.ActionStatus = map[string]string{"completed": "completed", "failed": "failed", "stopped": "stopped"}[status]
		}
		f.mu.Unlock()
	}
	var ids []string
	var duration time.Duration
	for name, a := range e.template.Actions {
		duration, _ = isoDuration(a.Parameters["durationBeforeInterruption"])
		for _, target := range a.Targets {
			got, err := f.resolve(ctx, e.template.Targets[target])
			if err != nil && ctx.Err() != nil {
				// StopExperiment while the targets were being resolved.
				set("stopped", "Experiment stopped.")
				return
			}
			if err != nil {
				set("failed", fmt.Sprintf("action %s: target resolution failed: %v", name, err))
				return
			}
			ids = append(ids, got...)
		}
	}
	if len(ids) == 0 {
		set("failed", "Target resolution returned empty set.")
		return
	}
	f.mu.Lock()
	e.Resolved = ids
	f.mu.Unlock()
	set("running", "Experiment is running.")
	start := time.Now()
	deadline := start.Add(duration).Truncate(time.Second)
	noticeAt := deadline.Add(-noticeLead)
	select {
	case <-ctx.Done():
		set("stopped", "Experiment stopped.")
		return
	case <-time.After(time.Until(noticeAt)):
	}
	for _, id := range ids {
		f.mu.Lock()
		h := f.hooks[id]
		f.mu.Unlock()
		if h.Notice != nil {
			h.Notice(deadline)
		}
	}
	select {
	case <-ctx.Done():
		set("stopped", "Experiment stopped.")
		return
	case <-time.After(time.Until(deadline)):
	}
	if _, err := f.ec2.TerminateInstances(context.Background(), &ec2.TerminateInstancesInput{InstanceIds: ids}); err != nil {
		set("failed", "the interruption failed: "+err.Error())
		return
	}
	for _, id := range ids {
		f.mu.Lock()
		h := f.hooks[id]
		f.mu.Unlock()
		if h.Terminated != nil {
			h.Terminated()
		}
	}
	set("completed", "Experiment completed.")
}

// resolve finds a target's instances at the endpoint: Spot Instances only,
// with the tags and the filters, then the selection, at random.
func (f *FIS) resolve(ctx context.Context, tg fisTarget) ([]string, error) {
	in := &ec2.DescribeInstancesInput{}
	for k, v := range tg.ResourceTags {
		in.Filters = append(in.Filters, ec2types.Filter{Name: aws.String("tag:" + k), Values: []string{v}})
	}
	for _, fl := range tg.Filters {
		switch fl.Path {
		case "State.Name":
			in.Filters = append(in.Filters, ec2types.Filter{Name: aws.String("instance-state-name"), Values: fl.Values})
		default:
			return nil, fmt.Errorf("filter path %s: not one the fake knows (State.Name)", fl.Path)
		}
	}
	for _, arn := range tg.ResourceArns {
		in.InstanceIds = append(in.InstanceIds, arn[strings.LastIndex(arn, "/")+1:])
	}
	var ids []string
	p := ec2.NewDescribeInstancesPaginator(f.ec2, in)
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		for _, r := range page.Reservations {
			for _, i := range r.Instances {
				if i.InstanceLifecycle == ec2types.InstanceLifecycleTypeSpot {
					ids = append(ids, aws.ToString(i.InstanceId))
				}
			}
		}
	}
	// COUNT(n) and PERCENT(n) choose at random among them.
	for i := len(ids) - 1; i > 0; i-- {
		j, _ := rand.Int(rand.Reader, big.NewInt(int64(i+1)))
		ids[i], ids[j.Int64()] = ids[j.Int64()], ids[i]
	}
	m := selectionRE.FindStringSubmatch(tg.SelectionMode)
	n := len(ids)
	switch {
	case m[2] != "":
		n = min(n, atoi(m[2]))
	case m[3] != "":
		n = (len(ids)*atoi(m[3]) + 99) / 100
	}
	return ids[:n], nil
}

func (f *FIS) experiment(w http.ResponseWriter, id string, stop bool) {
	f.mu.Lock()
	e := f.experiments[id]
	if e != nil && stop {
		switch e.Status {
		case "pending", "initiating", "running":
			e.Status, e.Reason = "stopping", "Stopping the experiment."
			e.cancel()
		}
	}
	f.mu.Unlock()
	if e == nil {
		fisError(w, http.StatusNotFound, "ResourceNotFoundException", "Experiment not found.")
		return
	}
	fisJSON(w, map[string]any{"experiment": f.experimentJSON(e)})
}

func (f *FIS) experimentJSON(e *fisExperiment) map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]any{"id": e.ID, "arn": e.ARN, "experimentTemplateId": e.TemplateID, "roleArn": e.template.RoleArn,
		"state": map[string]string{"status": e.Status, "reason": e.Reason}, "targets": e.template.Targets,
		"stopConditions": e.template.StopConditions, "creationTime": epoch(e.Created), "tags": e.Tags}
	actions := map[string]any{}
	for name, a := range e.template.Actions {
		st := map[string]any{"actionId": a.ActionID, "parameters": a.Parameters, "targets": a.Targets,
			"state": map[string]string{"status": orDefault(e.ActionStatus, "pending")}}
		if !e.Started.IsZero() {
			st["startTime"] = epoch(e.Started)
		}
		if !e.Ended.IsZero() {
			st["endTime"] = epoch(e.Ended)
		}
		actions[name] = st
	}
	out["actions"] = actions
	if !e.Started.IsZero() {
		out["startTime"] = epoch(e.Started)
	}
	if !e.Ended.IsZero() {
		out["endTime"] = epoch(e.Ended)
	}
	return out
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func (f *FIS) tagging(w http.ResponseWriter, r *http.Request, op, arn string, body []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var tags map[string]string
	for _, t := range f.templates {
		if t.ARN == arn {
			if t.Tags == nil {
				t.Tags = map[string]string{}
			}
			tags = t.Tags
		}
	}
	if tags == nil {
		if f.tags[arn] == nil {
			f.tags[arn] = map[string]string{}
		}
		tags = f.tags[arn]
	}
	switch op {
	case "TagResource":
		var in struct {
			Tags map[string]string `json:"tags"`
		}
		_ = json.Unmarshal(body, &in)
		for k, v := range in.Tags {
			tags[k] = v
		}
	case "UntagResource":
		for _, k := range r.URL.Query()["tagKeys"] {
			delete(tags, k)
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"tags": tags})
}
