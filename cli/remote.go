package cli

// `engine bridge` and `engine mirror`: modules on other hosts through NATS
// JetStream (package remote; docs/ARCHITECTURE.md "Beyond one machine").

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/fdp-engine/fdp/host"
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/record"
	"github.com/fdp-engine/fdp/remote"
	"github.com/fdp-engine/fdp/shm"
	"github.com/spf13/cobra"
)

type natsFlags struct{ n remote.NATS }

func (f *natsFlags) add(c *cobra.Command) {
	c.Flags().StringVar(&f.n.URL, "nats", envOr("FDP_NATS", ""), "NATS server URL: nats://host:4222, or tls://host:4222 for TLS (several: comma separated)")
	c.Flags().StringVar(&f.n.Creds, "creds", "", "NATS credentials file (JWT and nkey seed); never logged")
	c.Flags().StringVar(&f.n.NKey, "nkey", "", "file holding an NATS nkey seed; never logged")
	c.Flags().StringVar(&f.n.CA, "tls-ca", "", "PEM file of the CAs of the NATS server's certificate (TLS)")
}

type bridgeOpts struct {
	natsFlags
	instance  string
	rate      int
	keyEvery  int
	keyBudget float64
	status    time.Duration
	logFormat string
}

func newBridgeCommand(w World) *cobra.Command {
	o := &bridgeOpts{}
	c := &cobra.Command{
		Use:   "bridge",
		Short: "Publish an engine's frames to NATS JetStream for mirrors on other hosts, and play their modules' commands back exactly once",
		Long: "Run beside an engine (a process of its own: it can be restarted without the engine): read every new published frame\n" +
			"like an external reader, publish it as a keyframe or a delta of the frame-delta stream to the JetStream stream\n" +
			"FDP_<instance>_FRAMES (the latest keyframe's position in FDP_<instance>_KEY, for late joiners), and play the\n" +
			"command batches that mirrors' modules send (FDP_<instance>_CMD) through the engine's control socket, each once.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := resolveLogFormat(o.logFormat, "")
			if err != nil {
				return err
			}
			out := newOutput(f, cmd.OutOrStdout(), os.Stderr)
			defer out.close()
			if err := o.check(); err != nil {
				return out.fail(cmd, err)
			}
			ctx, stop := runContext(cmd, 0)
			defer stop()
			b, err := remote.NewBridge(ctx, remote.BridgeOptions{Instance: o.instance, NATS: o.n, Rate: o.rate, KeyframeEvery: o.keyEvery, KeyframeBudget: budget(o.keyBudget), Log: out.log})
			if err != nil {
				return out.fail(cmd, err)
			}
			defer b.Close()
			if o.status > 0 {
				go bridgeStatus(ctx, b, o.status, out)
			}
			return out.fail(cmd, b.Run(ctx))
		},
	}
	o.add(c)
	c.Flags().StringVar(&o.instance, "instance", envOr("FDP_INSTANCE", w.Instance), "the engine's instance")
	c.Flags().IntVar(&o.rate, "rate", 60, "the engine's frame rate (the stream's frame period)")
	c.Flags().IntVar(&o.keyEvery, "keyframe-every", 0, "every n-th published frame is a keyframe at the latest (0 = once a second: --rate); see --keyframe-budget")
	c.Flags().Float64Var(&o.keyBudget, "keyframe-budget", record.DefaultKeyframeBudget,
		"a keyframe comes earlier once the deltas since the last one add up to this many times its bytes (at 30% dirty, 3 gives about every 10th frame); 0 = keyframes every --keyframe-every-th frame only")
	c.Flags().DurationVar(&o.status, "status", 5*time.Second, "status line interval (0 = none)")
	addLogFormatFlag(c, &o.logFormat)
	return c
}

func (o *bridgeOpts) check() error {
	switch {
	case !layout.ValidInstanceName(o.instance):
		return fmt.Errorf("--instance %q: want 1..%d characters of [A-Za-z0-9_-]", o.instance, layout.InstanceNameLen-1)
	case o.rate < 1 || o.rate > 10000:
		return fmt.Errorf("--rate %d: must be in 1..10000", o.rate)
	case o.keyBudget < 0:
		return fmt.Errorf("--keyframe-budget %v: must not be negative", o.keyBudget)
	case o.keyEvery < 0:
		return fmt.Errorf("--keyframe-every %d: must not be negative", o.keyEvery)
	}
	return o.n.Check()
}

// budget maps --keyframe-budget (0: none) to BridgeOptions' (negative:
// none).
func budget(f float64) float64 {
	if f == 0 {
		return -1
	}
	return f
}

