package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// docPathToken matches what could be a relative file path in a document:
// words of path characters with a slash or a file extension.
var docPathToken = regexp.MustCompile(`[A-Za-z0-9_][A-Za-z0-9_./-]*`)

// docRefs returns the relative paths that text (a document in dir, relative
// to the repository's root) names and that do not exist: every token that
// starts with a top-level entry of the repository followed by a slash
// (docs/LAYOUT.md, world/mask.go, examples/thermostat) and every *.md,
// relative to the root or to dir. Tokens with "..." (Go package patterns)
// are not paths.
func docRefs(root, dir, text string, top map[string]bool) []string {
	var missing []string
	seen := map[string]bool{}
	for _, tok := range docPathToken.FindAllString(text, -1) {
		tok = strings.TrimRight(tok, ".-")
		if seen[tok] || strings.Contains(tok, "...") {
			continue
		}
		seen[tok] = true
		first, _, slash := strings.Cut(tok, "/")
		if !(slash && top[first]) && !strings.HasSuffix(tok, ".md") {
			continue
		}
		if _, err := os.Stat(filepath.Join(root, tok)); err == nil {
			continue
		}
		if _, err := os.Stat(filepath.Join(root, dir, tok)); err == nil {
			continue
		}
		missing = append(missing, tok)
	}
	return missing
}

// TestDocFileReferences: every file or directory of the repository that
// README.md and docs/*.md name exists (issue 18: the docs cited a design
// file that is not in the repository).
func TestDocFileReferences(t *testing.T) {
	root, err := filepath.Abs("..")
	require.NoError(t, err)
	out, err := exec.Command("git", "-C", root, "ls-files").Output()
	require.NoError(t, err)
	top := map[string]bool{}
	for _, f := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if first, _, ok := strings.Cut(f, "/"); ok {
			top[first] = true
		}
	}
	require.True(t, top["docs"] && top["world"], "git ls-files: %v", top)
	docs, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	require.NoError(t, err)
	docs = append(docs, filepath.Join(root, "README.md"))
	for _, d := range docs {
		b, err := os.ReadFile(d)
		require.NoError(t, err)
		rel, _ := filepath.Rel(root, d)
		require.Empty(t, docRefs(root, filepath.Dir(rel), string(b), top), "%s names files that do not exist", rel)
	}
	// The check can fail: a design file outside the repository, a source
	// file that moved.
	require.Equal(t, []string{"shared/DESIGN.md", "world/nomask.go"},
		docRefs(root, "docs", "goal (shared/DESIGN.md); see world/nomask.go and world/mask.go, docs/LAYOUT.md, LAYOUT.md", top))
}
