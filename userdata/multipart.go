package userdata

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// MaxSize is EC2's limit on user-data, in bytes, before base64 encoding.
const MaxSize = 16384

// MergeType is the Merge-Type header of both cloud-config parts of a combined
// user-data. cloud-init merges the cloud-config parts of a multipart document
// into one; its default, dict(replace)+list()+str(), would let the later
// part's runcmd and write_files replace the earlier part's. This appends lists
// (both parts' runcmd and write_files survive, the earlier part's first) and
// keeps the earlier part's value of any other key both parts set.
const MergeType = "list(append)+dict(no_replace,recurse_list)+str()"

// The file names of the parts. cloud-init's scripts-user runs the scripts of
// /var/lib/cloud/instance/scripts in name order: the user's script is named to
// run before "runcmd", the script that holds both parts' runcmd entries (the
// agent's install last).
const (
	userConfigName = "00-user-data.cfg"
	userScriptName = "00-user-data.sh"
	agentPartName  = "spot-agent.cfg"
)

const cloudConfigHeader = "#cloud-config"

// UserDataKind tells what a user's own user-data is.
type UserDataKind string

// The kinds of user-data CheckUserData tells apart.
const (
	CloudConfig UserDataKind = "text/cloud-config"  // starts with the line #cloud-config
	ShellScript UserDataKind = "text/x-shellscript" // starts with #!
)

// CheckUserData checks a user's own user-data, to be combined with the
// agent's: UTF-8 text (not gzip), either a #cloud-config document whose YAML
// is a mapping, or a script starting with #!. It returns its kind.
func CheckUserData(b []byte) (UserDataKind, error) {
	switch {
	case len(bytes.TrimSpace(b)) == 0:
		return "", errors.New("is empty: give a script starting with #! or a #cloud-config document")
	case len(b) >= 2 && b[0] == 0x1f && b[1] == 0x8b:
		return "", errors.New("is gzip-compressed: give it uncompressed (it is combined with the agent's cloud-config into one MIME document)")
	}
	if !utf8.Valid(b) {
		i := invalidUTF8(b)
		return "", fmt.Errorf("is not UTF-8 text (byte 0x%02x at offset %d)", b[i], i)
	}
	first, _, _ := strings.Cut(string(b), "\n")
	switch {
	case strings.HasPrefix(first, "#!"):
		if strings.HasSuffix(first, "\r") {
			return "", errors.New("has Windows line endings: the kernel would look for an interpreter whose name ends in \\r; convert it to LF line endings")
		}
		return ShellScript, nil
	case strings.TrimRight(first, " \t\r") == cloudConfigHeader:
		var doc yaml.Node
		if err := yaml.Unmarshal(b, &doc); err != nil {
			return "", fmt.Errorf("is #cloud-config but not valid YAML: %v", err)
		}
		if len(doc.Content) == 0 {
			return "", errors.New("is #cloud-config with nothing after that line: cloud-init would ignore it")
		}
		if n := doc.Content[0]; n.Kind != yaml.MappingNode {
			return "", fmt.Errorf("is #cloud-config but its YAML is a %s, not a mapping of cloud-config keys (packages:, write_files:, runcmd:, ...)", nodeKind(n))
		}
		// Decoding catches a key given twice, of which cloud-init would
		// silently keep the last.
		var m map[string]any
		if err := doc.Decode(&m); err != nil {
			return "", fmt.Errorf("is #cloud-config but not valid YAML: %v", strings.TrimPrefix(err.Error(), "yaml: unmarshal errors:\n  "))
		}
		return CloudConfig, nil
	}
	if len(first) > 40 {
		first = first[:40] + "…"
	}
	return "", fmt.Errorf("starts with %q: it must start with the line #cloud-config (a cloud-config document) or with #! (a script)", first)
}

func invalidUTF8(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return 0
}

func nodeKind(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "list"
	case yaml.ScalarNode:
		return "scalar"
	case yaml.AliasNode:
		return "alias"
	}
	return "document"
}

// part is one part of a multipart user-data.
type part struct {
	kind     UserDataKind
	filename string
	body     []byte
}

// combine returns the MIME multipart user-data of the user's part, then the
// agent's cloud-config. The user's part comes first: its write_files, packages
// and runcmd entries (or its script) run before the agent is installed, so it
// can prepare the image (the AWS CLI an s3:// package needs on Debian, a
// proxy, the application the agent will check), and the agent's write_files
// entry, its settings file, comes last and wins over any the user wrote.
//
// The output is the same for the same input (the boundary is derived from the
// parts), so that an unchanged user-data makes no new launch template version.
func combine(agent, user []byte, kind UserDataKind) ([]byte, error) {
	userPart := part{kind: kind, filename: userConfigName, body: user}
	if kind == ShellScript {
		userPart.filename = userScriptName
	}
	parts := []part{userPart, {kind: CloudConfig, filename: agentPartName, body: agent}}

	h := sha256.New()
	for _, p := range parts {
		h.Write(p.body)
	}
	boundary := "spot-agent-" + hex.EncodeToString(h.Sum(nil)[:16])
	var b bytes.Buffer
	fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=\"%s\"\nMIME-Version: 1.0\n", boundary)
	for _, p := range parts {
		body, encoding := encodeBody(p.body)
		if bytes.Contains(body, []byte(boundary)) {
			return nil, fmt.Errorf("the %s part contains the MIME boundary %s", p.filename, boundary)
		}
		fmt.Fprintf(&b, "\n--%s\n", boundary)
		fmt.Fprintf(&b, "Content-Type: %s; charset=\"utf-8\"\n", p.kind)
		fmt.Fprintf(&b, "Content-Transfer-Encoding: %s\n", encoding)
		fmt.Fprintf(&b, "Content-Disposition: attachment; filename=\"%s\"\n", p.filename)
		if p.kind == CloudConfig {
			fmt.Fprintf(&b, "Merge-Type: %s\n", MergeType)
		}
		b.WriteString("\n")
		b.Write(body)
	}
	fmt.Fprintf(&b, "\n--%s--\n", boundary)
	return b.Bytes(), nil
}

// encodeBody returns a part's body as it goes into the MIME document: as is
// (7bit) when it is ASCII with lines within MIME's 998 characters, else base64
// (cloud-init's parser would garble non-ASCII text sent as 8bit). The body
// ends with a newline, so that the one before the boundary, which belongs to
// the boundary, does not take the body's own.
func encodeBody(body []byte) ([]byte, string) {
	ascii := true
	for _, c := range body {
		if c >= 0x80 || (c < 0x20 && c != '\n' && c != '\t') || c == 0x7f {
			ascii = false
			break
		}
	}
	for _, l := range bytes.Split(body, []byte("\n")) {
		if len(l) > 998 {
			ascii = false
		}
	}
	if ascii {
		if !bytes.HasSuffix(body, []byte("\n")) {
			body = append(append([]byte(nil), body...), '\n')
		}
		return body, "7bit"
	}
	enc := base64.StdEncoding.EncodeToString(body)
	var out bytes.Buffer
	for len(enc) > 76 {
		out.WriteString(enc[:76] + "\n")
		enc = enc[76:]
	}
	out.WriteString(enc + "\n")
	return out.Bytes(), "base64"
}
