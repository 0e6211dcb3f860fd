package host

// Modules on other hosts (issue 17, docs/ARCHITECTURE.md "Beyond one
// machine").
//
// Engine side: a bridge hands the engine the committed batches of remote
// modules over the control socket (ipc/control_remote.go). They are queued
// and played on the frame thread right after the local modules' batches,
// each with a world.Playback of its own (validated like a local batch: a
// rejected command changes nothing). Exactly once (X1): the engine keeps,
// per remote incarnation, the sequences it played (the highest below which
// every one was, and those played above it) and refuses as a duplicate
// every batch it played already, so a batch delivered twice (its bridge
// killed between the play and the JetStream ack, a NATS restart, a mirror
// publishing again) is played once. A set, not only a high-water mark: a
// batch the killed bridge had taken comes again only after JetStream's ack
// wait, after later ones (the order a module's batches are played in is
// then not theirs: docs/ARCHITECTURE.md "Beyond one machine"). The table
// lives as long as the engine: bridges and NATS servers may restart under
// it.
//
// Mirror side: a replay engine with a forward hook (SetForward) hands
// every module's committed batch, as command records, to the hook (the
// mirror publishes it to JetStream) after the dry run that validated and
// counted it locally.

import (
	"encoding/binary"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/fdp-engine/fdp/ipc"
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/world"
)

// ForwardBatch is a mirror module's committed batch (SetForward).
type ForwardBatch struct {
	Module   string
	Slot     int
	PID      int
	PIDStart uint64
	// Frame is the frame the module's tick read (the mirrored frame).
	Frame uint64
	// Commands: the batch's records (AppendRemoteCommand encoding); only
	// valid during the call.
	Commands []byte
}

// SetForward makes every committed module batch go to fn as well (a
// mirror; called on the frame thread). Set it before the first Step.
func (e *Engine) SetForward(fn func(ForwardBatch)) {
	e.mu.Lock()
	e.forward = fn
	e.mu.Unlock()
}

// AppendRemoteCommand appends one command record in the remote batch
// encoding: uint16 type, uint32 length, payload (little endian).
func AppendRemoteCommand(dst []byte, typ uint16, payload []byte) []byte {
	dst = binary.LittleEndian.AppendUint16(dst, typ)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(payload)))
	return append(dst, payload...)
}

// SplitRemoteCommands calls fn for every record of b; it checks the whole
// encoding first, so a malformed batch calls fn for nothing.
func SplitRemoteCommands(b []byte, fn func(typ uint16, payload []byte)) error {
	for i := 0; i < len(b); {
		if len(b)-i < 6 {
			return fmt.Errorf("remote batch: %d trailing bytes at offset %d, a record head is 6", len(b)-i, i)
		}
		n := int(binary.LittleEndian.Uint32(b[i+2:]))
		if n > len(b)-i-6 {
			return fmt.Errorf("remote batch: record at offset %d of %d bytes, %d left", i, n, len(b)-i-6)
		}
		i += 6 + n
	}
	if fn == nil {
		return nil
	}
	for i := 0; i < len(b); {
		n := int(binary.LittleEndian.Uint32(b[i+2:]))
		fn(binary.LittleEndian.Uint16(b[i:]), b[i+6:i+6+n])
		i += 6 + n
	}
	return nil
}

// RemoteModule is what the engine knows of one remote module incarnation
// (`engine stat`, RemoteModules).
type RemoteModule struct {
	Module      string `json:"module"`
	Mirror      string `json:"mirror"`
	Incarnation uint64 `json:"incarnation"`
	// LastSeq: every batch sequence up to it was played; Ahead counts
	// those played above it (a batch delivered again after a later one).
	LastSeq    uint64 `json:"last_seq"`
	Ahead      int    `json:"ahead"`
	Batches    uint64 `json:"batches"`
	Duplicates uint64 `json:"duplicates"`
	Malformed  uint64 `json:"malformed"`
	Applied    uint64 `json:"applied"`
	Rejected   uint64 `json:"rejected"`
	// Lag is the engine frame of the last batch's play minus the frame
	// its tick read; LastFrame the frame it was played in.
	Lag       uint64 `json:"lag_frames"`
	LastFrame uint64 `json:"last_frame"`

	play   *world.Playback
	played map[uint64]bool // sequences above LastSeq played
}

// remoteWait bounds how long a remote request waits for the frame thread.
const remoteWait = 2 * time.Second

type remoteReq struct {
	b    ipc.RemoteBatch
	res  ipc.RemoteResult
	err  error
	done chan struct{}
}

// remoteState: q is filled by control-plane goroutines (mu); mods is the
// frame thread's (read under e.mu by RemoteModules).
type remoteState struct {
	mu   sync.Mutex
	q    []*remoteReq
	snap []ipc.RemoteModuleState // for time control's status (mu)
	mods map[uint64]*RemoteModule
}

