package ipc

import (
	"encoding/json"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/layout"
	"github.com/stretchr/testify/require"
)

// subHello decodes a hello whose other fields are valid, with extra JSON
// fields appended, and validates it as the server does.
func subHello(extra string) (Hello, error) {
	var h Hello
	msg := `{"proto_version":3,"name":"m","tier":"slow","every":1` + extra + `}`
	if err := json.Unmarshal([]byte(msg), &h); err != nil {
		return h, fmt.Errorf("%w: %w", ErrBadHello, err)
	}
	return h, ctlValidHello(&h)
}

// TestHelloSubscriptionsValidated: the lifecycle and wake_on objects of a
// hello are checked strictly, each bad value refused as an invalid hello
// with a reason naming it; good ones round-trip.
func TestHelloSubscriptionsValidated(t *testing.T) {
	for _, c := range []struct{ extra, want string }{
		{`,"lifecycle":{"created":true,"destroyed":true,"added":[3],"removed":[0,1]}`, ""},
		{`,"lifecycle":{}`, ""},
		{`,"wake_on":{"events":[2,65297],"components":[4]}`, ""},
		{`,"every":0,"wake_on":{"events":[2]}`, ""},
		{`,"every":0,"wake_on":{"components":[1]}`, ""},
		{`,"lifecycle":{"create":true}`, `unknown field "create"`},
		{`,"lifecycle":{"added":[1,2,3,4,5]}`, "added and removed have at most 4 mask words"},
		{`,"lifecycle":{"removed":[-1]}`, "cannot unmarshal"},
		{`,"lifecycle":true`, "cannot unmarshal"},
		{`,"wake_on":{"event":[2]}`, `unknown field "event"`},
		{`,"wake_on":{}`, "wake_on names no event type and no component"},
		{`,"wake_on":{"components":[0,0]}`, "wake_on names no event type and no component"},
		{`,"wake_on":{"events":[70000]}`, "cannot unmarshal number 70000"},
		{`,"wake_on":{"events":[65535]}`, "event type 0xffff is reserved for the engine"},
		{`,"wake_on":{"events":[65280]}`, "event type 0xff00 is reserved for the engine"},
		{`,"wake_on":{"events":[2,3,2]}`, "event type 2 named twice"},
		{`,"wake_on":{"events":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17]}`, "wake_on names 17 event types (max 16)"},
		{`,"wake_on":{"components":[1,0,0,0,1]}`, "components has 5 mask words (max 4)"},
		{`,"tier":"fast","wake_on":{"events":[2]}`, `wake_on is for slow modules, the tier is "fast"`},
		{`,"every":0`, "every 0 (only when woken) needs a wake_on"},
		{`,"every":-1,"wake_on":{"events":[2]}`, "every -1, want 1..86400000 (0 with a wake_on)"},
	} {
		_, err := subHello(c.extra)
		if c.want == "" {
			require.NoError(t, err, c.extra)
			continue
		}
		require.ErrorIs(t, err, ErrBadHello, c.extra)
		require.ErrorContains(t, err, c.want, c.extra)
	}

	h := Hello{Name: "m", Tier: TierSlow, Lifecycle: &LifecycleSub{Created: true, Removed: PutMaskWords([4]uint64{0, 2})},
		WakeOn: &WakeOnSub{Events: []uint16{uint16(layout.EventDestroyed)}}}
	b, err := json.Marshal(h)
	require.NoError(t, err)
	require.Contains(t, string(b), `"lifecycle":{"created":true,"removed":[0,2]}`)
	require.Contains(t, string(b), `"wake_on":{"events":[65297]}`)
	var back Hello
	require.NoError(t, json.Unmarshal(b, &back))
	require.Equal(t, h.Lifecycle, back.Lifecycle)
	require.Equal(t, h.WakeOn, back.WakeOn)
	m, ok := MaskWords(back.Lifecycle.Removed)
	require.True(t, ok)
	require.Equal(t, [4]uint64{0, 2}, m)
	require.Nil(t, PutMaskWords([4]uint64{}))
	require.True(t, (*LifecycleSub)(nil).Empty())
	require.True(t, (&LifecycleSub{Added: []uint64{0}}).Empty())
	require.False(t, back.Lifecycle.Empty())

	b, err = json.Marshal(Hello{Name: "m"})
	require.NoError(t, err)
	require.NotContains(t, string(b), "lifecycle")
	require.NotContains(t, string(b), "wake_on")
}

// TestBadHelloCounted: a refused subscription reaches the module as
// bad_hello with its reason, and the server counts it.
func TestBadHelloCounted(t *testing.T) {
	t.Setenv("FDP_SHM_DIR", t.TempDir())
	inst := fmt.Sprintf("bh%d", os.Getpid()%100000)
	srv, err := Listen(inst, ControlConfig{SchemaHash: 1, Handler: func(Hello, PeerCred) (Welcome, error) {
		t.Error("the handler must not see an invalid hello")
		return Welcome{}, ErrRejected
	}})
	require.NoError(t, err)
	defer srv.Close()
	h := Hello{ProtoVersion: ControlProtoVersion, Name: "m", Tier: TierSlow, Every: 0, SchemaHash: 1, PID: os.Getpid(),
		WakeOn: &WakeOnSub{Events: []uint16{layout.SystemEventCreated}}}
	_, _, err = Dial(inst, h, 2*time.Second)
	require.ErrorIs(t, err, ErrBadHello)
	require.ErrorContains(t, err, "event type 0xffff is reserved for the engine")
	st := srv.Stats()
	require.Equal(t, uint64(1), st.Refused)
	require.Equal(t, uint64(1), st.BadHellos)
}
