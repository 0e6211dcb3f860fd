package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	gosync "sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fdp-engine/fdp/internal/logs"
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/metrics"
	"github.com/fdp-engine/fdp/remote"
	"github.com/fdp-engine/fdp/shm"
	"github.com/fdp-engine/fdp/supervisor"
	fsync "github.com/fdp-engine/fdp/sync"
	"github.com/spf13/cobra"
)

// newUpCommand is `engine up`: the supervisor of w's engine (this program's
// run) and modules.
func newUpCommand(w World) *cobra.Command {
	var configPath, instance, logFormat, metricsAddr string
	var duration, chaos time.Duration
	c := &cobra.Command{
		Use:   "up",
		Short: "Supervise the engine and the modules of a config (default: " + w.configName() + "), then print what happened",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := w.valid(); err != nil {
				return err
			}
			if duration < 0 {
				return fmt.Errorf("--duration %v: must not be negative (0 = until SIGINT/SIGTERM)", duration)
			}
			if chaos < 0 {
				return fmt.Errorf("--chaos %v: must not be negative (0 = never)", chaos)
			}
			cfg, err := w.upConfig(configPath, instance)
			if err != nil {
				return err
			}
			if err := shm.CheckDir(); err != nil {
				return err
			}
			if metricsAddr != "" {
				cfg.Metrics = metricsAddr
			}
			f, err := resolveLogFormat(logFormat, cfg.LogFormat)
			if err != nil {
				return err
			}
			out := newOutput(f, cmd.OutOrStdout(), os.Stderr)
			defer out.close()
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			if duration > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, duration)
				defer cancel()
			}
			return out.fail(cmd, runUp(ctx, cfg, chaos, out))
		},
	}
	c.Flags().StringVar(&configPath, "config", "", "YAML config (default: "+w.configName()+")")
	c.Flags().StringVar(&instance, "instance", "", "override the config's instance name")
	c.Flags().DurationVar(&duration, "duration", 0, "stop after this long (0 = until SIGINT/SIGTERM)")
	c.Flags().StringVar(&metricsAddr, "metrics", "", metricsUsage+"; overrides the config's metrics:")
	c.Flags().DurationVar(&chaos, "chaos", 0, "SIGKILL a random running module this often (0 = never), to watch crash isolation")
	addLogFormatFlag(c, &logFormat) // over $FDP_LOG_FORMAT, over the config's log_format
	return c
}

