package app

import "testing"

// Each BOT_CLOUD names its own Bot Framework issuer and Graph, stated here
// literally rather than read back from the tables the code uses.
func TestEveryCloudsEndpoints(t *testing.T) {
	for _, tc := range []struct{ cloud, issuer, graph string }{
		{"public", "https://api.botframework.com", "https://graph.microsoft.com/v1.0"},
		{"usgov", "https://api.botframework.us", "https://graph.microsoft.us/v1.0"},
		{"usgovdod", "https://api.botframework.us", "https://dod-graph.microsoft.us/v1.0"},
		{"china", "https://api.botframework.azure.cn", "https://microsoftgraph.chinacloudapi.cn/v1.0"},
	} {
		cfg, err := loadConfig(func(k string) string {
			return map[string]string{"BOT_CLOUD": tc.cloud}[k]
		})
		if err != nil {
			t.Fatalf("%s: %v", tc.cloud, err)
		}
		if cfg.Cloud.Issuer != tc.issuer || cfg.GraphBaseURL != tc.graph {
			t.Errorf("%s: issuer %s, Graph %s; want %s, %s", tc.cloud, cfg.Cloud.Issuer, cfg.GraphBaseURL, tc.issuer, tc.graph)
		}
	}
}
