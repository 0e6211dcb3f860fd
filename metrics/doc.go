// Package metrics exports FDP's statistics in the Prometheus exposition
// format: the engine's (NewEngineCollector: frames, publishes, snapshots,
// events, and each module's runs, failures, breaker, ticks, lag and
// commands) and the supervisor's (NewSupervisorCollector: restarts, deaths,
// hangs, breaker trips, detection latency), served on /metrics by Serve
// (`engine run --metrics ADDR`, `engine up --metrics ADDR` or `metrics:` in
// its config). docs/METRICS.md lists every metric; a test checks that the
// list and the export agree.
//
// It is built on github.com/prometheus/client_golang, the reference
// implementation, rather than on a hand-written text writer: it gives the
// exposition formats and their negotiation (text, protobuf, OpenMetrics,
// gzip) in promhttp, a registry that checks every family for one type,
// one help text and consistent label names at every scrape, const metrics
// (prometheus.MustNewConstMetric, MustNewConstHistogram) for figures that
// are read, not counted, by the exporter, and Gatherers, which merge the
// engine's families into the supervisor's endpoint. Names follow its
// conventions: an fdp_ prefix, base units in the name (_seconds, _bytes),
// _total on counters.
//
// Nothing here runs on the engine's frame thread: a scrape asks the engine
// for a copy of its statistics (host.Engine.CopyStats), which the frame
// thread makes at the end of its next frame without allocating and
// without waiting for the scrape; the exporter builds the metrics from the
// copy on the scrape's goroutine.
package metrics
