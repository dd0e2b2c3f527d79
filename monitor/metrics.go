// SPDX-License-Identifier: Apache-2.0

package monitor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the monitor's Prometheus metrics.
type metrics struct {
	attempts *prometheus.CounterVec
	lost     *prometheus.CounterVec
	errors   *prometheus.CounterVec
	// unverified counts kernel log lines with a fence's prefix that the
	// fence's own counters do not vouch for (forged, see credit.go).
	unverified prometheus.Counter
	// resync is how long each resync took: what a node's number of fences
	// costs the monitor while nothing happens.
	resync prometheus.Summary
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bypass_hook_attempts_total",
			Help: "Attempts to get past a fence that the log rules reported (at most log.rate per rule), by Kubernetes namespace, pod and container name (outside Kubernetes: the container id alone), protocol and action (refused, audited, unknown).",
		}, []string{"namespace", "pod", "container", "proto", "action"}),
		lost: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bypass_hook_events_lost_total",
			Help: "Log records lost before the monitor read them: source nflog counts socket overruns (each one or more packets), source kernel counts kernel log lines of any kind overwritten unread.",
		}, []string{"source"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bypass_hook_monitor_errors_total",
			Help: "Errors of the monitor, by kind: parse (a log record it could not read), nflog (a socket it could not open or read), write (an event it could not print).",
		}, []string{"kind"}),
		unverified: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bypass_hook_kernel_lines_unverified_total",
			Help: "Kernel log lines with a fence's prefix that the fence's own log rule counters do not vouch for, dropped: a LOG rule in another namespace forging them (log.target nflog cannot be forged), or lines of a fence gone or unknown.",
		}),
		resync: prometheus.NewSummary(prometheus.SummaryOpts{
			Name:       "bypass_hook_resync_seconds",
			Help:       "How long the monitor's resyncs took (reading the state directory again, the prune, the check that each fence is whole), over the last 10 minutes; the count is of resyncs since the start.",
			Objectives: map[float64]float64{0.5: 0.05, 0.9: 0.01, 0.99: 0.001},
		}),
	}
	reg.MustRegister(m.attempts, m.lost, m.errors, m.unverified, m.resync,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Series that should read 0 from the start rather than appear later.
	for _, s := range []string{sourceKernel, sourceNflog} {
		m.lost.WithLabelValues(s)
	}
	for _, k := range []string{"parse", "nflog", "write"} {
		m.errors.WithLabelValues(k)
	}
	return m
}

// The gauges of what the monitor follows.
var (
	fencedContainersDesc = prometheus.NewDesc("bypass_hook_fenced_containers",
		"Containers whose network namespace is fenced (reachable, and its record complete), by mode.", []string{"mode"}, nil)
	fencedNamespacesDesc = prometheus.NewDesc("bypass_hook_fenced_namespaces",
		"Fenced network namespaces (that a process or path still reaches, whose record is complete), by mode and log target.", []string{"mode", "target"}, nil)
	fencesNotWholeDesc = prometheus.NewDesc("bypass_hook_fences_not_whole",
		"Fenced namespaces whose fence was not whole at the last check (a rule put in front of it, a rule of it changed or gone): they may let traffic past.", nil, nil)
	nflogSocketsDesc = prometheus.NewDesc("bypass_hook_nflog_sockets",
		"NFLOG sockets the monitor holds: one per fenced namespace with log.target nflog, and those of fences just gone while they drain.", nil, nil)
)

// fenceGauges computes the gauges from the monitor's fences at each
// scrape, so that a scrape never sees them half updated.
type fenceGauges struct{ m *Monitor }

func (g fenceGauges) Describe(ch chan<- *prometheus.Desc) {
	ch <- fencedContainersDesc
	ch <- fencedNamespacesDesc
	ch <- nflogSocketsDesc
	ch <- fencesNotWholeDesc
}

func (g fenceGauges) Collect(ch chan<- prometheus.Metric) {
	containers, namespaces, sockets := g.m.gauges()
	for mode, n := range containers {
		ch <- prometheus.MustNewConstMetric(fencedContainersDesc, prometheus.GaugeValue, float64(n), mode)
	}
	for mt, n := range namespaces {
		ch <- prometheus.MustNewConstMetric(fencedNamespacesDesc, prometheus.GaugeValue, float64(n), mt[0], mt[1])
	}
	ch <- prometheus.MustNewConstMetric(nflogSocketsDesc, prometheus.GaugeValue, float64(sockets))
	g.m.mu.Lock()
	notWhole := len(g.m.notWhole)
	g.m.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(fencesNotWholeDesc, prometheus.GaugeValue, float64(notWhole))
}

// Route is one more path ServeMetrics serves.
type Route struct {
	Path    string
	Handler http.Handler
}

// ServeMetrics serves reg's metrics at http://addr/metrics, and routes,
// until ctx ends and returns the address it listens on (addr may have
// port 0).
func ServeMetrics(ctx context.Context, addr string, reg *prometheus.Registry, errc chan<- error, routes ...Route) (net.Addr, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics address %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	for _, r := range routes {
		mux.Handle(r.Path, r.Handler)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintln(w, "bypass-hook monitor: metrics at /metrics")
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		err := srv.Serve(ln)
		if !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("metrics server on %s: %w", ln.Addr(), err)
		}
	}()
	context.AfterFunc(ctx, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	})
	return ln.Addr(), nil
}
