package supervisor

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// asEUID makes the config checks see euid uid for the test.
func asEUID(t *testing.T, uid int) {
	old := geteuid
	geteuid = func() int { return uid }
	t.Cleanup(func() { geteuid = old })
}

func TestParseUser(t *testing.T) {
	for _, c := range []struct {
		spec     string
		uid, gid uint32
	}{
		{"65534", 65534, 65534},
		{"65534:65534", 65534, 65534},
		{"0", 0, 0},
		{"root", 0, 0},
		{"root:0", 0, 0},
		{"4242:17", 4242, 17},
		{"4243", 4243, 4243}, // unknown to /etc/passwd: the gid of the same number
	} {
		got, err := ParseUser(c.spec)
		if err != nil || got != (Credential{UID: c.uid, GID: c.gid}) {
			t.Fatalf("ParseUser(%q) = %+v, %v; want %d:%d", c.spec, got, err, c.uid, c.gid)
		}
	}
	for _, bad := range []string{"", ":", "root:", ":0", "no-such-user-fdp", "root:no-such-group-fdp"} {
		if _, err := ParseUser(bad); err == nil {
			t.Fatalf("ParseUser(%q) accepted", bad)
		}
	}
}

const userYAML = `
instance: u
engine: {command: [engine, run]}
modules:
  - {name: a, command: [modrunner, telemetry], user: "65534:65534"}
  - {name: b, command: [modrunner, telemetry], user: "65534"}
  - {name: c, command: [modrunner, telemetry], user: "4242:4242"}
  - {name: d, command: [modrunner, telemetry]}
`

// TestConfigUserNeedsRoot: the user key is refused with a clear config
// error unless the supervisor runs as root.
func TestConfigUserNeedsRoot(t *testing.T) {
	asEUID(t, 1000)
	_, err := ParseConfig([]byte(userYAML))
	if err == nil || !strings.Contains(err.Error(), `module "a": user "65534:65534": running a module as another user needs root`) {
		t.Fatalf("err = %v", err)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Fatalf("not one line: %q", err)
	}
	asEUID(t, 0)
	c, err := ParseConfig([]byte(userYAML))
	if err != nil {
		t.Fatal(err)
	}
	uids, err := c.AllowUIDs()
	if err != nil || !slices.Equal(uids, []uint32{65534, 4242}) {
		t.Fatalf("AllowUIDs = %v, %v", uids, err)
	}
	_, err = ParseConfig([]byte(strings.Replace(userYAML, `"4242:4242"`, `"no-such-user-fdp"`, 1)))
	if err == nil || !strings.Contains(err.Error(), `module "c": user "no-such-user-fdp"`) {
		t.Fatalf("unknown user: %v", err)
	}
}

// TestModuleRunsAsUser (root only): a module with user runs under that uid
// and gid with its supplementary groups cleared, the others and the engine
// as the supervisor (with the supervisor's supplementary groups), and the
// engine command gets --allow-uid for it. The supervisor runs in a child
// process that has a supplementary group (4242), so that clearing shows.
func TestModuleRunsAsUser(t *testing.T) {
	if os.Getenv("FDP_USER_TEST_INNER") == "1" {
		moduleRunsAsUser(t)
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to start a process as another user (CI runs as root)")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestModuleRunsAsUser$", "-test.v")
	cmd.Env = append(os.Environ(), "FDP_USER_TEST_INNER=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 0, Gid: 0, Groups: []uint32{4242}}}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestModuleRunsAsUser") {
		t.Fatalf("inner test: %v\n%s", err, out)
	}
}

func moduleRunsAsUser(t *testing.T) {
	if g, _ := os.Getgroups(); !slices.Equal(g, []int{4242}) {
		t.Fatalf("inner supervisor groups %v, want [4242]", g)
	}
	// The test binary must be executable by uid 65534.
	dir, err := os.MkdirTemp("", "fdp-sup-user-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "supervisor.test")
	copyFile(t, os.Args[0], exe)

	rec := newRecorder()
	cfg := baseConfig(t.TempDir())
	_, env := childCmd("whoami")
	env["FDP_USER_TEST_INNER"] = ""
	cfg.Engine = EngineConfig{Command: []string{exe, "run"}, Env: env, Restart: true}
	cfg.Modules = []ModuleConfig{
		{Name: "other", Command: []string{exe}, Env: env, Tier: TierFast, Every: 1, User: "65534:65534"},
		{Name: "same", Command: []string{exe}, Env: env, Tier: TierFast, Every: 1},
	}
	startSup(t, cfg, rec, nil)
	waitLog(t, rec, `msg="whoami other uid=65534 gid=65534 groups=[] args=[]" child=other`)
	waitLog(t, rec, `msg="whoami same uid=0 gid=0 groups=[4242] args=[]" child=same`)
	waitLog(t, rec, `msg="whoami engine uid=0 gid=0 groups=[4242] args=[\"run\" \"--allow-uid\" \"65534\"]" child=engine`)
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
