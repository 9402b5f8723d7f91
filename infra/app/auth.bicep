// App Service authentication (built-in authentication, "Easy Auth") in front of the function
// app, for callers with a managed identity (a Logic App's, for one): deployed only with
// enableAppServiceAuth (main.bicep), which also sets USEREXPORT_HTTP_AUTH_LEVEL=anonymous
// (app/api.bicep), so the routes no longer ask for a function key; App Service answers 401 to
// a request without a valid Entra access token for the API's audience, and 403 to a token of
// an identity not on the allow-list. The app holds its own copy of that allow-list
// (USEREXPORT_ALLOWED_CALLERS, set beside the anonymous level by app/api.bicep) and answers 401
// to any request whose X-MS-CLIENT-PRINCIPAL-ID (set by App Service authentication) is not on
// it; with an empty list it refuses to start at the anonymous level (userexport/settings.py).
// It does not rest on WEBSITE_AUTH_ENABLED, which Flex Consumption may not set and which also
// reads True when unauthenticated requests are let through.
//
// Schema: Microsoft.Web/sites/config 'authsettingsV2'; the built-in authorization policy
// (defaultAuthorizationPolicy) is documented in "Configure your App Service or Azure Functions
// app to use Microsoft Entra sign-in", section "Use a built-in authorization policy".
param functionAppName string

@description('Application (client) ID of the Entra app registration that represents the API (always an allowed audience).')
param clientId string

@description('Further allowed token audiences, e.g. the registration\'s Application ID URI api://userexport-<env>.')
param allowedAudiences array

@description('Object ids of the managed identities allowed to call (allowedPrincipals.identities).')
param allowedIdentities array

// Tokens of managed identities (a Logic App's "Managed identity" authentication, azure-identity's
// ManagedIdentityCredential) follow the API registration's accepted token version, v1.0 unless
// it says 2 (requestedAccessTokenVersion): iss https://sts.windows.net/<tenant>/ and, asked for
// with the Application ID URI, aud api://<client id>; v2.0 tokens have
// iss https://login.microsoftonline.com/<tenant>/v2.0 and aud <client id>. Sources (Microsoft
// Learn): "Access tokens in the Microsoft identity platform" (token versions) and "Access token
// claims reference" (aud: "In v1.0 tokens, it can be the client ID or the resource URI used in
// the request"). The client id is always an allowed audience ("Configure your App Service or
// Azure Functions app to use Microsoft Entra sign-in"), listed here all the same, beside
// api://<client id> for v1.0 tokens and whatever Application ID URI the deployer names.
var audiences = union(allowedAudiences, [
  'api://${clientId}'
  clientId
])
// The issuer: one v2.0 authority of the tenant, as "Configure your App Service or Azure Functions
// app to use Microsoft Entra sign-in" asks (Issuer URL `<authentication-endpoint>/<tenant-id>/v2.0`;
// its 2025 text adds that a workforce tenant in global Azure uses https://sts.windows.net as the
// authentication endpoint, which is also what the portal writes). authsettingsV2 has a single
// openIdIssuer, no list: App Service derives the accepted `iss` values from it, and with the
// portal's https://sts.windows.net/<tenant>/v2.0 it takes both the v1.0 tokens of managed
// identities (iss https://sts.windows.net/<tenant>/) and v2.0 tokens (iss
// https://login.microsoftonline.com/<tenant>/v2.0) of that tenant. Sources: rakhesh.com, "A
// rambling post on Issuer Claim, v1.0 and v2.0 endpoint, Access Tokens" (a Function with the
// portal's issuer, called with v1.0 client-credential tokens); MicrosoftDocs/azure-docs#76602
// (2021, App Service: "work being done so EasyAuth can accept both v1 and v2 access bearer
// tokens at that endpoint"). Still tenant-specific, so another tenant's tokens get 401. A
// national cloud keeps its own login endpoint. devhost emulates exactly this, both issuers of
// the tenant whichever the metadata names (devtools/devhost/auth.py); docs/deploy.md's step 4
// checks it with a real token, and if a valid v1.0 token ever gets 401, setting the
// registration's requestedAccessTokenVersion to 2 makes every token v2.0 (docs/deploy.md,
// "Troubleshooting").
var authenticationEndpoint = environment().name == 'AzureCloud' ? 'https://sts.windows.net/' : environment().authentication.loginEndpoint
var openIdIssuer = '${authenticationEndpoint}${tenant().tenantId}/v2.0'

resource functionApp 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
}

resource authSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  // checkov applies its checks of the site's 'web' configuration to every sites/config resource;
  // this one is authsettingsV2 (tests/infra checks each skip below still hides a finding).
  // checkov:skip=CKV_AZURE_13: this resource is App Service authentication itself; the check looks for the V1 siteAuthEnabled switch
  // checkov:skip=CKV_AZURE_63: HTTP logging is a 'web' config property, not authsettingsV2's; logs go to Application Insights
  // checkov:skip=CKV_AZURE_65: detailed error messages are a 'web' config property, not authsettingsV2's
  // checkov:skip=CKV_AZURE_66: failed request tracing is a 'web' config property, not authsettingsV2's
  // checkov:skip=CKV_AZURE_80: netFrameworkVersion is a 'web' config property (a Python app; Flex Consumption refuses it)
  // checkov:skip=CKV_AZURE_88: Azure Files mounts are a 'web' config property; the app mounts none
  parent: functionApp
  name: 'authsettingsV2'
  properties: {
    platform: {
      enabled: true
    }
    globalValidation: {
      requireAuthentication: true
      // An API: no sign-in redirect, a plain 401.
      unauthenticatedClientAction: 'Return401'
    }
    httpSettings: {
      requireHttps: true
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          clientId: clientId
          // Both token versions of this tenant: see openIdIssuer above.
          openIdIssuer: openIdIssuer
        }
        validation: {
          allowedAudiences: audiences
          defaultAuthorizationPolicy: {
            allowedPrincipals: {
              identities: allowedIdentities
            }
          }
        }
      }
    }
    login: {
      // Bearer tokens only: nothing to keep between requests.
      tokenStore: {
        enabled: false
      }
    }
  }
}
