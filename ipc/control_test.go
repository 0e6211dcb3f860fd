package ipc

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func ctlTestInstance() string { return fmt.Sprintf("t%d%x", os.Getpid(), rand.Uint32()) }

func ctlTestHello() Hello {
	return Hello{Name: "ai", Tier: TierSlow, Every: 3, Mask: 0b101, Components: []string{"Position", "Health"}, SchemaHash: 0x1234}
}

type ctlRecorder struct {
	mu     sync.Mutex
	hellos []Hello
	peers  []PeerCred
	errs   chan error
	closed chan int
}

func ctlTestServer(t *testing.T, inst string, schema uint64) (*ControlServer, *ctlRecorder) {
	return ctlTestServerWith(t, inst, ControlConfig{SchemaHash: schema, WarnEvery: -1})
}

func ctlTestServerWith(t *testing.T, inst string, cfg ControlConfig) (*ControlServer, *ctlRecorder) {
	rec := &ctlRecorder{errs: make(chan error, 1024), closed: make(chan int, 16)}
	next := 0
	s, err := Listen(inst, ControlConfig{
		SchemaHash: cfg.SchemaHash, WarnEvery: cfg.WarnEvery, AllowUIDs: cfg.AllowUIDs,
		Handler: func(h Hello, p PeerCred) (Welcome, error) {
			rec.mu.Lock()
			defer rec.mu.Unlock()
			if h.Name == "refuse-me" {
				return Welcome{}, errors.New("no free module slot")
			}
			rec.hellos = append(rec.hellos, h)
			rec.peers = append(rec.peers, p)
			next++
			return Welcome{Slot: next, ConvoyGroup: 7, Segments: SegmentNames{
				World: "fdp." + inst + ".world", Events: "fdp." + inst + ".events", Module: fmt.Sprintf("fdp.%s.mod%d", inst, next)},
				Files: ctlTestFiles(next)}, nil
		},
		OnClose: func(slot, _ int) { rec.closed <- slot },
		OnError: func(err error) { rec.errs <- err },
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s, rec
}

// ctlTestFiles opens the three files a welcome passes: temporary files
// holding "world <n>", "events <n>", "module <n>" (unlinked at once).
func ctlTestFiles(n int) []*os.File {
	var fs []*os.File
	for _, what := range []string{"world", "events", "module"} {
		f, err := os.CreateTemp("", "fdp-ctl-test-*")
		if err != nil {
			panic(err)
		}
		_ = os.Remove(f.Name())
		fmt.Fprintf(f, "%s %d", what, n)
		fs = append(fs, f)
	}
	return fs
}

// ctlFileText reads a received file from its start.
func ctlFileText(t *testing.T, f *os.File) string {
	t.Helper()
	b := make([]byte, 64)
	n, err := f.ReadAt(b, 0)
	if err != nil && n == 0 {
		t.Fatalf("read received file: %v", err)
	}
	return string(b[:n])
}

func ctlWait[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

func TestControlHandshakeRoundTrip(t *testing.T) {
	inst := ctlTestInstance()
	s, rec := ctlTestServer(t, inst, 0x1234)
	fi, err := os.Stat(s.Path())
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "socket mode")
	require.NotZero(t, fi.Mode()&os.ModeSocket)
	require.Equal(t, "fdp."+inst+".sock", fi.Name())

	cc, w, err := Dial(inst, ctlTestHello(), 5*time.Second)
	require.NoError(t, err)
	require.Equal(t, 1, w.Slot)
	require.Equal(t, 7, w.ConvoyGroup)
	// The descriptors arrive in the welcome's order.
	require.Len(t, w.Files, WelcomeFDs)
	require.Equal(t, "world 1", ctlFileText(t, w.Files[WelcomeFDWorld]))
	require.Equal(t, "events 1", ctlFileText(t, w.Files[WelcomeFDEvents]))
	require.Equal(t, "module 1", ctlFileText(t, w.Files[WelcomeFDModule]))
	closeFiles(w.Files)
	require.Equal(t, ControlProtoVersion, w.ProtoVersion)
	require.Equal(t, "fdp."+inst+".events", w.Segments.Events)
	require.Equal(t, "fdp."+inst+".mod1", w.Segments.Module)
	rec.mu.Lock()
	require.Len(t, rec.hellos, 1)
	h := rec.hellos[0]
	p := rec.peers[0]
	rec.mu.Unlock()
	require.Equal(t, "ai", h.Name)
	require.Equal(t, TierSlow, h.Tier)
	require.Equal(t, 3, h.Every)
	require.Equal(t, uint64(0b101), h.Mask)
	require.Equal(t, []string{"Position", "Health"}, h.Components)
	require.Equal(t, os.Getpid(), h.PID)
	require.Equal(t, os.Getpid(), p.PID)
	require.Equal(t, uint32(os.Getuid()), p.UID)

	// A second instance on the same name is refused while this one lives.
	_, err = Listen(inst, ControlConfig{Handler: func(Hello, PeerCred) (Welcome, error) { return Welcome{}, nil }})
	require.ErrorIs(t, err, ErrInstanceRunning)

	// The module leaves: the engine sees it.
	require.NoError(t, cc.Close())
	require.Equal(t, 1, ctlWait(t, rec.closed, "OnClose"))

	// The engine dies/closes: the module sees EOF.
	cc2, w2, err := Dial(inst, ctlTestHello(), 5*time.Second)
	require.NoError(t, err)
	require.Equal(t, 2, w2.Slot)
	require.NoError(t, s.Close())
	ctlWait(t, cc2.Done(), "module to see the engine close")
	require.ErrorIs(t, cc2.Err(), ErrControl)
	_, err = os.Stat(s.Path())
	require.True(t, os.IsNotExist(err), "socket removed on Close")
	require.Equal(t, uint64(2), s.Stats().Accepted)
}

func TestControlHandlerRefusalAndBadHello(t *testing.T) {
	inst := ctlTestInstance()
	_, rec := ctlTestServer(t, inst, 0x1234)
	h := ctlTestHello()
	h.Name = "refuse-me"
	_, _, err := Dial(inst, h, 5*time.Second)
	require.ErrorIs(t, err, ErrRejected)
	require.Contains(t, err.Error(), "no free module slot")
	require.ErrorIs(t, ctlWait(t, rec.errs, "server error"), ErrRejected)

	for _, mut := range []func(*Hello){
		func(h *Hello) { h.Tier = "medium" },
		func(h *Hello) { h.Every = 0 },
		func(h *Hello) { h.Name = "" },
		func(h *Hello) { h.Name = strings.Repeat("n", 32) },
		func(h *Hello) { h.Name = "bad name" },
		func(h *Hello) { h.Group = strings.Repeat("g", 60000) },
		func(h *Hello) { h.Group = "a/b" },
		func(h *Hello) { h.Every = MaxEvery + 1 },
	} {
		h := ctlTestHello()
		mut(&h)
		_, _, err := Dial(inst, h, 5*time.Second)
		require.ErrorIs(t, err, ErrBadHello)
		require.ErrorIs(t, ctlWait(t, rec.errs, "server error"), ErrBadHello)
	}
}

func TestControlSchemaMismatch(t *testing.T) {
	inst := ctlTestInstance()
	s, rec := ctlTestServer(t, inst, 0xaaaa)
	h := ctlTestHello()
	h.SchemaHash = 0xbbbb
	_, _, err := Dial(inst, h, 5*time.Second)
	require.ErrorIs(t, err, ErrSchemaMismatch)
	require.Contains(t, err.Error(), "0x000000000000bbbb")
	require.Contains(t, err.Error(), "0x000000000000aaaa")
	serr := ctlWait(t, rec.errs, "server error")
	require.ErrorIs(t, serr, ErrSchemaMismatch)
	require.Contains(t, serr.Error(), "0x000000000000bbbb")
	require.Contains(t, serr.Error(), "0x000000000000aaaa")
	rec.mu.Lock()
	require.Empty(t, rec.hellos, "handler must not see a mismatched module")
	rec.mu.Unlock()
	require.Equal(t, uint64(1), s.Stats().Refused)
}

func TestControlVersionMismatch(t *testing.T) {
	inst := ctlTestInstance()
	_, rec := ctlTestServer(t, inst, 0x1234)
	h := ctlTestHello()
	h.ProtoVersion = 99
	_, _, err := Dial(inst, h, 5*time.Second)
	require.ErrorIs(t, err, ErrVersionMismatch)
	require.Contains(t, err.Error(), "version 99")
	require.ErrorIs(t, ctlWait(t, rec.errs, "server error"), ErrVersionMismatch)
}

func TestControlPeerPIDMismatch(t *testing.T) {
	inst := ctlTestInstance()
	_, rec := ctlTestServer(t, inst, 0x1234)
	h := ctlTestHello()
	h.PID = os.Getpid() + 1 // lie about who we are
	_, _, err := Dial(inst, h, 5*time.Second)
	require.ErrorIs(t, err, ErrPeerCred)
	require.Contains(t, err.Error(), fmt.Sprintf("claims pid %d", os.Getpid()+1))
	require.ErrorIs(t, ctlWait(t, rec.errs, "server error"), ErrPeerCred)
}

func TestControlOversizedMessage(t *testing.T) {
	inst := ctlTestInstance()
	s, rec := ctlTestServer(t, inst, 0x1234)

	// The client refuses to send more than the limit.
	h := ctlTestHello()
	h.Components = []string{strings.Repeat("x", ControlMaxMessage)}
	_, _, err := Dial(inst, h, 5*time.Second)
	require.ErrorIs(t, err, ErrMessageTooLarge)

	// The server refuses a frame that announces more than the limit,
	// without reading it, and says why.
	c, err := net.Dial("unix", s.Path())
	require.NoError(t, err)
	defer c.Close()
	var hdr [4]byte
	binary.LittleEndian.PutUint32(hdr[:], ControlMaxMessage+1)
	_, err = c.Write(hdr[:])
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
	msg, err := ctlRead(c)
	require.NoError(t, err)
	var rep ctlReply
	require.NoError(t, json.Unmarshal(msg, &rep))
	require.Equal(t, "too_large", rep.Code)
	require.Nil(t, rep.Welcome)
	require.ErrorIs(t, ctlWait(t, rec.errs, "server error"), ErrMessageTooLarge)
	_, err = ctlRead(c)
	require.Error(t, err, "server closes after refusing")

	// Exactly the limit is framed fine by the codec.
	var buf strings.Builder
	require.NoError(t, ctlWrite(&buf, strings.Repeat("y", ControlMaxMessage-2)))
	got, err := ctlRead(strings.NewReader(buf.String()))
	require.NoError(t, err)
	require.Len(t, got, ControlMaxMessage)
}

func TestControlBadInstance(t *testing.T) {
	_, err := Listen("bad/name", ControlConfig{Handler: func(Hello, PeerCred) (Welcome, error) { return Welcome{}, nil }})
	require.ErrorIs(t, err, ErrControl)
	_, _, err = Dial("no-such-engine-"+strconv.Itoa(os.Getpid()), ctlTestHello(), time.Second)
	require.ErrorIs(t, err, ErrControl)
}

const ctlChildEnv = "FDP_TEST_CHILD"

// TestControlOnCloseAfterSIGKILL: a module process is SIGKILLed after its
// handshake; the engine's OnClose fires for its slot.
func TestControlOnCloseAfterSIGKILL(t *testing.T) {
	if os.Getenv(ctlChildEnv) == "ctl-module" {
		ctlChildModule()
		return
	}
	inst := ctlTestInstance()
	_, rec := ctlTestServer(t, inst, 0x1234)
	cmd := exec.Command(os.Args[0], "-test.run=^TestControlOnCloseAfterSIGKILL$", "-test.count=1")
	cmd.Env = append(os.Environ(), ctlChildEnv+"=ctl-module", "FDP_CTL_INSTANCE="+inst)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "WELCOME 1\n", line)
	rec.mu.Lock()
	require.Equal(t, cmd.Process.Pid, rec.peers[0].PID, "peer credentials name the child")
	rec.mu.Unlock()

	t0 := time.Now()
	require.NoError(t, syscall.Kill(cmd.Process.Pid, syscall.SIGKILL))
	require.Equal(t, 1, ctlWait(t, rec.closed, "OnClose after SIGKILL"))
	t.Logf("module death seen after %v", time.Since(t0))
}

func ctlChildModule() {
	h := ctlTestHello()
	cc, w, err := Dial(os.Getenv("FDP_CTL_INSTANCE"), h, 5*time.Second)
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	fmt.Printf("WELCOME %d\n", w.Slot)
	select {
	case <-cc.Done():
	case <-time.After(30 * time.Second):
	}
	os.Exit(0)
}

// TestControlModuleSeesEngineSIGKILL: the engine process is SIGKILLed; the
// module's connection ends (Done closes) without any message.
func TestControlModuleSeesEngineSIGKILL(t *testing.T) {
	if os.Getenv(ctlChildEnv) == "ctl-engine" {
		s, err := Listen(os.Getenv("FDP_CTL_INSTANCE"), ControlConfig{SchemaHash: 0x1234,
			Handler: func(Hello, PeerCred) (Welcome, error) { return Welcome{Slot: 5, Files: ctlTestFiles(5)}, nil }})
		if err != nil {
			fmt.Println("ERROR", err)
			os.Exit(1)
		}
		fmt.Println("LISTENING")
		time.Sleep(30 * time.Second) // parked until the parent kills it
		_ = s.Close()
		os.Exit(0)
	}
	inst := ctlTestInstance()
	cmd := exec.Command(os.Args[0], "-test.run=^TestControlModuleSeesEngineSIGKILL$", "-test.count=1")
	cmd.Env = append(os.Environ(), ctlChildEnv+"=ctl-engine", "FDP_CTL_INSTANCE="+inst)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if p, err := SocketPath(inst); err == nil {
			_ = os.Remove(p) // a killed engine leaves its socket behind
		}
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "LISTENING\n", line)
	cc, w, err := Dial(inst, ctlTestHello(), 5*time.Second)
	require.NoError(t, err)
	require.Equal(t, 5, w.Slot)
	select {
	case <-cc.Done():
		t.Fatal("connection ended before the engine died")
	default:
	}
	require.NoError(t, syscall.Kill(cmd.Process.Pid, syscall.SIGKILL))
	ctlWait(t, cc.Done(), "module to see the engine die")
	require.ErrorIs(t, cc.Err(), ErrControl)

	// Once the engine process is gone, a new engine replaces its stale socket.
	_ = cmd.Wait()
	_, rec := ctlTestServer(t, inst, 0x1234)
	_, w2, err := Dial(inst, ctlTestHello(), 5*time.Second)
	require.NoError(t, err)
	require.Equal(t, 1, w2.Slot)
	rec.mu.Lock()
	require.Len(t, rec.hellos, 1)
	rec.mu.Unlock()
}

