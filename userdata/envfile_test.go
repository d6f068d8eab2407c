package userdata

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// parseEnvFile reads an environment file as systemd's EnvironmentFile= does:
// a port of parse_env_file_internal (src/basic/env-file.c, systemd 252), state
// for state. Comments start with # or ; before a key; unquoted values lose
// leading and trailing whitespace and keep a backslash's next character;
// single quotes keep everything; double quotes unescape \", \\, \` and \$ and
// keep any other backslash; a backslash-newline continues the line; quoted
// and unquoted pieces of one value are concatenated.
func parseEnvFile(s string) map[string]string {
	const (
		preKey = iota
		key
		preValue
		value
		valueEscape
		singleQuote
		doubleQuote
		doubleQuoteEscape
		comment
		commentEscape
	)
	const newline, whitespace, comments, shellNeedEscape = "\n\r", " \t\n\r", "#;", "\"\\`$"
	in := func(set string, c byte) bool { return strings.IndexByte(set, c) >= 0 }
	out := map[string]string{}
	state := preKey
	var k, v []byte
	lastKeyWS, lastValueWS := -1, -1
	push := func(trimValue bool) {
		if trimValue && lastValueWS >= 0 {
			v = v[:lastValueWS]
		}
		if lastKeyWS >= 0 {
			k = k[:lastKeyWS]
		}
		out[string(k)] = string(v)
		k, v = nil, nil
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch state {
		case preKey:
			if in(comments, c) {
				state = comment
			} else if !in(whitespace, c) {
				state, lastKeyWS = key, -1
				k = append(k, c)
			}
		case key:
			switch {
			case in(newline, c):
				state, k = preKey, nil
			case c == '=':
				state, lastValueWS = preValue, -1
			default:
				if !in(whitespace, c) {
					lastKeyWS = -1
				} else if lastKeyWS < 0 {
					lastKeyWS = len(k)
				}
				k = append(k, c)
			}
		case preValue:
			switch {
			case in(newline, c):
				state = preKey
				push(false)
			case c == '\'':
				state = singleQuote
			case c == '"':
				state = doubleQuote
			case c == '\\':
				state = valueEscape
			case !in(whitespace, c):
				state = value
				v = append(v, c)
			}
		case value:
			switch {
			case in(newline, c):
				state = preKey
				push(true)
			case c == '\\':
				state, lastValueWS = valueEscape, -1
			default:
				if !in(whitespace, c) {
					lastValueWS = -1
				} else if lastValueWS < 0 {
					lastValueWS = len(v)
				}
				v = append(v, c)
			}
		case valueEscape:
			state = value
			if !in(newline, c) {
				v = append(v, c)
			}
		case singleQuote:
			if c == '\'' {
				state = preValue
			} else {
				v = append(v, c)
			}
		case doubleQuote:
			switch c {
			case '"':
				state = preValue
			case '\\':
				state = doubleQuoteEscape
			default:
				v = append(v, c)
			}
		case doubleQuoteEscape:
			state = doubleQuote
			if in(shellNeedEscape, c) {
				v = append(v, c)
			} else if c != '\n' {
				v = append(v, '\\', c)
			}
		case comment:
			if c == '\\' {
				state = commentEscape
			} else if in(newline, c) {
				state = preKey
			}
		case commentEscape:
			state = comment
		}
	}
	switch state {
	case preValue, value, valueEscape, singleQuote, doubleQuote, doubleQuoteEscape:
		push(state == value)
	}
	return out
}

// envFileSample exercises every state of the parser; the want map is what
// systemd 252 reads from it (checked against systemd itself below).
const envFileSample = "# comment\n; a comment continued by a backslash \\\nZ=swallowed by the comment\n" +
	"A=plain  value  \n" +
	"B = \"double \\\"q\\\" \\n \\\\ \\`\"\n" +
	"C='single \"as is\" \\n'\n" +
	"D=\"a\"'b'c\n" +
	"E=one\\\ntwo\n" +
	"F=\n" +
	"G=\"unterminated"

var envFileSampleWant = map[string]string{
	"A": "plain  value", "B": "double \"q\" \\n \\ `", "C": "single \"as is\" \\n",
	"D": "abc", "E": "onetwo", "F": "", "G": "unterminated",
}

