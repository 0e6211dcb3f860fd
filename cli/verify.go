package cli

// engine verify: audit the published frames of an instance (package audit)
// read-only, without a pin, while its engine runs or after it died.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/fdp-engine/fdp/audit"
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/shm"
	"github.com/spf13/cobra"
)

// verifyOpts are the flags of engine verify.
type verifyOpts struct {
	frames   int
	duration time.Duration
	idle     time.Duration
	asJSON   bool
}

// verifyProblem is a problem with the frame of the slot it was found in.
type verifyProblem struct {
	Frame uint64 `json:"frame"`
	audit.Problem
}

// verifyResult is the summary of engine verify (--json prints it).
type verifyResult struct {
	Instance     string          `json:"instance"`
	Segment      string          `json:"segment"`
	Frames       int             `json:"frames"` // distinct latest frames audited
	FirstFrame   uint64          `json:"first_frame"`
	LastFrame    uint64          `json:"last_frame"`
	Retries      int             `json:"retries"` // reads repeated because the engine published meanwhile
	Slots        int             `json:"slots"`   // complete slots audited once at the end
	SlotsBusy    int             `json:"slots_busy"`
	Inconsistent int             `json:"inconsistent"` // audits (frames and slots) with problems
	Problems     int             `json:"problems"`     // problems found, in total
	ByKind       map[string]int  `json:"by_kind"`
	First        []verifyProblem `json:"first"` // the first problems, at most maxVerifyDetails
}

const maxVerifyDetails = 10

func (r *verifyResult) record(rep audit.Report) {
	if rep.OK() {
		return
	}
	r.Inconsistent++
	r.Problems += len(rep.Problems) + rep.Dropped
	for _, p := range rep.Problems {
		r.ByKind[p.Kind.String()]++
		if len(r.First) < maxVerifyDetails {
			r.First = append(r.First, verifyProblem{Frame: rep.Info.Frame, Problem: p})
		}
	}
}

