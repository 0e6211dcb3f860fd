package ipc

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/fdp-engine/fdp/layout"
)

type ringModelRec struct {
	typ     uint16
	payload []byte
}

// ringRandSize is the record size model: mostly small commands, some
// medium, a few large ones up to max.
func ringRandSize(rng *rand.Rand, max int) int {
	switch r := rng.IntN(10); {
	case r < 6:
		return rng.IntN(33)
	case r < 9:
		return 33 + rng.IntN(224)
	default:
		return rng.IntN(max + 1)
	}
}

func TestRingRoundTripModel(t *testing.T) {
	const capacity = 4096
	region := ringAnonRegion(t, capacity)
	p, err := NewProducer(region)
	require.NoError(t, err)
	c, err := NewConsumer(region)
	require.NoError(t, err)
	require.Equal(t, capacity/2-8, p.MaxPayload())

	rng := rand.New(rand.NewPCG(1, 2))
	var queue []ringModelRec // committed, not yet consumed
	var pendingModel []ringModelRec
	var committedRecs, committedBatches, fullErrs, consumed uint64
	var recBytes uint64 // sum of committed record lengths, without PAD
	poll := func() {
		n, err := c.Poll(func(typ uint16, payload []byte) error {
			require.NotEmpty(t, queue, "consumer saw a record that was never committed")
			want := queue[0]
			queue = queue[1:]
			require.Equal(t, want.typ, typ)
			require.True(t, bytes.Equal(want.payload, payload), "payload mismatch (len %d vs %d)", len(want.payload), len(payload))
			return nil
		})
		require.NoError(t, err)
		consumed += uint64(n)
		require.Empty(t, queue, "Poll must deliver everything committed")
	}
	for batch := 0; batch < 20000; batch++ {
		k := 1 + rng.IntN(12)
		abort := rng.IntN(20) == 0
		for i := 0; i < k; i++ {
			n := ringRandSize(rng, p.MaxPayload())
			typ := uint16(1 + rng.IntN(1000))
			payload := make([]byte, n)
			for j := range payload {
				payload[j] = byte(rng.Uint32())
			}
			useAppend := rng.IntN(2) == 0
			write := func() error {
				if useAppend {
					return p.Append(typ, payload)
				}
				buf, err := p.Reserve(typ, n)
				if err == nil {
					require.Len(t, buf, n)
					require.Equal(t, n, cap(buf), "reserved slice must not reach into the next record")
					copy(buf, payload)
				}
				return err
			}
			err := write()
			if errors.Is(err, ErrRingFull) {
				fullErrs++
				poll() // only the consumer releases space
				if err = write(); errors.Is(err, ErrRingFull) {
					// The pending batch itself fills the ring: drop it.
					fullErrs++
					p.Abort()
					pendingModel = nil
					err = write()
				}
			}
			require.NoError(t, err)
			pendingModel = append(pendingModel, ringModelRec{typ, payload})
		}
		if abort {
			p.Abort()
			pendingModel = nil
		} else {
			if len(pendingModel) > 0 {
				committedBatches++
			}
			p.Commit()
			for _, r := range pendingModel {
				l, _ := layout.RecordLen(len(r.payload))
				recBytes += uint64(l)
			}
			committedRecs += uint64(len(pendingModel))
			queue = append(queue, pendingModel...)
			pendingModel = nil
		}
		require.Zero(t, p.Pending())
		if rng.IntN(3) == 0 {
			poll()
		}
	}
	poll()
	p.Stats()
	st := c.Stats()
	require.Equal(t, committedRecs, st.RecordsWritten)
	require.Equal(t, committedRecs, st.RecordsRead)
	require.Equal(t, committedRecs, consumed)
	require.Equal(t, committedBatches, st.Batches)
	require.Equal(t, fullErrs, st.Full)
	require.Positive(t, fullErrs, "the model must hit a full ring")
	require.Zero(t, st.BadRecords)
	require.Equal(t, st.Head, st.Tail)
	require.Greater(t, st.Tail, uint64(100*capacity), "the ring must wrap many times")
	require.Greater(t, st.Tail, recBytes, "PAD records must have been written at the wrap")
	require.Zero(t, (st.Tail-recBytes)%8)
}

