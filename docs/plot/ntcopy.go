package main

import (
	"flag"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/fdp-engine/fdp/internal/ntcopy"
	fsync "github.com/fdp-engine/fdp/sync"
)

// ntVariant is a publisher of the nt comparison and the NTCopyMin it
// publishes with.
type ntVariant struct {
	name string
	min  int
	pub  *fsync.Publisher
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
		}
		if err := ntRound(tw, vs, n, *reps); err != nil {
			return err
		}
	}
	return nil
}

// ntRound measures every fraction reps times (see runNT): the variants
// publish in turn, each with its NTCopyMin, then memcpys in pieces, in
// pieces with streaming stores, and whole.
func ntRound(tw *testWorld, vs []*ntVariant, n, reps int) error {
	pubs := make([]*fsync.Publisher, len(vs))
	for i, v := range vs {
		pubs[i] = v.pub
	}
	k := max(7, min(31, 31_000_000/n))
	bytes, runs, cps, err := tw.interleaved(k, reps, pubs, func(i int) { fsync.NTCopyMin = vs[i].min },
		[]func(*copyBuffers, int){(*copyBuffers).pieces, (*copyBuffers).piecesNT, (*copyBuffers).whole})
	if err != nil {
		return err
	}
	pieces, piecesNT, whole := cps[0], cps[1], cps[2]
	for fi, f := range fractions {
		fmt.Printf("| %s | %d%% | %s | %s | %s | %s | %v | %s | %s |\n", count(n), f.pct, mb(int64(bytes[fi])),
			ratio(runs[0][fi], pieces[fi]), ratio(runs[1][fi], pieces[fi]), span(runs[1][fi], runs[0][fi]),
			round(median(pieces[fi])), ratio(piecesNT[fi], pieces[fi]), ratio(whole[fi], pieces[fi]))
	}
	return nil
}
