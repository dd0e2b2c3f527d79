// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"bytes"
	"flag"
	"github.com/bypass-hook/bypass-hook/internal/testsupport/testnet"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// testApp is a small table with a leaf, a group and a global flag.
func testApp(ran *[]string) *App {
	var config string
	var remove bool
	global := func(fs *flag.FlagSet) { fs.StringVar(&config, "config", "", "config file") }
	record := func(name string) func(IO, []string) int {
		return func(_ IO, args []string) int {
			*ran = append(*ran, name+" "+config+" "+strings.Join(args, ",")+map[bool]string{true: " remove"}[remove])
			return 0
		}
	}
	return &App{
		Name:    "tool",
		Version: func() string { return "tool 1.0" },
		Globals: global,
		Commands: []*Command{
			{Name: "run", Summary: "run it", Help: "Reads nothing.", Flags: global, Run: record("run")},
			{Name: "install", Summary: "registrations", Subcommands: []*Command{
				{Name: "dir", Summary: "a dir", Args: "DIR", Flags: func(fs *flag.FlagSet) {
					global(fs)
					fs.BoolVar(&remove, "remove", false, "remove it")
				}, Run: record("install dir")},
				{Name: "bin", Summary: "a binary", Args: "DIR", Run: record("install bin")},
			}},
		},
	}
}

func run(t *testing.T, args ...string) (int, string, string, []string) {
	t.Helper()
	var ran []string
	var out, errOut bytes.Buffer
	code := testApp(&ran).Main(args, IO{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errOut})
	return code, out.String(), errOut.String(), ran
}

func TestMain(t *testing.T) {
	for _, tc := range []struct {
		args     []string
		code     int
		out, err string // substrings
		ran      string
	}{
		{args: []string{"--version"}, out: "tool 1.0"},
		{args: []string{"version"}, out: "tool 1.0"},
		{args: []string{"version", "x"}, code: 2, err: "unexpected argument"},
		{args: []string{"--config", "c", "version"}, code: 2, err: "flag provided but not defined: -config"},
		{args: []string{"help"}, out: "install dir"},
		{args: []string{"--help"}, out: "commands:"},
		{args: []string{"-h"}, out: "commands:"},
		{args: []string{}, code: 2, err: "usage: tool"},
		{args: []string{"help", "run"}, out: "Reads nothing."},
		{args: []string{"help", "install", "dir"}, out: "usage: tool install dir [flags] DIR"},
		{args: []string{"help", "install"}, out: "install bin"},
		{args: []string{"help", "nope"}, code: 2, err: `unknown command "nope"`},
		{args: []string{"run", "-h"}, out: "usage: tool run"},
		{args: []string{"run", "--help"}, out: "usage: tool run"},
		{args: []string{"install", "--help"}, out: "install dir"},
		{args: []string{"install", "dir", "-h"}, out: "-remove"},
		{args: []string{"install"}, code: 2, err: "install needs a command: dir, bin"},
		{args: []string{"install", "nope"}, code: 2, err: `unknown command "install nope"`},
		{args: []string{"nope"}, code: 2, err: `unknown command "nope"`},
		{args: []string{"run", "--nope"}, code: 2, err: "flag provided but not defined: -nope"},
		{args: []string{"install", "bin", "d", "--remove"}, code: 2, err: "flag provided but not defined: -remove"},
		{args: []string{"install", "bin", "d", "--config", "c"}, code: 2, err: "-config"},
		{args: []string{"--config", "c", "run", "a"}, ran: "run c a"},
		{args: []string{"run", "a", "--config=c"}, ran: "run c a"},
		{args: []string{"install", "dir", "d", "--remove", "--config", "c"}, ran: "install dir c d remove"},
		{args: []string{"install", "--remove", "dir", "d"}, ran: "install dir  d remove"},
		{args: []string{"run", "--", "-x"}, ran: "run  -x"},
		{args: []string{"completion", "bash"}, out: "complete -o default -F _tool tool"},
		{args: []string{"completion", "zsh"}, out: "#compdef tool"},
		{args: []string{"completion", "fish"}, code: 2, err: `unknown shell "fish"`},
	} {
		code, out, errOut, ran := run(t, tc.args...)
		if code != tc.code || !strings.Contains(out, tc.out) || !strings.Contains(errOut, tc.err) ||
			strings.Join(ran, ";") != tc.ran {
			t.Errorf("%q: exit %d (want %d), ran %q (want %q)\nstdout: %s\nstderr: %s", tc.args, code, tc.code, ran, tc.ran, out, errOut)
		}
		if tc.code == 2 && !strings.Contains(errOut, "'tool help") && !strings.Contains(errOut, "usage: tool") {
			t.Errorf("%q: a usage error does not say where the usage is: %s", tc.args, errOut)
		}
	}
}

