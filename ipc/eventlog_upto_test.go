package ipc

// Frame-bounded reads (EventReader.ReadUpTo) and the writer's cursor check
// (EventWriter.CheckCursor): a model-based test against evlogModel, a
// differential one against Read, torn stops injected at the intact check,
// and a reader process that reads up to a frame the writer publishes after
// each commit, as a module reads up to the frame of its view.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/fdp-engine/fdp/layout"
)

// endOf returns where the first n events of the model end (0 for none).
func (m *evlogModel) endOf(n uint64) uint64 {
	if n == 0 {
		return 0
	}
	e := m.events[n-1]
	return e.pos + uint64(24+(len(e.payload)+7)/8*8)
}

// TestEventLogReadUpToModel: readers with random frame bounds (behind the
// writer, at it, below their own cursor) against the model: each call
// delivers exactly the events from the cursor on (after an exact overrun)
// whose frame is within the bound, stops at the first one beyond it, and
// leaves the cursor on it, at that event's position; every cursor a reader
// holds passes the writer's CheckCursor. A reader without a bound reads as
// Read does (differential).
func TestEventLogReadUpToModel(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3, 4, 5, 6} {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 12))
			capacity := layout.PageSize * (1 + rng.IntN(3))
			seg := evlogTestSeg(t, capacity)
			w, err := NewEventWriter(seg)
			require.NoError(t, err)
			m := &evlogModel{capacity: uint64(capacity)}
			const nReaders = 4
			var readers [nReaders]*EventReader
			var curs [nReaders]EventCursor
			var modelCur [nReaders]uint64
			var lost, delivered [nReaders]uint64
			for i := range readers {
				readers[i], err = NewEventReader(seg)
				require.NoError(t, err)
				modelCur[i], curs[i] = 1, EventCursor{Seq: 1}
			}
			// The differential pair: Read and ReadUpTo(MaxUint64).
			plain, err := NewEventReader(seg)
			require.NoError(t, err)
			var plainCur, unboundCur EventCursor
			readProb := []float64{0.9, 0.4, 0.1, 0.03}
			var got []evlogGot
			frame := uint64(0)
			check := func(i int, bound uint64, when string) {
				got = got[:0]
				ov, err := readers[i].ReadUpTo(&curs[i], bound, func(seq, frame uint64, typ uint16, p []byte) {
					got = append(got, evlogGot{seq, frame, typ, append([]byte(nil), p...)})
				})
				require.NoError(t, err)
				from, wantOv := modelCur[i], uint64(0)
				if oldest := m.oldest(); from < oldest {
					wantOv, from = oldest-from, oldest
				}
				require.Equal(t, wantOv, ov, "reader %d %s (bound %d): overrun", i, when, bound)
				next := from
				for next <= m.committed && m.events[next-1].frame <= bound {
					next++
				}
				require.Equal(t, int(next-from), len(got), "reader %d %s (bound %d): events", i, when, bound)
				for k, g := range got {
					e := m.events[from-1+uint64(k)]
					require.Equal(t, e.seq, g.seq)
					require.Equal(t, e.frame, g.frame)
					require.LessOrEqual(t, g.frame, bound, "an event of a later frame")
					require.Equal(t, e.typ, g.typ)
					require.True(t, bytes.Equal(e.payload, g.payload), "payload of seq %d", e.seq)
				}
				// The cursor stays on the first undelivered event: its
				// sequence number and its position.
				modelCur[i] = next
				require.Equal(t, next, curs[i].Seq, "reader %d %s: cursor seq", i, when)
				var wantPos uint64
				switch {
				case next <= m.committed:
					wantPos = m.events[next-1].pos
				case wantOv > 0 && from > m.committed:
					// Between Append and Commit the writer dropped every
					// committed event: the reader waits at the oldest one.
					wantPos = m.oldestPos()
				default:
					wantPos = m.endOf(m.committed)
				}
				require.Equal(t, wantPos, curs[i].Pos, "reader %d %s: cursor position", i, when)
				lost[i] += ov
				delivered[i] += uint64(len(got))
			}
			bound := func(i int) uint64 {
				switch rng.IntN(8) {
				case 0:
					return uint64(rng.IntN(int(frame) + 1)) // anywhere, also below the cursor
				case 1:
					return math.MaxUint64
				default:
					// A view some frames behind the writer (a slow module's
					// snapshot), or at it.
					return frame - min(frame, uint64(rng.IntN(4*(i+1))))
				}
			}
			diff := func() {
				var a, b []evlogGot
				ova, erra := plain.Read(&plainCur, func(seq, frame uint64, typ uint16, p []byte) {
					a = append(a, evlogGot{seq, frame, typ, append([]byte(nil), p...)})
				})
				ovb, errb := plain.ReadUpTo(&unboundCur, math.MaxUint64, func(seq, frame uint64, typ uint16, p []byte) {
					b = append(b, evlogGot{seq, frame, typ, append([]byte(nil), p...)})
				})
				require.NoError(t, erra)
				require.NoError(t, errb)
				require.Equal(t, ova, ovb)
				require.Equal(t, a, b)
				require.Equal(t, plainCur, unboundCur)
			}
			payload := make([]byte, capacity/4)
			for frame = 1; frame <= 600; frame++ {
				n := rng.IntN(10)
				if rng.IntN(60) == 0 {
					n = 60 // a burst bigger than the whole log
				}
				for range n {
					ln := rng.IntN(64)
					if rng.IntN(12) == 0 {
						ln = rng.IntN(capacity/4 + 1)
					}
					p := payload[:ln]
					for j := range p {
						p[j] = byte(rng.Uint32())
					}
					typ := uint16(rng.Uint32())
					require.NoError(t, w.Append(frame, typ, p))
					m.append(frame, typ, p)
				}
				if rng.IntN(10) == 0 {
					// Between Append and Commit: drops are visible, the
					// frame's events are not; the bound may name the frame.
					check(rng.IntN(nReaders), frame, fmt.Sprintf("frame %d before commit", frame))
				}
				w.Commit()
				m.committed = uint64(len(m.events))
				for i := range readers {
					// Every cursor a reader holds passes the writer's check
					// once what was appended is committed.
					require.NoError(t, w.CheckCursor(curs[i]), "reader %d at frame %d: %+v", i, frame, curs[i])
					if rng.Float64() < readProb[i] {
						check(i, bound(i), fmt.Sprintf("frame %d", frame))
					}
				}
				if rng.IntN(3) == 0 {
					diff()
				}
			}
			for i := range readers {
				// Catch up to the last frame: every event is delivered or
				// counted lost, once.
				check(i, frame, "final")
				require.Equal(t, m.committed, lost[i]+delivered[i], "reader %d: delivered+lost", i)
				require.Equal(t, lost[i], readers[i].Stats().Lost)
				require.Equal(t, delivered[i], readers[i].Stats().Events)
			}
			require.Greater(t, lost[nReaders-1], uint64(0), "the slowest reader must have been lapped")
		})
	}
}

