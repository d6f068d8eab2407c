package web

import (
	"bytes"
	"net/http"
	"syscall"
)

// errTooManyFiles is the accept error that is worth waiting out.
var errTooManyFiles = syscall.EMFILE

// request is what the traffic loop needs of a request head. method and path
// point into the connection's buffer and are valid until the next read.
type request struct {
	method  []byte
	path    []byte
	close   bool // the client asked for Connection: close (or HTTP/1.0 without keep-alive)
	hasBody bool // Content-Length > 0 or Transfer-Encoding: the body is not read, so the connection closes
	size    int  // bytes of the head, final CRLF CRLF included
}

var (
	crlf     = []byte("\r\n")
	headTerm = []byte("\r\n\r\n")
)

// headEnd returns the length of the request head at the start of b, final
// CRLF CRLF included, or 0 if it is not complete yet.
func headEnd(b []byte) int {
	if i := bytes.Index(b, headTerm); i >= 0 {
		return i + len(headTerm)
	}
	return 0
}

func hasCompleteHead(b []byte) bool { return headEnd(b) > 0 }

// parseRequest parses a complete head (RFC 9112): the request line and the
// few headers that matter here. It returns 400 for anything malformed.
func parseRequest(head []byte) (request, int) {
	var req request
	const bad = http.StatusBadRequest
	line, rest, _ := bytes.Cut(head, crlf)
	method, after, ok := bytes.Cut(line, []byte{' '})
	if !ok || len(method) > 16 || !isToken(method) {
		return req, bad
	}
	target, version, ok := bytes.Cut(after, []byte{' '})
	if !ok || len(target) == 0 || !visible(target) {
		return req, bad
	}
	http10 := false
	switch string(version) {
	case "HTTP/1.1":
	case "HTTP/1.0":
		http10 = true
	default:
		return req, bad
	}
	req.method = method
	switch {
	case target[0] == '/':
		req.path = target
	case bytes.HasPrefix(target, []byte("http://")) || bytes.HasPrefix(target, []byte("https://")):
		// absolute-form: the path starts at the first slash after the authority.
		authority := target[bytes.Index(target, []byte("//"))+2:]
		if i := bytes.IndexByte(authority, '/'); i >= 0 {
			req.path = authority[i:]
		} else {
			req.path = []byte("/")
		}
	case string(target) == "*":
		req.path = target
	default:
		return req, bad
	}
	if i := bytes.IndexAny(req.path, "?#"); i >= 0 {
		req.path = req.path[:i]
	}

	hosts, keepAlive, closeTok, chunked := 0, false, false, false
	contentLength := int64(-1)
	for len(rest) > 0 {
		line, rest, _ = bytes.Cut(rest, crlf)
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			return req, bad // obsolete line folding
		}
		name, value, ok := bytes.Cut(line, []byte{':'})
		if !ok || !isToken(name) {
			return req, bad
		}
		value = bytes.Trim(value, " \t")
		if !fieldValue(value) {
			return req, bad
		}
		switch {
		case bytes.EqualFold(name, []byte("Host")):
			hosts++
		case bytes.EqualFold(name, []byte("Connection")):
			for _, tok := range bytes.Split(value, []byte{','}) {
				tok = bytes.Trim(tok, " \t")
				switch {
				case bytes.EqualFold(tok, []byte("close")):
					closeTok = true
				case bytes.EqualFold(tok, []byte("keep-alive")):
					keepAlive = true
				}
			}
		case bytes.EqualFold(name, []byte("Content-Length")):
			n, ok := parseLength(value)
			if !ok || (contentLength >= 0 && n != contentLength) {
				return req, bad
			}
			contentLength = n
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = true
		}
	}
	if hosts > 1 || (!http10 && hosts == 0) {
		return req, bad // RFC 9112 section 3.2: exactly one Host in HTTP/1.1
	}
	if chunked && contentLength >= 0 {
		return req, bad // both framings at once: a smuggling attempt
	}
	req.hasBody = chunked || contentLength > 0
	req.close = closeTok || (http10 && !keepAlive)
	return req, 0
}

func parseLength(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// isToken reports whether b is a non-empty RFC 9110 token.
func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c >= 0x80 || !tokenChar[c] {
			return false
		}
	}
	return true
}

// visible reports whether b has only visible ASCII (a request target).
func visible(b []byte) bool {
	for _, c := range b {
		if c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}

// fieldValue reports whether b is a valid field value: no control characters but tab.
func fieldValue(b []byte) bool {
	for _, c := range b {
		if (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

var tokenChar = func() (t [128]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()
