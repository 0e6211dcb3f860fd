package ipc

// Control plane: one unix domain socket per engine instance,
// <dir>/fdp.<instance>.sock. Every message is a frame of a u32
// little-endian length followed by that many bytes of JSON (at most
// ControlMaxMessage). A module connects, sends Hello, and gets one reply:
// a Welcome or an error (then the engine closes). The Welcome carries the
// module's segments as file descriptors (SCM_RIGHTS, in the ancillary data
// of the welcome's first byte, in the order WelcomeFDWorld, WelcomeFDEvents,
// WelcomeFDModule): a module never opens a segment by name. After a Welcome
// the connection stays open for the module's lifetime: each side sees the
// other's death as EOF.
//
// Admission: the socket is mode 0600 unless ControlConfig.AllowUIDs names
// other uids, then 0666 (any local process can connect); either way a peer
// is admitted only if SO_PEERCRED gives the engine's own uid or one of
// AllowUIDs. Refused peers are counted (ControlStats.PeerRefused).

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
	// Version 3: the welcome passes the segments as descriptors and the
	// module pins through its own segment's reader line; the hello has no
	// reader entry. A version 2 module would open segments by name and pin
	// in the leases segment, which the engine no longer honours for modules.
	ControlProtoVersion = 3
	// ControlMaxMessage is the largest JSON message accepted or sent.
	ControlMaxMessage = 64 << 10
	// Tiers a module can ask for.
	TierFast = "fast"
	TierSlow = "slow"
)

// Control plane errors. Errors returned by Dial and reported to
// ControlConfig.OnError wrap one of these.
var (
	ErrSchemaMismatch  = errors.New("schema hash mismatch")
	ErrVersionMismatch = errors.New("control protocol version mismatch")
	ErrPeerCred        = errors.New("peer credentials rejected")
	ErrBadHello        = errors.New("invalid hello")
	ErrRejected        = errors.New("module rejected by the engine")
	ErrMessageTooLarge = errors.New("control message too large")
	ErrControl         = errors.New("control protocol error")
	ErrInstanceRunning = errors.New("engine instance already listening")
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
	// MaxRuntime (nanoseconds) bounds each slow tick and its snapshot
	// lease; 0 asks for the engine's default (host.Config.MaxSlowTick).
	MaxRuntime int64 `json:"max_runtime_ns,omitempty"`
}

// SegmentNames are the names of the segments passed with a welcome, for
// display only: a module maps the descriptors (Welcome.Files).
type SegmentNames struct {
	World  string `json:"world"`
	Events string `json:"events"`
	Module string `json:"module"`
}

// WelcomeFD is the position of a descriptor passed with a welcome
// (Welcome.Files).
type WelcomeFD int

// The descriptors of a welcome, in their order.
const (
	WelcomeFDWorld  WelcomeFD = 0 // world segment, opened read-only
	WelcomeFDEvents WelcomeFD = 1 // event log, opened read-only
	WelcomeFDModule WelcomeFD = 2 // the module's own segment, opened read-write
	// WelcomeFDs is the number of descriptors in a welcome.
	WelcomeFDs = 3
)

func (f WelcomeFD) String() string {
	switch f {
	case WelcomeFDWorld:
		return "world"
	case WelcomeFDEvents:
		return "events"
	case WelcomeFDModule:
		return "module"
	}
	return fmt.Sprintf("WelcomeFD(%d)", int(f))
}

// Welcome is the engine's successful handshake reply.
type Welcome struct {
	ProtoVersion int          `json:"proto_version"`
	Slot         int          `json:"slot"` // module slot index; also the module's reader and holder id
	Segments     SegmentNames `json:"segments"`
	ConvoyGroup  int          `json:"convoy_group"` // assigned convoy group id
	// FramePeriod is the engine's frame period in nanoseconds.
	FramePeriod int64 `json:"frame_period_ns"`
	// MaxRuntime is the runtime (nanoseconds) the engine allows each slow
	// tick of this module; past it the tick's snapshot is revoked.
	MaxRuntime int64 `json:"max_runtime_ns,omitempty"`
	// Files are the descriptors passed with the welcome (SCM_RIGHTS), in
	// the order of WelcomeFDWorld, WelcomeFDEvents, WelcomeFDModule. On the
	// engine side the handler provides them and the server closes them once
	// the welcome is sent (or could not be); on the module side Dial returns
	// the received ones, owned by the caller.
	Files []*os.File `json:"-"`
}

