package record

import (
	"fmt"
	"math/bits"

	"github.com/fdp-engine/fdp/layout"
)

// Capturer encodes published slots of one world segment as frame payloads:
// a keyframe (everything the slot holds) or a delta against the previous
// capture. The delta is version based (R4): a chunk's records, a column, a
// singleton are copied when their version word in the slot is newer than
// the slot version of the previous capture, which every chunk the world
// touched since then has (the publisher stamps versions at its seal); the
// slot need not be the one captured before, and frames published but not
// captured in between (dropped) are covered by the next capture.
//
// A Capturer is not safe for concurrent use: the recorder captures one
// slot at a time (its writer goroutine, while the frame thread keeps the
// slot leased).
type Capturer struct {
	lw       *layout.World
	keyEvery int
	budget   float64
	cur, old capState
	force    bool
}

// DefaultKeyframeBudget is a Capturer's keyframe budget until
// SetKeyframeBudget: a keyframe once the deltas since the last one add up to
// 3 times its bytes, raw (uncompressed): a seek decodes at most about 4
// keyframes' worth of raw bytes, and keyframes add a third to the deltas'
// raw bytes (stored, keyframes compress better: docs/PERFORMANCE.md).
const DefaultKeyframeBudget = 3

// capState is what the next delta is based on.
type capState struct {
	have     bool
	version  uint64
	mask     [layout.MaxMaskWords]uint64
	chunks   uint32
	sinceKey int // deltas since the last keyframe
	keyBytes int // payload bytes of the last keyframe
	sinceB   int // payload bytes of the deltas since
}

// CaptureInfo describes one capture.
type CaptureInfo struct {
	Kind    Kind
	Frame   uint64
	Version uint64
	Base    uint64
	// Bytes is the payload's size; Dirty the bytes of records, columns and
	// singleton values it copied from the slot.
	Bytes, Dirty                   int
	ChunkRecs, Columns, Singletons int
	Events, Batches                int
}

// NewCapturer returns a capturer of slots of lw that makes every
// keyframeEvery-th capture a keyframe at the latest (0: no such bound), the
// first, those a change of slot mask or ForceKeyframe needs, and those the
// keyframe budget calls for (SetKeyframeBudget).
func NewCapturer(lw *layout.World, keyframeEvery int) *Capturer {
	return &Capturer{lw: lw, keyEvery: max(0, keyframeEvery), budget: DefaultKeyframeBudget}
}

// SetKeyframeBudget makes a capture a keyframe when the payload bytes of
// the deltas since the last keyframe reach f times the keyframe's (0: no
// such rule). It bounds the work of a seek, which decodes the keyframe and
// the deltas after it, to about 1 + f keyframes' worth, whatever the
// dirty fraction; and the bytes it adds to a recording to at most 1/f of a
// keyframe per f keyframes' worth of deltas.
func (c *Capturer) SetKeyframeBudget(f float64) { c.budget = max(0, f) }

// ForceKeyframe makes the next capture a keyframe.
func (c *Capturer) ForceKeyframe() { c.force = true }

// Rewind undoes the effect of the last Capture on the next one: call it
// when the captured payload was not recorded (the writer's queue was full),
// so that the next delta is based on the last capture that was. One level
// only: a second Rewind without a Capture between forces a keyframe.
func (c *Capturer) Rewind() {
	if c.cur == c.old {
		c.force = true
	}
	c.cur = c.old
}

// Capture appends the payload of a frame record of complete slot s (even
// seq, version ≠ 0; the caller keeps it from being rewritten: a lease) to
// dst, with the frame's events and command batches. It returns the record
// kind to write it as (Writer.TryEnqueue) in the info.
func (c *Capturer) Capture(dst []byte, s int, events []Event, batches []Batch) ([]byte, CaptureInfo, error) {
	lw := c.lw
	if s < 0 || s >= lw.Slots {
		return dst, CaptureInfo{}, fmt.Errorf("capture: slot %d of %d", s, lw.Slots)
	}
	si := lw.ReadSlotInfo(s)
	if si.Seq&1 != 0 || si.Seq == 0 || si.Version == 0 {
		return dst, CaptureInfo{}, fmt.Errorf("capture: slot %d is not a complete frame (seq %d, version %d)", s, si.Seq, si.Version)
	}
	if err := lw.ValidateSlotInfo(si); err != nil {
		return dst, CaptureInfo{}, fmt.Errorf("capture: slot %d: %w", s, err)
	}
	key := c.force || !c.cur.have || c.cur.mask != si.Mask || si.Version < c.cur.version || si.Chunks < c.cur.chunks ||
		(c.keyEvery > 0 && c.cur.sinceKey+1 >= c.keyEvery) ||
		(c.budget > 0 && float64(c.cur.sinceB) >= c.budget*float64(c.cur.keyBytes))
	start := len(dst)
	out, info, ok := c.encode(dst, s, si, key, events, batches)
	if !ok { // a chunk the delta cannot describe: take the whole slot
		out, info, ok = c.encode(dst[:start], s, si, true, events, batches)
	}
	if !ok {
		return dst[:start], CaptureInfo{}, fmt.Errorf("capture: slot %d is not a complete frame of version %d (a version word is above it or a chunk in use has none)", s, si.Version)
	}
	c.old = c.cur
	c.force = false
	c.cur = capState{have: true, version: si.Version, mask: si.Mask, chunks: si.Chunks, sinceKey: c.cur.sinceKey + 1,
		keyBytes: c.cur.keyBytes, sinceB: c.cur.sinceB + info.Bytes}
	if info.Kind == KindKeyframe {
		c.cur.sinceKey, c.cur.keyBytes, c.cur.sinceB = 0, info.Bytes, 0
	}
	return out, info, nil
}

