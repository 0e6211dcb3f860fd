package tests

// Issue 18, "one source of truth for a module's identity" and "validate
// before acting", shown with the shipped binaries only: the supervisor's
// YAML names and schedules the module process (name, tier, every, group
// reach the engine and `engine dump`), ps tells modules of one command
// apart, and each nonsense flag or config mistake is one line that names it.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/inspect"
	"github.com/fdp-engine/fdp/internal/testutil"
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/shm"
	"github.com/stretchr/testify/require"
)

// dumpModules returns `engine dump --json` of every module segment of inst
// whose creator is alive, by module name.
func dumpModules(t *testing.T, bin, inst string) map[string]*inspect.ModuleReport {
	t.Helper()
	out := map[string]*inspect.ModuleReport{}
	for slot := 0; slot < 8; slot++ {
		b, err := exec.Command(filepath.Join(bin, "engine"), "dump", "--json", inst, fmt.Sprintf("mod.%d", slot)).Output()
		if err != nil {
			continue // no such slot (yet)
		}
		var r inspect.Report
		require.NoError(t, json.Unmarshal(b, &r), "%s", b)
		if r.Module != nil && r.Header.CreatorAlive {
			out[r.Module.Name] = r.Module
		}
	}
	return out
}

// TestYAMLIdentityReachesModuleAndEngine: `engine up` with a module
// {name: my-counter, every: 3, group: solo, tier: slow} whose program
// (modrunner telemetry) says fast, every 1, no group. The engine registers
// it as the YAML says (engine dump --json of its segment: name, tier,
// every, group; the pid the supervisor started), the SDK logs what the
// YAML changed once, the demo's `group: ai` takes effect for ai-1 and
// ai-2 (the engine's "module joined" line: group:ai, one convoy), ps shows
// each module's name (argv[0] "modrunner [my-counter]", comm my-counter),
// and the supervisor's summary names the same modules.
func TestYAMLIdentityReachesModuleAndEngine(t *testing.T) {
	bin := shippedBinaries(t)
	inst := uniqueInstance(t, "idt")
	cfg := fmt.Sprintf(`instance: %s
engine: {command: [engine, run, --entities, "1000", --rate, "100", --status, "0"]}
modules:
  - {name: my-counter, command: [modrunner, telemetry], every: 3, group: solo, tier: slow}
  - {name: ai-1, command: [modrunner, ai], tier: slow, every: 6, group: ai}
  - {name: ai-2, command: [modrunner, ai], tier: slow, every: 6, group: ai}
`, inst)
	path := filepath.Join(t.TempDir(), "up.yaml")
	require.NoError(t, os.WriteFile(path, []byte(cfg), 0o600))
	up := startUp(t, bin, path)

	pids := map[string]int{}
	waitFor(t, "three modules started", 20*time.Second, func() bool {
		for _, name := range []string{"my-counter", "ai-1", "ai-2"} {
			if m := childPIDRe(name).FindStringSubmatch(up.stderr.String()); m != nil {
				pids[name], _ = strconv.Atoi(m[1])
			}
		}
		return len(pids) == 3
	})
	var mods map[string]*inspect.ModuleReport
	waitFor(t, "three modules in their segments", 20*time.Second, func() bool {
		mods = dumpModules(t, bin, inst)
		for _, m := range mods {
			if m.PID == 0 || m.Stats == nil || m.Stats.Runs == 0 { // attached and ticking
				return false
			}
		}
		return len(mods) == 3
	})
	mc := mods["my-counter"]
	require.Equal(t, "slow", mc.TierName, "tier from the YAML, not the program's fast")
	require.Equal(t, uint32(3), mc.Frequency, "every from the YAML, not the program's 1")
	require.Equal(t, "solo", mc.Group)
	require.Equal(t, uint32(pids["my-counter"]), mc.PID, "the engine's my-counter is the process the supervisor started as my-counter")
	for _, ai := range []string{"ai-1", "ai-2"} {
		require.Equal(t, "ai", mods[ai].Group, ai)
		require.Equal(t, uint32(pids[ai]), mods[ai].PID, ai)
	}
	// The engine groups them by the YAML's group: one convoy "group:ai".
	for _, ai := range []string{"ai-1", "ai-2"} {
		joined := regexp.MustCompile(`msg="module joined" .*module=` + ai + ` .* group=(\S+)`)
		m := joined.FindStringSubmatch(up.stderr.String())
		require.NotNil(t, m, "%s joined:\n%s", ai, up.stderr.String())
		require.Equal(t, "group:ai", m[1])
	}
	// The SDK said once what the YAML changed.
	require.Equal(t, 1, strings.Count(up.stderr.String(), `msg="the configuration overrides the module's spec" child=my-counter`), up.stderr.String())
	require.Contains(t, up.stderr.String(), `name="\"my-counter\" (spec \"telemetry\")" tier="slow (spec fast)" every="3 (spec 1)" group="\"solo\" (spec \"\")"`)

	// ps: argv[0] and comm name the module.
	for name, pid := range pids {
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		require.NoError(t, err)
		argv := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
		require.Equal(t, "modrunner ["+name+"]", argv[0], "argv %q", argv)
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		require.NoError(t, err)
		require.Equal(t, name, strings.TrimSpace(string(comm)))
	}

	require.NoError(t, up.cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, up.cmd.Wait())
	sum := up.stdout.String()
	for name := range pids {
		require.Contains(t, sum, "\n"+name+" ", "the supervisor's summary names %s:\n%s", name, sum)
	}
}

