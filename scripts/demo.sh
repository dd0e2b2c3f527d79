#!/bin/bash
# make demo: fence a real runc container with bypass-hook and show what a
# workload sees. Everything lives in two network namespaces made here (a
# "server" with tinyproxy and a web server, and the container's), on
# 198.51.100.0/24 and 2001:db8:1::/64; the machine's own network is not
# touched. Needs root, runc, tinyproxy, busybox-static, iptables, nftables.
set -euo pipefail

HOOK=${1:?usage: demo.sh /abs/path/to/bypass-hook}
[ "$(id -u)" = 0 ] || { echo "demo: run as root (it makes network namespaces and runs runc)" >&2; exit 1; }
for tool in runc tinyproxy busybox ip nsenter iptables nft; do
	command -v "$tool" >/dev/null || { echo "demo: $tool is missing: apt-get install -y runc tinyproxy busybox-static iproute2 iptables nftables" >&2; exit 1; }
done
# The container's root holds busybox alone: a dynamically linked one (Debian's
# package busybox) cannot start there, and runc would only say "exec failed".
# Run it as the container will, in a root with nothing else.
BUSYBOX=$(command -v busybox)
CHECK=$(mktemp -d /tmp/bypass-hook-demo-busybox.XXXXXX)
cp "$BUSYBOX" "$CHECK/busybox"
if ! chroot "$CHECK" /busybox true 2>/dev/null; then
	rm -rf "$CHECK"
	echo "demo: $BUSYBOX is not statically linked, so it cannot run alone in the container's root: apt-get install -y busybox-static (it replaces the package busybox)" >&2
	exit 1
fi
rm -rf "$CHECK"

ID=demo-$$-$(date +%s)
SRV=bhdemo-srv-$$
CTR=bhdemo-ctr-$$
WORK=$(mktemp -d /tmp/bypass-hook-demo.XXXXXX)
OLD_NFLOG=$(cat /proc/sys/net/netfilter/nf_log_all_netns)

cleanup() {
	runc --root "$WORK/runc" delete -f "$ID" >/dev/null 2>&1 || true
	[ -f "$WORK/tinyproxy.pid" ] && kill "$(cat "$WORK/tinyproxy.pid")" 2>/dev/null || true
	[ -f "$WORK/httpd.pid" ] && kill "$(cat "$WORK/httpd.pid")" 2>/dev/null || true
	ip netns del "$CTR" 2>/dev/null || true
	ip netns del "$SRV" 2>/dev/null || true
	echo "$OLD_NFLOG" > /proc/sys/net/netfilter/nf_log_all_netns
	rm -rf "$WORK"
}
trap cleanup EXIT
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "Network: a server namespace (proxy + web server) and the container's namespace"
ip netns add "$SRV"
ip netns add "$CTR"
ip -n "$SRV" link add eth0 type veth peer name eth0 netns "$CTR"
for ns in "$SRV" "$CTR"; do ip -n "$ns" link set lo up; ip -n "$ns" link set eth0 up; done
ip -n "$SRV" addr add 198.51.100.1/24 dev eth0
ip -n "$SRV" addr add 2001:db8:1::1/64 dev eth0 nodad
ip -n "$CTR" addr add 198.51.100.2/24 dev eth0
ip -n "$CTR" addr add 2001:db8:1::2/64 dev eth0 nodad
ip -n "$CTR" route add default via 198.51.100.1
ip -n "$CTR" -6 route add default via 2001:db8:1::1
echo "server 198.51.100.1 / 2001:db8:1::1, container 198.51.100.2 / 2001:db8:1::2"

mkdir -p "$WORK/www"
echo "hello from the server" > "$WORK/www/index.html"
nsenter --net=/run/netns/"$SRV" busybox httpd -f -p 8080 -h "$WORK/www" & echo $! > "$WORK/httpd.pid"
cat > "$WORK/tinyproxy.conf" <<EOF
Port 3128
Timeout 30
MaxClients 50
Allow 198.51.100.0/24
Allow 2001:db8:1::/64
EOF
nsenter --net=/run/netns/"$SRV" tinyproxy -d -c "$WORK/tinyproxy.conf" >/dev/null 2>&1 & echo $! > "$WORK/tinyproxy.pid"
for _ in $(seq 50); do nsenter --net=/run/netns/"$CTR" busybox nc -z 198.51.100.1 3128 2>/dev/null && break; sleep 0.1; done
echo "tinyproxy on 198.51.100.1:3128, web server on :8080"

