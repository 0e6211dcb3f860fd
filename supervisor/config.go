package supervisor

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/fdp-engine/fdp/internal/logs"
	"github.com/fdp-engine/fdp/layout"
)

//go:embed default.yaml
var defaultYAML []byte

// DefaultYAML returns the embedded default configuration (the demo instance
// of `engine up`) as YAML text.
func DefaultYAML() []byte { return bytes.Clone(defaultYAML) }

// DefaultConfig parses the embedded default configuration.
func DefaultConfig() (*Config, error) { return ParseConfig(defaultYAML) }

// Tiers accepted in a module's tier field.
const (
	TierFast = "fast"
	TierSlow = "slow"
)

// EngineName is the child name of the engine process (reserved: no module
// may use it).
const EngineName = "engine"

// Duration is a time.Duration written in YAML as a Go duration string
// ("50ms", "2s").
type Duration time.Duration

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: a duration must be a string such as \"50ms\"", n.Line)
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: bad duration %q (want e.g. 50ms, 2s)", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Config is the supervisor configuration of one instance.
type Config struct {
	// Instance names the shared-memory instance (1..31 of [A-Za-z0-9_-]).
	Instance string         `yaml:"instance"`
	Engine   EngineConfig   `yaml:"engine"`
	Modules  []ModuleConfig `yaml:"modules"`
	Restart  RestartConfig  `yaml:"restart"`
	Breaker  BreakerConfig  `yaml:"breaker"`
	Hang     HangConfig     `yaml:"hang"`
	Shutdown ShutdownConfig `yaml:"shutdown"`
	// Metrics is where `engine up` serves Prometheus metrics (/metrics):
	// its own and the engine's (docs/METRICS.md). "host:port" (TCP; port
	// 0: any free port, logged) or "unix:/path" (a unix socket); empty:
	// none.
	Metrics string `yaml:"metrics"`
	// Record turns on the engine's flight recorder: the supervisor passes
	// `--record FILE --record-keyframe N` to the engine command (a program
	// built with package cli; docs/ARCHITECTURE.md "Flight recorder").
	Record RecordConfig `yaml:"record"`
	// LogFormat is the format of the supervisor's own log, where every
	// child's records are re-emitted: "text" (default) or "json". The
	// children always log JSON to the supervisor (logs.EnvVar), whatever
	// this is. `engine up --log-format` and $FDP_LOG_FORMAT override it.
	LogFormat string `yaml:"log_format"`
	// Bridge: an engine host publishes its frames to NATS JetStream for
	// mirrors and plays their modules' commands (supervisor/remote.go);
	// Mirror: this host's engine is a mirror of one (`engine mirror`).
	Bridge BridgeConfig `yaml:"bridge"`
	Mirror MirrorConfig `yaml:"mirror"`
}

// EngineConfig describes the engine process.
type EngineConfig struct {
	// Command is argv; argv[0] is resolved next to the running executable
	// first, then in PATH (a name with a slash is used as is).
	Command []string `yaml:"command"`
	// Env holds extra environment variables.
	Env map[string]string `yaml:"env"`
	// Restart restarts the engine when it dies (default true). When false, the
	// engine's exit ends Run.
	Restart bool `yaml:"restart"`
}

// RecordConfig is the flight recorder of the engine (Config.Record).
type RecordConfig struct {
	// File is the recording's path (relative: to the supervisor's working
	// directory); empty: no recording. An engine that resumes after a dead
	// one keeps the dead one's file as FILE.<frame> (cli, `engine run`).
	File string `yaml:"file"`
	// KeyframeEvery: a keyframe every N recorded frames; 0: the engine's
	// default (host.DefaultKeyframeEvery).
	KeyframeEvery int `yaml:"keyframe_every"`
	// Overwrite lets the engine replace an existing recording at File
	// (`--record-overwrite`); without it an engine started with the file
	// already there refuses to start, so a new `engine up` never destroys
	// the last run's recording. A file that is not a recording is never
	// replaced. (The file a dead engine left is kept as FILE.<frame>
	// before its successor records, whatever this is.)
	Overwrite bool `yaml:"overwrite"`
	// Compression of the frame payloads: "zstd" (default) or "none"
	// (`--record-compression`; docs/LAYOUT.md's stdlib-only decoder reads
	// "none").
	Compression string `yaml:"compression"`
}