func runUp(ctx context.Context, cfg *supervisor.Config, chaos time.Duration, out *output) error {
	log := out.log
	inst := cfg.Instance
	unlock, err := lockInstance(inst, ownerUp)
	if err != nil {
		return err
	}
	defer unlock()
	hb := newHeartbeats(inst)
	defer hb.close()
	if cfg.Mirror.URL != "" {
		// A mirror host (docs/ARCHITECTURE.md "Beyond one machine"): its
		// engine is the engine program's mirror.
		cfg.Engine.Command = cfg.MirrorCommand()
	}
	if cfg.Bridge.URL != "" {
		// An engine host with a bridge: it runs in this process beside the
		// supervised engine, attaching again after each engine restart.
		n := cfg.Bridge.NATS()
		bctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		defer func() { cancel(); <-done }()
		go func() {
			defer close(done)
			err := remote.RunBridge(bctx, remote.BridgeOptions{Instance: inst, Rate: cfg.Bridge.Rate, KeyframeEvery: cfg.Bridge.KeyframeEvery,
				NATS: remote.NATS{URL: n.URL, Creds: n.Creds, NKey: n.NKey, CA: n.TLSCA}, Log: log.With("child", "bridge")})
			if err != nil && bctx.Err() == nil {
				log.Error("bridge ended", "err", err)
			}
		}()
	}
	// published records whether any engine of the run published a frame
	// (a heartbeat seen): an engine that died without ever publishing makes
	// up exit non-zero (see engineNeverRan).
	var published atomic.Bool
	heartbeat := func(name string) (time.Time, bool) {
		t, ok := hb.last(name)
		if name == supervisor.EngineName && !t.IsZero() {
			published.Store(true)
		}
		return t, ok
	}
	mx, err := metrics.PrepareUp(cfg, log) // before anything starts: the engine gets its address
	if err != nil {
		return err
	}
	defer mx.Close()
	sup, err := supervisor.New(cfg, supervisor.Options{
		Logger: log,
		Hooks: supervisor.Hooks{
			// A previous run killed with its supervisor left its segments:
			// the world (and any aside copy of it) is what the engine we
			// start recovers from, so only the rest is removed here (the
			// engine's start-up removes it too).
			BeforeStart: func() error {
				removed, err := shm.GCKeep(inst, shm.RecoveryMaterial)
				if len(removed) > 0 {
					log.Info("removed stale segments of a previous run (the world is kept for recovery)", "segments", removed)
				}
				return err
			},
			// The engine sees a module's death on its control socket and
			// resets its ring; the supervisor releases its pin and leases
			// at once so the engine's slots never wait for that.
			Reclaim:   func(name string, pid int) error { return releaseReader(inst, pid, log) },
			Heartbeat: heartbeat,
			// A dead engine's world is still there (recovery material):
			// whether it published is read before the next engine starts.
			OnEngineDeath: func(int, string) { heartbeat(supervisor.EngineName) },
			// A stop that was asked for (signal, --duration) removes the
			// instance. A stop because the engine failed for good (its
			// circuit breaker tripped, or it exited with restart off)
			// keeps the world for the next start to recover: that is when
			// it matters most.
			AfterStop: func() error {
				heartbeat(supervisor.EngineName) // the last engine's, before its world goes
				if ctx.Err() != nil {
					kept, err := shm.RemoveInstance(inst)
					if len(kept) > 0 {
						log.Warn("kept files of the instance whose creator is alive (not this supervisor's)", "instance", inst, "kept", kept)
					}
					return err
				}
				removed, err := shm.GCKeep(inst, shm.RecoveryMaterial)
				log.Warn("the engine failed: its world is kept for the next start to recover", "instance", inst, "removed", removed)
				return err
			},
		},
	})
	if err != nil {
		return err
	}
	mx.Serve(sup)
	var kills atomic.Int64
	if chaos > 0 {
		go func() {
			t := time.NewTicker(chaos)
			defer t.Stop()
			rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
				var victims []supervisor.ChildStatus
				for _, st := range sup.Status() {
					if !st.Engine && st.PID > 0 && st.State == supervisor.StateRunning {
						victims = append(victims, st)
					}
				}
				if len(victims) == 0 {
					continue
				}
				v := victims[rng.IntN(len(victims))]
				log.Warn("chaos: SIGKILL", "module", v.Name, "pid", v.PID)
				if syscall.Kill(v.PID, syscall.SIGKILL) == nil {
					kills.Add(1)
				}
			}
		}()
	}
	err = sup.Run(ctx)
	if err == nil && !published.Load() {
		err = engineNeverRan(sup)
	}
	if !sup.Launched() {
		return err // refused before anything started: no summary of rows that never ran
	}
	if out.format == logs.JSON {
		if chaos > 0 {
			out.summary.Info("chaos", "kills", kills.Load())
		}
		sup.LogSummary(out.summary)
		return err
	}
	fmt.Fprintln(out.out)
	if chaos > 0 {
		fmt.Fprintf(out.out, "chaos: %d modules SIGKILLed\n", kills.Load())
	}
	fmt.Fprintln(out.out, "== supervisor summary ==")
	fmt.Fprintln(out.out, sup.Summary())
	return err
}

// engineNeverRan is up's error when no engine of the run published a frame
// although one died (a crash at start, a bad command): the run did nothing,
// so up exits 1 rather than 0. An engine still starting when up was asked
// to stop (no death) is not an error.
func engineNeverRan(sup *supervisor.Supervisor) error {
	for _, st := range sup.Status() {
		if st.Engine && st.Deaths > 0 {
			return fmt.Errorf("up: the engine never published a frame: it died %d times (last: %s)", st.Deaths, st.LastExit)
		}
	}
	return nil
}

// releaseReader clears every reader entry (pin and leases) of a dead pid in
// the instance's leases segment. A segment that is absent, still being
// initialised or left by a dead engine (an engine restart in progress) holds
// no entry that matters: the new engine's fresh segment starts empty. That
// is skipped quietly (debug level); only a live, ready segment that does not
// decode is an error.
func releaseReader(instance string, pid int, log *slog.Logger) error {
	name := shm.SegmentName(instance, fsync.LeasesSegment)
	seg, err := shm.Open(name, true)
	if err != nil {
		log.Debug("reclaim skipped: no leases segment (the engine is not up)", "pid", pid, "err", err)
		return nil
	}
	defer seg.Close()
	ll, err := layout.DecodeLeases(seg.Data)
	if err != nil {
		h, herr := layout.DecodeHeader(seg.Data)
		switch {
		case errors.Is(err, layout.ErrNotReady), errors.Is(herr, layout.ErrNotReady):
			log.Debug("reclaim skipped: leases segment not ready (an engine is starting)", "pid", pid)
			return nil
		case h != nil && !shm.ProcessAlive(h.CreatorPID, h.CreatorTime):
			log.Debug("reclaim skipped: leases segment of a dead engine", "pid", pid, "err", err)
			return nil
		}
		return fmt.Errorf("%s: %w", name, err)
	}
	fsync.ReleaseReadersOf(seg.Data, ll, pid)
	return nil
}

