package main

// The scale-out examples under examples/ are tested as they are: every YAML
// file parses, and runexample (a testscript command) runs the exact seedlm
// command lines each example runs — Kubernetes Jobs' command and args,
// Slurm batch scripts' seedlm lines, the GitHub workflow's run steps — as
// local processes, the parts of a step side by side, with the variables the
// engine would set (JOB_COMPLETION_INDEX, SLURM_ARRAY_TASK_*, the matrix).
// testdata/script/examples.txtar then compares the merged archive with a
// one-machine compress byte for byte.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
	"gopkg.in/yaml.v3"
)

var examplesDir = func() string {
	p, _ := filepath.Abs("../../examples")
	return p
}()

// yamlDocs decodes every document of a YAML file.
func yamlDocs(path string) ([]map[string]any, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var docs []map[string]any
	for {
		var d map[string]any
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if d != nil {
			docs = append(docs, d)
		}
	}
}

// get walks a decoded YAML tree: keys for maps, ints for lists.
func get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func TestExamplesParse(t *testing.T) {
	var files []string
	filepath.WalkDir(examplesDir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && (strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml")) {
			files = append(files, p)
		}
		return nil
	})
	if len(files) < 5 {
		t.Fatalf("found only %v", files)
	}
	for _, f := range files {
		docs, err := yamlDocs(f)
		if err != nil || len(docs) == 0 {
			t.Errorf("%s: %v (%d documents)", f, err, len(docs))
		}
	}
	jobs, err := k8sJobs(filepath.Join(examplesDir, "kubernetes"))
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 3 || jobs[1].completions != 4 {
		t.Fatalf("kubernetes: want plan, a 4-part indexed job and merge, got %+v", jobs)
	}
	for _, j := range jobs {
		if j.args[0] != "seedlm" {
			t.Errorf("kubernetes job %s runs %q, not seedlm", j.name, j.args[0])
		}
	}
	if jobs[1].env["SEEDLM_PARTS"] != "4" || jobs[1].parallelism != 4 {
		t.Errorf("kubernetes parts: SEEDLM_PARTS %q, parallelism %d; both must match completions 4", jobs[1].env["SEEDLM_PARTS"], jobs[1].parallelism)
	}
	steps, err := slurmSteps(filepath.Join(examplesDir, "slurm"))
	if err != nil {
		t.Fatal(err)
	}
	if len(steps) != 3 || steps[1].array != 4 {
		t.Fatalf("slurm: want plan, a 4-task array and merge, got %+v", steps)
	}
	sub, _ := os.ReadFile(filepath.Join(examplesDir, "slurm", "submit.sh"))
	for _, want := range []string{"sbatch --parsable --export=ALL \"$@\" plan.sbatch", "--dependency=afterok:\"$plan\" \"$@\" compress.sbatch", "--dependency=afterok:\"$parts\" \"$@\" merge.sbatch"} {
		if !bytes.Contains(sub, []byte(want)) {
			t.Errorf("slurm/submit.sh lacks %q", want)
		}
	}
	gh, err := githubJobs(filepath.Join(examplesDir, "github", "seedlm-compress.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(gh) != 3 || gh[1].matrix != 4 {
		t.Fatalf("github: want plan, a 4-way matrix and merge, got %+v", gh)
	}
}

// step is one step of an example: its seedlm command lines (unexpanded) and
// how many copies run side by side (1, or the parts).
type step struct {
	name  string
	lines [][]string // argv, before expansion
	env   map[string]string
	// parts: Kubernetes completions, Slurm array size or matrix size
	completions, parallelism, array, matrix int
	args                                    []string // Kubernetes: command + args
}

// k8sJobs reads the Jobs of the Kubernetes example in file order.
func k8sJobs(dir string) ([]step, error) {
	files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
	sort.Strings(files)
	var out []step
	for _, f := range files {
		docs, err := yamlDocs(f)
		if err != nil {
			return nil, err
		}
		for _, d := range docs {
			if d["kind"] != "Job" {
				continue
			}
			c := get(d, "spec", "template", "spec", "containers", 0)
			s := step{name: fmt.Sprint(get(d, "metadata", "name")), env: map[string]string{}}
			for _, key := range []string{"command", "args"} {
				l, _ := get(c, key).([]any)
				for _, a := range l {
					s.args = append(s.args, fmt.Sprint(a))
				}
			}
			if l, ok := get(c, "env").([]any); ok {
				for _, e := range l {
					s.env[fmt.Sprint(get(e, "name"))] = fmt.Sprint(get(e, "value"))
				}
			}
			s.completions = 1
			if get(d, "spec", "completionMode") == "Indexed" {
				s.completions, _ = get(d, "spec", "completions").(int)
				s.parallelism, _ = get(d, "spec", "parallelism").(int)
			}
			if len(s.args) == 0 {
				return nil, fmt.Errorf("%s: job %s has no command", f, s.name)
			}
			out = append(out, s)
		}
	}
	return out, nil
}