// ModuleConfig describes one module process.
type ModuleConfig struct {
	Name    string            `yaml:"name"`
	Command []string          `yaml:"command"`
	Env     map[string]string `yaml:"env"`
	// Tier is "fast" or "slow"; empty (omitted): not passed, the module's
	// own Spec.Tier (fast when the module names none). Like Every, an
	// omitted tier must not override what the module declares.
	Tier string `yaml:"tier"`
	// Every is the tick frequency divider in frames, passed to the module as
	// $FDP_EVERY; 0 (or omitted): not passed, the module's own Spec.Every
	// (for a module with a Spec.WakeOn, 0 there is "only when woken").
	Every int `yaml:"every"`
	// Group names a convoy group of slow modules (optional).
	Group string `yaml:"group"`
	// User runs the module under another uid (optional; `engine up` must
	// run as root): "user" or "user:group", each a name or a numeric id.
	// Without a group the user's primary group is used (for a numeric uid
	// that /etc/passwd does not know: the gid of the same number).
	// Supplementary groups are cleared. Such a module cannot open the
	// segments or the socket by path (they are 0600, owned by the engine's
	// uid); the supervisor passes its uid to the engine command as
	// `--allow-uid N`, so that the control socket admits it, and it works
	// through the descriptors the engine hands it. (The unix group is part
	// of this key because `group` already names the convoy group.)
	User string `yaml:"user"`
}

// Credential is the uid and gid a module runs under (ModuleConfig.User).
type Credential struct {
	UID, GID uint32
}

// geteuid is os.Geteuid; tests replace it.
var geteuid = os.Geteuid

// ParseUser resolves a ModuleConfig.User value: "user" or "user:group",
// names (looked up in the user and group databases) or numeric ids.
func ParseUser(spec string) (Credential, error) {
	name, grp, hasGroup := strings.Cut(spec, ":")
	if name == "" || (hasGroup && grp == "") {
		return Credential{}, fmt.Errorf("user %q: want user or user:group (names or numeric ids)", spec)
	}
	var c Credential
	primary := ""
	if id, err := strconv.ParseUint(name, 10, 32); err == nil {
		c.UID, c.GID = uint32(id), uint32(id)
		if u, err := user.LookupId(name); err == nil {
			primary = u.Gid
		}
	} else {
		u, err := user.Lookup(name)
		if err != nil {
			return Credential{}, fmt.Errorf("user %q: %w", name, err)
		}
		id, err := strconv.ParseUint(u.Uid, 10, 32)
		if err != nil {
			return Credential{}, fmt.Errorf("user %q: uid %q: %w", name, u.Uid, err)
		}
		c.UID, primary = uint32(id), u.Gid
	}
	if !hasGroup {
		if primary != "" {
			id, err := strconv.ParseUint(primary, 10, 32)
			if err != nil {
				return Credential{}, fmt.Errorf("user %q: primary gid %q: %w", name, primary, err)
			}
			c.GID = uint32(id)
		}
		return c, nil
	}
	if id, err := strconv.ParseUint(grp, 10, 32); err == nil {
		c.GID = uint32(id)
		return c, nil
	}
	g, err := user.LookupGroup(grp)
	if err != nil {
		return Credential{}, fmt.Errorf("user %q: group %q: %w", spec, grp, err)
	}
	id, err := strconv.ParseUint(g.Gid, 10, 32)
	if err != nil {
		return Credential{}, fmt.Errorf("user %q: gid %q: %w", spec, g.Gid, err)
	}
	c.GID = uint32(id)
	return c, nil
}

// AllowUIDs returns the distinct uids of the modules that run under another
// user (ModuleConfig.User) than the supervisor's effective uid, in config
// order: the engine is started with `--allow-uid N` for each.
func (c *Config) AllowUIDs() ([]uint32, error) {
	var out []uint32
	for _, m := range c.Modules {
		if m.User == "" {
			continue
		}
		cred, err := ParseUser(m.User)
		if err != nil {
			return nil, fmt.Errorf("fdp/supervisor: config: module %q: %w", m.Name, err)
		}
		if int64(cred.UID) != int64(geteuid()) && !slices.Contains(out, cred.UID) {
			out = append(out, cred.UID)
		}
	}
	return out, nil
}

// RestartConfig is the exponential backoff between restarts: the first delay
// is InitialBackoff, each further consecutive death multiplies it by
// Multiplier up to MaxBackoff, and a process that ran for ResetAfter before
// dying starts again from InitialBackoff.
type RestartConfig struct {
	InitialBackoff Duration `yaml:"initial_backoff"`
	MaxBackoff     Duration `yaml:"max_backoff"`
	Multiplier     float64  `yaml:"multiplier"`
	ResetAfter     Duration `yaml:"reset_after"`
}

