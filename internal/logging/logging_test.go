// SPDX-License-Identifier: Apache-2.0

package logging

import (
	"bytes"
	"strings"
	"testing"
)

func TestFlags(t *testing.T) {
	for _, format := range []string{"json", "text"} {
		var buf bytes.Buffer
		f := Flags{Level: "info", Format: format}
		log, err := f.New(&buf)
		if err != nil {
			t.Fatal(err)
		}
		log.WithField("container", "abc").Info("fenced")
		log.Debug("hidden")
		line := buf.String()
		for _, key := range []string{"time", "level", "msg", "container"} {
			if !strings.Contains(line, `"`+key+`":`) && !strings.Contains(line, key+"=") {
				t.Errorf("%s: no field %s in %q", format, key, line)
			}
		}
		if strings.Contains(line, "hidden") || strings.Contains(line, "\x1b[") {
			t.Errorf("%s: a debug line at level info, or colours: %q", format, line)
		}
	}
	var buf bytes.Buffer
	if log, err := (&Flags{Level: "error", Format: "json", Debug: true}).New(&buf); err != nil || !log.IsLevelEnabled(5) {
		t.Errorf("--debug must win: %v", err)
	}
	for _, bad := range []Flags{{Level: "loud", Format: "json"}, {Level: "info", Format: "xml"}, {Level: "trace", Format: "json"}} {
		if _, err := bad.New(&bytes.Buffer{}); err == nil {
			t.Errorf("%+v: no error", bad)
		}
	}
}