func TestRingFullNoOverwrite(t *testing.T) {
	const capacity = 4096
	region := ringAnonRegion(t, capacity)
	p, err := NewProducer(region)
	require.NoError(t, err)
	c, err := NewConsumer(region)
	require.NoError(t, err)

	_, err = p.Reserve(layout.RecordTypePad, 8)
	require.ErrorIs(t, err, ErrRecordType)
	_, err = p.Reserve(1, p.MaxPayload()+1)
	require.ErrorIs(t, err, ErrRecordTooLarge)
	_, err = p.Reserve(1, -1)
	require.ErrorIs(t, err, ErrRecordTooLarge)

	// 56-byte payloads -> 64-byte records: exactly 64 fit.
	rec := func(i int) []byte {
		b := make([]byte, 56)
		binary.LittleEndian.PutUint64(b, uint64(i)+1000)
		return b
	}
	for i := 0; i < capacity/64; i++ {
		require.NoError(t, p.Append(2, rec(i)))
		if i%7 == 6 {
			p.Commit()
		}
	}
	p.Commit()
	snapshot := append([]byte(nil), region...)
	for i := 0; i < 3; i++ {
		require.ErrorIs(t, p.Append(2, rec(99)), ErrRingFull)
		_, err := p.Reserve(2, 0)
		require.ErrorIs(t, err, ErrRingFull)
	}
	st := p.Stats()
	require.Equal(t, uint64(6), st.Full)
	require.Equal(t, uint64(64), st.RecordsWritten)
	require.Equal(t, uint64(10), st.Batches)
	// Nothing but the producer's counters changed.
	binary.LittleEndian.PutUint64(snapshot[layout.RingOffProdFull:], 6)
	binary.LittleEndian.PutUint64(snapshot[layout.RingOffProdRecords:], 64)
	binary.LittleEndian.PutUint64(snapshot[layout.RingOffProdBatches:], 10)
	require.True(t, bytes.Equal(snapshot, region), "a refused reservation wrote into the ring")

	// Consume half, then the producer can write exactly that much again.
	got := 0
	_, err = c.Poll(func(typ uint16, payload []byte) error {
		require.Equal(t, rec(got), payload)
		got++
		if got == 32 {
			return errors.New("stop here")
		}
		return nil
	})
	require.EqualError(t, err, "stop here")
	require.Equal(t, 32, got)
	for i := 0; i < 32; i++ {
		require.NoError(t, p.Append(2, rec(64+i)))
	}
	require.ErrorIs(t, p.Append(2, rec(99)), ErrRingFull)
	p.Commit()
	n, err := c.Poll(func(typ uint16, payload []byte) error {
		require.Equal(t, rec(got), payload)
		got++
		return nil
	})
	require.NoError(t, err)
	require.Equal(t, 64, n)
	require.Equal(t, 96, got)
	require.Zero(t, c.Len())
}

func TestRingAbortInvisible(t *testing.T) {
	region := ringAnonRegion(t, 4096)
	p, err := NewProducer(region)
	require.NoError(t, err)
	c, err := NewConsumer(region)
	require.NoError(t, err)
	require.NoError(t, p.Append(1, []byte("kept")))
	p.Commit()
	require.NoError(t, p.Append(1, []byte("dropped")))
	require.Equal(t, 1, p.Pending())
	var seen []string
	collect := func(typ uint16, payload []byte) error { seen = append(seen, string(payload)); return nil }
	_, err = c.Poll(collect) // uncommitted record is not visible
	require.NoError(t, err)
	require.Equal(t, []string{"kept"}, seen)
	p.Abort()
	require.NoError(t, p.Append(3, []byte("after")))
	p.Commit()
	p.Commit() // empty commit is a no-op
	_, err = c.Poll(collect)
	require.NoError(t, err)
	require.Equal(t, []string{"kept", "after"}, seen)
	st := p.Stats()
	require.Equal(t, uint64(2), st.Batches)
	require.Equal(t, uint64(2), st.RecordsWritten)

	// A new producer (restarted module) resumes at the committed tail.
	require.NoError(t, p.Append(1, []byte("lost: never committed")))
	p2, err := NewProducer(region)
	require.NoError(t, err)
	require.NoError(t, p2.Append(4, []byte("second life")))
	p2.Commit()
	_, err = c.Poll(collect)
	require.NoError(t, err)
	require.Equal(t, []string{"kept", "after", "second life"}, seen)
}

