package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/fdp-engine/fdp/host"
	"github.com/fdp-engine/fdp/internal/logs"
	"github.com/fdp-engine/fdp/ipc"
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/metrics"
	"github.com/fdp-engine/fdp/record"
	"github.com/fdp-engine/fdp/world"
	"github.com/spf13/cobra"
)

type runOpts struct {
	instance   string
	entities   int
	rate       int
	duration   time.Duration
	status     time.Duration
	noPrewake  bool
	allowUIDs  []uint
	maxModules int
	readers    int
	slots      int
	shmLimit   string
	slotIdle   time.Duration
	logFormat  string
	metrics    string
	record     string
	keyframe   int
	overwrite  bool
	compress   string
}

func (o *runOpts) flags(c *cobra.Command, w World) {
	c.Flags().StringVar(&o.instance, "instance", envOr("FDP_INSTANCE", w.Instance), "instance name")
	c.Flags().IntVar(&o.entities, "entities", w.Entities, "entities in the world")
	c.Flags().IntVar(&o.rate, "rate", w.Rate, "frames per second")
	c.Flags().DurationVar(&o.duration, "duration", 0, "stop after this long (0 = until SIGINT/SIGTERM)")
	c.Flags().DurationVar(&o.status, "status", time.Second, "status line interval (0 = none)")
	c.Flags().IntVar(&o.slots, "slots", 0, "frame slots: frames the publish and held snapshots can use at once (0 = 32); a slot holds memory only for what it holds")
	c.Flags().StringVar(&o.shmLimit, "shm-limit", "0", "bound on the world segment's shared memory, e.g. 512MiB or 2GiB (0 = the file system's room); snapshots beyond it are refused")
	c.Flags().DurationVar(&o.slotIdle, "slot-idle", 0, "a slot unused for this long gives its memory back (0 = 2s, negative = never)")
	c.Flags().StringVar(&o.record, "record", "", "record every published frame into this file (the flight recorder: keyframes and deltas, engine dump FILE reads it)")
	c.Flags().BoolVar(&o.overwrite, "record-overwrite", false, "with --record: replace an existing recording (without it an existing FILE is refused; a file that is not a recording never is replaced)")
	c.Flags().StringVar(&o.compress, "record-compression", "zstd", "with --record: zstd or none (frame payloads stored as they are: docs/LAYOUT.md's stdlib-only Python decoder reads them)")
	c.Flags().IntVar(&o.keyframe, "record-keyframe", host.DefaultKeyframeEvery, "with --record: a keyframe every N recorded frames (a seek decodes at most N-1 deltas)")
	c.Flags().StringVar(&o.metrics, "metrics", os.Getenv("FDP_METRICS"), metricsUsage+"; default $FDP_METRICS")
	c.Flags().BoolVar(&o.noPrewake, "no-prewake", false, "do not wake fast modules ahead of their tick (their ticks then wake them from FUTEX_WAIT)")
	c.Flags().IntVar(&o.maxModules, "max-modules", layout.MaxModules,
		fmt.Sprintf("modules attached at once (1..%d); a module beyond it, with every slot held by a live module, is refused at its hello (permanently: exit %d)", layout.MaxModules, layout.ExitRefused))
	c.Flags().IntVar(&o.readers, "readers", layout.DefaultReaders,
		fmt.Sprintf("entries of the external reader table (%d..%d): tools and tests that read frames without being modules; modules do not use it", layout.MinReaders, layout.MaxReaders))
	c.Flags().UintSliceVar(&o.allowUIDs, "allow-uid", nil,
		"admit modules running under this uid too (repeatable; the control socket becomes connectable by every uid, admission is by SO_PEERCRED)")
	addLogFormatFlag(c, &o.logFormat)
}

