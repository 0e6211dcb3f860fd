package remote

// The mirror (`engine mirror --nats URL --instance NAME`): on another host,
// a replay engine (host.Engine with a ReplaySource, the machinery of
// `engine replay`) whose frames come from the instance's JetStream stream
// instead of a file, published into local shared memory with the same
// layout, so unmodified modules attach to it as to a local engine. Its
// modules' committed batches are validated and counted locally (the dry
// run of a replay) and forwarded to the engine through JetStream.
//
// What a mirror shows (M1–M3):
//
//	M1 every frame it publishes is a frame the engine published, whole:
//	   the frame image (record.Image) is changed only by complete units
//	   whose checksums passed, a delta only on the frame it was taken
//	   against (record.ErrBase otherwise), and the world is set from the
//	   image between two of its own publishes;
//	M2 frame numbers only go forward (the engine's numbers);
//	M3 a mirror that falls behind (more than SkipAfter frames waiting, a
//	   unit lost, a gap in the stream) drops what is waiting up to the
//	   next keyframe: counted (Skipped) and logged, never a mixed frame.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fdp-engine/fdp/host"
	"github.com/fdp-engine/fdp/ipc"
	"github.com/fdp-engine/fdp/record"
	"github.com/fdp-engine/fdp/world"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// MirrorOptions configure RunMirror.
type MirrorOptions struct {
	// Source is the engine's instance (the stream's name on NATS);
	// Instance the local instance the mirror publishes as (default
	// Source); Name the mirror's name in results and `engine stat`
	// (default Instance).
	Source, Instance, Name string
	NATS                   NATS
	// Registry is the program's schema: the stream's must equal it.
	Registry *world.Registry
	// SkipAfter: more frames than this waiting makes the mirror skip to
	// the latest keyframe among them (M3). 0: 8.
	SkipAfter int
	// Config is the local engine's configuration (Instance and FrameRate
	// are set by the mirror).
	Config host.Config
	Log    *slog.Logger
	// OnFrame, OnResult: tests, benchmarks, status lines.
	OnFrame  func(MirrorFrame)
	OnResult func(Result)
	// OnEngine is called with the local engine before its first frame;
	// OnMirror with the mirror (its Stats) once it is connected.
	OnEngine func(*host.Engine)
	OnMirror func(*Mirror)
}

// MirrorFrame describes one frame the mirror published.
type MirrorFrame struct {
	Frame uint64
	// Lag: now minus the engine's publish time of the frame (meaningful
	// when both clocks agree); LagFrames the same in frame periods.
	Lag       time.Duration
	LagFrames uint64
	// Applied: units applied to make it (1 unless the mirror caught up).
	Applied int
}

// MirrorStats are a mirror's counters.
type MirrorStats struct {
	Units, Keyframes, Skipped, BadUnits     atomic.Uint64
	Forwarded, ForwardDropped, Results      atomic.Uint64
	RemoteApplied, RemoteRejected, Refusals atomic.Uint64
	// Resubscribes: subscriptions found stalled (no message while the
	// stream moved, e.g. a NATS restart lost the memory stream and the
	// ordered consumer waits for sequences the new stream has not reached)
	// and made again from the latest keyframe.
	Resubscribes atomic.Uint64
	// Epochs: times the source engine started again from frame 1 and
	// the mirror started over with a new local engine.
	Epochs atomic.Uint64
}

// Mirror is a running mirror.
type Mirror struct {
	opt   MirrorOptions
	names Names
	nc    *nats.Conn
	js    jetstream.JetStream
	log   *slog.Logger
	Stats MirrorStats

	units chan unitItem
	fwd   chan ipc.RemoteBatch
	runID uint64
	seqs  map[uint64]uint64 // incarnation -> last batch sequence stored (forward's)
}

type unitItem struct {
	hdr *record.Header
	f   *record.Frame
}

