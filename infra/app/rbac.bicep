// Role assignments, least privilege. Why each role is needed is listed in docs/deploy.md and
// checked by tests/infra (the set of role definition ids per principal and scope is fixed there).
// Two storage accounts: the host's (app/storage.bicep: host keys and leases, the deployment
// package, jobs table and queues) and the exports' (app/exports-storage.bicep). The app's roles
// on the host's account are what the Functions host needs there; on the exports it gets only the
// exports container's data and the user delegation key for the SAS links.
param storageAccountName string
param exportsStorageAccountName string
param exportsContainerName string
param applicationInsightsName string

@description('Principal id of the function app\'s user-assigned identity.')
param identityPrincipalId string

@description('Object id of the deploying user or principal; used only when grantDeployerDataAccess.')
param principalId string = ''

@allowed([
  'User'
  'ServicePrincipal'
])
param principalType string = 'User'
param grantDeployerDataAccess bool = false

// Built-in role definition ids.
// Functions host storage (AzureWebJobsStorage): keys, timer/singleton leases, the containers the
// host creates for them, the Flex Consumption deployment package.
var storageBlobDataOwner = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
// Queue trigger (receive, delete, update visibility, move to export-jobs-poison), enqueueing.
var storageQueueDataContributor = '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
// The exportjobs table (ETag-guarded entity writes) and the host's diagnostic events table.
var storageTableDataContributor = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
// Entra-authenticated telemetry to Application Insights (local auth is off).
var monitoringMetricsPublisher = '3913510d-42f4-4e42-8a64-420c390055eb'
// The app, on the exports container only: write the CSV blocks, read, list and delete exports.
// The deployer (optional), on the exports account: read the exports, mint SAS links.
var storageBlobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
// The app, on the exports account: the user delegation key behind the SAS links. Get User
// Delegation Key acts on the account, so a container-scoped data role cannot ask for it; the
// Delegator role grants that action alone, and the SAS it signs reaches no further than the
// identity's data roles (the exports container). Microsoft Learn, "Create a user delegation SAS".
var storageBlobDelegator = 'db58b8e5-c6ad-4a2a-8342-4190687cbf4a'

var grantDeployer = grantDeployerDataAccess && !empty(principalId)

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource exportsStorage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: exportsStorageAccountName
}

resource exportsBlobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: exportsStorage
  name: 'default'
}

resource exportsContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: exportsBlobService
  name: exportsContainerName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

// --- the function app's managed identity -------------------------------------------------

resource appBlobDataOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identityPrincipalId, storageBlobDataOwner)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwner)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource appQueueDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identityPrincipalId, storageQueueDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataContributor)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource appTableDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identityPrincipalId, storageTableDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributor)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource appMetricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(applicationInsights.id, identityPrincipalId, monitoringMetricsPublisher)
  scope: applicationInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisher)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// On the exports: the container's data, and the account's user delegation key. Nothing here
// reaches the host's account.
resource appExportsBlobDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(exportsContainer.id, identityPrincipalId, storageBlobDataContributor)
  scope: exportsContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource appExportsBlobDelegator 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(exportsStorage.id, identityPrincipalId, storageBlobDelegator)
  scope: exportsStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDelegator)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// --- the deploying user (optional) ----------------------------------------------------------

resource deployerBlobDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (grantDeployer) {
  name: guid(storage.id, principalId, storageBlobDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    principalId: principalId
    principalType: principalType
  }
}

resource deployerQueueDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (grantDeployer) {
  name: guid(storage.id, principalId, storageQueueDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataContributor)
    principalId: principalId
    principalType: principalType
  }
}

resource deployerTableDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (grantDeployer) {
  name: guid(storage.id, principalId, storageTableDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributor)
    principalId: principalId
    principalType: principalType
  }
}

// The deployer reads the exports (and may mint SAS links for them) on the exports' account. The
// roles on the host's account above let them run the app and its Functions host locally against
// Azure storage; a deployer holds the subscription rights to deploy code anyway.
resource deployerExportsBlobDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (grantDeployer) {
  name: guid(exportsStorage.id, principalId, storageBlobDataContributor)
  scope: exportsStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    principalId: principalId
    principalType: principalType
  }
}
