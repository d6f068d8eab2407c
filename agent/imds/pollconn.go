package imds

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// pollConn is the watcher's own connection to IMDS: one kept-alive HTTP/1.1
// connection on which a poll writes a request made once per session and reads
// the status line, the three headers it needs and a sized body.
//
// It exists for a need the benchmark shows: idle, the agent's CPU per
// metadata read is held to at most 1.5 times a Go poller's on a raw
// connection (internal/bench, footprint). Through net/http the agent stayed
// at 1.35 to 1.65 times on a shared machine: each read hands the request to
// the connection's writer goroutine and the answer back from its reader
// (perf: both loops together cost more than the poller's whole read), and
// leaves about 4 KB of garbage, which kept the heap half a MiB higher between
// collections. Here the watcher's own goroutine writes and reads, and a read
// allocates only its context hook and a 200's body.
//
// It serves only what it expects: a 200, 401 or 404 with a Content-Length.
// Anything else (another status, a chunked or unsized body, a broken
// connection, a malformed answer) closes the connection, and the read, like
// one that finds the connection busy with the other tier's, goes to net/http,
// which handles all of HTTP. The answer's reader is fuzzed against net/http's
// (FuzzReadPollResponse).
type pollConn struct {
	addr string // host:port of conn
	mu   sync.Mutex
	conn net.Conn
	br   *bufio.Reader
	body []byte // the last body read; reused
}

// errUnexpected is any answer pollConn does not serve: the read goes to
// net/http. errOtherStatus is a well-formed status other than 200, 401 or
// 404: net/http would get it too, and the read goes to the SDK.
var (
	errUnexpected  = errors.New("imds poll connection: unexpected answer")
	errOtherStatus = errors.New("imds poll connection: a status for the SDK")
)

// maxPollHeader and maxPollBody bound what pollConn reads; more is unexpected.
const (
	maxPollHeader = 8 << 10
	maxPollBody   = 64 << 10
)

// aLongTimeAgo is a deadline that interrupts a read at once.
var aLongTimeAgo = time.Unix(1, 0)

// get writes req to addr and reads the answer, by deadline. ok is false when
// the connection is busy with the other tier's read; err is errOtherStatus
// (with the status), errUnexpected for anything else it does not serve, or
// ctx's error when ctx ended first. A 200's body is the caller's; another's is
// only valid until the next get.
func (p *pollConn) get(ctx context.Context, addr string, req []byte, deadline time.Time) (status int, body []byte, ok bool, err error) {
	if !p.mu.TryLock() {
		return 0, nil, false, nil
	}
	defer p.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return 0, nil, true, err
	}
	if p.addr != addr {
		p.close()
		p.addr = addr
	}
	if p.conn == nil {
		d := net.Dialer{Deadline: deadline}
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return 0, nil, true, p.fail(ctx)
		}
		p.conn = c
		if p.br == nil {
			p.br = bufio.NewReaderSize(c, 4096)
		} else {
			p.br.Reset(c)
		}
	}
	conn := p.conn
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(aLongTimeAgo) })
	defer stop()
	if err := conn.SetDeadline(deadline); err != nil {
		return 0, nil, true, p.fail(ctx)
	}
	if _, err := conn.Write(req); err != nil {
		return 0, nil, true, p.fail(ctx)
	}
	status, body, keep, err := readPollResponse(p.br, p.body[:0])
	if err == errOtherStatus {
		p.close() // its body is not read
		return status, nil, true, err
	}
	if err != nil {
		return 0, nil, true, p.fail(ctx)
	}
	p.body = body
	if !keep || p.br.Buffered() > 0 { // more than one answer: never read a stale one
		p.close()
	}
	if status == http.StatusOK {
		body = bytes.Clone(body) // the caller's: p.body is the next read's
	}
	return status, body, true, nil
}

// fail closes the connection after an error: ctx's, or errUnexpected.
func (p *pollConn) fail(ctx context.Context) error {
	p.close()
	if err := ctx.Err(); err != nil {
		return err
	}
	return errUnexpected
}

func (p *pollConn) close() {
	if p.conn != nil {
		_ = p.conn.Close()
		p.conn = nil
	}
}

// readPollResponse reads one HTTP/1.1 answer to a GET from br: the status,
// the body (appended to buf) and whether the connection stays open. It
// accepts only a status of 200, 401 or 404 with a Content-Length of at most
// maxPollBody, well-formed header lines (as net/http's reader checks them) and
// no Transfer-Encoding. Another status is errOtherStatus, read no further;
// anything else is errUnexpected.
func readPollResponse(br *bufio.Reader, buf []byte) (status int, body []byte, keepAlive bool, err error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return 0, nil, false, errUnexpected
	}
	// HTTP/1.1 NNN[ reason]\r\n
	if len(line) < 14 || !bytes.HasPrefix(line, []byte("HTTP/1.1 ")) || !bytes.HasSuffix(line, []byte("\r\n")) {
		return 0, nil, false, errUnexpected
	}
	code, rest := line[9:12], line[12:len(line)-2]
	if len(rest) > 0 && rest[0] != ' ' {
		return 0, nil, false, errUnexpected
	}
	for _, b := range code {
		if b < '0' || b > '9' {
			return 0, nil, false, errUnexpected
		}
		status = status*10 + int(b-'0')
	}
	if status != 200 && status != 401 && status != 404 {
		return status, nil, false, errOtherStatus
	}
	length, keepAlive, seen := -1, true, len(line)
	for {
		line, err := br.ReadSlice('\n')
		if seen += len(line); err != nil || seen > maxPollHeader || !bytes.HasSuffix(line, []byte("\r\n")) {
			return 0, nil, false, errUnexpected
		}
		line = line[:len(line)-2]
		if len(line) == 0 {
			break
		}
		name, value, found := bytes.Cut(line, []byte(":"))
		if !found || !validFieldName(name) || !validFieldValue(value) {
			return 0, nil, false, errUnexpected
		}
		value = bytes.Trim(value, " \t")
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			n, err := strconv.ParseUint(string(value), 10, 63)
			if length >= 0 || err != nil || len(value) == 0 || value[0] < '0' || value[0] > '9' || n > maxPollBody {
				return 0, nil, false, errUnexpected
			}
			length = int(n)
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			return 0, nil, false, errUnexpected
		case bytes.EqualFold(name, []byte("Connection")):
			if hasToken(value, "close") {
				keepAlive = false
			}
		}
	}
	if length < 0 {
		return 0, nil, false, errUnexpected
	}
	if cap(buf) < length {
		buf = make([]byte, length)
	}
	body = buf[:length]
	if _, err := io.ReadFull(br, body); err != nil {
		return 0, nil, false, errUnexpected
	}
	return status, body, keepAlive, nil
}

// hasToken reports whether the comma-separated list v holds token, in any case.
func hasToken(v []byte, token string) bool {
	for len(v) > 0 {
		var item []byte
		item, v, _ = bytes.Cut(v, []byte(","))
		if bytes.EqualFold(bytes.Trim(item, " \t"), []byte(token)) {
			return true
		}
	}
	return false
}

// validFieldName is an RFC 9110 token, as net/http's header reader requires.
func validFieldName(b []byte) bool {
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

// validFieldValue has no control characters but tab, as net/http's header
// reader requires.
func validFieldValue(b []byte) bool {
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
		t[c], t[c-'a'+'A'] = true, true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()
