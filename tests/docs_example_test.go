package tests

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

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
			dir := t.TempDir()
			file := filepath.Join(dir, "main.go")
			require.NoError(t, os.WriteFile(file, []byte(src), 0o600))
			overlay, err := json.Marshal(map[string]map[string]string{
				"Replace": {filepath.Join(root, "tests", "doc_example", "main.go"): file},
			})
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(filepath.Join(dir, "overlay.json"), overlay, 0o600))
			bin := filepath.Join(dir, "example")
			build := exec.Command("go", "build", "-overlay", filepath.Join(dir, "overlay.json"), "-o", bin, "./tests/doc_example")
			build.Dir = root
			out, err := build.CombinedOutput()
			require.NoError(t, err, "%s: program %d does not build:\n%s\n--- the program:\n%s", doc, i, out, src)
			if want, ok := expectedOutput(src); ok {
				got, err := exec.Command(bin).CombinedOutput()
				require.NoError(t, err, "%s: program %d: %s", doc, i, got)
				require.Equal(t, want, string(got), "%s: program %d prints what its Output comment says", doc, i)
			}
		}
	}
	require.GreaterOrEqual(t, n, 2, "the README's module example and the architecture's examples")
}
