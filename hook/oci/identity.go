// SPDX-License-Identifier: Apache-2.0

package oci

import (
	"strings"
	"unicode"
)

// Identity names a container as an operator knows it: the Kubernetes pod
// namespace, pod name and container name that the runtime put into its OCI
// state. Outside Kubernetes all three are empty and the container is known
// by its id.
type Identity struct {
	Namespace string `json:"podNamespace,omitempty"`
	Pod       string `json:"pod,omitempty"`
	Container string `json:"containerName,omitempty"`
}

// The CRI annotations, per runtime, in the order they are tried:
// containerd's, then CRI-O's.
var criKeys = []struct{ namespace, pod, container string }{
	{"io.kubernetes.cri.sandbox-namespace", "io.kubernetes.cri.sandbox-name", "io.kubernetes.cri.container-name"},
	{"io.kubernetes.pod.namespace", "io.kubernetes.pod.name", "io.kubernetes.container.name"},
}

// maxName bounds a name: Kubernetes names are at most 253 characters, and
// whoever creates a container outside Kubernetes may write anything there.
const maxName = 253

// IdentityOf reads the identity from a container's OCI state annotations.
func IdentityOf(annotations map[string]string) Identity {
	for _, k := range criKeys {
		id := Identity{
			Namespace: clean(annotations[k.namespace]),
			Pod:       clean(annotations[k.pod]),
			Container: clean(annotations[k.container]),
		}
		if id.Pod != "" {
			return id
		}
	}
	return Identity{}
}

// IsZero tells whether the runtime gave no Kubernetes identity.
func (i Identity) IsZero() bool { return i == Identity{} }

// Name is "namespace/pod/container", or the id outside Kubernetes.
func (i Identity) Name(id string) string {
	if i.Pod == "" {
		return id
	}
	s := i.Namespace + "/" + i.Pod
	if i.Container != "" {
		s += "/" + i.Container
	}
	return s
}

// clean keeps a name fit for a log line, a table and a metric label.
func clean(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) && r != ' ' {
			return r
		}
		return -1
	}, s)
	if len(s) > maxName {
		s = strings.ToValidUTF8(s[:maxName], "")
	}
	return s
}
