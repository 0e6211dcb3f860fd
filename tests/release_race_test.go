package tests

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/host"
	"github.com/fdp-engine/fdp/internal/testutil"
	"github.com/fdp-engine/fdp/ipc"
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/module"
	"github.com/fdp-engine/fdp/shm"
	"github.com/fdp-engine/fdp/world"
	"github.com/stretchr/testify/require"
)

// The release race: the three members of one convoy finish the tick of one
// shared snapshot at the same instant, round after round, and the snapshot's
// slot must go back to the pool exactly once each time.
//
// The members meet at a barrier in shared words (testutil.Words) inside
// their tick: each adds itself to an arrival counter and spins (yielding the
// CPU) until all three of the round have arrived, then returns, so that the
// SDK writes the three done words within a few microseconds of each other
// (the skew is measured: each member stores its monotonic time as it leaves
// the barrier). The test drives the engine with Step and checks, every
// round, the lease accounting of the publisher: one snapshot leased to
// exactly the three members while they run, nothing leased once the engine
// has seen them done, every other slot free, no publish or snapshot refused.

const raceEnv = "FDP_RACE_CHILD"

// Shared words of the race: the arrival counter, then per member the
// monotonic time it left the barrier and the frame its view showed.
const (
	raceArrive  = 0
	racePass    = 1 // + member
	raceFrame   = 4 // + member
	raceMembers = 3
	raceWords   = 7
)

// racer is a convoy member that meets the others at the barrier.
type racer struct {
	spec  module.Spec
	k     int
	w     *testutil.Words
	ticks uint64
}

func (r *racer) Spec() module.Spec { return r.spec }

func (r *racer) Tick(v *module.View, _ *module.Commands, _ time.Duration) error {
	r.ticks++
	r.w.Add(raceArrive, 1)
	target := raceMembers * r.ticks
	var deadline time.Time
	for i := 0; r.w.Load(raceArrive) < target; i++ {
		if i%64 == 63 {
			// Three spinners and the engine share two vCPUs here.
			testutil.Yield()
			if deadline.IsZero() {
				deadline = time.Now().Add(10 * time.Second)
			} else if time.Now().After(deadline) {
				return fmt.Errorf("barrier of tick %d: %d of %d arrivals", r.ticks, r.w.Load(raceArrive), target)
			}
		}
	}
	r.w.Store(racePass+r.k, ipc.MonoNanos())
	r.w.Store(raceFrame+r.k, v.Frame())
	return nil
}

func runRacer(string) int {
	s := newSchema()
	k, _ := strconv.Atoi(os.Getenv("FDP_RACE_K"))
	w, err := testutil.OpenWords(os.Getenv("FDP_RACE_WORDS"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "racer:", err)
		return 1
	}
	// MaxRuntime: far above the barrier's wait on a loaded machine (a
	// revoked snapshot is a documented failure, not this test's subject).
	m := &racer{k: k, w: w, spec: module.Spec{Name: os.Getenv("FDP_MODULE"), Tier: module.Slow, Every: 1, Group: "race",
		Reads: world.MaskOf(s.pos), MaxRuntime: 30 * time.Second}}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	err = module.Run(context.Background(), m, module.Options{Instance: os.Getenv("FDP_INSTANCE"), Registry: s.reg, Logger: log})
	if err != nil && !errors.Is(err, module.ErrEngineGone) {
		fmt.Fprintln(os.Stderr, "racer:", err)
		return 1
	}
	return 0
}

// pollUntil polls cond, yielding the CPU between polls, until it holds or
// limit passes; it reports whether it held.
func pollUntil(limit time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(limit)
	for i := 0; !cond(); i++ {
		if i%16 == 15 && time.Now().After(deadline) {
			return false
		}
		testutil.Yield() // polling a condition other processes change, bounded
	}
	return true
}

