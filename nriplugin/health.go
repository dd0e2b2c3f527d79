// SPDX-License-Identifier: Apache-2.0

package nriplugin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// health is what the plugin tells probes, systemd and Prometheus. It is
// ready only while it is registered with the runtime and synchronized, its
// late fencing done: every moment it is not is one in which NRI lets
// containers start without the hook, and an operator alerting on "not
// ready" sees each of them.
type health struct {
	mu       sync.Mutex
	ready    bool
	why      string // why it is not ready
	notified bool   // systemd was told READY=1
	// rejected says why the config rolled out last is not in force, ""
	// when it is; /readyz fails while it says anything.
	rejected func() string

	reg        *prometheus.Registry
	lateFenced prometheus.Counter
	lateFailed prometheus.Counter
	unfenced   prometheus.Gauge
	readyGauge prometheus.Gauge
}

func newHealth() *health {
	h := &health{
		why: "not registered with the runtime yet",
		reg: prometheus.NewRegistry(),
		lateFenced: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bypass_hook_late_fenced_total",
			Help: "Containers that started without the hook while the NRI plugin was away, fenced when it connected.",
		}),
		lateFailed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bypass_hook_late_fence_failures_total",
			Help: "Selected containers found running without the hook that the NRI plugin could not fence (no pid, host network, a refused policy, an error).",
		}),
		unfenced: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bypass_hook_unfenced_containers",
			Help: "Selected containers running without a fence, as the NRI plugin last saw them (bypass-hook status lists them).",
		}),
		readyGauge: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bypass_hook_nri_ready",
			Help: "1 while the NRI plugin is registered with the runtime and synchronized; 0 while containers may start without the hook.",
		}),
	}
	h.reg.MustRegister(h.lateFenced, h.lateFailed, h.unfenced, h.readyGauge)
	return h
}

// set records whether the plugin is ready, and why not.
func (h *health) set(ready bool, why string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ready, h.why = ready, why
	if ready {
		h.readyGauge.Set(1)
	} else {
		h.readyGauge.Set(0)
	}
	// systemd (Type=notify) counts the service started only once it is
	// registered; later changes show in `systemctl status`.
	status := "STATUS=" + why
	if ready {
		status = "STATUS=registered with the runtime and synchronized"
		if !h.notified {
			status += "\n" + daemon.SdNotifyReady
			h.notified = true
		}
	}
	_, _ = daemon.SdNotify(false, status)
}

// Synchronized tells whether the plugin is registered with the runtime and
// its late fencing of the runtime's last synchronization is done, and why
// not: what /readyz answers, but for a config rolled out and rejected.
func (p *Plugin) Synchronized() (bool, string) { return p.health.state() }

func (h *health) state() (bool, string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.ready, h.why
}

// handler serves /healthz (the process answers), /readyz (200 only while
// ready) and /metrics.
func (h *health) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		ready, why := h.state()
		if ready && h.rejected != nil {
			if r := h.rejected(); r != "" {
				ready, why = false, r
			}
		}
		if !ready {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "not ready: "+why)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.Handle("/metrics", promhttp.HandlerFor(h.reg, promhttp.HandlerOpts{Registry: h.reg}))
	return mux
}

// ServeHealth serves /healthz, /readyz and /metrics at addr until ctx ends,
// and returns the address it listens on (addr may have port 0).
func (p *Plugin) ServeHealth(ctx context.Context, addr string) (net.Addr, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("health address %s: %w", addr, err)
	}
	srv := &http.Server{Handler: p.health.handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			p.log.WithError(err).Error("NRI: the health server stopped")
		}
	}()
	context.AfterFunc(ctx, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	})
	return ln.Addr(), nil
}