// remoteRequest answers a remote batch (ipc.ControlConfig.Remote).
func (e *Engine) remoteRequest(b ipc.RemoteBatch) (ipc.RemoteResult, error) {
	e.mu.Lock()
	replay := e.replay != nil
	e.mu.Unlock()
	if replay {
		return ipc.RemoteResult{}, fmt.Errorf("%w: instance %s is a replay or a mirror: remote batches go to the engine that simulates", ipc.ErrCtlRefused, e.cfg.Instance)
	}
	r := &remoteReq{b: b, done: make(chan struct{})}
	e.remote.mu.Lock()
	e.remote.q = append(e.remote.q, r)
	e.remote.mu.Unlock()
	t := time.NewTimer(remoteWait)
	defer t.Stop()
	select {
	case <-r.done:
		return r.res, r.err
	case <-t.C:
		// Still queued: it will be played (or found a duplicate) by a
		// later frame; the sender asks again and hears which.
		return ipc.RemoteResult{}, fmt.Errorf("%w: the frame loop did not play the batch within %v (paused?)", ipc.ErrCtlRefused, remoteWait)
	}
}

// playRemote plays the queued remote batches (frame thread, after the
// local modules' playback).
func (e *Engine) playRemote() {
	e.remote.mu.Lock()
	q := e.remote.q
	e.remote.q = nil
	e.remote.mu.Unlock()
	for _, r := range q {
		e.playRemoteBatch(r)
	}
	// The status is updated before the senders hear their answers: what a
	// sender was told is in the next status (engine stat).
	defer func() {
		for _, r := range q {
			close(r.done)
		}
	}()
	if len(q) > 0 {
		snap := make([]ipc.RemoteModuleState, 0, len(e.remote.mods))
		for _, rm := range e.remote.mods {
			snap = append(snap, ipc.RemoteModuleState{Module: rm.Module, Mirror: rm.Mirror, Incarnation: rm.Incarnation,
				LastSeq: rm.LastSeq, Batches: rm.Batches, Duplicates: rm.Duplicates, Applied: rm.Applied, Rejected: rm.Rejected,
				LagFrames: rm.Lag, LastFrame: rm.LastFrame})
		}
		sort.Slice(snap, func(i, j int) bool {
			if snap[i].Module != snap[j].Module {
				return snap[i].Module < snap[j].Module
			}
			return snap[i].Incarnation < snap[j].Incarnation
		})
		e.remote.mu.Lock()
		e.remote.snap = snap
		e.remote.mu.Unlock()
	}
}

// remoteSnapshot returns the remote modules as of the last played batch
// (any goroutine).
func (e *Engine) remoteSnapshot() []ipc.RemoteModuleState {
	e.remote.mu.Lock()
	defer e.remote.mu.Unlock()
	return e.remote.snap
}

func (e *Engine) playRemoteBatch(r *remoteReq) {
	b := r.b
	if e.remote.mods == nil {
		e.remote.mods = map[uint64]*RemoteModule{}
	}
	rm := e.remote.mods[b.Incarnation]
	if rm == nil {
		rm = &RemoteModule{Module: b.Module, Mirror: b.Mirror, Incarnation: b.Incarnation, play: world.NewPlayback(e.w)}
		e.remote.mods[b.Incarnation] = rm
	}
	if b.Seq <= rm.LastSeq || rm.played[b.Seq] { // X1
		rm.Duplicates++
		r.res = ipc.RemoteResult{Duplicate: true, Frame: e.frame}
		return
	}
	if err := SplitRemoteCommands(b.Commands, nil); err != nil {
		rm.Malformed++
		r.err = fmt.Errorf("%w: %s batch %d: %w", ipc.ErrBadCtl, b.Module, b.Seq, err)
		return // not played; its sequence stays free (the sender's bug)
	}
	p := rm.play
	p.Owner = e.ownerOf(b.Module)
	p.MaxEntities = max(e.cfg.MaxEntitiesPerModule, 0)
	p.EventBytesPerFrame = max(e.cfg.MaxEventBytesPerModule, 0)
	p.MaxEventBytes = EventBurstFrames * p.EventBytesPerFrame
	p.BeginFrame(e.frame)
	before := p.Stats
	_ = SplitRemoteCommands(b.Commands, func(typ uint16, payload []byte) {
		if typ != layout.CmdAckEvents {
			_ = p.Apply(typ, payload)
		}
	})
	a := p.Stats.Applied - before.Applied
	rj := p.Stats.RejectedTotal() - before.RejectedTotal()
	if rm.played == nil {
		rm.played = map[uint64]bool{}
	}
	rm.played[b.Seq] = true
	for rm.played[rm.LastSeq+1] {
		delete(rm.played, rm.LastSeq+1)
		rm.LastSeq++
	}
	rm.Ahead = len(rm.played)
	rm.Batches++
	rm.Applied += a
	rm.Rejected += rj
	rm.LastFrame = e.frame
	if e.frame > b.Frame {
		rm.Lag = e.frame - b.Frame
	} else {
		rm.Lag = 0
	}
	r.res = ipc.RemoteResult{Applied: uint32(a), Rejected: uint32(rj), Frame: e.frame}
}

// RemoteModules returns the remote module incarnations the engine played
// batches of, by module then incarnation.
func (e *Engine) RemoteModules() []RemoteModule {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]RemoteModule, 0, len(e.remote.mods))
	for _, rm := range e.remote.mods {
		c := *rm
		c.play, c.played = nil, nil
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Module != out[j].Module {
			return out[i].Module < out[j].Module
		}
		return out[i].Incarnation < out[j].Incarnation
	})
	return out
}
