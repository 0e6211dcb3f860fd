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
	"syscall"

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
	// ErrNameOwned: the module name was registered by a process of
	// another uid (for the engine's lifetime): no restart changes that.
	ErrNameOwned = errors.New("a name is owned by the uid that registered it first")
	// ErrModulesFull: every slot of the engine's module table is held by
	// a live module (host.Config.MaxModules, at most layout.MaxModules).
	// Permanent for the module refused: a slot frees only when a module
	// that holds one stops for good, which no restart of this one brings
	// about (docs/ARCHITECTURE.md, "Caps").
	ErrModulesFull     = errors.New("every module slot is held by a live module")
	ErrMessageTooLarge = errors.New("control message too large")
	ErrControl         = errors.New("control protocol error")
	ErrInstanceRunning = errors.New("engine instance already listening")
)

// Hello is the handshake request a module sends.
type Hello struct {
	ProtoVersion int    `json:"proto_version"`
	Name         string `json:"name"`
	Tier         string `json:"tier"`  // TierFast or TierSlow
	Every        int    `json:"every"` // run every N frames, N >= 1; 0: only when woken (WakeOn)
	Mask         uint64 `json:"mask"`  // components 0..63 the module reads (word 0 of its mask)
	// MaskExt holds words 1.. of the read mask (components 64..255, word j
	// at MaskExt[j-1]), at most layout.MaxMaskWords-1 of them; omitted when
	// the module reads none of those (every world of at most 64
	// components).
	MaskExt    []uint64 `json:"mask_ext,omitempty"`
	Components []string `json:"components"`
	SchemaHash uint64   `json:"schema_hash"`
	PID        int      `json:"pid"`
	// Group, if set, overrides automatic convoy grouping (tier + every):
	// modules naming the same group share snapshots; "solo" never shares.
	Group string `json:"group,omitempty"`
	// MaxRuntime (nanoseconds) bounds each slow tick and its snapshot
	// lease; 0 asks for the engine's default (host.Config.MaxSlowTick).
	MaxRuntime int64 `json:"max_runtime_ns,omitempty"`
	// Lifecycle subscribes the module to lifecycle events; WakeOn (slow
	// tier) names what wakes it besides its period (control_subscribe.go).
	Lifecycle *LifecycleSub `json:"lifecycle,omitempty"`
	WakeOn    *WakeOnSub    `json:"wake_on,omitempty"`
}

// ReadMask returns the module's read mask (Mask and MaskExt) as
// layout.MaxMaskWords words; ok is false when MaskExt has more words than
// fit (an invalid hello).
func (h *Hello) ReadMask() (m [layout.MaxMaskWords]uint64, ok bool) {
	if len(h.MaskExt) > layout.MaxMaskWords-1 {
		return m, false
	}
	m[0] = h.Mask
	copy(m[1:], h.MaskExt)
	return m, true
}

// SetReadMask stores m into Mask and MaskExt (MaskExt only as long as its
// highest non-zero word needs).
func (h *Hello) SetReadMask(m [layout.MaxMaskWords]uint64) {
	h.Mask, h.MaskExt = m[0], nil
	for j := layout.MaxMaskWords - 1; j >= 1; j-- {
		if m[j] != 0 {
			h.MaskExt = append([]uint64(nil), m[1:j+1]...)
			break
		}
	}
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
	{"name_owned", ErrNameOwned},
	{"modules_full", ErrModulesFull},
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
