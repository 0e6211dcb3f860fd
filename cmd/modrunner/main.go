// Command modrunner runs one of the built-in demo modules in its own process:
//
//	modrunner [--rejoin-timeout D] [--log-format text|json] telemetry | ai | alert | python PYMODULE
//	modrunner --help | --version
//
// The instance comes from $FDP_INSTANCE (required: without it, exit 78); the module name
// from $FDP_MODULE (ai modules: ai-1, ai-2, ... pick their team from it);
// $FDP_TIER and $FDP_EVERY, set by `engine up` from its config, replace the
// module's own tier and period (telemetry: fast every 1, ai: slow every 6,
// alert: slow, every 0: it runs when a "died" event wakes it, and counts
// the destroyed entities with a lifecycle observer), and an invalid value
// of either is a refusal (exit 78), not ignored: see module.MainOptions.
// When the engine dies the module waits for the next engine of the instance
// (up to --rejoin-timeout) and goes on in the same process. It logs in the
// format of --log-format, else $FDP_LOG_FORMAT (set to json by `engine up`),
// else text.
//
// Exit status: 0 after SIGTERM or SIGINT; 78 (layout.ExitRefused) when the
// module is refused for a reason a restart cannot change (an invalid
// $FDP_TIER or $FDP_EVERY, refused before it dials; an invalid name or
// group, another schema or protocol version, refused by the engine: see
// module.Refused; an invalid $FDP_LOG_FORMAT), which `engine up` does not
// restart; 1 on any other error; 2 for bad usage (an invalid --log-format).
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"

	pyclient "github.com/fdp-engine/fdp/clients/python"
	"github.com/fdp-engine/fdp/demo"
	"github.com/fdp-engine/fdp/internal/buildinfo"
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/module"
)

// modules are the demo modules modrunner runs, in the order --help lists
// them, with what each does and its own tier and period.
var modules = []struct{ name, about string }{
	{"telemetry", "fast, every frame: reads positions in place, logs the alive count and mean X every 120 ticks"},
	{"ai", "slow, every 6 frames, convoy snapshot: damages its team, destroys the dead, spawns (ai-N: team N mod 4)"},
	{"alert", "slow, woken by \"died\" events, own snapshot: counts the deaths and changed Health chunks, publishes an alert"},
	{"python", "python PYMODULE: runs a Python module of the embedded fdp package (e.g. fdp.analysis: slow, every 30 frames, publishes the mean position) with /usr/bin/python3 or $FDP_PYTHON, in this process (exec)"},
}

func main() {
	fs := flag.NewFlagSet("modrunner", flag.ContinueOnError)
	usage := func(out io.Writer) {
		fmt.Fprintln(out, "usage: modrunner [flags] MODULE")
		fmt.Fprintln(out, "\nRuns one demo module against the engine of instance $FDP_INSTANCE. MODULE is one of:")
		for _, m := range modules {
			fmt.Fprintf(out, "  %-10s %s\n", m.name, m.about)
		}
		fmt.Fprintln(out, "\nEnvironment: FDP_INSTANCE, FDP_MODULE (its name), FDP_TIER, FDP_EVERY, FDP_GROUP (set by `engine up`), FDP_LOG_FORMAT, FDP_SHM_DIR.")
		fmt.Fprintln(out, "\nFlags:")
		fs.SetOutput(out)
		fs.PrintDefaults()
	}
	fs.Usage = func() {} // printed below, on stdout for --help
	rejoin := fs.Duration("rejoin-timeout", module.DefaultRejoinTimeout,
		"how long to wait for a new engine after the engine went away (negative: exit at once)")
	var format string
	fs.Func("log-format", `log format: "text" or "json" (default $FDP_LOG_FORMAT, else text)`, func(v string) error {
		if v != "text" && v != "json" {
			return errors.New(`want "text" or "json"`)
		}
		format = v
		return nil
	})
	version := fs.Bool("version", false, "print the build, layout and control protocol versions and exit")
	switch err := fs.Parse(os.Args[1:]); {
	case errors.Is(err, flag.ErrHelp):
		usage(os.Stdout)
		os.Exit(0)
	case err != nil:
		usage(os.Stderr) // after the flag package's line saying what is wrong
		os.Exit(2)
	}
	if *version {
		fmt.Println(buildinfo.Line("modrunner"))
		os.Exit(0)
	}
	if fs.Arg(0) == "python" {
		runPython(fs.Args()[1:], format)
	}
	if fs.NArg() != 1 {
		usage(os.Stderr)
		os.Exit(2)
	}
	s, err := demo.NewSchema()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	name := os.Getenv("FDP_MODULE")
	log, err := module.NewLogger(format)
	if err != nil { // $FDP_LOG_FORMAT: refused as MainOptions refuses an invalid environment
		log.Error("module refused: a restart cannot change it", "err", err, "exit", layout.ExitRefused)
		os.Exit(layout.ExitRefused)
	}
	var m module.Module
	switch fs.Arg(0) {
	case "telemetry":
		m = &demo.Telemetry{S: s, Log: log, Report: 120}
	case "ai":
		if name == "" {
			name = "ai-1"
		}
		team := uint32(0)
		if i := strings.LastIndexByte(name, '-'); i >= 0 {
			fmt.Sscanf(name[i+1:], "%d", &team)
		}
		m = &demo.AI{S: s, Name: name, Team: team % 4, Log: log}
	case "alert":
		m = &demo.Alert{S: s, Log: log}
	default:
		fmt.Fprintf(os.Stderr, "modrunner: unknown module %q (telemetry, ai, alert, python)\n", fs.Arg(0))
		os.Exit(2)
	}
	// MainOptions names the module in its logger's records (module=name):
	// once, so not here too.
	module.MainOptions(m, module.Options{Registry: s.Reg, RejoinTimeout: *rejoin, Logger: log})
}

// runPython replaces this process with the interpreter running the Python
// module args[0] of the embedded client (exec: the pid the supervisor
// started is the module's, so its signals, hang checks and restarts apply
// to it as to any module). It returns only on failure, by exiting: 78 when
// no interpreter can be found (a restart would not find one either), 2 for
// bad usage, 1 otherwise.
func runPython(args []string, format string) {
	if len(args) != 1 || !validPyModule(args[0]) {
		fmt.Fprintln(os.Stderr, "usage: modrunner python PYMODULE (a dotted Python module name, e.g. fdp.analysis)")
		os.Exit(2)
	}
	log, err := module.NewLogger(format)
	if err != nil {
		os.Exit(layout.ExitRefused)
	}
	python, err := pyclient.Interpreter()
	if err != nil {
		log.Error("module refused: a restart cannot change it", "err", err, "exit", layout.ExitRefused)
		os.Exit(layout.ExitRefused)
	}
	dir, err := pyclient.Install()
	if err != nil {
		log.Error("cannot install the Python client", "err", err)
		os.Exit(1)
	}
	argv, env := pyclient.Command(dir, python, args[0])
	if format != "" {
		env = append(env, "FDP_LOG_FORMAT="+format)
	}
	err = syscall.Exec(python, argv, env)
	log.Error("cannot run the Python interpreter", "python", python, "err", err)
	os.Exit(1)
}

// validPyModule: a dotted name of identifiers (no path, no option).
func validPyModule(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for _, r := range s {
		if r != '.' && r != '_' && (r < '0' || r > '9') && (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') {
			return false
		}
	}
	return s[0] < '0' || s[0] > '9'
}
