package cli

// `engine replay FILE [--instance NAME] [--speed X] [--from FRAME] [--loop]`:
// publish a recording (`engine run --record`) into shared memory as a
// normal instance (host.RunReplay; docs/ARCHITECTURE.md "Flight recorder
// and replay").

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/fdp-engine/fdp/host"
	"github.com/fdp-engine/fdp/ipc"
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/record"
	"github.com/fdp-engine/fdp/shm"
	"github.com/fdp-engine/fdp/world"
	"github.com/spf13/cobra"
)

type replayOpts struct {
	instance  string
	speed     float64
	from      uint64
	loop      bool
	paused    bool
	status    time.Duration
	duration  time.Duration
	logFormat string
}

func newReplayCommand(w World) *cobra.Command {
	o := &replayOpts{}
	c := &cobra.Command{
		Use:   "replay FILE",
		Short: "Publish a recording (engine run --record) as an instance that unmodified modules attach to; their commands are validated, counted and dropped",
		Long: "Publish the frames of a recording into shared memory at the recorded rate, with their recorded frame numbers,\n" +
			"Time singleton and events, as a normal instance: modules attach to it as to a live engine and read the same frames.\n" +
			"Commands that modules send are validated and counted (their applied and rejected figures), then dropped: the\n" +
			"recording never changes. Time control: engine ctl INSTANCE pause|resume|step [N]|speed X|seek FRAME|status.\n" +
			"A seek back (or a --loop) starts the instance's engine again at the frame asked: modules rejoin as after an\n" +
			"engine restart. Without --loop the command ends after the last frame.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out, err := startCommand(cmd, o.logFormat, o.check)
			if err != nil {
				return err
			}
			defer out.close()
			if err := w.valid(); err != nil {
				return out.fail(cmd, err)
			}
			ctx, stop := runContext(cmd, o.duration)
			defer stop()
			return out.fail(cmd, runReplay(ctx, w, args[0], o, out))
		},
	}
	c.Flags().StringVar(&o.instance, "instance", envOr("FDP_INSTANCE", w.Instance), "instance name to publish the recording as")
	c.Flags().Float64Var(&o.speed, "speed", 1, fmt.Sprintf("publication rate: the recorded rate × X (%v <= X <= %d)", ipc.CtlMinSpeed, ipc.CtlMaxSpeed))
	c.Flags().Uint64Var(&o.from, "from", 0, "start at this recorded frame (0 = the first), from the nearest keyframe before it")
	c.Flags().BoolVar(&o.loop, "loop", false, "after the last frame, start again at the first (modules rejoin)")
	c.Flags().BoolVar(&o.paused, "paused", false, "start paused on the first frame (engine ctl INSTANCE step|resume)")
	c.Flags().DurationVar(&o.status, "status", time.Second, "status line interval (0 = none)")
	c.Flags().DurationVar(&o.duration, "duration", 0, "stop after this long (0 = at the end of the recording, or SIGINT/SIGTERM)")
	addLogFormatFlag(c, &o.logFormat)
	return c
}

func (o *replayOpts) check() error {
	switch {
	case !layout.ValidInstanceName(o.instance):
		return fmt.Errorf("--instance %q: want 1..%d characters of [A-Za-z0-9_-]", o.instance, layout.InstanceNameLen-1)
	case !(o.speed >= ipc.CtlMinSpeed && o.speed <= ipc.CtlMaxSpeed):
		return fmt.Errorf("--speed %v: must be %v..%d", o.speed, ipc.CtlMinSpeed, ipc.CtlMaxSpeed)
	case o.status < 0:
		return fmt.Errorf("--status %v: must not be negative (0 = no status line)", o.status)
	case o.duration < 0:
		return fmt.Errorf("--duration %v: must not be negative", o.duration)
	}
	return nil
}

