package userdata

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/spot-agent/spot-agent/internal/testbed"
)

// userCloudConfig is a user's own cloud-config: an application on port 8080.
const userCloudConfig = `#cloud-config
# The application: nginx on port 8080.
packages:
  - nginx
write_files:
  - path: /etc/nginx/conf.d/app.conf
    content: |
      server { listen 8080; location / { return 200 "app\n"; } }
runcmd:
  - [systemctl, enable, --now, nginx]
  - echo "app installed" > /var/tmp/app-installed
`

// userScript is a user's own user-data script.
const userScript = `#!/bin/sh
set -eu
apt-get install -y nginx
systemctl enable --now nginx
`

// combinedConfigs are user-data with the user's own part, one of each kind.
var combinedConfigs = map[string]Config{
	"al2023-with-cloud-config": {
		Distribution: AL2023,
		Package:      pinned("https://downloads.example.com/spot-agent/spot-agent-1.2.3-1.x86_64.rpm"),
		Env: map[string]string{
			"SPOT_AGENT_LISTEN":         ":8081",
			"SPOT_AGENT_HELLO":          "false",
			"SPOT_AGENT_APP_HEALTH_URL": "http://127.0.0.1:8080/",
			"SPOT_AGENT_ON_DRAIN_EXEC":  `systemctl stop nginx && logger -t app "drained: it's over"`,
		},
		UserData: []byte(userCloudConfig),
	},
	"ubuntu-with-script": {
		Distribution: Ubuntu,
		Package:      pinned("s3://my-artifacts/spot-agent_1.2.3_amd64.deb"),
		UserData:     []byte(userScript),
	},
}

func TestCombinedUserDataMatchesGoldenFiles(t *testing.T) {
	for name, c := range combinedConfigs {
		t.Run(name, func(t *testing.T) {
			got, err := Render(c)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: %d bytes (the user's part %d)", name, len(got), len(c.UserData))
			checkGolden(t, filepath.Join("testdata", name+".mime"), got)
			again, _ := Render(c)
			if !bytes.Equal(got, again) {
				t.Error("two renderings of the same config differ: a re-run would make a new launch template version")
			}
		})
	}
}

// cloudInitPython returns the Python interpreter that runs cloud-init (the
// #! line of the cloud-init command), with its cloudinit package importable.
func cloudInitPython(t *testing.T) string {
	t.Helper()
	cloudInit := testbed.Tool(t, "cloud-init", "cloud-init")
	f, err := os.Open(cloudInit)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	first, _ := bufio.NewReader(f).ReadString('\n')
	py := strings.Fields(strings.TrimPrefix(first, "#!"))
	if !strings.HasPrefix(first, "#!") || len(py) == 0 {
		t.Fatalf("%s does not start with #!python: %q", cloudInit, first)
	}
	if py[0] == "/usr/bin/env" && len(py) > 1 {
		py = py[1:]
	}
	if out, err := exec.Command(py[0], "-c", "import cloudinit.user_data, cloudinit.handlers.cloud_config").CombinedOutput(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s cannot import cloudinit: %v\n%s", py[0], err, out)
		}
		t.Skipf("%s cannot import cloudinit: %v", py[0], err)
	}
	return py[0]
}

// cloudInitPart is one part as cloud-init's walker sees it.
type cloudInitPart struct {
	ContentType string `json:"content_type"`
	Filename    string `json:"filename"`
	MergeType   string `json:"merge_type"`
	Payload     string `json:"payload"`
}

