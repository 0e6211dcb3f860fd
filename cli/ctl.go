package cli

// `engine ctl INSTANCE pause|resume|step [N]|speed X|seek FRAME|status`:
// time control over the engine's control socket (ipc.Ctl; the request is
// documented in docs/PROTOCOL.md, "Time control requests").

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/fdp-engine/fdp/ipc"
	"github.com/spf13/cobra"
)

func newCtlCmd() *cobra.Command {
	var asJSON, noWait bool
	var timeout time.Duration
	c := &cobra.Command{
		Use:   "ctl INSTANCE pause|resume|step [N]|speed X|seek FRAME|status",
		Short: "Time control of a running engine: pause, resume, step N frames, set the speed, seek (replay), status",
		Long: "Send one time-control request to the engine of INSTANCE over its control socket and print its state after it.\n" +
			"  pause      no simulation, no publish, no ticks (joins, deaths, stat still served)\n" +
			"  resume     run again at the frame rate (drops steps not run yet)\n" +
			"  step [N]   run exactly N frames (default 1), then stay paused; waits until they ran (--no-wait: not)\n" +
			fmt.Sprintf("  speed X    %v <= X <= %d: a live engine keeps its frame rate and steps dt = period × X;\n", ipc.CtlMinSpeed, ipc.CtlMaxSpeed) +
			"             a replay publishes at the recorded rate × X\n" +
			"  seek FRAME a replay only: go to the recorded frame FRAME (a live engine refuses it); waits until it is\n" +
			"             published (--no-wait: not), through the moment a seek back replaces the replay's engine\n" +
			"  status     change nothing",
		Args:              cobra.RangeArgs(2, 3),
		ValidArgsFunction: completeCtl,
		RunE: func(cmd *cobra.Command, args []string) error {
			req, err := parseCtl(args[1], args[2:])
			if err != nil {
				return err
			}
			if timeout <= 0 {
				return errors.New("ctl: --timeout must be positive")
			}
			return runCtl(cmdContext(cmd), cmd.OutOrStdout(), args[0], req, timeout, !noWait, asJSON)
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print the engine's state as JSON")
	c.Flags().BoolVar(&noWait, "no-wait", false, "step, seek: return at once instead of waiting until the frames ran (the frame asked is published)")
	c.Flags().DurationVar(&timeout, "timeout", 5*time.Second, "how long to wait for the engine's reply")
	return c
}

// parseCtl turns the operation and its argument into a request (checked
// as the engine checks it).
func parseCtl(op string, rest []string) (ipc.CtlRequest, error) {
	req := ipc.CtlRequest{Op: ipc.CtlOp(op)}
	arg := ""
	if len(rest) > 0 {
		arg = rest[0]
	}
	need := func(what string) error {
		if arg == "" {
			return fmt.Errorf("ctl %s: missing %s", op, what)
		}
		return nil
	}
	switch req.Op {
	case ipc.CtlPause, ipc.CtlResume, ipc.CtlStatus:
		if arg != "" {
			return req, fmt.Errorf("ctl %s: unexpected argument %q (%s takes none)", op, arg, op)
		}
	case ipc.CtlStep:
		req.Frames = 1
		if arg != "" {
			n, err := strconv.ParseUint(arg, 10, 64)
			if err != nil || n < 1 || n > ipc.CtlMaxStep {
				return req, fmt.Errorf("ctl step %q: want a number of frames, 1..%d", arg, ipc.CtlMaxStep)
			}
			req.Frames = n
		}
	case ipc.CtlSpeed:
		if err := need(fmt.Sprintf("the speed X (%v <= X <= %d)", ipc.CtlMinSpeed, ipc.CtlMaxSpeed)); err != nil {
			return req, err
		}
		x, err := strconv.ParseFloat(arg, 64)
		if err != nil {
			return req, fmt.Errorf("ctl speed %q: not a number (want %v <= X <= %d)", arg, ipc.CtlMinSpeed, ipc.CtlMaxSpeed)
		}
		req.Speed = x
	case ipc.CtlSeek:
		if err := need("the frame to go to"); err != nil {
			return req, err
		}
		f, err := strconv.ParseUint(arg, 10, 64)
		if err != nil {
			return req, fmt.Errorf("ctl seek %q: want a frame number", arg)
		}
		req.Frame = f
	default:
		names := make([]string, len(ipc.CtlOps))
		for i, o := range ipc.CtlOps {
			names[i] = o.String()
		}
		return req, fmt.Errorf("ctl: unknown operation %q (one of %s)", op, strings.Join(names, ", "))
	}
	if err := req.Validate(); err != nil {
		return req, fmt.Errorf("ctl %s: %w", op, err)
	}
	return req, nil
}

func runCtl(ctx context.Context, w io.Writer, instance string, req ipc.CtlRequest, timeout time.Duration, wait, asJSON bool) error {
	st, err := ipc.Ctl(instance, req, timeout)
	if err != nil {
		return ctlError(instance, err)
	}
	if req.Op == ipc.CtlStep && wait && st.Steps > 0 {
		// The steps run at the frame rate: poll until none is pending (or
		// another client resumed), bounded by twice their time and the
		// timeout.
		deadline := time.Now().Add(2*time.Duration(st.Steps)*time.Duration(st.PeriodNanos) + timeout)
		for st.Steps > 0 && st.Paused {
			if time.Now().After(deadline) {
				return fmt.Errorf("ctl step: %d of the frames still pending after %v (the engine is slower than its frame rate)",
					st.Steps, time.Since(deadline.Add(-2*time.Duration(st.Steps)*time.Duration(st.PeriodNanos)-timeout)).Round(time.Millisecond))
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Duration(max(st.PeriodNanos, int64(time.Millisecond)))):
			}
			if st, err = ipc.Ctl(instance, ipc.CtlRequest{Op: ipc.CtlStatus}, timeout); err != nil {
				return ctlError(instance, err)
			}
			st.Op = req.Op
		}
	}
	if req.Op == ipc.CtlSeek && wait {
		if st, err = seekWait(ctx, instance, req.Frame, st, timeout); err != nil {
			return err
		}
		st.Op = req.Op
	}
	if asJSON {
		return writeJSON(w, st, false)
	}
	_, err = fmt.Fprintln(w, ctlLine(instance, st))
	return err
}

// SeekGap bounds how long `engine ctl … seek` waits through the gap of a
// seek back, when the replay replaces its engine and the instance has no
// control socket for a moment (docs/PERFORMANCE.md: ~0.4–0.65 s at 100K
// entities): ErrNoEngine is retried for this long.
const SeekGap = 5 * time.Second

// seekWait polls the status after a seek until the frame asked (or the
// last recorded before it) is published, so that the state printed is
// the one after the seek. A paused replay: until no step is pending (the
// seek runs the frame asked as one step); a running one: until a forward
// seek reached the frame, or a seek back shows the new engine (a lower
// frame, or a gap without an engine). Through the gap of a seek back
// (SeekGap) a missing engine is retried.
func seekWait(ctx context.Context, instance string, target uint64, st ipc.CtlState, timeout time.Duration) (ipc.CtlState, error) {
	before, back, paused := st.Frame, target <= st.Frame, st.Paused
	gap := false
	deadline := time.Now().Add(SeekGap + timeout)
	period := time.Duration(max(min(st.PeriodNanos, int64(10*time.Millisecond)), int64(time.Millisecond)))
	for {
		cur, err := ipc.Ctl(instance, ipc.CtlRequest{Op: ipc.CtlStatus}, timeout)
		switch {
		case (errors.Is(err, ipc.ErrNoEngine) || errors.Is(err, ipc.ErrControl)) && back:
			gap = true // gone, or closing under the status request
		case err != nil:
			return st, ctlError(instance, err)
		case paused && cur.Steps == 0 && (!back || gap || cur.Frame < before):
			return cur, nil
		case !paused && !back && cur.Frame >= target:
			return cur, nil
		case !paused && back && (gap || cur.Frame < before):
			return cur, nil
		case !cur.Paused && paused, cur.Paused && !paused && cur.Steps == 0:
			return cur, nil // another client resumed or paused meanwhile
		}
		if time.Now().After(deadline) {
			return st, fmt.Errorf("ctl seek %d: the frame was not published within %v", target, SeekGap+timeout)
		}
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case <-time.After(period):
		}
	}
}

