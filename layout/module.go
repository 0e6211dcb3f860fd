package layout

import (
	"bytes"
	"fmt"
)

// Per-module segment (kind KindModule, file "fdp.<instance>.mod.<slot>").
//
// The engine creates one per attached module. It holds the module's identity
// (kind header), the tick and done doorbells, the module's heartbeat and the
// module -> engine command ring:
//
//	[0,4096)      common header page
//	  1024..1143  kind header: slot u32, tier u32, frequency u32, reserved u32,
//	              read mask word 0 u64, ring capacity u64, name [32]byte,
//	              read mask words 1..3 (ModuleMaskOff), group [32]byte
//	  2048..2175  tick doorbell line (engine writes, module waits)
//	  2176..2303  done doorbell line (module writes, engine waits)
//	  2304..2431  heartbeat line (module writes)
//	  2432..2559  reader line (module writes): its pin word and pin counters
//	  2560..2687  event line (engine writes): the module's acknowledged event cursor
//	  2688..4095  statistics block (engine writes): the module's counters (modstats.go)
//	[4096, ...)   SecRing: ring region (see ring.go), size RingRegionSize(cap)
//	              padded up to a page
const (
	// MaxModules bounds module slot indices: the engine's module table has
	// at most this many entries (host.Config.MaxModules may set fewer).
	// A multiple of 64 (ModuleSet's words). Each attached module costs a
	// segment of its own (one header page plus its command ring, 1 MiB by
	// default: docs/PERFORMANCE.md, "Memory").
	MaxModules = 256
	// MaxTier bounds the tier field.
	MaxTier = 15
	// MaxEvery bounds a module's Every (frames between its ticks): once a
	// day at 1 kHz, far above any sensible period, small enough that frame
	// arithmetic cannot overflow. The engine refuses a hello beyond it and
	// the supervisor a config.
	MaxEvery = 86_400_000
	// ModuleNameLen is the size of the NUL-padded module name field.
	ModuleNameLen = 32

	OffMSlot      = OffKindHeader + 0  // u32 module slot index, < MaxModules
	OffMTier      = OffKindHeader + 4  // u32 tier, <= MaxTier: ModuleTierFast, ModuleTierSlow
	OffMFrequency = OffKindHeader + 8  // u32 requested run frequency as negotiated in the handshake (host/ defines the unit)
	OffMReserved  = OffKindHeader + 12 // u32 zero
	OffMMask      = OffKindHeader + 16 // u64 component mask the module reads: word 0 (components 0..63)
	OffMRingCap   = OffKindHeader + 24 // u64 ring data area capacity (bytes)
	OffMName      = OffKindHeader + 32 // [32]byte module name, NUL padded
	OffMMaskHi    = OffKindHeader + 64 // 3 x u64: words 1..3 of the read mask (components 64..255; ModuleMaskOff)
	// OffMGroup is the convoy group the module's hello asked for, NUL
	// padded like the name: "" (automatic: tier and frequency), "solo"
	// (never shares) or a group name. Segments of engines before it hold
	// zeros there: "".
	OffMGroup = OffKindHeader + 88 // [32]byte

	// Tick doorbell line: the engine writes frame, lease info, then
	// increments the tick word and futex-wakes it if tick need-wake is set.
	OffMTick         = 2048 // u32 tick word (futex)
	OffMTickNeedWake = 2052 // u32 set by a module about to futex-wait on the tick word
	OffMTickFrame    = 2056 // u64 frame number of the tick
	OffMTickLease    = 2064 // u64 slot/lease info of the tick (host/ packs it, e.g. PackPin)
	OffMTickStamp    = 2072 // u64 CLOCK_MONOTONIC ns at which the engine rang the tick (written before the ring)

	// Done doorbell line: the module writes done frame, then increments the
	// done word and futex-wakes it if done need-wake is set.
	OffMDone         = 2176 // u32 done word (futex)
	OffMDoneNeedWake = 2180 // u32 set by the engine about to futex-wait on the done word
	OffMDoneFrame    = 2184 // u64 frame number the module finished

	// Heartbeat line, written by the module.
	OffMHeartbeat = 2304 // u64 Unix nanos of the module's last heartbeat
	OffMPID       = 2312 // u32 module process id
	OffMStartTime = 2320 // u64 module process start time (clock ticks since boot)
	// Tick wake statistics, written by the module when it wakes for a tick
	// (before it runs it), read by the engine when the tick is done.
	OffMWakeNanos = 2328 // u64 wake latency of the last tick: CLOCK_MONOTONIC at wake minus the tick stamp, ns
	OffMWakeWarm  = 2336 // u64 ticks seen while polling (spin or pre-wake): no futex wake needed
	OffMWakeCold  = 2344 // u64 ticks that woke the module from FUTEX_WAIT
	// OffMLeaving: nonzero once the module's process is leaving after its
	// current tick (the Go SDK's last tick of Options.MaxTicks): the engine
	// dispatches it no further tick (a process waiting for its last batch to
	// be played back before it exits would otherwise be given one, and a
	// snapshot with it). The module can only stop its own ticks with it.
	OffMLeaving = 2352 // u64

	// Reader line, written by the module: the module's pin (control
	// protocol 3). Everything a module writes lives in its own segment; the
	// engine registers this pin word with its publisher while the module is
	// in a tick and ignores it otherwise.
	OffMPin        = 2432 // u64 pin word: seq<<8 | (slot+1); 0 = nothing pinned (PackPin)
	OffMPinCount   = 2440 // u64 successful pins, total
	OffMPinRetries = 2448 // u64 pin attempts that found the slot being rewritten
	OffMPinNanos   = 2456 // u64 Unix nanos of the last pin

	// Event line, written by the engine: the event log cursor the module's
	// last played batch acknowledged (see CmdAckEvents in wire.go). The
	// engine keeps it across the module's restarts (in its own memory) and
	// writes it into every new segment of the module before the welcome, so
	// that a restarted module resumes at the first event its predecessor
	// did not finish a tick on. A module admitted for the first time by
	// this engine gets the log's committed end at its admission. {0, 0}:
	// the engine wrote nothing; the SDK then reads from the log's tail.
	OffMAckSeq = 2560 // u64 next event seq not acknowledged
	OffMAckPos = 2568 // u64 its logical position in the event log

	// OffMStats is the statistics block, written by the engine (see
	// modstats.go). A module can overwrite its own block: the figures are
	// for display, the engine never reads them back.
	OffMStats = 2688
	// ModuleStatsEnd bounds the statistics block (the header page).
	ModuleStatsEnd = HeaderSize

	// ModuleRingOff is the offset of the ring region.
	ModuleRingOff = HeaderSize
)

