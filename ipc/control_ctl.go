package ipc

// Time control over the control socket (`engine ctl`): a request kind
// besides the module hello. A connection whose first message is an object
// with the key "ctl" is a control request: the engine answers it with one
// reply and closes. Only processes of the engine's own uid may send one
// (AllowUIDs admit other uids' modules, not their operators). The request
// is decoded strictly (unknown keys, an unknown op, an argument out of
// range: code bad_ctl) and every refusal is counted (ControlStats.CtlRefused,
// BadCtl). docs/PROTOCOL.md, "Time control requests".

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"time"
)

// CtlOp is a time-control operation.
type CtlOp string

// The operations of a control request.
const (
	CtlPause  CtlOp = "pause"  // stop simulating, publishing and ticking (drops steps not yet run)
	CtlResume CtlOp = "resume" // run again (drops steps not yet run)
	CtlStep   CtlOp = "step"   // run exactly Frames frames, then stay paused
	CtlSpeed  CtlOp = "speed"  // set the speed (time scale) to Speed
	CtlSeek   CtlOp = "seek"   // replay only: go to recorded frame Frame
	CtlStatus CtlOp = "status" // change nothing; the reply is the state
)

// CtlOps are the operations, in the order `engine ctl --help` names them.
var CtlOps = []CtlOp{CtlPause, CtlResume, CtlStep, CtlSpeed, CtlSeek, CtlStatus}

func (o CtlOp) String() string { return string(o) }

// Bounds of the arguments of a control request.
const (
	// CtlMaxStep is the most frames one step request may ask for (and the
	// most steps pending at once: more is refused, not capped).
	CtlMaxStep = 1 << 20
	// CtlMaxSpeed is the highest speed.
	CtlMaxSpeed = 64
	// CtlMinSpeed is the lowest speed: below it a live engine's step
	// (world.Time.Dt, integer nanoseconds = period × speed) would round
	// towards 0 and freeze the simulation time while the engine says it
	// runs (at 1 kHz, 1 ms × 0.001 = 1 µs).
	CtlMinSpeed = 0.001
)

// Control request errors, besides the connection's (ErrControl, ErrPeerCred,
// ErrMessageTooLarge).
var (
	// ErrBadCtl: a malformed control request (wire code bad_ctl).
	ErrBadCtl = errors.New("invalid control request")
	// ErrCtlRefused: a well-formed request the engine refuses in its state
	// (wire code ctl_refused), e.g. a seek on a live engine.
	ErrCtlRefused = errors.New("control request refused")
	// ErrNoEngine: nothing answers on the instance's control socket (no
	// socket, or one a dead engine left).
	ErrNoEngine = errors.New("no engine")
)

// ErrSeekLive is the refusal of a seek by an engine that runs a live
// simulation (wrapped in ErrCtlRefused).
var ErrSeekLive = errors.New("seek is only for a replay (engine replay FILE); a live engine cannot go back in time")

// CtlRequest is a time-control request (wire: {"ctl": {...}}).
type CtlRequest struct {
	Op CtlOp `json:"op"`
	// Frames: step only, 1..CtlMaxStep.
	Frames uint64 `json:"frames,omitempty"`
	// Speed: speed only, CtlMinSpeed <= Speed <= CtlMaxSpeed.
	Speed float64 `json:"speed,omitempty"`
	// Frame: seek only, the recorded frame to go to.
	Frame uint64 `json:"frame,omitempty"`
}

// Validate checks the request's op and the argument it needs, and that it
// has no argument it does not take.
func (r CtlRequest) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrBadCtl, fmt.Sprintf(format, a...))
	}
	switch r.Op {
	case CtlPause, CtlResume, CtlStatus:
		if r.Frames != 0 || r.Speed != 0 || r.Frame != 0 {
			return bad("%s takes no argument", r.Op)
		}
	case CtlStep:
		if r.Frames < 1 || r.Frames > CtlMaxStep {
			return bad("step %d: frames must be 1..%d", r.Frames, CtlMaxStep)
		}
		if r.Speed != 0 || r.Frame != 0 {
			return bad("step takes only frames")
		}
	case CtlSpeed:
		if !(r.Speed >= CtlMinSpeed && r.Speed <= CtlMaxSpeed) || math.IsNaN(r.Speed) {
			return bad("speed %v: must be %v..%d", r.Speed, CtlMinSpeed, CtlMaxSpeed)
		}
		if r.Frames != 0 || r.Frame != 0 {
			return bad("speed takes only speed")
		}
	case CtlSeek:
		if r.Frames != 0 || r.Speed != 0 {
			return bad("seek takes only frame")
		}
	case "":
		return bad("no op (one of pause, resume, step, speed, seek, status)")
	default:
		return bad("unknown op %q (one of pause, resume, step, speed, seek, status)", string(r.Op))
	}
	return nil
}

