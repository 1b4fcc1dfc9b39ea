package main

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// dockerBuildFlags are the release build flags. The Dockerfile and .ci/run
// (which builds the binary the same way to report its size) must both use
// exactly these.
const dockerBuildFlags = `CGO_ENABLED=0 go build -tags nomsgpack -trimpath -ldflags "-s -w"`

type stage struct {
	from         string
	instructions map[string][]string // instruction → the original lines
}

func parseDockerfile(t *testing.T) []stage {
	t.Helper()
	f, err := os.Open("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res, err := parser.Parse(f)
	if err != nil {
		t.Fatalf("BuildKit cannot parse the Dockerfile: %v", err)
	}
	var stages []stage
	for _, n := range res.AST.Children {
		if strings.EqualFold(n.Value, "from") {
			stages = append(stages, stage{from: n.Original, instructions: map[string][]string{}})
			continue
		}
		if len(stages) == 0 {
			t.Fatalf("%q before the first FROM", n.Original)
		}
		s := stages[len(stages)-1]
		s.instructions[strings.ToLower(n.Value)] = append(s.instructions[strings.ToLower(n.Value)], n.Original)
	}
	return stages
}

func TestDockerfile(t *testing.T) {
	stages := parseDockerfile(t)
	if len(stages) != 2 {
		t.Fatalf("%d stages, want a builder and a runtime", len(stages))
	}
	build, final := stages[0], stages[1]
	if !regexp.MustCompile(`^FROM golang:1\.\d+\S* AS build$`).MatchString(build.from) {
		t.Errorf("builder %q", build.from)
	}
	runs := strings.Join(build.instructions["run"], "\n")
	for _, want := range []string{dockerBuildFlags, "--mount=type=cache,target=/go/pkg/mod", "--mount=type=cache,target=/root/.cache/go-build"} {
		if !strings.Contains(runs, want) {
			t.Errorf("the builder's RUN lacks %q", want)
		}
	}
	if !strings.HasPrefix(final.from, "FROM gcr.io/distroless/static") {
		t.Errorf("runtime %q, want distroless static", final.from)
	}
	for instr, want := range map[string]string{
		"user":        "USER nonroot:nonroot",
		"expose":      "EXPOSE 3978",
		"entrypoint":  `ENTRYPOINT ["/upgradebot"]`,
		"healthcheck": `CMD ["/upgradebot", "healthcheck"]`,
		"copy":        "COPY --from=build /out/upgradebot /upgradebot",
	} {
		got := strings.Join(final.instructions[instr], "\n")
		if !strings.Contains(got, want) {
			t.Errorf("runtime %s: %q, want %q", strings.ToUpper(instr), got, want)
		}
	}
	if len(final.instructions["run"]) > 0 {
		t.Error("the runtime stage runs commands; it has no shell")
	}
}

func TestCIBuildsLikeTheDockerfile(t *testing.T) {
	b, err := os.ReadFile(".ci/run")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), dockerBuildFlags) {
		t.Errorf(".ci/run does not build with the Dockerfile's flags %q", dockerBuildFlags)
	}
}