// RunMirror runs a mirror until ctx is done.
func RunMirror(ctx context.Context, opt MirrorOptions) error {
	if opt.Instance == "" {
		opt.Instance = opt.Source
	}
	if opt.Name == "" {
		opt.Name = opt.Instance
	}
	if opt.SkipAfter <= 0 {
		opt.SkipAfter = 8
	}
	if opt.Log == nil {
		opt.Log = slog.Default()
	}
	names, err := NamesOf(opt.Source)
	if err != nil {
		return err
	}
	if !validToken(opt.Name) {
		return fmt.Errorf("mirror name %q cannot name a NATS subject", opt.Name)
	}
	nc, js, err := opt.NATS.Connect("fdp-mirror-"+opt.Name, opt.Log)
	if err != nil {
		return err
	}
	defer nc.Close()
	m := &Mirror{opt: opt, names: names, nc: nc, js: js, log: opt.Log, units: make(chan unitItem, 4*opt.SkipAfter+64),
		fwd: make(chan ipc.RemoteBatch, 1024), seqs: map[uint64]uint64{}, runID: uint64(time.Now().UnixNano())}
	if opt.OnMirror != nil {
		opt.OnMirror(m)
	}
	sub, err := nc.Subscribe(resultSubject(opt.Source, opt.Name), m.onResult)
	if err != nil {
		return err
	}
	defer func() { _ = sub.Unsubscribe() }()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); m.receive(ctx) }()
	go func() { defer wg.Done(); m.forward(ctx) }()
	defer wg.Wait()
	defer cancel()
	return m.run(ctx)
}

// run waits for the first keyframe, then runs the local engine.
func (m *Mirror) run(ctx context.Context) error {
	m.log.Info("mirror waiting for a keyframe", "source", m.opt.Source, "url", m.opt.NATS.Redacted())
	var first unitItem
	for first.f == nil {
		select {
		case <-ctx.Done():
			return nil
		case it := <-m.units:
			if it.f.Kind == record.KindKeyframe {
				first = it
			} else {
				m.Stats.Skipped.Add(1)
			}
		}
	}
	pending := []unitItem{first}
	for {
		var err error
		pending, err = m.runEngine(ctx, pending)
		if !errors.Is(err, errNewEpoch) || ctx.Err() != nil {
			return err
		}
		// The engine started again from frame 1 (a restart without
		// recovery): frame numbers go back, which one local engine
		// never shows (M2). Start over as a replay's seek back does: a
		// new local engine from the new run's keyframe; modules rejoin.
		m.Stats.Epochs.Add(1)
		m.log.Warn("the source engine started again (frame numbers went back with a new stream header): the mirror starts over",
			"source", m.opt.Source, "frame", pending[0].f.Frame, "restarts", m.Stats.Epochs.Load())
	}
}

// errNewEpoch: a keyframe of a new engine run came (a stream header made
// later than the one shown, and a frame number before the last shown).
var errNewEpoch = errors.New("the source engine started again")

// runEngine runs one local engine from pending (its first item a
// keyframe) until ctx is done or the source's engine starts again
// (errNewEpoch, with the items of the new run).
func (m *Mirror) runEngine(ctx context.Context, pending []unitItem) ([]unitItem, error) {
	first := pending[0]
	hdr := first.hdr
	if got, want := m.opt.Registry.SchemaHash(), hdr.SchemaHash(); got != want {
		return nil, fmt.Errorf("the stream of %s has another schema (hash %#x) than this program's (%#x)", m.opt.Source, want, got)
	}
	period := time.Duration(hdr.FramePeriod)
	if period <= 0 {
		period = time.Second / 60
	}
	src := &mirrorSource{m: m, hdr: hdr, im: record.NewImage(hdr), pending: pending, period: period, full: true}
	cfg := m.opt.Config
	cfg.Instance = m.opt.Instance
	cfg.FrameRate = max(1, int((time.Second+period/2)/period))
	if cfg.Logger == nil {
		cfg.Logger = m.log
	}
	g := hdr.Geometry
	w, err := world.New(m.opt.Registry, world.Config{ChunkCapacity: g.ChunkCapacity, MaxChunks: g.MaxChunks})
	if err != nil {
		return nil, err
	}
	e, err := host.New(cfg, w, nil)
	if err != nil {
		return nil, err
	}
	defer e.Close()
	_ = e.SetReplay(src)
	e.SetForward(m.onBatch)
	if m.opt.OnEngine != nil {
		m.opt.OnEngine(e)
	}
	m.log.Info("mirror running", "source", m.opt.Source, "instance", m.opt.Instance, "frame", first.f.Frame, "rate", cfg.FrameRate)
	err = e.Run(ctx, func(st host.FrameStats) {
		if m.opt.OnFrame != nil {
			lag := time.Duration(0)
			if p := int64(src.im.PubNanos); p > 0 {
				lag = max(0, time.Since(time.Unix(0, p)))
			}
			m.opt.OnFrame(MirrorFrame{Frame: st.Frame, Lag: lag, LagFrames: uint64(lag / period), Applied: src.applied})
		}
	})
	if errors.Is(err, errNewEpoch) {
		return src.pending, err
	}
	return nil, err
}