// CtlState is the engine's time-control state, the reply to every
// accepted request (after the request took effect).
type CtlState struct {
	Op     CtlOp   `json:"op"`     // the request answered
	Paused bool    `json:"paused"` // no frame runs but the steps pending
	Speed  float64 `json:"speed"`  // live: dt = period × speed; replay: frame rate × speed
	// Frame is the engine's last completed frame (the latest published one
	// unless its publish was skipped).
	Frame uint64 `json:"frame"`
	// SimNanos is the simulation time of that frame (world.Time.Nanos; 0
	// without a time singleton).
	SimNanos int64 `json:"sim_ns"`
	// Steps are the frames of step requests not run yet.
	Steps uint64 `json:"steps_pending"`
	// PeriodNanos is the frame period (the configured frame rate's).
	PeriodNanos int64 `json:"frame_period_ns"`
	// Replay: the engine publishes a recording (seek works); First and
	// Last are its frames.
	Replay bool   `json:"replay"`
	First  uint64 `json:"first_frame,omitempty"`
	Last   uint64 `json:"last_frame,omitempty"`
	// Remote: the modules on other hosts whose batches the engine played
	// (ipc/control_remote.go), one per incarnation; `engine stat` shows
	// them.
	Remote []RemoteModuleState `json:"remote,omitempty"`
}

// ctlEnvelope is the first message of a connection, as far as telling a
// control request from a hello goes.
type ctlEnvelope struct {
	Ctl json.RawMessage `json:"ctl"`
}

