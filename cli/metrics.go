package cli

import (
	"net"

	"github.com/fdp-engine/fdp/metrics"
)

// metricsUsage is the help of --metrics (engine run and engine up).
const metricsUsage = "serve Prometheus metrics on /metrics at this address: host:port (port 0: any free port, logged) or unix:/path (docs/METRICS.md)"

// listenMetrics binds the engine's metrics address (`engine run
// --metrics`; nil when addr is empty).
func listenMetrics(addr string) (net.Listener, error) {
	if addr == "" {
		return nil, nil
	}
	return metrics.Listen(addr)
}