// receive reads the frame stream from the latest keyframe on (late
// join), for ever: the ordered consumer is recreated after a NATS restart.
func (m *Mirror) receive(ctx context.Context) {
	var lastWarn time.Time
	warned := 0
	for ctx.Err() == nil {
		err := m.receiveOnce(ctx)
		if err == nil || ctx.Err() != nil {
			continue
		}
		switch {
		case errors.Is(err, errStalled):
			m.Stats.Resubscribes.Add(1)
			m.log.Warn("frame stream subscription stalled; subscribing again from the latest keyframe", "source", m.opt.Source,
				"why", err.Error(), "resubscribes", m.Stats.Resubscribes.Load())
		case errors.Is(err, jetstream.ErrStreamNotFound):
			// No bridge publishes the instance (yet): say so once, then
			// once a minute, not at every retry.
			if warned == 0 || time.Since(lastWarn) > time.Minute {
				m.log.Warn("no bridge publishes instance "+m.opt.Source+" yet (frame stream not found); waiting", "source", m.opt.Source,
					"stream", m.names.FrameStream, "url", m.opt.NATS.Redacted())
				lastWarn = time.Now()
			}
			warned++
		default:
			m.log.Warn("frame stream subscription ended; subscribing again", "source", m.opt.Source, "err", Cause(err))
		}
		sleepCtx(ctx, 250*time.Millisecond)
	}
}

// errStalled: the subscription got nothing for stallAfter while the
// stream's last sequence moved (or went back: the stream was made anew).
var errStalled = errors.New("subscription stalled")

// stallAfter: no frame message for this long makes the mirror ask the
// stream whether it moved (a paused or stopped engine publishes nothing:
// no stall then).
const stallAfter = 2 * time.Second

