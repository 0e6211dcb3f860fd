package buildinfo

import (
	"fmt"
	"strings"
	"testing"

	"github.com/fdp-engine/fdp/ipc"
	"github.com/fdp-engine/fdp/layout"
	"github.com/stretchr/testify/require"
)

func TestString(t *testing.T) {
	versions := fmt.Sprintf("layout %d, control protocol %d", layout.Version, ipc.ControlProtoVersion)
	for _, c := range []struct {
		in   Info
		want string
	}{
		{Info{}, Module + " unknown, " + versions},
		{Info{Main: Module, MainVersion: "(devel)", GoVersion: "go1.26.8"}, Module + " (devel), " + versions + ", go1.26.8"},
		{Info{Main: Module, MainVersion: "v1.2.3", Revision: "0123456789abcdef0123", Time: "2026-12-02T14:00:00Z", Modified: true},
			Module + " v1.2.3, revision 0123456789ab+dirty (2026-12-02T14:00:00Z), " + versions},
		{Info{Main: "example.com/mine", MainVersion: "v0.1.0", FDP: "v1.0.0", Revision: "abc"},
			"example.com/mine v0.1.0 (fdp v1.0.0), revision abc, " + versions},
	} {
		require.Equal(t, c.want, c.in.String())
	}
}

// TestRead: a test binary has build information; its main module is FDP.
func TestRead(t *testing.T) {
	in := Read()
	require.NotEmpty(t, in.GoVersion)
	require.True(t, strings.HasPrefix(Line("x"), "x "+in.Main+" "), Line("x"))
}
