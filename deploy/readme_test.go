package deploy

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// readmeCommand is README's shell command that starts with prefix, its
// continuation lines joined, split into words, $VARIABLES expanded by vars.
func readmeCommand(t *testing.T, prefix string, vars map[string]string) []string {
	t.Helper()
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(string(readme), "\\\n", " ")
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, prefix) {
			line, _, _ = strings.Cut(line, " #")
			return strings.Fields(os.Expand(line, func(v string) string { return vars[v] }))
		}
	}
	t.Fatalf("README has no command starting %q", prefix)
	return nil
}

// README's helm install sets exactly the values the tests render for a
// tenant, so what README tells a tenant to run is what renders here.
func TestREADMEHelmInstall(t *testing.T) {
	words := readmeCommand(t, "helm install upgradebot deploy/helm/upgradebot", map[string]string{
		"APP_ID": appID, "TENANT_ID": tenantID, "BOT_HOST": "bot.contoso.com", "BOT_TLS_SECRET": "bot-contoso-com-tls",
	})
	var sets []string
	for i, w := range words {
		if w == "--set" && i+1 < len(words) {
			sets = append(sets, words[i+1])
		}
	}
	slices.Sort(sets)
	want := slices.Sorted(slices.Values(tenantSets()))
	if !slices.Equal(sets, want) {
		t.Errorf("README's helm install sets\n%v\nthe tests render\n%v", sets, want)
	}
	renderOK(t, sets...)
}

// README's az commands name the template's parameters and outputs.
func TestREADMEAzureCommands(t *testing.T) {
	tpl := loadTemplate(t)
	words := readmeCommand(t, "az deployment group create", nil)
	i := slices.Index(words, "--parameters")
	if i < 0 || words[slices.Index(words, "--template-file")+1] != "deploy/azure/azuredeploy.json" {
		t.Fatalf("az deployment group create %v", words)
	}
	for _, kv := range words[i+1:] {
		if strings.HasPrefix(kv, "--") {
			break
		}
		name, _, _ := strings.Cut(kv, "=")
		if _, ok := tpl.Parameters[name]; !ok {
			t.Errorf("README passes %s, which the template does not take", name)
		}
	}
	for name, p := range tpl.Parameters {
		if p.DefaultValue == nil && !slices.ContainsFunc(words, func(w string) bool { return strings.HasPrefix(w, name+"=") }) {
			t.Errorf("README does not pass the required parameter %s", name)
		}
	}
	readme, _ := os.ReadFile("../README.md")
	for _, m := range regexp.MustCompile(`properties\.outputs\.(\w+)\.value`).FindAllStringSubmatch(string(readme), -1) {
		if _, ok := tpl.Outputs[m[1]]; !ok {
			t.Errorf("README reads output %s, which the template does not have", m[1])
		}
	}
	if !strings.Contains(string(readme), "deploy/azure/grant-graph-permissions.sh") {
		t.Error("README does not run the grant script")
	}
}
