package host

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/ipc"
	"github.com/fdp-engine/fdp/world"
	"github.com/stretchr/testify/require"
)

// TestRemoteBatches: remote batches over the control socket are played on
// the frame thread, validated like local ones (a stale destroy is
// rejected, a create applied), each sequence of an incarnation once
// (X1: again, or after a later one, it is a duplicate), malformed ones
// refused with one clear error and counted, and a replay refuses them.
func TestRemoteBatches(t *testing.T) {
	s := newRSchema()
	w := newRWorld(t, s)
	e, err := New(Config{Instance: testInstance(t), Logger: quietLog()}, w, nil)
	require.NoError(t, err)
	defer e.Close()
	before := w.Count()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = e.Run(ctx, nil) }()
	defer wg.Wait()
	defer cancel()
	inst := e.Config().Instance

	create := AppendRemoteCommand(nil, world.CmdCreate, make([]byte, world.CmdCreateSize))
	stale := make([]byte, world.CmdRefSize)
	world.EncodeRef(stale, world.MakeEntity(1<<20, 3))
	both := AppendRemoteCommand(append([]byte(nil), create...), world.CmdDestroy, stale)
	send := func(seq uint64, cmds []byte) (ipc.RemoteResult, error) {
		return ipc.SendRemote(inst, ipc.RemoteBatch{Module: "far", Mirror: "m1", Incarnation: 9, Seq: seq, Commands: cmds}, 10*time.Second)
	}
	res, err := send(1, both)
	require.NoError(t, err)
	require.Equal(t, ipc.RemoteResult{Applied: 1, Rejected: 1, Frame: res.Frame}, res)
	res, err = send(3, create) // ahead of 2
	require.NoError(t, err)
	require.False(t, res.Duplicate)
	for _, seq := range []uint64{1, 3} {
		res, err = send(seq, create)
		require.NoError(t, err)
		require.True(t, res.Duplicate, "seq %d again", seq)
	}
	res, err = send(2, create) // late, after 3: still played once
	require.NoError(t, err)
	require.False(t, res.Duplicate)
	res, err = send(2, create)
	require.NoError(t, err)
	require.True(t, res.Duplicate)

	_, err = send(4, []byte{1, 2, 3})
	require.ErrorIs(t, err, ipc.ErrBadCtl)
	require.ErrorContains(t, err, "trailing bytes")
	_, err = ipc.SendRemote(inst, ipc.RemoteBatch{Module: "far", Incarnation: 0, Seq: 1}, time.Second)
	require.ErrorIs(t, err, ipc.ErrBadCtl)

	rms := e.RemoteModules()
	require.Len(t, rms, 1)
	rm := rms[0]
	require.Equal(t, RemoteModule{Module: "far", Mirror: "m1", Incarnation: 9, LastSeq: 3, Batches: 3, Duplicates: 3, Malformed: 1,
		Applied: 3, Rejected: 1, Lag: rm.Lag, LastFrame: rm.LastFrame}, rm)
	st, err := ipc.Ctl(inst, ipc.CtlRequest{Op: ipc.CtlStatus}, 5*time.Second)
	require.NoError(t, err)
	require.Equal(t, []ipc.RemoteModuleState{{Module: "far", Mirror: "m1", Incarnation: 9, LastSeq: 3, Batches: 3, Duplicates: 3,
		Applied: 3, Rejected: 1, LagFrames: rm.Lag, LastFrame: rm.LastFrame}}, st.Remote, "the status shows the remote module (engine stat)")
	cancel()
	wg.Wait()
	require.Equal(t, before+3, w.Count(), "three creates applied, once each")
}

// TestRemoteRefusedByReplay: a replay (and so a mirror) takes no remote
// batch: they go to the engine that simulates.
func TestRemoteRefusedByReplay(t *testing.T) {
	s := newRSchema()
	e, err := New(Config{Instance: testInstance(t), Logger: quietLog()}, newRWorld(t, s), nil)
	require.NoError(t, err)
	defer e.Close()
	require.NoError(t, e.SetReplay(&sliceSource{}))
	_, err = ipc.SendRemote(e.Config().Instance, ipc.RemoteBatch{Module: "far", Incarnation: 1, Seq: 1}, 5*time.Second)
	require.ErrorIs(t, err, ipc.ErrCtlRefused)
	require.ErrorContains(t, err, "is a replay or a mirror")
}