func newVerifyCmd() *cobra.Command {
	o := &verifyOpts{}
	c := &cobra.Command{
		Use:   "verify INSTANCE | SEGMENT | PATH",
		Short: "Audit an instance's published frames read-only: every invariant of the latest frames and of every slot",
		Long: "Map the instance's world segment read-only and audit the latest frame again and again until --frames distinct\n" +
			"frames were checked (with --duration alone: until it passed), or no new frame came for --idle (a stopped\n" +
			"engine; a dead one is audited once); then audit\n" +
			"every other complete slot once. Frames are copied under the seqlock rule without a pin: a frame rewritten\n" +
			"during its copy is read again (a retry), never reported. Exits 1 when any frame breaks an invariant, and when\n" +
			"nothing was published (nothing to verify).\n" +
			"The argument is resolved as by dump: PATH when it contains '/' or names an existing file (e.g. a copy of a crashed\n" +
			"engine's segment), else SEGMENT (fdp.demo.world.prev, demo.world.prev); a name without '.' that names no file is\n" +
			"an INSTANCE, whose world segment is verified.",
		Args: cobra.ExactArgs(1),

		ValidArgsFunction: completeSegment(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.frames < 1 {
				return errors.New("verify: --frames must be at least 1")
			}
			if o.duration > 0 && !cmd.Flags().Changed("frames") {
				o.frames = math.MaxInt // --duration alone: as many frames as come
			}
			ctx, stop := signal.NotifyContext(cmdContext(cmd), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return runVerify(ctx, cmd.OutOrStdout(), args[0], o)
		},
	}
	c.Flags().IntVar(&o.frames, "frames", 60, "distinct latest frames to audit")
	c.Flags().DurationVar(&o.duration, "duration", 0, "stop after this long even with fewer frames (0: no limit)")
	c.Flags().DurationVar(&o.idle, "idle", time.Second, "stop when no new frame was published for this long")
	c.Flags().BoolVar(&o.asJSON, "json", false, "print the summary as JSON")
	return c
}

func runVerify(ctx context.Context, w io.Writer, instance string, o *verifyOpts) error {
	// Read-only mapping: verify never writes. The argument is resolved as
	// dump resolves it (openSegment): a path when it contains '/' or names
	// an existing file (`engine verify crashcopy` reads ./crashcopy), else
	// a segment name; except that a name without '.' that names no file is
	// an instance (layout.ValidInstanceName allows no '.'), whose world
	// segment is verified.
	var seg *shm.Segment
	var err error
	if isFileArg(instance) || strings.Contains(instance, ".") {
		seg, err = openSegment([]string{instance})
	} else {
		seg, err = shm.Open(shm.SegmentName(instance, "world"), false)
		if err != nil {
			err = openError(instance, shm.SegmentName(instance, "world"), err)
		}
	}
	if err != nil {
		return err
	}
	defer seg.Close()
	lw, err := layout.DecodeWorld(seg.Data)
	if err != nil {
		return fmt.Errorf("%s: %w", seg.Path, err)
	}
	res := verifyResult{Instance: instance, Segment: seg.Path, ByKind: map[string]int{}}
	idle := o.idle
	if !shm.ProcessAlive(lw.Header.CreatorPID, lw.Header.CreatorTime) {
		idle = 0 // the engine is dead: its latest frame will not change
	}
	start := time.Now()
	lastNew := start
	var last uint64
	lastSlot := -1
	for res.Frames < o.frames && ctx.Err() == nil {
		now := time.Now()
		if o.duration > 0 && now.Sub(start) >= o.duration {
			break
		}
		rep, err := audit.Latest(seg.Data, lw)
		switch {
		case errors.Is(err, audit.ErrRetry):
			res.Retries++
			continue
		case errors.Is(err, audit.ErrNothingPublished):
		case err != nil:
			return fmt.Errorf("%s: %w", seg.Path, err)
		case res.Frames == 0 || rep.Info.Frame != last:
			if rep.Info.Frame == 0 {
				// The latest word itself is broken (no slot header was
				// read): report the frame it names.
				rep.Info.Frame, _, _ = layout.UnpackLatest(layout.Load64(seg.Data, layout.OffWLatest))
			}
			if res.Frames == 0 {
				res.FirstFrame = rep.Info.Frame
			}
			last, lastSlot, lastNew = rep.Info.Frame, rep.Slot, now
			res.LastFrame = last
			res.Frames++
			res.record(rep)
			continue
		}
		if now.Sub(lastNew) >= idle {
			break
		}
		// Waiting for the engine's next frame: poll the latest word.
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Microsecond):
		}
	}
	// Every other complete slot once (the latest one was audited above
	// unless a newer frame came since).
	if f, s, ok := layout.UnpackLatest(layout.Load64(seg.Data, layout.OffWLatest)); !ok || s != lastSlot || f != last {
		lastSlot = -1
	}
	for s := 0; s < lw.Slots; s++ {
		if s == lastSlot {
			continue
		}
		rep, err := audit.Slot(seg.Data, lw, s)
		switch {
		case errors.Is(err, audit.ErrEmpty):
		case errors.Is(err, audit.ErrRetry):
			res.SlotsBusy++
		case err != nil:
			return fmt.Errorf("%s: %w", seg.Path, err)
		default:
			res.Slots++
			res.record(rep)
		}
	}
	if o.asJSON {
		err = writeJSON(w, res, true)
	} else {
		err = verifyText(w, &res)
	}
	if err != nil {
		return err
	}
	if res.Inconsistent > 0 {
		return fmt.Errorf("%s: %d inconsistent frame(s), %d problem(s), first: frame %d %s",
			seg.Path, res.Inconsistent, res.Problems, res.First[0].Frame, res.First[0].Problem)
	}
	if res.Frames == 0 && res.Slots == 0 {
		return fmt.Errorf("%s: nothing published: no frame to verify", seg.Path)
	}
	return nil
}

func verifyText(w io.Writer, r *verifyResult) error {
	fmt.Fprintf(w, "%s: %d frame(s) audited", r.Segment, r.Frames)
	if r.Frames > 0 {
		fmt.Fprintf(w, " (frames %d..%d)", r.FirstFrame, r.LastFrame)
	}
	fmt.Fprintf(w, ", %d retries; %d other complete slot(s) audited, %d being written\n", r.Retries, r.Slots, r.SlotsBusy)
	if r.Inconsistent == 0 {
		if r.Frames == 0 && r.Slots == 0 {
			return nil // nothing published: runVerify fails
		}
		_, err := fmt.Fprintln(w, "OK: every audited frame satisfies every invariant")
		return err
	}
	fmt.Fprintf(w, "INCONSISTENT: %d problem(s) in %d audit(s)\n", r.Problems, r.Inconsistent)
	kinds := make([]string, 0, len(r.ByKind))
	for k := range r.ByKind {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		fmt.Fprintf(w, "  %-18s %d\n", k, r.ByKind[k])
	}
	for _, p := range r.First {
		fmt.Fprintf(w, "  frame %d %s\n", p.Frame, p.Problem)
	}
	return nil
}