func TestRingCorruptionAndReset(t *testing.T) {
	region := ringAnonRegion(t, 4096)
	data := region[layout.RingHeaderSize:]
	p, err := NewProducer(region)
	require.NoError(t, err)
	c, err := NewConsumer(region)
	require.NoError(t, err)
	fill := func(k int) {
		for i := 0; i < k; i++ {
			require.NoError(t, p.Append(5, []byte{byte(i), 1, 2, 3}))
		}
		p.Commit()
	}
	deliver := 0
	fn := func(uint16, []byte) error { deliver++; return nil }

	cases := []struct {
		name    string
		corrupt func(head uint64)
	}{
		{"length zero", func(h uint64) { binary.LittleEndian.PutUint32(data[h%4096+16:], 0) }},
		{"length misaligned", func(h uint64) { binary.LittleEndian.PutUint32(data[h%4096+16:], 13) }},
		{"length beyond tail", func(h uint64) { binary.LittleEndian.PutUint32(data[h%4096+32:], 64) }},
		{"reserved flags", func(h uint64) { data[h%4096+16+7] = 0x80 }},
		{"pad in the middle", func(h uint64) { binary.LittleEndian.PutUint16(data[h%4096+16+4:], 0) }},
		{"tail misaligned", func(h uint64) {
			layout.Store64(region, layout.RingOffTail, layout.Load64(region, layout.RingOffTail)+4)
		}},
		{"tail too far", func(h uint64) { layout.Store64(region, layout.RingOffTail, h+8192) }},
		{"tail behind head", func(h uint64) { layout.Store64(region, layout.RingOffTail, h-8) }},
	}
	var wantBad uint64
	for _, cs := range cases {
		head := layout.Load64(region, layout.RingOffHead)
		fill(3)
		tail := layout.Load64(region, layout.RingOffTail)
		cs.corrupt(head)
		deliver = 0
		n, err := c.Poll(fn)
		require.ErrorIs(t, err, ErrCorruptRing, cs.name)
		require.Zero(t, n, cs.name)
		require.Zero(t, deliver, "%s: nothing may be delivered from a corrupt batch", cs.name)
		wantBad++
		require.Equal(t, wantBad, c.Stats().BadRecords, cs.name)
		require.Equal(t, head, layout.Load64(region, layout.RingOffHead), "%s: head must not move", cs.name)
		// The engine recovers by skipping to the tail; a misaligned tail is
		// rounded down first, so the ring is consistent after one Reset.
		require.NoError(t, c.Reset(), cs.name)
		got, err := c.Pending()
		require.NoError(t, err, "%s: consistent after the reset", cs.name)
		require.Zero(t, got, cs.name)
		n, err = c.Poll(fn)
		require.NoError(t, err)
		require.Zero(t, n)
		if cs.name == "tail misaligned" {
			require.Equal(t, tail, layout.Load64(region, layout.RingOffTail), "the misaligned tail is rounded down")
		}
		p, err = NewProducer(region)
		require.NoError(t, err)
		fill(2)
		n, err = c.Poll(fn)
		require.NoError(t, err, cs.name)
		require.Equal(t, 2, n, cs.name)
	}
	require.Equal(t, uint64(len(cases)), c.Stats().Resets)
}

