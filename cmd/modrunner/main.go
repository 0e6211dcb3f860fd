// Command modrunner runs one of the built-in demo modules in its own process:
//
//	modrunner telemetry | ai | alert
//
// The instance comes from $FDP_INSTANCE (default "demo"); the module name
// from $FDP_MODULE (ai modules: ai-1, ai-2, ... pick their team from it).
package main

import (
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/fdp-engine/fdp/demo"
	"github.com/fdp-engine/fdp/module"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: modrunner telemetry|ai|alert")
		os.Exit(2)
	}
	s, err := demo.NewSchema()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	name := os.Getenv("FDP_MODULE")
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	var m module.Module
	switch os.Args[1] {
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
		m = &demo.AI{S: s, Name: name, Team: team % 4, Every: module.EnvInt("FDP_EVERY", 6), Log: log}
	case "alert":
		m = &demo.Alert{S: s, Every: module.EnvInt("FDP_EVERY", 30), Log: log}
	default:
		fmt.Fprintf(os.Stderr, "modrunner: unknown module %q (telemetry, ai, alert)\n", os.Args[1])
		os.Exit(2)
	}
	module.Main(s.Reg, m)
}
