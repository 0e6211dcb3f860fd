package tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// docGoBlock returns the first Go code block of the section of file (from
// the repository root) that starts with heading.
func docGoBlock(t *testing.T, file, heading string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", file))
	require.NoError(t, err)
	s := string(b)
	i := strings.Index(s, "\n"+heading+"\n")
	require.GreaterOrEqual(t, i, 0, "%s has no section %q", file, heading)
	s = s[i+1:]
	open := strings.Index(s, "\n```go\n")
	require.GreaterOrEqual(t, open, 0, "the section %q of %s has no Go code block", heading, file)
	s = s[open+len("\n```go\n"):]
	end := strings.Index(s, "\n```\n")
	require.GreaterOrEqual(t, end, 0, "unterminated code block")
	return s[:end+1]
}

// buildGo builds src as the package main of a directory of this module
// that does not exist (a build overlay: nothing is written into the tree)
// and returns the binary.
func buildGo(t *testing.T, src string) string {
	t.Helper()
	bin, err := buildDocProgram(t, "tests/query_doc_example", src)
	require.NoError(t, err, "the example does not build")
	return bin
}

// TestQueryReadmeExample builds the module of the README's "Queries"
// section as it is written and runs it against an engine of the demo world
// (every 2 frames instead of 30, through $FDP_EVERY): it must tick without
// a failure and stop cleanly on SIGTERM.
func TestQueryReadmeExample(t *testing.T) {
	src := docGoBlock(t, "README.md", "### Queries")
	require.Contains(t, src, "package main")
	for _, term := range []string{"world.Without(", "world.Optional(", "world.Changed(", ".First()", ".Count()", ".Has("} {
		require.Contains(t, src, term, "the README's query example shows %s", term)
	}
	bin := buildGo(t, src)

	eng, _, inst := docDemoEngine(t, "qd", 2000, 600)
	var stderr syncBuf
	cmd := exec.Command(bin)
	cmd.Env = append(cleanEnv(), "FDP_INSTANCE="+inst, "FDP_EVERY=2")
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		m, ok := moduleInfo(eng, "medic")
		if ok && m.Stats.Runs >= 5 && eng.Idle() {
			require.Zero(t, m.Stats.Failures, "its stderr:\n%s", stderr.String())
			break
		}
		require.True(t, time.Now().Before(deadline), "the example did not tick 5 times; its stderr:\n%s", stderr.String())
		eng.Step()
		time.Sleep(time.Millisecond) // frame pacing, not a synchronisation
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-exited:
		require.NoError(t, err, "the example must exit 0 on SIGTERM; its stderr:\n%s", stderr.String())
	case <-time.After(10 * time.Second):
		t.Fatalf("the example did not stop on SIGTERM; its stderr:\n%s", stderr.String())
	}
	require.NotContains(t, stderr.String(), "level=ERROR")
}

// TestQueryArchitectureExample builds the engine-side system of
// docs/ARCHITECTURE.md's "Queries" section as it is written, with a main
// that runs it on a world of three chunks of 16: wounded entities (95 of
// 100 HP), healthy ones, and wounded frozen ones. It heals the first chunk
// by 1 HP per run up to 100 and then writes it no more (its version stays),
// never touches the frozen chunk (Without) nor the healthy one.
func TestQueryArchitectureExample(t *testing.T) {
	block := docGoBlock(t, "docs/ARCHITECTURE.md", "## Queries")
	src := `package main

import (
	"fmt"

	"github.com/fdp-engine/fdp/demo"
	"github.com/fdp-engine/fdp/world"
)

` + block + `
type frozenTag struct{ V uint8 }

func main() {
	s, err := demo.NewSchema()
	if err != nil {
		panic(err)
	}
	frozen, err := world.Register[frozenTag](s.Reg, "Frozen")
	if err != nil {
		panic(err)
	}
	w, err := world.New(s.Reg, world.Config{ChunkCapacity: 16, MaxChunks: 4})
	if err != nil {
		panic(err)
	}
	var es []world.Entity
	for i := 0; i < 48; i++ {
		e, _ := w.Create()
		hp := int32(95)
		if i/16 == 1 {
			hp = 100
		}
		if err := world.Set(w, e, s.Health, demo.Health{HP: hp, Max: 100}); err != nil {
			panic(err)
		}
		if i/16 == 2 {
			if err := world.Set(w, e, frozen, frozenTag{1}); err != nil {
				panic(err)
			}
		}
		es = append(es, e)
	}
	r := &Regen{s: s, frozen: frozen}
	hp := func(i int) int32 { h, _ := world.Get[demo.Health](w, es[i], s.Health); return h.HP }
	for run := 1; run <= 8; run++ {
		w.Advance()
		r.Step(w)
		fmt.Printf("run=%d hp0=%d hp15=%d hp16=%d hp32=%d v0=%d v1=%d v2=%d\n", run, hp(0), hp(15), hp(16), hp(32),
			w.ChunkComponentVersion(0, s.Health), w.ChunkComponentVersion(1, s.Health), w.ChunkComponentVersion(2, s.Health))
	}
}
`
	bin := buildGo(t, src)
	out, err := exec.Command(bin).CombinedOutput()
	require.NoError(t, err, "%s", out)
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	require.Len(t, lines, 8, "%s", out)
	var v0 uint64
	for i, l := range lines {
		var run, hp0, hp15, hp16, hp32 int
		var v, v1, v2 uint64
		_, err := fmt.Sscanf(l, "run=%d hp0=%d hp15=%d hp16=%d hp32=%d v0=%d v1=%d v2=%d", &run, &hp0, &hp15, &hp16, &hp32, &v, &v1, &v2)
		require.NoError(t, err, l)
		require.Equal(t, min(100, 95+run), hp0, "chunk 0 healed by 1 a run: %s", l)
		require.Equal(t, hp0, hp15, l)
		require.Equal(t, 100, hp16, l)
		require.Equal(t, 95, hp32, "the frozen chunk is left alone: %s", l)
		require.Equal(t, uint64(1), v1, "the healthy chunk is never written: %s", l)
		require.Equal(t, uint64(1), v2, "the frozen chunk is never written: %s", l)
		switch {
		case run <= 5:
			require.Greater(t, v, v0, "written while wounded: %s", l)
		default:
			require.Equal(t, v0, v, "healed in full: written no more: %s", lines[i])
		}
		v0 = v
	}
}

// TestQueryMatchInlined: the row tests of both queries (Match, Has) are
// inlined into a caller's row loop, as docs/ARCHITECTURE.md ("Queries")
// says: a term that pushed Match over Go's inlining budget would add a call
// per row to every query.
func TestQueryMatchInlined(t *testing.T) {
	cmd := exec.Command("go", "build", "-gcflags=-m=2", "./world", "./sync")
	cmd.Dir = ".."
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	for _, fn := range []struct{ file, name string }{
		{"world/query.go", `(*Query).Match`}, {"world/query.go", `(*Query).Has`},
		{"sync/query.go", `(*FrameQuery).Match`}, {"sync/query.go", `(*FrameQuery).Has`},
	} {
		re := regexp.MustCompile(regexp.QuoteMeta(fn.file) + `:.*can inline ` + regexp.QuoteMeta(fn.name) + ` with cost (\d+)`)
		m := re.FindStringSubmatch(string(out))
		require.NotNil(t, m, "%s %s is not inlined", fn.file, fn.name)
		t.Logf("%s: cost %s", fn.name, m[1])
	}
}
