package ipc

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fdp-engine/fdp/layout"
)

// evlogTestSeg returns a ready events segment in Go memory.
func evlogTestSeg(t testing.TB, capacity int) []byte {
	g, err := layout.ComputeEventsGeometry(capacity)
	require.NoError(t, err)
	b := make([]byte, g.TotalSize)
	require.NoError(t, layout.EncodeEvents(b, g, layout.Header{Instance: "evtest", CreatorPID: uint32(os.Getpid())}))
	layout.MarkReady(b)
	return b
}

type evlogModelEvent struct {
	seq, frame uint64
	typ        uint16
	payload    []byte
	pos        uint64 // logical start position (model placement rule)
}

// evlogModel is an independent model of the log: every event ever appended,
// placed by the documented rule (8-byte aligned records, 24-byte header,
// pad to the end of the area when a record does not fit). The oldest event
// still available is the first one that starts at or after the drop mark.
type evlogModel struct {
	capacity  uint64
	events    []evlogModelEvent
	end       uint64 // end of the last appended record
	mark      uint64 // every event starting before mark has been dropped
	committed uint64 // events committed (seq 1..committed visible)
}

func (m *evlogModel) append(frame uint64, typ uint16, payload []byte) {
	size := uint64(24 + (len(payload)+7)/8*8)
	pos := m.end
	if left := m.capacity - pos%m.capacity; left < size {
		pos += left
	}
	// Before writing, the writer drops events so that nothing starts before
	// end-capacity, with capacity/16 of slack, but never beyond the previous end.
	if end := pos + size; end > m.capacity && m.oldestPos() < end-m.capacity {
		m.mark = min(end-m.capacity+m.capacity/16, m.end)
	}
	m.events = append(m.events, evlogModelEvent{seq: uint64(len(m.events) + 1), frame: frame, typ: typ, payload: append([]byte(nil), payload...), pos: pos})
	m.end = pos + size
}

// oldestPos is where the oldest available event starts (the end if none).
func (m *evlogModel) oldestPos() uint64 {
	for _, e := range m.events {
		if e.pos >= m.mark {
			return e.pos
		}
	}
	return m.end
}

func (m *evlogModel) oldest() uint64 {
	for _, e := range m.events {
		if e.pos >= m.mark {
			return e.seq
		}
	}
	return uint64(len(m.events) + 1)
}

type evlogGot struct {
	seq, frame uint64
	typ        uint16
	payload    []byte
}