// TestControlWarningsRateLimited: a flood of refused handshakes reaches
// OnError once per WarnEvery, naming the socket (never the temporary bind
// path); the rest are counted and their number is in the next report.
func TestControlWarningsRateLimited(t *testing.T) {
	inst := ctlTestInstance()
	s, rec := ctlTestServerWith(t, inst, ControlConfig{SchemaHash: 0x1234, WarnEvery: time.Hour})
	h := ctlTestHello()
	h.SchemaHash = 0xdead
	for i := 0; i < 50; i++ {
		_, _, err := Dial(inst, h, 5*time.Second)
		require.ErrorIs(t, err, ErrSchemaMismatch)
	}
	first := ctlWait(t, rec.errs, "first report")
	require.ErrorIs(t, first, ErrSchemaMismatch)
	require.Contains(t, first.Error(), s.Path())
	require.NotContains(t, first.Error(), ".tmp")
	require.Equal(t, uint64(50), s.Stats().Refused)
	require.Equal(t, uint64(49), s.Stats().Suppressed, "every refusal after the first within the period")
	select {
	case err := <-rec.errs:
		t.Fatalf("a second report within the period: %v", err)
	default:
	}
}

// TestControlAllowUIDs: with other uids allowed the socket is connectable
// by every local uid (0666) and admission is by SO_PEERCRED: the engine's
// uid and the allowed ones.
func TestControlAllowUIDs(t *testing.T) {
	inst := ctlTestInstance()
	s, _ := ctlTestServerWith(t, inst, ControlConfig{SchemaHash: 0x1234, AllowUIDs: []uint32{65534}})
	fi, err := os.Stat(s.Path())
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o666), fi.Mode().Perm())
	require.True(t, s.allowed(uint32(os.Getuid())))
	require.True(t, s.allowed(65534))
	require.False(t, s.allowed(65533))
	cc, _, err := Dial(inst, ctlTestHello(), 5*time.Second)
	require.NoError(t, err, "the engine's own uid is always admitted")
	require.NoError(t, cc.Close())
}

