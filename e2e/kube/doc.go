// SPDX-License-Identifier: Apache-2.0

// Package kube holds the end to end of bypass-hook on a real single-node Kubernetes: etcd,
// kube-apiserver, kube-controller-manager, kube-scheduler and a kubelet on the containerd 2.2
// (NRI, CNI bridge) of e2e/k8s, with the chart (deploy/helm/bypass-hook) installed by helm.
//
// The binaries come from scripts/build-kube-deps.sh and scripts/build-k8s-deps.sh (the cache
// $BYPASS_HOOK_E2E_CACHE, default /var/cache/bypass-hook-e2e). Without root or without them the
// tests skip and say what is missing; with BYPASS_HOOK_E2E_REQUIRE=1 (CI) they fail.
//
// The node lives in a network namespace and a private mount namespace the test makes: every
// daemon listens on its loopback or its CNI bridge only, and the node paths the chart mounts
// (/var/run/nri, /run/containerd, /var/run/netns, /run/bypass-hook, /opt/bypass-hook,
// /etc/bypass-hook; shared, as systemd makes them) and
// the kernel settings the kubelet would tune are the mount namespace's, so the machine's own
// containerd, network and files are never touched.
package kube
