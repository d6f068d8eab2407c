package notify

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/template/parse"
	"time"
)

// templateName names the template in its errors, as text/template did.
const templateName = "notify-template"

// Template is a webhook body (--notify-template) written in a subset of Go's
// text/template syntax. text/template/parse reads it; this file evaluates it
// over plain values. text/template's own evaluator looks methods up by name
// (reflect.Value.MethodByName), which makes the linker keep every exported
// method of every type in the binary: 36 MB of AWS SDK code on every instance.
//
// The data is the Event, fields only: Summary and Failed are fields too, and
// an Outcome has TargetGroup, Ports, Result, Attempts and Error. What the
// subset has, with the meaning text/template gives it, and the same output:
//
//   - text, {{/* comments */}}, trim markers {{- and -}}
//   - {{.Field}}, {{.Outcomes}}; $ is the event; {{$x := pipeline}}, {{$x = pipeline}}
//   - {{if}}, {{else if}}, {{else}}, {{with}}, {{else with}}, {{end}}
//   - {{range}} over a list, with . rebound, $i, $e, {{else}} when empty, {{break}}, {{continue}}
//   - pipelines with | and parentheses; string, number and bool literals
//   - the functions in templateFuncs: json, printf, eq, ne, not, and, or,
//     len, join, upper, lower, and time (a time in UTC, formatted)
//
// Anything else is refused when the template is read: method calls
// (.Deadline.UTC), nil, {{template}}, {{define}}, {{block}}, other functions
// (index, print, lt, ...), range over a number.
type Template struct {
	tree *parse.Tree
}

// templateFunc is a function a template can call: its number of parameters
// (the minimum when variadic), and the function.
type templateFunc struct {
	params   int
	variadic bool
	call     func(args []any) (any, error)
}

// templateFuncs are the functions of the subset. Each has the name, the
// arguments and the result of its text/template counterpart (a builtin, or
// the FuncMap this package used to give text/template).
var templateFuncs = map[string]templateFunc{
	// json is a value as JSON: {{json .Reason}} is a quoted JSON string.
	"json": {1, false, func(a []any) (any, error) {
		b, err := json.Marshal(goValue(a[0]))
		return string(b), err
	}},
	"printf": {1, true, func(a []any) (any, error) {
		format, err := stringArg(a[0])
		if err != nil {
			return nil, err
		}
		args := make([]any, len(a)-1)
		for i, v := range a[1:] {
			args[i] = goValue(v)
		}
		return fmt.Sprintf(format, args...), nil
	}},
	"eq": {1, true, func(a []any) (any, error) { return eq(a[0], a[1:]...) }},
	"ne": {2, false, func(a []any) (any, error) {
		equal, err := eq(a[0], a[1])
		return !equal, err
	}},
	"not": {1, false, func(a []any) (any, error) { return !truth(a[0]), nil }},
	// and and or short-circuit: evalCall evaluates them.
	"and": {1, true, nil},
	"or":  {1, true, nil},
	"len": {1, false, func(a []any) (any, error) {
		switch v := a[0].(type) {
		case *list:
			return len(v.items), nil
		case string:
			return len(v), nil
		case Phase:
			return len(v), nil
		}
		return nil, fmt.Errorf("len of type %s", typeName(a[0]))
	}},
	// join is strings.Join: {{join .TargetGroups ", "}}.
	"join": {2, false, func(a []any) (any, error) {
		l, ok := a[0].(*list)
		if !ok {
			return nil, fmt.Errorf("wrong type for value; expected []string; got %s", typeName(a[0]))
		}
		elems := make([]string, len(l.items))
		for i, v := range l.items {
			s, ok := v.(string)
			if !ok {
				return nil, fmt.Errorf("wrong type for value; expected []string; got %s", l.typ)
			}
			elems[i] = s
		}
		sep, err := stringArg(a[1])
		return strings.Join(elems, sep), err
	}},
	"upper": {1, false, func(a []any) (any, error) {
		s, err := stringArg(a[0])
		return strings.ToUpper(s), err
	}},
	"lower": {1, false, func(a []any) (any, error) {
		s, err := stringArg(a[0])
		return strings.ToLower(s), err
	}},
	// time formats a time in UTC with a Go layout, as .T.UTC.Format LAYOUT
	// did: {{time "15:04:05Z" .Deadline}}, {{.Deadline | time "2006-01-02"}}.
	"time": {2, false, func(a []any) (any, error) {
		layout, err := stringArg(a[0])
		if err != nil {
			return nil, err
		}
		t, ok := a[1].(time.Time)
		if !ok {
			return nil, fmt.Errorf("wrong type for value; expected time.Time; got %s", typeName(a[1]))
		}
		return t.UTC().Format(layout), nil
	}},
}

