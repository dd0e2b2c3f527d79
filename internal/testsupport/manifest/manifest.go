// SPDX-License-Identifier: Apache-2.0

// Package manifest decodes the Kubernetes manifest of install/kubernetes for
// the tests that check it and the one that runs it. It is test support: the
// bypass-hook binary does not link the Kubernetes API types.
package manifest

import (
	"fmt"
	"os"
	"regexp"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	k8syaml "sigs.k8s.io/yaml"
)

var docSep = regexp.MustCompile(`(?m)^---$`)

// Kubernetes decodes the file at path strictly: one DaemonSet and one
// ConfigMap, nothing else, and no field the API types do not know.
func Kubernetes(path string) (*appsv1.DaemonSet, *corev1.ConfigMap, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	var ds *appsv1.DaemonSet
	var cm *corev1.ConfigMap
	for _, doc := range docSep.Split(string(data), -1) {
		var meta struct{ Kind string }
		if err := k8syaml.Unmarshal([]byte(doc), &meta); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", path, err)
		}
		switch meta.Kind {
		case "DaemonSet":
			ds = &appsv1.DaemonSet{}
			err = k8syaml.UnmarshalStrict([]byte(doc), ds)
		case "ConfigMap":
			cm = &corev1.ConfigMap{}
			err = k8syaml.UnmarshalStrict([]byte(doc), cm)
		default:
			err = fmt.Errorf("unexpected kind %q", meta.Kind)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %s: %w", path, meta.Kind, err)
		}
	}
	if ds == nil || cm == nil {
		return nil, nil, fmt.Errorf("%s: want a DaemonSet and a ConfigMap; got %v %v", path, ds != nil, cm != nil)
	}
	return ds, cm, nil
}
