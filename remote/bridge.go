package remote

// The bridge (`engine bridge`): a process beside the engine that reads its
// published frames like any external reader (a pin of the leases
// segment's reader table: the engine never rewrites a pinned slot),
// captures each new one as a keyframe or a version-based delta
// (record.Capturer: only what changed since the previous capture, from the
// slot's version words, no rescan), publishes it to JetStream, and plays
// the remote modules' command batches back through the engine's control
// socket (ipc.SendRemote), acking each only after the engine answered.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fdp-engine/fdp/ipc"
	"github.com/fdp-engine/fdp/record"
	"github.com/fdp-engine/fdp/shm"
	fsync "github.com/fdp-engine/fdp/sync"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// BridgeOptions configure RunBridge.
type BridgeOptions struct {
	Instance string
	NATS     NATS
	// Rate is the engine's frame rate (the stream header's frame period,
	// and the poll interval: a quarter period). 0: 60.
	Rate int
	// KeyframeEvery: every n-th published frame is a keyframe at the
	// latest (late joiners and mirrors that fell behind start there). 0:
	// Rate.
	KeyframeEvery int
	// KeyframeBudget: a keyframe comes earlier once the deltas since the
	// last one add up to this many times its bytes (record's keyframe
	// budget: it bounds what a mirror joining between two keyframes
	// decodes; at 30% dirty, 3 makes about every 10th frame a keyframe).
	// 0: record.DefaultKeyframeBudget (3); negative: none (keyframes
	// every KeyframeEvery-th frame only, and on a mask change or a gap).
	KeyframeBudget float64
	Limits         StreamLimits
	Log            *slog.Logger
	// OnFrame, if set, is called after each frame's publish (tests,
	// benchmarks).
	OnFrame func(BridgeFrame)
}

// BridgeFrame describes one published frame.
type BridgeFrame struct {
	Frame uint64
	Key   bool
	// Wire: the bytes of the unit's messages' payloads; Dirty: the bytes
	// of records, columns and singletons the capture copied.
	Wire, Dirty int
}

// BridgeStats are a bridge's counters.
type BridgeStats struct {
	Frames, Keyframes, WireBytes, DirtyBytes, FailedPublishes atomic.Uint64
	Batches, Duplicates, Refused, EventsLost                  atomic.Uint64
}

// Bridge is a running bridge.
type Bridge struct {
	opt   BridgeOptions
	names Names
	js    jetstream.JetStream
	nc    *nats.Conn
	log   *slog.Logger
	Stats BridgeStats
}

// RunBridge runs a bridge for opt.Instance until ctx is done.
func RunBridge(ctx context.Context, opt BridgeOptions) error {
	b, err := NewBridge(ctx, opt)
	if err != nil {
		return err
	}
	defer b.Close()
	return b.Run(ctx)
}

// NewBridge connects to NATS and creates the instance's streams.
func NewBridge(ctx context.Context, opt BridgeOptions) (*Bridge, error) {
	if opt.Rate <= 0 {
		opt.Rate = 60
	}
	if opt.KeyframeEvery <= 0 {
		opt.KeyframeEvery = opt.Rate
	}
	if opt.Limits == (StreamLimits{}) {
		opt.Limits = DefaultLimits
	}
	if opt.Log == nil {
		opt.Log = slog.Default()
	}
	names, err := NamesOf(opt.Instance)
	if err != nil {
		return nil, err
	}
	nc, js, err := opt.NATS.Connect("fdp-bridge-"+opt.Instance, opt.Log)
	if err != nil {
		return nil, err
	}
	b := &Bridge{opt: opt, names: names, js: js, nc: nc, log: opt.Log}
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err = ensureStreams(cctx, js, names, opt.Limits)
		cancel()
		if err == nil {
			return b, nil
		}
		if ctx.Err() != nil {
			nc.Close()
			return nil, err
		}
		b.log.Warn("cannot create the JetStream streams yet; retrying", "url", opt.NATS.Redacted(), "err", err)
		sleepCtx(ctx, time.Second)
	}
}

// Close closes the NATS connection.
func (b *Bridge) Close() { b.nc.Close() }

// Run publishes frames and plays command batches until ctx is done.
func (b *Bridge) Run(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- b.runCommands(ctx) }()
	err := b.runFrames(ctx)
	if cerr := <-errc; err == nil {
		err = cerr
	}
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// runFrames attaches to the instance (again after an engine restart) and
// publishes its frames.
func (b *Bridge) runFrames(ctx context.Context) error {
	warned := false
	for ctx.Err() == nil {
		r, err := fsync.Attach(b.opt.Instance, fsync.AttachOptions{Name: "bridge"})
		if err != nil {
			if !warned {
				b.log.Info("waiting for the engine", "instance", b.opt.Instance, "err", err)
				warned = true
			}
			sleepCtx(ctx, 100*time.Millisecond)
			continue
		}
		warned = false
		err = b.publishFrom(ctx, r)
		r.Close()
		if err != nil && ctx.Err() == nil {
			b.log.Warn("frame capture ended; attaching again", "instance", b.opt.Instance, "err", err)
			sleepCtx(ctx, 100*time.Millisecond)
		}
	}
	return nil
}

