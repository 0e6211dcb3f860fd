package metrics

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/internal/testutil"
	"github.com/fdp-engine/fdp/supervisor"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
)

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// supRig is a supervisor of stand-in processes from PATH: an "engine" and
// a module "ok" that sleep, and a module "crash" that exits at once,
// restarted until its breaker (2 failures) trips.
type supRig struct {
	sup    *supervisor.Supervisor
	cfg    *supervisor.Config
	cancel context.CancelFunc
	done   chan error
}

func newSupRig(t *testing.T, metrics string) (*supRig, *Up) {
	cfg, err := supervisor.ParseConfig([]byte(`instance: mxsup
engine: {command: [sleep, "60"], restart: true}
modules:
  - {name: ok, command: [sleep, "60"]}
  - {name: crash, command: [sh, -c, "exit 3"]}
restart: {initial_backoff: 5ms, max_backoff: 20ms, multiplier: 2, reset_after: 10s}
breaker: {max_failures: 2, window: 30s}
hang: {heartbeat_timeout: 0s, engine_timeout: 0s}
shutdown: {grace: 1s}
metrics: "` + metrics + `"
`))
	require.NoError(t, err)
	up, err := PrepareUp(cfg, discard())
	require.NoError(t, err)
	t.Cleanup(up.Close)
	sup, err := supervisor.New(cfg, supervisor.Options{Logger: discard()})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	r := &supRig{sup: sup, cfg: cfg, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- sup.Run(ctx) }()
	t.Cleanup(r.stop)
	return r, up
}

func (r *supRig) stop() {
	if r.cancel != nil {
		r.cancel()
		<-r.done
		r.cancel = nil
	}
}

func (r *supRig) status(name string) supervisor.ChildStatus {
	for _, st := range r.sup.Status() {
		if st.Name == name {
			return st
		}
	}
	return supervisor.ChildStatus{}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		require.True(t, time.Now().Before(deadline), "timed out waiting for %s", what)
		time.Sleep(time.Millisecond) // polling a condition, bounded
	}
}

// TestSupervisorCollectorEqualsStatus: with one child restarted until its
// breaker trips and two that run, every exported figure equals the
// supervisor's Status (restarts, deaths, hangs, trips, state, the
// detection latency histogram's count, sum and buckets), and the sequence's
// figures are what it fixes: crash died 3 times (2 failures allowed),
// was restarted twice, tripped once and is broken.
func TestSupervisorCollectorEqualsStatus(t *testing.T) {
	r, _ := newSupRig(t, "127.0.0.1:0")
	waitUntil(t, "the crash breaker", func() bool { return r.status("crash").State == supervisor.StateBroken })
	waitUntil(t, "ok running", func() bool { return r.status("ok").State == supervisor.StateRunning })
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewSupervisorCollector(r.sup))
	fams := gather(t, reg)
	v := func(name string, labels ...string) float64 { return value(t, fams, name, labels...) }
	for _, st := range r.sup.Status() {
		c := st.Name
		require.Equal(t, float64(st.Restarts), v("fdp_supervisor_restarts_total", "child", c), c)
		require.Equal(t, float64(st.Deaths), v("fdp_supervisor_deaths_total", "child", c), c)
		require.Equal(t, float64(st.Hangs), v("fdp_supervisor_hangs_total", "child", c), c)
		require.Equal(t, float64(st.BreakerTrips), v("fdp_supervisor_breaker_trips_total", "child", c), c)
		for _, s := range childStates {
			require.Equal(t, b2f(st.State == s), v("fdp_supervisor_child_state", "child", c, "state", s.String()), "%s %s", c, s)
		}
		h := metric(t, fams, "fdp_supervisor_detection_latency_seconds", "child", c).GetHistogram()
		require.Equal(t, st.Detect.Count, h.GetSampleCount(), c)
		require.Equal(t, uint64(st.Hangs), h.GetSampleCount(), "%s: one latency per hang kill (crashes have none)", c)
		require.InDelta(t, st.Detect.Sum.Seconds(), h.GetSampleSum(), 1e-9, c)
		require.Len(t, h.GetBucket(), len(supervisor.DetectBounds))
		var acc uint64
		for i, b := range h.GetBucket() {
			acc += st.Detect.Buckets[i]
			require.Equal(t, supervisor.DetectBounds[i].Seconds(), b.GetUpperBound())
			require.Equal(t, acc, b.GetCumulativeCount(), "%s le %v", c, b.GetUpperBound())
		}
	}
	require.Equal(t, 3.0, v("fdp_supervisor_deaths_total", "child", "crash"))
	require.Equal(t, 2.0, v("fdp_supervisor_restarts_total", "child", "crash"))
	require.Equal(t, 1.0, v("fdp_supervisor_breaker_trips_total", "child", "crash"))
	require.Equal(t, 1.0, v("fdp_supervisor_child_state", "child", "crash", "state", "broken"))
	require.Zero(t, v("fdp_supervisor_deaths_total", "child", "ok"))
	require.Equal(t, 1.0, v("fdp_supervisor_child_state", "child", "engine", "state", "running"))
}

