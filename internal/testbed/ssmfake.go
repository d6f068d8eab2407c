package testbed

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// SSMFake is a reverse proxy in front of moto that speaks SSM's JSON
// protocol (POST, X-Amz-Target: AmazonSSM.<Action>, application/x-amz-json-1.1)
// for what moto 5.2.1 cannot do: it enforces no IAM, and its KMS decrypts
// every SecureString. For a parameter named with Deny, GetParameter answers
// the AccessDeniedException an instance role without ssm:GetParameter gets;
// with DenyDecrypt, the AccessDeniedException SSM passes on from KMS when the
// role may read the parameter but not use its customer managed key (both as
// AWS writes them, status 400, code and message in the body). Everything
// else goes to moto unchanged.
type SSMFake struct {
	URL string

	mu      sync.Mutex
	deny    map[string]bool // parameter name → ssm:GetParameter denied
	decrypt map[string]bool // parameter name → kms:Decrypt denied
	calls   map[string]int  // parameter name → GetParameter calls
}

// NewSSMFake starts the fake in front of moto.
func NewSSMFake(t testing.TB, m *Moto) *SSMFake {
	u, err := url.Parse(m.URL)
	if err != nil {
		t.Fatal(err)
	}
	f := &SSMFake{deny: map[string]bool{}, decrypt: map[string]bool{}, calls: map[string]int{}}
	proxy := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Amz-Target") != "AmazonSSM.GetParameter" {
			proxy.ServeHTTP(w, r)
			return
		}
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		var in struct{ Name string }
		_ = json.Unmarshal(body, &in)
		name := parameterName(in.Name)
		f.mu.Lock()
		f.calls[name]++
		deny, decrypt := f.deny[name], f.decrypt[name]
		f.mu.Unlock()
		arn := fmt.Sprintf("arn:aws:ssm:%s:%s:parameter/%s", Region, Account, strings.TrimPrefix(name, "/"))
		role := "arn:aws:sts::" + Account + ":assumed-role/spot-agent-test-instance/i-0123456789abcdef0"
		switch {
		case deny:
			ssmError(w, "AccessDeniedException", "User: "+role+" is not authorized to perform: ssm:GetParameter on resource: "+arn+" because no identity-based policy allows the ssm:GetParameter action")
		case decrypt:
			key := "arn:aws:kms:" + Region + ":" + Account + ":key/1234abcd-12ab-34cd-56ef-1234567890ab"
			ssmError(w, "AccessDeniedException", "User: "+role+" is not authorized to perform: kms:Decrypt on resource: "+key+
				" because no identity-based policy allows the kms:Decrypt action (Service: AWSKMS; Status Code: 400; Error Code: AccessDeniedException; Request ID: 0e6a1c9b-6f2d-4c1e-9d7a-000000000000; Proxy: null)")
		default:
			proxy.ServeHTTP(w, r)
		}
	}))
	f.URL = srv.URL
	t.Cleanup(srv.Close)
	return f
}

// Deny makes GetParameter of the parameter answer that the role may not call it.
func (f *SSMFake) Deny(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deny[name] = true
}

// DenyDecrypt makes GetParameter of the parameter answer that KMS would not
// decrypt it for the role.
func (f *SSMFake) DenyDecrypt(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.decrypt[name] = true
}

// Calls is how many GetParameter requests named the parameter.
func (f *SSMFake) Calls(name string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[name]
}

// parameterName is the name a GetParameter's Name stands for: itself, or an
// ARN's parameter with its leading slash (arn:...:parameter/a/b is /a/b).
func parameterName(n string) string {
	if _, rest, ok := strings.Cut(n, ":parameter/"); ok && strings.HasPrefix(n, "arn:") {
		return "/" + rest
	}
	return n
}

func ssmError(w http.ResponseWriter, code, msg string) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-Requestid", "0e6a1c9b-6f2d-4c1e-9d7a-000000000000")
	w.WriteHeader(http.StatusBadRequest)
	_ = json.NewEncoder(w).Encode(map[string]string{"__type": code, "message": msg})
}