func TestParseEnvFileFollowsSystemd(t *testing.T) {
	got := parseEnvFile(envFileSample)
	if len(got) != len(envFileSampleWant) {
		t.Errorf("parsed %q, want %q", got, envFileSampleWant)
	}
	for k, v := range envFileSampleWant {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
}

// tricky values for the agent's settings: shell commands with spaces, both
// quotes, variables, backslashes and comment characters.
var trickyValues = map[string]string{
	"SPOT_AGENT_ON_DRAIN_EXEC":      `systemctl stop nginx`,
	"SPOT_AGENT_ON_DRAIN_DONE_EXEC": `sh -c 'nginx -s quit; sleep 5' && logger -t app "drained: it's over"`,
	"SPOT_AGENT_NOTIFY_BODY":        `{"text": "${instance_id} leaves # now ; \\o/ \n"}`,
	"SPOT_AGENT_TAG_KEY":            `  leading and trailing spaces  `,
	"SPOT_AGENT_DRAIN_ON":           `a=b=c`,
	"SPOT_AGENT_LOG_LEVEL":          `ends with a backslash \`,
	"SPOT_AGENT_REGION":             `café ✓`,
	"SPOT_AGENT_DRY_RUN":            ``,
	"SPOT_AGENT_NOTIFY_WEBHOOK":     "$HOME ${X} $(id) `id` \\$HOME \\\\",
}

// envFileOf renders c and returns the agent's settings file as cloud-init
// writes it.
func envFileOf(t *testing.T, c Config) string {
	t.Helper()
	out, err := Render(c)
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		WriteFiles []struct{ Path, Content string } `yaml:"write_files"`
	}
	if err := yaml.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	for _, f := range cfg.WriteFiles {
		if f.Path == c.Distribution.envFile() {
			return f.Content
		}
	}
	t.Fatalf("no %s in:\n%s", c.Distribution.envFile(), out)
	return ""
}

// Every value reaches the agent intact through the settings file as systemd
// reads it for EnvironmentFile=.
func TestEnvFileReadsBackAsSystemdParsesIt(t *testing.T) {
	c := Config{Distribution: AL2023, Package: pinned("https://example.com/a.rpm"), Env: trickyValues}
	file := envFileOf(t, c)
	got := parseEnvFile(file)
	if len(got) != len(trickyValues) {
		t.Errorf("parsed %d settings, want %d:\n%s", len(got), len(trickyValues), file)
	}
	for k, v := range trickyValues {
		if got[k] != v {
			t.Errorf("%s read back as %q\nwant %q\nfile:\n%s", k, got[k], v, file)
		}
	}
}

// systemdEnv reads an environment file with systemd's own parser: the
// environment.d generator reads its files with the code EnvironmentFile= uses
// (then expands $VARIABLES, and drops empty values, so the files given here
// have neither) and prints the result, quoted the same way.
func systemdEnv(t *testing.T, file string) map[string]string {
	t.Helper()
	gen := "/usr/lib/systemd/user-environment-generators/30-systemd-environment-d-generator"
	if _, err := os.Stat(gen); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%v (apt-get install systemd); CI=true allows no skip", err)
		}
		t.Skipf("%v: apt-get install systemd", err)
	}
	home := t.TempDir()
	if err := os.MkdirAll(filepath.Join(home, "environment.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, "environment.d", "spot-agent.conf"), []byte(file), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(gen)
	cmd.Env = []string{"XDG_CONFIG_HOME=" + home}
	out, err := cmd.CombinedOutput()
	if err != nil || strings.Contains(string(out), "spot-agent.conf:") {
		t.Fatalf("%s: %v\n%s", gen, err, out)
	}
	return parseEnvFile(string(out))
}

func TestParseEnvFileAgreesWithSystemd(t *testing.T) {
	got := systemdEnv(t, strings.Replace(envFileSample, "F=\n", "", 1))
	for k, v := range envFileSampleWant {
		if k != "F" && got[k] != v {
			t.Errorf("systemd read %s as %q, the port as %q", k, got[k], v)
		}
	}
	if _, ok := got["Z"]; ok {
		t.Error("systemd read Z: the comment did not continue")
	}
}

func TestEnvFileReadsBackThroughSystemdsOwnParser(t *testing.T) {
	values := map[string]string{}
	for k, v := range trickyValues {
		if v != "" && !strings.Contains(v, "$") {
			values[k] = v
		}
	}
	file := envFileOf(t, Config{Distribution: Debian, Package: pinned("https://example.com/a.deb"), Env: values})
	got := systemdEnv(t, file)
	for k, v := range values {
		if got[k] != v {
			t.Errorf("systemd read %s as %q\nwant %q\nfile:\n%s", k, got[k], v, file)
		}
	}
}
