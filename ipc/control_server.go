package ipc

// The engine side of the control plane: the listening socket, admission by
// SO_PEERCRED, the handshake and the connections of admitted modules.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fdp-engine/fdp/layout"
	"golang.org/x/sys/unix"
)

// ControlConfig configures a ControlServer.
type ControlConfig struct {
	// SchemaHash is the engine's schema; a module with another one is refused.
	SchemaHash uint64
	// Handler admits a module that passed the protocol, peer and schema
	// checks, and assigns its slot and segments. An error refuses it.
	Handler func(h Hello, peer PeerCred) (Welcome, error)
	// OnClose is called (from a server goroutine) once the connection of an
	// admitted module ends: the module exited, died, or was disconnected
	// (also when the welcome could not be delivered). pid is the peer's, so
	// a late notice about an earlier incarnation of a slot can be told apart.
	OnClose func(slot, pid int)
	// OnError, if set, is told about refused handshakes and accept errors,
	// at most once per WarnEvery (the first error of each period; the
	// count of those suppressed before it is in its text). Every error
	// names the socket path.
	OnError func(err error)
	// WarnEvery is the rate limit of OnError (default 1 s; negative: none).
	WarnEvery time.Duration
	// Ctl answers a time-control request (ipc/control_ctl.go), called on a
	// server goroutine; nil: every control request is refused. Its error is
	// the refusal (wrapped in ErrCtlRefused unless it wraps ErrBadCtl).
	Ctl func(req CtlRequest) (CtlState, error)
	// Remote plays a remote module's command batch (ipc/control_remote.go)
	// and returns once the frame thread did; nil: refused.
	Remote func(b RemoteBatch) (RemoteResult, error)
	// HandshakeTimeout bounds the handshake (default 5 s).
	HandshakeTimeout time.Duration
	// AllowUIDs are uids besides the engine's own whose processes may
	// connect as modules (SO_PEERCRED). When set, the socket is made
	// connectable by every local uid (mode 0666) and admission is by
	// credentials alone; when empty it is mode 0600.
	AllowUIDs []uint32
}

// ControlStats are the server's counters.
type ControlStats struct {
	Accepted    uint64 // Welcomes delivered
	Refused     uint64 // handshakes refused with an error reply
	PeerRefused uint64 // of those, peers refused for their uid
	BadHellos   uint64 // of those, invalid hellos (wire code bad_hello), the engine's refusals of one too
	Closed      uint64 // admitted connections that ended
	Suppressed  uint64 // errors not reported to OnError (rate limit)
	// CtlServed counts time-control requests answered, CtlRefused those
	// refused (their peer, their state), BadCtl of those the malformed ones.
	CtlServed, CtlRefused, BadCtl uint64
}

// ControlServer is the engine side of the control plane.
type ControlServer struct {
	cfg  ControlConfig
	ln   *net.UnixListener
	path string
	ino  uint64

	mu     sync.Mutex
	conns  map[*net.UnixConn]int // admitted: slot; in handshake: -1
	closed bool
	wg     sync.WaitGroup

	warnMu     sync.Mutex
	warnLast   time.Time
	warnHeld   uint64 // suppressed since the last report
	suppressed atomic.Uint64

	accepted, refused, peerRefused, closedN, badHellos atomic.Uint64
	ctlServed, ctlRefusedN, badCtl                     atomic.Uint64
	ctlActive                                          atomic.Int32 // requests being served (CtlActive)
}

// report passes err to OnError, rate-limited (see ControlConfig.OnError).
func (s *ControlServer) report(err error) {
	if s.cfg.OnError == nil {
		return
	}
	s.warnMu.Lock()
	now := time.Now()
	if s.cfg.WarnEvery > 0 && !s.warnLast.IsZero() && now.Sub(s.warnLast) < s.cfg.WarnEvery {
		s.warnHeld++
		s.warnMu.Unlock()
		s.suppressed.Add(1)
		return
	}
	held := s.warnHeld
	s.warnLast, s.warnHeld = now, 0
	s.warnMu.Unlock()
	if held > 0 {
		err = fmt.Errorf("control socket %s: %w (%d similar suppressed)", s.path, err, held)
	} else {
		err = fmt.Errorf("control socket %s: %w", s.path, err)
	}
	s.cfg.OnError(err)
}

