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
package k8s