func bridgeStatus(ctx context.Context, b *remote.Bridge, every time.Duration, out *output) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s := &b.Stats
			fmt.Fprintf(out.status, "bridge: frames %d (keyframes %d)  wire %.1f MB  dirty %.1f MB  failed %d  batches %d  duplicates %d  refused %d\n",
				s.Frames.Load(), s.Keyframes.Load(), float64(s.WireBytes.Load())/1e6, float64(s.DirtyBytes.Load())/1e6,
				s.FailedPublishes.Load(), s.Batches.Load(), s.Duplicates.Load(), s.Refused.Load())
		}
	}
}

type mirrorOpts struct {
	natsFlags
	source, instance string
	skipAfter        int
	status           time.Duration
	logFormat        string
}

func newMirrorCommand(w World) *cobra.Command {
	o := &mirrorOpts{}
	c := &cobra.Command{
		Use:   "mirror",
		Short: "Rebuild an engine's world on this host from NATS JetStream, for unmodified modules; forward their commands to the engine",
		Long: "Publish the frames of the engine instance --source (default: --instance) read from NATS JetStream into local shared\n" +
			"memory as instance --instance, from its latest keyframe on: modules attach to it as to a local engine and read the\n" +
			"engine's frames, whole, with the engine's frame numbers and events. A mirror that falls behind skips to the next\n" +
			"keyframe (counted, logged). The modules' command batches are validated and counted here, then forwarded to the\n" +
			"engine, which plays each exactly once and reports rejections back.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.source == "" {
				o.source = o.instance
			}
			out, err := startCommand(cmd, o.logFormat, o.check)
			if err != nil {
				return err
			}
			defer out.close()
			if err := w.valid(); err != nil {
				return out.fail(cmd, err)
			}
			ctx, stop := runContext(cmd, 0)
			defer stop()
			release, err := claimEngine(o.instance)
			if err != nil {
				return out.fail(cmd, err)
			}
			defer release()
			if _, err := shm.GC(o.instance); err != nil {
				return out.fail(cmd, err)
			}
			var frames uint64
			var last time.Time
			var eng *host.Engine
			opt := remote.MirrorOptions{Source: o.source, Instance: o.instance, NATS: o.n, Registry: w.Schema, SkipAfter: o.skipAfter,
				Log: out.log, OnEngine: func(e *host.Engine) { eng = e }}
			var mir *remote.Mirror
			opt.OnMirror = func(m *remote.Mirror) { mir = m }
			opt.OnFrame = func(fr remote.MirrorFrame) {
				frames++
				if o.status > 0 && time.Since(last) >= o.status {
					last = time.Now()
					fmt.Fprintf(out.status, "mirror: frame %d  lag %v (%d frames)  published %d  modules up %d  entities %d\n",
						fr.Frame, fr.Lag.Round(time.Millisecond), fr.LagFrames, frames, modulesUp(eng), eng.World().Count())
				}
			}
			err = remote.RunMirror(ctx, opt)
			if mir != nil { // a start-up error (NATS, flags) prints no summary
				fmt.Fprintf(out.out, "mirror of %s as %s: %d frames published, %d skipped, %d resubscribes, %d restarts of the source\n",
					o.source, o.instance, frames, mir.Stats.Skipped.Load(), mir.Stats.Resubscribes.Load(), mir.Stats.Epochs.Load())
			}
			return out.fail(cmd, err)
		},
	}
	o.add(c)
	c.Flags().StringVar(&o.instance, "instance", envOr("FDP_INSTANCE", w.Instance), "the local instance the mirror publishes as")
	c.Flags().StringVar(&o.source, "source", "", "the engine's instance on NATS (default: --instance)")
	c.Flags().IntVar(&o.skipAfter, "skip-after", 8, "frames waiting beyond which the mirror skips to the latest keyframe")
	c.Flags().DurationVar(&o.status, "status", 5*time.Second, "status line interval (0 = none)")
	addLogFormatFlag(c, &o.logFormat)
	return c
}

func (o *mirrorOpts) check() error {
	switch {
	case !layout.ValidInstanceName(o.instance):
		return fmt.Errorf("--instance %q: want 1..%d characters of [A-Za-z0-9_-]", o.instance, layout.InstanceNameLen-1)
	case !layout.ValidInstanceName(o.source):
		return fmt.Errorf("--source %q: want 1..%d characters of [A-Za-z0-9_-]", o.source, layout.InstanceNameLen-1)
	case o.skipAfter < 1:
		return fmt.Errorf("--skip-after %d: must be at least 1", o.skipAfter)
	}
	return o.n.Check()
}
