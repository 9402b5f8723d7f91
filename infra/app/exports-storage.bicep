// The exports' own storage account: the `exports` container (every export's CSV and errors
// file, the personal data of every employee) and nothing else. It is apart from the host's
// account (app/storage.bicep: host keys, leases, the deployment package, jobs), so a right on the
// exports is no right on the deployed code: the app's identity gets Storage Blob Data Contributor
// on the exports container only and Storage Blob Delegator on this account (app/rbac.bicep).
// The app reaches it with its identity through USEREXPORT_EXPORTS_BLOB_URI (app/api.bicep).
// The container's name must match userexport/settings.py (EXPORTS_CONTAINER).
param name string
param location string
param tags object

@minValue(1)
@description('Days after which exported CSV and error files are deleted by the lifecycle rule.')
param exportRetentionDays int

@description('Resource id of the Log Analytics workspace the blob service\'s logs go to.')
param logAnalyticsWorkspaceId string

@description('Restrict the account\'s network: public access off, except for allowedIpRanges; the app comes in through a private endpoint (app/network.bicep).')
param restrictNetwork bool = false

@description('With restrictNetwork: public IPv4 addresses or CIDR ranges still let in over the public endpoint (SAS downloads from outside). Empty: public network access disabled.')
param allowedIpRanges array = []

var exportsContainerName = 'exports'
var ipRules = [for ipRange in allowedIpRanges: {
  value: ipRange
  action: 'Allow'
}]
// Off: like the host's account, open to the network and closed to anyone without an Entra token
// or a SAS (shared keys are off). On: denied by default; with no allowed range the public
// endpoint is off altogether and only the private endpoint is left.
var publicNetworkAccess = (restrictNetwork && empty(allowedIpRanges)) ? 'Disabled' : 'Enabled'
var networkAcls = restrictNetwork ? {
  defaultAction: 'Deny'
  bypass: 'AzureServices'
  ipRules: ipRules
} : {
  defaultAction: 'Allow'
  bypass: 'AzureServices'
}

resource exportsStorage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    allowCrossTenantReplication: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    dnsEndpointType: 'Standard'
    publicNetworkAccess: publicNetworkAccess
    networkAcls: networkAcls
    encryption: {
      keySource: 'Microsoft.Storage'
      requireInfrastructureEncryption: true
      services: {
        blob: {
          enabled: true
          keyType: 'Account'
        }
        file: {
          enabled: true
          keyType: 'Account'
        }
        queue: {
          enabled: true
          keyType: 'Account'
        }
        table: {
          enabled: true
          keyType: 'Account'
        }
      }
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: exportsStorage
  name: 'default'
  properties: {
    // An export deleted by mistake (or by someone with the app's rights) can be undeleted for a
    // week; the lifecycle rule below still ends every export's life.
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource exportsContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: exportsContainerName
  properties: {
    publicAccess: 'None'
  }
}

// Who read, wrote or deleted which export: every blob request (a SAS download included, with
// the SAS's signature hidden and the caller's IP address) lands in the workspace's
// StorageBlobLogs table (docs/deploy.md, "Who downloaded an export"). Logs exist only on the
// service (blobServices/default), not on the account. Categories: Microsoft Learn, "Supported
// logs for Microsoft.Storage/storageAccounts/blobServices".
resource blobDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'exports-blob-logs'
  scope: blobService
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      {
        category: 'StorageRead'
        enabled: true
      }
      {
        category: 'StorageWrite'
        enabled: true
      }
      {
        category: 'StorageDelete'
        enabled: true
      }
    ]
  }
}

// Exports (the CSV and its errors file) are deleted after exportRetentionDays.
resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = {
  parent: exportsStorage
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          name: 'delete-old-exports'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [
                'blockBlob'
              ]
              prefixMatch: [
                '${exportsContainerName}/'
              ]
            }
            actions: {
              baseBlob: {
                delete: {
                  daysAfterCreationGreaterThan: exportRetentionDays
                }
              }
            }
          }
        }
      ]
    }
  }
  dependsOn: [
    exportsContainer
  ]
}

output name string = exportsStorage.name
output id string = exportsStorage.id
output containerName string = exportsContainer.name
output blobEndpoint string = exportsStorage.properties.primaryEndpoints.blob