// closeFiles closes every file of fs.
func closeFiles(fs []*os.File) {
	for _, f := range fs {
		if f != nil {
			_ = f.Close()
		}
	}
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

// ctlCodes are the refusal codes of the wire, most specific first: an
// error that wraps several sentinels (a handler's refusal wraps
// ErrRejected around its cause) gets the first that matches.
var ctlCodes = []struct {
	code string
	err  error
}{
	{"schema_mismatch", ErrSchemaMismatch},
	{"version_mismatch", ErrVersionMismatch},
	{"peer", ErrPeerCred},
	{"bad_hello", ErrBadHello},
	{"too_large", ErrMessageTooLarge},
	{"rejected", ErrRejected},
}

func ctlCode(err error) string {
	for _, c := range ctlCodes {
		if errors.Is(err, c.err) {
			return c.code
		}
	}
	return "rejected"
}

// ctlCodeErr returns the sentinel of a wire code (ErrRejected if unknown).
func ctlCodeErr(code string) error {
	for _, c := range ctlCodes {
		if c.code == code {
			return c.err
		}
	}
	return ErrRejected
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

// ctlFrame encodes one frame.
func ctlFrame(v any) ([]byte, error) {
	j, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("%w: encode: %w", ErrControl, err)
	}
	if len(j) > ControlMaxMessage {
		return nil, fmt.Errorf("%w: %d bytes, the limit is %d", ErrMessageTooLarge, len(j), ControlMaxMessage)
	}
	buf := make([]byte, 4+len(j))
	binary.LittleEndian.PutUint32(buf, uint32(len(j)))
	copy(buf[4:], j)
	return buf, nil
}

// ctlWrite sends one frame.
func ctlWrite(w io.Writer, v any) error {
	buf, err := ctlFrame(v)
	if err != nil {
		return err
	}
	_, err = w.Write(buf)
	return err
}

// ctlWriteFiles sends one frame with files as SCM_RIGHTS ancillary data,
// attached to its first byte (one sendmsg; the rest, if the kernel took
// only part, with plain writes).
func ctlWriteFiles(c *net.UnixConn, v any, files []*os.File) error {
	buf, err := ctlFrame(v)
	if err != nil {
		return err
	}
	fds := make([]int, len(files))
	for i, f := range files {
		fds[i] = int(f.Fd())
	}
	n, _, err := c.WriteMsgUnix(buf, unix.UnixRights(fds...), nil)
	if err != nil {
		return err
	}
	if n < len(buf) {
		_, err = c.Write(buf[n:])
	}
	return err
}

// ctlReadFiles receives one frame and the descriptors sent with it (closed
// again, and an error returned, if there are more than max). The caller
// owns the returned files.
func ctlReadFiles(c *net.UnixConn, max int) ([]byte, []*os.File, error) {
	var files []*os.File
	fail := func(err error) ([]byte, []*os.File, error) {
		closeFiles(files)
		return nil, nil, err
	}
	oob := make([]byte, unix.CmsgSpace(4*(max+1)))
	var hdr [4]byte
	got := 0
	var body []byte
	for want := 4; got < want; {
		var dst []byte
		if got < 4 {
			dst = hdr[got:]
		} else {
			dst = body[got-4:]
		}
		n, oobn, flags, _, err := c.ReadMsgUnix(dst, oob)
		if oobn > 0 {
			fs, perr := ctlParseRights(oob[:oobn])
			files = append(files, fs...)
			if perr != nil {
				return fail(perr)
			}
		}
		if flags&unix.MSG_CTRUNC != 0 {
			return fail(fmt.Errorf("%w: more descriptors than the %d expected", ErrControl, max))
		}
		if err != nil {
			if got == 0 && n == 0 {
				return fail(err)
			}
			return fail(fmt.Errorf("%w: truncated message: %w", ErrControl, err))
		}
		if n == 0 {
			return fail(fmt.Errorf("%w: truncated message: %w", ErrControl, io.ErrUnexpectedEOF))
		}
		got += n
		if got == 4 && body == nil {
			l := binary.LittleEndian.Uint32(hdr[:])
			if l > ControlMaxMessage {
				return fail(fmt.Errorf("%w: peer announced %d bytes, the limit is %d", ErrMessageTooLarge, l, ControlMaxMessage))
			}
			body = make([]byte, l)
			want = 4 + int(l)
		}
	}
	if len(files) > max {
		return fail(fmt.Errorf("%w: %d descriptors, at most %d expected", ErrControl, len(files), max))
	}
	return body, files, nil
}

// ctlParseRights turns SCM_RIGHTS control messages into files.
func ctlParseRights(oob []byte) ([]*os.File, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("%w: control message: %w", ErrControl, err)
	}
	var files []*os.File
	for i := range msgs {
		fds, err := unix.ParseUnixRights(&msgs[i])
		if err != nil {
			continue // not SCM_RIGHTS
		}
		for _, fd := range fds {
			files = append(files, os.NewFile(uintptr(fd), "fdp-segment"))
		}
	}
	return files, nil
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
		return nil, fmt.Errorf("%w: truncated message: %w", ErrControl, err)
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
	// OnError, if set, is told about refused handshakes and accept errors,
	// at most once per WarnEvery (the first error of each period; the
	// count of those suppressed before it is in its text). Every error
	// names the socket path.
	OnError func(err error)
	// WarnEvery is the rate limit of OnError (default 1 s; negative: none).
	WarnEvery time.Duration
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
	Closed      uint64 // admitted connections that ended
	Suppressed  uint64 // errors not reported to OnError (rate limit)
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

	accepted, refused, peerRefused, closedN atomic.Uint64
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
	return ControlStats{Accepted: s.accepted.Load(), Refused: s.refused.Load(), PeerRefused: s.peerRefused.Load(),
		Closed: s.closedN.Load(), Suppressed: s.suppressed.Load()}
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
	s.report(err) // before the reply: counted by the time the peer hears it
	_ = ctlWrite(c, ctlReply{Code: ctlCode(err), Error: err.Error(), EngineSchema: s.cfg.SchemaHash, EngineProto: ControlProtoVersion})
}

