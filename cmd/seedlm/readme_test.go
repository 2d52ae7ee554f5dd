package main

// README.md's pasted sessions are run: every ``` block whose lines start
// with "$ " is a shell session, run in order in one folder holding the
// demo model (as stories260K-layer0.safetensors) and config.json; each
// command's output (stdout and stderr as a terminal shows them) must match
// the lines pasted under it. Figures that differ between runs or machines
// (times, rates, the worker count and kernel) are compared as placeholders;
// a pasted line holding "..." stands for any number of lines. The sessions
// use a small shell: seedlm, mkdir, cp, head -c N A > B, printf x | dd …
// seek=N conv=notrunc, && between commands, and "; echo "exit $?"".

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// session is one README block: its commands, each with the pasted output.
type session struct {
	line int // of the block's first line in README.md
	cmds []readmeCmd
}

type readmeCmd struct {
	line int
	text string
	want []string
}

// readmeSessions extracts the shell sessions from README text.
func readmeSessions(text string) []session {
	var out []session
	lines := strings.Split(text, "\n")
	for i := 0; i < len(lines); i++ {
		if !strings.HasPrefix(lines[i], "```") {
			continue
		}
		j := i + 1
		for j < len(lines) && !strings.HasPrefix(lines[j], "```") {
			j++
		}
		body := lines[i+1 : min(j, len(lines))]
		if len(body) > 0 && strings.HasPrefix(body[0], "$ ") {
			s := session{line: i + 2}
			for k, l := range body {
				if strings.HasPrefix(l, "$ ") {
					s.cmds = append(s.cmds, readmeCmd{line: i + 2 + k, text: strings.TrimPrefix(l, "$ ")})
				} else if len(s.cmds) > 0 && !(l == "" && (k+1 == len(body) || strings.HasPrefix(body[k+1], "$ "))) {
					c := &s.cmds[len(s.cmds)-1]
					c.want = append(c.want, l)
				}
			}
			out = append(out, s)
		}
		i = j
	}
	return out
}

// volatile are the figures that change from run to run or machine to
// machine; both sides are rewritten before comparing.
var volatile = []struct {
	re   *regexp.Regexp
	repl string
}{
	{regexp.MustCompile(`[0-9.]+s wall`), "Ts wall"},
	{regexp.MustCompile(`bytes, [0-9.]+s$`), "bytes, Ts"},
	{regexp.MustCompile(`[0-9,]+ weights/s encoding \([0-9,]+ workers?, [a-z0-9-]+ kernel\)`), "R weights/s encoding (W workers, K kernel)"},
	{regexp.MustCompile(`decode [0-9.]+ MB/s`), "decode R MB/s"},
	{regexp.MustCompile(`(  )[0-9]+\.[0-9]{2}s(\s|$)`), "${1}Ts${2}"},
	{regexp.MustCompile(`estimated time ≈[0-9.hms]+ with [0-9,]+ workers? \([a-z0-9-]+ kernel`), "estimated time ≈T with W workers (K kernel"},
	{regexp.MustCompile(`"(wall_seconds|encode_seconds|weights_per_second|decode_seconds|decode_mb_per_s)": [0-9.e+-]+`), `"$1": N`},
	{regexp.MustCompile(`"workers": [0-9]+`), `"workers": N`},
	{regexp.MustCompile(`"kernel": "[a-z0-9-]+"`), `"kernel": "K"`},
	{regexp.MustCompile(`encoder kernel [a-z0-9-]+`), "encoder kernel K"},
	{regexp.MustCompile(`\(sha256 [0-9a-f]{12}…\)`), "(sha256 H…)"},
	{regexp.MustCompile(`plan [0-9a-f]{12}…`), "plan H…"},
}

func normalize(s string) string {
	s = strings.TrimRight(s, " ")
	for _, v := range volatile {
		s = v.re.ReplaceAllString(s, v.repl)
	}
	return s
}

// matchLines reports whether got matches want, where a want line holding
// "..." matches any run of got lines (its text around the dots must
// match the run's first line's start and last line's end, loosely: only
// the part before "..." is checked against the first line).
func matchLines(want, got []string) bool {
	if len(want) == 0 {
		return len(got) == 0
	}
	w := want[0]
	if i := strings.Index(w, "..."); i >= 0 {
		prefix := strings.TrimSpace(w[:i])
		for n := 0; n <= len(got); n++ {
			if n > 0 && prefix != "" && !strings.HasPrefix(strings.TrimSpace(got[0]), prefix) {
				break
			}
			if matchLines(want[1:], got[n:]) {
				return true
			}
		}
		return false
	}
	return len(got) > 0 && normalize(got[0]) == normalize(w) && matchLines(want[1:], got[1:])
}

