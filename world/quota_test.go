package world

import (
	"errors"
	"testing"

	"github.com/fdp-engine/fdp/layout"
	"github.com/stretchr/testify/require"
)

func requireReason(t *testing.T, err error, r RejectReason) {
	t.Helper()
	var re *RejectError
	require.True(t, errors.As(err, &re), "want a RejectError, got %v", err)
	require.Equal(t, r, re.Reason)
}

// TestPlaybackEventQuota: events beyond the batch's MaxEventBytes are
// rejected with event_quota, the events before them stay applied, and the
// next batch has its full quota again.
func TestPlaybackEventQuota(t *testing.T) {
	f := newFixture(t, 16, 4)
	p := NewPlayback(f.w)
	rec := layout.EventRecordSize(100)
	p.MaxEventBytes = 3 * rec
	for range 2 {
		p.Begin()
		for i := range 5 {
			err := p.Apply(CmdEvent, cmdEvent(7, make([]byte, 100)))
			if i < 3 {
				require.NoError(t, err)
			} else {
				requireReason(t, err, RejectEventQuota)
			}
		}
		require.Equal(t, 3*rec, p.EventBytes())
	}
	require.Len(t, f.w.FrameEvents(), 6)
	require.Equal(t, uint64(4), p.Stats.Rejected[RejectEventQuota])
	require.Equal(t, "event_quota", RejectEventQuota.String())

	// A create is charged its "created" notice.
	p.NoticeBytes = rec
	p.Begin()
	require.NoError(t, p.Apply(CmdEvent, cmdEvent(7, make([]byte, 100))))
	require.NoError(t, p.Apply(CmdCreate, cmdCreate(1)))
	require.NoError(t, p.Apply(CmdCreate, cmdCreate(2)))
	requireReason(t, p.Apply(CmdCreate, cmdCreate(3)), RejectEventQuota)
	require.Len(t, p.Created(), 2)
	require.Equal(t, 2, f.w.Count())

	// No quota: nothing is rejected.
	p.MaxEventBytes = 0
	p.Begin()
	for range 10 {
		require.NoError(t, p.Apply(CmdEvent, cmdEvent(7, make([]byte, 100))))
	}
}

// TestPlaybackEntityQuota: creates beyond MaxEntities live entities of the
// playback's owner are rejected with entity_quota; destroying one of them,
// by anyone (another playback, the world itself), gives the room back; the
// entities of other owners and of nobody do not count.
func TestPlaybackEntityQuota(t *testing.T) {
	f := newFixture(t, 16, 8)
	a, b := NewPlayback(f.w), NewPlayback(f.w)
	a.Owner, a.MaxEntities = 1, 3
	b.Owner, b.MaxEntities = 2, 3
	_, err := f.w.Create() // nobody's
	require.NoError(t, err)
	a.Begin()
	for i := range 5 {
		err := a.Apply(CmdCreate, cmdCreate(uint32(i)))
		if i < 3 {
			require.NoError(t, err)
		} else {
			requireReason(t, err, RejectEntityQuota)
		}
	}
	require.Equal(t, 3, f.w.Owned(1))
	require.Equal(t, uint64(2), a.Stats.Rejected[RejectEntityQuota])
	require.Equal(t, "entity_quota", RejectEntityQuota.String())
	created := append([]TempMapping(nil), a.Created()...)
	for _, c := range created {
		require.Equal(t, uint16(1), f.w.Owner(c.Entity))
	}

	// Another owner has its own quota.
	b.Begin()
	for i := range 3 {
		require.NoError(t, b.Apply(CmdCreate, cmdCreate(uint32(i))))
	}
	require.Equal(t, 3, f.w.Owned(2))

	// b destroys one of a's entities, the world another: a's count drops.
	b.Begin()
	require.NoError(t, b.Apply(CmdDestroy, cmdRef(created[0].Entity)))
	require.NoError(t, f.w.Destroy(created[1].Entity))
	require.Equal(t, 1, f.w.Owned(1))
	require.Equal(t, 3, f.w.Owned(2))
	require.Equal(t, NoOwner, f.w.Owner(created[0].Entity))

	// a may create two more; the reused indices are owned by a again.
	a.Begin()
	require.NoError(t, a.Apply(CmdCreate, cmdCreate(0)))
	require.NoError(t, a.Apply(CmdCreate, cmdCreate(1)))
	requireReason(t, a.Apply(CmdCreate, cmdCreate(2)), RejectEntityQuota)
	require.Equal(t, 3, f.w.Owned(1))

	// A restore forgets owners (they are not part of a frame).
	f.w.resetOwners()
	require.Zero(t, f.w.Owned(1))
	require.Zero(t, f.w.Owned(2))
}

// TestPlaybackEventCredit: with EventBytesPerFrame below MaxEventBytes the
// quota is a bucket: a full bucket at first, then the per-frame rate, and
// a full bucket again after enough idle frames.
func TestPlaybackEventCredit(t *testing.T) {
	f := newFixture(t, 16, 4)
	p := NewPlayback(f.w)
	rec := layout.EventRecordSize(100)
	p.EventBytesPerFrame, p.MaxEventBytes = rec, 4*rec
	publish := func(frame uint64) (n int) {
		p.BeginFrame(frame)
		for range 10 {
			if p.Apply(CmdEvent, cmdEvent(7, make([]byte, 100))) == nil {
				n++
			}
		}
		return n
	}
	require.Equal(t, 4, publish(1), "a full bucket at first")
	require.Equal(t, 1, publish(2), "then the rate")
	require.Equal(t, 1, publish(3))
	require.Equal(t, 2, publish(5), "two frames of credit")
	require.Equal(t, 4, publish(100), "full again, never more")
	require.Equal(t, uint64(10*5-12), p.Stats.Rejected[RejectEventQuota])
}