// ctlLine is the state in one line.
func ctlLine(instance string, st ipc.CtlState) string {
	state := "running"
	if st.Paused {
		state = "paused"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s at frame %d, sim time %s, speed %s", instance, state, st.Frame,
		time.Duration(st.SimNanos).Round(time.Millisecond), strconv.FormatFloat(st.Speed, 'g', -1, 64))
	if st.Steps > 0 {
		fmt.Fprintf(&b, ", %d steps pending", st.Steps)
	}
	if st.Replay {
		fmt.Fprintf(&b, ", replay of frames %d..%d", st.First, st.Last)
	}
	return b.String()
}

// ctlError says a refusal in one line: an instance without a live engine
// names the instances there are.
func ctlError(instance string, err error) error {
	if errors.Is(err, ipc.ErrNoEngine) {
		if !instanceExists(instance) {
			if uerr := unknownInstance(instance); uerr != nil {
				return fmt.Errorf("ctl: %w", uerr)
			}
		}
		return fmt.Errorf("ctl: instance %q has no live engine: %w", instance, err)
	}
	var r *ipc.CtlRefusal
	if errors.As(err, &r) {
		return fmt.Errorf("ctl: engine %q refused: %s", instance, r.Msg)
	}
	return fmt.Errorf("ctl: %w", err)
}

// completeCtl completes the instance, then the operation.
func completeCtl(cmd *cobra.Command, args []string, to string) ([]string, cobra.ShellCompDirective) {
	if len(args) != 1 {
		return completeInstance(cmd, args, to)
	}
	ops := make([]string, len(ipc.CtlOps))
	for i, o := range ipc.CtlOps {
		ops[i] = o.String()
	}
	return ops, cobra.ShellCompDirectiveNoFileComp
}