// staleAfter: no new frame for this long makes the bridge look whether
// the world segment was replaced (an engine restart), and attach again if
// so.
const staleAfter = 250 * time.Millisecond

func (b *Bridge) publishFrom(ctx context.Context, r *fsync.Reader) error {
	attached := worldInode(b.opt.Instance)
	lw := r.Layout()
	period := time.Second / time.Duration(b.opt.Rate)
	hdr, err := record.NewHeader(lw, time.Now().UnixNano(), uint64(period), uint32(b.opt.KeyframeEvery))
	if err != nil {
		return err
	}
	hdr.Instance = b.opt.Instance
	hp := hdr.Encode()
	hdrRec := record.AppendRecord(nil, record.KindHeader, record.CodecNone, 0, hp, len(hp))
	evSeg, err := shm.Open(shm.SegmentName(b.opt.Instance, "events"), false)
	if err != nil {
		return err
	}
	defer evSeg.Close()
	er, err := ipc.NewEventReader(evSeg.Data)
	if err != nil {
		return err
	}
	cur := er.Tail()
	cp := record.NewCapturer(lw, b.opt.KeyframeEvery)
	switch {
	case b.opt.KeyframeBudget < 0:
		cp.SetKeyframeBudget(0)
	case b.opt.KeyframeBudget > 0:
		cp.SetKeyframeBudget(b.opt.KeyframeBudget)
	}
	cd := newCodec()
	var raw, unit []byte
	var events []record.Event
	var last uint64
	lastNew := time.Now()
	poll := max(period/4, 500*time.Microsecond)
	b.log.Info("bridge publishing", "instance", b.opt.Instance, "url", b.opt.NATS.Redacted(), "subject", b.names.Frames,
		"keyframe_every", b.opt.KeyframeEvery, "keyframe_budget", b.opt.KeyframeBudget)
	for ctx.Err() == nil {
		f, err := r.Pin()
		if err != nil || f.Number() == last {
			if err == nil {
				_ = f.Release()
			} else if !errors.Is(err, fsync.ErrNoFrame) && !errors.Is(err, fsync.ErrBusy) {
				return err
			}
			if time.Since(lastNew) > staleAfter {
				// A paused engine publishes nothing; a restarted one
				// publishes in a new world segment: attach again only then.
				if ino := worldInode(b.opt.Instance); ino != attached {
					return fmt.Errorf("no new frame for %v and the world segment was replaced (an engine restart)", staleAfter)
				}
				lastNew = time.Now()
			}
			sleepCtx(ctx, poll)
			continue
		}
		frame := f.Number()
		events = events[:0]
		lost, eerr := er.ReadUpTo(&cur, frame, func(_, fr uint64, typ uint16, payload []byte) {
			events = append(events, record.Event{Type: typ, Frame: fr, Payload: append([]byte(nil), payload...)})
		})
		if lost > 0 || eerr != nil {
			// The log wrapped past the bridge (it fell a whole log behind)
			// or could not be read: those events never reach mirrors.
			b.Stats.EventsLost.Add(lost)
			b.log.Warn("events lost for mirrors", "frame", frame, "lost", lost, "err", eerr)
			if eerr != nil {
				cur = er.Tail()
			}
		}
		var info record.CaptureInfo
		var cerr error
		raw, info, cerr = cp.Capture(raw[:0], f.Slot(), events, nil)
		if rerr := f.Release(); cerr == nil && rerr != nil {
			cerr = rerr
		}
		if cerr != nil {
			cp.ForceKeyframe()
			b.log.Warn("capture failed", "frame", frame, "err", cerr)
			continue
		}
		last, lastNew = frame, time.Now()
		key := info.Kind == record.KindKeyframe
		unit = unit[:0]
		if key {
			unit = append(unit, hdrRec...)
		}
		unit = cd.appendRecord(unit, info.Kind, frame, raw)
		seq, err := b.publishUnit(ctx, frame, key, unit)
		if err != nil {
			// The stream has a gap from here: mirrors wait for the next
			// keyframe, which is this bridge's next capture.
			cp.ForceKeyframe()
			b.Stats.FailedPublishes.Add(1)
			b.log.Warn("frame not published", "frame", frame, "err", err)
			if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) {
				// A NATS restart lost the frame stream (memory storage).
				cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				_ = ensureStreams(cctx, b.js, b.names, b.opt.Limits)
				cancel()
			}
			continue
		}
		if key {
			m := nats.NewMsg(b.names.Key)
			m.Data = hdrRec
			m.Header.Set(hdrSeq, strconv.FormatUint(seq, 10))
			m.Header.Set(hdrFrame, strconv.FormatUint(frame, 10))
			pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_, err = b.js.PublishMsg(pctx, m)
			cancel()
			if err != nil {
				b.log.Warn("latest keyframe not recorded in the key stream", "frame", frame, "err", err)
			}
			b.Stats.Keyframes.Add(1)
		}
		b.Stats.Frames.Add(1)
		b.Stats.WireBytes.Add(uint64(len(unit)))
		b.Stats.DirtyBytes.Add(uint64(info.Dirty))
		if b.opt.OnFrame != nil {
			b.opt.OnFrame(BridgeFrame{Frame: frame, Key: key, Wire: len(unit), Dirty: info.Dirty})
		}
	}
	return nil
}

