package app

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
	f, err := os.Open("../../Dockerfile")
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

// TestCIBuildsLikeTheDockerfile: the binary whose size CI reports is built
// by a command of .ci/run, not merely named in a comment, with the
// Dockerfile's flags.
func TestCIBuildsLikeTheDockerfile(t *testing.T) {
	b, err := os.ReadFile("../../.ci/run")
	if err != nil {
		t.Fatal(err)
	}
	builds := releaseBuilds(string(b))
	if len(builds) != 1 {
		t.Fatalf(".ci/run runs %d release builds %q, want one built with %q", len(builds), builds, dockerBuildFlags)
	}
	stages := parseDockerfile(t)
	docker := releaseBuilds(strings.Join(stages[0].instructions["run"], "\n"))
	if len(docker) != 1 {
		t.Fatalf("the Dockerfile runs %d release builds %q, want one", len(docker), docker)
	}
}

// releaseBuilds returns the shell commands of script, comments left out,
// that run the release build with dockerBuildFlags.
func releaseBuilds(script string) []string {
	var builds []string
	for _, line := range strings.Split(script, "\n") {
		if i := strings.Index(line, "#"); i >= 0 && (i == 0 || line[i-1] == ' ' || line[i-1] == '\t') {
			line = line[:i] // a shell comment: # at a word's start
		}
		if strings.Contains(line, dockerBuildFlags) {
			builds = append(builds, strings.TrimSpace(line))
		}
	}
	return builds
}

func TestReleaseBuildsIgnoresComments(t *testing.T) {
	script := "# " + dockerBuildFlags + " -o x .\n  # " + dockerBuildFlags + "\necho done # " + dockerBuildFlags + "\n"
	if got := releaseBuilds(script); len(got) != 0 {
		t.Errorf("builds found in comments and other text: %q", got)
	}
	if got := releaseBuilds("set -e\n" + dockerBuildFlags + ` -o "$bin" .` + "\n"); len(got) != 1 {
		t.Errorf("the build command is not found: %q", got)
	}
}
