package ipc

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestRemoteDecode: a remote batch is told from a hello and a ctl request;
// malformed ones are refused with ErrBadCtl and one line (docs/PROTOCOL.md
// "Remote command batches").
func TestRemoteDecode(t *testing.T) {
	b, ok, err := remoteDecode([]byte(`{"remote": {"module": "ai-1", "mirror": "far", "incarnation": 5, "seq": 12, "frame": 1204, "commands": "AQAEAAAAAAAAAA=="}}`))
	require.True(t, ok)
	require.NoError(t, err)
	require.Equal(t, RemoteBatch{Module: "ai-1", Mirror: "far", Incarnation: 5, Seq: 12, Frame: 1204, Commands: []byte{1, 0, 4, 0, 0, 0, 0, 0, 0, 0}}, b)
	_, ok, _ = remoteDecode([]byte(`{"name": "m", "proto_version": 3}`))
	require.False(t, ok, "a hello is not a remote batch")
	for _, tc := range []struct{ msg, want string }{
		{`{"remote": {"module": "m", "incarnation": 1, "seq": 1, "colour": 1}}`, "unknown field"},
		{`{"remote": {"module": "m", "incarnation": 0, "seq": 1}}`, "incarnation 0"},
		{`{"remote": {"module": "m", "incarnation": 1, "seq": 0}}`, "sequence 0"},
		{`{"remote": {"module": "", "incarnation": 1, "seq": 1}}`, "module name"},
		{`{"remote": {"module": "m", "incarnation": 1, "seq": "x"}}`, "cannot unmarshal"},
		{`{"remote": {"module": "m", "incarnation": 1, "seq": 1, "commands": "` + strings.Repeat("A", (RemoteMaxCommands/3+1)*4) + `"}}`, "command bytes"},
	} {
		_, ok, err := remoteDecode([]byte(tc.msg))
		require.True(t, ok, tc.msg)
		require.ErrorIs(t, err, ErrBadCtl, tc.msg)
		require.ErrorContains(t, err, tc.want, tc.msg)
		require.NotContains(t, err.Error(), "\n")
	}
}
