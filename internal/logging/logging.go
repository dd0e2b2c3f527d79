// Package logging makes the loggers of bypass-hook's commands, so that each
// format is set up in one place.
package logging

import (
	"io"

	"github.com/sirupsen/logrus"
)

// Format is how log lines are written.
type Format int

const (
	// JSON lines, with millisecond timestamps: the hook log and the monitor.
	JSON Format = iota
	// Text with full timestamps: the NRI plugin's standard error.
	Text
)

// New returns a logger writing to out in format, at info level, or debug
// level when debug is set.
func New(out io.Writer, format Format, debug bool) *logrus.Logger {
	log := logrus.New()
	log.SetOutput(out)
	switch format {
	case Text:
		log.SetFormatter(&logrus.TextFormatter{FullTimestamp: true})
	default:
		log.SetFormatter(&logrus.JSONFormatter{TimestampFormat: "2006-01-02T15:04:05.000Z07:00"})
	}
	log.SetLevel(logrus.InfoLevel)
	if debug {
		log.SetLevel(logrus.DebugLevel)
	}
	return log
}