// templateFuncNames lists the functions for error messages.
func templateFuncNames() string {
	names := make([]string, 0, len(templateFuncs))
	for name := range templateFuncs {
		names = append(names, name)
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

// ParseTemplate reads a webhook template: s itself when it contains "{{",
// else the file named s. It then tries the template on a sample event of
// each phase, taking every branch of every if and with, so that a template
// that would fail at an interruption fails now.
func ParseTemplate(s string) (*Template, error) {
	text := s
	if !strings.Contains(s, "{{") {
		b, err := os.ReadFile(s)
		if err != nil {
			return nil, fmt.Errorf("not an inline template (no {{) and not a readable file: %w", err)
		}
		text = string(b)
	}
	t, err := parseTemplate(text)
	if err != nil {
		return nil, err
	}
	for _, p := range []Phase{PhaseDetected, PhaseDrained} {
		if err := t.check(SampleEvent(p)); err != nil {
			return nil, fmt.Errorf("fails on a sample %s event: %w", p, err)
		}
	}
	return t, nil
}

// parseTemplate parses text and refuses what the subset lacks but the parser
// accepts.
func parseTemplate(text string) (*Template, error) {
	funcs := make(map[string]any, len(templateFuncs))
	for name := range templateFuncs {
		funcs[name] = true // the parser only checks that the name is there
	}
	trees := map[string]*parse.Tree{}
	tree, err := parse.New(templateName).Parse(text, "", "", trees, funcs)
	if err != nil {
		if strings.Contains(err.Error(), "not defined") {
			return nil, fmt.Errorf("%w (the functions are %s)", err, templateFuncNames())
		}
		return nil, err
	}
	if len(trees) != 1 || trees[templateName] != tree {
		return nil, fmt.Errorf("template: %s: {{define}} and {{block}} are not supported", templateName)
	}
	if n := unsupported(tree.Root); n != nil {
		location, context := tree.ErrorContext(n)
		what := "{{template}}"
		if n.Type() == parse.NodeNil {
			what = "nil"
		}
		return nil, fmt.Errorf("template: %s: %s is not supported, at <%s>", location, what, context)
	}
	return &Template{tree: tree}, nil
}

// unsupported returns the first {{template}} or nil in the tree, if any.
func unsupported(node parse.Node) parse.Node {
	var found parse.Node
	var visit func(parse.Node)
	visit = func(node parse.Node) {
		if found != nil || node == nil {
			return
		}
		switch n := node.(type) {
		case *parse.TemplateNode, *parse.NilNode:
			found = n
		case *parse.ListNode:
			if n == nil {
				return
			}
			for _, c := range n.Nodes {
				visit(c)
			}
		case *parse.ActionNode:
			visit(n.Pipe)
		case *parse.IfNode:
			visitBranch(visit, &n.BranchNode)
		case *parse.RangeNode:
			visitBranch(visit, &n.BranchNode)
		case *parse.WithNode:
			visitBranch(visit, &n.BranchNode)
		case *parse.PipeNode:
			if n == nil {
				return
			}
			for _, c := range n.Cmds {
				visit(c)
			}
		case *parse.CommandNode:
			for _, c := range n.Args {
				visit(c)
			}
		case *parse.ChainNode:
			visit(n.Node)
		}
	}
	visit(node)
	return found
}

func visitBranch(visit func(parse.Node), b *parse.BranchNode) {
	visit(b.Pipe)
	visit(b.List)
	if b.ElseList != nil {
		visit(b.ElseList)
	}
}

// Execute writes the template applied to e.
func (t *Template) Execute(w io.Writer, e Event) error {
	s := &state{tree: t.tree, w: w}
	return s.run(eventData(e))
}

// check runs the template on e taking every branch (both sides of if and
// with, every argument of and and or, the else of range, no break or
// continue), and discards the output. Errors here depend on types, not
// values, so this finds what would fail at an interruption, with one limit:
// after an if with an else, a variable keeps what the else gave it, so one
// given values of different types in the two branches is checked with the
// else's only.
func (t *Template) check(e Event) error {
	s := &state{tree: t.tree, w: io.Discard, every: true}
	return s.run(eventData(e))
}

// The data model: what a template sees of an Event. Values are strings (and
// the Phase), bools, ints, int32s, time.Times, records and lists.

// record is a struct as a template sees it: its fields by name, and the
// struct itself, which printing and json show as text/template did.
type record struct {
	typ    string // as text/template named it: notify.Event
	names  []string
	fields map[string]any
	value  any
}

// list is a slice as a template sees it: its elements, and the slice itself
// for printing and json.
type list struct {
	typ   string
	items []any
	value any
}

func newRecord(typ string, value any, kv ...any) *record {
	r := &record{typ: typ, fields: make(map[string]any, len(kv)/2), value: value}
	for i := 0; i < len(kv); i += 2 {
		name := kv[i].(string)
		r.names = append(r.names, name)
		r.fields[name] = kv[i+1]
	}
	return r
}

// eventData is e as a template sees it. Summary and Failed, methods of Event,
// are fields here.
func eventData(e Event) *record {
	var outcomes []any
	if e.Outcomes != nil {
		outcomes = make([]any, len(e.Outcomes))
	}
	for i, o := range e.Outcomes {
		var ports []any
		if o.Ports != nil {
			ports = make([]any, len(o.Ports))
		}
		for j, p := range o.Ports {
			ports[j] = p
		}
		outcomes[i] = newRecord("notify.Outcome", o,
			"TargetGroup", o.TargetGroup,
			"Ports", &list{typ: "[]int32", items: ports, value: o.Ports},
			"Result", o.Result,
			"Attempts", o.Attempts,
			"Error", o.Error)
	}
	var groups []any
	if e.TargetGroups != nil {
		groups = make([]any, len(e.TargetGroups))
	}
	for i, g := range e.TargetGroups {
		groups[i] = g
	}
	return newRecord("notify.Event", e,
		"ID", e.ID,
		"Phase", e.Phase,
		"InstanceID", e.InstanceID,
		"InstanceType", e.InstanceType,
		"AvailabilityZone", e.AvailabilityZone,
		"Region", e.Region,
		"Kind", e.Kind,
		"Action", e.Action,
		"NoticeTime", e.NoticeTime,
		"Seen", e.Seen,
		"Deadline", e.Deadline,
		"ExitBy", e.ExitBy,
		"Reason", e.Reason,
		"Stale", e.Stale,
		"TargetGroups", &list{typ: "[]string", items: groups, value: e.TargetGroups},
		"Outcomes", &list{typ: "[]notify.Outcome", items: outcomes, value: e.Outcomes},
		"DryRun", e.DryRun,
		"Time", e.Time,
		"Summary", e.Summary(),
		"Failed", e.Failed())
}

// goValue is v as text/template would have had it: a record or a list is
// the Go value it was made from.
func goValue(v any) any {
	switch x := v.(type) {
	case *record:
		return x.value
	case *list:
		return x.value
	}
	return v
}

func typeName(v any) string {
	switch x := v.(type) {
	case nil:
		return "nil"
	case *record:
		return x.typ
	case *list:
		return x.typ
	case Phase:
		return "notify.Phase"
	}
	return fmt.Sprintf("%T", v)
}

func stringArg(v any) (string, error) {
	switch s := v.(type) {
	case string:
		return s, nil
	case Phase:
		return string(s), nil
	}
	return "", fmt.Errorf("wrong type for value; expected string; got %s", typeName(v))
}

// truth is text/template's: false, 0, "" and an empty list are false; a
// record or a time (a struct) is always true.
func truth(v any) bool {
	switch x := v.(type) {
	case nil:
		return false
	case bool:
		return x
	case string:
		return x != ""
	case Phase:
		return x != ""
	case int:
		return x != 0
	case int32:
		return x != 0
	case float64:
		return x != 0
	case complex128:
		return x != 0
	case *list:
		return len(x.items) > 0
	}
	return true
}

type kind int

const (
	invalidKind kind = iota
	boolKind
	complexKind
	intKind
	floatKind
	stringKind
)

func basicKind(v any) kind {
	switch v.(type) {
	case bool:
		return boolKind
	case int, int32:
		return intKind
	case float64:
		return floatKind
	case complex128:
		return complexKind
	case string, Phase:
		return stringKind
	}
	return invalidKind
}

func asInt(v any) int64 {
	if i, ok := v.(int32); ok {
		return int64(i)
	}
	return int64(v.(int))
}

func asString(v any) string {
	if p, ok := v.(Phase); ok {
		return string(p)
	}
	return v.(string)
}

// eq is text/template's for strings, numbers and bools: a equals one of bs.
// Other values (times, records, lists) are not compared.
func eq(a any, bs ...any) (bool, error) {
	if len(bs) == 0 {
		return false, errors.New("missing argument for comparison")
	}
	ka := basicKind(a)
	if ka == invalidKind {
		return false, fmt.Errorf("can't compare a value of type %s: eq and ne compare strings, numbers and bools", typeName(a))
	}
	for _, b := range bs {
		kb := basicKind(b)
		if kb == invalidKind {
			return false, fmt.Errorf("can't compare a value of type %s: eq and ne compare strings, numbers and bools", typeName(b))
		}
		if ka != kb {
			return false, fmt.Errorf("incompatible types for comparison: %s and %s", typeName(a), typeName(b))
		}
		var equal bool
		switch ka {
		case boolKind:
			equal = a.(bool) == b.(bool)
		case complexKind:
			equal = a.(complex128) == b.(complex128)
		case floatKind:
			equal = a.(float64) == b.(float64)
		case intKind:
			equal = asInt(a) == asInt(b)
		case stringKind:
			equal = asString(a) == asString(b)
		}
		if equal {
			return true, nil
		}
	}
	return false, nil
}

// The evaluator, after text/template's exec.go, with errors returned rather
// than panicked.

type variable struct {
	name  string
	value any
}

type state struct {
	tree  *parse.Tree
	w     io.Writer
	vars  []variable
	every bool // take every branch: the check at start
}

// missingType marks the absence of a piped-in value.
type missingType struct{}

var missing any = missingType{}

func isMissing(v any) bool {
	_, ok := v.(missingType)
	return ok
}

var (
	errBreak    = errors.New("break")
	errContinue = errors.New("continue")
)

func (s *state) run(data *record) error {
	s.vars = []variable{{"$", data}}
	return s.walk(data, s.tree.Root)
}

// errorf is an error at node n, worded as text/template's.
func (s *state) errorf(n parse.Node, format string, args ...any) error {
	location, context := s.tree.ErrorContext(n)
	prefix := fmt.Sprintf("template: %s: executing %q at <%s>: ", location, templateName, context)
	return fmt.Errorf(strings.ReplaceAll(prefix, "%", "%%")+format, args...)
}

func (s *state) mark() int { return len(s.vars) }

func (s *state) pop(mark int) { s.vars = s.vars[:mark] }

func (s *state) push(name string, v any) { s.vars = append(s.vars, variable{name, v}) }

func (s *state) setVar(n parse.Node, name string, v any) error {
	for i := len(s.vars) - 1; i >= 0; i-- {
		if s.vars[i].name == name {
			s.vars[i].value = v
			return nil
		}
	}
	return s.errorf(n, "undefined variable: %s", name)
}

func (s *state) varValue(n parse.Node, name string) (any, error) {
	for i := len(s.vars) - 1; i >= 0; i-- {
		if s.vars[i].name == name {
			return s.vars[i].value, nil
		}
	}
	return nil, s.errorf(n, "undefined variable: %s", name)
}

func (s *state) walk(dot any, node parse.Node) error {
	switch n := node.(type) {
	case *parse.ActionNode:
		v, err := s.evalPipeline(dot, n.Pipe)
		if err != nil || len(n.Pipe.Decl) > 0 {
			return err // an action that declares a variable prints nothing
		}
		if v == nil {
			v = "<no value>"
		}
		_, err = fmt.Fprint(s.w, goValue(v))
		return err
	case *parse.BreakNode:
		if s.every {
			return nil
		}
		return errBreak
	case *parse.ContinueNode:
		if s.every {
			return nil
		}
		return errContinue
	case *parse.CommentNode:
		return nil
	case *parse.IfNode:
		return s.walkIfOrWith(false, dot, n.Pipe, n.List, n.ElseList)
	case *parse.WithNode:
		return s.walkIfOrWith(true, dot, n.Pipe, n.List, n.ElseList)
	case *parse.ListNode:
		for _, c := range n.Nodes {
			if err := s.walk(dot, c); err != nil {
				return err
			}
		}
		return nil
	case *parse.RangeNode:
		return s.walkRange(dot, n)
	case *parse.TextNode:
		_, err := s.w.Write(n.Text)
		return err
	}
	return s.errorf(node, "%s is not supported", node)
}

// walkIfOrWith walks an if or a with: the same, except that with sets dot.
func (s *state) walkIfOrWith(with bool, dot any, pipe *parse.PipeNode, list, elseList *parse.ListNode) error {
	defer s.pop(s.mark())
	val, err := s.evalPipeline(dot, pipe)
	if err != nil {
		return err
	}
	inner := dot
	if with {
		inner = val
	}
	if s.every {
		vars := slices.Clone(s.vars)
		if err := s.walk(inner, list); err != nil || elseList == nil {
			return err
		}
		s.vars = vars // the else starts from what the if saw
		return s.walk(dot, elseList)
	}
	if truth(val) {
		return s.walk(inner, list)
	}
	if elseList != nil {
		return s.walk(dot, elseList)
	}
	return nil
}

func (s *state) walkRange(dot any, r *parse.RangeNode) error {
	defer s.pop(s.mark())
	val, err := s.evalPipeline(dot, r.Pipe)
	if err != nil {
		return err
	}
	l, ok := val.(*list)
	if !ok {
		return s.errorf(r.Pipe, "range can't iterate over %v (range takes a list)", goValue(val))
	}
	mark := s.mark() // before any variable of the body
	for i, elem := range l.items {
		err := s.iterate(r, mark, i, elem)
		if err == errBreak {
			return nil
		}
		if err != nil {
			return err
		}
	}
	if len(l.items) > 0 && !s.every {
		return nil
	}
	if r.ElseList != nil {
		return s.walk(dot, r.ElseList)
	}
	return nil
}

// iterate runs the body of r once. As in text/template, {{range $e := ...}}
// sets $e to the element, {{range $i, $e := ...}} $i to the index.
func (s *state) iterate(r *parse.RangeNode, mark, index int, elem any) error {
	decl := r.Pipe.Decl
	if len(decl) > 0 {
		if r.Pipe.IsAssign {
			v := elem
			if len(decl) > 1 {
				v = index
			}
			if err := s.setVar(decl[0], decl[0].Ident[0], v); err != nil {
				return err
			}
		} else {
			s.vars[len(s.vars)-1].value = elem
		}
	}
	if len(decl) > 1 {
		if r.Pipe.IsAssign {
			if err := s.setVar(decl[1], decl[1].Ident[0], elem); err != nil {
				return err
			}
		} else {
			s.vars[len(s.vars)-2].value = index
		}
	}
	err := s.walk(elem, r.List)
	s.pop(mark)
	if err == errContinue {
		return nil
	}
	return err
}

// evalPipeline is the value of a pipeline; it declares or sets its variables.
func (s *state) evalPipeline(dot any, pipe *parse.PipeNode) (any, error) {
	value := missing
	for _, cmd := range pipe.Cmds {
		v, err := s.evalCommand(dot, cmd, value) // the previous value is this one's last argument
		if err != nil {
			return nil, err
		}
		value = v
	}
	for _, v := range pipe.Decl {
		if pipe.IsAssign {
			if err := s.setVar(v, v.Ident[0], value); err != nil {
				return nil, err
			}
		} else {
			s.push(v.Ident[0], value)
		}
	}
	return value, nil
}

// notAFunction refuses arguments to n, which is not a function; args, if
// not nil, starts with n.
func (s *state) notAFunction(n parse.Node, args []parse.Node, final any) error {
	if len(args) > 1 || !isMissing(final) {
		return s.errorf(n, "can't give argument to non-function %s", n)
	}
	return nil
}

func (s *state) evalCommand(dot any, cmd *parse.CommandNode, final any) (any, error) {
	first := cmd.Args[0]
	switch n := first.(type) {
	case *parse.FieldNode:
		return s.evalFields(n, dot, n.Ident, cmd.Args, final)
	case *parse.ChainNode:
		return s.evalChainNode(dot, n, cmd.Args, final)
	case *parse.IdentifierNode:
		return s.evalCall(dot, cmd, n.Ident, cmd.Args, final)
	case *parse.PipeNode:
		// Parenthesized: the arguments are all inside.
		if err := s.notAFunction(n, cmd.Args, final); err != nil {
			return nil, err
		}
		return s.evalPipeline(dot, n)
	case *parse.VariableNode:
		return s.evalVariableNode(dot, n, cmd.Args, final)
	}
	if err := s.notAFunction(first, cmd.Args, final); err != nil {
		return nil, err
	}
	switch n := first.(type) {
	case *parse.BoolNode:
		return n.True, nil
	case *parse.DotNode:
		return dot, nil
	case *parse.NumberNode:
		return s.idealConstant(n)
	case *parse.StringNode:
		return n.Text, nil
	}
	return nil, s.errorf(first, "can't evaluate command %q", first)
}

// idealConstant is a number literal as text/template types it: complex,
// float64 if written like one, else int.
func (s *state) idealConstant(n *parse.NumberNode) (any, error) {
	switch {
	case n.IsComplex:
		return n.Complex128, nil
	case n.IsFloat && !isHexInt(n.Text) && !isRuneInt(n.Text) && strings.ContainsAny(n.Text, ".eEpP"):
		return n.Float64, nil
	case n.IsInt:
		i := int(n.Int64)
		if int64(i) != n.Int64 {
			return nil, s.errorf(n, "%s overflows int", n.Text)
		}
		return i, nil
	}
	return nil, s.errorf(n, "%s overflows int", n.Text)
}

func isRuneInt(s string) bool { return len(s) > 0 && s[0] == '\'' }

func isHexInt(s string) bool {
	return len(s) > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X') && !strings.ContainsAny(s, "pP")
}

func (s *state) evalChainNode(dot any, chain *parse.ChainNode, args []parse.Node, final any) (any, error) {
	// (pipeline).Field1.Field2: the pipeline, then the fields.
	v, err := s.evalArg(dot, chain.Node)
	if err != nil {
		return nil, err
	}
	return s.evalFields(chain, v, chain.Field, args, final)
}

func (s *state) evalVariableNode(dot any, n *parse.VariableNode, args []parse.Node, final any) (any, error) {
	v, err := s.varValue(n, n.Ident[0])
	if err != nil {
		return nil, err
	}
	if len(n.Ident) == 1 {
		if err := s.notAFunction(n, args, final); err != nil {
			return nil, err
		}
		return v, nil
	}
	return s.evalFields(n, v, n.Ident[1:], args, final)
}

// evalFields walks .A.B.C from receiver; only the last may have had
// arguments, which a field refuses.
func (s *state) evalFields(n parse.Node, receiver any, ident []string, args []parse.Node, final any) (any, error) {
	var err error
	for i, name := range ident {
		last := i == len(ident)-1
		hasArgs := last && (len(args) > 1 || !isMissing(final))
		if receiver, err = s.evalField(n, name, hasArgs, receiver); err != nil {
			return nil, err
		}
	}
	return receiver, nil
}

func (s *state) evalField(n parse.Node, name string, hasArgs bool, receiver any) (any, error) {
	switch r := receiver.(type) {
	case *record:
		v, ok := r.fields[name]
		if !ok {
			return nil, s.errorf(n, "can't evaluate field %s in type %s%s", name, r.typ, r.hint(name))
		}
		if hasArgs {
			return nil, s.errorf(n, "%s has arguments but cannot be invoked as function", name)
		}
		return v, nil
	case time.Time:
		return nil, s.errorf(n, "%s is a method of time.Time, and templates call no method here; "+
			"format a time with the time function: {{time %q .Deadline}}", name, time.RFC3339)
	}
	return nil, s.errorf(n, "can't evaluate field %s in type %s", name, typeName(receiver))
}

// hint points at the field a misspelt name meant, or lists the fields.
func (r *record) hint(name string) string {
	for _, f := range r.names {
		if strings.EqualFold(f, name) {
			return " (did you mean " + f + "?)"
		}
	}
	return "; its fields are " + strings.Join(r.names, ", ")
}

// evalCall calls a function; args, if not nil, starts with the function's
// name, as a command does.
func (s *state) evalCall(dot any, n parse.Node, name string, args []parse.Node, final any) (any, error) {
	f, ok := templateFuncs[name]
	if !ok {
		return nil, s.errorf(n, "%q is not a defined function", name)
	}
	if args != nil {
		args = args[1:]
	}
	numIn := len(args)
	if !isMissing(final) {
		numIn++
	}
	if f.variadic && numIn < f.params {
		return nil, s.errorf(n, "wrong number of args for %s: want at least %d got %d", name, f.params, len(args))
	}
	if !f.variadic && numIn != f.params {
		return nil, s.errorf(n, "wrong number of args for %s: want %d got %d", name, f.params, numIn)
	}
	if name == "and" || name == "or" {
		return s.andOr(dot, name, args, final)
	}
	argv := make([]any, 0, numIn)
	for _, a := range args {
		v, err := s.evalArg(dot, a)
		if err != nil {
			return nil, err
		}
		argv = append(argv, v)
	}
	if !isMissing(final) {
		argv = append(argv, final)
	}
	v, err := f.call(argv)
	if err != nil {
		return nil, s.errorf(n, "error calling %s: %w", name, err)
	}
	return v, nil
}

// andOr returns the first argument that is false (and) or true (or), else the
// last one, evaluating no argument after it, except when checking.
func (s *state) andOr(dot any, name string, args []parse.Node, final any) (any, error) {
	var v, decided any
	done := false
	for _, a := range args {
		x, err := s.evalArg(dot, a)
		if err != nil {
			return nil, err
		}
		if !done && truth(x) == (name == "or") {
			if !s.every {
				return x, nil
			}
			decided, done = x, true
		}
		v = x
	}
	if done {
		return decided, nil
	}
	if !isMissing(final) {
		v = final
	}
	return v, nil
}

func (s *state) evalArg(dot any, n parse.Node) (any, error) {
	switch a := n.(type) {
	case *parse.DotNode:
		return dot, nil
	case *parse.FieldNode:
		return s.evalFields(a, dot, a.Ident, nil, missing)
	case *parse.VariableNode:
		return s.evalVariableNode(dot, a, nil, missing)
	case *parse.PipeNode:
		return s.evalPipeline(dot, a)
	case *parse.IdentifierNode:
		return s.evalCall(dot, a, a.Ident, nil, missing)
	case *parse.ChainNode:
		return s.evalChainNode(dot, a, nil, missing)
	case *parse.BoolNode:
		return a.True, nil
	case *parse.NumberNode:
		return s.idealConstant(a)
	case *parse.StringNode:
		return a.Text, nil
	}
	return nil, s.errorf(n, "can't handle %s as an argument", n)
}