// allowed reports whether a peer of uid may connect.
func (s *ControlServer) allowed(uid uint32) bool {
	if uid == uint32(os.Getuid()) {
		return true
	}
	for _, u := range s.cfg.AllowUIDs {
		if u == uid {
			return true
		}
	}
	return false
}

// Listen creates the control socket of instance (mode 0600, replacing a
// stale socket left by a dead engine, refusing if a live engine answers on
// it) and serves it in background goroutines until Close.
func Listen(instance string, cfg ControlConfig) (*ControlServer, error) {
	if cfg.Handler == nil {
		return nil, fmt.Errorf("%w: a handler is required", ErrControl)
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = 5 * time.Second
	}
	if cfg.WarnEvery == 0 {
		cfg.WarnEvery = time.Second
	}
	path, err := SocketPath(instance)
	if err != nil {
		return nil, err
	}
	if _, err := os.Lstat(path); err == nil {
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			_ = c.Close()
			return nil, fmt.Errorf("%w: %s", ErrInstanceRunning, path)
		}
	}
	// Bind under a temporary name, set its mode (0600, or 0666 when other
	// uids are allowed), then rename it into place: the socket is never
	// reachable under its real name with another mode, and SO_PEERCRED
	// refuses uids that are not allowed anyway.
	tmp := filepath.Join(filepath.Dir(path), fmt.Sprintf(".fdp.%s.%d.tmp", instance, os.Getpid()))
	_ = os.Remove(tmp)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("%w: listen on %s: %w", ErrControl, path, err)
	}
	ln.SetUnlinkOnClose(false)
	fail := func(err error) (*ControlServer, error) {
		_ = ln.Close()
		_ = os.Remove(tmp)
		return nil, fmt.Errorf("%w: socket %s: %w", ErrControl, path, err)
	}
	mode := os.FileMode(0o600)
	if len(cfg.AllowUIDs) > 0 {
		mode = 0o666
	}
	if err := os.Chmod(tmp, mode); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail(err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return fail(err)
	}
	s := &ControlServer{cfg: cfg, ln: ln, path: path, ino: st.Ino, conns: map[*net.UnixConn]int{}}
	s.wg.Add(1)
	go s.ctlAcceptLoop()
	return s, nil
}

// Path returns the socket path.
func (s *ControlServer) Path() string { return s.path }

// Stats returns the server's counters.
func (s *ControlServer) Stats() ControlStats {
	return ControlStats{Accepted: s.accepted.Load(), Refused: s.refused.Load(), PeerRefused: s.peerRefused.Load(), BadHellos: s.badHellos.Load(),
		Closed: s.closedN.Load(), Suppressed: s.suppressed.Load(),
		CtlServed: s.ctlServed.Load(), CtlRefused: s.ctlRefusedN.Load(), BadCtl: s.badCtl.Load()}
}

func (s *ControlServer) ctlAcceptLoop() {
	defer s.wg.Done()
	var backoff time.Duration // after accept errors: 10 ms doubling to 1 s
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// (The listener's own address is the temporary bind path: name
			// the socket instead.)
			s.report(fmt.Errorf("%w: accept: %w", ErrControl, unwrapOpError(err)))
			backoff = min(max(2*backoff, 10*time.Millisecond), time.Second)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			_ = c.Close()
			return
		}
		s.conns[c] = -1
		s.wg.Add(1)
		s.mu.Unlock()
		go s.ctlServe(c)
	}
}

// unwrapOpError drops a *net.OpError's addresses (the temporary bind path).
func unwrapOpError(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err
	}
	return err
}

