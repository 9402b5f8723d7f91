// The function app: Flex Consumption (FC1), Python 3.11, running as the user-assigned identity.
// Storage is reached with identity-based connections only (no keys, no connection strings): the
// host's account through AzureWebJobsStorage__*, the exports' through USEREXPORT_EXPORTS_BLOB_URI.
// The app settings below are exactly those userexport/settings.py reads (APP_SETTINGS minus
// LOCAL_ONLY_SETTINGS) plus the host's Application Insights settings; tests/infra checks it.
//
// Flex Consumption refuses many site and siteConfig properties that other plans take (ARM error
// 51021, "The following list of ... site configuration properties (Site.SiteConfig.FtpsState,
// ...) for Flex Consumption sites is invalid"), in some regions and not yet in others: a
// template that deployed once proves nothing. tests/infra fails on any property of its list
// (FLEX_REJECTED_SITE_PROPERTIES, with the sources). So there is no ftpsState here: FTP and FTPS
// are off through the basicPublishingCredentialsPolicies below, and runtime, scale and the
// deployment package live in functionAppConfig.
param name string
param planName string
param location string
param tags object
param identityId string
param identityClientId string
param storageAccountName string
param deploymentContainerName string
@description('Blob endpoint of the exports\' own storage account (USEREXPORT_EXPORTS_BLOB_URI).')
param exportsBlobEndpoint string
param applicationInsightsName string
param maximumInstanceCount int
param instanceMemoryMB int
param nightlySchedule string
param sasLifetimeMinutes int
param timeBudgetSeconds int
param partitions int
param smallTenantUsers int
param partitionSeconds int
param nightlyMode string
param seriesKeep int
param deltaFullDays int
param stormSeconds int
param statusRetryAfterSeconds int
param leaseGraceSeconds int
param failureCapMinutes int
param stallMinutes int
param maxRunningExports int
param maxQueuedExports int
param admissionSeconds int
param graphBaseUrl string
@description('App Service authentication stands in front (app/auth.bicep): the HTTP routes take no function key.')
param anonymousHttpRoutes bool = false
@description('With anonymousHttpRoutes: the object ids App Service authentication lets in (its allowedPrincipals.identities), comma-separated; the app checks each request against them again.')
param allowedCallers string = ''
@description('Subnet for virtual network integration (app/network.bicep, with restrictExportsNetwork); empty: none.')
param virtualNetworkSubnetId string = ''

