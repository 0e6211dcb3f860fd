package ipc

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// ctlHostile are malformed control requests: each is a control request
// (it has the key "ctl") refused with ErrBadCtl.
var ctlHostile = []string{
	`{"ctl": {"op": "jump"}}`,
	`{"ctl": {}}`,
	`{"ctl": null}`,
	`{"ctl": "pause"}`,
	`{"ctl": 7}`,
	`{"ctl": []}`,
	`{"ctl": {"op": "pause", "frames": 3}}`,
	`{"ctl": {"op": "resume", "speed": 2}}`,
	`{"ctl": {"op": "status", "frame": 1}}`,
	`{"ctl": {"op": "step"}}`,
	`{"ctl": {"op": "step", "frames": 0}}`,
	`{"ctl": {"op": "step", "frames": 1048577}}`,
	`{"ctl": {"op": "step", "frames": -1}}`,
	`{"ctl": {"op": "step", "frames": 1.5}}`,
	`{"ctl": {"op": "step", "frames": 2, "speed": 1}}`,
	`{"ctl": {"op": "speed"}}`,
	`{"ctl": {"op": "speed", "speed": 0}}`,
	`{"ctl": {"op": "speed", "speed": -0.5}}`,
	`{"ctl": {"op": "speed", "speed": 0.0009}}`,
	`{"ctl": {"op": "speed", "speed": 64.0001}}`,
	`{"ctl": {"op": "speed", "speed": 1e400}}`,
	`{"ctl": {"op": "speed", "speed": "fast"}}`,
	`{"ctl": {"op": "speed", "speed": 2, "frame": 1}}`,
	`{"ctl": {"op": "seek", "frames": 1}}`,
	`{"ctl": {"op": "pause", "evil": true}}`,
	`{"ctl": {"op": "PAUSE"}}`,
	`{"ctl": {"op": "pause"}, "name": "ai"}`,
	`{"ctl": {"op": "pause"}, "proto_version": 3}`,
	`{"ctl": {"op": "pause"}} {"x": 1}`,
}

