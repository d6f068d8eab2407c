package testbed

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// IMDS is an httptest server that speaks the IMDSv2 wire protocol (PUT a token,
// GET with it, 401 for a missing or revoked one), for what AEMM cannot do:
// arbitrary instance tags, and faults (500 bursts, revoked tokens, slowness).
type IMDS struct {
	URL string
	srv *httptest.Server

	mu       sync.Mutex
	docs     map[string]string // "meta-data/..." or "dynamic/..." → body
	tags     map[string]string // nil: instance tags disabled
	tokens   map[string]bool
	failNext int
	failCode int
	delay    time.Duration
	counts   map[string]int
	requests []IMDSRequest
}

// IMDSRequest is one request the fake IMDS received, in order.
type IMDSRequest struct {
	Method string
	Path   string // as sent, e.g. /latest/meta-data/spot/instance-action
	Header http.Header
}

// NewIMDS starts a fake IMDS with an identity document for instanceID.
func NewIMDS(t testing.TB, instanceID string) *IMDS {
	m := &IMDS{docs: map[string]string{}, tokens: map[string]bool{}, counts: map[string]int{}}
	m.docs["dynamic/instance-identity/document"] = fmt.Sprintf(`{
  "accountId" : "123456789012", "architecture" : "x86_64", "availabilityZone" : "%sa",
  "imageId" : "ami-0123456789abcdef0", "instanceId" : "%s", "instanceType" : "c5.large",
  "pendingTime" : "2026-01-01T00:00:00Z", "privateIp" : "10.0.0.10", "region" : "%s", "version" : "2017-09-30"
}`, Region, instanceID, Region)
	m.srv = httptest.NewServer(http.HandlerFunc(m.serve))
	m.URL = m.srv.URL
	t.Cleanup(m.srv.Close)
	return m
}

// Set serves body at path (relative to /latest/, e.g. "meta-data/spot/instance-action").
func (m *IMDS) Set(path, body string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.docs[path] = body
}

// Delete makes path answer 404.
func (m *IMDS) Delete(path string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.docs, path)
}

// SetTags enables instance tags in metadata with these tags (nil disables them).
func (m *IMDS) SetTags(tags map[string]string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tags = tags
}

// Fail makes the next n metadata GETs answer code.
func (m *IMDS) Fail(n, code int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.failNext, m.failCode = n, code
}

// RevokeTokens makes every token issued so far answer 401, as IMDS does when a
// token expires or the instance's metadata options change.
func (m *IMDS) RevokeTokens() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tokens = map[string]bool{}
}

// SetDelay delays every answer by d.
func (m *IMDS) SetDelay(d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.delay = d
}

// Count returns how many GETs path received (tokens excluded).
func (m *IMDS) Count(path string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.counts[path]
}

// Requests returns every request received so far, token requests included.
func (m *IMDS) Requests() []IMDSRequest {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.requests)
}

func (m *IMDS) serve(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	delay := m.delay
	m.requests = append(m.requests, IMDSRequest{Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone()})
	m.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	if r.URL.Path == "/latest/api/token" {
		if r.Method != http.MethodPut || r.Header.Get("X-aws-ec2-metadata-token-ttl-seconds") == "" {
			http.Error(w, "bad token request", http.StatusBadRequest)
			return
		}
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		tok := hex.EncodeToString(b)
		m.mu.Lock()
		m.tokens[tok] = true
		m.mu.Unlock()
		w.Header().Set("X-aws-ec2-metadata-token-ttl-seconds", r.Header.Get("X-aws-ec2-metadata-token-ttl-seconds"))
		_, _ = w.Write([]byte(tok))
		return
	}
	path := strings.TrimPrefix(r.URL.Path, "/latest/")
	m.mu.Lock()
	defer m.mu.Unlock()
	m.counts[path]++
	if r.Method != http.MethodGet {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if !m.tokens[r.Header.Get("X-aws-ec2-metadata-token")] {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if m.failNext > 0 {
		m.failNext--
		w.WriteHeader(m.failCode)
		return
	}
	if body, ok := m.docs[path]; ok {
		_, _ = w.Write([]byte(body))
		return
	}
	if m.tags != nil {
		if path == "meta-data/tags/instance" {
			keys := make([]string, 0, len(m.tags))
			for k := range m.tags {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			_, _ = w.Write([]byte(strings.Join(keys, "\n")))
			return
		}
		if k, ok := strings.CutPrefix(path, "meta-data/tags/instance/"); ok {
			if v, ok := m.tags[k]; ok {
				_, _ = w.Write([]byte(v))
				return
			}
		}
	}
	http.NotFound(w, r)
}