func (m *Mirror) receiveOnce(ctx context.Context) error {
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{m.names.Frames}, DeliverPolicy: jetstream.DeliverNewPolicy}
	gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	if ks, err := m.js.Stream(gctx, m.names.KeyStream); err == nil {
		if km, err := ks.GetLastMsgForSubject(gctx, m.names.Key); err == nil {
			if seq, err := strconv.ParseUint(km.Header.Get(hdrSeq), 10, 64); err == nil && seq > 0 && m.inStream(gctx, seq) {
				cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, seq
			}
		}
	}
	cons, err := m.js.OrderedConsumer(gctx, m.names.FrameStream, cfg)
	var startSeq int64 // the watchdog's "last received" until one is
	if err == nil {
		if cfg.OptStartSeq > 0 {
			startSeq = int64(cfg.OptStartSeq) - 1
		} else if st, serr := m.js.Stream(gctx, m.names.FrameStream); serr == nil {
			if info, ierr := st.Info(gctx); ierr == nil {
				startSeq = int64(info.State.LastSeq)
			}
		}
	}
	cancel()
	if err != nil {
		return err
	}
	it, err := cons.Messages()
	if err != nil {
		return err
	}
	defer it.Stop()
	// The watchdog: an ordered consumer that resumes after a NATS restart
	// asks for the stream sequence after its last one; a memory stream
	// the restart lost and the bridge made again starts at 1, and the
	// consumer gets nothing until the new sequences pass the old ones
	// (minutes). No message for stallAfter while the stream's last
	// sequence differs from the last one received ends the subscription
	// (errStalled): receive makes a new one from the latest keyframe.
	var lastSeq, lastAt atomic.Int64
	lastSeq.Store(startSeq)
	lastAt.Store(time.Now().UnixNano())
	var stalled atomic.Value
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	go func() {
		tick := time.NewTicker(stallAfter / 4)
		defer tick.Stop()
		for {
			select {
			case <-wctx.Done():
				it.Stop()
				return
			case <-tick.C:
			}
			if time.Since(time.Unix(0, lastAt.Load())) < stallAfter {
				continue
			}
			ictx, icancel := context.WithTimeout(wctx, 2*time.Second)
			var info *jetstream.StreamInfo
			st, err := m.js.Stream(ictx, m.names.FrameStream)
			if err == nil {
				info, err = st.Info(ictx)
			}
			icancel()
			if err != nil || info.State.LastSeq == 0 {
				continue // NATS away or no stream yet: nothing to compare
			}
			if got := int64(info.State.LastSeq); got != lastSeq.Load() {
				stalled.Store(fmt.Errorf("%w: nothing received for %v, the stream's last sequence is %d, the last received %d",
					errStalled, time.Since(time.Unix(0, lastAt.Load())).Round(time.Millisecond), got, lastSeq.Load()))
				it.Stop()
				return
			}
			lastAt.Store(time.Now().UnixNano()) // the stream did not move either: idle
		}
	}()
	var asm assembler
	cd := newCodec()
	var hdr *record.Header
	needKey := false
	for {
		msg, err := it.Next()
		if err != nil {
			if e, ok := stalled.Load().(error); ok {
				return e
			}
			return err
		}
		lastAt.Store(time.Now().UnixNano())
		if md, err := msg.Metadata(); err == nil {
			lastSeq.Store(int64(md.Sequence.Stream))
		}
		unit, frame, key, err := asm.add(msg.Headers(), msg.Data())
		if err != nil {
			m.Stats.BadUnits.Add(1)
			needKey = true
			m.log.Warn("frame unit dropped", "frame", frame, "err", err)
			continue
		}
		if unit == nil {
			continue
		}
		if needKey && !key {
			m.Stats.Skipped.Add(1)
			continue
		}
		h, f, err := cd.decodeUnit(unit, hdr)
		if err != nil {
			m.Stats.BadUnits.Add(1)
			needKey = true
			m.log.Warn("frame unit dropped", "frame", frame, "err", err)
			continue
		}
		hdr = h
		m.Stats.Units.Add(1)
		select {
		case m.units <- unitItem{hdr: h, f: f}:
			needKey = false
		default: // M3: the frame thread is behind by a whole queue
			m.Stats.Skipped.Add(1)
			needKey = true
		}
	}
}

// inStream reports whether the frame stream holds sequence seq: the key
// stream (file storage) outlives a NATS restart that lost the memory frame
// stream, and its pointer then names a sequence of the old stream, which
// the new one reaches only after as many messages: start with the new
// messages then (the next keyframe), not there.
func (m *Mirror) inStream(ctx context.Context, seq uint64) bool {
	st, err := m.js.Stream(ctx, m.names.FrameStream)
	if err != nil {
		return false
	}
	info, err := st.Info(ctx)
	return err == nil && seq >= info.State.FirstSeq && seq <= info.State.LastSeq
}

// mirrorSource is the local engine's ReplaySource (frame thread).
type mirrorSource struct {
	m       *Mirror
	hdr     *record.Header
	im      *record.Image
	pending []unitItem
	period  time.Duration
	full    bool // the next frame given is whole
	needKey bool
	given   uint64
	applied int
	lastLog time.Time
	// changed: chunk -> components changed (-1: records), singletons.
	chunks  map[int]map[int]bool
	singles map[int]bool
}

