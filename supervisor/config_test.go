package supervisor

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/layout"
	"github.com/stretchr/testify/require"
)

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestDefaultConfig(t *testing.T) {
	c, err := DefaultConfig()
	if err != nil {
		t.Fatal(err)
	}
	if c.Instance != "demo" || !slices.Equal(c.Engine.Command, []string{"engine", "run"}) || !c.Engine.Restart {
		t.Fatalf("engine %+v instance %q", c.Engine, c.Instance)
	}
	var names []string
	for _, m := range c.Modules {
		names = append(names, m.Name)
	}
	if !slices.Equal(names, []string{"telemetry", "ai-1", "ai-2", "ai-3", "alert", "analysis"}) {
		t.Fatalf("modules %v", names)
	}
	ai := c.Modules[1]
	if ai.Tier != TierSlow || ai.Every != 6 || ai.Group != "ai" || !slices.Equal(ai.Command, []string{"modrunner", "ai"}) {
		t.Fatalf("ai-1 %+v", ai)
	}
	if alert := c.Modules[4]; alert.Every != 0 || alert.Tier != TierSlow {
		t.Fatalf("alert %+v: its own period (it runs when woken)", alert)
	}
	if py := c.Modules[5]; py.Tier != TierSlow || py.Every != 30 || !slices.Equal(py.Command, []string{"modrunner", "python", "fdp.analysis"}) {
		t.Fatalf("analysis %+v: the Python module, slow every 30", py)
	}
	if c.Restart.InitialBackoff.D() != 50*time.Millisecond || c.Restart.MaxBackoff.D() != 5*time.Second ||
		c.Restart.Multiplier != 2 || c.Restart.ResetAfter.D() != 10*time.Second ||
		c.Breaker.MaxFailures != 5 || c.Breaker.Window.D() != 30*time.Second ||
		c.Hang.HeartbeatTimeout.D() != 2*time.Second || c.Hang.EngineTimeout.D() != 2*time.Second || c.Hang.AttachTimeout.D() != 10*time.Second ||
		c.Hang.EngineStartTimeout.D() != 10*time.Second || c.Shutdown.Grace.D() != 2*time.Second {
		t.Fatalf("policy %+v %+v %+v %+v", c.Restart, c.Breaker, c.Hang, c.Shutdown)
	}
	if string(DefaultYAML()) != string(defaultYAML) {
		t.Fatal("DefaultYAML differs from the embedded file")
	}
}

