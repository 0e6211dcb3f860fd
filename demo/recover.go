package demo

import (
	"math/rand"

	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/world"
)

// MaxEntities is the largest Config.Entities of NewWorld with chunks of
// 1024: the largest e whose chunks, (e*5/4)/1024 + 2, stay within
// world.ChunkLimit, i.e. 5e < 4*(world.ChunkLimit-1)*1024.
const MaxEntities = (4*((world.ChunkLimit-1)*1024) - 1) / 5

// NewWorld returns an empty world with the configuration NewSim uses for cfg
// (engine recovery restores the last published frame into it).
func NewWorld(s *Schema, cfg Config) (*world.World, error) {
	if cfg.ChunkCapacity == 0 {
		cfg.ChunkCapacity = 1024
	}
	maxChunks := (cfg.Entities*5/4)/cfg.ChunkCapacity + 2
	return world.New(s.Reg, world.Config{ChunkCapacity: cfg.ChunkCapacity, MaxChunks: maxChunks})
}

// NewSimFromWorld returns the demo simulation around an existing world (a
// recovered one): every alive entity joins the churn pool.
func NewSimFromWorld(s *Schema, cfg Config, w *world.World) *Sim {
	if cfg.ChunkCapacity == 0 {
		cfg.ChunkCapacity = 1024
	}
	sim := &Sim{S: s, W: w, cfg: cfg, rng: rand.New(rand.NewSource(cfg.Seed))}
	k := w.ChunkCapacity()
	for c := 0; c < w.NumChunks(); c++ {
		for i, r := range w.ChunkRecords(c) {
			if r.Flags&layout.FlagAlive != 0 {
				sim.live = append(sim.live, world.MakeEntity(uint32(c*k+i), r.Gen))
			}
		}
	}
	return sim
}