// runBinary runs bin/prog with args and env (added to a clean environment)
// and returns its exit code and stderr.
func runBinary(t *testing.T, prog string, env []string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(prog, args...)
	cmd.Env = append(cleanEnv(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Stdout = &stderr // a refusal prints nothing else (no summary of rows that never ran)
	done := make(chan error, 1)
	require.NoError(t, cmd.Start())
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode(), stderr.String()
		}
		require.NoError(t, err)
		return 0, stderr.String()
	case <-time.After(30 * time.Second): // failure guard only
		_ = cmd.Process.Kill()
		t.Fatalf("%s %q did not exit; stderr:\n%s", prog, args, stderr.String())
		return 0, ""
	}
}

// TestNonsenseIsRefusedInOneLine: each nonsense flag, positional argument,
// config mistake or missing piece gives exit 1 (78 for the module) and one
// line on stderr that names it, with the binaries and a private segment
// directory where one live instance runs (the refusals of an unknown
// instance list it).
func TestNonsenseIsRefusedInOneLine(t *testing.T) {
	bin := shippedBinaries(t)
	dir := t.TempDir()
	testutil.UseShmDir(t, dir)
	env := []string{"FDP_SHM_DIR=" + dir}
	engine := filepath.Join(bin, "engine")

	live := uniqueInstance(t, "live")
	eng := exec.Command(engine, "run", "--instance", live, "--entities", "100", "--status", "0")
	eng.Env = append(cleanEnv(), env...)
	require.NoError(t, eng.Start())
	t.Cleanup(func() { _ = eng.Process.Kill(); _ = eng.Wait() })
	waitFor(t, "the live engine", 20*time.Second, func() bool {
		infos, _ := shm.List()
		for _, in := range infos {
			if in.Instance == live && in.Kind == shm.WorldKind && in.State == shm.StateLive {
				return true
			}
		}
		return false
	})

	config := func(yaml string) string {
		p := filepath.Join(t.TempDir(), "c.yaml")
		require.NoError(t, os.WriteFile(p, []byte(yaml), 0o600))
		return p
	}
	const mods = "instance: c1\nmodules:\n"
	liveList := fmt.Sprintf("; live: %s", live)
	for _, tc := range []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"run positional", nil, []string{"run", "ux3"}, `engine run: unexpected argument "ux3" (the instance is a flag: --instance ux3)`},
		{"up positional", nil, []string{"up", "ux3"}, `engine up: unexpected argument "ux3" (the instance is a flag: --instance ux3)`},
		{"ls positional", nil, []string{"ls", "ux3"}, `engine ls: unexpected argument "ux3"`},
		{"rate 0", nil, []string{"run", "--rate", "0"}, "--rate 0: must be at least 1"},
		{"entities -5", nil, []string{"run", "--entities", "-5"}, "--entities -5: must be 0 or more"},
		{"status -1s", nil, []string{"run", "--status", "-1s"}, "--status -1s: must not be negative"},
		{"stat count -1", nil, []string{"stat", "--count", "-1", live}, "--count -1: must be 0 or more"},
		{"up duration", nil, []string{"up", "--duration", "-1s"}, "--duration -1s: must not be negative"},
		{"dump instance", nil, []string{"dump", "ux3"}, `no instance "ux3" in ` + dir + liveList},
		{"dump instance kind", nil, []string{"dump", "ux3", "world"}, filepath.Join(dir, "fdp.ux3.world") + ` does not exist: no instance "ux3" in ` + dir + liveList},
		{"run instance long", nil, []string{"run", "--instance", strings.Repeat("a", 32)}, `--instance "` + strings.Repeat("a", 32) + `": want 1..31 characters of [A-Za-z0-9_-]`},
		{"run instance slash", nil, []string{"run", "--instance", "a/b"}, `--instance "a/b": want 1..31 characters of [A-Za-z0-9_-]`},
		{"run entities", nil, []string{"run", "--instance", "ents", "--entities", "900000000"}, "--entities 900000000: at most 858992639"},
		{"completion tcsh", nil, []string{"completion", "tcsh"}, "engine completion tcsh: no completion script for this shell: want bash, fish, powershell, zsh"},
		{"verify instance", nil, []string{"verify", "ux3"}, filepath.Join(dir, "fdp.ux3.world") + ` does not exist: no instance "ux3" in ` + dir + liveList},
		{"dump bogus kind", nil, []string{"dump", live, "bogus"}, filepath.Join(dir, "fdp."+live+".bogus") + ` does not exist: instance "` + live + `" has dump ` + live + " "},
		{"dump missing module", nil, []string{"dump", "fdp." + live + ".mod.9"}, filepath.Join(dir, "fdp."+live+".mod.9") + ` does not exist: instance "` + live + `" has dump ` + live + " "},
		{"dump no kind", nil, []string{"dump", live}, fmt.Sprintf("dump %s: give a segment kind too: ", live)},
		{"stat instance", nil, []string{"stat", "ux3"}, `no instance "ux3" in ` + dir + liveList},
		{"missing shm dir", []string{"FDP_SHM_DIR=" + dir + "/nowhere"}, []string{"run", "--duration", "1s"},
			"the segment directory " + dir + "/nowhere ($FDP_SHM_DIR) does not exist"},
		{"missing shm dir gc", []string{"FDP_SHM_DIR=" + dir + "/nowhere"}, []string{"gc"}, "the segment directory " + dir + "/nowhere ($FDP_SHM_DIR) does not exist"},
		{"missing shm dir ls", []string{"FDP_SHM_DIR=" + dir + "/nowhere"}, []string{"ls"}, "the segment directory " + dir + "/nowhere ($FDP_SHM_DIR) does not exist"},
		{"config typo", nil, []string{"up", "--config", config(mods + "  - {name: a, command: [modrunner, ai]}\n  - {name: b, command: [modrunner, ai]}\n  - {name: c, command: [modrunner, ai], evrey: 3}\n")},
			`modules[2].evrey (line 5): unknown key "evrey"; did you mean "every"?`},
		{"config type", nil, []string{"up", "--config", config(mods + "  - {name: a, command: [modrunner, ai], every: three}\n")},
			`modules[0].every (line 3): want a whole number, got "three"`},
		{"config duration", nil, []string{"up", "--config", config("instance: c1\nbreaker: {window: 30}\n")},
			`breaker.window (line 2): want a duration such as 50ms or 2s, got "30"`},
		{"config range", nil, []string{"up", "--config", config(mods + "  - {name: a, command: [modrunner, ai], every: 0}\n")}, "" /* every 0 is the default 1: accepted, see below */},
		{"config negative", nil, []string{"up", "--config", config(mods + "  - {name: a, command: [modrunner, ai], every: -2}\n")}, `modules[0].every -2: want 1..86400000`},
		{"config every range", nil, []string{"up", "--config", config(mods + "  - {name: a, command: [modrunner, ai], every: 86400001}\n")}, `modules[0].every 86400001: want 1..86400000 (layout.MaxEvery; or 0: the module's own)`},
		{"config command", nil, []string{"up", "--config", config(mods + "  - {name: a, command: [./no-such-module]}\n")},
			`config: modules[0].command: "./no-such-module": no such file or directory (in `},
		{"config command path", nil, []string{"up", "--config", config(mods + "  - {name: a, command: [no-such-module-xyz]}\n")},
			`config: modules[0].command: "no-such-module-xyz" not found next to ` + bin + " nor in PATH (in "},
		{"module bad instance", []string{"FDP_INSTANCE=bad/inst"}, nil, `instance \"bad/inst\": want 1..31 characters of [A-Za-z0-9_-]" exit=78`},
		{"module long instance", []string{"FDP_INSTANCE=" + strings.Repeat("i", 40)}, nil, `instance \"` + strings.Repeat("i", 40) + `\": want 1..31 characters of [A-Za-z0-9_-]" exit=78`},
		{"module without instance", nil, nil, "no instance: set $FDP_INSTANCE (engine up sets it) or Options.Instance"},
		{"module missing shm dir", []string{"FDP_INSTANCE=" + live, "FDP_SHM_DIR=" + dir + "/nowhere"}, nil,
			"the segment directory " + dir + "/nowhere ($FDP_SHM_DIR) does not exist"},
	} {
		if tc.want == "" {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			prog, args, code := engine, tc.args, 1
			if tc.args == nil {
				prog, args, code = filepath.Join(bin, "modrunner"), []string{"ai"}, layout.ExitRefused
				if strings.Contains(tc.want, "segment directory") {
					code = 1 // a directory may yet appear: not a permanent refusal
				}
			}
			got, stderr := runBinary(t, prog, append(append([]string{}, env...), tc.env...), args...)
			require.Equal(t, code, got, "exit status; stderr:\n%s", stderr)
			lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
			require.Len(t, lines, 1, "one line:\n%s", stderr)
			require.Contains(t, lines[0], tc.want)
			if prog != engine {
				require.Equal(t, 1, strings.Count(lines[0], "module="), "the module named once: %s", lines[0])
			}
			for _, goWord := range []string{"supervisor.ModuleConfig", "unmarshal", "panic", "goroutine"} {
				require.NotContains(t, lines[0], goWord)
			}
		})
	}

	// `engine up --instance X` with a config that has no instance: runs X.
	p := config("modules: []\nengine: {command: [engine, run, --entities, \"10\", --status, \"0\"]}\n")
	inst := uniqueInstance(t, "forced")
	code, stderr := runBinary(t, engine, env, "up", "--config", p, "--instance", inst, "--duration", "1s")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, stderr, `msg="engine running"`)
	require.Contains(t, stderr, "instance="+inst)
}
