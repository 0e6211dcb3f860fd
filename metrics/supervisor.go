package metrics

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/fdp-engine/fdp/supervisor"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"google.golang.org/protobuf/proto"
)

// childStates are the values of fdp_supervisor_child_state's state label.
var childStates = []supervisor.State{supervisor.StateStarting, supervisor.StateRunning, supervisor.StateBackoff,
	supervisor.StateBroken, supervisor.StateStopped, supervisor.StateRefused}

// The supervisor's metrics (docs/METRICS.md).
var (
	dSupRestarts = newDesc("fdp_supervisor_restarts_total", "Processes of the child started after its first.", "child")
	dSupDeaths   = newDesc("fdp_supervisor_deaths_total", "Unexpected exits of the child (hang kills and refusals included).", "child")
	dSupHangs    = newDesc("fdp_supervisor_hangs_total", "SIGKILLs of the child because it hung (stale heartbeat, no attach, no publish).", "child")
	dSupTrips    = newDesc("fdp_supervisor_breaker_trips_total", "Times the child's circuit breaker tripped (it is not restarted after).", "child")
	dSupDetect   = newDesc("fdp_supervisor_detection_latency_seconds", "Death detection latency of the deaths the supervisor caused (hang kills): from its SIGKILL to its handling of the death; external deaths have no sample (their instant is not observable).", "child")
	dSupState    = newDesc("fdp_supervisor_child_state", "1 for the child's current state (starting, running, backoff, broken, stopped, refused), 0 for the others.", "child", "state")
)

var supervisorDescs = []*prometheus.Desc{dSupRestarts, dSupDeaths, dSupHangs, dSupTrips, dSupDetect, dSupState}

// engineMetricsUp names the gauge the supervisor's endpoint adds: whether
// the engine's families are in this scrape.
const engineMetricsUp = "fdp_supervisor_engine_metrics_up"

// SupervisorCollector is a prometheus.Collector of a supervisor's
// counters, per child (label child: "engine" or the module's name).
type SupervisorCollector struct {
	sup *supervisor.Supervisor
}

// NewSupervisorCollector returns a collector of sup's counters.
func NewSupervisorCollector(sup *supervisor.Supervisor) *SupervisorCollector {
	return &SupervisorCollector{sup: sup}
}

// Describe implements prometheus.Collector.
func (c *SupervisorCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range supervisorDescs {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *SupervisorCollector) Collect(ch chan<- prometheus.Metric) {
	for _, st := range c.sup.Status() {
		n := st.Name
		ch <- prometheus.MustNewConstMetric(dSupRestarts, prometheus.CounterValue, float64(st.Restarts), n)
		ch <- prometheus.MustNewConstMetric(dSupDeaths, prometheus.CounterValue, float64(st.Deaths), n)
		ch <- prometheus.MustNewConstMetric(dSupHangs, prometheus.CounterValue, float64(st.Hangs), n)
		ch <- prometheus.MustNewConstMetric(dSupTrips, prometheus.CounterValue, float64(st.BreakerTrips), n)
		buckets := make(map[float64]uint64, len(supervisor.DetectBounds))
		var acc uint64
		for i, b := range supervisor.DetectBounds {
			acc += st.Detect.Buckets[i]
			buckets[b.Seconds()] = acc
		}
		ch <- prometheus.MustNewConstHistogram(dSupDetect, st.Detect.Count, st.Detect.Sum.Seconds(), buckets, n)
		for _, s := range childStates {
			ch <- prometheus.MustNewConstMetric(dSupState, prometheus.GaugeValue, b2f(st.State == s), n, s.String())
		}
	}
}

// engineGatherer gathers the fdp_ families of the engine's endpoint on a
// unix socket, and adds fdp_supervisor_engine_metrics_up: 1 when it got
// them, 0 when the engine did not answer (starting, restarting, dead, or
// not an engine that serves metrics): the supervisor's own families are
// served all the same. The engine's go_* and process_* families are left
// out: they would collide with the supervisor's own.
type engineGatherer struct {
	client *http.Client
	log    *slog.Logger
	// budget bounds one fetch (scrapeBudget): an engine that does not
	// answer in time (SIGSTOPped, starved) counts as down for this scrape.
	budget time.Duration
}

// Bounds of the engine fetch of a scrape of up's endpoint: without the
// scraper's X-Prometheus-Scrape-Timeout-Seconds, defaultEngineBudget;
// with it, its value less a tenth (at least scrapeMargin), so that the
// supervisor's own families always arrive in time; never below
// minEngineBudget.
const (
	defaultEngineBudget = time.Second
	scrapeMargin        = 100 * time.Millisecond
	minEngineBudget     = 50 * time.Millisecond
)

// scrapeBudget is how long a scrape of up's endpoint waits for the engine.
func scrapeBudget(h http.Header) time.Duration {
	v, err := strconv.ParseFloat(h.Get("X-Prometheus-Scrape-Timeout-Seconds"), 64)
	if err != nil || !(v > 0) || v > 3600 {
		return defaultEngineBudget
	}
	t := time.Duration(v * float64(time.Second))
	return max(t-max(t/10, scrapeMargin), minEngineBudget)
}

// within returns a copy of g whose fetches end after d.
func (g *engineGatherer) within(d time.Duration) *engineGatherer {
	c := *g
	c.budget = d
	return &c
}

func newEngineGatherer(sock string, log *slog.Logger) *engineGatherer {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
		DisableKeepAlives: true, // a restarted engine is a new server
	}
	return &engineGatherer{client: &http.Client{Transport: tr}, log: log, budget: defaultEngineBudget}
}

