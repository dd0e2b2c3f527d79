// SPDX-License-Identifier: Apache-2.0

package k8s

import (
	"os"
	"testing"

	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
)

// hookBin is the bypass-hook binary built for this run: the NRI plugin and the hook it
// injects. Empty when not root (the tests that need it skip through NewEnv then).
var hookBin string

func TestMain(m *testing.M) { os.Exit(testnet.Main(m, &hookBin)) }
