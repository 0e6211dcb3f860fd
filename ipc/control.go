package ipc

// Control plane: one unix domain socket per engine instance,
// <dir>/fdp.<instance>.sock (mode 0600). Every message is a frame of a u32
// little-endian length followed by that many bytes of JSON (at most
// ControlMaxMessage). A module connects, sends Hello, and gets one reply:
// a Welcome or an error (then the engine closes). After a Welcome the
// connection stays open for the module's lifetime: each side sees the
// other's death as EOF.

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fdp-engine/fdp/layout"
)

const (
	// ControlProtoVersion is the engine-module protocol version of this
	// build: the handshake and the use of the module segment's words.
	// Version 2: doorbells sleep on the need-wake word (futex), which a
	// pre-wake sets to 2; the engine stamps ticks and modules report their
	// wake latency and counts. A version 1 module would sleep on the tick
	// word and miss its wake-ups, so it is refused.
	ControlProtoVersion = 2
	// ControlMaxMessage is the largest JSON message accepted or sent.
	ControlMaxMessage = 64 << 10
	// Tiers a module can ask for.
	TierFast = "fast"
	TierSlow = "slow"
)

// Control plane errors. Errors returned by Dial and reported to
// ControlConfig.OnError wrap one of these.
var (
	ErrSchemaMismatch  = errors.New("fdp/ipc: schema hash mismatch")
	ErrVersionMismatch = errors.New("fdp/ipc: control protocol version mismatch")
	ErrPeerCred        = errors.New("fdp/ipc: peer credentials rejected")
	ErrBadHello        = errors.New("fdp/ipc: invalid hello")
	ErrRejected        = errors.New("fdp/ipc: module rejected by the engine")
	ErrMessageTooLarge = errors.New("fdp/ipc: control message too large")
	ErrControl         = errors.New("fdp/ipc: control protocol error")
	ErrInstanceRunning = errors.New("fdp/ipc: engine instance already listening")
)

// Hello is the handshake request a module sends.
type Hello struct {
	ProtoVersion int      `json:"proto_version"`
	Name         string   `json:"name"`
	Tier         string   `json:"tier"`  // TierFast or TierSlow
	Every        int      `json:"every"` // run every N frames, N >= 1
	Mask         uint64   `json:"mask"`  // component mask the module reads
	Components   []string `json:"components"`
	SchemaHash   uint64   `json:"schema_hash"`
	PID          int      `json:"pid"`
	// Group, if set, overrides automatic convoy grouping (tier + every):
	// modules naming the same group share snapshots; "solo" never shares.
	Group string `json:"group,omitempty"`
	// ReaderEntry is the module's own entry in the leases reader table
	// (claimed before the handshake); -1 if it has none.
	ReaderEntry int `json:"reader_entry"`
}

// SegmentNames are the shared-memory segment names a module attaches to.
type SegmentNames struct {
	World  string `json:"world"`
	Leases string `json:"leases"`
	Events string `json:"events"`
	Module string `json:"module"`
}

// Welcome is the engine's successful handshake reply.
type Welcome struct {
	ProtoVersion int          `json:"proto_version"`
	Slot         int          `json:"slot"` // module slot index
	Segments     SegmentNames `json:"segments"`
	ReaderEntry  int          `json:"reader_entry"` // entry in the leases reader table
	ConvoyGroup  int          `json:"convoy_group"` // assigned convoy group id
	// FramePeriod is the engine's frame period in nanoseconds.
	FramePeriod int64 `json:"frame_period_ns"`
}

// PeerCred are the kernel-verified credentials of the connecting process.
type PeerCred struct {
	PID int
	UID uint32
	GID uint32
}

// ctlReply is the wire form of the handshake reply.
type ctlReply struct {
	Welcome      *Welcome `json:"welcome,omitempty"`
	Code         string   `json:"code,omitempty"`
	Error        string   `json:"error,omitempty"`
	EngineSchema uint64   `json:"engine_schema_hash,omitempty"`
	EngineProto  int      `json:"engine_proto_version,omitempty"`
}

var ctlCodes = map[string]error{
	"schema_mismatch":  ErrSchemaMismatch,
	"version_mismatch": ErrVersionMismatch,
	"peer":             ErrPeerCred,
	"bad_hello":        ErrBadHello,
	"rejected":         ErrRejected,
	"too_large":        ErrMessageTooLarge,
}

func ctlCode(err error) string {
	for c, e := range ctlCodes {
		if errors.Is(err, e) {
			return c
		}
	}
	return "rejected"
}

// ctlDir is the directory of segments and sockets: $FDP_SHM_DIR or /dev/shm.
func ctlDir() string {
	if d := os.Getenv("FDP_SHM_DIR"); d != "" {
		return d
	}
	return "/dev/shm"
}

