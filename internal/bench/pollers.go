package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/spot-agent/spot-agent/agent/daemon"
	"github.com/spot-agent/spot-agent/agent/watch"
)

// The footprint's reference pollers: two Go programs that read the agent's
// metadata paths at the agent's cadence (its default intervals, less the same
// jitter) and do nothing else, run beside it in the same window. "raw" keeps
// one TCP connection and writes each request from bytes prepared once: the
// floor for a Go program waking at that rate. "net/http" is the plain
// standard-library client a Go programmer would write. Each runs as this
// program again (-poll), so that its CPU time is its own.

// pollerKinds are the reference pollers, in the order of the report.
var pollerKinds = []string{"raw", "net/http"}

// agentSchedule is the agent's cadence at its defaults: every path it polls,
// how often, and the jitter taken off each interval.
func agentSchedule() ([]watch.PathInterval, float64) {
	wc := daemon.DefaultConfig().Watch()
	return wc.Intervals(), wc.Jitter
}

// pollMain is a reference poller's body: kind is "raw" or "net/http"; it reads
// the agent's paths from the IMDS at base until killed.
func pollMain(kind, base string) int {
	u, err := url.Parse(base)
	if err != nil || u.Host == "" {
		fmt.Fprintf(os.Stderr, "poll: %q is not an IMDS URL\n", base)
		return 2
	}
	var read func(path string) error
	switch kind {
	case "raw":
		read = (&rawPoller{addr: u.Host}).read
	case "net/http":
		read = (&httpPoller{base: base, c: &http.Client{Timeout: 2 * time.Second}}).read
	default:
		fmt.Fprintf(os.Stderr, "poll: kind %q is neither raw nor net/http\n", kind)
		return 2
	}
	paths, jitter := agentSchedule()
	next := make([]time.Time, len(paths))
	t := time.NewTimer(0)
	for {
		<-t.C
		now := time.Now()
		soonest := now.Add(time.Hour)
		for i, p := range paths {
			if !now.Before(next[i]) {
				if err := read(p.Path); err != nil {
					fmt.Fprintf(os.Stderr, "poll %s: %v\n", kind, err)
				}
				next[i] = now.Add(p.Every - time.Duration(rand.Float64()*jitter*float64(p.Every)))
			}
			if next[i].Before(soonest) {
				soonest = next[i]
			}
		}
		t.Reset(time.Until(soonest))
	}
}

// httpPoller reads through net/http as a plain program would: a request per
// read, the token in a header, the body drained so the connection is reused.
type httpPoller struct {
	base string
	c    *http.Client
	tok  string
}

func (p *httpPoller) read(path string) error {
	if p.tok == "" {
		req, err := http.NewRequest(http.MethodPut, p.base+"/latest/api/token", nil)
		if err != nil {
			return err
		}
		req.Header.Set("X-aws-ec2-metadata-token-ttl-seconds", "21600")
		resp, err := p.c.Do(req)
		if err != nil {
			return err
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			return fmt.Errorf("token: %d %v", resp.StatusCode, err)
		}
		p.tok = string(b)
	}
	req, err := http.NewRequest(http.MethodGet, p.base+"/latest/meta-data/"+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("X-aws-ec2-metadata-token", p.tok)
	resp, err := p.c.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK, http.StatusNotFound:
		return nil
	case http.StatusUnauthorized:
		p.tok = ""
	}
	return fmt.Errorf("%s: %s", path, resp.Status)
}

// rawPoller writes HTTP/1.1 requests on one kept-alive connection and reads
// the status line, Content-Length and body: nothing else. Bench code only.
type rawPoller struct {
	addr string
	c    net.Conn
	r    *bufio.Reader
	tok  string
	reqs map[string][]byte // path → the whole request, token included
}

func (p *rawPoller) read(path string) error {
	if p.tok == "" {
		tok, err := p.roundTrip([]byte("PUT /latest/api/token HTTP/1.1\r\nHost: " + p.addr + "\r\nX-aws-ec2-metadata-token-ttl-seconds: 21600\r\nContent-Length: 0\r\n\r\n"))
		if err != nil {
			return fmt.Errorf("token: %w", err)
		}
		p.tok, p.reqs = string(tok), map[string][]byte{}
	}
	req, ok := p.reqs[path]
	if !ok {
		req = []byte("GET /latest/meta-data/" + path + " HTTP/1.1\r\nHost: " + p.addr + "\r\nX-aws-ec2-metadata-token: " + p.tok + "\r\n\r\n")
		p.reqs[path] = req
	}
	_, err := p.roundTrip(req)
	var status statusError
	if errors.As(err, &status) && status == http.StatusNotFound {
		return nil
	}
	if errors.As(err, &status) && status == http.StatusUnauthorized {
		p.tok = ""
	}
	return err
}

type statusError int

func (s statusError) Error() string { return "HTTP " + strconv.Itoa(int(s)) }

// roundTrip writes req and returns a 200's body; any other status is a statusError.
func (p *rawPoller) roundTrip(req []byte) ([]byte, error) {
	if p.c == nil {
		c, err := net.DialTimeout("tcp", p.addr, time.Second)
		if err != nil {
			return nil, err
		}
		p.c, p.r = c, bufio.NewReader(c)
	}
	body, err := p.exchange(req)
	if err != nil && !errors.As(err, new(statusError)) {
		p.c.Close()
		p.c = nil
	}
	return body, err
}

func (p *rawPoller) exchange(req []byte) ([]byte, error) {
	_ = p.c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := p.c.Write(req); err != nil {
		return nil, err
	}
	line, err := p.r.ReadSlice('\n')
	if err != nil {
		return nil, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.1 ")) {
		return nil, fmt.Errorf("status line %q", line)
	}
	code, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return nil, fmt.Errorf("status line %q", line)
	}
	length := -1
	for {
		h, err := p.r.ReadSlice('\n')
		if err != nil {
			return nil, err
		}
		if len(h) <= 2 {
			break
		}
		if k, v, ok := bytes.Cut(h, []byte(":")); ok && bytes.EqualFold(k, []byte("Content-Length")) {
			if length, err = strconv.Atoi(string(bytes.TrimSpace(v))); err != nil {
				return nil, fmt.Errorf("content-length %q", v)
			}
		}
	}
	if length < 0 {
		return nil, errors.New("no Content-Length: the raw poller reads only sized bodies")
	}
	body := make([]byte, length)
	if _, err := io.ReadFull(p.r, body); err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, statusError(code)
	}
	return body, nil
}
