package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"unsafe"

	"github.com/fdp-engine/fdp/shm"
	fsync "github.com/fdp-engine/fdp/sync"
	"golang.org/x/sys/unix"
)

// variant is a world segment the huge comparison publishes into.
type variant struct {
	name string
	segs *fsync.WorldSegments
	pub  *fsync.Publisher
}

// runHuge publishes one world into segments in several directories (and,
// with -madvise, into a /dev/shm segment whose mapping has MADV_HUGEPAGE),
// interleaved in one run, and times memcpy variants of the same bytes:
// chunk-column pieces (the baseline), one whole copy (non-temporal stores
// in Go's memmove from 1 MiB on), and pieces on two goroutines.
func runHuge(args []string) error {
	fs := flag.NewFlagSet("huge", flag.ContinueOnError)
	dirs := fs.String("dirs", "", "extra segment directories, name=dir,... (e.g. huge=/mnt/hugetmpfs)")
	madv := fs.Bool("madvise", false, "also a /dev/shm segment with madvise(MADV_HUGEPAGE) on its mapping")
	sizes := fs.String("sizes", "1000000,3000000,10000000", "entity counts")
	reps := fs.Int("reps", 3, "repetitions")
	if err := fs.Parse(args); err != nil {
		return err
	}
	base := shm.Dir
	type spec struct{ name, dir string }
	specs := []spec{{"4K /dev/shm", base}}
	if *madv {
		specs = append(specs, spec{"madvise /dev/shm", base})
	}
	for _, d := range strings.Split(*dirs, ",") {
		if name, dir, ok := strings.Cut(d, "="); ok {
			specs = append(specs, spec{name, dir})
		}
	}
	fmt.Printf("| entities | dirty | bytes | %smemcpy pieces | memcpy whole (NT) | memcpy 2 goroutines |\n", func() string {
		s := ""
		for _, sp := range specs {
			s += "publish " + sp.name + " | "
		}
		return s
	}())
	fmt.Println("|---|---|---|" + strings.Repeat("---|", len(specs)+3))
	for _, f := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(f)
		if err != nil {
			return err
		}
		tw, err := newTestWorld(n)
		if err != nil {
			return err
		}
		vs := make([]*variant, len(specs))
		for i, sp := range specs {
			shm.Dir = sp.dir
			segs, err := tw.createSegments()
			shm.Dir = base
			if err != nil {
				return err
			}
			defer dropSegments(segs)
			if sp.name == "madvise /dev/shm" {
				if err := unix.Madvise(segs.World.Data, unix.MADV_HUGEPAGE); err != nil {
					return fmt.Errorf("madvise: %w", err)
				}
			}
			pub, err := fsync.NewPublisher(tw.w, segs)
			if err != nil {
				return err
			}
			vs[i] = &variant{name: sp.name, segs: segs, pub: pub}
		}
		if err := hugeRound(tw, vs, n, *reps); err != nil {
			return err
		}
		for _, v := range vs {
			alloc, _ := v.segs.World.Allocated()
			fmt.Printf("<!-- %s: %s: allocated %s, %s -->\n", count(n), v.name, mib(alloc), pmdMapped(v.segs.World.Data))
		}
	}
	return nil
}

// hugeRound measures every fraction reps times (interleaved): the variants
// publish in turn, then memcpys in pieces, whole and on two goroutines.
func hugeRound(tw *testWorld, vs []*variant, n, reps int) error {
	pubs := make([]*fsync.Publisher, len(vs))
	for i, v := range vs {
		pubs[i] = v.pub
	}
	k := max(7, min(31, 31_000_000/n))
	bytes, runs, cps, err := tw.interleaved(k, reps, pubs, func(int) {},
		[]func(*copyBuffers, int){(*copyBuffers).pieces, (*copyBuffers).whole, (*copyBuffers).parallel})
	if err != nil {
		return err
	}
	// Ratios to the same repetition's memcpy in pieces, min–max.
	pieces, whole, par := cps[0], cps[1], cps[2]
	for fi, f := range fractions {
		fmt.Printf("| %s | %d%% | %s | ", count(n), f.pct, mb(int64(bytes[fi])))
		for i := range vs {
			fmt.Printf("%s | ", ratio(runs[i][fi], pieces[fi]))
		}
		fmt.Printf("%v | %s | %s |\n", round(median(pieces[fi])), ratio(whole[fi], pieces[fi]), ratio(par[fi], pieces[fi]))
	}
	return nil
}

// pmdMapped reports how much of the mapping b is mapped with huge pages
// (PMD entries), from /proc/self/smaps.
func pmdMapped(b []byte) string {
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	start := fmt.Sprintf("%x-", uintptrOf(b))
	in := false
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := sc.Text()
		if strings.Contains(l, "-") && !strings.Contains(l, ":") || strings.Count(l, " ") > 4 && strings.Contains(strings.Fields(l)[0], "-") {
			in = strings.HasPrefix(l, start)
			continue
		}
		if in && (strings.HasPrefix(l, "ShmemPmdMapped:") || strings.HasPrefix(l, "FilePmdMapped:") || strings.HasPrefix(l, "Rss:")) {
			out = append(out, strings.Join(strings.Fields(l), " "))
		}
	}
	return strings.Join(out, ", ")
}

func uintptrOf(b []byte) uintptr { return uintptr(unsafe.Pointer(unsafe.SliceData(b))) }