say "bypass-hook config"
cat > "$WORK/config.yaml" <<EOF
proxies: ["198.51.100.1:3128", "[2001:db8:1::1]:3128"]
hookLog: $WORK/hook.log
stateDir: $WORK/state
EOF
cat "$WORK/config.yaml"

say "runc bundle: busybox root, the container's namespace, the hooks in config.json"
mkdir -p "$WORK/bundle/rootfs/bin" "$WORK/bundle/rootfs/tmp"
cp "$BUSYBOX" "$WORK/bundle/rootfs/bin/busybox"
for applet in sh wget sleep env cat timeout; do ln -s busybox "$WORK/bundle/rootfs/bin/$applet"; done
cat > "$WORK/bundle/config.json" <<EOF
{
  "ociVersion": "1.0.2",
  "process": {
    "user": {"uid": 0, "gid": 0},
    "args": ["sleep", "600"],
    "env": ["PATH=/bin"],
    "cwd": "/",
    "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"]},
    "noNewPrivileges": true
  },
  "root": {"path": "rootfs", "readonly": true},
  "mounts": [
    {"destination": "/proc", "type": "proc", "source": "proc"},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
    {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev"]}
  ],
  "hooks": {
    "createRuntime": [{"path": "$HOOK", "args": ["bypass-hook", "--config", "$WORK/config.yaml", "create"]}],
    "poststop": [{"path": "$HOOK", "args": ["bypass-hook", "--config", "$WORK/config.yaml", "poststop"]}]
  },
  "linux": {
    "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"},
                   {"type": "network", "path": "/run/netns/$CTR"}],
    "cgroupsPath": "/$ID"
  }
}
EOF
echo "hooks: createRuntime and poststop run $HOOK, with an empty environment (runc passes none)"

# LOG lines of a container's namespace reach the kernel log only with this.
echo 1 > /proc/sys/net/netfilter/nf_log_all_netns

say "runc create + start (the createRuntime hook fences the namespace first)"
runc --root "$WORK/runc" create --bundle "$WORK/bundle" "$ID" >"$WORK/runc.out" 2>&1 || { cat "$WORK/runc.out"; exit 1; }
runc --root "$WORK/runc" start "$ID"
tail -n1 "$WORK/hook.log"

say "In the container: a request through the proxy (http_proxy set)"
runc --root "$WORK/runc" exec "$ID" env http_proxy=http://198.51.100.1:3128 wget -q -O- http://198.51.100.1:8080/

say "In the container: the same request, direct (a program that ignores the proxy)"
runc --root "$WORK/runc" exec "$ID" timeout 10 wget -q -O- http://198.51.100.1:8080/ || true
start=$(date +%s%N)
nsenter --net=/run/netns/"$CTR" busybox wget -q -O- "http://[2001:db8:1::1]:8080/" 2>&1 || true
end=$(date +%s%N)
echo "direct over IPv6, timed from the container's namespace: refused in $(( (end - start) / 1000000 )) ms (including starting wget)"

say "The kernel log line of the attempt (destination, protocol, uid)"
PREFIX="bypass:${ID:0:12}: "
sleep 0.2
dmesg | grep -F "$PREFIX" | tail -n 2

say "The fence, as bypass-hook status shows it (owner, backend, each rule with its counters)"
"$HOOK" status --config "$WORK/config.yaml" "$ID"

say "runc delete (the poststop hook removes the fence)"
runc --root "$WORK/runc" delete -f "$ID"
tail -n1 "$WORK/hook.log"
# Either backend's fence: the nftables table or the iptables chain.
if nsenter --net=/run/netns/"$CTR" nft list table inet bypass_hook >/dev/null 2>&1 ||
	nsenter --net=/run/netns/"$CTR" iptables -S BYPASS-HOOK >/dev/null 2>&1; then
	echo "the fence is still there" >&2; exit 1
fi
echo "no fence left in the container's namespace (no table inet bypass_hook, no chain BYPASS-HOOK)"