// check refuses flag values the engine cannot run with, before anything
// is created (one line each).
func (o *runOpts) check() error {
	switch {
	case !layout.ValidInstanceName(o.instance):
		// Said before the lock or gc trips on it in its own words.
		return fmt.Errorf("--instance %q: want 1..%d characters of [A-Za-z0-9_-]", o.instance, layout.InstanceNameLen-1)
	case o.entities < 0:
		return fmt.Errorf("--entities %d: must be 0 or more", o.entities)
	case o.rate < 1:
		return fmt.Errorf("--rate %d: must be at least 1", o.rate)
	case o.duration < 0:
		return fmt.Errorf("--duration %v: must not be negative (0 = until SIGINT/SIGTERM)", o.duration)
	case o.status < 0:
		return fmt.Errorf("--status %v: must not be negative (0 = no status line)", o.status)
	case o.slots < 0:
		return fmt.Errorf("--slots %d: must be 0 or more (0 = 32)", o.slots)
	case o.maxModules < 1 || o.maxModules > layout.MaxModules:
		return fmt.Errorf("--max-modules %d: must be 1..%d", o.maxModules, layout.MaxModules)
	case o.readers < layout.MinReaders || o.readers > layout.MaxReaders:
		return fmt.Errorf("--readers %d: must be %d..%d", o.readers, layout.MinReaders, layout.MaxReaders)
	case o.keyframe < 1:
		return fmt.Errorf("--record-keyframe %d: must be at least 1", o.keyframe)
	case o.compress != "zstd" && o.compress != "none":
		return fmt.Errorf("--record-compression %q: want zstd or none", o.compress)
	}
	return nil
}

// uids converts the --allow-uid values.
func (o *runOpts) uids() ([]uint32, error) {
	out := make([]uint32, 0, len(o.allowUIDs))
	for _, u := range o.allowUIDs {
		if u > 1<<32-1 {
			return nil, fmt.Errorf("--allow-uid %d: not a uid", u)
		}
		out = append(out, uint32(u))
	}
	return out, nil
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// newRunCommand is `engine run`: the engine of w.
func newRunCommand(w World) *cobra.Command {
	o := &runOpts{}
	c := &cobra.Command{
		Use:   "run",
		Short: "Run the engine with the world of " + w.Name + " (modules attach through the control socket)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out, err := startCommand(cmd, o.logFormat, o.check)
			if err != nil {
				return err
			}
			defer out.close()
			if err := w.check(o.params(out.log)); err != nil {
				return out.fail(cmd, err)
			}
			ctx, stop := runContext(cmd, o.duration)
			defer stop()
			return out.fail(cmd, runEngine(ctx, w, o, out))
		},
	}
	o.flags(c, w)
	if w.Flags != nil {
		w.Flags(c.Flags())
	}
	return c
}

// params are the values the world is built with.
func (o *runOpts) params(log *slog.Logger) Params {
	return Params{Instance: o.instance, Entities: o.entities, Rate: o.rate, Log: log}
}

