package tests

// Issue 17: modules on other hosts through NATS JetStream. An embedded
// NATS server (JetStream on a temporary directory, loopback, a random
// port) and two shared-memory directories standing for two hosts: the
// engine and its bridge (`engine run`, `engine bridge`) in one, mirrors
// (`engine mirror`) and a remote module in the other, all real processes
// of the shipped binary.

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/demo"
	"github.com/fdp-engine/fdp/host"
	"github.com/fdp-engine/fdp/internal/testutil"
	"github.com/fdp-engine/fdp/ipc"
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/module"
	"github.com/fdp-engine/fdp/shm"
	fsync "github.com/fdp-engine/fdp/sync"
	"github.com/fdp-engine/fdp/world"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
)

// natsServer is an embedded NATS server that a test can restart on the
// same port and store.
type natsServer struct {
	t    testing.TB
	opts server.Options
	s    *server.Server
}

func startNATS(t testing.TB) *natsServer {
	n := &natsServer{t: t, opts: server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true,
		StoreDir: t.TempDir(), NoLog: true, NoSigs: true}}
	n.start()
	n.opts.Port = n.s.Addr().(*net.TCPAddr).Port
	t.Cleanup(n.stop)
	return n
}

func (n *natsServer) start() {
	o := n.opts
	s, err := server.NewServer(&o)
	require.NoError(n.t, err)
	go s.Start()
	require.True(n.t, s.ReadyForConnections(20*time.Second), "embedded NATS server not ready")
	n.s = s
}

func (n *natsServer) stop() {
	if n.s != nil {
		n.s.Shutdown()
		n.s.WaitForShutdown()
		n.s = nil
	}
}

func (n *natsServer) restart() { n.stop(); n.start() }

func (n *natsServer) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.opts.Port) }

// proc is a process of the shipped engine binary in one "host"'s shm dir.
type proc struct {
	name string
	args []string
	dir  string
	cmd  *exec.Cmd
	errb *testutil.SyncBuffer
}

func startProc(t *testing.T, bin, dir, name string, args ...string) *proc {
	p := &proc{name: name, args: args, dir: dir, errb: &testutil.SyncBuffer{}}
	p.start(t, bin)
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("%s stderr (tail):\n%s", p.name, tailOf(p.errb.String(), 3000))
		}
	})
	return p
}

func (p *proc) start(t *testing.T, bin string) {
	p.cmd = exec.Command(filepath.Join(bin, "engine"), p.args...)
	p.cmd.Env = append(os.Environ(), "FDP_SHM_DIR="+p.dir)
	p.cmd.Stderr, p.cmd.Stdout = p.errb, p.errb
	require.NoError(t, p.cmd.Start())
}

// kill SIGKILLs the process and reaps it.
func (p *proc) kill() {
	if p.cmd != nil && p.cmd.Process != nil {
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
	}
}

func tailOf(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// attachIn attaches an external reader to instance in shm directory dir,
// waiting for it to publish.
func attachIn(t *testing.T, dir, instance string, limit time.Duration) *fsync.Reader {
	t.Helper()
	old := shm.Dir
	shm.Dir = dir
	defer func() { shm.Dir = old }()
	deadline := time.Now().Add(limit)
	for {
		r, err := fsync.Attach(instance, fsync.AttachOptions{Name: "nats-test"})
		if err == nil {
			if f, err := r.Pin(); err == nil {
				_ = f.Release()
				t.Cleanup(func() { _ = r.Close() })
				return r
			}
			_ = r.Close()
		}
		if time.Now().After(deadline) {
			t.Fatalf("instance %s in %s did not publish within %v: %v", instance, dir, limit, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sampler records the content checksum (testutil.FrameChecksum) of every
// distinct frame it pins, by frame number.
type sampler struct {
	mu    sync.Mutex
	sums  map[uint64]uint64
	first uint64
}

func sample(ctx context.Context, r *fsync.Reader, wg *sync.WaitGroup) *sampler {
	s := &sampler{sums: map[uint64]uint64{}}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			frame, sum, err := testutil.PinnedChecksum(r.Layout(), r.Pin)
			if err == nil {
				s.mu.Lock()
				if _, ok := s.sums[frame]; !ok {
					s.sums[frame] = sum
					if s.first == 0 {
						s.first = frame
					}
				}
				s.mu.Unlock()
			}
			time.Sleep(time.Millisecond)
		}
	}()
	return s
}

// compare checks every frame both saw and returns how many there were.
func (s *sampler) compare(t *testing.T, engine *sampler, what string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	engine.mu.Lock()
	defer engine.mu.Unlock()
	same := 0
	for f, sum := range s.sums {
		if want, ok := engine.sums[f]; ok {
			require.Equal(t, want, sum, "%s: frame %d's checksum differs from the engine's", what, f)
			same++
		}
	}
	return same
}

func (s *sampler) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sums)
}

type evLine struct {
	frame uint64
	text  string
}

type evLog struct {
	mu  sync.Mutex
	evs []evLine
}

func (l *evLog) get() []evLine {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]evLine(nil), l.evs...)
}