// TestRingPendingReportsBadIndices: a tail more than the capacity ahead of
// the head, misaligned, or before the head leaves nothing to poll; Pending
// reports each as ErrCorruptRing, counts it once, and after a Reset the ring
// is consistent and the producer's next batch is delivered.
func TestRingPendingReportsBadIndices(t *testing.T) {
	const capacity = 4096
	region := ringAnonRegion(t, capacity)
	c, err := NewConsumer(region)
	require.NoError(t, err)
	fn := func(uint16, []byte) error { return nil }
	for i, bad := range []func(head uint64) uint64{
		func(h uint64) uint64 { return h + capacity + 8 },
		func(h uint64) uint64 { return h + 12 },
		func(h uint64) uint64 { return h - 16 },
		func(h uint64) uint64 { return h + 3 },
	} {
		p, err := NewProducer(region)
		require.NoError(t, err)
		require.NoError(t, p.Append(1, []byte("ok")))
		p.Commit()
		n, err := c.Poll(fn)
		require.NoError(t, err)
		require.Equal(t, 1, n)
		head := layout.Load64(region, layout.RingOffHead)
		layout.Store64(region, layout.RingOffTail, bad(head))
		require.Zero(t, c.Len(), "Len hides the inconsistency")
		_, err = c.Pending()
		require.ErrorIs(t, err, ErrCorruptRing, "case %d", i)
		require.Equal(t, uint64(i+1), c.Stats().BadRecords, "case %d: counted once", i)
		require.NoError(t, c.Reset())
		pend, err := c.Pending()
		require.NoError(t, err, "case %d", i)
		require.Zero(t, pend)
		require.Equal(t, uint64(i+1), c.Stats().BadRecords, "a consistent ring is not counted")
	}
}

// TestRingRecordsReadStoredEveryPoll: the records-read counter in the ring
// header follows every poll that delivered records (a reader of the segment
// sees it without the consumer's Stats).
func TestRingRecordsReadStoredEveryPoll(t *testing.T) {
	region := ringAnonRegion(t, 4096)
	p, err := NewProducer(region)
	require.NoError(t, err)
	c, err := NewConsumer(region)
	require.NoError(t, err)
	for i := 1; i <= 3; i++ {
		require.NoError(t, p.Append(1, []byte("x")))
		require.NoError(t, p.Append(1, []byte("y")))
		p.Commit()
		_, err := c.Poll(func(uint16, []byte) error { return nil })
		require.NoError(t, err)
		st, err := ReadRingStats(region)
		require.NoError(t, err)
		require.Equal(t, uint64(2*i), st.RecordsRead)
	}
}

// TestRingCorruptWarningRateLimit: one warning per interval, the first at
// once, each with the number of detections it stands for.
func TestRingCorruptWarningRateLimit(t *testing.T) {
	region := ringAnonRegion(t, 4096)
	c, err := NewConsumer(region)
	require.NoError(t, err)
	detect := func() {
		layout.Store64(region, layout.RingOffTail, layout.Load64(region, layout.RingOffHead)+3)
		_, err := c.Pending()
		require.ErrorIs(t, err, ErrCorruptRing)
		require.NoError(t, c.Reset())
	}
	t0 := time.Unix(1000, 0)
	detect()
	due, sup := c.CorruptWarning(t0, time.Second)
	require.True(t, due)
	require.Zero(t, sup)
	for i := 1; i <= 5; i++ {
		detect()
		due, _ = c.CorruptWarning(t0.Add(time.Duration(i)*100*time.Millisecond), time.Second)
		require.False(t, due, "detection %d within the interval", i)
	}
	detect()
	due, sup = c.CorruptWarning(t0.Add(time.Second), time.Second)
	require.True(t, due)
	require.Equal(t, uint64(5), sup, "the five detections in between")
}