// encode appends the payload; ok is false when the slot's version words do
// not allow the record asked (a new chunk with an old structural version
// in a delta, or a version above the slot's).
func (c *Capturer) encode(dst []byte, s int, si layout.SlotInfo, key bool, events []Event, batches []Batch) ([]byte, CaptureInfo, bool) {
	lw := c.lw
	b := lw.B
	base := c.cur.version
	info := CaptureInfo{Kind: KindDelta, Frame: si.Frame, Version: si.Version, Base: base}
	if key {
		info.Kind, info.Base, base = KindKeyframe, 0, 0
	}
	newer := func(v uint64) bool { return v > base }
	start := len(dst)
	dst = append(dst, make([]byte, frameFixed)...)
	fr := Frame{Frame: si.Frame, Version: si.Version, Base: info.Base, PubNanos: si.PubNanos, Chunks: si.Chunks,
		Entities: si.Entities, Alive: si.Alive, Mask: si.Mask}
	K := lw.ChunkCapacity
	R := lw.RecordSize
	for ch := 0; ch < int(si.Chunks); ch++ {
		co := lw.ChunkOff(s, ch)
		sv := le.Uint64(b[co+layout.ChunkStructVersion:])
		if sv > si.Version || sv == 0 {
			return dst, info, false
		}
		if !newer(sv) {
			if ch >= int(c.cur.chunks) {
				return dst, info, false
			}
			continue
		}
		rows := le.Uint32(b[co+layout.ChunkRows:])
		if int(rows) > K {
			return dst, info, false
		}
		eo, _ := lw.EntityRange(s, ch)
		dst = appendChunkRec(dst, uint32(ch), rows, le.Uint32(b[co+layout.ChunkAlive:]), sv, b[eo:eo+int(rows)*R])
		info.ChunkRecs++
		info.Dirty += int(rows) * R
	}
	for ch := 0; ch < int(si.Chunks); ch++ {
		var rows int
		for j, m := range si.Mask {
			for ; m != 0; m &= m - 1 {
				k := 64*j + bits.TrailingZeros64(m)
				v := le.Uint64(b[lw.ChunkVersionOff(s, ch, k):])
				if v > si.Version {
					return dst, info, false
				}
				if v == 0 || !newer(v) {
					continue
				}
				o, e := lw.ColumnRange(s, ch, k)
				if cd := lw.Components[k]; cd.VarSize() {
					if rows == 0 {
						rows = min(K, int(le.Uint32(b[lw.ChunkOff(s, ch)+layout.ChunkRows:])))
					}
					eo, _ := lw.EntityRange(s, ch)
					e += arenaPrefix(b[o:e], b[eo:], rows, lw.MaskWords, k, lw.ArenaSize(k), cd.MaxLen)
				}
				dst = appendColumn(dst, uint32(ch), uint16(k), v, b[o:e])
				info.Columns++
				info.Dirty += e - o
			}
		}
	}
	for i := range lw.Singletons {
		v := le.Uint64(b[lw.SingletonVersionOff(s, i):])
		if v > si.Version {
			return dst, info, false
		}
		if v == 0 || !newer(v) {
			continue
		}
		o, e := lw.SingletonRange(s, i)
		dst = appendSingleton(dst, uint16(i), v, b[o:e])
		info.Singletons++
		info.Dirty += e - o
	}
	dst = appendBatches(appendEvents(dst, events), batches)
	info.Events, info.Batches = len(events), len(batches)
	frameHead(dst[start:], &fr)
	h := dst[start:]
	le.PutUint32(h[80:], uint32(info.ChunkRecs))
	le.PutUint32(h[84:], uint32(info.Columns))
	le.PutUint32(h[88:], uint32(info.Singletons))
	le.PutUint32(h[92:], uint32(len(events)))
	le.PutUint32(h[96:], uint32(len(batches)))
	info.Bytes = len(dst) - start
	return dst, info, true
}

// arenaPrefix returns the bytes of an arena of size arena that the valid
// handles in column hs of the rows below rows whose record (in recs) is
// alive and names component k reach, rounded up to 8. Other rows' handles
// are unspecified (docs/LAYOUT.md "Variable-size components"): a dead row's
// may point at stale bytes past the used part of the arena, which differ
// from slot to slot.
func arenaPrefix(hs, recs []byte, rows, words, k, arena int, maxLen uint32) int {
	end := 0
	R := layout.RecordSize(words)
	for r := 0; r < rows; r++ {
		if !rowHas(recs[r*R:], k) {
			continue
		}
		h := layout.DecodeHandle(hs[r*layout.BytesHandleSize:])
		if h.Valid(arena, maxLen) {
			end = max(end, int(h.Off+h.Len))
		}
	}
	return min(pad8(end), arena)
}

// rowHas reports whether the entity record at rec is alive and names
// component k.
func rowHas(rec []byte, k int) bool {
	return le.Uint32(rec[layout.RecordFlags:])&layout.FlagAlive != 0 && le.Uint64(rec[layout.RecordMask+8*(k/64):])&(1<<(k%64)) != 0
}
