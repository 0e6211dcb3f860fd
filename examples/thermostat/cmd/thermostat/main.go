// Command thermostat is the engine of the thermostat world: run, up, ls,
// dump, stat, gc and verify, from package cli.
package main

import (
	"log"

	"github.com/fdp-engine/fdp/cli"
	"github.com/fdp-engine/fdp/examples/thermostat"
)

func main() {
	w, err := thermostat.CLI()
	if err != nil {
		log.Fatal(err)
	}
	cli.Main(w)
}