var (
	reExit = regexp.MustCompile(`^(.*); echo "exit \$\?"$`)
	reDD   = regexp.MustCompile(`^printf (\S) \| dd of=(\S+) bs=1 seek=([0-9]+) conv=notrunc$`)
	reHead = regexp.MustCompile(`^head -c ([0-9]+) (\S+) > (\S+)$`)
)

// runReadmeCmd runs one session line in dir and returns what a terminal
// would show.
func runReadmeCmd(t *testing.T, dir, line string) (string, error) {
	if i := strings.Index(line, "   #"); i >= 0 { // a comment
		line = strings.TrimSpace(line[:i])
	}
	echoExit := false
	if m := reExit.FindStringSubmatch(line); m != nil {
		line, echoExit = m[1], true
	}
	var out bytes.Buffer
	code := 0
	for _, c := range strings.Split(line, " && ") {
		f := strings.Fields(c)
		switch {
		case len(f) > 0 && f[0] == "seedlm":
			cmd := exec.Command(os.Args[0], f[1:]...)
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), "SEEDLM_TEST_MAIN=1")
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Run(); err != nil {
				ee, ok := err.(*exec.ExitError)
				if !ok {
					return "", err
				}
				code = ee.ExitCode()
			}
		case len(f) > 1 && f[0] == "mkdir":
			if err := os.MkdirAll(filepath.Join(dir, f[len(f)-1]), 0o755); err != nil {
				return "", err
			}
		case len(f) == 3 && f[0] == "cp":
			b, err := os.ReadFile(filepath.Join(dir, f[1]))
			if err != nil {
				return "", err
			}
			dst := filepath.Join(dir, f[2])
			if st, err := os.Stat(dst); err == nil && st.IsDir() {
				dst = filepath.Join(dst, filepath.Base(f[1]))
			}
			if err := os.WriteFile(dst, b, 0o644); err != nil {
				return "", err
			}
		case reDD.MatchString(c):
			m := reDD.FindStringSubmatch(c)
			off, _ := strconv.ParseInt(m[3], 10, 64)
			fh, err := os.OpenFile(filepath.Join(dir, m[2]), os.O_WRONLY, 0)
			if err != nil {
				return "", err
			}
			_, err = fh.WriteAt([]byte(m[1]), off)
			fh.Close()
			if err != nil {
				return "", err
			}
		case reHead.MatchString(c):
			m := reHead.FindStringSubmatch(c)
			n, _ := strconv.Atoi(m[1])
			b, err := os.ReadFile(filepath.Join(dir, m[2]))
			if err != nil {
				return "", err
			}
			if err := os.WriteFile(filepath.Join(dir, m[3]), b[:min(n, len(b))], 0o644); err != nil {
				return "", err
			}
		default:
			return "", fmt.Errorf("the README's shell does not know %q", c)
		}
		if code != 0 {
			break
		}
	}
	if echoExit {
		fmt.Fprintf(&out, "exit %d\n", code)
	} else if code != 0 {
		return out.String(), fmt.Errorf("exit %d", code)
	}
	return out.String(), nil
}

// TestREADME runs README.md's sessions and compares their output.
func TestREADME(t *testing.T) {
	text, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	sessions := readmeSessions(string(text))
	if len(sessions) < 8 {
		t.Fatalf("found %d sessions in README.md; the parser is broken", len(sessions))
	}
	dir := t.TempDir()
	for src, dst := range map[string]string{
		"../../testdata/models/stories260K-layer0.safetensors": "stories260K-layer0.safetensors",
		"../../testdata/models/config.json":                    "config.json",
	} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, dst), b, 0o644)
	}
	for _, s := range sessions {
		for _, c := range s.cmds {
			got, err := runReadmeCmd(t, dir, c.text)
			if err != nil {
				t.Fatalf("README.md:%d: $ %s: %v\n%s", c.line, c.text, err, got)
			}
			var lines []string
			sc := bufio.NewScanner(strings.NewReader(got))
			for sc.Scan() {
				lines = append(lines, sc.Text())
			}
			if !matchLines(c.want, lines) {
				t.Errorf("README.md:%d: $ %s\npasted:\n%s\nthe binary prints:\n%s", c.line, c.text, strings.Join(c.want, "\n"), strings.Join(lines, "\n"))
			}
		}
	}
}
