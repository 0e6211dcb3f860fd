package ipc

// The module side of the control plane: Dial, and the connection whose end
// tells a module that its engine went away.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"time"
)

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
// ErrBadHello, ErrNameOwned, ErrModulesFull, ErrRejected or
// ErrMessageTooLarge. A welcome of this
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
		return fail(refusal(ctlCodeErr(rep.Code), rep.Error))
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

// refusal is the error of an engine's refusal of code sentinel with text
// msg: the engine's text after the sentinel, or, when that text does not
// begin with the sentinel's own (the refusal's reason names another
// cause), after "engine said". The sentinel is said once.
func refusal(sentinel error, msg string) error {
	if rest, ok := strings.CutPrefix(msg, sentinel.Error()+": "); ok {
		return fmt.Errorf("%w: %s", sentinel, rest)
	}
	return fmt.Errorf("%w (engine said: %s)", sentinel, msg)
}