// runEngine builds (or recovers) the world of wd and runs the frame loop
// until ctx ends, logging to out.log and printing a status line
// (out.status) and a summary (out.out).
func runEngine(ctx context.Context, wd World, o *runOpts, out *output) error {
	log := out.log
	p := o.params(log)
	// The metrics address is bound first: a bad or busy one fails before
	// the simulation is built or anything can attach.
	ln, err := listenMetrics(o.metrics)
	if err != nil {
		return err
	}
	served := false
	defer func() {
		if !served && ln != nil {
			ln.Close()
		}
	}()
	// Engine recovery: if a killed engine of this instance left its world
	// (the world segment, or an aside copy kept by an engine killed before
	// its first publish), rebuild the world from the newest recoverable
	// published frame into an empty world of the same configuration. The
	// old world is renamed aside, not removed, until this engine has
	// published; the other stale segments are removed. When nothing can be
	// recovered (no previous engine, corrupt segment, schema change) the
	// reason is logged and the world is built from scratch.
	// Ownership first: nothing of the instance is created or removed while
	// another engine or an `engine up` owns it.
	release, err := claimEngine(o.instance)
	if err != nil {
		return err
	}
	defer release()
	w, rec, err := host.PrepareStart(o.instance, func() (*world.World, error) { return wd.newWorld(p) }, log)
	if err != nil {
		return err
	}
	recovered := w != nil
	if !recovered {
		if w, err = wd.newWorld(p); err != nil {
			return err
		}
	}
	sim, err := wd.Simulation(w, recovered, p)
	if err != nil {
		return err
	}
	uids, err := o.uids()
	if err != nil {
		return err
	}
	limit, err := parseBytes(o.shmLimit)
	if err != nil {
		return fmt.Errorf("--shm-limit: %w", err)
	}
	if resume := max(rec.Frame, rec.ResumeFrame); resume > 0 && o.record != "" {
		// A previous engine of the instance died: its recording (cut
		// short, readable up to its last complete frame) is kept.
		if kept, err := keepRecording(o.record, resume); err != nil {
			return err
		} else if kept != "" {
			log.Info("kept the dead engine's recording", "file", kept, "resume_frame", resume)
		}
	}
	if err := checkRecordTarget(o.record, o.overwrite); err != nil {
		return err
	}
	eng, err := host.New(host.Config{Instance: o.instance, FrameRate: o.rate, NoPrewake: o.noPrewake, AllowUIDs: uids, Logger: log,
		MaxModules: o.maxModules, Readers: o.readers, Slots: o.slots, ShmLimit: limit, SlotIdle: o.slotIdle,
		Record: host.RecordConfig{File: o.record, KeyframeEvery: o.keyframe, Overwrite: o.overwrite, Uncompressed: o.compress == "none"}}, w, sim)
	if err != nil {
		return err
	}
	// Readers never see frame numbers go backwards: resume after the highest
	// frame a previous engine published, recovered or not. On the recovered
	// world this publishes it at once and removes the aside copies.
	if resume := max(rec.Frame, rec.ResumeFrame); resume > 0 {
		if err := eng.ResumeAfter(resume); err != nil {
			eng.Close()
			return err
		}
	}
	defer eng.Close()
	if ln != nil {
		served = true
		defer metrics.Serve(ln, metrics.EngineRegistry(eng), log)()
	}
	log.Info("engine running", "instance", o.instance, "entities", w.Count(), "rate", o.rate, "pid", os.Getpid())
	if o.record != "" {
		log.Info("recording", "file", o.record, "keyframe_every", o.keyframe)
	}
	start := time.Now()
	pub := eng.Publisher()
	lastStatus, lastPub, lastSkipped, lastRefused, lastNoMem := start, pub.Publishes, pub.Skipped, eng.Bounds().SnapshotsRefused, pub.PubNoSpace
	lastRec := eng.Recorder()
	var late, rejected, commands int
	err = eng.Run(ctx, func(st host.FrameStats) {
		late += st.Late
		// Remote modules' (on mirrors) commands count with the local
		// ones; the summary names their share.
		rejected += st.Rejected + st.RemoteRejected
		commands += st.Commands + st.RemoteCommands
		if o.status > 0 && time.Since(lastStatus) >= o.status {
			now := time.Now()
			refused := eng.Bounds().SnapshotsRefused
			line := statusLine(eng, st, w.Count(), now.Sub(lastStatus), pub.Publishes-lastPub, pub.Skipped-lastSkipped,
				pub.PubNoSpace-lastNoMem, refused-lastRefused, commands, rejected, late)
			if rs := eng.Recorder(); rs.On {
				line += "  " + recordStatus(lastRec, rs, now.Sub(lastStatus))
				lastRec = rs
			}
			if wd.Status != nil {
				if more := wd.Status(sim); more != "" {
					line += "  " + more
				}
			}
			fmt.Fprintln(out.status, line)
			lastStatus, lastPub, lastSkipped, lastRefused, lastNoMem = now, pub.Publishes, pub.Skipped, refused, pub.PubNoSpace
		}
	})
	var more func(io.Writer)
	if wd.Summary != nil {
		more = func(out io.Writer) { wd.Summary(out, sim) }
	}
	// The recording ends before the summary, so that it shows the file
	// as it stays (its index written).
	recErr := eng.StopRecording()
	if errors.Is(recErr, host.ErrNotRecording) {
		recErr = nil
	}
	printSummary(out.out, eng, time.Since(start), commands, rejected, late, more)
	return errors.Join(err, recErr)
}

