package ipc

// Remote command batches (issue 17, docs/ARCHITECTURE.md "Beyond one
// machine"): a bridge hands the engine one batch of a module that runs on
// another host (attached to a mirror) per connection, as the first and
// only message ({"remote": {...}}), and the reply comes once the engine's
// frame thread played it (or refused it as one it played already). The
// engine keeps, per remote module incarnation, the highest batch sequence
// it played: a batch delivered twice (a bridge killed between the play and
// its JetStream ack, a NATS restart) is answered "duplicate" and not
// played again. Only the engine's uid may send them.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"time"
)

// RemoteBatch is one committed command batch of a remote module.
type RemoteBatch struct {
	// Module is the remote module's name (as its mirror knows it), for
	// statistics and logs.
	Module string `json:"module"`
	// Mirror names the mirror host's instance the module is attached to.
	Mirror string `json:"mirror"`
	// Incarnation identifies one run of the module on one run of its
	// mirror (never 0); Seq numbers its batches from 1, increasing.
	Incarnation uint64 `json:"incarnation"`
	Seq         uint64 `json:"seq"`
	// Frame is the engine frame the module's tick read (its mirror's
	// frame): the engine's frame at play minus Frame is the batch's lag.
	Frame uint64 `json:"frame"`
	// Commands are the batch's command records, each a little-endian
	// uint16 type, uint32 length and that many payload bytes (the module
	// ring's commands, world/commands.go encodings).
	Commands []byte `json:"commands"`
}

// RemoteMaxCommands bounds a remote batch's command bytes (the control
// message limit with room for base64 and the envelope).
const RemoteMaxCommands = (ControlMaxMessage - 1024) / 4 * 3

// Validate checks the fields a batch must have.
func (b RemoteBatch) Validate() error {
	switch {
	case b.Incarnation == 0:
		return fmt.Errorf("%w: remote batch of %q: incarnation 0", ErrBadCtl, b.Module)
	case b.Seq == 0:
		return fmt.Errorf("%w: remote batch of %q: sequence 0", ErrBadCtl, b.Module)
	case b.Module == "" || len(b.Module) > 64:
		return fmt.Errorf("%w: remote batch: module name of %d bytes (1 to 64)", ErrBadCtl, len(b.Module))
	case len(b.Commands) > RemoteMaxCommands:
		return fmt.Errorf("%w: remote batch of %q: %d command bytes, at most %d", ErrBadCtl, b.Module, len(b.Commands), RemoteMaxCommands)
	}
	return nil
}

// RemoteResult is the engine's answer to a remote batch.
type RemoteResult struct {
	// Duplicate: the engine had played this incarnation's batch Seq (or a
	// later one) already; nothing was applied now.
	Duplicate bool `json:"duplicate,omitempty"`
	// Applied and Rejected count the batch's commands (validated like a
	// local module's: a rejected command changes nothing).
	Applied  uint32 `json:"applied"`
	Rejected uint32 `json:"rejected"`
	// Frame is the engine frame whose playback took the batch.
	Frame uint64 `json:"frame"`
	// Reasons: Rejected by reason (world.RejectReason names: arena_full,
	// stale_entity, ...).
	Reasons map[string]uint32 `json:"reasons,omitempty"`
}

type remoteEnvelope struct {
	Remote json.RawMessage `json:"remote"`
}

type remoteReply struct {
	Reply *RemoteResult `json:"remote_reply,omitempty"`
	Code  string        `json:"code,omitempty"`
	Error string        `json:"error,omitempty"`
}

// remoteDecode returns the remote batch in msg, ok false when msg is not
// one.
func remoteDecode(msg []byte) (b RemoteBatch, ok bool, err error) {
	var env remoteEnvelope
	if json.Unmarshal(msg, &env) != nil || env.Remote == nil {
		return b, false, nil
	}
	d := json.NewDecoder(bytes.NewReader(env.Remote))
	d.DisallowUnknownFields()
	if err := d.Decode(&b); err != nil {
		return b, true, fmt.Errorf("%w: remote batch: %w", ErrBadCtl, err)
	}
	return b, true, b.Validate()
}

// serveRemote answers a remote batch of an admitted-uid peer on c.
func (s *ControlServer) serveRemote(c *net.UnixConn, peer PeerCred, b RemoteBatch, derr error) {
	serveAdmitted(s, c, peer, b, derr, s.cfg.Remote, "remote batches are", "this engine takes no remote batches",
		func(res *RemoteResult, code, msg string) any { return remoteReply{Reply: res, Code: code, Error: msg} })
}

// SendRemote hands one remote batch to the engine of instance and waits
// for its play (at most timeout). Refusals are *CtlRefusal errors; an
// instance without a listening engine is ErrNoEngine.
func SendRemote(instance string, b RemoteBatch, timeout time.Duration) (RemoteResult, error) {
	if err := b.Validate(); err != nil {
		return RemoteResult{}, err
	}
	path, err := SocketPath(instance)
	if err != nil {
		return RemoteResult{}, err
	}
	nc, err := net.DialTimeout("unix", path, timeout)
	if err != nil {
		return RemoteResult{}, fmt.Errorf("%w: instance %q: %w", ErrNoEngine, instance, unwrapOpError(err))
	}
	c := nc.(*net.UnixConn)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	var rep remoteReply
	if err := ctlExchange(c, instance, "", struct {
		Remote RemoteBatch `json:"remote"`
	}{b}, &rep); err != nil {
		return RemoteResult{}, err
	}
	if rep.Reply != nil {
		return *rep.Reply, nil
	}
	return RemoteResult{}, &CtlRefusal{Code: rep.Code, Msg: rep.Error, sentinel: ctlCodeSentinel(rep.Code)}
}

// RemoteModuleState is what an engine knows of one remote module
// incarnation (CtlState.Remote).
type RemoteModuleState struct {
	Module      string `json:"module"`
	Mirror      string `json:"mirror"`
	Incarnation uint64 `json:"incarnation"`
	// LastSeq: every batch up to it was played; Batches played, Duplicates
	// refused, Applied and Rejected commands.
	LastSeq    uint64 `json:"last_seq"`
	Batches    uint64 `json:"batches"`
	Duplicates uint64 `json:"duplicates"`
	Applied    uint64 `json:"applied"`
	Rejected   uint64 `json:"rejected"`
	// LagFrames: the engine frame that played the last batch minus the
	// frame its tick read (on its mirror).
	LagFrames uint64 `json:"lag_frames"`
	LastFrame uint64 `json:"last_frame"`
	// Alive: a batch of the incarnation was played within the last
	// RemoteAliveWindow; IdleSeconds since its last. An incarnation idle
	// longer than RemoteStatForget leaves the status (its dedup state
	// stays in the engine longer: host.RemoteForget).
	Alive       bool    `json:"alive"`
	IdleSeconds float64 `json:"idle_s"`
	LastSeen    int64   `json:"-"` // Unix ns (the engine's)
}

// RemoteAliveWindow and RemoteStatForget: see RemoteModuleState.
const (
	RemoteAliveWindow = 10 * time.Second
	RemoteStatForget  = 5 * time.Minute
)
