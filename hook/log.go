package hook

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/sirupsen/logrus"
)

// OpenLog returns a logger that appends JSON lines to path. When path is
// empty or cannot be opened, it logs to fallback instead, so the detail of
// a failure is never lost; the returned error says why.
func OpenLog(path string, debug bool, fallback io.Writer) (*logrus.Logger, func(), error) {
	log := logrus.New()
	log.SetFormatter(&logrus.JSONFormatter{TimestampFormat: "2006-01-02T15:04:05.000Z07:00"})
	log.SetLevel(logrus.InfoLevel)
	if debug {
		log.SetLevel(logrus.DebugLevel)
	}
	log.SetOutput(fallback)
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