// Only when App Service authentication is on, and always together: the anonymous level and the
// app's own copy of App Service authentication's allow-list. The app lets an anonymous-level
// request in only when App Service authentication's X-MS-CLIENT-PRINCIPAL-ID is on that list,
// and refuses to start at the anonymous level with an empty one (userexport/settings.py): it
// does not rely on WEBSITE_AUTH_ENABLED, which Flex Consumption may not set. Absent (App
// Service authentication off), the routes keep the code's default, function: a key on every
// call, and no allow-list is needed (tests/infra checks both states).
var httpAuthLevelSettings = anonymousHttpRoutes ? [
  {
    name: 'USEREXPORT_HTTP_AUTH_LEVEL'
    value: 'anonymous'
  }
  {
    name: 'USEREXPORT_ALLOWED_CALLERS'
    value: allowedCallers
  }
] : []

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  // azd finds the app to deploy service "api" to by this tag.
  tags: union(tags, {
    'azd-service-name': 'api'
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    // Only with restrictExportsNetwork: the private endpoint of the exports' account is reached
    // through this subnet (Flex Consumption then sends all outbound traffic through it).
    virtualNetworkSubnetId: empty(virtualNetworkSubnetId) ? null : virtualNetworkSubnetId
    clientCertEnabled: false
    // Only settings Flex Consumption accepts: see the note at the top of this file.
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      http20Enabled: true
      appSettings: concat([
        // Host storage and the app's own storage clients, identity-based.
        {
          name: 'AzureWebJobsStorage__blobServiceUri'
          value: storage.properties.primaryEndpoints.blob
        }
        {
          name: 'AzureWebJobsStorage__queueServiceUri'
          value: storage.properties.primaryEndpoints.queue
        }
        {
          name: 'AzureWebJobsStorage__tableServiceUri'
          value: storage.properties.primaryEndpoints.table
        }
        {
          name: 'AzureWebJobsStorage__credential'
          value: 'managedidentity'
        }
        {
          name: 'AzureWebJobsStorage__clientId'
          value: identityClientId
        }
        // The exports live in a storage account of their own (app/exports-storage.bicep), reached
        // with the identity: its exports container and its user delegation key only.
        {
          name: 'USEREXPORT_EXPORTS_BLOB_URI'
          value: exportsBlobEndpoint
        }
        // The identity azure-identity's ManagedIdentityCredential uses (Graph, storage SDKs).
        {
          name: 'AZURE_CLIENT_ID'
          value: identityClientId
        }
        {
          name: 'USEREXPORT_CREDENTIAL'
          value: 'managedidentity'
        }
        {
          name: 'USEREXPORT_GRAPH_BASE_URL'
          value: graphBaseUrl
        }
        {
          name: 'USEREXPORT_SAS_LIFETIME_MINUTES'
          value: string(sasLifetimeMinutes)
        }
        {
          name: 'USEREXPORT_NIGHTLY_SCHEDULE'
          value: nightlySchedule
        }
        {
          name: 'USEREXPORT_TIME_BUDGET_SECONDS'
          value: string(timeBudgetSeconds)
        }
        {
          name: 'USEREXPORT_PARTITIONS'
          value: string(partitions)
        }
        {
          name: 'USEREXPORT_SMALL_TENANT_USERS'
          value: string(smallTenantUsers)
        }
        {
          name: 'USEREXPORT_PARTITION_SECONDS'
          value: string(partitionSeconds)
        }
        {
          name: 'USEREXPORT_NIGHTLY_MODE'
          value: nightlyMode
        }
        {
          name: 'USEREXPORT_SERIES_KEEP'
          value: string(seriesKeep)
        }
        {
          name: 'USEREXPORT_DELTA_FULL_DAYS'
          value: string(deltaFullDays)
        }
        {
          name: 'USEREXPORT_STORM_SECONDS'
          value: string(stormSeconds)
        }
        {
          name: 'USEREXPORT_STATUS_RETRY_AFTER_SECONDS'
          value: string(statusRetryAfterSeconds)
        }
        {
          name: 'USEREXPORT_LEASE_GRACE_SECONDS'
          value: string(leaseGraceSeconds)
        }
        {
          name: 'USEREXPORT_FAILURE_CAP_MINUTES'
          value: string(failureCapMinutes)
        }
        {
          name: 'USEREXPORT_STALL_MINUTES'
          value: string(stallMinutes)
        }
        {
          name: 'USEREXPORT_MAX_RUNNING_EXPORTS'
          value: string(maxRunningExports)
        }
        {
          name: 'USEREXPORT_MAX_QUEUED_EXPORTS'
          value: string(maxQueuedExports)
        }
        {
          name: 'USEREXPORT_ADMISSION_SECONDS'
          value: string(admissionSeconds)
        }
        // Telemetry with an Entra token (Application Insights has local auth disabled).
        {
          name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
          value: applicationInsights.properties.ConnectionString
        }
        {
          name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
          value: 'ClientId=${identityClientId};Authorization=AAD'
        }
      ], httpAuthLevelSettings)
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

// No publishing with basic (user name / password) credentials: azd deploys to Flex Consumption
// through the deployment container with Entra ID.
resource ftpPolicy 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmPolicy 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'scm'
  properties: {
    allow: false
  }
}

output name string = functionApp.name
output uri string = 'https://${functionApp.properties.defaultHostName}'
output id string = functionApp.id