// heartbeats reads heartbeats for the supervisor's hang monitor: a module's
// from its segment, the engine's (the Unix time of its last publish) from
// the world segment. It keeps each segment mapped (read-only) by name, so
// that a check is a few loads and two stats; a mapping whose path no longer
// names its file (an engine restart created the segments anew) is dropped
// and the segments of the instance are scanned again. A module segment
// counts only while it belongs to the engine whose world segment is current
// (same creator): a module is judged by its heartbeat in the running engine.
type heartbeats struct {
	instance string
	mu       gosync.Mutex
	world    *shm.Segment
	segs     map[string]*shm.Segment // module name -> its segment
}

func newHeartbeats(instance string) *heartbeats {
	return &heartbeats{instance: instance, segs: map[string]*shm.Segment{}}
}

// last returns the last heartbeat of child name. For a module, false when it
// has no segment of the running engine or has not beaten yet. For the
// engine, always true when a world segment exists: its last publish, or
// its last paused turn when later (a paused engine is not hung); the zero
// time when nothing was published.
func (h *heartbeats) last(name string) (time.Time, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	w := h.currentWorld()
	if name == supervisor.EngineName {
		if w == nil {
			return time.Time{}, true // not created yet: never published
		}
		// A paused engine publishes nothing but beats at every turn of its
		// frame loop (layout.OffWTimeBeat): it is alive, not stalled.
		if v := max(layout.Load64(w.Data, layout.OffWStatHeartbeat), layout.Load64(w.Data, layout.OffWTimeBeat)); v != 0 {
			return time.Unix(0, int64(v)), true
		}
		return time.Time{}, true
	}
	if w == nil {
		return time.Time{}, false
	}
	seg := h.segs[name]
	if seg == nil || !seg.Current() || !sameCreator(seg.Data, w.Data) {
		h.scan(w) // drops stale mappings, maps the running engine's segments
		if seg = h.segs[name]; seg == nil {
			return time.Time{}, false
		}
	}
	v := layout.Load64(seg.Data, layout.OffMHeartbeat)
	if v == 0 {
		return time.Time{}, false
	}
	return time.Unix(0, int64(v)), true
}

// currentWorld returns the mapping of the instance's current world segment
// (ready), remapping it after a restart; nil when there is none. Called with
// mu held.
func (h *heartbeats) currentWorld() *shm.Segment {
	if h.world != nil && h.world.Current() {
		return h.world
	}
	if h.world != nil {
		h.world.Close()
		h.world = nil
	}
	seg, err := shm.Open(shm.SegmentName(h.instance, fsync.WorldSegment), false)
	if err != nil {
		return nil
	}
	if _, err := layout.DecodeHeader(seg.Data); err != nil || len(seg.Data) < layout.OffWStatHeartbeat+8 {
		seg.Close() // not ready yet: try again at the next check
		return nil
	}
	h.world = seg
	return seg
}

// sameCreator reports whether two mapped segments have the same creator
// process (pid and start time).
func sameCreator(a, b []byte) bool {
	ha, err := layout.DecodeHeader(a)
	if err != nil {
		return false
	}
	hb, err := layout.DecodeHeader(b)
	return err == nil && ha.CreatorPID == hb.CreatorPID && ha.CreatorTime == hb.CreatorTime
}

// scan drops the mappings that are no longer current or belong to another
// engine than the world segment w, and maps every module segment of the
// instance created by w's engine and not mapped yet (a dead engine's
// segments may still be there). Called with mu held.
func (h *heartbeats) scan(w *shm.Segment) {
	mapped := map[string]bool{}
	for name, seg := range h.segs {
		if !seg.Current() || !sameCreator(seg.Data, w.Data) {
			seg.Close()
			delete(h.segs, name)
			continue
		}
		mapped[seg.Path] = true
	}
	matches, _ := filepath.Glob(filepath.Join(shm.Dir, shm.SegmentName(h.instance, "mod.*")))
	for _, p := range matches {
		if mapped[p] {
			continue
		}
		seg, err := shm.Open(filepath.Base(p), false)
		if err != nil {
			continue
		}
		lm, err := layout.DecodeModule(seg.Data)
		if err != nil || h.segs[lm.Info.Name] != nil || !sameCreator(seg.Data, w.Data) {
			seg.Close()
			continue
		}
		h.segs[lm.Info.Name] = seg
	}
}

func (h *heartbeats) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for name, seg := range h.segs {
		seg.Close()
		delete(h.segs, name)
	}
	if h.world != nil {
		h.world.Close()
		h.world = nil
	}
}