func (s *ControlServer) ctlRefuse(c *net.UnixConn, err error) {
	s.refused.Add(1)
	if errors.Is(err, ErrBadHello) {
		s.badHellos.Add(1)
	}
	s.report(err) // before the reply: counted by the time the peer hears it
	_ = ctlWrite(c, ctlReply{Code: ctlCode(err), Error: err.Error(), EngineSchema: s.cfg.SchemaHash, EngineProto: ControlProtoVersion})
}

// errCtlServed ends a connection whose first message was a control
// request, answered by ctlHandshake (not a refused hello).
var errCtlServed = errors.New("control request served")

// ctlHandshake also returns the peer pid (0 if unknown). A first message
// that is a control request is answered here and errCtlServed returned.
func (s *ControlServer) ctlHandshake(c *net.UnixConn) (Welcome, int, error) {
	peer, err := ctlPeer(c)
	if err != nil {
		return Welcome{}, 0, fmt.Errorf("%w: SO_PEERCRED: %w", ErrPeerCred, err)
	}
	if !s.allowed(peer.UID) {
		s.peerRefused.Add(1)
		return Welcome{}, peer.PID, fmt.Errorf("%w: peer pid %d uid %d is neither the engine's uid %d nor allowed", ErrPeerCred, peer.PID, peer.UID, os.Getuid())
	}
	msg, err := ctlRead(c)
	if err != nil {
		return Welcome{}, peer.PID, err
	}
	if req, ok, derr := ctlDecode(msg); ok {
		s.serveCtl(c, peer, req, derr)
		return Welcome{}, peer.PID, errCtlServed
	}
	if b, ok, derr := remoteDecode(msg); ok {
		s.serveRemote(c, peer, b, derr)
		return Welcome{}, peer.PID, errCtlServed
	}
	var h Hello
	if err := json.Unmarshal(msg, &h); err != nil {
		return Welcome{}, peer.PID, fmt.Errorf("%w: %w", ErrBadHello, err)
	}
	if h.ProtoVersion != ControlProtoVersion {
		return Welcome{}, peer.PID, fmt.Errorf("%w: module %q speaks version %d, engine speaks %d", ErrVersionMismatch, h.Name, h.ProtoVersion, ControlProtoVersion)
	}
	if h.PID != peer.PID {
		return Welcome{}, peer.PID, fmt.Errorf("%w: module %q claims pid %d, the socket peer is pid %d", ErrPeerCred, h.Name, h.PID, peer.PID)
	}
	if h.SchemaHash != s.cfg.SchemaHash {
		return Welcome{}, peer.PID, fmt.Errorf("%w: module %q has schema hash %#016x, engine has %#016x", ErrSchemaMismatch, h.Name, h.SchemaHash, s.cfg.SchemaHash)
	}
	if err := ctlValidHello(&h); err != nil {
		return Welcome{}, peer.PID, err
	}
	w, err := s.cfg.Handler(h, peer)
	if err != nil {
		closeFiles(w.Files)
		switch {
		case errors.Is(err, ErrRejected):
		case strings.Contains(err.Error(), strconv.Quote(h.Name)):
			err = fmt.Errorf("%w: %w", ErrRejected, err) // it names the module already
		default:
			err = fmt.Errorf("%w: module %q: %w", ErrRejected, h.Name, err)
		}
		return Welcome{}, peer.PID, err
	}
	w.ProtoVersion = ControlProtoVersion
	return w, peer.PID, nil
}

// MaxEvery bounds a module's Every (layout.MaxEvery: the supervisor's
// config check uses the same constant).
const MaxEvery = layout.MaxEvery