func TestEventLogModel(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3, 4, 5, 6, 7, 8} {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 99))
			capacity := layout.PageSize * (1 + rng.IntN(3))
			seg := evlogTestSeg(t, capacity)
			w, err := NewEventWriter(seg)
			require.NoError(t, err)
			m := &evlogModel{capacity: uint64(capacity)}
			const nReaders = 3
			var readers [nReaders]*EventReader
			var curs [nReaders]EventCursor
			var modelCur [nReaders]uint64
			var lost, delivered [nReaders]uint64
			for i := range readers {
				readers[i], err = NewEventReader(seg)
				require.NoError(t, err)
				modelCur[i] = 1
			}
			readProb := []float64{0.9, 0.3, 0.05}
			var got []evlogGot
			check := func(i int, when string) {
				got = got[:0]
				ov, err := readers[i].Read(&curs[i], func(seq, frame uint64, typ uint16, p []byte) {
					got = append(got, evlogGot{seq, frame, typ, append([]byte(nil), p...)})
				})
				require.NoError(t, err)
				oldest := m.oldest()
				wantOv := uint64(0)
				from := modelCur[i]
				if from < oldest {
					wantOv = oldest - from
					from = oldest
				}
				require.Equal(t, wantOv, ov, "reader %d %s: overrun", i, when)
				var wantN uint64
				if m.committed+1 > from {
					wantN = m.committed + 1 - from
				}
				require.Equal(t, int(wantN), len(got), "reader %d %s: events", i, when)
				for k, g := range got {
					e := m.events[from-1+uint64(k)]
					require.Equal(t, e.seq, g.seq)
					require.Equal(t, e.frame, g.frame)
					require.Equal(t, e.typ, g.typ)
					require.True(t, bytes.Equal(e.payload, g.payload), "payload of seq %d", e.seq)
				}
				modelCur[i] = max(from, m.committed+1)
				require.Equal(t, modelCur[i], curs[i].Seq)
				lost[i] += ov
				delivered[i] += uint64(len(got))
			}
			payload := make([]byte, capacity/4)
			for frame := uint64(1); frame <= 600; frame++ {
				n := rng.IntN(12)
				if rng.IntN(50) == 0 {
					n = 60 // a burst bigger than the whole log
				}
				for range n {
					ln := rng.IntN(64)
					if rng.IntN(10) == 0 {
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
					// Reading between Append and Commit: nothing of this
					// frame is visible yet, but its drops already are.
					check(rng.IntN(nReaders), fmt.Sprintf("frame %d before commit", frame))
				}
				w.Commit()
				m.committed = uint64(len(m.events))
				for i := range readers {
					if rng.Float64() < readProb[i] {
						check(i, fmt.Sprintf("frame %d", frame))
					}
				}
			}
			st := w.Stats()
			require.Equal(t, m.committed, st.Events)
			require.Equal(t, m.oldest()-1, st.Dropped)
			for i, r := range readers {
				// Final catch-up: every event is either delivered or counted lost.
				ov, err := r.Read(&curs[i], func(uint64, uint64, uint16, []byte) { delivered[i]++ })
				require.NoError(t, err)
				lost[i] += ov
				require.Equal(t, m.committed, lost[i]+delivered[i], "reader %d: delivered+lost", i)
				rs := r.Stats()
				require.Equal(t, lost[i], rs.Lost)
			}
			require.Greater(t, lost[2], uint64(0), "the slow reader must have been lapped")
		})
	}
}

func TestEventLogAppendErrorsAndTail(t *testing.T) {
	seg := evlogTestSeg(t, layout.PageSize)
	w, err := NewEventWriter(seg)
	require.NoError(t, err)
	err = w.Append(1, 1, make([]byte, layout.PageSize/4+1))
	require.ErrorIs(t, err, ErrEventTooLarge)
	require.Contains(t, err.Error(), "1025 bytes")
	require.Equal(t, uint64(1), w.Stats().Rejected)
	require.NoError(t, w.Append(1, 1, make([]byte, layout.PageSize/4)))
	require.NoError(t, w.Append(1, 2, []byte("x")))
	w.Commit()

	r, err := NewEventReader(seg)
	require.NoError(t, err)
	tail := r.Tail()
	require.Equal(t, uint64(3), tail.Seq)
	require.NoError(t, w.Append(2, 3, []byte("after")))
	w.Commit()
	var seqs []uint64
	ov, err := r.Read(&tail, func(seq, frame uint64, typ uint16, p []byte) {
		seqs = append(seqs, seq)
		require.Equal(t, "after", string(p))
		require.Equal(t, uint64(2), frame)
		require.Equal(t, uint16(3), typ)
	})
	require.NoError(t, err)
	require.Zero(t, ov)
	require.Equal(t, []uint64{3}, seqs)

	// A cursor ahead of the log is an error, not a silent wait.
	bad := EventCursor{Seq: 100, Pos: 1 << 20}
	_, err = r.Read(&bad, func(uint64, uint64, uint16, []byte) {})
	require.ErrorIs(t, err, ErrEventCursor)

	// A new writer resumes after the last commit.
	w2, err := NewEventWriter(seg)
	require.NoError(t, err)
	require.Equal(t, uint64(4), w2.NextSeq())
	require.Equal(t, uint64(3), w2.Stats().Events)

	// Wrong segments are refused.
	_, err = NewEventReader(make([]byte, layout.HeaderSize))
	require.ErrorIs(t, err, ErrEventSegment)
	_, err = NewEventReader(seg[1:])
	require.ErrorIs(t, err, ErrEventSegment)
}