// recordStatus is the recorder's part of the status line: frames in the
// file and dropped (both since the start), and the file's growth over the
// interval d since prev: bytes written to the file per second (MB = 10^6
// bytes), what the disk takes.
func recordStatus(prev, cur host.RecorderStats, d time.Duration) string {
	s := fmt.Sprintf("rec %d frames  dropped %d  %.2f MB  %.2f MB/s", cur.Written, cur.Dropped, float64(cur.FileBytes)/1e6,
		recordRate(cur.FileBytes-prev.FileBytes, d))
	if cur.Err != "" {
		s += "  RECORDING FAILED: " + cur.Err
	}
	return s
}

// recordRate is bytes over d in MB/s (0 for a zero d).
func recordRate(bytes uint64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(bytes) / 1e6 / d.Seconds()
}

// statusLine formats the engine's status line for an interval of d in
// which published frames were published, noSlot publishes found no free
// slot (noMem of them because no slot could be given memory) and refused
// snapshots were refused to due convoy groups (Engine.Bounds().SnapshotsRefused). The frame rate counts
// publishes, never frames that were not published; publishes without a
// free slot are shown, with a warning when nothing was published at all,
// and so are refused snapshots.
func statusLine(eng *host.Engine, st host.FrameStats, entities int, d time.Duration, published, noSlot, noMem, refused uint64, commands, rejected, late int) string {
	fps := float64(published) / d.Seconds()
	up := 0
	for _, m := range eng.Modules() {
		if m.State != host.StateDead && m.State != host.StateLeft {
			up++
		}
	}
	line := fmt.Sprintf("status: frame %d  %.1f fps  publish p50 %v p99 %v  frame p99 %v  tick wake p50 %v  modules up %d  entities %d  commands %d  rejected %d  late %d  shm %s",
		st.Frame, fps, logs.Round3(eng.PubHist.Percentile(50)), logs.Round3(eng.PubHist.Percentile(99)), logs.Round3(eng.Hist.Percentile(99)), logs.Round3(eng.WakeHist.Percentile(50)), up, entities, commands, rejected, late,
		fmtBytes(eng.Publisher().Backed()))
	if rejected > 0 {
		line += rejectReasons(eng)
	}
	if noSlot > 0 {
		line += fmt.Sprintf("  no free slot %d", noSlot)
		if noMem > 0 {
			line += fmt.Sprintf(" (%d for memory)", noMem)
		}
		if published == 0 {
			if noMem > 0 {
				line += "  WARNING: nothing published (no memory for a slot: the shm directory is full, or --shm-limit)"
			} else {
				line += "  WARNING: nothing published (every slot pinned or leased)"
			}
		}
	}
	if refused > 0 {
		line += fmt.Sprintf("  snapshots refused %d", refused)
	}
	return line + timeText(eng.TimeControl())
}

// timeText is the status line's time control: nothing when running at
// speed 1.
func timeText(tc ipc.CtlState) string {
	s := ""
	if tc.Speed != 1 {
		s += "  speed " + strconv.FormatFloat(tc.Speed, 'g', -1, 64)
	}
	if tc.Paused {
		s += "  PAUSED"
		if tc.Steps > 0 {
			s += fmt.Sprintf(" (%d steps pending)", tc.Steps)
		}
	}
	return s
}