// ctlHandshake also returns the peer pid (0 if unknown).
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
		if !errors.Is(err, ErrRejected) {
			err = fmt.Errorf("%w: module %q: %w", ErrRejected, h.Name, err)
		}
		return Welcome{}, peer.PID, err
	}
	w.ProtoVersion = ControlProtoVersion
	return w, peer.PID, nil
}

// MaxEvery bounds a module's Every: once a day at 1 kHz, far above any
// sensible period, small enough that frame arithmetic cannot overflow.
const MaxEvery = 86_400_000

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
	case h.Every < 1 || h.Every > MaxEvery:
		return bad("every %d, want 1..%d", h.Every, MaxEvery)
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
// ErrBadHello, ErrRejected or ErrMessageTooLarge. A welcome of this
// protocol version carries WelcomeFDs descriptors (Welcome.Files, owned by
// the caller); one with another count is an ErrControl error.
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
		return nil, Welcome{}, fmt.Errorf("%w: connect to engine %q: %w", ErrControl, instance, err)
	}
	c := nc.(*net.UnixConn)
	_ = c.SetDeadline(time.Now().Add(timeout))
	fail := func(err error) (*ControlConn, Welcome, error) {
		_ = c.Close()
		return nil, Welcome{}, err
	}
	// A hello the engine refuses before reading it (a peer uid it does not
	// admit) may fail to send: its refusal is still there to read.
	werr := ctlWrite(c, hello)
	msg, files, err := ctlReadFiles(c, WelcomeFDs)
	if err != nil {
		if werr != nil {
			return fail(fmt.Errorf("%w: send hello to engine %q (socket %s): %w", ErrControl, instance, path, unwrapOpError(werr)))
		}
		return fail(fmt.Errorf("%w: no reply from engine %q (socket %s): %w", ErrControl, instance, path, unwrapOpError(err)))
	}
	var rep ctlReply
	if err := json.Unmarshal(msg, &rep); err != nil {
		closeFiles(files)
		return fail(fmt.Errorf("%w: bad reply: %w", ErrControl, err))
	}
	if rep.Welcome != nil && len(files) != WelcomeFDs {
		closeFiles(files)
		return fail(fmt.Errorf("%w: welcome with %d descriptors, want %d", ErrControl, len(files), WelcomeFDs))
	}
	if rep.Welcome == nil {
		closeFiles(files)
		return fail(fmt.Errorf("%w (engine said: %s)", ctlCodeErr(rep.Code), rep.Error))
	}
	_ = c.SetDeadline(time.Time{})
	cc := &ControlConn{c: c, done: make(chan struct{})}
	go cc.ctlWatch()
	w := *rep.Welcome
	w.Files = files
	return cc, w, nil
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
