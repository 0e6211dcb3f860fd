package tests

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/demo"
	"github.com/fdp-engine/fdp/module"
	"github.com/fdp-engine/fdp/shm"
	"github.com/fdp-engine/fdp/world"
	"github.com/stretchr/testify/require"
)

// Other uids (issue 11): `engine up` runs a module as uid 65534 next to
// modules of the engine's own uid. The module cannot open any segment file
// by path (0600, owned by the engine's uid: EACCES) and works only through
// the descriptors the engine handed it over the control socket.

// uidMarker is the X of the Position the other-uid module gives the
// entities it creates.
const uidMarker = 6553.25

// uidChild runs the other-uid module ($FDP_UID_CHILD) and exits; it returns
// when this process is not that child. In its first tick it tries to open
// every file of the instance by path and prints "EACCES <name>" (or
// "OPENED <name>": isolation broken) and "mapped <name> <perms>" for each
// segment it maps; then in every tick it creates an entity with
// Position{X: uidMarker} and prints "applied <entity>" for each of its
// creations that the engine reported and the frame shows.
func uidChild() {
	if os.Getenv("FDP_UID_CHILD") != "1" {
		return
	}
	s, err := demo.NewSchema()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("uid=%d gid=%d\n", os.Getuid(), os.Getgid())
	m := &uidModule{s: s, name: os.Getenv("FDP_MODULE"), inst: os.Getenv("FDP_INSTANCE")}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	err = module.Run(context.Background(), m, module.Options{Instance: m.inst, Registry: s.Reg, Logger: log})
	if err != nil && !errors.Is(err, module.ErrEngineGone) {
		fmt.Fprintln(os.Stderr, "module:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

type uidModule struct {
	s          *demo.Schema
	name, inst string
	probed     bool
}

func (m *uidModule) Spec() module.Spec {
	return module.Spec{Name: m.name, Tier: module.Fast, Every: 1, Reads: world.MaskOf(m.s.Pos)}
}

func (m *uidModule) probe() {
	m.probed = true
	paths, _ := filepath.Glob(filepath.Join(shm.Dir, shm.Prefix+m.inst+".*"))
	for _, p := range paths {
		if strings.HasSuffix(p, ".sock") {
			continue
		}
		f, err := os.Open(p)
		switch {
		case err == nil:
			f.Close()
			fmt.Printf("OPENED %s\n", filepath.Base(p))
		case errors.Is(err, syscall.EACCES):
			fmt.Printf("EACCES %s\n", filepath.Base(p))
		default:
			fmt.Printf("ERROR %s: %v\n", filepath.Base(p), err)
		}
	}
	// What it maps, it got as descriptors. /proc/self/maps names a segment
	// created with O_TMPFILE by its anonymous dentry ("#<inode> (deleted)"),
	// so mappings are matched to the files by inode (stat needs no
	// permission on the file).
	ino := map[string]string{}
	for _, p := range paths {
		var st syscall.Stat_t
		if syscall.Stat(p, &st) == nil {
			ino[strconv.FormatUint(st.Ino, 10)] = filepath.Base(p)
		}
	}
	maps, _ := os.ReadFile("/proc/self/maps")
	seen := map[string]bool{}
	for _, l := range strings.Split(string(maps), "\n") {
		f := strings.Fields(l)
		if len(f) < 6 || ino[f[4]] == "" || seen[f[4]] {
			continue
		}
		seen[f[4]] = true
		fmt.Printf("mapped %s %s\n", ino[f[4]], f[1])
	}
}

func (m *uidModule) Tick(v *module.View, c *module.Commands, _ time.Duration) error {
	if !m.probed {
		m.probe()
	}
	if _, err := v.Events(nil); err != nil {
		return err
	}
	for _, cr := range v.Created() {
		if p, ok := module.Get[demo.Position](v, cr.Entity, m.s.Pos); ok && p.X == uidMarker {
			fmt.Printf("applied %#x\n", uint64(cr.Entity))
		}
	}
	module.Set(c, c.Create(), m.s.Pos, demo.Position{X: uidMarker})
	return nil
}

// supLines follows a supervisor's log output (logfmt) and keeps each line.
type supLines struct{ lineWriter }

func (l *supLines) count(re *regexp.Regexp) int { return len(re.FindAllStringIndex(l.String(), -1)) }

// TestModuleAsOtherUID (root only): `engine up` with a config that runs one
// module as uid 65534 (user: "65534:65534") beside telemetry and an ai
// module of the engine's uid. The other-uid module runs as 65534, gets
// EACCES opening every segment file by path, holds descriptors of the world,
// the event log and its own segment, ticks, and its commands are applied
// (it sees its created entities with its marker in the frames). The other
// modules tick as usual and nothing of theirs is rejected.
func TestModuleAsOtherUID(t *testing.T) {
	uidChild()
	if os.Geteuid() != 0 {
		t.Skip("needs root to start a module as another uid (CI runs as root)")
	}
	bin := shippedBinaries(t)
	if help, _ := exec.Command(filepath.Join(bin, "engine"), "run", "--help").CombinedOutput(); !strings.Contains(string(help), "--allow-uid") {
		t.Skip("needs SCM_RIGHTS attach (engine run --allow-uid)")
	}
	// A directory that uid 65534 may search and list (as /dev/shm), and a
	// copy of this test binary that it may execute.
	dir, err := os.MkdirTemp("", "fdp-uid-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	require.NoError(t, os.Chmod(dir, 0o755))
	shmDir := filepath.Join(dir, "shm")
	require.NoError(t, os.Mkdir(shmDir, 0o755))
	require.NoError(t, os.Chmod(shmDir, 0o755))
	exe := filepath.Join(dir, "tests.test")
	copyExecutable(t, os.Args[0], exe)

	inst := uniqueInstance(t, "uid")
	cfg := fmt.Sprintf(`instance: %s
engine: {command: [%s, run, --entities, "2000", --status, "0"]}
modules:
  - {name: other, command: [%s, "-test.run=^TestModuleAsOtherUID$"], env: {FDP_UID_CHILD: "1"}, tier: fast, user: "65534:65534"}
  - {name: telemetry, command: [%s, telemetry], tier: fast}
  - {name: ai-1, command: [%s, ai], tier: slow, every: 6, group: ai}
hang: {heartbeat_timeout: 5s, engine_timeout: 5s, engine_start_timeout: 10s}
`, inst, filepath.Join(bin, "engine"), exe, filepath.Join(bin, "modrunner"), filepath.Join(bin, "modrunner"))
	cfgPath := filepath.Join(dir, "up.yaml")
	require.NoError(t, os.WriteFile(cfgPath, []byte(cfg), 0o600))

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	up := exec.CommandContext(ctx, filepath.Join(bin, "engine"), "up", "--config", cfgPath)
	up.Env = append(os.Environ(), "FDP_SHM_DIR="+shmDir)
	var logs supLines
	stderr, err := up.StderrPipe()
	require.NoError(t, err)
	up.Stdout = &logs
	require.NoError(t, up.Start())
	t.Cleanup(func() { _ = up.Process.Kill(); _ = up.Wait() })
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			_, _ = io.WriteString(&logs, sc.Text()+"\n")
		}
	}()

	applied := regexp.MustCompile(`msg="applied 0x[0-9a-f]+" child=other`)
	waitFor(t, "the other-uid module's commands applied 5 times", 20*time.Second, func() bool {
		return logs.count(applied) >= 5
	})
	out := logs.String()
	require.Contains(t, out, `msg="uid=65534 gid=65534" child=other`)
	require.NotContains(t, out, "OPENED", "a segment file opened by path:\n%s", out)
	require.NotContains(t, out, `msg="ERROR`, out)
	for _, kind := range []string{"world", "events", "mod.0"} {
		require.Contains(t, out, `msg="EACCES fdp.`+inst+`.`+kind+`" child=other`, "opening %s by path", kind)
	}
	for _, kind := range []string{"world", "events"} {
		require.Contains(t, out, `msg="mapped fdp.`+inst+`.`+kind+` r--s" child=other`, "read-only mapping of %s", kind)
	}
	require.Regexp(t, `msg="mapped fdp\.`+inst+`\.mod\.\d+ rw-s" child=other`, out)

	// Stop; the engine's summary shows every module's counters.
	require.NoError(t, up.Process.Signal(syscall.SIGTERM))
	require.NoError(t, up.Wait())
	out = logs.String()
	for _, name := range []string{"other", "telemetry", "ai-1"} {
		re := regexp.MustCompile(`msg="module ` + regexp.QuoteMeta(name) + `\s+\S+\s+every \d+\s+\S+\s+runs (\d+)\s+late \d+\s+failures (\d+)\s+applied (\d+)\s+rejected (\d+)`)
		m := re.FindStringSubmatch(out)
		require.NotNil(t, m, "no summary line of %s:\n%s", name, out)
		runs, _ := strconv.Atoi(m[1])
		require.Positive(t, runs, "%s ran", name)
		require.Equal(t, "0", m[2], "%s failures", name)
		require.Equal(t, "0", m[4], "%s rejected", name)
		if name == "other" {
			n, _ := strconv.Atoi(m[3])
			require.GreaterOrEqual(t, n, 10, "the other-uid module's commands applied (create + set per tick)")
		}
	}
}

// copyExecutable copies the file from to the new file to, mode 0755.
func copyExecutable(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	require.NoError(t, err)
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o755)
	require.NoError(t, err)
	_, err = io.Copy(out, in)
	require.NoError(t, err)
	require.NoError(t, out.Close())
}