// TestEventLogCheckCursor: the writer accepts exactly the cursors a reader
// can hold.
func TestEventLogCheckCursor(t *testing.T) {
	seg := evlogTestSeg(t, layout.PageSize)
	w, err := NewEventWriter(seg)
	require.NoError(t, err)
	r, err := NewEventReader(seg)
	require.NoError(t, err)
	require.NoError(t, w.CheckCursor(r.Tail()), "the tail of an empty log")
	// Three events of 40 bytes each (24 + 16) at 0, 40, 80.
	for f := uint64(1); f <= 3; f++ {
		require.NoError(t, w.Append(f, 1, make([]byte, 16)))
	}
	w.Commit()
	for _, c := range []EventCursor{{1, 0}, {2, 40}, {3, 80}, {4, 120}} {
		require.NoError(t, w.CheckCursor(c), "%+v", c)
	}
	for _, c := range []EventCursor{
		{0, 0},    // seq 0
		{2, 44},   // unaligned
		{2, 56},   // inside a record (at 48 the frame number, 2, would pass for a seq)
		{3, 40},   // seq of another record
		{4, 80},   // idem
		{5, 120},  // beyond the committed seq
		{4, 128},  // beyond the committed end
		{3, 120},  // the end with another seq
		{10, 400}, // ahead
	} {
		require.ErrorIs(t, w.CheckCursor(c), ErrEventCursor, "%+v", c)
	}
	// An appended, uncommitted event is not there yet.
	require.NoError(t, w.Append(4, 1, make([]byte, 16)))
	require.ErrorIs(t, w.CheckCursor(EventCursor{5, 160}), ErrEventCursor)
	require.NoError(t, w.CheckCursor(EventCursor{4, 120}))
	w.Commit()
	require.NoError(t, w.CheckCursor(EventCursor{5, 160}))

	// Fill the log past one lap: the dropped part accepts any sequence
	// number up to the oldest one (the reader reports the overrun).
	for f := uint64(5); f < 200; f++ {
		require.NoError(t, w.Append(f, 1, make([]byte, 16)))
		w.Commit()
	}
	old := r.Oldest()
	require.Greater(t, old.Seq, uint64(1))
	require.NoError(t, w.CheckCursor(EventCursor{1, 0}))
	require.NoError(t, w.CheckCursor(EventCursor{old.Seq, 0}))
	require.ErrorIs(t, w.CheckCursor(EventCursor{old.Seq + 1, 0}), ErrEventCursor)
	require.NoError(t, w.CheckCursor(old))
	require.NoError(t, w.CheckCursor(r.Tail()))
	cur := EventCursor{1, 0}
	ov, err := r.Read(&cur, func(uint64, uint64, uint16, []byte) {})
	require.NoError(t, err)
	require.Equal(t, old.Seq-1, ov)

	// Padding: a cursor before it and one after it name the same record.
	seg = evlogTestSeg(t, layout.PageSize)
	w, err = NewEventWriter(seg)
	require.NoError(t, err)
	require.NoError(t, w.Append(1, 1, make([]byte, 1000))) // 0..1024 (dropped below)
	require.NoError(t, w.Append(1, 1, make([]byte, 1024))) // ..2072 (dropped below)
	require.NoError(t, w.Append(1, 1, make([]byte, 1000))) // ..3096
	require.NoError(t, w.Append(1, 1, make([]byte, 1000))) // does not fit: padding, then 4096..5120
	require.NoError(t, w.Append(1, 1, make([]byte, 8)))    // ..5152
	w.Commit()
	require.NoError(t, w.CheckCursor(EventCursor{4, 3096}), "before the padding")
	require.NoError(t, w.CheckCursor(EventCursor{4, 4096}), "after it")
	require.ErrorIs(t, w.CheckCursor(EventCursor{5, 3096}), ErrEventCursor)
}

