package tests

// docs/PROTOCOL.md's welcome example names the fields the engine sends
// (outside tester, F4: it lacked max_runtime_ns).

import (
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/ipc"
	"github.com/stretchr/testify/require"
)

// jsonKeys returns the keys of a JSON object, nested objects' as
// "outer.inner", sorted.
func jsonKeys(t *testing.T, b []byte) []string {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m), "%s", b)
	var keys []string
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			keys = append(keys, prefix+k)
			if sub, ok := v.(map[string]any); ok {
				walk(prefix+k+".", sub)
			}
		}
	}
	walk("", m)
	slices.Sort(keys)
	return keys
}

// layoutWelcome returns the JSON of docs/PROTOCOL.md's welcome example: the
// code block after "A welcome:".
func layoutWelcome(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile("../docs/PROTOCOL.md")
	require.NoError(t, err)
	s := string(b)
	i := strings.Index(s, "A welcome:\n\n```json\n")
	require.GreaterOrEqual(t, i, 0, "PROTOCOL.md has no welcome example")
	s = s[i+len("A welcome:\n\n```json\n"):]
	end := strings.Index(s, "\n```")
	require.GreaterOrEqual(t, end, 0)
	return []byte(s[:end])
}

// TestLayoutWelcomeExample: the welcome a module gets from a real engine
// (its JSON as the engine sends it, the descriptors aside) has exactly the
// fields of the documented example.
func TestLayoutWelcomeExample(t *testing.T) {
	r := newRig(t, 10)
	hello := ipc.Hello{Name: "welcomed", Tier: ipc.TierSlow, Every: 6, SchemaHash: r.s.reg.SchemaHash(), Group: "ai"}
	hello.SetReadMask(r.s.reg.Mask())
	type dialed struct {
		conn *ipc.ControlConn
		wel  ipc.Welcome
		err  error
	}
	ch := make(chan dialed, 1)
	go func() {
		conn, wel, err := ipc.Dial(r.inst, hello, 10*time.Second)
		ch <- dialed{conn, wel, err}
	}()
	var d dialed
	r.stepUntil("the welcome", func() bool {
		select {
		case d = <-ch:
			return true
		default:
			time.Sleep(time.Millisecond) // the engine admits on its control goroutine
			return false
		}
	})
	require.NoError(t, d.err)
	defer d.conn.Close()
	for _, f := range d.wel.Files {
		f.Close()
	}
	real, err := json.Marshal(map[string]any{"welcome": d.wel})
	require.NoError(t, err)
	require.Positive(t, d.wel.MaxRuntime, "the engine sends the slow tick's runtime")
	require.Equal(t, jsonKeys(t, layoutWelcome(t)), jsonKeys(t, real), "documented welcome vs the engine's:\n%s", real)
}