// scriptLines returns a shell script's seedlm command lines (joined across
// trailing backslashes), split into words.
func scriptLines(text string) ([][]string, error) {
	text = strings.ReplaceAll(text, "\\\n", " ")
	// GitHub substitutes ${{ expr }} before the shell splits words.
	text = ghExpr.ReplaceAllString(text, "$${{$1}}")
	var out [][]string
	for _, l := range strings.Split(text, "\n") {
		l = strings.TrimSpace(l)
		if !strings.HasPrefix(l, "seedlm ") {
			continue
		}
		w, err := shellWords(l)
		if err != nil {
			return nil, err
		}
		out = append(out, w)
	}
	return out, nil
}

var arrayRe = regexp.MustCompile(`(?m)^#SBATCH --array=(\d+)-(\d+)$`)

// slurmSteps reads the Slurm example's batch scripts in submission order.
func slurmSteps(dir string) ([]step, error) {
	var out []step
	for _, name := range []string{"plan.sbatch", "compress.sbatch", "merge.sbatch"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		s := step{name: name, array: 1}
		if m := arrayRe.FindSubmatch(b); m != nil {
			lo, _ := strconv.Atoi(string(m[1]))
			hi, _ := strconv.Atoi(string(m[2]))
			s.array = hi - lo + 1
			s.env = map[string]string{"SLURM_ARRAY_TASK_MIN": string(m[1]), "SLURM_ARRAY_TASK_MAX": string(m[2]), "SLURM_ARRAY_TASK_COUNT": strconv.Itoa(s.array)}
		}
		if s.lines, err = scriptLines(string(b)); err != nil || len(s.lines) == 0 {
			return nil, fmt.Errorf("%s: no seedlm command (%v)", name, err)
		}
		out = append(out, s)
	}
	return out, nil
}

// githubJobs reads the workflow's jobs in needs order.
func githubJobs(path string) ([]step, error) {
	docs, err := yamlDocs(path)
	if err != nil {
		return nil, err
	}
	jobs, _ := get(docs[0], "jobs").(map[string]any)
	env := map[string]string{}
	if m, ok := get(docs[0], "env").(map[string]any); ok {
		for k, v := range m {
			env[k] = fmt.Sprint(v)
		}
	}
	var out []step
	done := map[string]bool{}
	for len(done) < len(jobs) {
		progress := false
		names := make([]string, 0, len(jobs))
		for n := range jobs {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			if done[n] {
				continue
			}
			if need, ok := get(jobs[n], "needs").(string); ok && !done[need] {
				continue
			}
			s := step{name: n, env: env, matrix: 1}
			if l, ok := get(jobs[n], "strategy", "matrix", "part").([]any); ok {
				s.matrix = len(l)
			}
			steps, _ := get(jobs[n], "steps").([]any)
			for _, st := range steps {
				if run, ok := get(st, "run").(string); ok {
					lines, err := scriptLines(run)
					if err != nil {
						return nil, err
					}
					s.lines = append(s.lines, lines...)
				}
			}
			out = append(out, s)
			done[n] = true
			progress = true
		}
		if !progress {
			return nil, fmt.Errorf("%s: jobs' needs form a cycle", path)
		}
	}
	return out, nil
}

// shellWords splits a command line as sh would for the quoting the examples
// use: single and double quotes, no globbing.
func shellWords(s string) ([]string, error) {
	var out []string
	var cur strings.Builder
	in := false
	var q byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case q != 0 && c == q:
			q = 0
		case q != 0:
			cur.WriteByte(c)
		case c == '"' || c == '\'':
			q, in = c, true
		case c == ' ' || c == '\t':
			if in {
				out = append(out, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteByte(c)
			in = true
		}
	}
	if q != 0 {
		return nil, fmt.Errorf("unterminated quote in %q", s)
	}
	if in {
		out = append(out, cur.String())
	}
	return out, nil
}