// expand runs user-data through cloud-init's own user-data processing and
// cloud-config merging (testdata/expand-user-data.py), checks the merged
// cloud-config with `cloud-init schema`, and returns the parts and the
// merged cloud-config.
func expand(t *testing.T, userData []byte) ([]cloudInitPart, map[string]any) {
	t.Helper()
	py := cloudInitPython(t)
	dir := t.TempDir()
	in, merged := filepath.Join(dir, "user-data"), filepath.Join(dir, "merged.yaml")
	if err := os.WriteFile(in, userData, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(py, filepath.Join("testdata", "expand-user-data.py"), in, merged)
	cmd.Env = append(os.Environ(), "HOME="+dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("expand-user-data.py: %v\n%s\nuser-data:\n%s", err, stderr.Bytes(), userData)
	}
	var parts []cloudInitPart
	if err := json.Unmarshal(out, &parts); err != nil {
		t.Fatalf("expand-user-data.py output: %v\n%s", err, out)
	}
	schema := exec.Command(testbed.Tool(t, "cloud-init", "cloud-init"), "schema", "--config-file", merged)
	schema.Env = append(os.Environ(), "HOME="+dir)
	res, err := schema.CombinedOutput()
	mergedText, _ := os.ReadFile(merged)
	if err != nil || !strings.Contains(string(res), "Valid cloud-config") {
		t.Fatalf("cloud-init schema of the merged cloud-config: %v\n%s\nmerged:\n%s", err, res, mergedText)
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(mergedText, &cfg); err != nil {
		t.Fatalf("merged cloud-config: %v\n%s", err, mergedText)
	}
	return parts, cfg
}

// runcmdOf lists the merged runcmd entries, each joined into one string.
func runcmdOf(cfg map[string]any) []string {
	var out []string
	list, _ := cfg["runcmd"].([]any)
	for _, e := range list {
		switch e := e.(type) {
		case string:
			out = append(out, e)
		case []any:
			var words []string
			for _, w := range e {
				words = append(words, w.(string))
			}
			out = append(out, strings.Join(words, " "))
		}
	}
	return out
}

// writeFilesOf lists the merged write_files paths and their contents.
func writeFilesOf(cfg map[string]any) (paths []string, content map[string]string) {
	content = map[string]string{}
	list, _ := cfg["write_files"].([]any)
	for _, e := range list {
		m := e.(map[string]any)
		p, _ := m["path"].(string)
		paths = append(paths, p)
		content[p], _ = m["content"].(string)
	}
	return paths, content
}

const agentRuncmd = "sh /var/lib/spot-agent-bootstrap/install.sh"

// On an instance, cloud-init sees a user's cloud-config part then the agent's
// (both text/cloud-config, with the Merge-Type header), and merges them into
// one valid cloud-config holding both parts' write_files and runcmd entries:
// the user's first, the agent's install last.
func TestCombinedCloudConfigsMergeInCloudInitKeepingBothParts(t *testing.T) {
	c := combinedConfigs["al2023-with-cloud-config"]
	out, err := Render(c)
	if err != nil {
		t.Fatal(err)
	}
	parts, cfg := expand(t, out)
	if len(parts) != 2 {
		t.Fatalf("cloud-init saw %d parts, want 2: %+v", len(parts), parts)
	}
	agentOnly := c
	agentOnly.UserData = nil
	agent, err := Render(agentOnly)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []cloudInitPart{
		{ContentType: "text/cloud-config", Filename: userConfigName, MergeType: MergeType, Payload: userCloudConfig},
		{ContentType: "text/cloud-config", Filename: agentPartName, MergeType: MergeType, Payload: string(agent)},
	} {
		if parts[i] != want {
			t.Errorf("part %d as cloud-init sees it:\n%+v\nwant\n%+v", i, parts[i], want)
		}
	}

	runcmd := runcmdOf(cfg)
	want := []string{"systemctl enable --now nginx", `echo "app installed" > /var/tmp/app-installed`, agentRuncmd}
	if !slices.Equal(runcmd, want) {
		t.Errorf("merged runcmd %q\nwant %q (the user's, then the agent's install)", runcmd, want)
	}
	paths, content := writeFilesOf(cfg)
	wantPaths := []string{"/etc/nginx/conf.d/app.conf", "/etc/sysconfig/spot-agent", "/var/lib/spot-agent-bootstrap/install.sh"}
	if !slices.Equal(paths, wantPaths) {
		t.Errorf("merged write_files %q\nwant %q", paths, wantPaths)
	}
	if !strings.Contains(content["/etc/sysconfig/spot-agent"], "SPOT_AGENT_HELLO=\"false\"\n") {
		t.Errorf("the agent's settings file:\n%s", content["/etc/sysconfig/spot-agent"])
	}
	// The settings stay root's alone through the merge (the boot test reads
	// the mode cloud-init gives the file).
	for _, e := range cfg["write_files"].([]any) {
		if m := e.(map[string]any); m["path"] == "/etc/sysconfig/spot-agent" && (m["permissions"] != "0600" || m["owner"] != "root:root") {
			t.Errorf("the agent's settings file: permissions %v, owner %v; want 0600, root:root", m["permissions"], m["owner"])
		}
	}
	if pk, _ := cfg["packages"].([]any); len(pk) != 1 || pk[0] != "nginx" {
		t.Errorf("merged packages %v, want the user's [nginx]", cfg["packages"])
	}
}

// Without the Merge-Type header, cloud-init's default merge lets the agent's
// runcmd and write_files replace the user's: the header is what keeps them.
func TestWithoutMergeTypeCloudInitWouldDropTheUserEntries(t *testing.T) {
	out, err := Render(combinedConfigs["al2023-with-cloud-config"])
	if err != nil {
		t.Fatal(err)
	}
	var stripped []string
	for _, l := range strings.SplitAfter(string(out), "\n") {
		if !strings.HasPrefix(l, "Merge-Type:") {
			stripped = append(stripped, l)
		}
	}
	_, cfg := expand(t, []byte(strings.Join(stripped, "")))
	if runcmd := runcmdOf(cfg); !slices.Equal(runcmd, []string{agentRuncmd}) {
		t.Errorf("without Merge-Type the merged runcmd is %q; the premise of the header no longer holds", runcmd)
	}
}

// A user's script arrives as text/x-shellscript under a name that sorts
// before runcmd (scripts-user runs the scripts directory in name order), and
// the agent's cloud-config is the one cloud-config part.
func TestCombinedScriptArrivesAsAShellScriptBeforeTheAgentsInstall(t *testing.T) {
	out, err := Render(combinedConfigs["ubuntu-with-script"])
	if err != nil {
		t.Fatal(err)
	}
	parts, cfg := expand(t, out)
	if len(parts) != 2 {
		t.Fatalf("cloud-init saw %d parts, want 2: %+v", len(parts), parts)
	}
	if p := parts[0]; p.ContentType != "text/x-shellscript" || p.Filename != userScriptName || p.Payload != userScript || p.MergeType != "" {
		t.Errorf("the user's part as cloud-init sees it: %+v", p)
	}
	if p := parts[1]; p.ContentType != "text/cloud-config" || p.Filename != agentPartName {
		t.Errorf("the agent's part as cloud-init sees it: %+v", p)
	}
	if names := []string{"runcmd", parts[0].Filename}; slices.Sorted(slices.Values(names))[0] != parts[0].Filename {
		t.Errorf("%s sorts after runcmd: scripts-user would run it after the agent's install", parts[0].Filename)
	}
	if runcmd := runcmdOf(cfg); !slices.Equal(runcmd, []string{agentRuncmd}) {
		t.Errorf("merged runcmd %q", runcmd)
	}
}

// Non-ASCII text goes base64-encoded: sent as 8bit, cloud-init's MIME parser
// would garble it.
func TestNonASCIIUserDataReachesCloudInitIntact(t *testing.T) {
	user := "#cloud-config\nruncmd:\n  - echo \"café ✓ 日本\"\nfinal_message: \"prêt\"\n"
	c := Config{Distribution: Debian, Package: pinned("https://example.com/a.deb"), UserData: []byte(user),
		Env: map[string]string{"SPOT_AGENT_NOTIFY_BODY": `{"text": "✓ ${summary}"}`}}
	out, err := Render(c)
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(out, []byte("Content-Transfer-Encoding: base64")); n != 2 {
		t.Errorf("%d base64 parts, want both", n)
	}
	parts, cfg := expand(t, out)
	if len(parts) != 2 || parts[0].Payload != user {
		t.Fatalf("parts %+v", parts)
	}
	if runcmd := runcmdOf(cfg); len(runcmd) != 2 || runcmd[0] != `echo "café ✓ 日本"` || cfg["final_message"] != "prêt" {
		t.Errorf("merged: runcmd %q, final_message %v", runcmd, cfg["final_message"])
	}
	_, content := writeFilesOf(cfg)
	if !strings.Contains(content["/etc/default/spot-agent"], `SPOT_AGENT_NOTIFY_BODY="{\"text\": \"✓ \${summary}\"}"`) {
		t.Errorf("settings file:\n%s", content["/etc/default/spot-agent"])
	}
}

func TestCheckUserData(t *testing.T) {
	for _, tt := range []struct {
		name, data string
		kind       UserDataKind
		err        string
	}{
		{"a cloud-config", userCloudConfig, CloudConfig, ""},
		{"a script", userScript, ShellScript, ""},
		{"a bash script", "#!/bin/bash\necho hi\n", ShellScript, ""},
		{"a cloud-config with CRLF", "#cloud-config\r\nruncmd:\r\n  - [true]\r\n", CloudConfig, ""},
		{"empty", "", "", "is empty: give a script starting with #! or a #cloud-config document"},
		{"blank", " \n\n", "", "is empty"},
		{"gzip", "\x1f\x8b\x08\x00\x00\x00", "", "is gzip-compressed: give it uncompressed"},
		{"latin-1", "#!/bin/sh\necho caf\xe9\n", "", "is not UTF-8 text (byte 0xe9 at offset 18)"},
		{"no header", "runcmd:\n  - [true]\n", "", `starts with "runcmd:": it must start with the line #cloud-config (a cloud-config document) or with #! (a script)`},
		{"a cloud-config archive", "#cloud-config-archive\n- type: text/x-shellscript\n", "", `starts with "#cloud-config-archive"`},
		{"a jsonp patch", "#cloud-config-jsonp\n[]\n", "", `starts with "#cloud-config-jsonp"`},
		{"an include", "#include\nhttps://example.com/x\n", "", `starts with "#include"`},
		{"a MIME document", "Content-Type: multipart/mixed; boundary=x\n", "", `starts with "Content-Type: multipart/mixed; boundary=…"`},
		{"a boothook", "#cloud-boothook\n#!/bin/sh\n", "", `starts with "#cloud-boothook"`},
		{"a script with CRLF", "#!/bin/sh\r\necho hi\r\n", "", "has Windows line endings"},
		{"bad YAML", "#cloud-config\nruncmd: [unclosed\n", "", "is #cloud-config but not valid YAML: yaml: line "},
		{"a duplicate key", "#cloud-config\nruncmd: []\nruncmd: []\n", "", `is #cloud-config but not valid YAML: line 3: mapping key "runcmd" already defined at line 2`},
		{"a list", "#cloud-config\n- runcmd\n", "", "its YAML is a list, not a mapping of cloud-config keys"},
		{"a scalar", "#cloud-config\nhello\n", "", "its YAML is a scalar, not a mapping"},
		{"only the header", "#cloud-config\n", "", "is #cloud-config with nothing after that line"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			kind, err := CheckUserData([]byte(tt.data))
			if tt.err == "" {
				if err != nil || kind != tt.kind {
					t.Fatalf("CheckUserData = %q, %v; want %q", kind, err, tt.kind)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("CheckUserData = %q, %v\nwant an error with %q", kind, err, tt.err)
			}
			c := Config{Distribution: Debian, Package: pinned("https://example.com/a.deb"), UserData: []byte(tt.data)}
			var ie *InputError
			if out, err := Render(c); out != nil || !errors.As(err, &ie) || ie.Input != "user data" {
				t.Errorf("Render = %d bytes, %v; want an *InputError on the user data", len(out), err)
			}
		})
	}
}

func TestRenderRefusesUserDataOverEC2sLimit(t *testing.T) {
	big := "#!/bin/sh\n" + strings.Repeat("echo 0123456789abcdef0123456789abcdef0123456789abcdef0123456789\n", 256)
	c := Config{Distribution: AL2023, Package: pinned("https://example.com/a.rpm"), UserData: []byte(big)}
	out, err := Render(c)
	var ie *InputError
	if out != nil || !errors.As(err, &ie) || ie.Input != "size" {
		t.Fatalf("Render of %d bytes of user data = %d bytes, %v; want an *InputError on the size", len(big), len(out), err)
	}
	for _, want := range []string{"over EC2's 16384-byte limit", "(the user's part is 16394 bytes, the agent's cloud-config "} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	c.UserData = []byte(big[:len(big)-14000])
	if out, err := Render(c); err != nil || len(out) > MaxSize {
		t.Errorf("a smaller user data: %d bytes, %v", len(out), err)
	}
}
