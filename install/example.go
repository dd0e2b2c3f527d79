// SPDX-License-Identifier: Apache-2.0

package install

import _ "embed"

// ExampleConfig is the annotated example config: what `make install` and
// the packages put at /etc/bypass-hook/config.yaml when there is none, and
// what `bypass-hook config default` prints.
//
//go:embed config.example.yaml
var ExampleConfig []byte
