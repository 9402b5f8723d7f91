// Only with restrictExportsNetwork (main.bicep, USEREXPORT_EXPORTS_PRIVATE_NETWORK=true): the
// private way from the function app to the exports' storage account, whose public endpoint is
// then off (or open to allowedIpRanges only; app/exports-storage.bicep).
// - A virtual network with two subnets: 'app', delegated to Microsoft.App/environments (what
//   Flex Consumption's virtual network integration needs), and 'private-endpoints'.
// - A private endpoint for the exports account's blob service in 'private-endpoints', and the
//   private DNS zone privatelink.blob.<storage suffix> linked to the network, so that inside it
//   the account's usual name (<account>.blob.core.windows.net) resolves to the private address:
//   USEREXPORT_EXPORTS_BLOB_URI stays the same.
// Microsoft's Flex Consumption quickstart (Azure-Samples/functions-quickstart-python-http-azd,
// infra/app/vnet.bicep and storage-PrivateEndpoint.bicep) uses the same layout for the host's
// storage; here the host's storage stays public (the deployment goes through it), only the
// exports go private.
param name string
param location string
param tags object

@description('Resource id of the exports storage account the private endpoint leads to.')
param exportsStorageAccountId string

var appSubnetName = 'app'
var privateEndpointSubnetName = 'private-endpoints'
var blobPrivateDnsZoneName = 'privatelink.blob.${environment().suffixes.storage}'

resource vnet 'Microsoft.Network/virtualNetworks@2024-05-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    addressSpace: {
      addressPrefixes: [
        '10.0.0.0/16'
      ]
    }
    subnets: [
      {
        name: privateEndpointSubnetName
        properties: {
          addressPrefix: '10.0.1.0/24'
          privateEndpointNetworkPolicies: 'Disabled'
        }
      }
      {
        name: appSubnetName
        properties: {
          addressPrefix: '10.0.2.0/24'
          // With virtual network integration all of the app's outbound traffic goes through
          // this subnet: Microsoft Graph, the host's storage and Application Insights too, over
          // the subnet's default outbound access (kept on explicitly, since newer networks
          // default to private subnets).
          defaultOutboundAccess: true
          delegations: [
            {
              name: 'flex-consumption'
              properties: {
                serviceName: 'Microsoft.App/environments'
              }
            }
          ]
        }
      }
    ]
  }
}

resource blobPrivateDnsZone 'Microsoft.Network/privateDnsZones@2020-06-01' = {
  name: blobPrivateDnsZoneName
  location: 'global'
  tags: tags
}

resource blobPrivateDnsZoneLink 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2020-06-01' = {
  parent: blobPrivateDnsZone
  name: '${name}-link'
  location: 'global'
  tags: tags
  properties: {
    registrationEnabled: false
    virtualNetwork: {
      id: vnet.id
    }
  }
}

resource exportsPrivateEndpoint 'Microsoft.Network/privateEndpoints@2024-05-01' = {
  name: 'pe-${name}-exports-blob'
  location: location
  tags: tags
  properties: {
    subnet: {
      id: '${vnet.id}/subnets/${privateEndpointSubnetName}'
    }
    privateLinkServiceConnections: [
      {
        name: 'exports-blob'
        properties: {
          privateLinkServiceId: exportsStorageAccountId
          groupIds: [
            'blob'
          ]
        }
      }
    ]
  }
}

resource exportsPrivateDnsZoneGroup 'Microsoft.Network/privateEndpoints/privateDnsZoneGroups@2024-05-01' = {
  parent: exportsPrivateEndpoint
  name: 'default'
  properties: {
    privateDnsZoneConfigs: [
      {
        name: 'blob'
        properties: {
          privateDnsZoneId: blobPrivateDnsZone.id
        }
      }
    ]
  }
}

output appSubnetId string = '${vnet.id}/subnets/${appSubnetName}'