// TestEventLogReadUpToTornStop: the writer laps the reader between the
// walk's decisions and its intact check (the test hook runs there, where a
// concurrent writer could have written). The stop, like the delivery, is
// undone: nothing of the batch is delivered, the overrun is exact and the
// cursor goes to the oldest event.
func TestEventLogReadUpToTornStop(t *testing.T) {
	for _, c := range []struct {
		name string
		from uint64 // frame of the cursor's event
	}{{"stop after deliveries", 1}, {"stop at the cursor", 2}} {
		t.Run(c.name, func(t *testing.T) {
			seg := evlogTestSeg(t, layout.PageSize)
			w, err := NewEventWriter(seg)
			require.NoError(t, err)
			for f := uint64(1); f <= 2; f++ {
				for range 5 {
					require.NoError(t, w.Append(f, uint16(f), make([]byte, 16)))
				}
				w.Commit()
			}
			r, err := NewEventReader(seg)
			require.NoError(t, err)
			cur := EventCursor{Seq: 1}
			if c.from == 2 {
				cur = EventCursor{Seq: 6, Pos: 5 * 40}
			}
			laps := 0
			r.testHookIntact = func() {
				if laps > 0 {
					return
				}
				laps++
				// Frame 3 overwrites every record the walk looked at with
				// records of frame 1's size, whose frame is within the bound
				// (what a torn stop would wrongly deliver from).
				for range 2 * layout.PageSize / 40 {
					require.NoError(t, w.Append(3, 3, make([]byte, 16)))
				}
				w.Commit()
			}
			var got []uint64
			from := cur.Seq
			ov, err := r.ReadUpTo(&cur, 1, func(seq, _ uint64, _ uint16, _ []byte) { got = append(got, seq) })
			require.NoError(t, err)
			require.Equal(t, 1, laps)
			old := r.Oldest()
			require.Empty(t, got, "a torn batch delivered nothing")
			require.Equal(t, old.Seq-from, ov, "the overrun counts every event from the cursor to the oldest")
			require.Equal(t, old, cur)
			require.Equal(t, uint64(1), r.Stats().TornReads)
			// The next read finds frame 3 at the cursor: beyond the bound.
			ov, err = r.ReadUpTo(&cur, 2, func(seq, _ uint64, _ uint16, _ []byte) { got = append(got, seq) })
			require.NoError(t, err)
			require.Zero(t, ov)
			require.Empty(t, got)
			require.Equal(t, old, cur)
		})
	}
}