func TestLoadConfigFiles(t *testing.T) {
	c, err := LoadConfig(filepath.Join("testdata", "valid.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	tel := c.Modules[0]
	if tel.Tier != "" || tel.Every != 0 || tel.Group != "" {
		t.Fatalf("tier and every omitted must stay empty (the module's own Spec decides): %+v", tel)
	}
	// An omitted tier or every is not exported at all (not even empty): a
	// module tells "the config said nothing" from a value by its absence.
	env := childEnv([]string{"FDP_TIER=slow", "HOME=/h"}, nil, map[string]string{"FDP_TIER": tel.Tier, "FDP_EVERY": everyEnv(tel.Every)})
	if slices.ContainsFunc(env, func(kv string) bool { return strings.HasPrefix(kv, "FDP_TIER") || strings.HasPrefix(kv, "FDP_EVERY") }) {
		t.Fatalf("omitted tier/every exported or inherited: %q", env)
	}
	if everyEnv(0) != "" || everyEnv(6) != "6" {
		t.Fatalf("$FDP_EVERY of every 0 and 6: %q %q", everyEnv(0), everyEnv(6))
	}
	if c.Engine.Env["FDP_LOG"] != "debug" || !c.Engine.Restart || len(c.Engine.Command) != 4 {
		t.Fatalf("engine %+v", c.Engine)
	}
	if c.LogFormat != "json" {
		t.Fatalf("log_format %q", c.LogFormat)
	}
	if c.Restart.InitialBackoff.D() != 10*time.Millisecond || c.Restart.MaxBackoff.D() != 5*time.Second ||
		c.Breaker.MaxFailures != 2 || c.Breaker.Window.D() != 30*time.Second || c.Hang.HeartbeatTimeout != 0 {
		t.Fatalf("policy %+v %+v %+v", c.Restart, c.Breaker, c.Hang)
	}
	_, err = LoadConfig(filepath.Join("testdata", "bad_tier.yaml"))
	if err == nil || !strings.Contains(err.Error(), `unknown tier "medium"`) || !strings.Contains(err.Error(), "bad_tier.yaml") {
		t.Fatalf("bad tier: %v", err)
	}
	if _, err := LoadConfig(filepath.Join("testdata", "missing.yaml")); err == nil {
		t.Fatal("missing file accepted")
	}
}

func TestParseConfigErrors(t *testing.T) {
	const eng = "instance: x\nengine: {command: [engine]}\n"
	for _, tc := range []struct{ name, yaml, want string }{
		{"empty", "", "empty document"},
		{"unknown field", eng + "bogus: 1\n", `bogus (line 3): unknown key "bogus" (known: instance, engine, modules, restart`},
		{"typo", eng + "modules:\n  - {name: a, command: [x]}\n  - {name: b, command: [x]}\n  - {name: c, command: [x], evrey: 3}\n", `modules[2].evrey (line 6): unknown key "evrey"; did you mean "every"?`},
		{"typo nested", eng + "hang: {heartbeat_timout: 1s}\n", `hang.heartbeat_timout (line 3): unknown key "heartbeat_timout"; did you mean "heartbeat_timeout"?`},
		{"typo top", "instanse: x\n", `instanse (line 1): unknown key "instanse"; did you mean "instance"?`},
		{"wrong type int", eng + "modules: [{name: m, command: [x], every: three}]\n", `modules[0].every (line 3): want a whole number, got "three"`},
		{"wrong type float int", eng + "modules: [{name: m, command: [x], every: 2.5}]\n", `modules[0].every (line 3): want a whole number, got "2.5"`},
		{"wrong type bool", eng + "engine: {restart: maybe}\n", `engine.restart (line 3): want true or false, got "maybe"`},
		{"wrong type list", eng + "modules: [{name: m, command: x}]\n", `modules[0].command (line 3): want a list of strings, got "x"`},
		{"wrong type mapping", eng + "modules: {name: m}\n", `modules (line 3): want a list of mappings, got a mapping`},
		{"wrong type env", eng + "modules: [{name: m, command: [x], env: [A]}]\n", `modules[0].env (line 3): want a mapping of names to strings, got a list`},
		{"wrong type string", eng + "modules: [{name: m, command: [x], tier: {a: 1}}]\n", `modules[0].tier (line 3): want a string, got a mapping`},
		{"bad instance", "instance: a.b\nengine: {command: [e]}\n", `instance "a.b"`},
		{"no instance", "engine: {command: [e]}\n", `instance ""`},
		{"engine empty command", "instance: x\nengine: {command: []}\n", "engine.command: empty command"},
		{"module empty command", eng + "modules: [{name: m}]\n", `module "m": command: empty command`},
		{"module blank argv0", eng + "modules: [{name: m, command: [\"\"]}]\n", "empty command"},
		{"unknown tier", eng + "modules: [{name: m, command: [x], tier: turbo}]\n", `unknown tier "turbo"`},
		{"duplicate", eng + "modules: [{name: m, command: [x]}, {name: m, command: [y]}]\n", `duplicate module name "m"`},
		{"reserved", eng + "modules: [{name: engine, command: [x]}]\n", "reserved"},
		{"bad name", eng + "modules: [{name: \"a b\", command: [x]}]\n", `name "a b"`},
		{"no name", eng + "modules: [{command: [x]}]\n", `modules[0]: name ""`},
		{"every", eng + "modules: [{name: m, command: [x], every: -2}]\n", "modules[0].every -2: want 1..86400000"},
		{"every too large", eng + "modules: [{name: a, command: [x]}, {name: m, command: [x], every: 86400001}]\n", "modules[1].every 86400001: want 1..86400000 (layout.MaxEvery; or 0: the module's own)"},
		{"name too long", eng + "modules: [{name: abcdefghijabcdefghijabcdefghij12, command: [x]}]\n", `want 1..31 characters of [A-Za-z0-9_.-]`},
		{"bad group", eng + "modules: [{name: m, command: [x], group: \"a/b\"}]\n", `group "a/b"`},
		{"bad duration", eng + "restart: {initial_backoff: fast}\n", `restart.initial_backoff (line 3): want a duration such as 50ms or 2s, got "fast"`},
		{"number duration", eng + "restart: {initial_backoff: 50}\n", `restart.initial_backoff (line 3): want a duration such as 50ms or 2s, got "50"`},
		{"list duration", eng + "breaker: {window: [1]}\n", "breaker.window (line 3): want a duration such as 50ms or 2s, got a list"},
		{"zero backoff", eng + "restart: {initial_backoff: 0s}\n", "restart.initial_backoff 0s"},
		{"max < initial", eng + "restart: {initial_backoff: 1s, max_backoff: 10ms}\n", "restart.max_backoff 10ms"},
		{"multiplier", eng + "restart: {multiplier: 0.5}\n", "restart.multiplier 0.5"},
		{"reset", eng + "restart: {reset_after: -1s}\n", "restart.reset_after"},
		{"max failures", eng + "breaker: {max_failures: 0}\n", "breaker.max_failures 0"},
		{"window", eng + "breaker: {window: 0s}\n", "breaker.window"},
		{"hang", eng + "hang: {heartbeat_timeout: -1s}\n", "hang.heartbeat_timeout"},
		{"attach", eng + "hang: {attach_timeout: -1s}\n", "hang.attach_timeout"},
		{"engine hang", eng + "hang: {engine_timeout: -1s}\n", "hang.engine_timeout"},
		{"engine start", eng + "hang: {engine_timeout: 2s, engine_start_timeout: 1s}\n", "hang.engine_start_timeout 1s"},
		{"grace", eng + "shutdown: {grace: 0s}\n", "shutdown.grace"},
		{"log format", eng + "log_format: xml\n", `log_format: "xml" is not a log format: want "text" or "json"`},
		{"not yaml", "instance: [\n", "fdp/supervisor: config:"},
		{"metrics no port", eng + "metrics: localhost\n", `metrics: "localhost": want host:port`},
		{"metrics bad port", eng + "metrics: \":99999\"\n", `port "99999"`},
		{"metrics relative unix", eng + "metrics: unix:m.sock\n", "absolute path"},
		{"record typo", eng + "record: {file: r.fdpr, keyframe_evry: 5}\n", `record.keyframe_evry (line 3): unknown key "keyframe_evry"; did you mean "keyframe_every"?`},
		{"record keyframe type", eng + "record: {file: r.fdpr, keyframe_every: often}\n", `record.keyframe_every (line 3): want a whole number, got "often"`},
		{"record keyframe negative", eng + "record: {file: r.fdpr, keyframe_every: -1}\n", "record.keyframe_every -1: want >= 1"},
		{"record no file", eng + "record: {keyframe_every: 10}\n", "record.keyframe_every 10 without record.file"},
		{"record not mapping", eng + "record: r.fdpr\n", "record (line 3): want a mapping of keys (file, keyframe_every, overwrite, compression)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseConfig([]byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "fdp/supervisor: ") {
				t.Fatalf("ParseConfig error %v (config %+v), want it to contain %q", err, c, tc.want)
			}
			// One line, in the configuration's words: never a Go type.
			for _, goWord := range []string{"\n", "supervisor.", "unmarshal", "!!", "[]string", "map[", "int64"} {
				if strings.Contains(err.Error(), goWord) {
					t.Fatalf("ParseConfig error %q contains %q", err, goWord)
				}
			}
		})
	}
}

