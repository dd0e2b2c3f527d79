// SPDX-License-Identifier: Apache-2.0

package status

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"text/tabwriter"
	"time"
)

// Attempt is one of a fence's recent attempts, as the monitor saw it: the
// fields of its event that say what was tried and by which process. Only
// the monitor knows the process (it captures it in the kernel), so status
// asks it (see Recent).
type Attempt struct {
	Time   time.Time `json:"time"`
	Proto  string    `json:"proto"`
	Dst    string    `json:"dst"`
	Dport  uint16    `json:"dport"`
	UID    *uint32   `json:"uid"`
	Action string    `json:"action"`
	Netns  string    `json:"netns,omitempty"`
	// Pid is in the host's pid namespace, PidInContainer in the process's
	// own; both absent where the monitor could not name the process.
	Pid            *uint32 `json:"pid,omitempty"`
	PidInContainer uint32  `json:"pidInContainer,omitempty"`
	Comm           string  `json:"comm,omitempty"`
	Exe            string  `json:"exe,omitempty"`
}

// Recent asks the monitor serving at addr (host:port of its metrics
// listener) for the recent attempts of every fence it follows, oldest
// first. An error means no monitor answered as one: then there are none
// to show.
func Recent(ctx context.Context, addr string) ([]Attempt, error) {
	url := "http://" + addr + "/attempts"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s (a monitor older than this status, or another server)", url, resp.Status)
	}
	var out []Attempt
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&out); err != nil {
		return nil, fmt.Errorf("GET %s: reading the answer: %w", url, err)
	}
	return out, nil
}

// AddRecent gives each fence the attempts of its namespace; a fence with
// none gets an empty list, which says the monitor saw none.
func AddRecent(fences []FenceStatus, attempts []Attempt) {
	for i := range fences {
		fences[i].Recent = []Attempt{}
		for _, a := range attempts {
			if a.Netns == fences[i].Netns {
				fences[i].Recent = append(fences[i].Recent, a)
			}
		}
	}
}

// writeRecent writes a fence's recent attempts, when the monitor was asked.
func writeRecent(w io.Writer, f FenceStatus) error {
	if f.Recent == nil {
		return nil
	}
	if len(f.Recent) == 0 {
		_, err := fmt.Fprintln(w, "  recent attempts: none since the monitor started")
		return err
	}
	fmt.Fprintf(w, "  recent attempts (the last %d the monitor saw):\n", len(f.Recent))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  TIME\tACTION\tPROTO\tDESTINATION\tPORT\tUID\tPID\tPID IN CONTAINER\tCOMM\tEXE")
	for _, a := range f.Recent {
		uid, pid, inner := "-", "-", "-"
		if a.UID != nil {
			uid = strconv.FormatUint(uint64(*a.UID), 10)
		}
		if a.Pid != nil {
			pid = strconv.FormatUint(uint64(*a.Pid), 10)
		}
		if a.PidInContainer != 0 {
			inner = strconv.FormatUint(uint64(a.PidInContainer), 10)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", a.Time.UTC().Format(time.RFC3339), a.Action, a.Proto, a.Dst, a.Dport,
			uid, pid, inner, dash(a.Comm), dash(a.Exe))
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
