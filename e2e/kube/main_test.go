// SPDX-License-Identifier: Apache-2.0

package kube

import (
	"os"
	"testing"

	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
)

// hookBin is the bypass-hook binary built for this run, beside bypass-hook-oci and
// bypass-hook-runtime: the image's content. Empty when not root.
var hookBin string

func TestMain(m *testing.M) { os.Exit(testnet.Main(m, &hookBin)) }
