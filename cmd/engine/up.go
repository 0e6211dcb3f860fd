package main

import (
	"context"
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

	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/shm"
	"github.com/fdp-engine/fdp/supervisor"
	fsync "github.com/fdp-engine/fdp/sync"
	"github.com/spf13/cobra"
)

func init() {
	var configPath, instance string
	var duration, chaos time.Duration
	c := &cobra.Command{
		Use:   "up",
		Short: "Supervise the engine and the modules of a config (default: the embedded demo), then print what happened",
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := supervisor.DefaultConfig()
			if configPath != "" {
				cfg, err = supervisor.LoadConfig(configPath)
			}
			if err != nil {
				return err
			}
			if instance != "" {
				cfg.Instance = instance
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			if duration > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, duration)
				defer cancel()
			}
			return runUp(ctx, cfg, chaos)
		},
	}
	c.Flags().StringVar(&configPath, "config", "", "YAML config (default: the embedded demo config)")
	c.Flags().StringVar(&instance, "instance", "", "override the config's instance name")
	c.Flags().DurationVar(&duration, "duration", 0, "stop after this long (0 = until SIGINT/SIGTERM)")
	c.Flags().DurationVar(&chaos, "chaos", 0, "SIGKILL a random running module this often (0 = never), to watch crash isolation")
	rootCmd.AddCommand(c)
}

func runUp(ctx context.Context, cfg *supervisor.Config, chaos time.Duration) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	inst := cfg.Instance
	hb := newHeartbeats(inst)
	defer hb.close()
	sup, err := supervisor.New(cfg, supervisor.Options{
		Logger: log,
		Hooks: supervisor.Hooks{
			BeforeStart: func() error {
				removed, err := shm.GC(inst)
				if len(removed) > 0 {
					log.Info("removed stale segments of a previous run", "segments", removed)
				}
				return err
			},
			// The engine sees a module's death on its control socket and
			// resets its ring; the supervisor releases its pin and leases
			// at once so the engine's slots never wait for that.
			Reclaim:   func(name string, pid int) error { return releaseReader(inst, pid) },
			Heartbeat: hb.last,
			AfterStop: func() error { return shm.RemoveInstance(inst) },
		},
	})
	if err != nil {
		return err
	}
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
	fmt.Println()
	if chaos > 0 {
		fmt.Printf("chaos: %d modules SIGKILLed\n", kills.Load())
	}
	fmt.Println("== supervisor summary ==")
	fmt.Println(sup.Summary())
	return err
}

// releaseReader clears every reader entry (pin and leases) of a dead pid.
func releaseReader(instance string, pid int) error {
	seg, err := shm.Open(shm.SegmentName(instance, fsync.LeasesSegment), true)
	if err != nil {
		return nil // the engine is not up (yet): nothing to release
	}
	defer seg.Close()
	ll, err := layout.DecodeLeases(seg.Data)
	if err != nil {
		return err
	}
	fsync.ReleaseReadersOf(seg.Data, ll, pid)
	return nil
}

// heartbeats reads modules' heartbeats for the supervisor's hang monitor.
// It keeps each module's segment mapped (read-only) by name, so that a check
// is one load and two stats; a mapping whose path no longer names its file
// (an engine restart created the segments anew) is dropped and the module
// segments of the instance are scanned again.
type heartbeats struct {
	instance string
	mu       gosync.Mutex
	segs     map[string]*shm.Segment // module name -> its segment
}

func newHeartbeats(instance string) *heartbeats {
	return &heartbeats{instance: instance, segs: map[string]*shm.Segment{}}
}

// last returns the last heartbeat of module name; false when it has no
// segment or has not beaten yet (and always for the engine).
func (h *heartbeats) last(name string) (time.Time, bool) {
	if name == supervisor.EngineName {
		return time.Time{}, false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	seg := h.segs[name]
	if seg == nil || !seg.Current() {
		h.scan() // drops the stale mapping, maps the current segments
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

// scan drops the mappings that are no longer current and maps every module
// segment of the instance not mapped yet. Called with mu held.
func (h *heartbeats) scan() {
	mapped := map[string]bool{}
	for name, seg := range h.segs {
		if !seg.Current() {
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
		if err != nil || h.segs[lm.Info.Name] != nil {
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
}
