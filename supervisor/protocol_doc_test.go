package supervisor

import (
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fdp-engine/fdp/layout"
)

// TestProtocolModuleEnvDocumented: docs/PROTOCOL.md "A module process under
// `engine up`" names every FDP_ variable the supervisor sets in a module's
// environment when the config sets everything (and only those, FDP_METRICS
// and FDP_SHM_DIR aside: the one is removed, the other inherited), says
// which appear only when configured (absent from a module's env when its
// config omits them), and names the exit status of a permanent refusal.
func TestProtocolModuleEnvDocumented(t *testing.T) {
	b, err := os.ReadFile("../docs/PROTOCOL.md")
	require.NoError(t, err)
	doc := string(b)
	i := strings.Index(doc, "### A module process under `engine up`")
	require.GreaterOrEqual(t, i, 0)
	sec := doc[i:]
	sec = sec[:strings.Index(sec, "\n## ")]

	cfg, err := ParseConfig([]byte("instance: envdoc\nengine: {command: [engine, run]}\nmodules:\n" +
		"  - {name: full, command: [x], tier: slow, every: 5, group: g}\n  - {name: bare, command: [x]}\n"))
	require.NoError(t, err)
	s, err := New(cfg, Options{})
	require.NoError(t, err)
	vars := func(name string) []string {
		for _, c := range s.children {
			if c.name == name {
				var out []string
				for _, kv := range c.env {
					if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "FDP_") && k != "FDP_SHM_DIR" {
						out = append(out, k)
					}
				}
				sort.Strings(out)
				return out
			}
		}
		t.Fatalf("no child %s", name)
		return nil
	}
	full, bare := vars("full"), vars("bare")
	documented := regexp.MustCompile(`\$(FDP_[A-Z_]+)`).FindAllStringSubmatch(sec, -1)
	var named []string
	for _, m := range documented {
		named = append(named, m[1])
	}
	for _, k := range full {
		require.Contains(t, named, k, "the section names $%s", k)
	}
	only := regexp.MustCompile("(?s)and ((?:`\\$FDP_[A-Z_]+`,? ?)+) only when the config sets them").FindStringSubmatch(strings.Join(strings.Fields(sec), " "))
	require.NotNil(t, only, "the variables set only when configured")
	for _, k := range full {
		optional := !strings.Contains(strings.Join(bare, " "), k)
		require.Equal(t, optional, strings.Contains(only[1], "$"+k+"`"), "$%s: set only when configured", k)
	}
	require.Contains(t, sec, fmt.Sprintf("%d (`layout.ExitRefused`", layout.ExitRefused))
}
