package app

import (
	"fmt"
	"net/http"
	"os"
	"sync"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

// credentials makes the app's Entra ID credentials, of whichever kind the
// configuration names: a managed identity (UserAssignedMSI), workload
// identity federation (AZURE_FEDERATED_TOKEN_FILE, as AKS sets it), a
// certificate (MicrosoftAppCertificatePath) or a client secret. Each
// tenant's is built once and shared (the connector's and Graph's, when
// they are the same tenant), so its token cache is too.
type credentials struct {
	cfg       config
	transport *http.Client

	mu      sync.Mutex
	tenants map[string]azcore.TokenCredential
}

func newCredentials(cfg config, transport *http.Client) *credentials {
	return &credentials{cfg: cfg, transport: transport, tenants: map[string]azcore.TokenCredential{}}
}

// connector is the credential for the Bot Framework connector: the app's
// tenant for SingleTenant, the Bot Framework's for MultiTenant.
func (c *credentials) connector() (azcore.TokenCredential, error) {
	return c.forTenant(c.connectorTenant())
}

func (c *credentials) connectorTenant() string {
	if c.cfg.AppType == appTypeMultiTenant {
		return c.cfg.Cloud.MultiTenantAuthority
	}
	return c.cfg.AppTenantID
}

// forTenant is the credential that gets tokens in tenant (Graph is asked as
// the tenant a chat lives in).
func (c *credentials) forTenant(tenant string) (azcore.TokenCredential, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cred, ok := c.tenants[tenant]; ok {
		return cred, nil
	}
	cred, err := c.build(tenant)
	if err != nil {
		return nil, err
	}
	c.tenants[tenant] = cred
	return cred, nil
}

// release forgets a tenant's credential (and its token cache) once Graph
// has released its client there for being idle. The connector's tenant is
// kept: the connector holds its credential for good.
func (c *credentials) release(tenant string) {
	if tenant == c.connectorTenant() {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.tenants, tenant)
}

func (c *credentials) build(tenant string) (azcore.TokenCredential, error) {
	opts := azcore.ClientOptions{Cloud: cloud.Configuration{ActiveDirectoryAuthorityHost: c.cfg.AuthorityHost}}
	if c.transport != nil {
		opts.Transport = c.transport
	}
	// A custom authority (a sovereign setup, a local fake) is unknown to
	// MSAL's instance discovery, which would otherwise fail every request.
	noDiscovery := c.cfg.CustomAuthority
	switch {
	case c.cfg.AppType == appTypeUserAssignedMSI:
		return azidentity.NewManagedIdentityCredential(&azidentity.ManagedIdentityCredentialOptions{
			ClientOptions: opts, ID: azidentity.ClientID(c.cfg.AppID),
		})
	case c.cfg.FederatedTokenFile != "":
		return azidentity.NewWorkloadIdentityCredential(&azidentity.WorkloadIdentityCredentialOptions{
			ClientOptions: opts, ClientID: c.cfg.AppID, TenantID: tenant, TokenFilePath: c.cfg.FederatedTokenFile,
			DisableInstanceDiscovery: noDiscovery,
		})
	case c.cfg.CertificatePath != "":
		data, err := os.ReadFile(c.cfg.CertificatePath)
		if err != nil {
			return nil, fmt.Errorf("MicrosoftAppCertificatePath: %w", err)
		}
		certs, key, err := azidentity.ParseCertificates(data, []byte(c.cfg.CertificatePassword))
		if err != nil {
			return nil, fmt.Errorf("MicrosoftAppCertificatePath: %w", err)
		}
		return azidentity.NewClientCertificateCredential(tenant, c.cfg.AppID, certs, key, &azidentity.ClientCertificateCredentialOptions{
			ClientOptions: opts, DisableInstanceDiscovery: noDiscovery,
		})
	}
	return azidentity.NewClientSecretCredential(tenant, c.cfg.AppID, c.cfg.AppPassword, &azidentity.ClientSecretCredentialOptions{
		ClientOptions: opts, DisableInstanceDiscovery: noDiscovery,
	})
}