// Word64Ptr returns the address of the 64-bit shared word at b[off:] (a pin
// word), for a reader that scans many words of different segments with
// sync/atomic. Same invariants as Load64 (see atomic.go): b stays mapped
// while the pointer is used, off is in range and 8-aligned (checked).
func Word64Ptr(b []byte, off int) *uint64 { return word64(b, off) }

// ModuleInfo is the identity of a module written into its segment.
type ModuleInfo struct {
	Slot      uint32
	Name      string
	Tier      uint32
	Frequency uint32
	Mask      [MaxMaskWords]uint64 // components the module reads (ModuleMaskOff)
	Group     string               // convoy group of the hello (OffMGroup); "" automatic
}

// Values of the tier field (OffMTier).
const (
	ModuleTierFast = 0
	ModuleTierSlow = 1
)

// ModuleTierName names a tier field value as the hello and the supervisor's
// configuration write it ("fast", "slow").
func ModuleTierName(t uint32) string {
	switch t {
	case ModuleTierFast:
		return "fast"
	case ModuleTierSlow:
		return "slow"
	}
	return fmt.Sprintf("tier(%d)", t)
}

// ModuleSegmentName returns the file name of the segment of module slot in
// an instance: "fdp.<instance>.mod.<slot>".
func ModuleSegmentName(instance string, slot int) string {
	return fmt.Sprintf("fdp.%s.mod.%d", instance, slot)
}

// ValidModuleName reports whether s may be used as a module name: 1..31
// bytes of [A-Za-z0-9_.-].
func ValidModuleName(s string) bool {
	if len(s) == 0 || len(s) >= ModuleNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.'
		if !ok {
			return false
		}
	}
	return true
}

// nulPadded returns the string of a NUL-padded field: the bytes before the
// first NUL, with only NULs after it.
func nulPadded(f []byte, what string) (string, error) {
	if j := bytes.IndexByte(f, 0); j >= 0 {
		if bytes.ContainsFunc(f[j:], func(r rune) bool { return r != 0 }) {
			return "", corrupt("%s: garbage after NUL", what)
		}
		f = f[:j]
	}
	return string(f), nil
}

func validModuleInfo(m ModuleInfo) error {
	if m.Slot >= MaxModules {
		return fmt.Errorf("module slot %d not < %d", m.Slot, MaxModules)
	}
	if !ValidModuleName(m.Name) {
		return fmt.Errorf("module name %q: must be 1..%d bytes of [A-Za-z0-9_.-]", m.Name, ModuleNameLen-1)
	}
	if len(m.Group) >= ModuleNameLen {
		return fmt.Errorf("module group %q: longer than %d bytes", m.Group, ModuleNameLen-1)
	}
	if m.Tier > MaxTier {
		return fmt.Errorf("module tier %d > %d", m.Tier, MaxTier)
	}
	return nil
}

// ModuleGeometry places the ring in a module segment.
type ModuleGeometry struct {
	RingCapacity int
	RingOff      int // offset of the ring region
	RingSize     int // RingRegionSize(RingCapacity)
	TotalSize    int
}