// SocketPath returns the control socket path of an engine instance.
func SocketPath(instance string) (string, error) {
	if !layout.ValidInstanceName(instance) {
		return "", fmt.Errorf("%w: invalid instance name %q", ErrControl, instance)
	}
	p := filepath.Join(ctlDir(), "fdp."+instance+".sock")
	if len(p) >= len(syscall.RawSockaddrUnix{}.Path) {
		return "", fmt.Errorf("%w: socket path %q longer than %d bytes", ErrControl, p, len(syscall.RawSockaddrUnix{}.Path)-1)
	}
	return p, nil
}

// ctlWrite sends one frame.
func ctlWrite(w io.Writer, v any) error {
	j, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("%w: encode: %v", ErrControl, err)
	}
	if len(j) > ControlMaxMessage {
		return fmt.Errorf("%w: %d bytes, the limit is %d", ErrMessageTooLarge, len(j), ControlMaxMessage)
	}
	buf := make([]byte, 4+len(j))
	binary.LittleEndian.PutUint32(buf, uint32(len(j)))
	copy(buf[4:], j)
	_, err = w.Write(buf)
	return err
}

// ctlRead receives one frame; a length above ControlMaxMessage is refused
// before anything is allocated for it.
func ctlRead(r io.Reader) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.LittleEndian.Uint32(hdr[:])
	if n > ControlMaxMessage {
		return nil, fmt.Errorf("%w: peer announced %d bytes, the limit is %d", ErrMessageTooLarge, n, ControlMaxMessage)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("%w: truncated message: %v", ErrControl, err)
	}
	return b, nil
}

func ctlPeer(c *net.UnixConn) (PeerCred, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return PeerCred{}, err
	}
	var cred *unix.Ucred
	var serr error
	if err := rc.Control(func(fd uintptr) {
		cred, serr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return PeerCred{}, err
	}
	if serr != nil {
		return PeerCred{}, serr
	}
	return PeerCred{PID: int(cred.Pid), UID: cred.Uid, GID: cred.Gid}, nil
}

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
	// OnError, if set, is told about every refused handshake.
	OnError func(err error)
	// HandshakeTimeout bounds the handshake (default 5 s).
	HandshakeTimeout time.Duration
}

// ControlStats are the server's counters.
type ControlStats struct {
	Accepted uint64 // Welcomes delivered
	Refused  uint64 // handshakes refused with an error reply
	Closed   uint64 // admitted connections that ended
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

	accepted, refused, closedN atomic.Uint64
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
	// Bind under a temporary name, restrict it to 0600, then rename it into
	// place: the socket is never reachable under its real name with a wider
	// mode (and SO_PEERCRED refuses other users anyway).
	tmp := filepath.Join(filepath.Dir(path), fmt.Sprintf(".fdp.%s.%d.tmp", instance, os.Getpid()))
	_ = os.Remove(tmp)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("%w: listen: %v", ErrControl, err)
	}
	ln.SetUnlinkOnClose(false)
	fail := func(err error) (*ControlServer, error) {
		_ = ln.Close()
		_ = os.Remove(tmp)
		return nil, fmt.Errorf("%w: %v", ErrControl, err)
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
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
	return ControlStats{Accepted: s.accepted.Load(), Refused: s.refused.Load(), Closed: s.closedN.Load()}
}

func (s *ControlServer) ctlAcceptLoop() {
	defer s.wg.Done()
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
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

func (s *ControlServer) ctlRefuse(c *net.UnixConn, err error) {
	s.refused.Add(1)
	_ = ctlWrite(c, ctlReply{Code: ctlCode(err), Error: err.Error(), EngineSchema: s.cfg.SchemaHash, EngineProto: ControlProtoVersion})
	if s.cfg.OnError != nil {
		s.cfg.OnError(err)
	}
}

// ctlHandshake also returns the peer pid (0 if unknown).
func (s *ControlServer) ctlHandshake(c *net.UnixConn) (Welcome, int, error) {
	peer, err := ctlPeer(c)
	if err != nil {
		return Welcome{}, 0, fmt.Errorf("%w: SO_PEERCRED: %v", ErrPeerCred, err)
	}
	if uid := uint32(os.Getuid()); peer.UID != uid {
		return Welcome{}, peer.PID, fmt.Errorf("%w: peer uid %d, engine uid %d", ErrPeerCred, peer.UID, uid)
	}
	msg, err := ctlRead(c)
	if err != nil {
		return Welcome{}, peer.PID, err
	}
	var h Hello
	if err := json.Unmarshal(msg, &h); err != nil {
		return Welcome{}, peer.PID, fmt.Errorf("%w: %v", ErrBadHello, err)
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
		if !errors.Is(err, ErrRejected) {
			err = fmt.Errorf("%w: module %q: %v", ErrRejected, h.Name, err)
		}
		return Welcome{}, peer.PID, err
	}
	w.ProtoVersion = ControlProtoVersion
	return w, peer.PID, nil
}

func ctlValidHello(h *Hello) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: module %q: %s", ErrBadHello, h.Name, fmt.Sprintf(format, a...))
	}
	switch {
	case h.Name == "" || len(h.Name) > 64:
		return bad("name must be 1..64 bytes")
	case h.Tier != TierFast && h.Tier != TierSlow:
		return bad("tier %q, want %q or %q", h.Tier, TierFast, TierSlow)
	case h.Every < 1:
		return bad("every %d, want >= 1", h.Every)
	case len(h.Components) > layout.MaxComponents:
		return bad("%d components (max %d)", len(h.Components), layout.MaxComponents)
	}
	return nil
}