// TestRingHeaderRewrittenDuringDelivery: a misbehaving producer rewrites a
// committed record header while the consumer delivers. Within the first
// ringHdrCache records the delivery is framed by the validated copy of the
// headers (every record arrives whole, with its original length); past them
// Poll stops at the rewritten record with ErrCorruptRing and releases
// exactly what it delivered.
func TestRingHeaderRewrittenDuringDelivery(t *testing.T) {
	const capacity = 1 << 16
	region := ringAnonRegion(t, capacity)
	data := region[layout.RingHeaderSize:]
	p, err := NewProducer(region)
	require.NoError(t, err)
	c, err := NewConsumer(region)
	require.NoError(t, err)
	const total = ringHdrCache + 40 // 16-byte records: 8-byte payload
	for _, victim := range []int{5, ringHdrCache + 10} {
		head := layout.Load64(region, layout.RingOffHead)
		for i := 0; i < total; i++ {
			buf, err := p.Reserve(4, 8)
			require.NoError(t, err)
			binary.LittleEndian.PutUint64(buf, uint64(i))
		}
		p.Commit()
		var got []uint64
		n, err := c.Poll(func(typ uint16, pl []byte) error {
			require.Len(t, pl, 8)
			got = append(got, binary.LittleEndian.Uint64(pl))
			if len(got) == 1 {
				// Corrupt the victim's length (misaligned) after validation.
				binary.LittleEndian.PutUint32(data[(head+uint64(victim)*16)%capacity:], 13)
			}
			return nil
		})
		if victim < ringHdrCache {
			require.NoError(t, err)
			require.Equal(t, total, n)
			for i, v := range got {
				require.Equal(t, uint64(i), v)
			}
			require.Equal(t, head+total*16, layout.Load64(region, layout.RingOffHead))
			continue
		}
		require.ErrorIs(t, err, ErrCorruptRing)
		require.Equal(t, victim, n, "records before the rewritten one are delivered")
		require.Len(t, got, victim)
		require.Equal(t, head+uint64(victim)*16, layout.Load64(region, layout.RingOffHead), "released up to the rewritten record")
		require.Equal(t, uint64(1), c.Stats().BadRecords)
		require.NoError(t, c.Reset())
		p, err = NewProducer(region)
		require.NoError(t, err)
	}
}

// ringFuzzRegion is one page-aligned ring region reused by the fuzz target.
var ringFuzzRegion []byte