// Gather implements prometheus.Gatherer.
func (g *engineGatherer) Gather() ([]*dto.MetricFamily, error) {
	fams, err := g.fetch()
	up := 1.0
	if err != nil {
		g.log.Debug("engine metrics not merged", "err", err)
		fams, up = nil, 0
	}
	fams = append(fams, &dto.MetricFamily{
		Name:   proto.String(engineMetricsUp),
		Help:   proto.String("1 when the engine's fdp_ metrics are in this scrape, 0 when the engine did not answer (starting, restarting)."),
		Type:   dto.MetricType_GAUGE.Enum(),
		Metric: []*dto.Metric{{Gauge: &dto.Gauge{Value: proto.Float64(up)}}},
	})
	return fams, nil
}

func (g *engineGatherer) fetch() ([]*dto.MetricFamily, error) {
	ctx, cancel := context.WithTimeout(context.Background(), g.budget)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://engine"+Path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", string(expfmt.NewFormat(expfmt.TypeProtoDelim)))
	resp, err := g.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("engine metrics: %s", resp.Status)
	}
	dec := expfmt.NewDecoder(resp.Body, expfmt.ResponseFormat(resp.Header))
	var out []*dto.MetricFamily
	for {
		f := &dto.MetricFamily{}
		if err := dec.Decode(f); err == io.EOF {
			return out, nil
		} else if err != nil {
			return nil, fmt.Errorf("engine metrics: %w", err)
		}
		if strings.HasPrefix(f.GetName(), "fdp_") && !strings.HasPrefix(f.GetName(), "fdp_supervisor_") {
			out = append(out, f)
		}
	}
}

// Up is the metrics endpoint of `engine up` (Config.Metrics): the
// supervisor's own families and, merged in, the engine's.
//
// How the engine's figures get there: the supervisor starts every engine
// process with FDP_METRICS=unix:<private dir>/engine.sock (`engine run`
// reads it as its --metrics), and each scrape of the supervisor's endpoint
// scrapes that socket and merges the engine's fdp_ families into its own
// (a prometheus.Gatherers). The socket path is the same for every engine
// process of the run, so an engine restart needs no new address: the new
// engine replaces the dead one's socket file (Listen) and the next scrape
// reaches it; during the restart the scrape has the supervisor's families
// and fdp_supervisor_engine_metrics_up 0. The directory is the
// supervisor's (0700, removed at the end), so no other user reaches the
// engine's endpoint and no port is taken. (Reading the engine's
// statistics from its segments, as `engine stat` does, would give only
// what the segments hold: the power-of-two tick buckets and no frame or
// publish time histogram.)
type Up struct {
	ln  net.Listener
	dir string
	log *slog.Logger
	// stop ends the server (nil before Serve).
	stop func()
}

// PrepareUp listens on cfg.Metrics (one line when it cannot: before
// anything is started) and points the engine child at a private socket
// (cfg.Engine.Env FDP_METRICS). It returns nil when cfg.Metrics is empty.
func PrepareUp(cfg *supervisor.Config, log *slog.Logger) (*Up, error) {
	if cfg.Metrics == "" {
		return nil, nil
	}
	// A killed up's private directory is removed here (or by engine gc).
	if removed, err := RemoveStaleDirs(); len(removed) > 0 || err != nil {
		log.Info("removed private metrics directories of dead supervisors", "dirs", removed, "err", err)
	}
	dir, err := makePrivDir()
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	ln, err := Listen(cfg.Metrics)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if cfg.Engine.Env == nil {
		cfg.Engine.Env = map[string]string{}
	}
	cfg.Engine.Env["FDP_METRICS"] = "unix:" + filepath.Join(dir, "engine.sock")
	return &Up{ln: ln, dir: dir, log: log}, nil
}

// Serve starts serving the supervisor's metrics and the engine's.
func (u *Up) Serve(sup *supervisor.Supervisor) {
	if u == nil {
		return
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewSupervisorCollector(sup),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	eng := newEngineGatherer(filepath.Join(u.dir, "engine.sock"), u.log)
	// Each scrape waits for the engine at most its budget (scrapeBudget):
	// a hung engine costs the scrape its own figures, never the
	// supervisor's.
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handlerFor(prometheus.Gatherers{reg, eng.within(scrapeBudget(r.Header))}, u.log).ServeHTTP(w, r)
	})
	u.stop = serveHandler(u.ln, h, u.log)
}

// Close stops the endpoint and removes the private directory.
func (u *Up) Close() {
	if u == nil {
		return
	}
	if u.stop != nil {
		u.stop()
	} else {
		u.ln.Close()
	}
	os.RemoveAll(u.dir)
}
