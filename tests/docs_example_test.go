package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/world"
	"github.com/stretchr/testify/require"
)

// docPrograms returns the Go code blocks of file that are whole programs
// (package main).
func docPrograms(t *testing.T, file string) []string {
	b, err := os.ReadFile(file)
	require.NoError(t, err)
	var out []string
	for s := string(b); ; {
		i := strings.Index(s, "\n```go\n")
		if i < 0 {
			return out
		}
		s = s[i+len("\n```go\n"):]
		end := strings.Index(s, "\n```\n")
		require.GreaterOrEqual(t, end, 0, "%s: unterminated code block", file)
		if block := s[:end+1]; strings.HasPrefix(block, "package main\n") {
			out = append(out, block)
		}
		s = s[end:]
	}
}

// expectedOutput returns the lines after "// Output:" in a program, without
// the comment markers ("" and false when it has none).
func expectedOutput(src string) (string, bool) {
	i := strings.Index(src, "\t// Output:\n")
	if i < 0 {
		return "", false
	}
	var b strings.Builder
	for _, l := range strings.Split(src[i+len("\t// Output:\n"):], "\n") {
		l = strings.TrimSpace(l)
		if !strings.HasPrefix(l, "//") {
			break
		}
		b.WriteString(strings.TrimSpace(strings.TrimPrefix(l, "//")) + "\n")
	}
	return b.String(), true
}

// TestDocExamplesBuild builds every whole program of README.md and
// docs/ARCHITECTURE.md as written (inside this repository's module, through
// a build overlay: nothing is written into the tree) and runs those with an
// "// Output:" comment, comparing what they print. (The README's module
// example also runs against an engine: TestReadmeModuleExample.)
func TestDocExamplesBuild(t *testing.T) {
	root, err := filepath.Abs("..")
	require.NoError(t, err)
	n := 0
	for _, doc := range []string{"README.md", "docs/ARCHITECTURE.md"} {
		for i, src := range docPrograms(t, filepath.Join(root, doc)) {
			n++
			bin, err := buildDocProgram(t, "tests/doc_example", src)
			require.NoError(t, err, "%s: program %d does not build", doc, i)
			if want, ok := expectedOutput(src); ok {
				got, err := exec.Command(bin).CombinedOutput()
				require.NoError(t, err, "%s: program %d: %s", doc, i, got)
				require.Equal(t, want, string(got), "%s: program %d prints what its Output comment says", doc, i)
			}
		}
	}
	require.GreaterOrEqual(t, n, 2, "the README's module example and the architecture's examples")
}

// TestReadmeNamerExample runs the README's Namer (the variable-size
// components' example) against a demo engine: each tick it plays back
// names one entity of its own "namer @N" and has its second, too long name
// rejected as too_large, once per tick: nothing else is rejected.
func TestReadmeNamerExample(t *testing.T) {
	root, err := filepath.Abs("..")
	require.NoError(t, err)
	var src string
	for _, p := range docPrograms(t, filepath.Join(root, "README.md")) {
		if strings.Contains(p, "type Namer struct") {
			src = p
		}
	}
	require.NotEmpty(t, src, "the README has the Namer example")
	bin, err := buildDocProgram(t, "tests/doc_example", src)
	require.NoError(t, err, "the README's Namer does not build")

	eng, sim, inst := docDemoEngine(t, "nm", 1000, 300)
	s := sim.S
	var stderr syncBuf
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "FDP_INSTANCE="+inst)
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	deadline := time.Now().Add(30 * time.Second)
	for {
		m, ok := moduleInfo(eng, "namer")
		if ok && m.Stats.Runs >= 3 && eng.Idle() {
			break
		}
		require.True(t, time.Now().Before(deadline), "the Namer did not tick 3 times; its stderr:\n%s", stderr.String())
		eng.Step()
		time.Sleep(time.Millisecond) // frame pacing, not a synchronisation
	}
	before, _ := moduleInfo(eng, "namer") // every tick it was given is done, its batch committed
	eng.Step()                            // plays them back (and may give it one more tick)
	m, _ := moduleInfo(eng, "namer")
	require.Zero(t, m.Stats.Failures, "its stderr:\n%s", stderr.String())
	tooLong := m.PlaybackRejectReasons["too_large"]
	require.GreaterOrEqual(t, tooLong, before.Stats.Runs, "one too_large per tick played back: %v", m.PlaybackRejectReasons)
	require.LessOrEqual(t, tooLong, m.Stats.Runs, "one too_large per tick played back: %v", m.PlaybackRejectReasons)
	require.Len(t, m.PlaybackRejectReasons, 1, "nothing else rejected: %v", m.PlaybackRejectReasons)
	// The entities it created keep their first name.
	named := 0
	q := sim.W.Query(world.MaskOf(s.Name))
	for q.Next() {
		for i := 0; i < q.Rows(); i++ {
			if b, ok := sim.W.GetBytes(q.Entity(i), s.Name); q.Match(i) && ok && strings.HasPrefix(string(b), "namer @") {
				named++
			}
		}
	}
	require.Equal(t, eng.ModuleEntities()["namer"], named, "its entities are named \"namer @N\"")
}
