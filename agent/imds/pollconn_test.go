package imds

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
)

func TestReadPollResponse(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		status int
		body   string
		keep   bool
		err    error
	}{
		{name: "a 404 with a sized body keeps the connection", in: "HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\nContent-Length: 9\r\n\r\nnot found", status: 404, body: "not found", keep: true},
		{name: "a 200 with a document", in: "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nInService", status: 200, body: "InService", keep: true},
		{name: "a 401 with no body", in: "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n", status: 401, keep: true},
		{name: "a status line without a reason", in: "HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n", status: 404, keep: true},
		{name: "header names in any case and padded values", in: "HTTP/1.1 200 OK\r\ncontent-length:\t 2 \r\n\r\nok", status: 200, body: "ok", keep: true},
		{name: "Connection: close closes after the body", in: "HTTP/1.1 404 Not Found\r\nConnection: keep-alive, Close\r\nContent-Length: 0\r\n\r\n", status: 404},
		{name: "another status is for the SDK", in: "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n", status: 503, err: errOtherStatus},
		{name: "a redirect is for the SDK", in: "HTTP/1.1 301 Moved Permanently\r\nLocation: /x\r\nContent-Length: 0\r\n\r\n", status: 301, err: errOtherStatus},
		{name: "a chunked body is for net/http", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", err: errUnexpected},
		{name: "a body without a length is for net/http", in: "HTTP/1.1 200 OK\r\n\r\nok", err: errUnexpected},
		{name: "two lengths are for net/http", in: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok", err: errUnexpected},
		{name: "a signed length is for net/http", in: "HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok", err: errUnexpected},
		{name: "a length beyond the bound is for net/http", in: "HTTP/1.1 200 OK\r\nContent-Length: 70000\r\n\r\n", err: errUnexpected},
		{name: "a body cut short is unexpected", in: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nok", err: errUnexpected},
		{name: "HTTP/1.0 is for net/http", in: "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", err: errUnexpected},
		{name: "bare line feeds are for net/http", in: "HTTP/1.1 200 OK\nContent-Length: 2\n\nok", err: errUnexpected},
		{name: "a folded header line is for net/http", in: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n folded\r\n\r\nok", err: errUnexpected},
		{name: "a header name with a space is malformed", in: "HTTP/1.1 200 OK\r\nContent Length: 2\r\n\r\nok", err: errUnexpected},
		{name: "a control character in a value is malformed", in: "HTTP/1.1 200 OK\r\nX-A: a\x01b\r\nContent-Length: 2\r\n\r\nok", err: errUnexpected},
		{name: "a status that is not three digits is malformed", in: "HTTP/1.1 20x OK\r\nContent-Length: 2\r\n\r\nok", err: errUnexpected},
		{name: "a status glued to its reason is malformed", in: "HTTP/1.1 200OK\r\nContent-Length: 2\r\n\r\nok", err: errUnexpected},
		{name: "an empty answer is unexpected", in: "", err: errUnexpected},
		{name: "headers beyond the bound are for net/http", in: "HTTP/1.1 200 OK\r\nX-A: " + strings.Repeat("a", maxPollHeader) + "\r\nContent-Length: 2\r\n\r\nok", err: errUnexpected},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body, keep, err := readPollResponse(bufio.NewReader(strings.NewReader(tt.in)), nil)
			if !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if err == errOtherStatus && status != tt.status {
				t.Errorf("status %d, want %d", status, tt.status)
			}
			if err != nil {
				return
			}
			if status != tt.status || string(body) != tt.body || keep != tt.keep {
				t.Errorf("got %d %q keep-alive %v, want %d %q %v", status, body, keep, tt.status, tt.body, tt.keep)
			}
		})
	}
}

// FuzzReadPollResponse holds readPollResponse to net/http's reading of the
// same bytes: whatever answer it accepts, net/http reads as the same status
// and body. (It may refuse more: net/http then reads the answer itself.)
func FuzzReadPollResponse(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\nContent-Length: 9\r\n\r\nnot found",
		"HTTP/1.1 200 OK\r\nContent-Length: 57\r\n\r\n{\"action\": \"terminate\", \"time\": \"2030-01-01T00:00:00Z\"}\n",
		"HTTP/1.1 401 Unauthorized\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
		"HTTP/1.1 200 OK\r\ncontent-length: 02\r\nX-Y:\t z \r\n\r\nok",
	} {
		f.Add([]byte(s))
	}
	get, _ := http.NewRequest(http.MethodGet, "http://169.254.169.254/latest/meta-data/spot/instance-action", nil)
	f.Fuzz(func(t *testing.T, in []byte) {
		status, body, _, err := readPollResponse(bufio.NewReader(bytes.NewReader(in)), nil)
		if err != nil {
			return
		}
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(in)), get)
		if err != nil {
			t.Fatalf("accepted %q (status %d), which net/http refuses: %v", in, status, err)
		}
		want, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("accepted %q, whose body net/http cannot read: %v", in, err)
		}
		if resp.StatusCode != status || !bytes.Equal(want, body) {
			t.Fatalf("%q: read %d %q, net/http %d %q", in, status, body, resp.StatusCode, want)
		}
	})
}