func ctlValidHello(h *Hello) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: module %q: %s", ErrBadHello, h.Name, fmt.Sprintf(format, a...))
	}
	switch {
	case !layout.ValidModuleName(h.Name):
		return bad("name must be 1..%d bytes of [A-Za-z0-9_.-]", layout.ModuleNameLen-1)
	case h.Group != "" && !layout.ValidModuleName(h.Group):
		// Group names are logged and compared like module names; an
		// unbounded one made every join a large log line.
		return bad("group must be 1..%d bytes of [A-Za-z0-9_.-]", layout.ModuleNameLen-1)
	case h.Tier != TierFast && h.Tier != TierSlow:
		return bad("tier %q, want %q or %q", h.Tier, TierFast, TierSlow)
	case h.Every == 0 && h.WakeOn.Empty():
		return bad("every 0 (only when woken) needs a wake_on")
	case h.Every < 0 || h.Every > MaxEvery:
		return bad("every %d, want 1..%d (0 with a wake_on)", h.Every, MaxEvery)
	case h.MaxRuntime < 0:
		// A negative runtime was taken for "absent" and defaulted: a
		// client's sign bug would pass unseen.
		return bad("max_runtime_ns %d, want ≥ 0 (0: the engine's default)", h.MaxRuntime)
	case len(h.Components) > layout.MaxComponents:
		return bad("%d components (max %d)", len(h.Components), layout.MaxComponents)
	case len(h.MaskExt) > layout.MaxMaskWords-1:
		return bad("mask_ext has %d words (max %d: components up to %d)", len(h.MaskExt), layout.MaxMaskWords-1, layout.MaxComponents)
	}
	return ctlValidSubscriptions(h, bad)
}

func (s *ControlServer) ctlServe(c *net.UnixConn) {
	defer s.wg.Done()
	_ = c.SetDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
	w, pid, err := s.ctlHandshake(c)
	if err == nil {
		err = ctlWriteFiles(c, ctlReply{Welcome: &w}, w.Files)
		closeFiles(w.Files) // the module has its own copies now
		w.Files = nil
		if err == nil {
			s.accepted.Add(1)
		} else {
			err = fmt.Errorf("%w: welcome not delivered: %w", ErrControl, unwrapOpError(err))
			s.report(err)
			// The handler admitted the module, which is gone before it
			// heard back: the engine must reclaim it like any death.
			if s.cfg.OnClose != nil {
				s.cfg.OnClose(w.Slot, pid)
			}
		}
	} else if !errors.Is(err, io.EOF) && !errors.Is(err, errCtlServed) {
		// (A peer that connects and leaves without a word, like the liveness
		// probe of Listen, is not a refusal.)
		s.ctlRefuse(c, err)
	}
	s.mu.Lock()
	if err != nil || s.closed {
		delete(s.conns, c)
		s.mu.Unlock()
		_ = c.Close()
		return
	}
	s.conns[c] = w.Slot
	s.mu.Unlock()
	_ = c.SetDeadline(time.Time{})
	// Admitted: the connection lives as long as the module. Messages after
	// the handshake are reserved for later protocol versions and ignored.
	for {
		if _, err := ctlRead(c); err != nil {
			break
		}
	}
	_ = c.Close()
	s.mu.Lock()
	delete(s.conns, c)
	closing := s.closed
	s.mu.Unlock()
	s.closedN.Add(1)
	if !closing && s.cfg.OnClose != nil {
		s.cfg.OnClose(w.Slot, pid)
	}
}

// Disconnect closes the connections of the module in slot (the current
// one and any of an earlier incarnation not yet seen closed); OnClose
// follows for each. It reports whether there was one.
func (s *ControlServer) Disconnect(slot int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	found := false
	for c, sl := range s.conns {
		if sl == slot {
			_ = c.Close()
			found = true
		}
	}
	return found
}

// Close stops accepting, closes every connection (modules see EOF), removes
// the socket file if it is still ours and waits for the server goroutines.
// OnClose is not called for connections closed by Close.
func (s *ControlServer) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	err := s.ln.Close()
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	var st unix.Stat_t
	if unix.Lstat(s.path, &st) == nil && st.Ino == s.ino {
		_ = os.Remove(s.path)
	}
	s.wg.Wait()
	return err
}
