package supervisor

// The bridge and mirror of issue 17 (docs/ARCHITECTURE.md "Beyond one
// machine") in a configuration: an engine host names `bridge:` (its
// `engine up` runs the bridge beside the engine), a mirror host `mirror:`
// (its "engine" is `engine mirror`, supervised like an engine: restarted
// with backoff, stopped last), each with its modules.

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/fdp-engine/fdp/layout"
)

// NATSConfig is how a bridge or mirror reaches NATS (the keys nats:
// nats://host:4222 or tls://host:4222, several comma separated; creds: a
// credentials file; nkey: a file of an nkey seed; tls_ca: a PEM file of
// CAs). Credentials are files, named here; their contents are never
// logged.
type NATSConfig struct{ URL, Creds, NKey, TLSCA string }

// NATS returns the block's NATS settings.
func (b BridgeConfig) NATS() NATSConfig { return NATSConfig{b.URL, b.Creds, b.NKey, b.TLSCA} }

// NATS returns the block's NATS settings.
func (m MirrorConfig) NATS() NATSConfig { return NATSConfig{m.URL, m.Creds, m.NKey, m.TLSCA} }

// BridgeConfig is the `bridge:` block.
type BridgeConfig struct {
	URL   string `yaml:"nats"`
	Creds string `yaml:"creds"`
	NKey  string `yaml:"nkey"`
	TLSCA string `yaml:"tls_ca"`
	// Rate is the engine's frame rate (default 60); KeyframeEvery the
	// keyframe interval in frames (default: Rate).
	Rate          int `yaml:"rate"`
	KeyframeEvery int `yaml:"keyframe_every"`
}

// MirrorConfig is the `mirror:` block.
type MirrorConfig struct {
	URL   string `yaml:"nats"`
	Creds string `yaml:"creds"`
	NKey  string `yaml:"nkey"`
	TLSCA string `yaml:"tls_ca"`
	// Source is the engine's instance (default: this config's instance).
	Source string `yaml:"source"`
}

// Enabled: a block is in use when it names a NATS URL.
func (n NATSConfig) Enabled() bool { return n.URL != "" }

func (n NATSConfig) validate(where string) error {
	for _, u := range strings.Split(n.URL, ",") {
		p, err := url.Parse(strings.TrimSpace(u))
		if err != nil || p.Host == "" || (p.Scheme != "nats" && p.Scheme != "tls") {
			return fmt.Errorf("%s.nats: want nats://host:port or tls://host:port", where)
		}
	}
	if n.Creds != "" && n.NKey != "" {
		return fmt.Errorf("%s: both creds and nkey: name one", where)
	}
	return nil
}

// Args are the command-line flags of `engine bridge` / `engine mirror`
// for n.
func (n NATSConfig) Args() []string {
	a := []string{"--nats", n.URL}
	if n.Creds != "" {
		a = append(a, "--creds", n.Creds)
	}
	if n.NKey != "" {
		a = append(a, "--nkey", n.NKey)
	}
	if n.TLSCA != "" {
		a = append(a, "--tls-ca", n.TLSCA)
	}
	return a
}

// validateRemote checks the bridge and mirror blocks.
func (c *Config) validateRemote() error {
	b, m := c.Bridge, c.Mirror
	switch {
	case b.URL != "" && m.URL != "":
		return errors.New("both bridge and mirror: a host runs an engine with a bridge, or a mirror")
	case b.URL == "" && (b.Creds != "" || b.NKey != "" || b.TLSCA != "" || b.Rate != 0 || b.KeyframeEvery != 0):
		return errors.New("bridge: settings without bridge.nats")
	case m.URL == "" && (m.Creds != "" || m.NKey != "" || m.TLSCA != "" || m.Source != ""):
		return errors.New("mirror: settings without mirror.nats")
	}
	if b.URL != "" {
		if err := b.NATS().validate("bridge"); err != nil {
			return err
		}
		if b.Rate < 0 || b.Rate > 10000 {
			return fmt.Errorf("bridge.rate %d: want 1..10000 (or 0: 60)", b.Rate)
		}
		if b.KeyframeEvery < 0 {
			return fmt.Errorf("bridge.keyframe_every %d: want >= 0", b.KeyframeEvery)
		}
	}
	if m.URL != "" {
		if err := m.NATS().validate("mirror"); err != nil {
			return err
		}
		if m.Source != "" && !layout.ValidInstanceName(m.Source) {
			return fmt.Errorf("mirror.source %q: want 1..%d characters of [A-Za-z0-9_-]", m.Source, layout.InstanceNameLen-1)
		}
	}
	return nil
}

// MirrorCommand is the engine command of a mirror host: the engine
// program's `mirror` instead of what the config says it runs.
func (c *Config) MirrorCommand() []string {
	src := c.Mirror.Source
	if src == "" {
		src = c.Instance
	}
	argv := []string{c.Engine.Command[0], "mirror", "--instance", c.Instance, "--source", src}
	return append(argv, c.Mirror.NATS().Args()...)
}

// BridgeArgs are the flags of the bridge an engine host runs.
func (c *Config) BridgeArgs() []string {
	a := append([]string{"--instance", c.Instance}, c.Bridge.NATS().Args()...)
	if c.Bridge.Rate > 0 {
		a = append(a, "--rate", strconv.Itoa(c.Bridge.Rate))
	}
	if c.Bridge.KeyframeEvery > 0 {
		a = append(a, "--keyframe-every", strconv.Itoa(c.Bridge.KeyframeEvery))
	}
	return a
}
