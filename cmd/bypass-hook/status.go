package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"

	"github.com/bypass-hook/bypass-hook/config"

	"github.com/bypass-hook/bypass-hook/hook/backend"
	"github.com/bypass-hook/bypass-hook/hook/records"
	"github.com/bypass-hook/bypass-hook/hook/status"
)

// runStatus exits 0 when every fence asked for was read, 1 when one was not
// found or its counters could not be read, 2 on a usage or config error.
func runStatus(g *globals, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := subFlags("status", g, stderr)
	asJSON := fs.Bool("json", false, "print JSON: a list of fences with their rules and counters")
	summary := fs.Bool("summary", false, "one line per fence instead of its rules")
	namespace := fs.String("namespace", "", "only the fences of pods in this Kubernetes namespace")
	pod := fs.String("pod", "", "only the fences of the pods of this name")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: bypass-hook status [--config FILE] [--json | --summary] [--namespace NS] [--pod NAME] [CONTAINER-ID]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 1 {
		fmt.Fprintf(stderr, "bypass-hook status: one container id at most, got %d arguments\n", fs.NArg())
		return 2
	}
	cfg, err := config.Load(g.config)
	if err != nil {
		fmt.Fprintf(stderr, "bypass-hook status: %v\n", err)
		return 2
	}
	store, err := records.Open(cfg.StateDir)
	if err != nil {
		fmt.Fprintf(stderr, "bypass-hook status: %v\n", err)
		return 1
	}
	fences, err := status.Read(store, fs.Arg(0), backend.New)
	if err != nil {
		fmt.Fprintf(stderr, "bypass-hook status: %v\n", err)
		return 1
	}
	fences = status.Filter(fences, *namespace, *pod)
	unfenced, uerr := store.Unfenced()
	if uerr != nil {
		fmt.Fprintf(stderr, "bypass-hook status: %v\n", uerr)
	}
	if fs.Arg(0) != "" {
		unfenced = nil // one fence was asked for
	}
	unfenced = slices.DeleteFunc(unfenced, func(u records.Unfenced) bool {
		return (*namespace != "" && u.Namespace != *namespace) || (*pod != "" && u.Pod != *pod)
	})
	switch {
	case *asJSON:
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(fences)
	case *summary:
		err = status.WriteSummary(stdout, fences)
	default:
		err = status.WriteDetails(stdout, fences)
	}
	if err == nil && !*asJSON {
		err = status.WriteUnfenced(stdout, unfenced)
	}
	if err != nil {
		fmt.Fprintf(stderr, "bypass-hook status: writing: %v\n", err)
		return 1
	}
	code := 0
	if len(unfenced) > 0 {
		code = 1 // a selected container runs without the fence
	}
	for _, f := range fences {
		if f.Error != "" {
			fmt.Fprintf(stderr, "bypass-hook status: container %s: %s\n", f.Container, f.Error)
			code = 1
		}
	}
	return code
}
