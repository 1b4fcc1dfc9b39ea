// The benchmark's peer: how Teams developers build a bot today, with the
// official SDK (botbuilder 4.23, CloudAdapter). It answers every message
// with the same help card as our bot (the bench writes it to HELP_CARD) and
// verifies the channel's tokens the way botbuilder does: OpenID metadata and
// JWKS at ToBotFromChannelOpenIdMetadataUrl, the issuer, the app id as
// audience, the key's channel endorsements and the serviceurl claim. Only
// the endpoints point at the bench's local fakes.
'use strict';

const fs = require('node:fs');
const http = require('node:http');
const https = require('node:https');
const {
    ActivityHandler,
    CardFactory,
    CloudAdapter,
    ConfigurationBotFrameworkAuthentication,
} = require('botbuilder');
const { ServiceClientCredentialsFactory } = require('botframework-connector');

const env = (name) => {
    const v = process.env[name];
    if (!v) {
        console.error(`peer: ${name} is required`);
        process.exit(2);
    }
    return v;
};

const appId = env('MicrosoftAppId');
const tenantId = env('MicrosoftAppTenantId');
const card = JSON.parse(fs.readFileSync(env('HELP_CARD'), 'utf8'));

// Replies need a token for the connector. botbuilder would ask MSAL, whose
// authority discovery reaches login.microsoftonline.com; offline, the peer
// asks the bench's Entra ID fake directly with the same client-credentials
// grant, once, and reuses the token as MSAL's cache would.
class LocalTokenFactory extends ServiceClientCredentialsFactory {
    constructor(authority, password) {
        super();
        this.authority = authority;
        this.password = password;
        this.token = null;
    }
    async isValidAppId(id) { return id === appId; }
    async isAuthenticationDisabled() { return false; }
    async createCredentials(_appId, audience) {
        const scope = `${audience || 'https://api.botframework.com'}/.default`;
        const factory = this;
        return {
            async signRequest(webResource) {
                factory.token = factory.token || factory.fetchToken(scope);
                webResource.headers.set('Authorization', `Bearer ${await factory.token}`);
                return webResource;
            },
        };
    }
    fetchToken(scope) {
        const body = new URLSearchParams({ grant_type: 'client_credentials', client_id: appId, client_secret: this.password, scope }).toString();
        const url = new URL(`${this.authority}${tenantId}/oauth2/v2.0/token`);
        return new Promise((resolve, reject) => {
            const req = https.request(url, { method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded' } }, (res) => {
                let data = '';
                res.on('data', (c) => { data += c; });
                res.on('end', () => {
                    try { resolve(JSON.parse(data).access_token); } catch (e) { reject(e); }
                });
            });
            req.on('error', reject);
            req.end(body);
        });
    }
}

const auth = new ConfigurationBotFrameworkAuthentication(
    {
        MicrosoftAppId: appId,
        MicrosoftAppType: 'SingleTenant',
        MicrosoftAppTenantId: tenantId,
        ToBotFromChannelOpenIdMetadataUrl: env('BOT_OPENID_METADATA_URL'),
        ToBotFromChannelTokenIssuer: 'https://api.botframework.com',
        ToChannelFromBotOAuthScope: 'https://api.botframework.com',
        ToChannelFromBotLoginUrl: `${env('AZURE_AUTHORITY_HOST')}${tenantId}`,
        ValidateAuthority: false,
    },
    new LocalTokenFactory(env('AZURE_AUTHORITY_HOST'), env('MicrosoftAppPassword')),
);
const adapter = new CloudAdapter(auth);
adapter.onTurnError = async (context, error) => {
    console.error('peer: turn failed:', error);
};

class HelpBot extends ActivityHandler {
    constructor() {
        super();
        this.onMessage(async (context, next) => {
            await context.sendActivity({ attachments: [CardFactory.adaptiveCard(card)] });
            await next();
        });
    }
}
const bot = new HelpBot();

// A Node http server with the small request/response shims CloudAdapter
// expects from restify or express (a parsed body, status/header/send).
const server = http.createServer((req, res) => {
    if (req.method !== 'POST' || req.url !== '/api/messages') {
        res.writeHead(req.url === '/readyz' ? 200 : 404).end();
        return;
    }
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
        try {
            req.body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        } catch {
            res.writeHead(400).end();
            return;
        }
        const shim = {
            socket: res.socket,
            status(code) { res.statusCode = code; },
            header(name, value) { res.setHeader(name, value); },
            send(body) {
                if (body !== undefined) {
                    res.setHeader('Content-Type', 'application/json');
                    res.write(typeof body === 'string' ? body : JSON.stringify(body));
                }
            },
            end() { res.end(); },
        };
        adapter.process(req, shim, (context) => bot.run(context)).catch((err) => {
            console.error('peer:', err);
            if (!res.writableEnded) res.writeHead(500).end();
        });
    });
});
server.listen(Number(env('PORT')), '127.0.0.1', () => console.log(`peer listening on ${server.address().port}`));
