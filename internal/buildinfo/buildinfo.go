// Package buildinfo tells which FDP a binary is: the `--version` of every
// program built on package cli and of cmd/modrunner. What a user needs to
// know before mixing an engine and modules of different builds is the
// layout version (every segment header carries it: another one is refused)
// and the control protocol version (a module of another one is refused at
// its hello); the module version and VCS revision say which source it was.
package buildinfo

import (
	"fmt"
	"runtime/debug"
	"strings"

	"github.com/fdp-engine/fdp/ipc"
	"github.com/fdp-engine/fdp/layout"
)

// Module is the import path of FDP's Go module.
const Module = "github.com/fdp-engine/fdp"

// Info is what String prints.
type Info struct {
	// Main is the main module's path and version ("(devel)" for a build in
	// its own tree); FDP is FDP's module version when the main module is
	// another that requires it (empty when the main module is FDP itself).
	Main, MainVersion, FDP string
	// Revision, Time and Modified are the VCS stamp of the build (empty
	// without one: go run, -buildvcs=false, a build outside a checkout).
	Revision, Time string
	Modified       bool
	GoVersion      string
}

// Read returns the running binary's build information.
func Read() Info {
	var in Info
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return in
	}
	in.Main, in.MainVersion, in.GoVersion = bi.Main.Path, bi.Main.Version, bi.GoVersion
	if in.Main != Module {
		for _, d := range bi.Deps {
			if d.Path == Module {
				in.FDP = d.Version
				if d.Replace != nil {
					in.FDP += " => " + d.Replace.Path
				}
			}
		}
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			in.Revision = s.Value
		case "vcs.time":
			in.Time = s.Value
		case "vcs.modified":
			in.Modified = s.Value == "true"
		}
	}
	return in
}

// String is one line: the program's module and version, FDP's version when
// it is a dependency, the VCS revision (with "+dirty" for a tree with
// uncommitted changes), the layout and control protocol versions and the
// Go version.
func (in Info) String() string {
	var b strings.Builder
	mod, ver := in.Main, in.MainVersion
	if mod == "" {
		mod, ver = Module, "unknown"
	}
	fmt.Fprintf(&b, "%s %s", mod, ver)
	if in.FDP != "" {
		fmt.Fprintf(&b, " (fdp %s)", in.FDP)
	}
	if in.Revision != "" {
		rev := in.Revision
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if in.Modified {
			rev += "+dirty"
		}
		fmt.Fprintf(&b, ", revision %s", rev)
		if in.Time != "" {
			fmt.Fprintf(&b, " (%s)", in.Time)
		}
	}
	fmt.Fprintf(&b, ", layout %d, control protocol %d", layout.Version, ipc.ControlProtoVersion)
	if in.GoVersion != "" {
		fmt.Fprintf(&b, ", %s", in.GoVersion)
	}
	return b.String()
}

// Line is the `--version` line of program: its name and Read().String().
func Line(program string) string {
	return program + " " + Read().String()
}
