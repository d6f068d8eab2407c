package bootstrap

import (
	"reflect"
	"testing"
)

// A string that holds tokens becomes its one token's function, or a
// Fn::Sub in which every literal "${" is escaped ("${!"), and a function
// Fn::Sub has no name for is a variable.
func TestTokensBecomeIntrinsicFunctions(t *testing.T) {
	b := &cfnBuilder{}
	ref, att := b.ref("TargetGroup"), b.att("LoadBalancer", "DNSName")
	azs := b.fn(map[string]any{"Fn::GetAZs": ""})
	for _, tc := range []struct {
		in   string
		want any
	}{
		{"plain ${HOME} text", "plain ${HOME} text"},
		{ref, map[string]any{"Ref": "TargetGroup"}},
		{att, map[string]any{"Fn::GetAtt": []string{"LoadBalancer", "DNSName"}}},
		{"http://" + att + "/", map[string]any{"Fn::Sub": "http://${LoadBalancer.DNSName}/"}},
		{"${HOME}:" + ref + ":$x", map[string]any{"Fn::Sub": "${!HOME}:${TargetGroup}:$x"}},
		{ref + "," + azs, map[string]any{"Fn::Sub": []any{"${TargetGroup},${V2}", map[string]any{"V2": map[string]any{"Fn::GetAZs": ""}}}}},
	} {
		got, err := b.resolveString(tc.in)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q: %#v, %v; want %#v", tc.in, got, err, tc.want)
		}
	}
	for _, broken := range []string{tokenOpen + "9" + tokenClose, "x" + tokenOpen + "0", tokenOpen + "a" + tokenClose} {
		if got, err := b.resolveString(broken); err == nil {
			t.Errorf("%q: %#v, want an error", broken, got)
		}
	}
}

// Unset fields of the SDK's structs leave the template; zero values that
// were set (a pointer to 0 or false) stay.
func TestCfnDropsWhatIsUnset(t *testing.T) {
	zero, no := int32(0), false
	got, err := (&cfnBuilder{}).cfn(struct {
		Set   *int32
		Off   *bool
		Unset *int32
		Empty string
		None  []string
		Float float64
		Inner struct{ A *string }
	}{Set: &zero, Off: &no, Float: 1.5})
	want := map[string]any{"Set": int64(0), "Off": false, "Float": 1.5}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("%#v, %v; want %#v", got, err, want)
	}
}
