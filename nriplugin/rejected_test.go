// SPDX-License-Identifier: Apache-2.0

package nriplugin

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/install"
)

// A config that the DaemonSet's init step refused (and so kept the node's)
// makes the plugin not ready, with the reason, until a good one is rolled
// out: the rollout stops at the first node while it goes on fencing.
func TestReadyzRefusedConfig(t *testing.T) {
	cfg := config.Default()
	cfg.Path = filepath.Join(t.TempDir(), "config.yaml")
	p := &Plugin{health: newHealth(), cfg: cfg}
	p.health.rejected = p.rejectedConfig
	p.health.set(true, "")
	srv := httptest.NewServer(p.health.handler())
	defer srv.Close()
	readyz := func() (int, string) {
		t.Helper()
		resp, err := http.Get(srv.URL + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, body := readyz(); code != http.StatusOK {
		t.Fatalf("registered, no refused config: %d %s", code, body)
	}
	if err := install.MarkRejected(cfg.Path, errors.New(`proxies[0]: "proxy.example:3128" is not IP:port`)); err != nil {
		t.Fatal(err)
	}
	if code, body := readyz(); code != http.StatusServiceUnavailable || !strings.Contains(body, "NOT in force") || !strings.Contains(body, "proxies[0]") {
		t.Errorf("a refused config: %d %s; want 503 with the reason", code, body)
	}
	if err := install.ClearRejected(cfg.Path); err != nil {
		t.Fatal(err)
	}
	if code, body := readyz(); code != http.StatusOK {
		t.Errorf("the refused config replaced by a good one: %d %s", code, body)
	}
}
