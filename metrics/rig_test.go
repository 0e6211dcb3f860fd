package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand"
	"os"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/demo"
	"github.com/fdp-engine/fdp/host"
	"github.com/fdp-engine/fdp/internal/testutil"
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/module"
	"github.com/fdp-engine/fdp/shm"
	"github.com/fdp-engine/fdp/world"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"
)

// The module process of the engine rig (this test binary run again).
const (
	rigEnv    = "FDP_METRICS_CHILD"
	rigModule = "probe"
	// rigGood ticks of the first process succeed, each sending one create
	// (applied), a destroy of entity 0 (never alive: stale_entity) and an
	// event of a type reserved to the engine (reserved_event_type); then
	// rigFailed fail in a row: the breaker (MaxFailures 5) opens, and
	// stays open (BreakerReset 1 min). A second process (role "again")
	// succeeds on every tick.
	rigGood   = 4
	rigFailed = 5
)

type rigModuleT struct {
	fail  bool // the first process: ticks after rigGood fail
	ticks int
}

func (m *rigModuleT) Spec() module.Spec {
	return module.Spec{Name: rigModule, Tier: module.Slow, Every: 2, Group: "solo"}
}

func (m *rigModuleT) Tick(v *module.View, c *module.Commands, _ time.Duration) error {
	m.ticks++
	if _, err := v.Events(func(uint64, uint64, uint16, []byte) {}); err != nil {
		return err
	}
	c.Create()
	c.Destroy(world.Entity(0))
	c.Publish(layout.SystemEventFirst, []byte("12345678"))
	if m.fail && m.ticks > rigGood {
		return errors.New("this tick fails")
	}
	return nil
}