// scrapeText gets url and parses the text exposition format.
func scrapeText(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)
	return fams
}

// withoutInf returns m without the +Inf bucket the text format writes for
// a histogram (a registry's metric has none: its count is that bucket).
func withoutInf(m *dto.Metric) *dto.Metric {
	h := m.GetHistogram()
	if n := len(h.GetBucket()); n > 0 && math.IsInf(h.GetBucket()[n-1].GetUpperBound(), 1) {
		h.Bucket = h.Bucket[:n-1]
	}
	return m
}

// upWithEngine runs the engine rig's sequence, serves its engine's metrics
// on the socket the supervisor's config points the engine at, and serves
// the supervisor's endpoint: what `engine up --metrics` serves, with the
// engine in this process. It returns the endpoint's URL and a function that
// stops the engine's endpoint.
func upWithEngine(t *testing.T, test string) (r *engineRig, url, sock string, stopEngine func()) {
	r = newEngineRig(t)
	r.run(test)
	sr, up := newSupRig(t, "127.0.0.1:0")
	sock = strings.TrimPrefix(sr.cfg.Engine.Env["FDP_METRICS"], "unix:")
	require.True(t, filepath.IsAbs(sock), sr.cfg.Engine.Env)
	ln, err := Listen("unix:" + sock)
	require.NoError(t, err)
	stopEngine = Serve(ln, EngineRegistry(r.eng), discard())
	t.Cleanup(stopEngine)
	up.Serve(sr.sup)
	return r, "http://" + up.ln.Addr().String() + Path, sock, stopEngine
}

// TestUpEndpointMergesEngine: the supervisor's endpoint serves its own
// families and the engine's fdp_ families as the engine serves them (not
// its go_ and process_ families: the supervisor's own are there once),
// with fdp_supervisor_engine_metrics_up 1; without the engine's endpoint,
// its own alone and the gauge 0.
func TestUpEndpointMergesEngine(t *testing.T) {
	testutil.RunChild(rigEnv, rigChild)
	r, url, _, stopEngine := upWithEngine(t, "TestUpEndpointMergesEngine")
	merged := scrapeText(t, url)
	require.Equal(t, 1.0, merged[engineMetricsUp].GetMetric()[0].GetGauge().GetValue())
	direct := gather(t, EngineRegistry(r.eng))
	engineFams := 0
	for name, f := range direct {
		if !strings.HasPrefix(name, "fdp_") {
			continue
		}
		engineFams++
		m := merged[name]
		require.NotNil(t, m, name)
		require.Equal(t, f.GetType(), m.GetType(), name)
		if name == "fdp_engine_stats_age_seconds" {
			continue // grows between the two scrapes
		}
		require.Equal(t, len(f.GetMetric()), len(m.GetMetric()), name)
		for i := range f.GetMetric() {
			require.Equal(t, f.GetMetric()[i].String(), withoutInf(m.GetMetric()[i]).String(), name)
		}
	}
	require.Equal(t, len(engineDescs), engineFams)
	require.NotNil(t, merged["fdp_supervisor_deaths_total"])
	require.NotNil(t, merged["go_goroutines"])
	require.Len(t, merged["go_goroutines"].GetMetric(), 1, "the supervisor's own")

	stopEngine()
	alone := scrapeText(t, url)
	require.Equal(t, 0.0, alone[engineMetricsUp].GetMetric()[0].GetGauge().GetValue())
	require.NotNil(t, alone["fdp_supervisor_deaths_total"])
	for name := range alone {
		require.False(t, strings.HasPrefix(name, "fdp_engine_") || strings.HasPrefix(name, "fdp_module_"), name)
	}
}