// runReplay publishes the recording at path as o.instance until it ends
// (without --loop) or ctx is done.
func runReplay(ctx context.Context, wd World, path string, o *replayOpts, out *output) error {
	log := out.log
	rec, err := host.OpenRecording(path)
	if err != nil {
		return err
	}
	defer rec.Close()
	r := rec.Reader()
	h := r.Header()
	if got, want := wd.Schema.SchemaHash(), h.SchemaHash(); got != want {
		return fmt.Errorf("%s: recorded with another schema (hash %#x) than this program's (%#x)", path, want, got)
	}
	first, last := rec.Frames()
	if d := r.Damage(); d != nil {
		log.Warn("the recording is damaged or cut short: replaying up to the damage", "file", path, "last_frame", last, "damage", d)
	}
	if o.from != 0 {
		if o.from < first || o.from > last {
			return fmt.Errorf("--from %d: frame %d is outside the recording (frames %d to %d)", o.from, o.from, first, last)
		}
		if err := rec.Seek(o.from); err != nil {
			return fmt.Errorf("--from %d: %w", o.from, err)
		}
	}
	rate := 60
	if h.FramePeriod > 0 {
		rate = max(1, int((time.Second+time.Duration(h.FramePeriod)/2)/time.Duration(h.FramePeriod)))
	}
	// Ownership as for `engine run`: nothing of the instance is created or
	// removed while another engine or an `engine up` owns it; stale
	// segments of a dead engine are removed.
	release, err := claimEngine(o.instance)
	if err != nil {
		return err
	}
	defer release()
	if _, err := shm.GC(o.instance); err != nil {
		return err
	}
	log.Info("replay running", "instance", o.instance, "file", path, "frames", len(r.Index()), "first", first, "last", last,
		"keyframes", len(r.Keyframes()), "rate", rate, "speed", o.speed, "pid", os.Getpid())
	var eng *host.Engine
	var published, dropped, rejected uint64
	var lastStatus time.Time
	var lastPub, lastFrame uint64
	opt := host.ReplayOptions{Loop: o.loop, Speed: o.speed, Paused: o.paused, OnEngine: func(e *host.Engine) {
		if eng != nil {
			dropped += eng.ReplayDropped
			log.Info("replay engine restarted at the frame asked (a seek back or a loop): modules rejoin", "instance", o.instance)
		}
		eng, lastStatus, lastPub = e, time.Now(), 0
	}}
	start := time.Now()
	err = host.RunReplay(ctx, host.Config{Instance: o.instance, FrameRate: rate, Logger: log}, func() (*world.World, error) { return rec.NewWorld(wd.Schema) },
		rec, opt, func(st host.FrameStats) {
			lastFrame = st.Frame
			if !st.Paused {
				published++
				rejected += uint64(st.Rejected)
			}
			if o.status > 0 && time.Since(lastStatus) >= o.status {
				now := time.Now()
				p := eng.Publisher().Publishes
				tc := eng.TimeControl()
				state := "running"
				if tc.Paused {
					state = "paused"
				}
				fmt.Fprintf(out.status, "replay: frame %d (%d..%d)  %.1f fps  %s  speed %g  modules up %d  entities %d  commands dropped %d  rejected %d\n",
					st.Frame, first, last, float64(p-lastPub)/now.Sub(lastStatus).Seconds(), state, tc.Speed, modulesUp(eng), eng.World().Count(),
					dropped+eng.ReplayDropped, rejected)
				lastStatus, lastPub = now, p
			}
		})
	if eng != nil {
		dropped += eng.ReplayDropped
	}
	fmt.Fprintf(out.out, "replay of %s: %d frames published in %v (recording: frames %d to %d, %d records); commands validated and dropped %d, rejected %d\n",
		path, published, time.Since(start).Round(time.Millisecond), first, last, len(r.Index()), dropped, rejected)
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("%s: %w; %s", path, err, afterDamage(r, path, lastFrame))
	}
	return err
}

// afterDamage suggests where a replay stopped by damage in the middle of
// the file may go on: the first keyframe after the last frame published,
// if the index knows one (a whole index record lists the keyframes past
// the damage; a rebuilt one ends at it).
func afterDamage(r *record.Reader, path string, lastFrame uint64) string {
	ix := r.Index()
	bad := lastFrame + 1 // the first frame not published: the damaged one
	for _, e := range ix {
		if e.Frame > lastFrame {
			bad = e.Frame
			break
		}
	}
	for _, k := range r.Keyframes() {
		if f := ix[k].Frame; f > bad {
			return fmt.Sprintf("the frames from the next keyframe on may still replay: --from %d", f)
		}
	}
	return fmt.Sprintf("the index knows no keyframe after frame %d (engine dump %s shows the index)", bad, path)
}

// modulesUp counts the engine's modules neither dead nor gone.
func modulesUp(eng *host.Engine) int {
	up := 0
	for _, m := range eng.Modules() {
		if m.State != host.StateDead && m.State != host.StateLeft {
			up++
		}
	}
	return up
}
