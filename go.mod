module github.com/bypass-hook/bypass-hook

go 1.26.0

require (
	github.com/coreos/go-iptables v0.8.0
	github.com/opencontainers/runtime-spec v1.3.0
	github.com/vishvananda/netns v0.0.5
	go.yaml.in/yaml/v3 v3.0.6
	golang.org/x/sys v0.50.0
)

require github.com/sirupsen/logrus v1.10.2 // indirect