// printSummary prints what the engine did: frames, publishes, validation,
// the snapshot pool, wake latencies, the world, and each module's counters
// (the same figures its segment's statistics block holds); more, if not nil,
// writes the world's own lines after the world's.
func printSummary(w io.Writer, eng *host.Engine, d time.Duration, commands, rejected, late int, more func(io.Writer)) {
	pf := func(format string, a ...any) { fmt.Fprintf(w, format, a...) }
	pf("\n== FDP engine summary ==\n")
	pf("engine frames %d in %v, %d published (%.1f fps); frame time p50 %v p99 %v max %v\n",
		eng.Frames, logs.Round3(d), eng.Publisher().Publishes, float64(eng.Publisher().Publishes)/d.Seconds(),
		logs.Round3(eng.Hist.Percentile(50)), logs.Round3(eng.Hist.Percentile(99)), logs.Round3(eng.Hist.Max()))
	p := eng.Publisher()
	pf("publish p50 %v p99 %v; %d publishes (%.1f/s), %d without a free slot, %.1f MB copied\n",
		logs.Round3(eng.PubHist.Percentile(50)), logs.Round3(eng.PubHist.Percentile(99)), p.Publishes, float64(p.Publishes)/d.Seconds(), p.Skipped, float64(p.Bytes)/1e6)
	cs := eng.ControlStats()
	pf("validation: slot state reclaimed %d, hellos refused for their mask %d, for a name of another uid %d, peers refused for their uid %d (of %d connections refused), implausible wake reports ignored %d\n",
		eng.ReclaimedReaders, eng.BadMasks, eng.NamesRefused(), cs.PeerRefused, cs.Refused, eng.BadWakeReports)
	tc, state := eng.TimeControl(), "running"
	if tc.Paused {
		state = "paused"
	}
	pf("time control: %d requests served, %d refused (%d malformed); ended %s at speed %s\n",
		cs.CtlServed, cs.CtlRefused, cs.BadCtl, state, strconv.FormatFloat(tc.Speed, 'g', -1, 64))
	pf("snapshots (SoD/convoy) %d, %.1f MB copied; pool reuse %s: snapshots into a slot that already held a frame, copying only changes; %d refused to a due group (%d of them for memory)\n",
		eng.Snapshots, float64(eng.SnapBytes)/1e6, reuseRate(p.SnapshotsReused, p.Snapshots), eng.Bounds().SnapshotsRefused, p.SnapNoSpace)
	trim := fmt.Sprintf("%d slots trimmed after %v unused", p.Trimmed, eng.Config().SlotIdle)
	if eng.Config().SlotIdle < 0 {
		trim = "slots never trimmed (--slot-idle negative)"
	}
	pf("shared memory: world segment holds %s (at most %s during the run; %s reserved over %d slots, limit %s); %s; %d publishes skipped for memory\n",
		fmtBytes(p.Backed()), fmtBytes(p.BackedMax), fmtBytes(int64(p.Layout().TotalSize)), p.Layout().Slots, limitText(eng.Config().ShmLimit),
		trim, p.PubNoSpace)
	pf("fast-tier tick wake latency p50 %v p99 %v max %v over %d ticks (pre-wake %v)\n",
		logs.Round3(eng.WakeHist.Percentile(50)), logs.Round3(eng.WakeHist.Percentile(99)), logs.Round3(eng.WakeHist.Max()), eng.WakeHist.Count(), !eng.Config().NoPrewake)
	remote := ""
	if ra, rr, _ := eng.RemoteTotals(); ra+rr > 0 {
		remote = fmt.Sprintf(" (remote modules: applied %d, rejected %d)", ra, rr)
	}
	pf("world: %d entities alive; commands applied %d, rejected %d%s%s; late fast ticks %d\n",
		eng.World().Count(), commands, rejected, rejectReasons(eng), remote, late)
	if rs := eng.Recorder(); rs.On {
		ratio := "-"
		if rs.FileBytes > 0 {
			ratio = fmt.Sprintf("%.1fx", float64(rs.RawBytes)/float64(rs.FileBytes))
		}
		pf("recorder: %s: %d frames (%d keyframes), %d dropped (capture busy %d, queue full %d, over the frame bound %d, failed %d); %d bytes (raw %d, compression %s), %.2f MB/s over %v\n",
			rs.File, rs.Written, rs.Keyframes, rs.Dropped, rs.DroppedBusy, rs.DroppedQueue, rs.DroppedOverflow, rs.DroppedError,
			rs.FileBytes, rs.RawBytes, ratio, recordRate(rs.FileBytes, d), logs.Round3(d))
		if rs.Err != "" {
			pf("recorder: FAILED: %s\n", rs.Err)
		}
	}
	if more != nil {
		more(w)
	}
	owned := eng.ModuleEntities()
	for _, m := range eng.Modules() {
		pf("module %-10s %-4s every %-3d %-12s runs %-6d late %-4d failures %-3d applied %-6d rejected %-4d deaths %d joins %d  prewoken %d wakes warm %d cold %d segment faults %d forged done %d entities %d\n",
			m.Name, m.Tier, m.Every, m.State, m.Stats.Runs, m.Stats.Late, m.Stats.Failures, m.Stats.Applied, m.Stats.Rejected, m.Stats.Deaths, m.Stats.Joins, m.Stats.Prewoken, m.Wake.Warm, m.Wake.Cold, m.Stats.SegmentFaults, m.Stats.BadDone, owned[m.Name])
		pf("module %-10s ticks %d p50 %v p99 %v max %v; lag %d frames (max %d); skipped %d; snapshots %d (catch-ups %d); breaker trips %d; overruns %d; events delivered %d lost %d\n",
			m.Name, m.Ticks, logs.Round3(m.TickP50), logs.Round3(m.TickP99), logs.Round3(m.TickMax), m.Stats.LagFrames, m.Stats.LagMax, m.Stats.Skipped, m.Stats.Snapshots,
			m.Stats.CatchUps, m.Stats.BreakerTrips, m.Stats.Overruns, m.Stats.EventsDelivered, m.Stats.EventsLost)
		if len(m.PlaybackRejectReasons) > 0 {
			reasons := make([]string, 0, len(m.PlaybackRejectReasons))
			for r, n := range m.PlaybackRejectReasons {
				reasons = append(reasons, fmt.Sprintf("%s %d", r, n))
			}
			sort.Strings(reasons)
			pf("module %-10s rejected by reason: %s\n", m.Name, strings.Join(reasons, ", "))
		}
	}
}