func (s *mirrorSource) Next() (*host.ReplayFrame, error) {
	items := s.pending
	s.pending = nil
	for len(items) == 0 || len(s.m.units) > 0 {
		select {
		case it := <-s.m.units:
			items = append(items, it)
			continue
		default:
		}
		if len(items) > 0 {
			break
		}
		t := time.NewTimer(s.period / 2)
		select {
		case it := <-s.m.units:
			items = append(items, it)
		case <-t.C:
		}
		t.Stop()
		if len(items) == 0 {
			return nil, host.ErrReplayWait
		}
	}
	if len(items) > s.m.opt.SkipAfter { // M3
		for k := len(items) - 1; k > 0; k-- {
			if items[k].f.Kind == record.KindKeyframe {
				s.skip(k, "the mirror fell behind")
				items = items[k:]
				break
			}
		}
	}
	s.applied = 0
	if s.chunks == nil {
		s.chunks, s.singles = map[int]map[int]bool{}, map[int]bool{}
	}
	var events []host.ReplayEvent
	for i, it := range items {
		f := it.f
		if f.Kind == record.KindKeyframe && s.given > 0 && f.Frame < s.given && it.hdr.Created != s.hdr.Created {
			s.pending = items[i:]
			return nil, errNewEpoch
		}
		if f.Kind == record.KindKeyframe {
			if it.hdr.SchemaHash() != s.hdr.SchemaHash() {
				return nil, fmt.Errorf("the stream's schema changed (hash %#x, was %#x): the engine runs another program", it.hdr.SchemaHash(), s.hdr.SchemaHash())
			}
			s.needKey = false
		} else if s.needKey {
			s.skip(1, "")
			continue
		}
		if err := s.im.Apply(f); err != nil {
			// A gap (record.ErrBase) or a frame the image refuses: wait
			// for the next keyframe (M1, M3).
			s.needKey = true
			s.skip(1, err.Error())
			continue
		}
		s.applied++
		if f.Kind == record.KindKeyframe {
			s.full = true
			clear(s.chunks)
			clear(s.singles)
		} else {
			for _, cr := range f.ChunkRecs {
				s.mark(int(cr.Chunk), -1)
			}
			for _, c := range f.Columns {
				s.mark(int(c.Chunk), int(c.Component))
			}
			for _, sg := range f.Singletons {
				s.singles[int(sg.ID)] = true
			}
		}
		for _, ev := range f.Events {
			events = append(events, host.ReplayEvent{Frame: ev.Frame, Type: ev.Type, Payload: ev.Payload})
		}
	}
	if s.applied == 0 || s.im.Frame <= s.given {
		// Nothing new to show (M2): a bridge that started again sends a
		// frame already shown; the image keeps it, the next is whole.
		if s.applied > 0 {
			s.full = true
		}
		return nil, host.ErrReplayWait
	}
	rf := s.frame()
	rf.Events = events
	s.given = rf.Frame
	return rf, nil
}

func (s *mirrorSource) mark(c, k int) {
	m := s.chunks[c]
	if m == nil {
		m = map[int]bool{}
		s.chunks[c] = m
	}
	m[k] = true
}

func (s *mirrorSource) skip(n int, why string) {
	s.m.Stats.Skipped.Add(uint64(n))
	if why != "" && time.Since(s.lastLog) > time.Second {
		s.lastLog = time.Now()
		s.m.log.Warn("mirror skipped frames to the next keyframe", "skipped", n, "why", why, "skipped_total", s.m.Stats.Skipped.Load())
	}
}

// frame builds the ReplayFrame of the image: whole, or what changed since
// the last frame given.
func (s *mirrorSource) frame() *host.ReplayFrame {
	im, g := s.im, s.hdr.Geometry
	rf := &host.ReplayFrame{Frame: im.Frame, Full: s.full, ChunksInUse: int(im.Chunks)}
	single := func(i int) host.ReplaySingleton {
		v, ver := im.Singleton(i)
		sg := host.ReplaySingleton{ID: world.SingletonID(i)}
		if ver != 0 {
			sg.Data = v
		}
		return sg
	}
	if s.full {
		for c := 0; c < rf.ChunksInUse; c++ {
			ch := host.ReplayChunk{Index: c, Records: im.RecordBytes(c)}
			for k := range g.Components {
				if col, _ := im.Column(c, k); col != nil {
					ch.Columns = append(ch.Columns, host.ReplayColumn{ID: world.ComponentID(k), Data: col})
				}
			}
			rf.Chunks = append(rf.Chunks, ch)
		}
		for i := range g.Singletons {
			rf.Singletons = append(rf.Singletons, single(i))
		}
	} else {
		for c, comps := range s.chunks {
			if c >= rf.ChunksInUse {
				continue
			}
			ch := host.ReplayChunk{Index: c}
			if comps[-1] {
				ch.Records = im.RecordBytes(c)
			}
			for k := range comps {
				if k < 0 {
					continue
				}
				if col, _ := im.Column(c, k); col != nil {
					ch.Columns = append(ch.Columns, host.ReplayColumn{ID: world.ComponentID(k), Data: col})
				}
			}
			rf.Chunks = append(rf.Chunks, ch)
		}
		for i := range s.singles {
			rf.Singletons = append(rf.Singletons, single(i))
		}
	}
	s.full = false
	clear(s.chunks)
	clear(s.singles)
	return rf
}

