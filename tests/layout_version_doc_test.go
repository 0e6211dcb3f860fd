package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fdp-engine/fdp/layout"
)

// TestDocsNameCurrentLayoutVersion: wherever README.md or docs/*.md name the
// layout version ("layout version N", "layout version is N", "layout
// version, `N`", "layout N"; line breaks allowed), N is layout.Version. (A
// module-segment paragraph said 3 after the bump to 4.) Past versions are
// named otherwise ("version 3 world segments", "version 1 of the layout").
func TestDocsNameCurrentLayoutVersion(t *testing.T) {
	files, err := filepath.Glob("../docs/*.md")
	require.NoError(t, err)
	files = append(files, "../README.md")
	re := regexp.MustCompile("(?i)\\blayout(?: version)?(?: is|,)? `?(\\d+)`?")
	found := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		text := strings.Join(strings.Fields(string(b)), " ")
		for _, m := range re.FindAllStringSubmatch(text, -1) {
			found++
			require.Equal(t, fmt.Sprint(layout.Version), m[1], "%s: %q", f, m[0])
		}
	}
	require.GreaterOrEqual(t, found, 4, "the docs name the layout version (LAYOUT.md, PROTOCOL.md, README.md)")
}
