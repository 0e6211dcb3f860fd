package tests

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/host"
	"github.com/fdp-engine/fdp/ipc"
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/module"
	"github.com/fdp-engine/fdp/shm"
	"github.com/fdp-engine/fdp/world"
	"github.com/stretchr/testify/require"
)

// Hostile modules (issue 11): a module process can write anything into its
// own segment, ring indices and record headers included. These tests run a
// real module process that does so against an engine, and check that every
// inconsistency is counted, logged with a rate limit and reset, that the
// module's next valid batches are applied, and that the other modules are
// unaffected.

// hostileChild runs the hostile-module child role named by
// $FDP_HOSTILE_ROLE and exits; it returns when this process is not such a
// child.
func hostileChild() {
	role := os.Getenv("FDP_HOSTILE_ROLE")
	if role == "" {
		return
	}
	s := newSchema()
	name := os.Getenv("FDP_MODULE")
	var m module.Module
	switch role {
	case "ring":
		m = &ringHostile{s: s, name: name, inst: os.Getenv("FDP_INSTANCE")}
	case "honest":
		m = &honestModule{s: s, name: name}
	case "forger":
		m = &forger{name: name, inst: os.Getenv("FDP_INSTANCE"), victim: os.Getenv("FDP_VICTIM")}
	case "victim":
		m = &victim{s: s, name: name}
	case "flooder":
		m = &flooder{name: name}
	case "listener":
		m = &listener{name: name}
	case "filler":
		m = &filler{name: name}
	default:
		fmt.Fprintln(os.Stderr, "unknown hostile role", role)
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	err := module.Run(context.Background(), m, module.Options{Instance: os.Getenv("FDP_INSTANCE"), Registry: s.reg, Logger: log})
	if err != nil && !errors.Is(err, module.ErrEngineGone) {
		fmt.Fprintln(os.Stderr, "module:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// moduleSegmentOf maps, read-write, the module segment of instance whose
// module name is name: what a hostile module can do with its own segment.
func moduleSegmentOf(inst, name string) (*shm.Segment, *layout.Module, error) {
	paths, err := filepath.Glob(filepath.Join(shm.Dir, shm.SegmentName(inst, "mod.*")))
	if err != nil {
		return nil, nil, err
	}
	for _, p := range paths {
		seg, err := shm.Open(filepath.Base(p), true)
		if err != nil {
			continue
		}
		lm, err := layout.DecodeModule(seg.Data)
		if err == nil && lm.Info.Name == name {
			return seg, lm, nil
		}
		seg.Close()
	}
	return nil, nil, fmt.Errorf("no module segment of %q in instance %s", name, inst)
}

// ringCorruption is one way to make a ring inconsistent, applied by the
// hostile module to its own ring whose consumer head (= tail) is h.
type ringCorruption struct {
	name  string
	apply func(region, data []byte, h uint64)
}

func putHdr(data []byte, h uint64, length uint32, typ, flags uint16) {
	binary.LittleEndian.PutUint64(data[h&uint64(len(data)-1):], layout.PackRecordHeader(length, typ, flags))
}

func setTail(region []byte, t uint64) { layout.Store64(region, layout.RingOffTail, t) }

// ringCorruptions are the inconsistencies of docs/ARCHITECTURE.md ("a
// corrupt ring is counted and reset"), each made from an empty ring.
var ringCorruptions = []ringCorruption{
	{"tail more than the capacity ahead", func(r, d []byte, h uint64) { setTail(r, h+uint64(len(d))+8) }},
	{"tail not aligned", func(r, d []byte, h uint64) { setTail(r, h+12) }},
	{"tail before head", func(r, d []byte, h uint64) { setTail(r, h-16) }},
	{"record length zero", func(r, d []byte, h uint64) { putHdr(d, h, 0, 1, 0); setTail(r, h+8) }},
	{"record length not aligned", func(r, d []byte, h uint64) { putHdr(d, h, 13, 1, 0); setTail(r, h+16) }},
	{"record past the tail", func(r, d []byte, h uint64) { putHdr(d, h, 64, 1, 0); setTail(r, h+16) }},
	{"record over half the capacity", func(r, d []byte, h uint64) {
		putHdr(d, h, uint32(len(d)/2+8), 1, 0)
		setTail(r, h+uint64(len(d)/2+8))
	}},
	{"reserved flag bits", func(r, d []byte, h uint64) { putHdr(d, h, 16, 1, 0x80); setTail(r, h+16) }},
	{"pad record in the middle", func(r, d []byte, h uint64) { putHdr(d, h, 16, layout.RecordTypePad, 0); setTail(r, h+16) }},
}

// ringHostile corrupts its own ring in every way of ringCorruptions, one
// after the other. For each: corrupt (tick n), wait for the engine's reset
// (the ring's reset counter moves), commit a valid batch with a fresh
// producer (create an entity with HP 1000+case), wait until it is consumed,
// then the next case. It never uses the SDK's commands, so the SDK's own
// producer never stores the tail. It prints one line per step.
type ringHostile struct {
	s          *schema
	name, inst string
	seg        *shm.Segment
	region     []byte
	k, phase   int
	resets     uint64
	waited     int
}

func (h *ringHostile) Spec() module.Spec {
	return module.Spec{Name: h.name, Tier: module.Fast, Every: 1}
}

func (h *ringHostile) Tick(*module.View, *module.Commands, time.Duration) error {
	if h.seg == nil {
		seg, lm, err := moduleSegmentOf(h.inst, h.name)
		if err != nil {
			return err
		}
		h.seg, h.region = seg, lm.Ring()
	}
	if h.k >= len(ringCorruptions) {
		return nil
	}
	r := h.region
	data := r[layout.RingHeaderSize:]
	head, tail := layout.Load64(r, layout.RingOffHead), layout.Load64(r, layout.RingOffTail)
	switch h.phase {
	case 0: // corrupt the empty ring
		if head != tail || head&uint64(len(data)-1) > uint64(len(data))-64 {
			return fmt.Errorf("case %d: ring not empty at a usable offset (head %d tail %d)", h.k, head, tail)
		}
		h.resets = layout.Load64(r, layout.RingOffConsResets)
		ringCorruptions[h.k].apply(r, data, head)
		h.phase, h.waited = 1, 0
	case 1: // wait for the engine's reset, then a valid batch
		if layout.Load64(r, layout.RingOffConsResets) == h.resets {
			if h.waited++; h.waited > 3 {
				fmt.Printf("case %d not reset after %d ticks\n", h.k, h.waited)
			}
			return nil
		}
		p, err := ipc.NewProducer(r)
		if err != nil {
			return fmt.Errorf("case %d: ring inconsistent after the engine's reset: %w", h.k, err)
		}
		var b [world.CmdCompHdr + 4]byte
		world.EncodeCreate(b[:world.CmdCreateSize], 1)
		if err := p.Append(world.CmdCreate, b[:world.CmdCreateSize]); err != nil {
			return err
		}
		world.EncodeComp(b[:], world.TempEntity(1), h.s.hp)
		binary.LittleEndian.PutUint32(b[world.CmdCompHdr:], uint32(1000+h.k))
		if err := p.Append(world.CmdSet, b[:]); err != nil {
			return err
		}
		p.Commit()
		fmt.Printf("case %d reset\n", h.k)
		h.phase = 2
	case 2: // wait until the valid batch is consumed
		if head != tail {
			return nil
		}
		fmt.Printf("case %d applied\n", h.k)
		h.k, h.phase = h.k+1, 0
		if h.k == len(ringCorruptions) {
			fmt.Println("done")
		}
	}
	return nil
}

// honestModule creates one entity with HP 7 in each tick.
type honestModule struct {
	s    *schema
	name string
}

func (m *honestModule) Spec() module.Spec {
	return module.Spec{Name: m.name, Tier: module.Fast, Every: 1}
}

func (m *honestModule) Tick(_ *module.View, c *module.Commands, _ time.Duration) error {
	e := c.Create()
	module.Set(c, e, m.s.hp, HP{V: 7})
	return nil
}

// hostileRig is an engine in the test process, stepped by the test, with a
// log that the test reads.
type hostileRig struct {
	t    *testing.T
	s    *schema
	eng  *host.Engine
	inst string
	log  *syncBuf
}

func newHostileRig(t *testing.T) *hostileRig {
	s := newSchema()
	w, err := world.New(s.reg, world.Config{ChunkCapacity: 64, MaxChunks: 64})
	require.NoError(t, err)
	inst := uniqueInstance(t, "hr")
	buf := &syncBuf{}
	eng, err := host.New(host.Config{Instance: inst, FastDeadline: 100 * time.Millisecond, RingBytes: 1 << 16,
		Logger: slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelWarn}))}, w, nil)
	require.NoError(t, err)
	t.Cleanup(func() { eng.Close() })
	return &hostileRig{t: t, s: s, eng: eng, inst: inst, log: buf}
}

// spawn starts a hostile-test child of role as module name; its stdout is
// collected.
func (r *hostileRig) spawn(test, role, name string, env ...string) *lineWriter {
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$")
	cmd.Env = append(os.Environ(), append([]string{"FDP_HOSTILE_ROLE=" + role, "FDP_MODULE=" + name, "FDP_INSTANCE=" + r.inst}, env...)...)
	out := &lineWriter{}
	cmd.Stdout, cmd.Stderr = out, os.Stderr
	require.NoError(r.t, cmd.Start())
	r.t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return out
}

// stepUntil runs frames until cond holds, for at most limit.
func (r *hostileRig) stepUntil(what string, limit time.Duration, cond func() bool) {
	deadline := time.Now().Add(limit)
	for !cond() {
		require.True(r.t, time.Now().Before(deadline), "timed out waiting for %s", what)
		r.eng.Step()
	}
}

func (r *hostileRig) module(name string) host.ModuleInfo {
	m, ok := moduleInfo(r.eng, name)
	require.True(r.t, ok, "no module %q", name)
	return m
}

func (r *hostileRig) running(names ...string) func() bool {
	return func() bool {
		for _, n := range names {
			if m, ok := moduleInfo(r.eng, n); !ok || m.Stats.Runs == 0 || m.State == host.StateDead {
				return false
			}
		}
		return true
	}
}

// hpCount counts the live entities of the engine's world whose HP is v.
func hpCount(w *world.World, s *schema, v int32) int {
	n := 0
	q := w.Query(world.MaskOf(s.hp))
	for q.Next() {
		hp := world.Column[HP](&q, s.hp)
		for i := 0; i < q.Rows(); i++ {
			if q.Match(i) && hp[i].V == v {
				n++
			}
		}
	}
	return n
}

// TestHostileRingIndices: a module process corrupts the indices and record
// headers of its own command ring in every documented way. Each corruption
// is counted once (the module's corrupt_ring reason and the ring's bad
// counter in its segment), the ring is reset, the module's next valid batch
// is applied, warnings are rate-limited with a suppressed count, and an
// honest module next to it keeps ticking with every command applied.
func TestHostileRingIndices(t *testing.T) {
	hostileChild()
	r := newHostileRig(t)
	honest := r.spawn("TestHostileRingIndices", "honest", "honest")
	out := r.spawn("TestHostileRingIndices", "ring", "hostile")
	r.stepUntil("both modules ticking", 10*time.Second, r.running("honest", "hostile"))
	before := r.module("honest")
	start := time.Now()
	r.stepUntil("every corruption handled", 15*time.Second, func() bool {
		return strings.Contains(out.String(), "done\n")
	})
	elapsed := time.Since(start)
	require.NotContains(t, out.String(), "not reset", "a corruption was not detected:\n%s", out.String())

	k := uint64(len(ringCorruptions))
	hm := r.module("hostile")
	require.Equal(t, k, hm.PlaybackRejectReasons[world.RejectCorruptRing.String()], "every corruption counted once")
	require.Equal(t, k, hm.Stats.Rejected, "nothing else of the module was rejected")
	require.Equal(t, 2*k, hm.Stats.Applied, "each case's valid batch applied whole")
	for i := range ringCorruptions {
		require.Equal(t, 1, hpCount(r.eng.World(), r.s, int32(1000+i)), "case %d (%s): the valid batch after the reset", i, ringCorruptions[i].name)
	}

	// The ring's own counters, as `engine dump` reads them from the segment.
	seg, lm, err := moduleSegmentOf(r.inst, "hostile")
	require.NoError(t, err)
	defer seg.Close()
	st, err := ipc.ReadRingStats(lm.Ring())
	require.NoError(t, err)
	require.Equal(t, k, st.BadRecords)
	require.GreaterOrEqual(t, st.Resets, k)
	require.Equal(t, 2*k, st.RecordsRead, "records read is stored on every poll")
	require.Equal(t, st.Head, st.Tail)

	// Rate-limited warnings: at most one per second (plus the first), and
	// together they account for every detection logged so far.
	var lines, suppressed int
	for _, l := range strings.Split(r.log.String(), "\n") {
		if strings.Contains(l, "corrupt command ring reset") && strings.Contains(l, "module=hostile") {
			lines++
			var n int
			_, err := fmt.Sscanf(l[strings.Index(l, "suppressed="):], "suppressed=%d", &n)
			require.NoError(t, err, l)
			suppressed += n
		}
	}
	require.GreaterOrEqual(t, lines, 1)
	require.LessOrEqual(t, lines, 2+int(elapsed/time.Second), "warnings are rate-limited:\n%s", r.log.String())
	require.LessOrEqual(t, lines+suppressed, int(k))

	// The honest module was not affected: it kept ticking and nothing of
	// it was rejected.
	after := r.module("honest")
	require.Greater(t, after.Stats.Applied, before.Stats.Applied)
	// Nothing rejected, except creates beyond its entity quota: it creates
	// one entity per tick, and a loaded machine can give it over a
	// thousand ticks in this test.
	if after.Stats.Rejected > 0 {
		require.NotZero(t, after.PlaybackRejectReasons[world.RejectEntityQuota.String()],
			"honest commands rejected for another reason than its entity quota: %v", after.PlaybackRejectReasons)
	}
	require.Zero(t, after.Stats.Failures)
	require.Equal(t, int(after.Stats.Applied/2), hpCount(r.eng.World(), r.s, 7), "each honest tick's entity is there")
	require.NotContains(t, r.log.String(), "module=honest")
	_ = honest
}