var (
	ghExpr = regexp.MustCompile(`\$\{\{\s*([a-z.-]+)\s*\}\}`)
	k8sVar = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)
	shDflt = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*):-([^}]*)\}`)
)

// expand substitutes the variables a shell (or Kubernetes, or GitHub)
// would: $(VAR) for Kubernetes args, ${{ expr }} for GitHub, ${VAR:-def},
// ${VAR} and $VAR for shells.
func expand(w string, vars map[string]string) (string, error) {
	var missing error
	look := func(k string) string {
		v, ok := vars[k]
		if !ok && missing == nil {
			missing = fmt.Errorf("variable %s is not set", k)
		}
		return v
	}
	w = ghExpr.ReplaceAllStringFunc(w, func(m string) string { return look(ghExpr.FindStringSubmatch(m)[1]) })
	w = k8sVar.ReplaceAllStringFunc(w, func(m string) string { return look(k8sVar.FindStringSubmatch(m)[1]) })
	w = shDflt.ReplaceAllStringFunc(w, func(m string) string {
		sm := shDflt.FindStringSubmatch(m)
		if v := vars[sm[1]]; v != "" {
			return v
		}
		return sm[2]
	})
	w = os.Expand(w, look)
	return w, missing
}

// cmdRunExample runs an example: runexample kubernetes|slurm|github. The
// script's environment gives MODEL and OUT (and replaces the example's own
// values for them; GitHub's jobs run in OUT); the parts of a step run as
// concurrent processes.
func cmdRunExample(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: runexample kubernetes|slurm|github")
	}
	bin := ""
	for _, d := range filepath.SplitList(ts.Getenv("PATH")) {
		if st, err := os.Stat(filepath.Join(d, "seedlm")); err == nil && !st.IsDir() {
			bin = filepath.Join(d, "seedlm")
			break
		}
	}
	if bin == "" {
		ts.Fatalf("no seedlm on PATH")
	}
	override := map[string]string{}
	for _, k := range []string{"MODEL", "OUT"} {
		if v := ts.Getenv(k); v != "" {
			override[k] = v
		}
	}
	// runs runs one step: n copies of each command line side by side,
	// copy i with the variables vars(i).
	runs := func(name string, lines [][]string, n int, vars func(i int) map[string]string) {
		for _, line := range lines {
			var wg sync.WaitGroup
			outs := make([]bytes.Buffer, n)
			errs := make([]error, n)
			for i := range n {
				vs := vars(i)
				argv := make([]string, len(line))
				for k, w := range line {
					var err error
					if argv[k], err = expand(w, vs); err != nil {
						ts.Fatalf("%s: %q: %v", name, w, err)
					}
				}
				if argv[0] != "seedlm" {
					ts.Fatalf("%s runs %q, not seedlm", name, argv[0])
				}
				cmd := exec.Command(bin, argv[1:]...)
				cmd.Dir = ts.Getenv("OUT") // GitHub's relative paths: the job's workspace
				cmd.Env = []string{"PATH=" + ts.Getenv("PATH"), "HOME=" + ts.Getenv("HOME"), "TMPDIR=" + ts.Getenv("TMPDIR")}
				for k, v := range vs {
					cmd.Env = append(cmd.Env, k+"="+v)
				}
				cmd.Stdout, cmd.Stderr = &outs[i], &outs[i]
				ts.Logf("%s [%d/%d]: %s", name, i, n, strings.Join(argv, " "))
				wg.Add(1)
				go func() {
					defer wg.Done()
					errs[i] = cmd.Run()
				}()
			}
			wg.Wait()
			for i := range n {
				if errs[i] != nil {
					ts.Fatalf("%s [%d/%d]: %v\n%s", name, i, n, errs[i], outs[i].String())
				}
			}
		}
	}
	with := func(base map[string]string, extra ...string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for k, v := range override {
			if _, ok := m[k]; ok || k == "OUT" || k == "MODEL" {
				m[k] = v
			}
		}
		for i := 0; i+1 < len(extra); i += 2 {
			m[extra[i]] = extra[i+1]
		}
		return m
	}
	switch args[0] {
	case "kubernetes":
		jobs, err := k8sJobs(filepath.Join(examplesDir, "kubernetes"))
		ts.Check(err)
		for _, j := range jobs {
			runs(j.name, [][]string{j.args}, j.completions, func(i int) map[string]string {
				if j.completions > 1 || j.parallelism > 0 {
					return with(j.env, "JOB_COMPLETION_INDEX", strconv.Itoa(i))
				}
				return with(j.env)
			})
		}
	case "slurm":
		steps, err := slurmSteps(filepath.Join(examplesDir, "slurm"))
		ts.Check(err)
		for _, s := range steps {
			runs(s.name, s.lines, s.array, func(i int) map[string]string {
				e := with(s.env, "SLURM_CPUS_PER_TASK", "2")
				if lo, ok := s.env["SLURM_ARRAY_TASK_MIN"]; ok {
					first, _ := strconv.Atoi(lo)
					e["SLURM_ARRAY_TASK_ID"] = strconv.Itoa(first + i)
				}
				return e
			})
		}
	case "github":
		jobs, err := githubJobs(filepath.Join(examplesDir, "github", "seedlm-compress.yml"))
		ts.Check(err)
		for _, j := range jobs {
			runs(j.name, j.lines, j.matrix, func(i int) map[string]string {
				return with(j.env, "matrix.part", strconv.Itoa(i), "strategy.job-index", strconv.Itoa(i), "strategy.job-total", strconv.Itoa(j.matrix))
			})
		}
	default:
		ts.Fatalf("runexample: unknown example %q", args[0])
	}
}