// TestListenReplacesDeadSocket: a unix socket file no process listens on
// (left by a killed engine) is replaced; a live listener's is refused with
// one line, and so is a bad address.
func TestListenReplacesDeadSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "engine.sock")
	dead, err := net.Listen("unix", sock)
	require.NoError(t, err)
	dead.(*net.UnixListener).SetUnlinkOnClose(false)
	require.NoError(t, dead.Close())
	_, err = os.Lstat(sock)
	require.NoError(t, err, "the dead listener's file is left")

	ln, err := Listen("unix:" + sock)
	require.NoError(t, err)
	defer ln.Close()
	_, err = Listen("unix:" + sock)
	require.ErrorContains(t, err, "a live process listens there")
	c, err := net.Dial("unix", sock)
	require.NoError(t, err, "the live listener was not touched")
	c.Close()

	_, err = Listen("localhost")
	require.ErrorContains(t, err, "want host:port")
	tcp, err := Listen("127.0.0.1:0")
	require.NoError(t, err)
	defer tcp.Close()
	_, err = Listen(tcp.Addr().String())
	require.ErrorContains(t, err, "address already in use")
}

// docRow is a row of docs/METRICS.md's table of every metric.
type docRow struct {
	typ    string
	labels []string
}

// docMetrics parses docs/METRICS.md's table of every metric.
func docMetrics(t *testing.T) map[string]docRow {
	f, err := os.Open(filepath.Join("..", "docs", "METRICS.md"))
	require.NoError(t, err)
	defer f.Close()
	row := regexp.MustCompile("^\\| `(fdp_[a-z_]+)` \\| (counter|gauge|histogram) \\|([^|]*)\\|")
	out := map[string]docRow{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		m := row.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		var labels []string
		for _, l := range strings.Split(m[3], ",") {
			if l = strings.Trim(strings.TrimSpace(l), "`"); l != "" {
				labels = append(labels, l)
			}
		}
		require.NotContains(t, out, m[1], "listed twice")
		out[m[1]] = docRow{typ: m[2], labels: labels}
	}
	require.NoError(t, sc.Err())
	return out
}

// TestMetricsDocumented: every metric docs/METRICS.md lists is exported by
// `engine up`'s endpoint (the engine's with a module, and the
// supervisor's) with the listed type and label names, and every fdp_
// family exported is listed.
func TestMetricsDocumented(t *testing.T) {
	testutil.RunChild(rigEnv, rigChild)
	_, url, _, _ := upWithEngine(t, "TestMetricsDocumented")
	fams := scrapeText(t, url)
	doc := docMetrics(t)
	require.Len(t, doc, len(engineDescs)+len(supervisorDescs)+1, "the table lists every family")
	for name, row := range doc {
		f := fams[name]
		require.NotNil(t, f, "%s is listed but not exported", name)
		require.Equal(t, strings.ToUpper(row.typ), f.GetType().String(), name)
		got := labelNames(t, f)
		want := slices.Clone(row.labels)
		slices.Sort(got)
		slices.Sort(want)
		require.Equal(t, want, got, "%s: labels", name)
	}
	for name := range fams {
		if strings.HasPrefix(name, "fdp_") {
			require.Contains(t, doc, name, "%s is exported but not listed in docs/METRICS.md", name)
		}
	}
}

// TestScrapeBudget: up waits for the engine 1 s without the scraper's
// timeout header; with it, the header less a tenth (at least 100 ms),
// never below 50 ms; a bad header is ignored.
func TestScrapeBudget(t *testing.T) {
	for _, tc := range []struct {
		header string
		want   time.Duration
	}{
		{"", time.Second}, {"junk", time.Second}, {"-1", time.Second}, {"NaN", time.Second},
		{"10", 9 * time.Second}, {"0.5", 400 * time.Millisecond}, {"0.1", 50 * time.Millisecond},
	} {
		h := http.Header{}
		if tc.header != "" {
			h.Set("X-Prometheus-Scrape-Timeout-Seconds", tc.header)
		}
		require.Equal(t, tc.want, scrapeBudget(h), tc.header)
	}
}