// BreakerConfig is the per-process circuit breaker: more than MaxFailures
// deaths within Window and the process is not restarted again.
type BreakerConfig struct {
	MaxFailures int      `yaml:"max_failures"`
	Window      Duration `yaml:"window"`
}

// HangConfig is hang detection (see Hooks.Heartbeat). A hung child is
// SIGKILLed, counted as a hang and restarted like any dead child.
type HangConfig struct {
	// HeartbeatTimeout: a running module whose last heartbeat (or start, if
	// later) is older is hung; so is a module that has not attached to an
	// engine that has been publishing for longer than this, e.g. one that
	// stayed stopped across an engine restart (a module process younger
	// than AttachTimeout is given that long). 0 disables module hang
	// detection.
	HeartbeatTimeout Duration `yaml:"heartbeat_timeout"`
	// AttachTimeout: how long a newly started module process may take to
	// attach to a publishing engine (interpreters and large modules start
	// slowly); never less than HeartbeatTimeout.
	AttachTimeout Duration `yaml:"attach_timeout"`
	// EngineTimeout: a running engine whose last publish (its heartbeat) is
	// older is hung. 0 disables engine hang detection.
	EngineTimeout Duration `yaml:"engine_timeout"`
	// EngineStartTimeout: a started engine that has not published within
	// this is hung (recovery and start-up of a large world take a while).
	EngineStartTimeout Duration `yaml:"engine_start_timeout"`
}

// ShutdownConfig is graceful shutdown: SIGTERM, then SIGKILL after Grace.
type ShutdownConfig struct {
	Grace Duration `yaml:"grace"`
}

// defaults returns a Config holding every default value; YAML fields
// override it.
func defaults() Config {
	return Config{
		Engine:   EngineConfig{Restart: true},
		Restart:  RestartConfig{InitialBackoff: Duration(50 * time.Millisecond), MaxBackoff: Duration(5 * time.Second), Multiplier: 2, ResetAfter: Duration(10 * time.Second)},
		Breaker:  BreakerConfig{MaxFailures: 5, Window: Duration(30 * time.Second)},
		Hang:     HangConfig{HeartbeatTimeout: Duration(2 * time.Second), AttachTimeout: Duration(10 * time.Second), EngineTimeout: Duration(2 * time.Second), EngineStartTimeout: Duration(10 * time.Second)},
		Shutdown: ShutdownConfig{Grace: Duration(2 * time.Second)},
	}
}

// Defaults are values a configuration may leave out, given by the program
// that runs the supervisor.
type Defaults struct {
	// Instance is the instance of a configuration without one.
	Instance string
	// ForceInstance, when set, replaces the configuration's instance
	// (`engine up --instance X`) before the configuration is validated:
	// a configuration without `instance:` is complete with it.
	ForceInstance string
	// EngineCommand is the engine's command in a configuration whose
	// engine names none: a program built with package cli passes itself
	// (os.Executable) and "run", so that its own world is the engine.
	EngineCommand []string
}

// LoadConfig reads and validates a YAML configuration file.
func LoadConfig(path string) (*Config, error) { return LoadConfigWith(path, Defaults{}) }

// LoadConfigWith is LoadConfig with d for what the file leaves out.
func LoadConfigWith(path string, d Defaults) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("fdp/supervisor: %w", err)
	}
	c, err := ParseConfigWith(b, d)
	if err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, path)
	}
	return c, nil
}

// ParseConfig parses and validates a YAML configuration. Unknown fields are
// errors; absent fields take their defaults (see default.yaml); the instance
// and the engine's command are required.
func ParseConfig(b []byte) (*Config, error) { return ParseConfigWith(b, Defaults{}) }