// FuzzRingDecode feeds arbitrary ring headers, indices and data to the
// consumer (and a producer): they must never panic; the consumer either
// delivers records lying between head and tail or reports ErrCorruptRing,
// counted, delivering nothing; the producer never writes over [head, tail).
func FuzzRingDecode(f *testing.F) {
	const capacity = 4096
	valid := make([]byte, 256)
	binary.LittleEndian.PutUint64(valid[0:], layout.PackRecordHeader(64, 3, 2))
	binary.LittleEndian.PutUint64(valid[64:], layout.PackRecordHeader(16, 9, 7))
	f.Add([]byte{}, valid, uint64(0), uint64(80))
	f.Add([]byte{}, valid, uint64(4096-64), uint64(4096+80))
	f.Add([]byte{}, []byte{1, 2, 3}, uint64(8), uint64(16))
	f.Add(make([]byte, 16), valid, uint64(0), uint64(64))
	f.Add([]byte{0, 16, 0, 0, 0, 0, 0, 0, 0x52, 0x49, 0x4e, 0x47, 1, 0, 0, 0}, valid, uint64(0), uint64(64))
	f.Fuzz(func(t *testing.T, hdr, data []byte, head, tail uint64) {
		if ringFuzzRegion == nil {
			// One page-aligned mapping for the whole fuzz process.
			b, err := unix.Mmap(-1, 0, layout.RingRegionSize(capacity), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
			require.NoError(t, err)
			ringFuzzRegion = b
		}
		region := ringFuzzRegion
		clear(region)
		require.NoError(t, layout.EncodeRing(region, capacity))
		d := region[layout.RingHeaderSize:]
		for off := 0; off < capacity; off += len(data) {
			if len(data) == 0 {
				break
			}
			copy(d[off:], data)
		}
		if len(hdr) > 0 {
			copy(region[:16], hdr)
		}
		layout.Store64(region, layout.RingOffHead, head)
		layout.Store64(region, layout.RingOffTail, tail)

		c, err := NewConsumer(region)
		if err != nil {
			require.ErrorIs(t, err, ErrCorruptRing)
			_, err = NewProducer(region)
			require.ErrorIs(t, err, ErrCorruptRing)
			return
		}
		before := append([]byte(nil), d...)
		delivered := 0
		var total uint64
		n, err := c.Poll(func(typ uint16, payload []byte) error {
			require.NotEqual(t, layout.RecordTypePad, typ)
			delivered++
			total += uint64(len(payload)) + 8
			return nil
		})
		require.Equal(t, delivered, n)
		st := c.Stats()
		if err != nil {
			require.ErrorIs(t, err, ErrCorruptRing)
			require.Zero(t, n)
			require.Equal(t, uint64(1), st.BadRecords)
			require.Equal(t, head, st.Head)
			// Reset recovers from anything (a misaligned tail is rounded
			// down): the ring is consistent and empty afterwards.
			require.NoError(t, c.Reset())
			pend, err := c.Pending()
			require.NoError(t, err)
			require.Zero(t, pend)
			n, err = c.Poll(func(uint16, []byte) error { return nil })
			require.NoError(t, err)
			require.Zero(t, n)
			return
		}
		require.Equal(t, tail, st.Head, "a clean Poll consumes up to the tail")
		require.LessOrEqual(t, total, tail-head)
		require.Zero(t, st.BadRecords)

		// The producer may only write into released space. Restore the
		// indices so some data is unconsumed, then write until full.
		layout.Store64(region, layout.RingOffHead, head)
		p, err := NewProducer(region)
		require.NoError(t, err, "indices accepted by the consumer must be accepted by the producer")
		for {
			if err := p.Append(1, make([]byte, 40)); err != nil {
				require.ErrorIs(t, err, ErrRingFull)
				break
			}
		}
		p.Commit()
		for pos := head; pos != tail; pos += 8 {
			o := pos % capacity
			require.Equal(t, before[o:o+8], d[o:o+8], "producer overwrote unconsumed data at index %d", pos)
		}
	})
}

// ---- cross-process ----

// ringChildBatchProducer writes self-checking batches into the ring of the
// segment at FDP_RING_PATH, batch ids run<<32 | seq, until FDP_RING_BATCHES
// batches are committed (0: forever, until killed). It stores its pid into
// the segment's heartbeat line once it is attached.
func ringChildBatchProducer() error {
	m, err := ringOpenModule(os.Getenv("FDP_RING_PATH"))
	if err != nil {
		return err
	}
	run, _ := strconv.ParseUint(os.Getenv("FDP_RING_RUN"), 10, 32)
	batches, _ := strconv.ParseUint(os.Getenv("FDP_RING_BATCHES"), 10, 64)
	p, err := NewProducer(m.Ring())
	if err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(run, uint64(os.Getpid())))
	layout.Store32(m.B, layout.OffMPID, uint32(os.Getpid()))
	for seq := uint64(1); batches == 0 || seq <= batches; seq++ {
		abort := rng.IntN(16) == 0 && seq != batches // the last batch always commits
		if err := ringProduceBatch(p, rng, run<<32|seq, abort); err != nil {
			return err
		}
	}
	p.Stats() // publishes the counters
	return nil
}