// followIn follows the event log of instance in shm directory dir.
func followIn(ctx context.Context, t *testing.T, dir, instance string, wg *sync.WaitGroup) *evLog {
	old := shm.Dir
	shm.Dir = dir
	f, err := testutil.FollowEvents(instance)
	shm.Dir = old
	require.NoError(t, err)
	l := &evLog{}
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer f.Close()
		for ctx.Err() == nil {
			err := f.Read(func(_, frame uint64, typ uint16, p []byte) {
				l.mu.Lock()
				l.evs = append(l.evs, evLine{frame: frame, text: fmt.Sprintf("%d %d %x", frame, typ, p)})
				l.mu.Unlock()
			})
			if err != nil {
				t.Errorf("%s events: %v", instance, err)
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	return l
}

// TestMirrorExactFrames: a mirror on "another host" publishes the
// engine's frames exactly (the content checksum of every mirrored frame
// equals the engine's frame of the same number, both computed by this
// test), it publishes the engine's events, and a mirror started late catches up from the latest keyframe
// (it publishes within a few keyframe intervals, exact frames too,
// although the stream's first frames are long gone from its start).
func TestMirrorExactFrames(t *testing.T) {
	bin := shippedBinaries(t)
	ns := startNATS(t)
	hostA, hostB := t.TempDir(), t.TempDir()
	inst := "natsx"
	startProc(t, bin, hostA, "engine", "run", "--instance", inst, "--entities", "3000", "--rate", "30", "--status", "0")
	rA := attachIn(t, hostA, inst, 30*time.Second)
	startProc(t, bin, hostA, "bridge", "bridge", "--nats", ns.url(), "--instance", inst, "--rate", "30", "--keyframe-every", "15", "--status", "0")
	startProc(t, bin, hostB, "mirror", "mirror", "--nats", ns.url(), "--instance", inst, "--status", "0")
	rB := attachIn(t, hostB, inst, 30*time.Second)

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	eng, mir := sample(ctx, rA, &wg), sample(ctx, rB, &wg)
	engEv, mirEv := followIn(ctx, t, hostA, inst, &wg), followIn(ctx, t, hostB, inst, &wg)

	// The late mirror joins after the stream holds several keyframe
	// intervals.
	deadline := time.Now().Add(60 * time.Second)
	for mir.count() < 60 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	late := "natsxlate"
	startProc(t, bin, hostB, "late mirror", "mirror", "--nats", ns.url(), "--instance", late, "--source", inst, "--status", "0")
	joined := time.Now()
	rC := attachIn(t, hostB, late, 30*time.Second)
	lateS := sample(ctx, rC, &wg)
	for (mir.count() < 150 || lateS.count() < 60) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	sameB := mir.compare(t, eng, "mirror")
	// Events reach the mirror through the stream: between the first and
	// the last frame of the mirror's events, the mirror's log holds the
	// engine's events, the same and in the same order.
	me, ee := mirEv.get(), engEv.get()
	require.NotEmpty(t, me, "the mirror published no event")
	lo, hi := me[0].frame, me[len(me)-1].frame
	var want, got []string
	for _, e := range ee {
		if e.frame > lo && e.frame <= hi {
			want = append(want, e.text)
		}
	}
	for _, e := range me {
		if e.frame > lo {
			got = append(got, e.text)
		}
	}
	require.NotEmpty(t, want)
	require.Equal(t, want, got, "the mirror's events of frames %d..%d", lo+1, hi)
	sameC := lateS.compare(t, eng, "late mirror")
	t.Logf("engine frames sampled %d; mirror %d (%d compared), late mirror %d (%d compared), late mirror's first frame %d after %v",
		eng.count(), mir.count(), sameB, lateS.count(), sameC, lateS.first, time.Since(joined).Round(time.Millisecond))
	require.GreaterOrEqual(t, sameB, 50, "too few mirrored frames compared")
	require.GreaterOrEqual(t, sameC, 20, "too few late-mirror frames compared")
	// Late join from the keyframe: its first frame is past the first
	// frames of the stream (it did not replay history).
	require.Greater(t, lateS.first, mir.first+30, "the late mirror started from the stream's beginning, not its latest keyframe")
}

// remoteTag marks the entities the remote module creates (Health.Max):
// the demo's simulation never uses it.
const remoteTag = 777_777

// remoteCreator is the remote module: every tick it creates one entity
// whose Health.HP is its next number (unique in the process).
type remoteCreator struct {
	s *demo.Schema
	n int32
}

func (m *remoteCreator) Spec() module.Spec {
	return module.Spec{Name: "creator", Tier: module.Fast, Every: 2, Reads: world.MaskOf(m.s.Health)}
}

func (m *remoteCreator) Tick(_ *module.View, c *module.Commands, _ time.Duration) error {
	m.n++
	e := c.Create()
	module.Set(c, e, m.s.Health, demo.Health{HP: m.n, Max: remoteTag})
	return nil
}

func natsChild(role string) int {
	s, err := demo.NewSchema()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for { // the mirror is SIGKILLed under it: attach again, for ever
		err := module.Run(context.Background(), &remoteCreator{s: s}, module.Options{Instance: os.Getenv("FDP_INSTANCE"), Registry: s.Reg})
		fmt.Fprintln(os.Stderr, "creator:", err)
		time.Sleep(100 * time.Millisecond)
	}
}

// streamedValues reads every batch of the command stream (the model: what
// the mirrors handed to JetStream) and returns the HP values their Set
// commands carry.
func streamedValues(t *testing.T, url, inst string) map[int32]int {
	nc, err := nats.Connect(url)
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, "FDP_"+inst+"_CMD", jetstream.OrderedConsumerConfig{})
	require.NoError(t, err)
	info, err := cons.Info(ctx)
	require.NoError(t, err)
	vals := map[int32]int{}
	for got := uint64(0); got < info.NumPending; {
		msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		require.NoError(t, err)
		got++
		var rb ipc.RemoteBatch
		require.NoError(t, json.Unmarshal(msg.Data(), &rb))
		require.NoError(t, host.SplitRemoteCommands(rb.Commands, func(typ uint16, p []byte) {
			if typ != world.CmdSet || len(p) < world.CmdCompHdr+8 {
				return
			}
			h := demo.Health{HP: int32(binary.LittleEndian.Uint32(p[world.CmdCompHdr:])), Max: int32(binary.LittleEndian.Uint32(p[world.CmdCompHdr+4:]))}
			if h.Max == remoteTag {
				vals[h.HP]++
			}
		}))
	}
	return vals
}

// worldValues reads the engine's latest frame: the HP of every live entity
// the remote module made.
func worldValues(t *testing.T, r *fsync.Reader, s *demo.Schema) map[int32]int {
	f, err := r.Pin()
	require.NoError(t, err)
	defer func() { _ = f.Release() }()
	vals := map[int32]int{}
	for c := 0; c < f.Chunks(); c++ {
		hs := fsync.Column[demo.Health](f, c, s.Health)
		for i, rec := range f.Records(c) {
			if rec.Flags&layout.FlagAlive != 0 && rec.Mask[int(s.Health)/64]&(1<<(int(s.Health)%64)) != 0 && hs[i].Max == remoteTag {
				vals[hs[i].HP]++
			}
		}
	}
	return vals
}

// TestRemoteCommandsExactlyOnce: a module attached to a mirror creates an
// entity per tick; its batches reach the engine through JetStream and the
// bridge while the NATS server is restarted, the bridge SIGKILLed and the
// mirror SIGKILLed, each several times. Every batch JetStream stored (the
// model, read back from the command stream) is applied exactly once: each
// of its entities is in the engine's world once, and the world holds no
// entity of the module that the stream does not.
func TestRemoteCommandsExactlyOnce(t *testing.T) {
	testutil.RunChild("FDP_NATS_CHILD", natsChild)
	s, err := demo.NewSchema()
	require.NoError(t, err)
	bin := shippedBinaries(t)
	ns := startNATS(t)
	hostA, hostB := t.TempDir(), t.TempDir()
	inst := "natsc"
	startProc(t, bin, hostA, "engine", "run", "--instance", inst, "--entities", "500", "--rate", "30", "--status", "0")
	rA := attachIn(t, hostA, inst, 30*time.Second)
	bridgeArgs := []string{"bridge", "--nats", ns.url(), "--instance", inst, "--rate", "30", "--keyframe-every", "15", "--status", "0"}
	mirrorArgs := []string{"mirror", "--nats", ns.url(), "--instance", inst, "--status", "0"}
	br := startProc(t, bin, hostA, "bridge", bridgeArgs...)
	mi := startProc(t, bin, hostB, "mirror", mirrorArgs...)
	attachIn(t, hostB, inst, 30*time.Second)
	testutil.StartChild(t, testutil.ChildOptions{Test: "TestRemoteCommandsExactlyOnce", Drop: true, Stderr: &testutil.SyncBuffer{},
		Env: []string{"FDP_NATS_CHILD=creator", "FDP_INSTANCE=" + inst, "FDP_SHM_DIR=" + hostB}})

	// grows waits until the engine's world holds more of the module's
	// entities than before.
	grows := func(what string) {
		t.Helper()
		before := len(worldValues(t, rA, s))
		deadline := time.Now().Add(60 * time.Second)
		for len(worldValues(t, rA, s)) < before+10 {
			if time.Now().After(deadline) {
				t.Fatalf("after %s: the remote module's entities stopped reaching the engine (%d)", what, before)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	grows("the start")
	for round := 0; round < 2; round++ {
		ns.restart()
		grows("a NATS restart")
		br.kill()
		br.start(t, bin)
		grows("a bridge SIGKILL")
		mi.kill()
		mi.start(t, bin)
		grows("a mirror SIGKILL")
	}
	// Stop the sources, then wait until the bridge has played every
	// stored batch (the durable consumer has nothing pending or unacked).
	mi.kill()
	nc, err := nats.Connect(ns.url())
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err := js.Consumer(ctx, "FDP_"+inst+"_CMD", "fdp-bridge")
		var ci *jetstream.ConsumerInfo
		if err == nil {
			ci, err = c.Info(ctx)
		}
		cancel()
		if err == nil && ci.NumPending == 0 && ci.NumAckPending == 0 {
			break
		}
		require.False(t, time.Now().After(deadline), "the bridge did not play every stored batch: %v %+v", err, ci)
		time.Sleep(100 * time.Millisecond)
	}
	model := streamedValues(t, ns.url(), inst)
	got := worldValues(t, rA, s)
	for v, n := range model {
		require.Equal(t, 1, n, "value %d stored %d times in the command stream (the mirror's dedup id failed)", v, n)
		require.Equal(t, 1, got[v], "batch with value %d: applied %d times, want exactly once", v, got[v])
	}
	for v, n := range got {
		require.Contains(t, model, v, "value %d in the world (%d times) but never stored in the command stream", v, n)
	}
	// `engine stat` on the engine's host shows the remote module with its
	// lag.
	stat := exec.Command(filepath.Join(bin, "engine"), "stat", inst, "--count", "1", "--interval", "100ms", "--json")
	stat.Env = append(os.Environ(), "FDP_SHM_DIR="+hostA)
	out, err := stat.Output()
	require.NoError(t, err)
	var line struct {
		Remote []ipc.RemoteModuleState `json:"remote_modules"`
	}
	require.NoError(t, json.Unmarshal(out, &line), "%s", out)
	require.NotEmpty(t, line.Remote, "engine stat shows no remote module: %s", out)
	var batches uint64
	for _, r := range line.Remote {
		require.Equal(t, "creator", r.Module)
		require.Equal(t, inst, r.Mirror)
		batches += r.Batches
	}
	require.Equal(t, uint64(len(model)), batches, "engine stat: batches played: %s", out)
	t.Logf("%d remote batches stored and applied exactly once across 2 NATS restarts, 2 bridge and 2 mirror SIGKILLs", len(model))
	require.Greater(t, len(model), 60)
}

// TestMirrorUnderUp: the supervisor config's keys. On "host A" `engine up`
// with a `bridge:` block runs the engine and the bridge; on "host B"
// `engine up` with a `mirror:` block runs `engine mirror` as its engine; the
// mirror's frames are the engine's.
func TestMirrorUnderUp(t *testing.T) {
	bin := shippedBinaries(t)
	ns := startNATS(t)
	hostA, hostB := t.TempDir(), t.TempDir()
	inst := "natsu"
	write := func(body string) string {
		p := filepath.Join(t.TempDir(), "up.yaml")
		require.NoError(t, os.WriteFile(p, []byte(body), 0o600))
		return p
	}
	cfgA := write(fmt.Sprintf("instance: %s\nengine: {command: [engine, run, --entities, \"2000\", --rate, \"30\", --status, \"0\"]}\nmodules: []\nbridge: {nats: %q, rate: 30, keyframe_every: 15}\n", inst, ns.url()))
	cfgB := write(fmt.Sprintf("instance: %s\nengine: {command: [engine, run]}\nmodules: []\nmirror: {nats: %q, source: %s}\nhang: {engine_timeout: 30s, engine_start_timeout: 60s}\n", inst, ns.url(), inst))
	startProc(t, bin, hostA, "up A", "up", "--config", cfgA)
	rA := attachIn(t, hostA, inst, 30*time.Second)
	startProc(t, bin, hostB, "up B", "up", "--config", cfgB)
	rB := attachIn(t, hostB, inst, 60*time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	eng, mir := sample(ctx, rA, &wg), sample(ctx, rB, &wg)
	deadline := time.Now().Add(60 * time.Second)
	for mir.count() < 40 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	same := mir.compare(t, eng, "mirror under engine up")
	t.Logf("mirror under engine up: %d frames, %d compared with the engine's", mir.count(), same)
	require.GreaterOrEqual(t, same, 20)

	// The engine is SIGKILLed: the supervisor starts a new one (which
	// recovers the world and goes on with the frame numbers), the bridge
	// attaches to it, the mirror goes on with its frames.
	hdr, err := layout.DecodeHeader(rA.Layout().B)
	require.NoError(t, err)
	var lastMirrored uint64
	for f := range mir.sums {
		lastMirrored = max(lastMirrored, f)
	}
	require.NoError(t, syscall.Kill(int(hdr.CreatorPID), syscall.SIGKILL))
	deadline = time.Now().Add(60 * time.Second)
	var rA2 *fsync.Reader
	for rA2 == nil {
		r := attachIn(t, hostA, inst, 60*time.Second)
		if h, err := layout.DecodeHeader(r.Layout().B); err == nil && h.CreatorPID != hdr.CreatorPID {
			rA2 = r
		}
		require.False(t, time.Now().After(deadline), "no new engine")
		time.Sleep(50 * time.Millisecond)
	}
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	eng2, mir2 := sample(ctx2, rA2, &wg), sample(ctx2, rB, &wg)
	for mir2.count() < 40 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	cancel2()
	wg.Wait()
	same2 := mir2.compare(t, eng2, "mirror after an engine restart")
	t.Logf("after the engine's SIGKILL: %d mirrored frames, %d compared with the new engine's (last before the kill %d)", mir2.count(), same2, lastMirrored)
	require.GreaterOrEqual(t, same2, 20)
	var last2 uint64
	for f := range mir2.sums {
		last2 = max(last2, f)
	}
	require.Greater(t, last2, lastMirrored+20, "frame numbers go on")
}

// frameIn returns the frame number instance publishes in shm directory
// dir now (0: none), attaching anew each time (a mirror that started over
// publishes in new segments).
func frameIn(dir, instance string) uint64 {
	old := shm.Dir
	shm.Dir = dir
	defer func() { shm.Dir = old }()
	r, err := fsync.Attach(instance, fsync.AttachOptions{Name: "nats-test"})
	if err != nil {
		return 0
	}
	defer r.Close()
	f, err := r.Pin()
	if err != nil {
		return 0
	}
	defer func() { _ = f.Release() }()
	return f.Number()
}

// TestMirrorResumesAfterRestarts: a mirror whose subscription has read far
// into the frame stream (its sequence pushed up by foreign messages, as a
// mirror running for minutes has) goes on showing frames within a bound
// after each of several NATS restarts (the restart loses the memory frame
// stream; the ordered consumer would wait for the old sequences: the
// mirror finds it stalled and subscribes again, counted and logged), and
// starts over when the engine starts again from frame 1 (no recovery).
func TestMirrorResumesAfterRestarts(t *testing.T) {
	bin := shippedBinaries(t)
	ns := startNATS(t)
	hostA, hostB := t.TempDir(), t.TempDir()
	inst := "natsr"
	engArgs := []string{"run", "--instance", inst, "--entities", "200", "--rate", "30", "--status", "0"}
	eng := startProc(t, bin, hostA, "engine", engArgs...)
	attachIn(t, hostA, inst, 30*time.Second)
	startProc(t, bin, hostA, "bridge", "bridge", "--nats", ns.url(), "--instance", inst, "--rate", "30", "--keyframe-every", "15", "--status", "0")
	mi := startProc(t, bin, hostB, "mirror", "mirror", "--nats", ns.url(), "--instance", inst, "--status", "0")
	attachIn(t, hostB, inst, 30*time.Second)

	// advances waits until the mirror shows a frame the engine published
	// after now.
	advances := func(what string, bound time.Duration) {
		t.Helper()
		target := frameIn(hostA, inst)
		deadline := time.Now().Add(bound)
		for frameIn(hostB, inst) <= target {
			if time.Now().After(deadline) {
				t.Fatalf("after %s: the mirror showed no frame past the engine's %d within %v (it shows %d)", what, target, bound, frameIn(hostB, inst))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	advances("the start", 30*time.Second)
	// Push the frame stream's sequence far up (a run of minutes): the
	// mirror reads these foreign messages (counted bad, then the next
	// keyframe) and its consumer's sequence goes with them.
	nc, err := nats.Connect(ns.url())
	require.NoError(t, err)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	const junk = 20000
	for i := 0; i < junk; i++ {
		_, err := js.PublishAsync("fdp."+inst+".frames", []byte("x"))
		require.NoError(t, err)
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(60 * time.Second):
		t.Fatal("junk publishes not acknowledged")
	}
	nc.Close()
	advances("the foreign messages", 30*time.Second)
	for round := 1; round <= 3; round++ {
		ns.restart()
		// Without the stall watchdog the mirror waits for the new
		// stream to pass sequence ~20000: 10 minutes at 30 fps.
		advances(fmt.Sprintf("NATS restart %d", round), 20*time.Second)
	}
	require.Contains(t, mi.errb.String(), "subscription stalled", "the resubscribes are logged")
	// A mirror started after the restarts: the key stream (file storage)
	// still points into the lost stream's sequences.
	mi.kill()
	mi.start(t, bin)
	advances("a mirror SIGKILL after the NATS restarts", 20*time.Second)

	// A plain engine restart: the engine ends cleanly (its world goes) and
	// a new one starts from frame 1; the mirror starts over.
	old := frameIn(hostB, inst)
	require.NoError(t, eng.cmd.Process.Signal(syscall.SIGTERM))
	_ = eng.cmd.Wait()
	eng.start(t, bin)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if f := frameIn(hostB, inst); f > 0 && f < old {
			break
		}
		require.False(t, time.Now().After(deadline), "the mirror did not start over with the new engine's frames (shows %d, was %d)", frameIn(hostB, inst), old)
		time.Sleep(50 * time.Millisecond)
	}
	require.Less(t, frameIn(hostA, inst), old, "the engine started from frame 1 (no recovery)")
	advances("the engine's restart", 20*time.Second)
	require.Contains(t, mi.errb.String(), "the mirror starts over")
}

// TestBridgeKeyframeRule: with --keyframe-budget 0 the bridge's keyframes
// are exactly every --keyframe-every-th published frame (the first one
// too); the byte budget is what adds keyframes otherwise (--help says so).
func TestBridgeKeyframeRule(t *testing.T) {
	bin := shippedBinaries(t)
	ns := startNATS(t)
	hostA := t.TempDir()
	inst := "natsk"
	startProc(t, bin, hostA, "engine", "run", "--instance", inst, "--entities", "200", "--rate", "60", "--status", "0")
	attachIn(t, hostA, inst, 30*time.Second)
	br := startProc(t, bin, hostA, "bridge", "bridge", "--nats", ns.url(), "--instance", inst, "--rate", "60",
		"--keyframe-every", "20", "--keyframe-budget", "0", "--status", "200ms")
	re := regexp.MustCompile(`frames (\d+) \(keyframes (\d+)\)`)
	deadline := time.Now().Add(60 * time.Second)
	for {
		ms := re.FindAllStringSubmatch(br.errb.String(), -1)
		if len(ms) > 0 {
			last := ms[len(ms)-1]
			frames, _ := strconv.Atoi(last[1])
			keys, _ := strconv.Atoi(last[2])
			if frames >= 200 {
				// Keyframes at captures 0, 20, 40, ...: ceil(frames/20),
				// one more when the line was taken between a keyframe's
				// count and its frame's.
				require.Contains(t, []int{(frames + 19) / 20, (frames + 20) / 20}, keys, "keyframes among %d frames with --keyframe-every 20 and no budget", frames)
				break
			}
		}
		require.False(t, time.Now().After(deadline), "no status line with 200 frames: %s", tailOf(br.errb.String(), 500))
		time.Sleep(50 * time.Millisecond)
	}
}
