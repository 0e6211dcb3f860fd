package cli

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/fdp-engine/fdp/internal/buildinfo"
	"github.com/fdp-engine/fdp/ipc"
	"github.com/fdp-engine/fdp/layout"
	"github.com/stretchr/testify/require"
)

// TestVersion: every program built on cli has --version: its name, the
// build and the layout and control protocol versions, on stdout.
func TestVersion(t *testing.T) {
	w := testWorld()
	w.Name = "mine"
	c := Command(w)
	var out bytes.Buffer
	c.SetOut(&out)
	c.SetArgs([]string{"--version"})
	require.NoError(t, c.Execute())
	require.Equal(t, buildinfo.Line("mine")+"\n", out.String())
	require.Contains(t, out.String(), fmt.Sprintf("layout %d, control protocol %d", layout.Version, ipc.ControlProtoVersion))
}