// reuseRate renders reused of total as "n of m (p%)", or "-" when total is 0.
func reuseRate(reused, total uint64) string {
	if total == 0 {
		return "-"
	}
	return fmt.Sprintf("%d of %d (%.0f%%)", reused, total, 100*float64(reused)/float64(total))
}

// rejectReasons renders the modules' rejected commands by reason, summed
// over the modules the engine knows (their counts since they joined), as
// " (stale_entity 100, unknown_component 8)"; "" when none was rejected.
func rejectReasons(eng *host.Engine) string {
	sum := map[string]uint64{}
	for _, m := range eng.Modules() {
		for r, n := range m.PlaybackRejectReasons {
			sum[r] += n
		}
	}
	_, _, remote := eng.RemoteTotals()
	for r, n := range remote {
		sum[r] += n
	}
	if len(sum) == 0 {
		return ""
	}
	parts := make([]string, 0, len(sum))
	for r, n := range sum {
		parts = append(parts, fmt.Sprintf("%s %d", r, n))
	}
	sort.Strings(parts)
	return " (" + strings.Join(parts, ", ") + ")"
}

// checkRecordTarget refuses, before the engine starts, a --record FILE
// that exists without --record-overwrite, and one that is not a recording
// (or an empty file) even with it (record.CheckOverwrite). The recovery
// case has moved the dead engine's file aside before (keepRecording).
func checkRecordTarget(path string, overwrite bool) error {
	if path == "" {
		return nil
	}
	if err := record.CheckOverwrite(path); err != nil {
		return fmt.Errorf("--record: %w", err)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() && !overwrite {
		return fmt.Errorf("--record %s: the file exists (%d bytes); --record-overwrite (config record.overwrite: true) replaces it", path, fi.Size())
	}
	return nil
}

// keepRecording moves the recording file a dead engine left at path aside,
// to path.<frame> (frame: the last frame that engine published), so that
// the new engine's recording does not truncate it. It returns the new name
// ("" when there was no file).
func keepRecording(path string, frame uint64) (string, error) {
	if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	kept := fmt.Sprintf("%s.%d", path, frame)
	if err := os.Rename(path, kept); err != nil {
		return "", fmt.Errorf("--record: keeping the dead engine's recording: %w", err)
	}
	return kept, nil
}
