package testutil

import (
	"encoding/binary"
	"errors"
	"hash"
	"hash/crc64"

	"github.com/fdp-engine/fdp/layout"
)

// Frame content checksum: what a reader of a published frame can see, and
// nothing the engine is free to choose differently from one run to the next.
//
// It covers the slot header's frame number, chunks in use, entity
// high-water, alive count and slot mask; for every chunk in use its entity
// records (all ChunkCapacity of them) and the column of every component of
// the slot mask (of a variable-size component, the handle and the value of
// every alive row that has it); and every
// singleton: whether it was ever set and its bytes. It leaves out the
// versions (a replay stamps its own: a module compares versions of one
// engine only), the publish time, the seq and the slot index.
//
// It is computed from the segment's bytes through the byte layout alone
// (package layout), not through package sync's accessors, so that a test
// comparing the live run's frames with a replay's checks the publisher and
// the replay against an independent reading.

var crcTable = crc64.MakeTable(crc64.ECMA)

// FrameChecksum returns the content checksum of slot s of the world segment
// lw (whose bytes are lw.B) and the frame number it holds. The caller holds
// the slot (a pin or lease) or checks its seq around the call.
func FrameChecksum(lw *layout.World, s int) (frame, sum uint64) {
	b := lw.B
	info := lw.ReadSlotInfo(s)
	h := crc64.New(crcTable)
	var w [8]byte
	put := func(h hash.Hash64, v uint64) {
		binary.LittleEndian.PutUint64(w[:], v)
		h.Write(w[:])
	}
	put(h, info.Frame)
	put(h, uint64(info.Chunks))
	put(h, uint64(info.Entities))
	put(h, uint64(info.Alive))
	for _, m := range info.Mask {
		put(h, m)
	}
	for c := 0; c < int(info.Chunks) && c < lw.MaxChunks; c++ {
		o, e := lw.EntityRange(s, c)
		h.Write(b[o:e])
		for k := range lw.Components {
			if info.Mask[k/64]&(1<<(k%64)) == 0 {
				continue
			}
			if lw.ArenaSize(k) == 0 {
				o, e := lw.ColumnRange(s, c, k)
				h.Write(b[o:e])
				continue
			}
			// A variable-size component: the handle and value of each row
			// that has it. The rest of the arena is unreachable, and the
			// publisher copies only the arena's used part (what lies
			// beyond is of older frames).
			co, _ := lw.ColumnRange(s, c, k)
			ao, ae := lw.ArenaRange(s, c, k)
			ro, _ := lw.EntityRange(s, c)
			for i := 0; i < lw.ChunkCapacity; i++ {
				rec := layout.DecodeRecord(b[ro+i*lw.RecordSize:], lw.MaskWords)
				if rec.Flags&layout.FlagAlive == 0 || rec.Mask[k/64]&(1<<(k%64)) == 0 {
					continue
				}
				hb := b[co+layout.BytesHandleSize*i : co+layout.BytesHandleSize*(i+1)]
				h.Write(hb)
				hd := layout.DecodeHandle(hb)
				if lo, hi := ao+int(hd.Off), ao+int(hd.Off)+int(hd.Len); hi <= ae && lo <= hi {
					h.Write(b[lo:hi])
				}
			}
		}
	}
	for i := range lw.Singletons {
		set := uint64(0)
		if layout.Load64(b, lw.SingletonVersionOff(s, i)) != 0 {
			set = 1
		}
		put(h, set)
		o, e := lw.SingletonRange(s, i)
		h.Write(b[o:e])
	}
	return info.Frame, h.Sum64()
}

// ErrTornChecksum: the frame was rewritten while its checksum was computed.
var ErrTornChecksum = errors.New("testutil: frame rewritten during the checksum")

// PinnedChecksum pins a frame with pin (a sync.Reader's Pin:
// PinnedChecksum(r.Layout(), r.Pin)), computes its FrameChecksum and
// releases it. The pin holds the slot (the engine never rewrites a pinned
// slot); a torn read is reported, never returned as a checksum. (A function
// argument, not a *sync.Reader: package sync's own tests import testutil.)
func PinnedChecksum[F interface {
	Slot() int
	Release() error
}](lw *layout.World, pin func() (F, error)) (frame, sum uint64, err error) {
	f, err := pin()
	if err != nil {
		return 0, 0, err
	}
	frame, sum = FrameChecksum(lw, f.Slot())
	if err := f.Release(); err != nil {
		return 0, 0, errors.Join(ErrTornChecksum, err)
	}
	return frame, sum, nil
}
