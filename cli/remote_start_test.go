package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestRemoteStartErrors: a mirror or bridge whose nkey file holds no seed
// fails at start with one line naming the file and the reason (no
// formatting verb left in it) and exit 1, and the mirror prints no
// summary.
func TestRemoteStartErrors(t *testing.T) {
	useTempShm(t)
	bad := filepath.Join(t.TempDir(), "bad.creds")
	require.NoError(t, os.WriteFile(bad, []byte("not a seed\n"), 0o600))
	for _, cmd := range []string{"mirror", "bridge"} {
		out, errOut, code := runMain(t, cmd, "--nats", "nats://127.0.0.1:1", "--instance", "demo", "--nkey", bad, "--status", "0")
		t.Logf("%s: %q %q", cmd, out, errOut)
		require.Equal(t, 1, code, "%s: %s%s", cmd, out, errOut)
		require.Contains(t, errOut, "nkey file "+bad+": ", cmd)
		require.NotContains(t, errOut, "%!", cmd)
		require.NotContains(t, out, "frames published", "%s: no summary before a start-up error", cmd)
		require.Equal(t, 1, strings.Count(strings.TrimSpace(errOut), "\n")+1, "%s: one line: %q", cmd, errOut)
	}
}
