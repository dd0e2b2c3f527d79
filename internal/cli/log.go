package cli

import (
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/sirupsen/logrus"
)

// TimeFormat is the timestamp of every log line bypass-hook writes, in
// either format: milliseconds, with the zone.
const TimeFormat = "2006-01-02T15:04:05.000Z07:00"

// Log formats.
const (
	LogJSON = "json"
	LogText = "text"
)

// LogFlags are --log-level and --log-format, for the long-running commands
// (nri, monitor). JSON is the default, as the hook's own log is: one parser
// reads them all.
type LogFlags struct {
	Level  string
	Format string
	Debug  bool // --debug: the same as --log-level debug
}

// Register adds the flags to fs.
func (l *LogFlags) Register(fs *flag.FlagSet) {
	fs.StringVar(&l.Level, "log-level", "info", "least severe messages logged: debug, info, warn or error")
	fs.StringVar(&l.Format, "log-format", LogJSON, "log line format: json or text (logfmt); both have the fields time, level, msg and the same others")
	fs.BoolVar(&l.Debug, "debug", false, "the same as --log-level debug")
}

// Logger makes a logger writing to w at the chosen level and format.
func (l *LogFlags) Logger(w io.Writer) (*logrus.Logger, error) {
	levels := map[string]logrus.Level{"debug": logrus.DebugLevel, "info": logrus.InfoLevel,
		"warn": logrus.WarnLevel, "warning": logrus.WarnLevel, "error": logrus.ErrorLevel}
	level, ok := levels[strings.ToLower(l.Level)]
	if !ok {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", l.Level)
	}
	if l.Debug {
		level = logrus.DebugLevel
	}
	log := logrus.New()
	log.SetOutput(w)
	log.SetLevel(level)
	switch l.Format {
	case LogJSON:
		log.SetFormatter(&logrus.JSONFormatter{TimestampFormat: TimeFormat})
	case LogText:
		// logfmt with the JSON format's keys: time=... level=... msg=...
		log.SetFormatter(&logrus.TextFormatter{DisableColors: true, FullTimestamp: true, TimestampFormat: TimeFormat})
	default:
		return nil, fmt.Errorf("--log-format %q: use json or text", l.Format)
	}
	return log, nil
}