// TestRecordConfigToEngine: a config's record section becomes the engine
// command's --record (an absolute path) and --record-keyframe flags; without
// it the engine command has neither.
func TestRecordConfigToEngine(t *testing.T) {
	const eng = "instance: x\nengine: {command: [engine, run]}\n"
	c, err := ParseConfig([]byte(eng + "record: {file: rec/r.fdpr, keyframe_every: 30}\n"))
	require.NoError(t, err)
	require.Equal(t, RecordConfig{File: "rec/r.fdpr", KeyframeEvery: 30}, c.Record)
	s, err := New(c, Options{})
	require.NoError(t, err)
	abs, err := filepath.Abs("rec/r.fdpr")
	require.NoError(t, err)
	require.Equal(t, []string{"engine", "run", "--record", abs, "--record-overwrite", "--record-keyframe", "30"}, s.children[0].argv)
	// An earlier run's recording is refused once, by up, not by each engine
	// child (which would be restarted until its breaker trips); overwrite
	// lets it be replaced. An empty file holds nothing to keep.
	prev := filepath.Join(t.TempDir(), "prev.fdpr")
	require.NoError(t, os.WriteFile(prev, []byte("FDPREC.."), 0o600))
	c, err = ParseConfig([]byte(eng + "record: {file: " + prev + "}\n"))
	require.NoError(t, err)
	_, err = New(c, Options{})
	require.ErrorContains(t, err, "record.file "+prev+" exists (8 bytes, an earlier run's recording?): move it, or set record: {overwrite: true}")
	require.NotContains(t, err.Error(), "\n")
	c.Record.Overwrite = true
	_, err = New(c, Options{})
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(prev, nil, 0o600))
	c.Record.Overwrite = false
	_, err = New(c, Options{})
	require.NoError(t, err)
	c, err = ParseConfig([]byte(eng + "record: {file: /r.fdpr, overwrite: true, compression: none}\n"))
	require.NoError(t, err)
	s, err = New(c, Options{})
	require.NoError(t, err)
	require.Equal(t, []string{"engine", "run", "--record", "/r.fdpr", "--record-overwrite", "--record-compression", "none"}, s.children[0].argv)
	for in, want := range map[string]string{
		"record: {file: r.fdpr, compression: lz4}\n": `record.compression "lz4": want zstd or none`,
		"record: {overwrite: true}\n":                "without record.file",
		"record: {file: r.fdpr, overwrite: yes!}\n":  "record.overwrite (line 3): want",
	} {
		_, err := ParseConfig([]byte(eng + in))
		require.ErrorContains(t, err, want, in)
	}
	c, err = ParseConfig([]byte(eng))
	require.NoError(t, err)
	s, err = New(c, Options{})
	require.NoError(t, err)
	require.Equal(t, []string{"engine", "run"}, s.children[0].argv)
}