// TestCtlDecode: a hello is not a control request; every hostile request
// is one and is refused with ErrBadCtl; the valid ones decode to their
// request.
func TestCtlDecode(t *testing.T) {
	for _, hello := range []string{`{"proto_version": 3, "name": "ai"}`, `{}`, `[]`, `not json`, `{"ctlx": 1}`} {
		_, ok, err := ctlDecode([]byte(hello))
		require.False(t, ok, hello)
		require.NoError(t, err, hello)
	}
	for _, h := range ctlHostile {
		_, ok, err := ctlDecode([]byte(h))
		require.True(t, ok, h)
		require.ErrorIs(t, err, ErrBadCtl, h)
		require.NotContains(t, err.Error(), "\n", h)
	}
	valid := map[string]CtlRequest{
		`{"ctl": {"op": "pause"}}`:                               {Op: CtlPause},
		`{"ctl": {"op": "resume"}}`:                              {Op: CtlResume},
		`{"ctl": {"op": "status"}}`:                              {Op: CtlStatus},
		`{"ctl": {"op": "step", "frames": 1048576}}`:             {Op: CtlStep, Frames: CtlMaxStep},
		`{"ctl": {"op": "speed", "speed": 64}}`:                  {Op: CtlSpeed, Speed: 64},
		`{"ctl": {"op": "speed", "speed": 0.001}}`:               {Op: CtlSpeed, Speed: 0.001},
		`{"ctl": {"op": "seek", "frame": 0}}`:                    {Op: CtlSeek},
		`{"ctl": {"op": "seek", "frame": 18446744073709551615}}`: {Op: CtlSeek, Frame: 1<<64 - 1},
	}
	for in, want := range valid {
		got, ok, err := ctlDecode([]byte(in))
		require.True(t, ok, in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
}

// FuzzCtlDecode: any message decodes without a panic; one accepted as a
// control request is valid and survives a round trip through its wire form.
func FuzzCtlDecode(f *testing.F) {
	for _, h := range ctlHostile {
		f.Add([]byte(h))
	}
	f.Add([]byte(`{"ctl": {"op": "step", "frames": 5}}`))
	f.Add([]byte(`{"ctl": {"op": "speed", "speed": 0.5}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		req, ok, err := ctlDecode(b)
		if !ok || err != nil {
			return
		}
		require.NoError(t, req.Validate())
		j, err := json.Marshal(struct {
			Ctl CtlRequest `json:"ctl"`
		}{req})
		require.NoError(t, err)
		again, ok, err := ctlDecode(j)
		require.True(t, ok)
		require.NoError(t, err)
		require.Equal(t, req, again)
	})
}

// ctlFake is a time-control handler that records the requests.
type ctlFake struct {
	mu   sync.Mutex
	reqs []CtlRequest
}

func (f *ctlFake) handle(req CtlRequest) (CtlState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reqs = append(f.reqs, req)
	if req.Op == CtlSeek {
		return CtlState{}, ErrSeekLive
	}
	return CtlState{Paused: req.Op == CtlPause, Speed: 1, Frame: uint64(len(f.reqs))}, nil
}

// ctlRaw sends body with a length word of announce on a new connection to
// inst and returns the reply's fields.
func ctlRaw(t *testing.T, inst string, body []byte, announce uint32) map[string]any {
	t.Helper()
	path, err := SocketPath(inst)
	require.NoError(t, err)
	c, err := net.Dial("unix", path)
	require.NoError(t, err)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	var hdr [4]byte
	binary.LittleEndian.PutUint32(hdr[:], announce)
	_, _ = c.Write(append(hdr[:], body...))
	msg, err := ctlRead(c)
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(msg, &m), "%s", msg)
	return m
}

// TestCtlServe: requests through Ctl reach the handler and get its state;
// malformed ones never reach it, are refused with bad_ctl and counted; the
// handler's refusal is ctl_refused with its text; a server without a
// handler refuses every request; hellos are served as before.
func TestCtlServe(t *testing.T) {
	t.Setenv("FDP_SHM_DIR", t.TempDir())
	inst := ctlTestInstance()
	var fake ctlFake
	s, err := Listen(inst, ControlConfig{SchemaHash: 1, WarnEvery: -1, Ctl: fake.handle,
		Handler: func(Hello, PeerCred) (Welcome, error) { return Welcome{}, errors.New("no hello here") }})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })

	st, err := Ctl(inst, CtlRequest{Op: CtlPause}, 5*time.Second)
	require.NoError(t, err)
	require.Equal(t, CtlState{Op: CtlPause, Paused: true, Speed: 1, Frame: 1}, st)
	st, err = Ctl(inst, CtlRequest{Op: CtlStep, Frames: 5}, 5*time.Second)
	require.NoError(t, err)
	require.Equal(t, CtlStep, st.Op)

	_, err = Ctl(inst, CtlRequest{Op: CtlSeek, Frame: 9}, 5*time.Second)
	require.ErrorIs(t, err, ErrCtlRefused)
	var r *CtlRefusal
	require.ErrorAs(t, err, &r)
	require.Equal(t, "ctl_refused", r.Code)
	require.Contains(t, err.Error(), "seek is only for a replay")

	// The client checks before sending; raw bytes go past it.
	_, err = Ctl(inst, CtlRequest{Op: CtlSpeed, Speed: 65}, 5*time.Second)
	require.ErrorIs(t, err, ErrBadCtl)
	for _, h := range ctlHostile {
		m := ctlRaw(t, inst, []byte(h), uint32(len(h)))
		require.Equal(t, "bad_ctl", m["code"], "%s: %v", h, m)
		require.NotContains(t, m["error"], "\n")
	}
	fake.mu.Lock()
	require.Equal(t, []CtlRequest{{Op: CtlPause}, {Op: CtlStep, Frames: 5}, {Op: CtlSeek, Frame: 9}}, fake.reqs,
		"malformed requests never reach the handler")
	fake.mu.Unlock()
	cs := s.Stats()
	require.Equal(t, uint64(2), cs.CtlServed)
	require.Equal(t, uint64(len(ctlHostile)+1), cs.CtlRefused)
	require.Equal(t, uint64(len(ctlHostile)), cs.BadCtl)
	require.Zero(t, cs.Refused, "no hello was refused")

	// A length above the limit is refused before anything is read.
	m := ctlRaw(t, inst, nil, ControlMaxMessage+1)
	require.Equal(t, "too_large", m["code"])

	// A hello still goes to the hello handler.
	hello := ctlTestHello()
	hello.SchemaHash = 1
	_, _, err = Dial(inst, hello, 5*time.Second)
	require.ErrorIs(t, err, ErrRejected)

	// Without a handler: refused.
	inst2 := ctlTestInstance()
	s2, err := Listen(inst2, ControlConfig{SchemaHash: 1, WarnEvery: -1, Handler: func(Hello, PeerCred) (Welcome, error) { return Welcome{}, nil }})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s2.Close() })
	_, err = Ctl(inst2, CtlRequest{Op: CtlStatus}, 5*time.Second)
	require.ErrorIs(t, err, ErrCtlRefused)
	require.Contains(t, err.Error(), "no time control")
}

// TestCtlPeerRefused: a request from another uid than the engine's is
// refused (code peer) and counted, even when that uid is admitted as a
// module's (AllowUIDs); the handler never sees it.
func TestCtlPeerRefused(t *testing.T) {
	var fake ctlFake
	s := &ControlServer{cfg: ControlConfig{Ctl: fake.handle, AllowUIDs: []uint32{65534}}}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	require.NoError(t, err)
	a, b := os.NewFile(uintptr(fds[0]), "a"), os.NewFile(uintptr(fds[1]), "b")
	ca, err := net.FileConn(a)
	require.NoError(t, err)
	cb, err := net.FileConn(b)
	require.NoError(t, err)
	a.Close()
	b.Close()
	defer ca.Close()
	defer cb.Close()
	go s.serveCtl(ca.(*net.UnixConn), PeerCred{PID: 4242, UID: 65534}, CtlRequest{Op: CtlPause}, nil)
	_ = cb.SetDeadline(time.Now().Add(10 * time.Second))
	msg, err := ctlRead(cb)
	require.NoError(t, err)
	var rep ctlCtlReply
	require.NoError(t, json.Unmarshal(msg, &rep))
	require.Equal(t, "peer", rep.Code)
	require.Contains(t, rep.Error, "uid 65534")
	require.Empty(t, fake.reqs)
	require.Equal(t, uint64(1), s.Stats().CtlRefused)
	require.Equal(t, uint64(1), s.Stats().PeerRefused)
}

// TestCtlNoEngine: no socket, and a socket nobody listens on, are
// ErrNoEngine; an engine that takes the request for a hello (an older
// build: version_mismatch) is said to predate time control.
func TestCtlNoEngine(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("FDP_SHM_DIR", dir)
	inst := ctlTestInstance()
	_, err := Ctl(inst, CtlRequest{Op: CtlStatus}, time.Second)
	require.ErrorIs(t, err, ErrNoEngine)
	require.Contains(t, err.Error(), "has no control socket")

	path, err := SocketPath(inst)
	require.NoError(t, err)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	require.NoError(t, err)
	ln.SetUnlinkOnClose(false)
	require.NoError(t, ln.Close()) // the file stays, nobody listens: a dead engine's
	_, err = Ctl(inst, CtlRequest{Op: CtlStatus}, time.Second)
	require.ErrorIs(t, err, ErrNoEngine)
	require.Contains(t, err.Error(), "nothing listens")
	require.NoError(t, os.Remove(path))

	// An older engine: reads a hello of version 0.
	ln, err = net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		c, err := ln.AcceptUnix()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = ctlRead(c)
		_ = ctlWrite(c, ctlReply{Code: "version_mismatch", Error: `control protocol version mismatch: module "" speaks version 0, engine speaks 3`})
	}()
	_, err = Ctl(inst, CtlRequest{Op: CtlStatus}, 5*time.Second)
	require.ErrorIs(t, err, ErrCtlRefused)
	require.Contains(t, err.Error(), "does not know time control requests")
}

// ctlDocSection returns docs/PROTOCOL.md's "Time control requests".
func ctlDocSection(t *testing.T) string {
	b, err := os.ReadFile("../docs/PROTOCOL.md")
	require.NoError(t, err)
	s := string(b)
	i := strings.Index(s, "### Time control requests")
	require.GreaterOrEqual(t, i, 0, "PROTOCOL.md has no section Time control requests")
	s = s[i+1:]
	if j := strings.Index(s, "\n#"); j >= 0 {
		s = s[:j]
	}
	return s
}

// jsonFieldNames are the JSON names of a struct's fields.
func jsonFieldNames(v any) []string {
	var names []string
	rt := reflect.TypeOf(v)
	for i := range rt.NumField() {
		n, _, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ",")
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// TestCtlDocumented: docs/PROTOCOL.md's time control section names exactly
// the ops, the request's fields, the reply's fields (its example, plus the
// two a replay adds) and the refusal codes of the code, and its examples
// decode as the engine decodes them.
func TestCtlDocumented(t *testing.T) {
	doc := ctlDocSection(t)
	blocks := regexp.MustCompile("(?s)```json\n(.*?)\n```").FindAllStringSubmatch(doc, -1)
	require.Len(t, blocks, 2, "a request and a reply example")
	req, ok, err := ctlDecode([]byte(blocks[0][1]))
	require.True(t, ok)
	require.NoError(t, err)
	require.Equal(t, CtlRequest{Op: CtlStep, Frames: 5}, req)

	var rep struct {
		Reply map[string]any `json:"ctl_reply"`
	}
	require.NoError(t, json.Unmarshal([]byte(blocks[1][1]), &rep))
	var keys []string
	for k := range rep.Reply {
		keys = append(keys, k)
	}
	keys = append(keys, "first_frame", "last_frame") // "a replay adds"
	keys = append(keys, "remote")                    // "an engine that played remote batches adds"
	slices.Sort(keys)
	require.Equal(t, jsonFieldNames(CtlState{}), keys, "the reply example's fields")
	for _, k := range keys {
		require.Contains(t, doc, "`"+k+"`", "the section explains %s", k)
	}

	var ops []string
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z]+)` \\|").FindAllStringSubmatch(doc, -1) {
		ops = append(ops, m[1])
	}
	var want []string
	for _, o := range CtlOps {
		want = append(want, o.String())
	}
	require.Equal(t, want, ops, "the op table")
	for _, f := range jsonFieldNames(CtlRequest{}) {
		require.Contains(t, doc, "`"+f+"`", "the section names the request field %s", f)
	}
	for _, c := range ctlCtlCodes {
		require.Contains(t, doc, "`"+c.code+"`", "the section names the code %s", c.code)
	}
	require.Contains(t, doc, "1048576")
	require.Equal(t, 1<<20, CtlMaxStep)
	require.Contains(t, doc, fmt.Sprintf("%v ≤ X ≤ %d", CtlMinSpeed, CtlMaxSpeed))
	require.Equal(t, 64, CtlMaxSpeed)
	require.Contains(t, doc, ErrSeekLive.Error()[:len("seek is only for a replay")])
}
