package module

// A module's identity: the supervisor's configuration (name, tier, every,
// group, instance; $FDP_MODULE, $FDP_TIER, $FDP_EVERY, $FDP_GROUP,
// $FDP_INSTANCE) wins over the module's own Spec, so that the engine, the
// supervisor and `engine dump` name and schedule the process the same way.

import (
	"fmt"
	"log/slog"
	"os"
)

// logOverrides logs, once per Run, each field of the module's own Spec that
// the configuration replaced (own: what Spec returned; used: what the
// hello carries), so that a module author sees why the engine does not
// run the module as its code says.
func logOverrides(log *slog.Logger, own, used Spec) {
	if own.Every == 0 && own.WakeOn.Empty() {
		own.Every = 1 // as Run reads it
	}
	var diffs []any
	if own.Name != used.Name {
		diffs = append(diffs, "name", fmt.Sprintf("%q (spec %q)", used.Name, own.Name))
	}
	if own.Tier != used.Tier {
		diffs = append(diffs, "tier", fmt.Sprintf("%s (spec %s)", used.Tier, own.Tier))
	}
	if own.Every != used.Every {
		diffs = append(diffs, "every", fmt.Sprintf("%d (spec %d)", used.Every, own.Every))
	}
	if own.Group != used.Group {
		diffs = append(diffs, "group", fmt.Sprintf("%q (spec %q)", used.Group, own.Group))
	}
	if len(diffs) > 0 {
		log.Info("the configuration overrides the module's spec", diffs...)
	}
}

// setProcessName sets the process's name (the main thread's comm, 15 bytes
// at most, as ps -e, top and pgrep show it) to the module's name, so that
// several processes of one program tell apart. /proc/self is the thread
// group: its comm is the main thread's, whichever thread writes it. Best
// effort: where /proc is absent the name stays the program's.
func setProcessName(name string) {
	if name == "" {
		return
	}
	if len(name) > 15 {
		name = name[:15]
	}
	_ = os.WriteFile("/proc/self/comm", []byte(name), 0)
}
