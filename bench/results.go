package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// results collects every figure of a run.
type results struct {
	Date     string            `json:"date"`
	Machine  map[string]string `json:"machine"`
	Sections []*section        `json:"sections"`
}

// section is one measurement: a table, the targets it is checked against
// and its raw data.
type section struct {
	Title   string         `json:"title"`
	Note    string         `json:"note,omitempty"`
	Columns []string       `json:"columns"`
	Rows    [][]string     `json:"rows"`
	Checks  []check        `json:"checks,omitempty"`
	Data    map[string]any `json:"data"`
}

// check is a target and whether it was met.
type check struct {
	Target string `json:"target"`
	Value  string `json:"value"`
	Met    bool   `json:"met"`
}

func newResults() *results {
	return &results{Date: time.Now().UTC().Format(time.RFC3339), Machine: machine()}
}

func (r *results) section(title string, columns ...string) *section {
	s := &section{Title: title, Columns: columns, Data: map[string]any{}}
	r.Sections = append(r.Sections, s)
	return s
}

func (s *section) row(cells ...string) { s.Rows = append(s.Rows, cells) }

func (s *section) check(target string, value float64, format string, met bool) {
	s.Checks = append(s.Checks, check{Target: target, Value: fmt.Sprintf(format, value), Met: met})
}

func machine() map[string]string {
	m := map[string]string{"go": runtime.Version(), "cpus": fmt.Sprint(runtime.NumCPU()), "os": runtime.GOOS + "/" + runtime.GOARCH}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m["cpu"] = strings.TrimSpace(v)
				break
			}
		}
		_ = f.Close()
	}
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		first, _, _ := strings.Cut(string(data), "\n")
		m["memory"] = strings.Join(strings.Fields(strings.TrimPrefix(first, "MemTotal:")), " ")
	}
	if out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output(); err == nil { //nolint:noctx // a one-off local command
		m["treaty_commit"] = strings.TrimSpace(string(out))
	}
	return m
}

// addSoak folds the counts of the last make soak, if any, into the results.
func (r *results) addSoak(dir string) {
	data, err := os.ReadFile(filepath.Join(dir, "soak.json"))
	if err != nil {
		return
	}
	var soak map[string]any
	if json.Unmarshal(data, &soak) != nil {
		return
	}
	s := r.section("Fault and crash soak (make soak)", "test", "counts")
	s.Note = fmt.Sprintf("From bench/soak.json, written by the last `make soak` on %v (not re-run by make bench).", soak["date"])
	for _, k := range []string{"crash", "bad_partner", "disk_full"} {
		if v, ok := soak[k]; ok {
			js, _ := json.Marshal(v)
			s.row(k, "`"+string(js)+"`")
		}
	}
	s.Data["soak"] = soak
}

func (r *results) write(dir string) error {
	r.addSoak(dir)
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), append(js, '\n'), 0o644); err != nil { //nolint:gosec // a public report
		return err
	}
	return os.WriteFile(filepath.Join(dir, "RESULTS.md"), []byte(r.markdown()), 0o644) //nolint:gosec // a public report
}

func (r *results) markdown() string {
	var b strings.Builder
	b.WriteString("# treaty benchmark results\n\n")
	b.WriteString("Written by `make bench` (bench/main.go). Every figure below comes from one run on one machine, ")
	b.WriteString("treaty, SPIRE and the bare Go server measured side by side in that run; compare ratios, not absolute numbers. ")
	b.WriteString("The load generator runs on the same machine and shares its CPUs.\n\n")
	fmt.Fprintf(&b, "- date: %s\n", r.Date)
	for _, k := range []string{"cpu", "cpus", "memory", "go", "os", "treaty_commit"} {
		if v, ok := r.Machine[k]; ok {
			fmt.Fprintf(&b, "- %s: %s\n", k, v)
		}
	}
	for _, s := range r.Sections {
		fmt.Fprintf(&b, "\n## %s\n\n", s.Title)
		if s.Note != "" {
			b.WriteString(s.Note + "\n\n")
		}
		b.WriteString("| " + strings.Join(s.Columns, " | ") + " |\n")
		b.WriteString("|" + strings.Repeat("---|", len(s.Columns)) + "\n")
		for _, row := range s.Rows {
			b.WriteString("| " + strings.Join(row, " | ") + " |\n")
		}
		if len(s.Checks) > 0 {
			b.WriteString("\n| target | measured | met |\n|---|---|---|\n")
			for _, c := range s.Checks {
				met := "no"
				if c.Met {
					met = "yes"
				}
				fmt.Fprintf(&b, "| %s | %s | %s |\n", c.Target, c.Value, met)
			}
		}
	}
	return b.String()
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }
