package cli

// Refusals that say why: a positional argument a command does not take, a
// flag out of range, an instance that does not exist (with the ones that
// do), a segment directory that is missing. Each is one line.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/fdp-engine/fdp/shm"
	"github.com/spf13/cobra"
)

// noArgs refuses any positional argument of a command that takes none,
// naming it and, for commands with an --instance flag, the flag it was
// probably meant for: `engine run ux3` must not run instance demo.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	msg := fmt.Sprintf("%s: unexpected argument %q", cmd.CommandPath(), args[0])
	if cmd.Flags().Lookup("instance") != nil {
		msg += fmt.Sprintf(" (the instance is a flag: --instance %s)", args[0])
	}
	return errors.New(msg)
}

// atLeast refuses an integer flag below lo, naming the flag.
func atLeast(flag string, v, lo int, why string) error {
	if v < lo {
		return fmt.Errorf("--%s %d: must be %d or more%s", flag, v, lo, why)
	}
	return nil
}

// liveInstances lists the instances whose world segment has a live engine,
// sorted, and the others that have segments left (stale, corrupt, a dead
// engine's).
func liveInstances() (live, other []string) {
	infos, err := shm.List()
	if err != nil {
		return nil, nil
	}
	for _, in := range infos {
		if in.Instance == "" {
			continue
		}
		if in.Kind == shm.WorldKind && in.State == shm.StateLive {
			live = append(live, in.Instance)
		}
	}
	for _, in := range infos {
		if in.Instance != "" && !slices.Contains(live, in.Instance) && !slices.Contains(other, in.Instance) {
			other = append(other, in.Instance)
		}
	}
	slices.Sort(live)
	slices.Sort(other)
	return live, other
}

// instanceExists reports whether any segment of instance is in the
// segment directory.
func instanceExists(instance string) bool {
	live, other := liveInstances()
	return slices.Contains(live, instance) || slices.Contains(other, instance)
}

// unknownInstance is the refusal of an instance with no segment: the
// segment directory first when it is missing, else the instances there are.
func unknownInstance(instance string) error {
	if err := shm.CheckDir(); err != nil {
		return err
	}
	return notFound(fmt.Sprintf("no instance %q in %s; %s", instance, shm.Dir, instancesText()))
}

// notFound is a refusal for something absent: its message says which and
// what there is instead; errors.Is(err, os.ErrNotExist) still holds.
type notFound string

func (e notFound) Error() string { return string(e) }
func (e notFound) Unwrap() error { return os.ErrNotExist }

// instancesText names the instances of the segment directory.
func instancesText() string {
	live, other := liveInstances()
	var parts []string
	if len(live) > 0 {
		parts = append(parts, "live: "+strings.Join(live, ", "))
	} else {
		parts = append(parts, "no live instance")
	}
	if len(other) > 0 {
		parts = append(parts, "without a live engine: "+strings.Join(other, ", "))
	}
	return strings.Join(parts, "; ")
}

// openError explains a failure to open segment (a file name) of instance: a missing
// segment directory, an instance that does not exist (with the ones that
// do), or a segment the instance does not have (with the ones it has) is
// said as such; anything else is returned as is.
func openError(instance, segment string, err error) error {
	if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if derr := shm.CheckDir(); derr != nil {
		return derr
	}
	if !instanceExists(instance) {
		return notFound(fmt.Sprintf("%s does not exist: no instance %q in %s; %s",
			filepath.Join(shm.Dir, segment), instance, shm.Dir, instancesText()))
	}
	return notFound(fmt.Sprintf("%s does not exist: instance %q has %s",
		filepath.Join(shm.Dir, segment), instance, kindsText(instance)))
}
