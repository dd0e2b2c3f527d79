// SPDX-License-Identifier: Apache-2.0

// Package k8s holds the Kubernetes end-to-end tests of bypass-hook: a real containerd 2.2 with
// CRI, NRI and a CNI bridge, driven through crictl and ctr, all inside a network namespace and a
// temporary directory that the test makes.
//
// The tests run only as root and only when the binaries and images that
// scripts/build-k8s-deps.sh builds are in the cache ($BYPASS_HOOK_E2E_CACHE, default
// /var/cache/bypass-hook-e2e); otherwise they skip and say what is missing, or fail when
// BYPASS_HOOK_E2E_REQUIRE=1 is set (CI).
//
// The harness lives in the _test.go files of this package:
//
//   - harness_test.go: finding the cached binaries (Deps), the environment (Env: node network
//     namespace, CNI bridge, tinyproxy and HTTP server on the gateway, containerd with a generated
//     config) and its cleanup;
//   - cri_test.go: pods and containers through crictl (RunPod, StartContainer, Exec, inspect, stop, remove);
//   - netns_test.go: entering network namespaces, the HTTP server, and probes that report
//     refused / timeout / success with the elapsed time.
//
// The tests of bypass-hook on this node (issue 6), with the binary TestMain builds (main_test.go):
//
//   - fence_helpers_test.go: the hook's config, records and log on the node, the plugin as a
//     process, pods with their start times, and the checks of a fence (injected hooks, rules,
//     probes);
//   - fence_test.go: the external plugin fences annotated pods only, a pod's containers share
//     one fence until the last one stops; pod start times;
//   - nri_daemonset_test.go: the pod of install/kubernetes/bypass-hook.yaml, run as a kubelet
//     would run it, installs the hook and fences;
//   - nri_lifecycle_test.go: the plugin pre-registered with containerd, reconnecting after a
//     containerd restart, and what containerd does while it is down (fail open, or refuse
//     with required_plugins, and the gaps in that).
package k8s