// TestEventLogCorruptRecord: an intact but corrupt record is an error and a
// counter, never delivered.
func TestEventLogCorruptRecord(t *testing.T) {
	seg := evlogTestSeg(t, layout.PageSize)
	w, err := NewEventWriter(seg)
	require.NoError(t, err)
	require.NoError(t, w.Append(1, 1, []byte("hello")))
	require.NoError(t, w.Append(1, 1, []byte("world")))
	w.Commit()
	area := seg[layout.HeaderSize:]
	binary.LittleEndian.PutUint32(area[32+20:], 5000) // second record: huge length
	r, err := NewEventReader(seg)
	require.NoError(t, err)
	var cur EventCursor
	var got []string
	_, err = r.Read(&cur, func(_, _ uint64, _ uint16, p []byte) { got = append(got, string(p)) })
	require.ErrorIs(t, err, ErrEventLogCorrupt)
	require.Equal(t, []string{"hello"}, got)
	require.Equal(t, uint64(1), r.Stats().Corrupt)
	binary.LittleEndian.PutUint32(area[32+20:], 5)
	binary.LittleEndian.PutUint64(area[32:], 9) // wrong sequence number
	_, err = r.Read(&cur, func(_, _ uint64, _ uint16, p []byte) { got = append(got, string(p)) })
	require.ErrorIs(t, err, ErrEventLogCorrupt)
	require.Contains(t, err.Error(), "seq 9, want 2")
}

// FuzzEventDecode: arbitrary bytes as the shared words and the record area
// never panic or hang a reader; whatever it delivers respects the limits.
func FuzzEventDecode(f *testing.F) {
	seg := evlogTestSeg(f, layout.PageSize)
	w, _ := NewEventWriter(seg)
	for i := range 300 {
		_ = w.Append(uint64(i/7), uint16(i), bytes.Repeat([]byte{byte(i)}, i%50))
		if i%7 == 6 {
			w.Commit()
		}
	}
	w.Commit()
	valid := append([]byte(nil), seg...)
	f.Add([]byte{}, []byte{}, uint64(0), uint64(0))
	f.Add(valid[2048:2400], valid[layout.HeaderSize:layout.HeaderSize+512], uint64(1), uint64(0))
	f.Add(make([]byte, 64), bytes.Repeat([]byte{0xff}, 100), uint64(5), uint64(4096))
	f.Fuzz(func(t *testing.T, words, area []byte, curSeq, curPos uint64) {
		b := append([]byte(nil), valid...) // 8-byte aligned copy
		copy(b[2048:layout.HeaderSize], words)
		copy(b[layout.HeaderSize:], area)
		r, err := NewEventReader(b)
		if err != nil {
			t.Fatalf("header untouched, reader must attach: %v", err)
		}
		cur := EventCursor{Seq: curSeq, Pos: curPos}
		n := 0
		_, err = r.Read(&cur, func(seq, _ uint64, _ uint16, p []byte) {
			n++
			if len(p) > layout.PageSize/4 {
				t.Fatalf("payload of %d bytes delivered", len(p))
			}
		})
		if err != nil && !errors.Is(err, ErrEventLogCorrupt) && !errors.Is(err, ErrEventCursor) {
			t.Fatalf("unclassified error %v", err)
		}
		if n > layout.PageSize/layout.EventRecordHeader {
			t.Fatalf("%d events delivered from a %d-byte area", n, layout.PageSize)
		}
		_ = r.Tail()
		_ = r.Oldest()
		_, _ = NewEventWriter(b)
	})
}

// ---- cross-process helpers (TestEventLogReadUpToCrossProcess) ----