// TestParseConfigWith: the program's defaults fill the instance and the
// engine's command that a config leaves out, never one it writes out; an
// empty command written out stays an error.
func TestParseConfigWith(t *testing.T) {
	d := Defaults{Instance: "mine", EngineCommand: []string{"/opt/mine/bin/mine", "run"}}
	for _, tc := range []struct {
		yaml, instance string
		engine         []string
	}{
		{"modules: []\n", "mine", d.EngineCommand},
		{"instance: other\nengine: {restart: false}\n", "other", d.EngineCommand},
		{"engine: {command: [x, run, --rate, \"30\"]}\n", "mine", []string{"x", "run", "--rate", "30"}},
		{"engine: {command: [y]}\n", "mine", []string{"y"}},
	} {
		c, err := ParseConfigWith([]byte(tc.yaml), d)
		if err != nil {
			t.Fatalf("%q: %v", tc.yaml, err)
		}
		if c.Instance != tc.instance || !slices.Equal(c.Engine.Command, tc.engine) {
			t.Fatalf("%q: instance %q engine %v, want %q %v", tc.yaml, c.Instance, c.Engine.Command, tc.instance, tc.engine)
		}
	}
	if _, err := ParseConfigWith([]byte("engine: {command: []}\n"), d); err == nil || !strings.Contains(err.Error(), "engine.command: empty command") {
		t.Fatalf("an empty command written out: %v", err)
	}
	// The defaults are copied: a parsed config never aliases them.
	c, err := ParseConfigWith([]byte("modules: []\n"), d)
	if err != nil {
		t.Fatal(err)
	}
	c.Engine.Command[0] = "changed"
	if d.EngineCommand[0] != "/opt/mine/bin/mine" {
		t.Fatal("the config aliases Defaults.EngineCommand")
	}
	if _, err := ParseConfig([]byte("modules: []\n")); err == nil {
		t.Fatal("ParseConfig accepted a config without instance and engine")
	}
}