func TestRingCrossProcess(t *testing.T) {
	const batches = 20000
	path, m := ringCreateModule(t, 1<<16)
	c, err := NewConsumer(m.Ring())
	require.NoError(t, err)
	child := ringStartChild(t, "batch-producer", "FDP_RING_PATH="+path, "FDP_RING_RUN=1", fmt.Sprintf("FDP_RING_BATCHES=%d", batches))
	exited := make(chan error, 1)
	go func() { exited <- child.cmd.Wait() }()
	var chk ringBatchChecker
	deadline := time.Now().Add(60 * time.Second)
	done := false
	for !done {
		select {
		case err := <-exited:
			require.NoError(t, err, "child output:\n%s", child.out.String())
			done = true
		default:
			require.True(t, time.Now().Before(deadline), "timeout")
		}
		_, err := c.Poll(chk.record)
		require.NoError(t, err)
		require.NoError(t, chk.closed())
	}
	_, err = c.Poll(chk.record)
	require.NoError(t, err)
	require.NoError(t, chk.closed())
	st := c.Stats()
	require.Equal(t, uint64(1)<<32|batches, chk.last, "the last batch must arrive")
	require.Equal(t, st.Batches, uint64(chk.batches))
	require.Equal(t, st.RecordsWritten, uint64(chk.records))
	require.Equal(t, st.RecordsRead, uint64(chk.records))
	require.Zero(t, st.BadRecords)
	require.Greater(t, chk.batches, batches*8/10, "about 1/16 of the batches are aborted")
	t.Logf("batches %d records %d full %d", chk.batches, chk.records, st.Full)
}

func ringKillRuns(t *testing.T) int {
	if s := os.Getenv("FDP_KILL_RUNS"); s != "" {
		n, err := strconv.Atoi(s)
		require.NoError(t, err)
		return n
	}
	if testing.Short() {
		return 200
	}
	return 1000
}

// TestRingSIGKILLProducer kills producer children at random points (before
// attaching, in the middle of batches, during commits) while one long-lived
// consumer in the parent validates that it only ever sees whole committed
// batches, and that a new producer resumes cleanly after each death.
func TestRingSIGKILLProducer(t *testing.T) {
	runs := ringKillRuns(t)
	path, m := ringCreateModule(t, 1<<16)
	c, err := NewConsumer(m.Ring())
	require.NoError(t, err)
	var chk ringBatchChecker
	rng := rand.New(rand.NewPCG(42, uint64(os.Getpid())))
	poll := func() {
		_, err := c.Poll(chk.record)
		require.NoError(t, err)
		require.NoError(t, chk.closed())
	}
	start := time.Now()
	var attached, withData int
	for run := 1; run <= runs; run++ {
		layout.Store32(m.B, layout.OffMPID, 0)
		before := chk.batches
		child := ringStartChild(t, "batch-producer", "FDP_RING_PATH="+path, fmt.Sprintf("FDP_RING_RUN=%d", run), "FDP_RING_BATCHES=0")
		pid := child.cmd.Process.Pid
		// Most runs wait until the child attached, then let it produce for
		// a random time (consuming meanwhile); some kill it during start-up.
		if rng.IntN(8) != 0 {
			limit := time.Now().Add(10 * time.Second)
			for layout.Load32(m.B, layout.OffMPID) != uint32(pid) {
				require.True(t, time.Now().Before(limit), "child did not attach:\n%s", child.out.String())
				poll()
			}
			attached++
			until := time.Now().Add(time.Duration(rng.IntN(3000)) * time.Microsecond)
			for time.Now().Before(until) {
				poll()
			}
		}
		require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
		err := child.cmd.Wait()
		require.True(t, ringExitedBySignal(err, syscall.SIGKILL), "child exit %v:\n%s", err, child.out.String())
		poll()
		if chk.batches > before {
			withData++
		}
		require.Zero(t, c.Len(), "everything committed is consumed")
	}
	st := c.Stats()
	require.Zero(t, st.BadRecords)
	// The producer's counters are statistics published every
	// ringStatsEvery commits: a kill loses at most that many from them.
	require.LessOrEqual(t, st.Batches, uint64(chk.batches))
	require.LessOrEqual(t, uint64(chk.batches)-st.Batches, uint64(runs*ringStatsEvery))
	require.LessOrEqual(t, st.RecordsWritten, uint64(chk.records))
	require.Equal(t, st.RecordsRead, uint64(chk.records), "the consumer's own counter is exact")
	require.Greater(t, withData, runs/4, "enough runs must produce data before the kill")
	t.Logf("%d kills in %v (%d attached, %d produced data); %d batches, %d records, %d full", runs, time.Since(start), attached, withData, chk.batches, chk.records, st.Full)
}