// evlogPayload fills p with the self-checking payload of event seq: seq,
// frame, then bytes from a PRNG seeded by seq.
func evlogPayload(p []byte, seq, frame uint64) {
	binary.LittleEndian.PutUint64(p[0:], seq)
	binary.LittleEndian.PutUint64(p[8:], frame)
	x := seq*0x9E3779B97F4A7C15 | 1
	for i := 16; i < len(p); i++ {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		p[i] = byte(x)
	}
}

func evlogPayloadLen(seq uint64) int { return 16 + int(seq*7919%300) }

func evlogShmDir() string {
	if d := os.Getenv("FDP_SHM_DIR"); d != "" {
		return d
	}
	return "/dev/shm"
}

var spinSink uint64

func spin(n int) {
	x := uint64(n)
	for i := 0; i < n; i++ {
		x = x*6364136223846793005 + 1
	}
	spinSink += x
}

// ---- benchmarks ----

// evlogBaseline measures, outside the benchmark timer, the time per frame of
// copying the same payload bytes with plain memcpy (the ratio's baseline).
func evlogBaseline(b *testing.B, perFrame, size int) time.Duration {
	b.StopTimer()
	defer b.StartTimer()
	src := make([]byte, size)
	dst := make([]byte, perFrame*(layout.EventRecordHeader+size))
	const rounds = 20000
	t0 := time.Now()
	for range rounds {
		for j := range perFrame {
			copy(dst[j*(layout.EventRecordHeader+size)+layout.EventRecordHeader:], src)
		}
	}
	if dst[0] != 0 {
		b.Fatal("baseline")
	}
	return time.Since(t0) / rounds
}

// BenchmarkEventAppendCommit: frames of 64 events of 32 bytes, appended and
// committed; x-memcpy is the time per frame over memcpy of the payloads.
func BenchmarkEventAppendCommit(b *testing.B) {
	const perFrame, size = 64, 32
	seg := evlogTestSeg(b, 1<<20)
	w, err := NewEventWriter(seg)
	require.NoError(b, err)
	payload := make([]byte, size)
	base := evlogBaseline(b, perFrame, size)
	b.ReportAllocs()
	b.SetBytes(perFrame * size)
	for i := 0; b.Loop(); i++ {
		for j := range perFrame {
			_ = w.Append(uint64(i), uint16(j), payload)
		}
		w.Commit()
	}
	perOp := b.Elapsed() / time.Duration(b.N)
	b.ReportMetric(float64(b.N*perFrame)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(perOp)/float64(base), "x-memcpy")
}

// BenchmarkEventRead: a reader following a writer frame by frame (64 events
// of 32 bytes per frame); events/s counts only the time spent in Read.
func BenchmarkEventRead(b *testing.B) {
	const perFrame, size = 64, 32
	seg := evlogTestSeg(b, 1<<20)
	w, err := NewEventWriter(seg)
	require.NoError(b, err)
	r, err := NewEventReader(seg)
	require.NoError(b, err)
	payload := make([]byte, size)
	base := evlogBaseline(b, perFrame, size)
	var sum uint64
	fn := func(seq, _ uint64, _ uint16, p []byte) { sum += seq + uint64(len(p)) }
	var cur EventCursor
	b.ReportAllocs()
	b.SetBytes(perFrame * size)
	var readNanos time.Duration
	for i := 0; b.Loop(); i++ {
		for j := range perFrame {
			_ = w.Append(uint64(i), uint16(j), payload)
		}
		w.Commit()
		t0 := time.Now()
		ov, err := r.Read(&cur, fn)
		readNanos += time.Since(t0)
		if err != nil || ov != 0 {
			b.Fatalf("read: %v overrun %d", err, ov)
		}
	}
	b.ReportMetric(float64(b.N*perFrame)/readNanos.Seconds(), "events/s")
	b.ReportMetric(float64(readNanos/time.Duration(b.N))/float64(base), "x-memcpy")
	if sum == 0 {
		b.Fatal("nothing read")
	}
}
