// SPDX-License-Identifier: Apache-2.0

// Package logging makes the loggers of bypass-hook's commands, so that each
// format is set up in one place, and the --log-level and --log-format flags
// of the long-running ones.
package logging

import (
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/sirupsen/logrus"
)

// Format is how log lines are written.
type Format int

const (
	// JSON lines, with millisecond timestamps: the hook log, and by default
	// the monitor and the NRI plugin.
	JSON Format = iota
	// Text: logfmt (key=value) with the JSON format's keys and timestamps.
	Text
)

// TimeFormat is the timestamp of every log line, in either format.
const TimeFormat = "2006-01-02T15:04:05.000Z07:00"

// New returns a logger writing to out in format, at info level, or debug
// level when debug is set.
func New(out io.Writer, format Format, debug bool) *logrus.Logger {
	level := logrus.InfoLevel
	if debug {
		level = logrus.DebugLevel
	}
	return newLogger(out, format, level)
}

func newLogger(out io.Writer, format Format, level logrus.Level) *logrus.Logger {
	log := logrus.New()
	log.SetOutput(out)
	switch format {
	case Text:
		// time=... level=... msg=...: the same fields as the JSON lines.
		log.SetFormatter(&logrus.TextFormatter{FullTimestamp: true, TimestampFormat: TimeFormat, DisableColors: true})
	default:
		log.SetFormatter(&logrus.JSONFormatter{TimestampFormat: TimeFormat})
	}
	log.SetLevel(level)
	return log
}

// Flags are --log-level, --log-format and --debug, for the long-running
// commands (nri, monitor).
type Flags struct {
	Level  string
	Format string
	Debug  bool
}

// Register adds the flags to fs.
func (f *Flags) Register(fs *flag.FlagSet) {
	fs.StringVar(&f.Level, "log-level", "info", "least severe messages logged: debug, info, warn or error")
	fs.StringVar(&f.Format, "log-format", "json", "log line format: json, or text (key=value); both have the fields time, level, msg and the same others")
	fs.BoolVar(&f.Debug, "debug", false, "the same as --log-level debug")
}

// New makes the logger the flags ask for, writing to out.
func (f *Flags) New(out io.Writer) (*logrus.Logger, error) {
	levels := map[string]logrus.Level{"debug": logrus.DebugLevel, "info": logrus.InfoLevel,
		"warn": logrus.WarnLevel, "warning": logrus.WarnLevel, "error": logrus.ErrorLevel}
	level, ok := levels[strings.ToLower(f.Level)]
	if !ok {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", f.Level)
	}
	if f.Debug {
		level = logrus.DebugLevel
	}
	formats := map[string]Format{"json": JSON, "text": Text}
	format, ok := formats[f.Format]
	if !ok {
		return nil, fmt.Errorf("--log-format %q: use json or text", f.Format)
	}
	return newLogger(out, format, level), nil
}