func TestNewRejectsInvalidConfig(t *testing.T) {
	if _, err := New(nil, Options{}); err == nil {
		t.Fatal("nil config accepted")
	}
	c := defaults()
	c.Instance = "x"
	if _, err := New(&c, Options{}); err == nil || !strings.Contains(err.Error(), "engine.command") {
		t.Fatalf("New: %v", err)
	}
}

func TestResolveCommand(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "tool"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sh"), []byte("not executable"), 0o644); err != nil {
		t.Fatal(err)
	}
	if p, err := resolveIn(dir, "tool"); err != nil || p != filepath.Join(dir, "tool") {
		t.Fatalf("sibling: %q %v", p, err)
	}
	// A non-executable sibling is skipped: PATH wins.
	if p, err := resolveIn(dir, "sh"); err != nil || p == filepath.Join(dir, "sh") || filepath.Base(p) != "sh" {
		t.Fatalf("PATH fallback: %q %v", p, err)
	}
	if _, err := resolveIn(dir, "./rel/x"); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("path with a slash: %v", err)
	}
	if _, err := resolveIn(dir, "fdp-no-such-binary-xyz"); err == nil || !strings.Contains(err.Error(), "not found next to") {
		t.Fatalf("missing: %v", err)
	}
	if _, err := resolveIn(dir, ""); err == nil {
		t.Fatal("empty name accepted")
	}
}

func TestChildEnv(t *testing.T) {
	base := []string{"PATH=/bin", "FDP_MODULE=inherited", "FDP_TIER=slow", "KEEP=1", "OVER=old"}
	got := childEnv(base, map[string]string{"OVER": "new", "FDP_GROUP": "mine"},
		map[string]string{"FDP_MODULE": "m", "FDP_TIER": "fast", "FDP_GROUP": "g"})
	want := []string{"PATH=/bin", "KEEP=1", "FDP_MODULE=m", "FDP_TIER=fast", "FDP_GROUP=mine", "OVER=new"}
	if !slices.Equal(got, want) {
		t.Fatalf("env %v, want %v", got, want)
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add(defaultYAML)
	f.Add([]byte("instance: x\nengine: {command: [e]}\nmodules: [{name: m, command: [x], tier: slow}]\n"))
	f.Add([]byte("restart: {initial_backoff: 1h}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 4096 {
			return // configs are small; keeps the YAML parser's worst cases out
		}
		c, err := ParseConfig(b)
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("parsed config fails validation: %v", err)
		}
	})
}

// TestMetricsAddr: the metrics addresses a config and `engine run
// --metrics` accept, and what net.Listen gets for them.
func TestMetricsAddr(t *testing.T) {
	c, err := ParseConfig([]byte("instance: x\nengine: {command: [engine]}\nmetrics: \"127.0.0.1:9464\"\n"))
	if err != nil || c.Metrics != "127.0.0.1:9464" {
		t.Fatalf("config %+v: %v", c, err)
	}
	for addr, want := range map[string][2]string{
		"127.0.0.1:9464":       {"tcp", "127.0.0.1:9464"},
		":0":                   {"tcp", ":0"},
		"[::1]:80":             {"tcp", "[::1]:80"},
		"localhost:9464":       {"tcp", "localhost:9464"},
		"unix:/run/fdp/m.sock": {"unix", "/run/fdp/m.sock"},
	} {
		n, a, err := ParseListenAddr(addr)
		if err != nil || n != want[0] || a != want[1] {
			t.Errorf("ParseListenAddr(%q) = %q %q %v, want %v", addr, n, a, err, want)
		}
	}
	for _, addr := range []string{"", "9464", "host:", "host:x", ":-1", ":65536", "unix:", "unix:rel"} {
		if _, _, err := ParseListenAddr(addr); err == nil {
			t.Errorf("ParseListenAddr(%q) accepted", addr)
		}
	}
}

