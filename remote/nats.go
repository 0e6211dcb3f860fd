// Package remote runs modules on other hosts through NATS JetStream (issue
// 17, docs/ARCHITECTURE.md "Beyond one machine"): the bridge publishes an
// engine's frame-delta stream (package record) and plays remote modules'
// command batches back; a mirror rebuilds the world from the stream into
// local shared memory (a replay engine, host.RunReplay's machinery) and
// forwards its modules' batches.
//
// Why NATS: JetStream gives an ordered, persisted, replayable stream with
// per-subject limits (the latest keyframe is kept for late joiners),
// publish deduplication by message id (a mirror's retried publish is stored
// once) and durable consumers with explicit acks (a bridge killed mid-way
// resumes where its last ack left it), over TLS with credentials: the
// transport is not ours to write.
package remote

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// NATS names how to reach the NATS server (the config's `nats:` block and
// the --nats, --creds, --nkey, --tls-ca flags).
type NATS struct {
	// URL: nats://host:port, or tls://host:port for TLS (several, comma
	// separated, for a cluster).
	URL string
	// Creds is a credentials file (JWT and nkey seed, `nsc`); NKey a file
	// holding an nkey seed. At most one. Their contents are never logged.
	Creds string
	NKey  string
	// CA: a PEM file of the CAs that sign the server's certificate (TLS;
	// the system's roots otherwise).
	CA string
}

// Redacted returns the URL without user information (for logs).
func (n NATS) Redacted() string {
	var out []string
	for _, u := range strings.Split(n.URL, ",") {
		p, err := url.Parse(strings.TrimSpace(u))
		if err != nil || p.Host == "" {
			out = append(out, "<unparsable url>")
			continue
		}
		p.User = nil
		out = append(out, p.String())
	}
	return strings.Join(out, ",")
}

// Check validates the settings without connecting.
func (n NATS) Check() error {
	if strings.TrimSpace(n.URL) == "" {
		return errors.New("no NATS url (--nats nats://host:4222)")
	}
	for _, u := range strings.Split(n.URL, ",") {
		p, err := url.Parse(strings.TrimSpace(u))
		if err != nil || p.Host == "" {
			return fmt.Errorf("NATS url %q: want nats://host:port or tls://host:port", NATS{URL: u}.Redacted())
		}
		switch p.Scheme {
		case "nats", "tls":
		default:
			return fmt.Errorf("NATS url %s: scheme %q, want nats or tls", NATS{URL: u}.Redacted(), p.Scheme)
		}
	}
	if n.Creds != "" && n.NKey != "" {
		return errors.New("both a NATS credentials file and an nkey file: name one")
	}
	return nil
}

// Connect connects to NATS with reconnects for ever (a NATS restart is a
// pause, not an end) and returns the JetStream context.
func (n NATS) Connect(name string, log *slog.Logger) (*nats.Conn, jetstream.JetStream, error) {
	if err := n.Check(); err != nil {
		return nil, nil, err
	}
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.RetryOnFailedConnect(true),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("NATS disconnected", "url", n.Redacted(), "err", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("NATS reconnected", "url", c.ConnectedUrlRedacted()) }),
	}
	if n.Creds != "" {
		opts = append(opts, nats.UserCredentials(n.Creds))
	}
	if n.NKey != "" {
		o, err := nats.NkeyOptionFromSeed(n.NKey)
		if err != nil {
			return nil, nil, fmt.Errorf("nkey file %s: %w", n.NKey, errors.Unwrap(err))
		}
		opts = append(opts, o)
	}
	if strings.HasPrefix(strings.TrimSpace(n.URL), "tls://") {
		opts = append(opts, nats.Secure())
	}
	if n.CA != "" {
		opts = append(opts, nats.RootCAs(n.CA))
	}
	nc, err := nats.Connect(n.URL, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("NATS %s: %w", n.Redacted(), err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("NATS %s: JetStream: %w", n.Redacted(), err)
	}
	return nc, js, nil
}

// Names of an instance's subjects and streams.
type Names struct {
	Instance                          string
	Frames, Key, Cmd                  string // subjects
	FrameStream, KeyStream, CmdStream string
}

// NamesOf returns the names for instance (no '.', '*', '>' or spaces: a
// NATS subject token and a stream name).
func NamesOf(instance string) (Names, error) {
	if instance == "" || strings.ContainsAny(instance, ".*> \t/\\") {
		return Names{}, fmt.Errorf("instance %q cannot name NATS subjects (no '.', '*', '>', '/', spaces)", instance)
	}
	return Names{Instance: instance,
		Frames: "fdp." + instance + ".frames", Key: "fdp." + instance + ".key", Cmd: "fdp." + instance + ".cmd",
		FrameStream: "FDP_" + instance + "_FRAMES", KeyStream: "FDP_" + instance + "_KEY", CmdStream: "FDP_" + instance + "_CMD"}, nil
}

// StreamLimits bound what JetStream keeps of an instance.
type StreamLimits struct {
	// FrameMsgs: the frame messages kept (at least a few keyframe
	// intervals' worth, so the keyframe the key stream points at is kept).
	FrameMsgs int64
	// FrameBytes: the frame stream's bytes.
	FrameBytes int64
	// FrameStorage: where the frame stream is kept (memory by default:
	// frames are worth seconds; the bridge creates the stream again after
	// a NATS restart lost it).
	FrameStorage jetstream.StorageType
	// CmdAge: how long a command batch is kept (and the publish dedup
	// window: a mirror's retry within it is stored once).
	CmdAge time.Duration
}

// DefaultLimits are the limits a bridge creates its streams with.
var DefaultLimits = StreamLimits{FrameMsgs: 4096, FrameBytes: 1 << 30, FrameStorage: jetstream.MemoryStorage, CmdAge: 10 * time.Minute}

// ensureStreams creates or updates the instance's three streams.
func ensureStreams(ctx context.Context, js jetstream.JetStream, n Names, lim StreamLimits) error {
	cfgs := []jetstream.StreamConfig{
		{Name: n.FrameStream, Subjects: []string{n.Frames}, Storage: lim.FrameStorage, Discard: jetstream.DiscardOld,
			MaxMsgs: lim.FrameMsgs, MaxBytes: lim.FrameBytes, Duplicates: time.Minute},
		// The latest keyframe's pointer only (per-subject limit 1).
		{Name: n.KeyStream, Subjects: []string{n.Key}, Storage: jetstream.FileStorage, MaxMsgsPerSubject: 1, Discard: jetstream.DiscardOld},
		{Name: n.CmdStream, Subjects: []string{n.Cmd}, Storage: jetstream.FileStorage, Discard: jetstream.DiscardOld,
			MaxAge: lim.CmdAge, Duplicates: lim.CmdAge},
	}
	for _, c := range cfgs {
		if _, err := js.CreateOrUpdateStream(ctx, c); err != nil {
			return fmt.Errorf("stream %s: %w", c.Name, err)
		}
	}
	return nil
}
