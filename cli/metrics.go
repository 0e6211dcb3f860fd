package cli

import (
	"log/slog"

	"github.com/fdp-engine/fdp/host"
	"github.com/fdp-engine/fdp/metrics"
)

// metricsUsage is the help of --metrics (engine run and engine up).
const metricsUsage = "serve Prometheus metrics on /metrics at this address: host:port (port 0: any free port, logged) or unix:/path (docs/METRICS.md)"

// serveEngineMetrics serves eng's metrics at addr (`engine run --metrics`;
// none when addr is empty) until stop is called.
func serveEngineMetrics(addr string, eng *host.Engine, log *slog.Logger) (stop func(), err error) {
	if addr == "" {
		return func() {}, nil
	}
	ln, err := metrics.Listen(addr)
	if err != nil {
		return nil, err
	}
	return metrics.Serve(ln, metrics.EngineRegistry(eng), log), nil
}