// TestWalkHelp is the table test each binary repeats over its own table:
// every command answers -h, --help and help COMMAND with exit 0.
func TestWalkHelp(t *testing.T) {
	var ran []string
	n := 0
	testApp(&ran).Walk(func(path []string, _ *Command) {
		n++
		for _, args := range [][]string{append(path, "-h"), append(path, "--help"), append([]string{"help"}, path...)} {
			if code, out, errOut, _ := run(t, args...); code != 0 || !strings.HasPrefix(out, "usage: tool "+strings.Join(path, " ")) {
				t.Errorf("%q: exit %d\nstdout: %s\nstderr: %s", args, code, out, errOut)
			}
		}
	})
	if n != 6 { // run, install dir, install bin, version, help, completion
		t.Errorf("walked %d commands, want 6", n)
	}
}

// TestBashCompletion runs the generated script in bash.
func TestBashCompletion(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		testnet.SkipOrFail(t, "bash is not installed")
	}
	_, script, _, _ := run(t, "completion", "bash")
	for _, tc := range []struct {
		line string // words typed; the last one is being completed
		want []string
	}{
		{"tool ", []string{"run", "install", "version", "help", "completion", "--help", "--version"}},
		{"tool in", []string{"install"}},
		{"tool install ", []string{"dir", "bin", "--help"}},
		{"tool install dir --r", []string{"--remove"}},
		{"tool --config x install d", []string{"dir"}},
		{"tool install dir --config ", nil}, // a file name: bash's default
		{"tool completion ", []string{"bash", "zsh", "--help"}},
	} {
		words := strings.Split(tc.line, " ")
		var arr []string
		for _, w := range words {
			arr = append(arr, "'"+w+"'")
		}
		prog := script + "\nCOMP_WORDS=(" + strings.Join(arr, " ") + ")\nCOMP_CWORD=" +
			strconv.Itoa(len(words)-1) + "\n_tool\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n"
		out, err := exec.Command("bash", "-c", prog).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", tc.line, err, out)
		}
		got := strings.Fields(string(out))
		if strings.Join(got, " ") != strings.Join(tc.want, " ") {
			t.Errorf("%q completes to %q, want %q", tc.line, got, tc.want)
		}
	}
}

// TestZshCompletion runs the generated function in zsh with compadd and
// _files stubbed: they print what would be offered.
func TestZshCompletion(t *testing.T) {
	if _, err := exec.LookPath("zsh"); err != nil {
		testnet.SkipOrFail(t, "zsh is not installed")
	}
	_, script, _, _ := run(t, "completion", "zsh")
	for _, tc := range []struct {
		words string // the words typed; the last one is being completed
		want  string
	}{
		{"tool ", "run install version help completion --help --version"},
		{"tool install ", "dir bin --help"},
		{"tool install dir --r", "--config --remove --help"}, // zsh itself filters by the prefix
		{"tool install dir --config ", "FILES"},
	} {
		words := strings.Split(tc.words, " ")
		var quoted []string
		for _, w := range words {
			quoted = append(quoted, "'"+w+"'")
		}
		prog := "compadd() { shift; print -r -- \"$@\" }; _files() { print FILES }; compdef() {}\n" + script +
			"\nwords=(" + strings.Join(quoted, " ") + "); CURRENT=" + strconv.Itoa(len(words)) + "; _tool\n"
		out, err := exec.Command("zsh", "-f", "-c", prog).CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != tc.want {
			t.Errorf("%q completes to %q (%v), want %q", tc.words, strings.TrimSpace(string(out)), err, tc.want)
		}
	}
}