// ctlDecode returns the control request in msg, ok false when msg is not
// one (a hello), or an ErrBadCtl error for a malformed one.
func ctlDecode(msg []byte) (req CtlRequest, ok bool, err error) {
	// The first JSON value decides: trailing data after an object with
	// "ctl" makes a malformed request, not a hello.
	var env ctlEnvelope
	first := json.NewDecoder(bytes.NewReader(msg))
	if first.Decode(&env) != nil || env.Ctl == nil {
		return req, false, nil
	}
	if _, err := first.Token(); err != io.EOF {
		return req, true, fmt.Errorf("%w: trailing data after the request", ErrBadCtl)
	}
	if bytes.Equal(bytes.TrimSpace(env.Ctl), []byte("null")) {
		return req, true, fmt.Errorf("%w: \"ctl\" is null", ErrBadCtl)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(msg, &top); err != nil || len(top) != 1 {
		return req, true, fmt.Errorf("%w: a control request has the one key \"ctl\", this one has %d", ErrBadCtl, len(top))
	}
	d := json.NewDecoder(bytes.NewReader(env.Ctl))
	d.DisallowUnknownFields()
	if err := d.Decode(&req); err != nil {
		return req, true, fmt.Errorf("%w: %w", ErrBadCtl, err)
	}
	if d.More() {
		return req, true, fmt.Errorf("%w: trailing data after the request", ErrBadCtl)
	}
	return req, true, req.Validate()
}

// ctlCtlReply is the wire form of a reply to a control request.
type ctlCtlReply struct {
	Reply *CtlState `json:"ctl_reply,omitempty"`
	Code  string    `json:"code,omitempty"`
	Error string    `json:"error,omitempty"`
}

// ctlCtlCodes are the refusal codes of a control request.
var ctlCtlCodes = []struct {
	code string
	err  error
}{
	{"peer", ErrPeerCred},
	{"too_large", ErrMessageTooLarge},
	{"bad_ctl", ErrBadCtl},
	{"ctl_refused", ErrCtlRefused},
}

func ctlCtlCode(err error) string {
	for _, c := range ctlCtlCodes {
		if errors.Is(err, c.err) {
			return c.code
		}
	}
	return "ctl_refused"
}

// serveCtl answers the control request of an admitted-uid peer on c.
func (s *ControlServer) serveCtl(c *net.UnixConn, peer PeerCred, req CtlRequest, derr error) {
	s.ctlActive.Add(1)
	defer s.ctlActive.Add(-1) // after the reply is written
	serveAdmitted(s, c, peer, req, derr, s.cfg.Ctl, "time control is", "this engine has no time control",
		func(st *CtlState, code, msg string) any {
			if st != nil {
				st.Op = req.Op
			}
			return ctlCtlReply{Reply: st, Code: code, Error: msg}
		})
}

// serveAdmitted answers one request of an admitted-uid peer on c, for the
// request kinds that only the engine's own uid may send (time control,
// remote batches): what the request kind is for (in the peer-uid refusal),
// none the refusal of a server without handler h. Every refusal is counted
// and reported before its reply is written (the peer hears of it only once
// it is counted); a handler's error that is not already a refusal is
// wrapped in ErrCtlRefused. reply builds the wire reply: res on success,
// code and msg on a refusal.
func serveAdmitted[Req, Res any](s *ControlServer, c *net.UnixConn, peer PeerCred, req Req, derr error,
	h func(Req) (Res, error), what, none string, reply func(res *Res, code, msg string) any) {
	refuse := func(err error) {
		s.ctlRefusedN.Add(1)
		if errors.Is(err, ErrBadCtl) {
			s.badCtl.Add(1)
		}
		s.report(err) // before the reply: counted by the time the peer hears it
		_ = ctlWrite(c, reply(nil, ctlCtlCode(err), err.Error()))
	}
	switch {
	case derr != nil:
		refuse(derr)
		return
	case peer.UID != uint32(os.Getuid()):
		s.peerRefused.Add(1)
		refuse(fmt.Errorf("%w: peer pid %d uid %d: %s for the engine's uid %d only", ErrPeerCred, peer.PID, peer.UID, what, os.Getuid()))
		return
	case h == nil:
		refuse(fmt.Errorf("%w: %s", ErrCtlRefused, none))
		return
	}
	res, err := h(req)
	if err != nil {
		if !errors.Is(err, ErrBadCtl) && !errors.Is(err, ErrCtlRefused) {
			err = fmt.Errorf("%w: %w", ErrCtlRefused, err)
		}
		refuse(err)
		return
	}
	s.ctlServed.Add(1)
	_ = ctlWrite(c, reply(&res, "", ""))
}

// Ctl sends one time-control request to the engine of instance and returns
// its state after the request. A refusal is an error wrapping ErrBadCtl,
// ErrCtlRefused or ErrPeerCred with the engine's one-line reason; an
// instance without a listening engine is ErrNoEngine.
func Ctl(instance string, req CtlRequest, timeout time.Duration) (CtlState, error) {
	if err := req.Validate(); err != nil {
		return CtlState{}, err
	}
	path, err := SocketPath(instance)
	if err != nil {
		return CtlState{}, err
	}
	nc, err := net.DialTimeout("unix", path, timeout)
	if err != nil {
		if _, serr := os.Lstat(path); serr != nil {
			return CtlState{}, fmt.Errorf("%w: instance %q has no control socket (%s does not exist)", ErrNoEngine, instance, path)
		}
		return CtlState{}, fmt.Errorf("%w: instance %q: nothing listens on %s (the engine that made it is gone): %w", ErrNoEngine, instance, path, unwrapOpError(err))
	}
	c := nc.(*net.UnixConn)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	var rep ctlCtlReply
	if err := ctlExchange(c, instance, " (socket "+path+")", struct {
		Ctl CtlRequest `json:"ctl"`
	}{req}, &rep); err != nil {
		return CtlState{}, err
	}
	if rep.Reply != nil {
		return *rep.Reply, nil
	}
	sentinel := ctlCodeSentinel(rep.Code)
	if rep.Code == "version_mismatch" || rep.Code == "bad_hello" {
		// An engine that predates control requests took it for a hello.
		return CtlState{}, fmt.Errorf("%w: engine %q does not know time control requests (an older build): %s", ErrCtlRefused, instance, rep.Error)
	}
	msgErr := rep.Error
	if msgErr == "" {
		msgErr = "code " + rep.Code
	}
	return CtlState{}, &CtlRefusal{Code: rep.Code, Msg: msgErr, sentinel: sentinel}
}

// ctlExchange writes req to the engine of instance on c and decodes its one
// reply into rep; where follows the engine's name in the errors.
func ctlExchange(c *net.UnixConn, instance, where string, req, rep any) error {
	if err := ctlWrite(c, req); err != nil {
		return fmt.Errorf("%w: send to engine %q%s: %w", ErrControl, instance, where, unwrapOpError(err))
	}
	msg, err := ctlRead(c)
	if err != nil {
		return fmt.Errorf("%w: no reply from engine %q%s: %w", ErrControl, instance, where, unwrapOpError(err))
	}
	if err := json.Unmarshal(msg, rep); err != nil {
		return fmt.Errorf("%w: bad reply from engine %q: %w", ErrControl, instance, err)
	}
	return nil
}

// ctlCodeSentinel is the sentinel of a refusal's wire code: ErrCtlRefused
// for a code this build does not know.
func ctlCodeSentinel(code string) error {
	var sentinel error = ErrCtlRefused
	for _, cc := range ctlCtlCodes {
		if cc.code == code {
			sentinel = cc.err
		}
	}
	return sentinel
}

// CtlRefusal is an engine's refusal of a control request: its wire code
// and one-line reason; errors.Is matches the code's sentinel (ErrBadCtl,
// ErrCtlRefused, ErrPeerCred, ErrMessageTooLarge).
type CtlRefusal struct {
	Code, Msg string
	sentinel  error
}

func (e *CtlRefusal) Error() string { return e.Msg }

// Unwrap returns the sentinel of the refusal's code.
func (e *CtlRefusal) Unwrap() error { return e.sentinel }

// CtlActive returns the time-control requests being served (until their
// reply is written). A replay waits for 0 before it replaces its engine
// after a seek back, so that the seek's reply is not cut by the close.
func (s *ControlServer) CtlActive() int { return int(s.ctlActive.Load()) }