// TestControlOtherUIDAdmission: a module process under another uid (65534)
// is refused by SO_PEERCRED when its uid is not allowed, although the socket
// (0666 with AllowUIDs) lets it connect, and admitted when it is; refused
// peers are counted. Needs root (to start the child under another uid).
func TestControlOtherUIDAdmission(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to run a child under uid 65534")
	}
	// The child runs a copy of this test binary that uid 65534 can execute.
	dir, err := os.MkdirTemp("", "fdp-ctl-uid-")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	require.NoError(t, os.Chmod(dir, 0o755))
	bin := filepath.Join(dir, "ctl.test")
	src, err := os.ReadFile(os.Args[0])
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(bin, src, 0o755))
	child := func(inst string) (*exec.Cmd, *bufio.Reader) {
		cmd := exec.Command(bin, "-test.run=^TestControlOnCloseAfterSIGKILL$", "-test.count=1")
		cmd.Env = append(os.Environ(), ctlChildEnv+"=ctl-module", "FDP_CTL_INSTANCE="+inst)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		cmd.Dir = dir
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		require.NoError(t, err)
		require.NoError(t, cmd.Start())
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd, bufio.NewReader(out)
	}
	inst := ctlTestInstance()
	s, rec := ctlTestServerWith(t, inst, ControlConfig{SchemaHash: 0x1234, WarnEvery: -1, AllowUIDs: []uint32{65533}})
	_, out := child(inst)
	line, err := out.ReadString('\n')
	require.NoError(t, err)
	require.Contains(t, line, "ERROR", "uid 65534 is not allowed")
	require.Contains(t, line, ErrPeerCred.Error())
	require.Contains(t, line, "uid 65534")
	require.Equal(t, uint64(1), s.Stats().PeerRefused)
	require.ErrorIs(t, ctlWait(t, rec.errs, "refusal report"), ErrPeerCred)

	inst2 := ctlTestInstance()
	s2, rec2 := ctlTestServerWith(t, inst2, ControlConfig{SchemaHash: 0x1234, WarnEvery: -1, AllowUIDs: []uint32{65534}})
	_, out = child(inst2)
	line, err = out.ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "WELCOME 1\n", line, "uid 65534 is allowed")
	rec2.mu.Lock()
	require.Equal(t, uint32(65534), rec2.peers[0].UID)
	rec2.mu.Unlock()
	require.Zero(t, s2.Stats().PeerRefused)
}

