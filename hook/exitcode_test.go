// SPDX-License-Identifier: Apache-2.0

package hook_test

import (
	"errors"
	"testing"

	"github.com/bypass-hook/bypass-hook/config"
	"github.com/bypass-hook/bypass-hook/hook"
	"github.com/bypass-hook/bypass-hook/hook/oci"
)

func TestExitCode(t *testing.T) {
	fence := &hook.FenceError{Err: errors.New("x")}
	for _, tc := range []struct {
		err     error
		failure string
		want    int
	}{
		{nil, config.FailClosed, 0},
		{fence, config.FailClosed, 1},
		{fence, config.FailOpen, 0},
		{&hook.RefusedError{Msg: "strict"}, config.FailOpen, 1},
		{&config.Error{Key: "k"}, config.FailOpen, 2},
		{&config.AnnotationError{Annotation: "a"}, config.FailOpen, 2},
		{&oci.InputError{Msg: "bad"}, config.FailClosed, 2},
		{errors.New("poststop failed"), config.FailOpen, 1},
	} {
		if got := hook.ExitCode(tc.err, tc.failure); got != tc.want {
			t.Errorf("ExitCode(%v, %s) = %d, want %d", tc.err, tc.failure, got, tc.want)
		}
	}
}