// ComputeModuleGeometry derives the geometry of a module segment whose ring
// data area holds ringCapacity bytes (a power of two in
// [MinRingCapacity, MaxRingCapacity]).
func ComputeModuleGeometry(ringCapacity int) (*ModuleGeometry, error) {
	rs := RingRegionSize(ringCapacity)
	if rs < 0 {
		return nil, fmt.Errorf("%w: ring capacity %d must be a power of two in [%d,%d]", ErrInvalidParam, ringCapacity, MinRingCapacity, MaxRingCapacity)
	}
	return &ModuleGeometry{
		RingCapacity: ringCapacity,
		RingOff:      ModuleRingOff,
		RingSize:     rs,
		TotalSize:    align(ModuleRingOff+rs, PageSize),
	}, nil
}

// EncodeModule initialises a zeroed module segment of g.TotalSize bytes. The
// header's Kind, TotalSize and Sections are filled in here; SchemaHash,
// Instance and creator fields come from h. The ready word is left at zero:
// the caller marks it ready with MarkReady.
func EncodeModule(b []byte, g *ModuleGeometry, h Header, info ModuleInfo) error {
	if len(b) != g.TotalSize {
		return fmt.Errorf("%w: buffer of %d bytes, geometry needs %d", ErrInvalidParam, len(b), g.TotalSize)
	}
	if err := validModuleInfo(info); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidParam, err)
	}
	h.Kind = KindModule
	h.TotalSize = uint64(g.TotalSize)
	h.Sections = []Section{{ID: SecRing, Count: 1, Offset: uint64(g.RingOff), Size: uint64(g.RingSize)}}
	put32(b, OffMSlot, info.Slot)
	put32(b, OffMTier, info.Tier)
	put32(b, OffMFrequency, info.Frequency)
	put32(b, OffMReserved, 0)
	putMask(b, ModuleMaskOff, info.Mask)
	put64(b, OffMRingCap, uint64(g.RingCapacity))
	var name [ModuleNameLen]byte
	copy(name[:], info.Name)
	copy(b[OffMName:], name[:])
	var group [ModuleNameLen]byte
	copy(group[:], info.Group)
	copy(b[OffMGroup:], group[:])
	if err := EncodeRing(b[g.RingOff:g.RingOff+g.RingSize], g.RingCapacity); err != nil {
		return err
	}
	return EncodeHeader(b, &h)
}

// Module is a validated view of a module segment.
type Module struct {
	B      []byte
	Header *Header
	Info   ModuleInfo
	*ModuleGeometry
}

// DecodeModule validates a module segment: the common header, the kind, the
// module identity, the ring section placement and the static ring header.
// It never panics.
func DecodeModule(b []byte) (*Module, error) {
	h, err := DecodeHeader(b)
	if err != nil {
		return nil, err
	}
	if h.Kind != KindModule {
		return nil, fmt.Errorf("%w: %s, want module", ErrBadKind, KindName(h.Kind))
	}
	name, err := nulPadded(b[OffMName:OffMName+ModuleNameLen], "module name")
	if err != nil {
		return nil, err
	}
	group, err := nulPadded(b[OffMGroup:OffMGroup+ModuleNameLen], "module group")
	if err != nil {
		return nil, err
	}
	info := ModuleInfo{
		Slot:      get32(b, OffMSlot),
		Name:      name,
		Group:     group,
		Tier:      get32(b, OffMTier),
		Frequency: get32(b, OffMFrequency),
		Mask:      getMask(b, ModuleMaskOff),
	}
	if err := validModuleInfo(info); err != nil {
		return nil, corrupt("%v", err)
	}
	if r := get32(b, OffMReserved); r != 0 {
		return nil, corrupt("module reserved field %#x", r)
	}
	rc := get64(b, OffMRingCap)
	if !ValidRingCapacity(rc) {
		return nil, corrupt("ring capacity %d is not a power of two in [%d,%d]", rc, MinRingCapacity, MaxRingCapacity)
	}
	g, err := ComputeModuleGeometry(int(rc))
	if err != nil {
		return nil, corrupt("module parameters: %v", err)
	}
	if len(h.Sections) != 1 {
		return nil, corrupt("module segment has %d sections, want 1", len(h.Sections))
	}
	rs, ok := h.Section(SecRing)
	if !ok || rs.Count != 1 || rs.Offset != uint64(g.RingOff) || rs.Size != uint64(g.RingSize) || h.TotalSize != uint64(g.TotalSize) {
		return nil, corrupt("ring section does not match ring capacity %d", rc)
	}
	c, err := DecodeRingHeader(b[g.RingOff : g.RingOff+g.RingSize])
	if err != nil {
		return nil, err
	}
	if c != rc {
		return nil, corrupt("ring header capacity %d, kind header says %d", c, rc)
	}
	return &Module{B: b, Header: h, Info: info, ModuleGeometry: g}, nil
}

// Ring returns the ring region of the module segment.
func (m *Module) Ring() []byte { return m.B[m.RingOff : m.RingOff+m.RingSize : m.RingOff+m.RingSize] }