// onBatch takes a local module's committed batch (frame thread): it gets
// the module incarnation's next sequence and goes to the forwarder.
func (m *Mirror) onBatch(b host.ForwardBatch) {
	h := fnv.New64a()
	fmt.Fprintf(h, "%d/%s/%d/%d/%d", m.runID, b.Module, b.Slot, b.PID, b.PIDStart)
	inc := h.Sum64() | 1
	rb := ipc.RemoteBatch{Module: b.Module, Mirror: m.opt.Name, Incarnation: inc, Frame: b.Frame,
		Commands: append([]byte(nil), b.Commands...)}
	if len(rb.Commands) > ipc.RemoteMaxCommands {
		m.Stats.ForwardDropped.Add(1)
		m.log.Warn("module batch too large to forward: dropped", "module", b.Module, "bytes", len(rb.Commands), "max", ipc.RemoteMaxCommands)
		return
	}
	select {
	case m.fwd <- rb:
	default:
		m.Stats.ForwardDropped.Add(1)
		m.log.Warn("forward queue full (NATS away?): module batch dropped", "module", b.Module)
	}
}

// forward publishes the batches in order, each until JetStream stored it
// (the message id makes a retried publish stored once).
func (m *Mirror) forward(ctx context.Context) {
	for {
		var rb ipc.RemoteBatch
		select {
		case <-ctx.Done():
			return
		case rb = <-m.fwd:
		}
		// Sequences are given here, to the batches stored: they have no
		// gaps (a batch dropped from a full queue has none).
		m.seqs[rb.Incarnation]++
		rb.Seq = m.seqs[rb.Incarnation]
		j, _ := json.Marshal(rb)
		id := strconv.FormatUint(rb.Incarnation, 16) + "-" + strconv.FormatUint(rb.Seq, 10)
		backoff := 50 * time.Millisecond
		for ctx.Err() == nil {
			pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_, err := m.js.Publish(pctx, m.names.Cmd, j, jetstream.WithMsgID(id))
			cancel()
			if err == nil {
				m.Stats.Forwarded.Add(1)
				break
			}
			if errors.Is(err, context.Canceled) {
				return
			}
			sleepCtx(ctx, backoff)
			backoff = min(2*backoff, time.Second)
		}
	}
}

func (m *Mirror) onResult(msg *nats.Msg) {
	var r Result
	if json.Unmarshal(msg.Data, &r) != nil {
		return
	}
	m.Stats.Results.Add(1)
	m.Stats.RemoteApplied.Add(uint64(r.Applied))
	m.Stats.RemoteRejected.Add(uint64(r.Rejected))
	if r.Error != "" {
		m.Stats.Refusals.Add(1)
		m.log.Warn("the engine refused a batch", "module", r.Module, "seq", r.Seq, "err", r.Error)
	} else if r.Rejected > 0 {
		m.log.Info("the engine rejected commands of a batch", "module", r.Module, "seq", r.Seq, "rejected", r.Rejected, "reasons", reasonText(r.Reasons))
	}
	if m.opt.OnResult != nil {
		m.opt.OnResult(r)
	}
}

// reasonText renders a result's rejections by reason ("arena_full 3,
// stale_entity 1").
func reasonText(m map[string]uint32) string {
	parts := make([]string, 0, len(m))
	for r, n := range m {
		parts = append(parts, fmt.Sprintf("%s %d", r, n))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}