// evlogBoundEnv names the role of the frame-bounded reader process.
const evlogBoundEnv = "FDP_TEST_EVLOG_BOUND"

type evlogBoundReport struct {
	Delivered, Lost, Overruns, Torn, Reads, Stops uint64
	Err                                           string
}

// TestEventLogReadUpToCrossProcess: a writer commits each frame's events and
// then publishes the frame number (as the engine publishes a frame after its
// events are committed); a reader process maps the log read-only and reads
// up to a frame at or behind the published one (a fast module's view, a
// slow module's older snapshot). It checks that no event of a later frame
// is delivered, that every gap is an overrun reported in the same call, and
// that after each call the event at the cursor, if committed, is of a frame
// beyond the bound (none of the bound's frames is skipped).
func TestEventLogReadUpToCrossProcess(t *testing.T) {
	if os.Getenv(evlogBoundEnv) == "reader" {
		evlogBoundReader()
		return
	}
	const frames = 6000
	inst := fmt.Sprintf("t%d%x", os.Getpid(), rand.Uint32())
	mk := func(suffix string, size int) []byte {
		path := filepath.Join(evlogShmDir(), "fdp."+inst+suffix)
		fd, err := unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		require.NoError(t, err)
		t.Cleanup(func() { _ = os.Remove(path) })
		require.NoError(t, unix.Ftruncate(fd, int64(size)))
		b, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
		_ = unix.Close(fd)
		require.NoError(t, err)
		t.Cleanup(func() { _ = unix.Munmap(b) })
		return b
	}
	g, err := layout.ComputeEventsGeometry(4 * layout.PageSize)
	require.NoError(t, err)
	seg := mk(".events", g.TotalSize)
	require.NoError(t, layout.EncodeEvents(seg, g, layout.Header{Instance: inst, CreatorPID: uint32(os.Getpid())}))
	layout.MarkReady(seg)
	published := mk(".evframe", layout.PageSize) // u64 at 0: the published frame
	w, err := NewEventWriter(seg)
	require.NoError(t, err)

	rng := rand.New(rand.NewPCG(11, 11))
	perFrame := make([]int, frames+1)
	total := 0
	for f := 1; f <= frames; f++ {
		perFrame[f] = rng.IntN(7)
		total += perFrame[f]
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestEventLogReadUpToCrossProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), evlogBoundEnv+"=reader", "FDP_EVLOG_PATH="+filepath.Join(evlogShmDir(), "fdp."+inst+".events"),
		"FDP_EVLOG_FRAME_PATH="+filepath.Join(evlogShmDir(), "fdp."+inst+".evframe"),
		"FDP_EVLOG_TOTAL="+strconv.Itoa(total), "FDP_EVLOG_FRAMES="+strconv.Itoa(frames))
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	br := bufio.NewReader(stdout)
	line, err := br.ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "READY\n", line, "child did not attach")

	buf := make([]byte, 512)
	seq := uint64(1)
	for f := 1; f <= frames; f++ {
		for range perFrame[f] {
			p := buf[:evlogPayloadLen(seq)]
			evlogPayload(p, seq, uint64(f))
			require.NoError(t, w.Append(uint64(f), uint16(seq), p))
			seq++
		}
		w.Commit()
		layout.Store64(published, 0, uint64(f)) // after the commit, as the engine's publish
		if f%400 < 300 {
			spin(20000) // sometimes keep pace, sometimes lap the reader
		}
	}
	rest, err := io.ReadAll(br)
	require.NoError(t, err)
	require.NoError(t, cmd.Wait(), "child output: %s", rest)
	var rep evlogBoundReport
	for _, l := range bytes.Split(bytes.TrimSpace(rest), []byte("\n")) {
		if bytes.HasPrefix(l, []byte("EVLOG ")) {
			require.NoError(t, json.Unmarshal(l[6:], &rep))
		}
	}
	require.Empty(t, rep.Err)
	require.Equal(t, uint64(total), rep.Delivered+rep.Lost, "every event delivered or counted lost: %+v", rep)
	require.Greater(t, rep.Delivered, uint64(0))
	require.Greater(t, rep.Stops, uint64(0), "some reads stopped at a later frame")
	t.Logf("child: %+v (total %d)", rep, total)
}