// TestLatencyHistogram: each latency lands in the first bucket whose bound
// is at or above it (the last bucket: beyond every bound), against a count
// made from the samples; Count and Sum are theirs.
func TestLatencyHistogram(t *testing.T) {
	var h LatencyHistogram
	var sum time.Duration
	samples := []time.Duration{0, 1, 100 * time.Microsecond, 100*time.Microsecond + 1, 3 * time.Millisecond,
		10 * time.Second, 10*time.Second + 1, time.Hour}
	for i := 0; i < 200; i++ {
		samples = append(samples, time.Duration(i*i)*37*time.Microsecond)
	}
	for _, d := range samples {
		h.Record(d)
		sum += d
	}
	if h.Count != uint64(len(samples)) || h.Sum != sum {
		t.Fatalf("count %d sum %v, want %d %v", h.Count, h.Sum, len(samples), sum)
	}
	var acc uint64
	for i, b := range DetectBounds {
		acc += h.Buckets[i]
		var want uint64
		for _, d := range samples {
			if d <= b {
				want++
			}
		}
		if acc != want {
			t.Fatalf("at or below %v: %d, want %d", b, acc, want)
		}
	}
	if acc+h.Buckets[len(DetectBounds)] != h.Count {
		t.Fatal("buckets do not add up to the count")
	}
}

// TestParseConfigForceInstance: `engine up --instance X` completes a
// configuration without `instance:` and replaces one that has it, before
// validation (an invalid instance in the file is then no error).
func TestParseConfigForceInstance(t *testing.T) {
	c, err := ParseConfigWith([]byte("engine: {command: [e]}\n"), Defaults{ForceInstance: "X"})
	if err != nil || c.Instance != "X" {
		t.Fatalf("no instance in the file: %+v %v", c, err)
	}
	c, err = ParseConfigWith([]byte("instance: a.b\nengine: {command: [e]}\n"), Defaults{Instance: "d", ForceInstance: "Y"})
	if err != nil || c.Instance != "Y" {
		t.Fatalf("forced over the file's: %+v %v", c, err)
	}
	if _, err := ParseConfigWith([]byte("engine: {command: [e]}\n"), Defaults{ForceInstance: "a b"}); err == nil || !strings.Contains(err.Error(), `instance "a b"`) {
		t.Fatalf("an invalid forced instance: %v", err)
	}
}

// TestSuggest: the did-you-mean is the closest known key within a third of
// the key's length (transpositions count 1), nothing beyond.
func TestSuggest(t *testing.T) {
	keys := yamlKeys(reflect.TypeFor[ModuleConfig]())
	for key, want := range map[string]string{"evrey": "every", "nmae": "name", "commnd": "command", "tire": "tier", "grup": "group", "Every": "every", "zzz": "", "environment": ""} {
		if got := suggest(key, keys); got != want {
			t.Errorf("suggest(%q) = %q, want %q", key, got, want)
		}
	}
	if d := editDistance("kitten", "sitting"); d != 3 {
		t.Fatalf("editDistance(kitten, sitting) = %d", d)
	}
}

// TestConfigNamesEngineRule: the config admits the names the engine admits
// (layout.ValidModuleName: dots included, as README's Limits says) and
// refuses what it refuses, so no config is valid whose module the engine
// would refuse, nor the reverse.
func TestConfigNamesEngineRule(t *testing.T) {
	const eng = "instance: x\nengine: {command: [engine]}\n"
	for _, name := range []string{"watcher.1", "a", "A-b_c.d", "abcdefghijabcdefghijabcdefghij1", "a..b", "a b", "a/b", "abcdefghijabcdefghijabcdefghij12", "é"} {
		_, err := ParseConfig([]byte(eng + "modules: [{name: \"" + name + "\", group: \"" + name + "\", command: [x]}]\n"))
		if want := layout.ValidModuleName(name); (err == nil) != want {
			t.Errorf("name %q: config error %v, engine accepts: %v", name, err, want)
		}
	}
}