// TestReleaseRace: FDP_RACE_ROUNDS rounds (default 10,000) of three convoy
// members finishing one snapshot at the same instant. Even rounds wait for
// the release through Engine.Idle, odd rounds watch the members' done words
// in their segments and let the next Step's dispatch release the slot and
// lease the next snapshot in the same pass.
func TestReleaseRace(t *testing.T) {
	testutil.RunChild(raceEnv, runRacer)
	rounds := module.EnvInt("FDP_RACE_ROUNDS", 10000)
	if testing.Short() {
		rounds = min(rounds, 1000)
	}
	r := newRig(t, 100)
	words := testutil.CreateWords(t, raceWords)
	for k := 0; k < raceMembers; k++ {
		testutil.StartChild(t, testutil.ChildOptions{Test: "TestReleaseRace", Env: []string{
			raceEnv + "=racer", "FDP_MODULE=race-" + strconv.Itoa(k), "FDP_INSTANCE=" + r.inst,
			"FDP_RACE_K=" + strconv.Itoa(k), "FDP_RACE_WORDS=" + words.Path,
		}})
	}
	// All three must have joined before the first dispatch: a round with
	// two members would leave them at the barrier.
	require.True(t, pollUntil(30*time.Second, r.joined(raceMembers)), "the members did not join")
	mods := r.eng.Modules()
	require.Len(t, mods, raceMembers)
	var members layout.ModuleSet
	doneWords := make([]*shm.Segment, 0, raceMembers)
	memberSlots := make([]int, 0, raceMembers)
	for _, m := range mods {
		require.Equal(t, "group:race", m.Group)
		members.Set(m.Slot)
		seg, err := shm.Open(layout.ModuleSegmentName(r.inst, m.Slot), false)
		require.NoError(t, err)
		defer seg.Close()
		doneWords = append(doneWords, seg)
		memberSlots = append(memberSlots, m.Slot)
	}
	// notDone returns the members whose done word is still before frame.
	notDone := func(frame uint64) (set layout.ModuleSet) {
		for i, seg := range doneWords {
			if d, _ := layout.DoneFrame(layout.Load64(seg.Data, layout.OffMDoneFrame)); d < frame {
				set.Set(memberSlots[i])
			}
		}
		return set
	}
	allDone := func(frame uint64) func() bool {
		return func() bool { return notDone(frame).Empty() }
	}
	pub := r.eng.Publisher()
	slots := pub.Layout().Slots
	leases, err := shm.Open(shm.SegmentName(r.inst, "leases"), false)
	require.NoError(t, err)
	defer leases.Close()
	ll := pub.LeasesLayout()
	// leased returns the slots with holders (publisher and the leases
	// segment's copy must agree).
	leased := func() (held []int) {
		for s := 0; s < slots; s++ {
			h := pub.Holders(s)
			require.Equal(t, h, layout.GetModuleSet(leases.Data, ll.LeaseOff(s)+layout.LeaseHolders), "slot %d: leases segment copy", s)
			if !h.Empty() {
				held = append(held, s)
			}
		}
		return held
	}

	skews := make([]time.Duration, 0, rounds)
	snaps := r.eng.Snapshots
	start := time.Now()
	prevSlot := -1
	for round := 0; round < rounds; round++ {
		viaIdle := round%2 == 0
		st := r.eng.Step()
		require.NoError(t, st.PublishErr, "round %d: publish refused", round)
		require.Equal(t, raceMembers, st.Dispatched, "round %d: dispatched ticks", round)
		snaps++
		require.Equal(t, snaps, r.eng.Snapshots, "round %d: one convoy snapshot per round", round)
		// Leased now: exactly the round's snapshot, to exactly the three. A
		// slot of the previous round still held (a release lost) or
		// released to the pool twice (a holder bit of this round missing)
		// shows here.
		held := leased()
		require.Len(t, held, 1, "round %d: leased slots %v (previous round's slot %d)", round, held, prevSlot)
		require.Equal(t, members, pub.Holders(held[0]), "round %d: holders of slot %d", round, held[0])
		require.Equal(t, 1, r.eng.LeasedSlots(), "round %d", round)
		prevSlot = held[0]

		if viaIdle {
			// While the engine releases the members one by one (Idle sees
			// their done words), a member that has not written its done
			// word must still hold the slot: a slot given back early (a
			// double free of another member's hold) shows here. Holders
			// first: a member not done after that read was not done
			// before it either.
			var early layout.ModuleSet
			require.True(t, pollUntil(10*time.Second, func() bool {
				idle := r.eng.Idle()
				h := pub.Holders(held[0])
				if missing := notDone(st.Frame).Minus(h); !missing.Empty() {
					early = early.Union(missing)
				}
				return idle
			}), "round %d: the members did not finish", round)
			require.Zero(t, early, "round %d: slot %d released while members (slots %v) still read it", round, held[0], early)
			// Seen done: the slot is back in the pool, and so is every
			// other slot but the latest.
			require.Empty(t, leased(), "round %d: released", round)
			require.Zero(t, r.eng.LeasedSlots(), "round %d", round)
			require.Zero(t, pub.WatchedPins(), "round %d: no pin watched", round)
			free := 0
			for s := 0; s < slots; s++ {
				if s != pub.Latest() && pub.Holders(s).Empty() {
					free++
				}
			}
			require.Equal(t, slots-1, free, "round %d: free slots", round)
		} else {
			// The next Step releases it (dispatch's checkDone) before it
			// leases the next snapshot; checked after that Step.
			require.True(t, pollUntil(10*time.Second, allDone(st.Frame)), "round %d: the members did not finish", round)
		}
		lo, hi := int64(0), int64(0)
		for k := 0; k < raceMembers; k++ {
			require.Equal(t, st.Frame, words.Load(raceFrame+k), "round %d: member %d's view", round, k)
			p := int64(words.Load(racePass + k))
			if k == 0 || p < lo {
				lo = p
			}
			if k == 0 || p > hi {
				hi = p
			}
		}
		skews = append(skews, time.Duration(hi-lo))
	}
	elapsed := time.Since(start)
	require.True(t, pollUntil(10*time.Second, r.eng.Idle))
	require.Empty(t, leased(), "after the last round")

	for _, m := range r.eng.Modules() {
		require.Equal(t, uint64(rounds), m.Stats.Runs, "%s: runs", m.Name)
		require.Zero(t, m.Stats.Failures, "%s: failures", m.Name)
		require.Zero(t, m.Stats.Skipped, "%s: skipped", m.Name)
		require.Zero(t, m.Stats.BadDone+m.Stats.Revoked+m.Stats.Overruns+m.Stats.Deaths, "%s: %+v", m.Name, m.Stats)
		require.Equal(t, host.StateRunning, m.State, m.Name)
	}
	require.Zero(t, pub.Skipped, "publishes refused for lack of a slot")
	require.Zero(t, pub.SnapshotsNoSlot, "snapshots refused")
	require.Zero(t, r.eng.Bounds().SnapshotsRefused)
	require.Zero(t, r.eng.ReclaimedReaders, "slot state reclaimed after a refused publish")
	require.Equal(t, uint64(rounds), words.Load(raceArrive)/raceMembers)

	sort.Slice(skews, func(i, j int) bool { return skews[i] < skews[j] })
	pct := func(p float64) time.Duration { return skews[int(p*float64(len(skews)-1))] }
	t.Logf("release race: %d rounds in %v (%v per round); members left the barrier within p50 %v, p99 %v, max %v of each other",
		rounds, elapsed.Round(time.Millisecond), (elapsed / time.Duration(rounds)).Round(time.Microsecond),
		pct(0.5), pct(0.99), skews[len(skews)-1])
}