func (s *ControlServer) ctlServe(c *net.UnixConn) {
	defer s.wg.Done()
	_ = c.SetDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
	w, pid, err := s.ctlHandshake(c)
	if err == nil {
		err = ctlWrite(c, ctlReply{Welcome: &w})
		if err == nil {
			s.accepted.Add(1)
		} else {
			err = fmt.Errorf("%w: welcome not delivered: %v", ErrControl, err)
			if s.cfg.OnError != nil {
				s.cfg.OnError(err)
			}
			// The handler admitted the module, which is gone before it
			// heard back: the engine must reclaim it like any death.
			if s.cfg.OnClose != nil {
				s.cfg.OnClose(w.Slot, pid)
			}
		}
	} else if !errors.Is(err, io.EOF) {
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

// Disconnect closes the connection of the module in slot; OnClose follows.
func (s *ControlServer) Disconnect(slot int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c, sl := range s.conns {
		if sl == slot {
			_ = c.Close()
			return true
		}
	}
	return false
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

// ControlConn is the module side of an admitted control connection.
type ControlConn struct {
	c       *net.UnixConn
	done    chan struct{}
	err     error
	closing atomic.Bool
}

// Dial connects to the engine instance, sends hello (PID and ProtoVersion
// are filled in when zero) and waits for the reply. A refusal is returned as
// an error wrapping ErrSchemaMismatch, ErrVersionMismatch, ErrPeerCred,
// ErrBadHello, ErrRejected or ErrMessageTooLarge.
func Dial(instance string, hello Hello, timeout time.Duration) (*ControlConn, Welcome, error) {
	if hello.PID == 0 {
		hello.PID = os.Getpid()
	}
	if hello.ProtoVersion == 0 {
		hello.ProtoVersion = ControlProtoVersion
	}
	if j, err := json.Marshal(hello); err != nil || len(j) > ControlMaxMessage {
		if err == nil {
			err = fmt.Errorf("%w: hello of %d bytes, the limit is %d", ErrMessageTooLarge, len(j), ControlMaxMessage)
		}
		return nil, Welcome{}, err
	}
	path, err := SocketPath(instance)
	if err != nil {
		return nil, Welcome{}, err
	}
	nc, err := net.DialTimeout("unix", path, timeout)
	if err != nil {
		return nil, Welcome{}, fmt.Errorf("%w: connect to engine %q: %v", ErrControl, instance, err)
	}
	c := nc.(*net.UnixConn)
	_ = c.SetDeadline(time.Now().Add(timeout))
	fail := func(err error) (*ControlConn, Welcome, error) {
		_ = c.Close()
		return nil, Welcome{}, err
	}
	if err := ctlWrite(c, hello); err != nil {
		return fail(fmt.Errorf("%w: send hello: %v", ErrControl, err))
	}
	msg, err := ctlRead(c)
	if err != nil {
		return fail(fmt.Errorf("%w: no reply from engine %q: %w", ErrControl, instance, err))
	}
	var rep ctlReply
	if err := json.Unmarshal(msg, &rep); err != nil {
		return fail(fmt.Errorf("%w: bad reply: %v", ErrControl, err))
	}
	if rep.Welcome == nil {
		base, ok := ctlCodes[rep.Code]
		if !ok {
			base = ErrRejected
		}
		return fail(fmt.Errorf("%w (engine said: %s)", base, rep.Error))
	}
	_ = c.SetDeadline(time.Time{})
	cc := &ControlConn{c: c, done: make(chan struct{})}
	go cc.ctlWatch()
	return cc, *rep.Welcome, nil
}

func (cc *ControlConn) ctlWatch() {
	var err error
	for {
		if _, err = ctlRead(cc.c); err != nil {
			break
		}
	}
	if errors.Is(err, io.EOF) {
		err = fmt.Errorf("%w: engine closed the control connection", ErrControl)
	} else if cc.closing.Load() {
		err = fmt.Errorf("%w: closed", ErrControl)
	}
	cc.err = err
	close(cc.done)
}

// Done is closed when the connection ends (the engine died or closed it, or
// Close was called).
func (cc *ControlConn) Done() <-chan struct{} { return cc.done }

// Err tells why the connection ended; valid after Done is closed.
func (cc *ControlConn) Err() error {
	select {
	case <-cc.done:
		return cc.err
	default:
		return nil
	}
}

// Close ends the connection; the engine sees the module leave.
func (cc *ControlConn) Close() error {
	cc.closing.Store(true)
	err := cc.c.Close()
	<-cc.done
	return err
}