func rigChild(role string) int {
	s, err := demo.NewSchema()
	if err != nil {
		fmt.Println("ERROR", err)
		return 1
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	err = module.Run(context.Background(), &rigModuleT{fail: role == "first"}, module.Options{
		Instance: os.Getenv("FDP_INSTANCE"), Registry: s.Reg, Logger: log})
	fmt.Println("EXIT", err)
	return 0
}

// engineRig is an engine of a small demo world in this process, whose
// frames the test runs (Step), with a module process attached, and the
// test's own record of every frame (the model of the histograms).
type engineRig struct {
	t      *testing.T
	inst   string
	eng    *host.Engine
	frames []time.Duration // FrameStats.Total of every frame
	pubs   []time.Duration // Publish.Duration of every successful publish
}

// useShm gives the test a private segment directory (also for children).
func useShm(t *testing.T) {
	dir := t.TempDir()
	testutil.UseShmDir(t, dir)
	t.Setenv("FDP_SHM_DIR", dir)
}

func newEngineRig(t *testing.T) *engineRig {
	useShm(t)
	s, err := demo.NewSchema()
	require.NoError(t, err)
	cfg := demo.DefaultConfig()
	cfg.Entities, cfg.ChurnPerSec = 3000, 0
	sim, err := demo.NewSim(s, cfg)
	require.NoError(t, err)
	inst := fmt.Sprintf("mx%d%05x", os.Getpid()%100000, rand.Intn(1<<20))
	t.Cleanup(func() { _, _ = shm.RemoveInstance(inst) })
	eng, err := host.New(host.Config{Instance: inst, FrameRate: 100, BreakerReset: time.Minute,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, sim.W, sim)
	require.NoError(t, err)
	t.Cleanup(func() { _ = eng.Close() })
	return &engineRig{t: t, inst: inst, eng: eng}
}

// step runs one frame and records it.
func (r *engineRig) step() {
	st := r.eng.Step()
	r.frames = append(r.frames, st.Total)
	if st.PublishErr == nil {
		r.pubs = append(r.pubs, st.Publish.Duration)
	}
}

// stepUntil runs frames (about 1 ms apart, to leave the module's process
// the CPU) until cond holds, within a bound.
func (r *engineRig) stepUntil(what string, cond func(host.ModuleInfo) bool) {
	deadline := time.Now().Add(20 * time.Second)
	for {
		r.step()
		if m, ok := r.module(); ok && cond(m) {
			return
		}
		require.True(r.t, time.Now().Before(deadline), "timed out waiting for %s", what)
		time.Sleep(time.Millisecond) // pacing, not synchronisation: the condition is polled
	}
}

func (r *engineRig) module() (host.ModuleInfo, bool) {
	for _, m := range r.eng.Modules() {
		if m.Name == rigModule {
			return m, true
		}
	}
	return host.ModuleInfo{}, false
}

func (r *engineRig) startModule(test, role string) *testutil.Child {
	return testutil.StartChild(r.t, testutil.ChildOptions{Test: test,
		Env: []string{rigEnv + "=" + role, "FDP_INSTANCE=" + r.inst}})
}

// run plays the rig's known sequence: the first module process's good
// ticks and failures until its breaker opens, its SIGKILL, and a second
// process's ticks; then one last frame that copies the statistics.
func (r *engineRig) run(test string) {
	first := r.startModule(test, "first")
	r.stepUntil("the breaker open", func(m host.ModuleInfo) bool { return m.State == host.StateBroken })
	require.True(r.t, first.Kill())
	r.stepUntil("the death seen", func(m host.ModuleInfo) bool { return m.State == host.StateDead })
	r.startModule(test, "again")
	r.stepUntil("the second process's ticks", func(m host.ModuleInfo) bool {
		return m.Stats.Joins == 2 && m.Stats.Applied >= rigGood+3
	})
	r.eng.RequestStats()
	r.step()
}

// gather returns g's families by name.
func gather(t *testing.T, g prometheus.Gatherer) map[string]*dto.MetricFamily {
	t.Helper()
	fams, err := g.Gather()
	require.NoError(t, err)
	out := map[string]*dto.MetricFamily{}
	for _, f := range fams {
		out[f.GetName()] = f
	}
	return out
}

// metric returns the metric of family name whose labels include want
// (pairs "name", "value"), failing when there is not exactly one.
func metric(t *testing.T, fams map[string]*dto.MetricFamily, name string, want ...string) *dto.Metric {
	t.Helper()
	f := fams[name]
	require.NotNil(t, f, "family %s", name)
	var found *dto.Metric
	for _, m := range f.GetMetric() {
		ok := true
		for i := 0; i+1 < len(want); i += 2 {
			if labelValue(m, want[i]) != want[i+1] {
				ok = false
			}
		}
		if ok {
			require.Nil(t, found, "%s%v: more than one metric", name, want)
			found = m
		}
	}
	require.NotNil(t, found, "%s%v: no metric", name, want)
	return found
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// value returns the value of a counter or gauge (metric's rules).
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, want ...string) float64 {
	t.Helper()
	m := metric(t, fams, name, want...)
	switch fams[name].GetType() {
	case dto.MetricType_COUNTER:
		return m.GetCounter().GetValue()
	case dto.MetricType_GAUGE:
		return m.GetGauge().GetValue()
	}
	t.Fatalf("%s is a %v", name, fams[name].GetType())
	return 0
}

// labelNames returns the label names of family f's metrics (le aside),
// checking that they are the same for every metric.
func labelNames(t *testing.T, f *dto.MetricFamily) []string {
	t.Helper()
	var names []string
	for i, m := range f.GetMetric() {
		var n []string
		for _, l := range m.GetLabel() {
			n = append(n, l.GetName())
		}
		if i == 0 {
			names = n
		}
		require.Equal(t, names, n, "%s: label names differ between metrics", f.GetName())
	}
	return names
}

// requireHistogram checks a histogram against the durations it should
// count: the count, the sum, and at every bucket the durations below its
// bound (an exported bound is an end of the histogram's parts, where the
// count is exact; see EngineCollector.histogram).
func requireHistogram(t *testing.T, m *dto.Metric, ds []time.Duration, name string) {
	t.Helper()
	h := m.GetHistogram()
	require.NotNil(t, h, name)
	require.Equal(t, uint64(len(ds)), h.GetSampleCount(), "%s: count", name)
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	require.InDelta(t, sum.Seconds(), h.GetSampleSum(), 1e-9, "%s: sum", name)
	require.NotEmpty(t, h.GetBucket())
	for _, b := range h.GetBucket() {
		bound := time.Duration(b.GetUpperBound()*1e9 + 0.5)
		var want uint64
		for _, d := range ds {
			if d < bound {
				want++
			}
		}
		require.Equal(t, want, b.GetCumulativeCount(), "%s: bucket %v", name, bound)
	}
}
