package supervisor

import (
	"slices"
	"strings"
	"testing"
)

// TestRemoteConfig: the bridge and mirror blocks parse, are checked (one
// line naming the key), and become the bridge's flags and the mirror
// host's engine command.
func TestRemoteConfig(t *testing.T) {
	c, err := ParseConfigWith([]byte("instance: far\nmirror:\n  nats: tls://nats.example:4222\n  creds: /etc/fdp/m.creds\n  source: demo\n"),
		Defaults{EngineCommand: []string{"engine", "run"}})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"engine", "mirror", "--instance", "far", "--source", "demo", "--nats", "tls://nats.example:4222", "--creds", "/etc/fdp/m.creds"}
	if got := c.MirrorCommand(); !slices.Equal(got, want) {
		t.Fatalf("mirror command %q, want %q", got, want)
	}
	c, err = ParseConfig([]byte("instance: demo\nengine: {command: [engine, run]}\nbridge:\n  nats: nats://127.0.0.1:4222\n  keyframe_every: 30\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.BridgeArgs(), []string{"--instance", "demo", "--nats", "nats://127.0.0.1:4222", "--keyframe-every", "30"}; !slices.Equal(got, want) {
		t.Fatalf("bridge args %q, want %q", got, want)
	}
	for _, tc := range []struct{ yaml, want string }{
		{"bridge:\n  nats: nats://h:1\n  rate: fast\n", "bridge.rate (line 5): want a whole number"},
		{"bridge:\n  natz: nats://h:1\n", `unknown key "natz"`},
		{"bridge:\n  nats: http://h:1\n", "bridge.nats: want nats://host:port or tls://host:port"},
		{"bridge:\n  nats: nats://h:1\nmirror:\n  nats: nats://h:1\n", "both bridge and mirror"},
		{"mirror:\n  nats: nats://h:1\n  creds: a\n  nkey: b\n", "mirror: both creds and nkey"},
		{"mirror:\n  source: demo\n", "mirror: settings without mirror.nats"},
		{"mirror:\n  nats: nats://h:1\n  source: a.b\n", `mirror.source "a.b"`},
	} {
		_, err := ParseConfig([]byte("instance: demo\nengine: {command: [engine, run]}\n" + tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want it to say %q", tc.yaml, err, tc.want)
		}
	}
}