// worldInode returns the inode of the instance's world segment file (0:
// none).
func worldInode(instance string) uint64 {
	st, err := os.Stat(filepath.Join(shm.Dir, shm.SegmentName(instance, fsync.WorldSegment)))
	if err != nil {
		return 0
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		return sys.Ino
	}
	return 0
}

// publishUnit publishes a unit's parts in order and returns the stream
// sequence of its first part.
func (b *Bridge) publishUnit(ctx context.Context, frame uint64, key bool, unit []byte) (uint64, error) {
	var first uint64
	for i, m := range splitUnit(b.names.Frames, frame, key, unit, int(b.nc.MaxPayload())) {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		ack, err := b.js.PublishMsg(pctx, m)
		cancel()
		if err != nil {
			return 0, err
		}
		if i == 0 {
			first = ack.Sequence
		}
	}
	return first, nil
}

// ackWait: a batch the bridge took and did not ack (it was killed) is
// delivered again after this long (the bridge says it is in progress while
// it retries one).
const ackWait = 5 * time.Second

// runCommands plays the remote batches of the command stream, in order,
// each acked after the engine answered (played or duplicate): a bridge
// killed between the two leaves the message unacked, JetStream delivers it
// again, and the engine answers duplicate (exactly once, host/remote.go
// X1).
func (b *Bridge) runCommands(ctx context.Context) error {
	var cons jetstream.Consumer
	for ctx.Err() == nil {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		c, err := b.js.CreateOrUpdateConsumer(cctx, b.names.CmdStream, jetstream.ConsumerConfig{
			Durable: "fdp-bridge", AckPolicy: jetstream.AckExplicitPolicy, AckWait: ackWait, MaxAckPending: 256,
			DeliverPolicy: jetstream.DeliverAllPolicy,
		})
		cancel()
		if err == nil {
			cons = c
			break
		}
		b.log.Warn("cannot create the command consumer yet; retrying", "err", err)
		sleepCtx(ctx, time.Second)
	}
	for ctx.Err() == nil {
		batch, err := cons.Fetch(64, jetstream.FetchMaxWait(500*time.Millisecond))
		if err != nil {
			sleepCtx(ctx, 200*time.Millisecond)
			continue
		}
		for msg := range batch.Messages() {
			b.playMsg(ctx, msg)
		}
	}
	return nil
}

// playMsg plays one command message; it returns once the message is acked
// or terminated, or ctx is done.
func (b *Bridge) playMsg(ctx context.Context, msg jetstream.Msg) {
	var rb ipc.RemoteBatch
	if err := json.Unmarshal(msg.Data(), &rb); err != nil {
		b.Stats.Refused.Add(1)
		b.log.Warn("malformed command batch dropped", "err", err)
		_ = msg.Term()
		return
	}
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		res, err := ipc.SendRemote(b.opt.Instance, rb, 10*time.Second)
		if err == nil {
			if res.Duplicate {
				b.Stats.Duplicates.Add(1)
			} else {
				b.Stats.Batches.Add(1)
			}
			b.reply(rb, res, "")
			_ = msg.DoubleAck(ctx)
			return
		}
		if errors.Is(err, ipc.ErrBadCtl) || errors.Is(err, ipc.ErrPeerCred) {
			b.Stats.Refused.Add(1)
			b.log.Warn("command batch refused by the engine", "module", rb.Module, "seq", rb.Seq, "err", err)
			b.reply(rb, ipc.RemoteResult{}, err.Error())
			_ = msg.Term()
			return
		}
		// The engine is away (restarting) or paused: keep the order, ask
		// again; JetStream keeps the message ours meanwhile.
		_ = msg.InProgress()
		sleepCtx(ctx, backoff)
		backoff = min(2*backoff, time.Second)
	}
}

// Result is the engine's answer to one remote batch, sent back to the
// mirror (core NATS, subject fdp.<instance>.result.<mirror>).
type Result struct {
	Module      string `json:"module"`
	Incarnation uint64 `json:"incarnation"`
	Seq         uint64 `json:"seq"`
	ipc.RemoteResult
	Error string `json:"error,omitempty"`
}

func resultSubject(instance, mirror string) string { return "fdp." + instance + ".result." + mirror }

func (b *Bridge) reply(rb ipc.RemoteBatch, res ipc.RemoteResult, errText string) {
	if rb.Mirror == "" || !validToken(rb.Mirror) {
		return
	}
	j, _ := json.Marshal(Result{Module: rb.Module, Incarnation: rb.Incarnation, Seq: rb.Seq, RemoteResult: res, Error: errText})
	_ = b.nc.Publish(resultSubject(b.opt.Instance, rb.Mirror), j)
}

func validToken(s string) bool {
	_, err := NamesOf(s)
	return err == nil
}