// TestRefusalCodes: every refusal sentinel has its own wire code and comes
// back as itself; a handler's refusal that wraps a sentinel gets its code;
// an unknown code (a newer engine's) reads as ErrRejected.
func TestRefusalCodes(t *testing.T) {
	seen := map[string]bool{}
	for _, c := range ctlCodes {
		require.False(t, seen[c.code], "code %q twice", c.code)
		seen[c.code] = true
		require.Equal(t, c.code, ctlCode(fmt.Errorf("handler: %w", c.err)))
		require.ErrorIs(t, ctlCodeErr(c.code), c.err)
	}
	require.Equal(t, "name_owned", ctlCode(fmt.Errorf("module name %q belongs to uid 0 (%w)", "x", ErrNameOwned)))
	require.Equal(t, "bad_hello", ctlCode(fmt.Errorf("%w: component mask beyond the schema", ErrBadHello)))
	// The handler's refusal at the module cap, as the server wraps it.
	full := fmt.Errorf("%w: module %q: %w", ErrRejected, "m", fmt.Errorf("too many modules (256): %w", ErrModulesFull))
	require.Equal(t, "modules_full", ctlCode(full))
	require.ErrorIs(t, ctlCodeErr("modules_full"), ErrModulesFull)
	require.Equal(t, "rejected", ctlCode(errors.New("already connected")))
	require.ErrorIs(t, ctlCodeErr("from_a_newer_engine"), ErrRejected)
}