func evlogBoundReader() {
	rep := evlogBoundReport{}
	defer func() {
		j, _ := json.Marshal(rep)
		fmt.Printf("\nEVLOG %s\n", j)
		if rep.Err != "" {
			os.Exit(1)
		}
		os.Exit(0)
	}()
	fail := func(format string, a ...any) { rep.Err = fmt.Sprintf(format, a...) }
	mapRO := func(path string) []byte {
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			fail("open: %v", err)
			return nil
		}
		defer unix.Close(fd)
		var st unix.Stat_t
		_ = unix.Fstat(fd, &st)
		b, err := unix.Mmap(fd, 0, int(st.Size), unix.PROT_READ, unix.MAP_SHARED)
		if err != nil {
			fail("mmap: %v", err)
		}
		return b
	}
	total, _ := strconv.ParseUint(os.Getenv("FDP_EVLOG_TOTAL"), 10, 64)
	frames, _ := strconv.ParseUint(os.Getenv("FDP_EVLOG_FRAMES"), 10, 64)
	seg, published := mapRO(os.Getenv("FDP_EVLOG_PATH")), mapRO(os.Getenv("FDP_EVLOG_FRAME_PATH"))
	if rep.Err != "" {
		return
	}
	r, err := NewEventReader(seg)
	if err != nil {
		fail("reader: %v", err)
		return
	}
	peeker, _ := NewEventReader(seg)
	fmt.Println("READY")
	var cur EventCursor
	last := uint64(0)
	want := make([]byte, 512)
	deadline := time.Now().Add(60 * time.Second)
	rng := rand.New(rand.NewPCG(uint64(os.Getpid()), 2))
	for rep.Err == "" {
		if time.Now().After(deadline) {
			fail("timeout at seq %d of %d", cur.Seq, total)
			return
		}
		pub := layout.Load64(published, 0)
		bound := pub - min(pub, uint64(rng.IntN(6))) // a view at or behind the published frame
		if rng.IntN(4) == 0 {
			bound = math.MaxUint64 // an unbounded Read: everything committed
		}
		gaps := uint64(0)
		ov, err := r.ReadUpTo(&cur, bound, func(seq, frame uint64, typ uint16, p []byte) {
			if rep.Err != "" {
				return
			}
			if frame > bound {
				fail("seq %d of frame %d delivered, the bound is %d", seq, frame, bound)
				return
			}
			if seq <= last {
				fail("seq %d after %d", seq, last)
				return
			}
			gaps += seq - last - 1
			last = seq
			if typ != uint16(seq) || len(p) != evlogPayloadLen(seq) {
				fail("seq %d: type %d len %d", seq, typ, len(p))
				return
			}
			w := want[:len(p)]
			evlogPayload(w, seq, frame)
			if !bytes.Equal(w, p) {
				fail("seq %d frame %d: corrupted payload", seq, frame)
				return
			}
			rep.Delivered++
			if rng.IntN(500) == 0 {
				spin(20000 + rng.IntN(200000)) // dawdle: be lapped
			}
		})
		rep.Reads++
		if err != nil {
			fail("read: %v", err)
			return
		}
		gaps += cur.Seq - 1 - last
		last = cur.Seq - 1
		if gaps != ov {
			fail("overrun %d reported, %d events missing", ov, gaps)
			return
		}
		if ov > 0 {
			rep.Overruns++
			rep.Lost += ov
		}
		// The event at the cursor, if committed (and not overwritten
		// meanwhile), is of a later frame than the bound: a read up to the
		// next frame delivers it first, or nothing if it is later still.
		pc := cur
		first := true
		if bound == math.MaxUint64 {
			first = false // nothing is later than no bound
		}
		if _, err := peeker.ReadUpTo(&pc, bound+1, func(seq, frame uint64, _ uint16, _ []byte) {
			if first && seq == cur.Seq {
				if frame <= bound {
					fail("stopped before seq %d of frame %d, the bound is %d", seq, frame, bound)
				}
				rep.Stops++
			}
			first = false
		}); err != nil {
			fail("peek: %v", err)
		}
		if cur.Seq > total && bound >= frames {
			break
		}
	}
	rep.Torn = r.Stats().TornReads
}