// ParseConfigWith is ParseConfig with d for the instance and the engine's
// command when the YAML leaves them out (an empty command written out,
// `command: []`, is still an error).
func ParseConfigWith(b []byte, d Defaults) (*Config, error) {
	c := defaults()
	c.Instance = d.Instance
	c.Engine.Command = slices.Clone(d.EngineCommand)
	// The node tree first: unknown keys and wrong types are reported with
	// their key path and in the configuration's words (configcheck.go)
	// before the decode could say it in Go's.
	var root yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(b)).Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("fdp/supervisor: config: empty document")
		}
		return nil, fmt.Errorf("fdp/supervisor: config: %w", err)
	}
	if err := checkNode(&root, reflect.TypeFor[Config](), ""); err != nil {
		return nil, fmt.Errorf("fdp/supervisor: config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("fdp/supervisor: config: %w", err)
	}
	if d.ForceInstance != "" {
		c.Instance = d.ForceInstance
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

func validCommand(cmd []string) error {
	if len(cmd) == 0 || cmd[0] == "" {
		return errors.New("empty command")
	}
	return nil
}

// Validate checks c and returns the first problem found.
func (c *Config) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("fdp/supervisor: config: "+format, a...)
	}
	if !layout.ValidInstanceName(c.Instance) {
		return bad("instance %q: want 1..%d characters of [A-Za-z0-9_-]", c.Instance, layout.InstanceNameLen-1)
	}
	if err := validCommand(c.Engine.Command); err != nil {
		return bad("engine.command: %v", err)
	}
	if c.LogFormat != "" {
		if _, err := logs.ParseFormat(c.LogFormat); err != nil {
			return bad("log_format: %v", err)
		}
	}
	if len(c.Modules) > layout.MaxModules {
		// The engine would refuse the modules beyond its table (exit
		// layout.ExitRefused): said once, here, before anything starts.
		return bad("%d modules: an engine admits at most %d (layout.MaxModules)", len(c.Modules), layout.MaxModules)
	}
	seen := map[string]bool{}
	for i, m := range c.Modules {
		where := fmt.Sprintf("modules[%d]", i)
		if m.Name != "" {
			where = fmt.Sprintf("module %q", m.Name)
		}
		switch {
		case !layout.ValidModuleName(m.Name):
			// The engine's own rule (ipc's hello check): a config
			// may name what a module may call itself.
			return bad("%s: name %q: want 1..%d characters of [A-Za-z0-9_.-]", where, m.Name, layout.ModuleNameLen-1)
		case m.Name == EngineName:
			return bad("%s: the name %q is reserved", where, EngineName)
		case seen[m.Name]:
			return bad("duplicate module name %q", m.Name)
		}
		seen[m.Name] = true
		if err := validCommand(m.Command); err != nil {
			return bad("%s: command: %v", where, err)
		}
		if m.Tier != "" && m.Tier != TierFast && m.Tier != TierSlow {
			return bad("%s: unknown tier %q (want %q or %q)", where, m.Tier, TierFast, TierSlow)
		}
		if m.Every < 0 || m.Every > layout.MaxEvery {
			return bad("modules[%d].every %d: want 1..%d (layout.MaxEvery; or 0: the module's own)", i, m.Every, layout.MaxEvery)
		}
		if m.Group != "" && !layout.ValidModuleName(m.Group) {
			return bad("%s: group %q: want 1..%d characters of [A-Za-z0-9_.-]", where, m.Group, layout.ModuleNameLen-1)
		}
		if m.User != "" {
			if geteuid() != 0 {
				return bad("%s: user %q: running a module as another user needs root (the supervisor runs as uid %d)", where, m.User, geteuid())
			}
			if _, err := ParseUser(m.User); err != nil {
				return bad("%s: %v", where, err)
			}
		}
	}
	r := c.Restart
	switch {
	case r.InitialBackoff <= 0:
		return bad("restart.initial_backoff %v: want > 0", r.InitialBackoff.D())
	case r.MaxBackoff < r.InitialBackoff:
		return bad("restart.max_backoff %v: want >= initial_backoff %v", r.MaxBackoff.D(), r.InitialBackoff.D())
	case !(r.Multiplier >= 1 && r.Multiplier <= 1000):
		return bad("restart.multiplier %v: want 1..1000", r.Multiplier)
	case r.ResetAfter <= 0:
		return bad("restart.reset_after %v: want > 0", r.ResetAfter.D())
	case c.Breaker.MaxFailures < 1:
		return bad("breaker.max_failures %d: want >= 1", c.Breaker.MaxFailures)
	case c.Breaker.Window <= 0:
		return bad("breaker.window %v: want > 0", c.Breaker.Window.D())
	case c.Hang.HeartbeatTimeout < 0:
		return bad("hang.heartbeat_timeout %v: want >= 0 (0 disables)", c.Hang.HeartbeatTimeout.D())
	case c.Hang.AttachTimeout < 0:
		return bad("hang.attach_timeout %v: want >= 0", c.Hang.AttachTimeout.D())
	case c.Hang.EngineTimeout < 0:
		return bad("hang.engine_timeout %v: want >= 0 (0 disables)", c.Hang.EngineTimeout.D())
	case c.Hang.EngineTimeout > 0 && c.Hang.EngineStartTimeout < c.Hang.EngineTimeout:
		return bad("hang.engine_start_timeout %v: want >= engine_timeout %v", c.Hang.EngineStartTimeout.D(), c.Hang.EngineTimeout.D())
	case c.Shutdown.Grace <= 0:
		return bad("shutdown.grace %v: want > 0", c.Shutdown.Grace.D())
	}
	if c.Record.KeyframeEvery < 0 {
		return bad("record.keyframe_every %d: want >= 1 (or 0: the engine's default)", c.Record.KeyframeEvery)
	}
	if c.Record.File == "" && c.Record.KeyframeEvery != 0 {
		return bad("record.keyframe_every %d without record.file: nothing would be recorded", c.Record.KeyframeEvery)
	}
	if cm := c.Record.Compression; cm != "" && cm != "zstd" && cm != "none" {
		return bad("record.compression %q: want zstd or none", cm)
	}
	if c.Record.File == "" && (c.Record.Overwrite || c.Record.Compression != "") {
		return bad("record.overwrite/compression without record.file: nothing would be recorded")
	}
	if c.Metrics != "" {
		if _, _, err := ParseListenAddr(c.Metrics); err != nil {
			return bad("metrics: %v", err)
		}
	}
	if err := c.validateRemote(); err != nil {
		return bad("%v", err)
	}
	return nil
}

