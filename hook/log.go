package hook

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/bypass-hook/bypass-hook/internal/logging"
	"github.com/sirupsen/logrus"
)

// OpenLog returns a logger that appends JSON lines to path. When path is
// empty or cannot be opened, it logs to fallback instead, so the detail of
// a failure is never lost; the returned error says why.
func OpenLog(path string, debug bool, fallback io.Writer) (*logrus.Logger, func(), error) {
	log := logging.New(fallback, logging.JSON, debug)
	if path == "" {
		return log, func() {}, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return log, func() {}, fmt.Errorf("hook log %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return log, func() {}, fmt.Errorf("hook log %s: %w", path, err)
	}
	log.SetOutput(f)
	return log, func() { f.Close() }, nil
}
