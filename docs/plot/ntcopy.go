package main

import (
	"flag"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/fdp-engine/fdp/internal/ntcopy"
	fsync "github.com/fdp-engine/fdp/sync"
	"github.com/fdp-engine/fdp/world"
)

// ntVariant is a publisher of the nt comparison and the NTCopyMin it
// publishes with.
type ntVariant struct {
	name string
	min  int
	pub  *fsync.Publisher
	runs [][]time.Duration // [fraction][rep]: median publish
}

// runNT compares, in one run, publishes with ordinary stores (NTCopyMin
// above any frame) and with non-temporal stores (NTCopyMin 0), each into its
// own /dev/shm segment from the same world, with memcpys of the same bytes:
// in chunk-column pieces with copy() (the baseline), in pieces with
// ntcopy.Copy, and whole with copy() (non-temporal in Go's memmove from
// 1 MiB on). Every repetition runs each variant in turn (the publishers'
// order rotates), so that a burst of load from other jobs falls on all of
// them. Ratios are to the same repetition's memcpy in pieces, min–max over
// the repetitions.
func runNT(args []string) error {
	fs := flag.NewFlagSet("nt", flag.ContinueOnError)
	sizes := fs.String("sizes", "1000000,4000000", "entity counts")
	reps := fs.Int("reps", 3, "repetitions")
	if err := fs.Parse(args); err != nil {
		return err
	}
	defer func(old int) { fsync.NTCopyMin = old }(fsync.NTCopyMin)
	fmt.Printf("AVX2 non-temporal copy available: %v; NTCopyMin default %s\n\n", ntcopy.Available(), mb(int64(fsync.NTCopyMin)))
	fmt.Println("| entities | dirty | bytes | publish ordinary | publish NT | NT / ordinary | memcpy pieces | memcpy pieces NT | memcpy whole |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|")
	for _, f := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(f)
		if err != nil {
			return err
		}
		tw, err := newTestWorld(n)
		if err != nil {
			return err
		}
		vs := []*ntVariant{{name: "ordinary", min: math.MaxInt}, {name: "NT", min: 0}}
		for _, v := range vs {
			segs, err := tw.createSegments()
			if err != nil {
				return err
			}
			defer dropSegments(segs)
			if v.pub, err = fsync.NewPublisher(tw.w, segs); err != nil {
				return err
			}
			v.runs = make([][]time.Duration, len(fractions))
		}
		if err := ntRound(tw, vs, n, *reps); err != nil {
			return err
		}
	}
	return nil
}

// ntRound measures every fraction reps times (see runNT).
func ntRound(tw *testWorld, vs []*ntVariant, n, reps int) error {
	all := world.MaskAll()
	frame := uint64(0)
	buf := newCopyBuffers(int(tw.contentBytes(all)))
	k := max(7, min(31, 31_000_000/n))
	type cp struct{ pieces, piecesNT, whole []time.Duration }
	cps := make([]cp, len(fractions))
	bytes := make([]int, len(fractions))
	for r := 0; r < reps; r++ {
		for fi, f := range fractions {
			for j := range vs {
				v := vs[(j+r)%len(vs)]
				fsync.NTCopyMin = v.min
				d, nb, err := tw.medianPublish(v.pub, f, &frame, k)
				if err != nil {
					return err
				}
				bytes[fi] = nb
				v.runs[fi] = append(v.runs[fi], d)
			}
			nb := min(bytes[fi], len(buf.src))
			cps[fi].pieces = append(cps[fi].pieces, timeIt(k, func() { buf.pieces(nb) }))
			cps[fi].piecesNT = append(cps[fi].piecesNT, timeIt(k, func() { buf.piecesNT(nb) }))
			cps[fi].whole = append(cps[fi].whole, timeIt(k, func() { buf.whole(nb) }))
		}
	}
	span := func(d, base []time.Duration) string {
		lo, hi := math.Inf(1), 0.0
		for i := range d {
			x := float64(d[i]) / float64(base[i])
			lo, hi = min(lo, x), max(hi, x)
		}
		return fmt.Sprintf("%.2f–%.2f×", lo, hi)
	}
	ratio := func(d, base []time.Duration) string {
		return fmt.Sprintf("%v (%s)", round(median(d)), span(d, base))
	}
	for fi, f := range fractions {
		fmt.Printf("| %s | %d%% | %s | %s | %s | %s | %v | %s | %s |\n", count(n), f.pct, mb(int64(bytes[fi])),
			ratio(vs[0].runs[fi], cps[fi].pieces), ratio(vs[1].runs[fi], cps[fi].pieces), span(vs[1].runs[fi], vs[0].runs[fi]),
			round(median(cps[fi].pieces)), ratio(cps[fi].piecesNT, cps[fi].pieces), ratio(cps[fi].whole, cps[fi].pieces))
	}
	return nil
}
