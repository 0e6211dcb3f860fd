package thermostat_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// trimmed returns the lines of s without their leading and trailing
// blanks: a README block shows the example's code indented with spaces, and
// some blocks from inside a function, one level less indented.
func trimmed(s string) []string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimSpace(l)
	}
	return lines
}

// containsLines reports whether want occurs in have as consecutive lines.
func containsLines(have, want []string) bool {
	for i := 0; i+len(want) <= len(have); i++ {
		if strings.Join(have[i:i+len(want)], "\n") == strings.Join(want, "\n") {
			return true
		}
	}
	return false
}

// TestReadmeYourOwnWorld: every code block of the README's "Your own world"
// section is the example's code as it is (line for line, indentation
// aside), so that the walkthrough shows code this package builds and
// TestThermostatUnderUp runs.
func TestReadmeYourOwnWorld(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	s := string(b)
	i := strings.Index(s, "\n### Your own world\n")
	require.GreaterOrEqual(t, i, 0, "README.md has no section \"Your own world\"")
	s = s[i+1:]
	if next := regexp.MustCompile(`\n##+ `).FindStringIndex(s); next != nil {
		s = s[:next[0]+1]
	}
	var files [][]string
	for _, pat := range []string{"*.go", "*.yaml", "cmd/*/*.go"} {
		names, err := filepath.Glob(pat)
		require.NoError(t, err)
		for _, n := range names {
			if strings.HasSuffix(n, "_test.go") {
				continue
			}
			src, err := os.ReadFile(n)
			require.NoError(t, err)
			files = append(files, trimmed(string(src)))
		}
	}
	// The walkthrough is complete: the module set-up outside this
	// repository, the packages' clauses and imports, the embedded config,
	// and a whole cli.World function (it stopped at "Simulation: ...},").
	for _, want := range []string{"go mod init ", "go mod edit -require=github.com/fdp-engine/fdp@v0.0.0 -replace=github.com/fdp-engine/fdp=",
		"go get github.com/fdp-engine/fdp@", "```go\npackage thermostat\n\nimport (\n    _ \"embed\"", "//go:embed thermostat.yaml\nvar config []byte",
		"\n    }, nil\n}\n```"} {
		require.Contains(t, s, want, "the walkthrough")
	}
	require.Equal(t, 2, strings.Count(s, "```go\npackage main\n\nimport ("), "both programs whole, imports included")
	blocks := regexp.MustCompile("(?s)```(go|yaml)\n(.*?)```\n").FindAllStringSubmatch(s, -1)
	require.GreaterOrEqual(t, len(blocks), 7, "the walkthrough's code blocks")
	for _, blk := range blocks {
		want := trimmed(blk[2])
		found := false
		for _, f := range files {
			if containsLines(f, want) {
				found = true
				break
			}
		}
		require.True(t, found, "this README block is not in examples/thermostat as it is:\n%s", blk[2])
	}
}