// ParseListenAddr splits a listen address of the metrics endpoints
// (Config.Metrics, `engine run --metrics`) into a network and an address
// for net.Listen: "host:port" (tcp; an empty host listens on every
// address, port 0 on any free port) or "unix:/path" (unix, an absolute
// path).
func ParseListenAddr(addr string) (network, address string, err error) {
	if p, ok := strings.CutPrefix(addr, "unix:"); ok {
		if !filepath.IsAbs(p) {
			return "", "", fmt.Errorf("%q: a unix socket needs an absolute path (unix:/run/fdp/metrics.sock)", addr)
		}
		return "unix", p, nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", "", fmt.Errorf("%q: want host:port (127.0.0.1:9464, :0) or unix:/path", addr)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || (n == 0 && port != "0") {
		return "", "", fmt.Errorf("%q: port %q: want 0..65535", addr, port)
	}
	if host != "" && net.ParseIP(host) == nil && strings.ContainsAny(host, " /") {
		return "", "", fmt.Errorf("%q: bad host %q", addr, host)
	}
	return "tcp", addr, nil
}

// ResolveCommand returns the path of program name: a name containing a slash
// is returned as is; otherwise the directory of the running executable is
// tried first (so `engine up` finds its sibling binaries), then PATH.
func ResolveCommand(name string) (string, error) {
	dir := ""
	if exe, err := os.Executable(); err == nil {
		dir = filepath.Dir(exe)
	}
	p, err := resolveIn(dir, name)
	if err != nil {
		return "", fmt.Errorf("fdp/supervisor: %w", err)
	}
	return p, nil
}

// CheckCommands resolves the engine's and every module's argv[0] as Run
// will (next to exeDir, then PATH) and returns the first that cannot be
// run, with its key path (modules[1].command): a missing program is
// refused before anything starts, not fork-exec'd until its breaker trips.
func (c *Config) CheckCommands(exeDir string) error {
	if len(c.Engine.Command) > 0 {
		if _, err := resolveIn(exeDir, c.Engine.Command[0]); err != nil {
			return fmt.Errorf("fdp/supervisor: config: engine.command: %w", err)
		}
	}
	for i, m := range c.Modules {
		if len(m.Command) == 0 {
			continue // Validate's refusal
		}
		if _, err := resolveIn(exeDir, m.Command[0]); err != nil {
			return fmt.Errorf("fdp/supervisor: config: modules[%d].command: %w", i, err)
		}
	}
	return nil
}

func resolveIn(exeDir, name string) (string, error) {
	if name == "" {
		return "", errors.New("empty command")
	}
	if filepath.Base(name) != name {
		// A path is used as is, but only if it can be executed: a
		// missing program is refused before anything starts, not
		// fork-exec'd until the breaker trips.
		st, err := os.Stat(name)
		switch {
		case err != nil:
			return "", fmt.Errorf("%q: %w", name, errors.Unwrap(err))
		case !st.Mode().IsRegular():
			return "", fmt.Errorf("%q: not a regular file", name)
		case st.Mode().Perm()&0o111 == 0:
			return "", fmt.Errorf("%q: not executable (mode %v)", name, st.Mode().Perm())
		}
		return name, nil
	}
	if exeDir != "" {
		p := filepath.Join(exeDir, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0 {
			return p, nil
		}
	}
	p, err := exec.LookPath(name)
	if err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			// exec's text would name the command a second time.
			return "", fmt.Errorf("%q not found next to %s nor in PATH", name, exeDir)
		}
		return "", fmt.Errorf("%q: %w", name, err)
	}
	return p, nil
}
