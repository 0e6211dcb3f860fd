// Command thermostat-setpoint is the thermostat world's module: it sets
// every room's setpoint to $SETPOINT °C (default 21). An invalid $SETPOINT
// exits with layout.ExitRefused, which `up` does not restart.
package main

import (
	"fmt"
	"log"
	"os"
	"strconv"

	"github.com/fdp-engine/fdp/examples/thermostat"
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/module"
)

func main() {
	s, err := thermostat.NewSchema()
	if err != nil {
		log.Fatal(err)
	}
	want := 21.0
	if v := os.Getenv("SETPOINT"); v != "" {
		if want, err = strconv.ParseFloat(v, 32); err != nil {
			fmt.Fprintf(os.Stderr, "SETPOINT=%q: not a temperature\n", v)
			os.Exit(layout.ExitRefused)
		}
	}
	module.Main(s.Reg, &thermostat.Schedule{S: s, Want: float32(want)})
}
