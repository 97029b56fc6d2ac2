package cli

import (
	"context"

	"github.com/treatyhq/treaty/internal/topology"
)

func topologyCommands() []command {
	return []command{{"topology plan", "plan a federation from facts about each peer: federation or not, exchange, profile, or what instead (offline)", runTopologyPlan}}
}

const outputMarkdown = "markdown"

func runTopologyPlan(_ context.Context, e *env, args []string) error {
	fs := newFlags(e, "topology plan")
	output := fs.String("output", outputMarkdown, "markdown (a table, a Mermaid diagram and the reasons) or json")
	path, err := parseWithArg(fs, args, "a topology file (YAML; see docs/topology.md), or - for standard input")
	if err != nil {
		return err
	}
	if *output == outputPretty {
		*output = outputMarkdown
	}
	if err := checkChoice("output", *output, outputMarkdown, outputJSON); err != nil {
		return err
	}
	data, err := readInput(e, path)
	if err != nil {
		return err
	}
	file := path
	if path == "-" {
		file = "" // problems say "line N:" alone
	}
	t, warnings, err := topology.Parse(data, file)
	for _, w := range warnings {
		e.warnf("%s: %s", path, w)
	}
	if err != nil {
		return err
	}
	plan := topology.Plan(t)
	if *output == outputJSON {
		return printIndented(e, struct {
			Self  topology.Self       `json:"self"`
			Peers []topology.Decision `json:"peers"`
		}{t.Self, plan})
	}
	e.printf("%s", topology.Markdown(t, plan))
	return nil
}
