// App Service authentication (built-in authentication, "Easy Auth") in front of the function
// app, for callers with a managed identity (a Logic App's, for one): deployed only with
// enableAppServiceAuth (main.bicep), which also sets USEREXPORT_HTTP_AUTH_LEVEL=anonymous
// (app/api.bicep), so the routes no longer ask for a function key; App Service answers 401 to
// a request without a valid Entra access token for the API's audience, and 403 to a token of
// an identity not on the allow-list. The app refuses to start with anonymous routes unless
// App Service says its authentication is on (WEBSITE_AUTH_ENABLED; userexport/settings.py).
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
          // The tenant's v2.0 authority in this cloud, as Microsoft Learn recommends; tokens of
          // managed identities are v1.0 tokens (iss https://sts.windows.net/<tenant>/) of the
          // same tenant.
          openIdIssuer: '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
        }
        validation: {
          allowedAudiences: allowedAudiences
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
