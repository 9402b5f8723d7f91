// userexport: everything `azd up` provisions (docs/deploy.md).
// Plain resource declarations in local modules (no registry modules), so the whole tree parses
// and scans offline (tests/infra).
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the azd environment; seeds the unique suffix of every resource name.')
param environmentName string

@minLength(1)
@description('Region of every resource. It must offer the Flex Consumption plan.')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Object id of the deploying user or principal (azd sets AZURE_PRINCIPAL_ID).')
param principalId string = ''

@allowed([
  'User'
  'ServicePrincipal'
])
@description('Kind of principal principalId names.')
param principalType string = 'User'

@description('Give principalId data access to the storage account (blobs, queues, tables), so the app can run locally against Azure storage and exports can be inspected.')
param grantDeployerDataAccess bool = false

// Off by default: most deployers may not grant Microsoft Graph application permissions, and a
// refused grant would fail `azd up` after everything else was created. The postprovision hook
// (infra/hooks/) prints the administrator's commands instead; docs/deploy.md has them too.
@description('Assign the Graph application permissions to the managed identity (Microsoft Graph Bicep extension, public cloud only): User.Read.All always, and UserAuthenticationMethod.Read.All, AuditLog.Read.All, LicenseAssignment.Read.All, GroupMember.Read.All and AdministrativeUnit.Read.All as the graph* parameters below ask. Needs a deployer allowed to grant them (Privileged Role Administrator or Global Administrator). Default false: an administrator grants them afterwards with the commands the postprovision hook prints (docs/deploy.md, which also says what each permission is for).')
param grantGraphPermissions bool = false

// The Graph permissions, one parameter per optional one, each named after the export feature
// that needs it (docs/deploy.md, "Choosing the permissions"). All on by default, as before they
// were parameters: every column and filter works once the grant is made. Turning one off leaves
// its permission out of the grant (grantGraphPermissions) and out of the administrator's
// commands the postprovision hook prints (USEREXPORT_GRAPH_PERMISSIONS); an export that needs it
// then says which permission it missed. User.Read.All has no parameter: no export runs without it.
@description('UserAuthenticationMethod.Read.All, for the authentication columns (authenticationAlternativePhoneNumber, authenticationEmail). Default true.')
param graphAuthenticationColumns bool = true

@description('AuditLog.Read.All, for the sign-in columns (lastSignInDateTime, ..., daysSinceLastSignIn; the tenant also needs Entra ID P1/P2). Default true.')
param graphSignInColumns bool = true

@description('LicenseAssignment.Read.All, for licence names (SKU part numbers) in assignedLicenses instead of SKU ids. Default true.')
param graphLicenceNames bool = true

@description('GroupMember.Read.All, for exports scoped to a group (filter.group). Default true.')
param graphGroupScope bool = true

@description('AdministrativeUnit.Read.All, for exports scoped to an administrative unit (filter.administrativeUnit). Default true.')
param graphAdministrativeUnitScope bool = true

@description('USEREXPORT_NIGHTLY_SCHEDULE: 6-field NCRONTAB, UTC (Flex Consumption ignores WEBSITE_TIME_ZONE).')
param nightlySchedule string = '0 0 2 * * *'

@minValue(1)
@description('USEREXPORT_SAS_LIFETIME_MINUTES: lifetime of the download links (at most 7 days).')
@maxValue(10080)
param sasLifetimeMinutes int = 60

@minValue(1)
@description('USEREXPORT_TIME_BUDGET_SECONDS: work per invocation before the worker checkpoints and continues in a new message.')
param timeBudgetSeconds int = 240

@minValue(1)
@maxValue(64)
@description('USEREXPORT_PARTITIONS: at most how many partitions (UPN prefix ranges) an export is split into; the plan picks the count from its estimate; 1 lists sequentially.')
param partitions int = 32

@minValue(0)
@description('USEREXPORT_SMALL_TENANT_USERS: listings of at most this many users run as one sequence (one $count and a page or two).')
param smallTenantUsers int = 1000

@minValue(0)
@description('USEREXPORT_PARTITION_SECONDS: the estimated work (seconds) a partition is planned for; 0 always splits into USEREXPORT_PARTITIONS.')
param partitionSeconds int = 10

@allowed(['delta', 'full'])
@description('USEREXPORT_NIGHTLY_MODE: the nightly series reads only the changes since the night before (delta, with its snapshot) or lists the whole tenant (full).')
param nightlyMode string = 'delta'

@minValue(1)
@description('USEREXPORT_SERIES_KEEP: the newest exports of each series kept; older ones are deleted by the nightly timer.')
param seriesKeep int = 14

@minValue(1)
@description('USEREXPORT_DELTA_FULL_DAYS: a delta series runs a full export when its last full run is older than this (refreshes the authentication columns).')
param deltaFullDays int = 7

@minValue(1)
@description('USEREXPORT_STORM_SECONDS: how long a failure that a storm of Graph errors could explain (one user\'s lookup failing while others are served, a wrong "no premium licence" 403) is retried before it is believed.')
param stormSeconds int = 120

@minValue(1)
@description('USEREXPORT_STATUS_RETRY_AFTER_SECONDS: Retry-After sent while an export runs.')
param statusRetryAfterSeconds int = 10

@minValue(1)
@description('USEREXPORT_LEASE_GRACE_SECONDS: a partition\'s lease lasts the time budget plus this grace.')
param leaseGraceSeconds int = 120

@minValue(1)
@description('USEREXPORT_FAILURE_CAP_MINUTES: how long Graph may keep failing without a success before a job fails.')
param failureCapMinutes int = 30

@minValue(1)
@description('USEREXPORT_STALL_MINUTES: how long a job may show no progress before the sweep queues it again from its checkpoints.')
param stallMinutes int = 15

@minValue(1)
@description('USEREXPORT_MAX_RUNNING_EXPORTS: exports running at once; the rest wait queued, in order (small exports, changes runs and the nightly run do not wait). Every export of the tenant shares one Graph budget: more at once is not faster.')
param maxRunningExports int = 3

@minValue(1)
@description('USEREXPORT_MAX_QUEUED_EXPORTS: queued exports past which POST /api/exports answers 429 with Retry-After (the nightly run is never refused).')
param maxQueuedExports int = 100

@minValue(1)
@description('USEREXPORT_ADMISSION_SECONDS: how often a queued export asks again for its turn.')
param admissionSeconds int = 30

@description('USEREXPORT_GRAPH_BASE_URL: Microsoft Graph endpoint. The app asks for its Graph token for <scheme>://<host>/.default of this URL, so a national cloud\'s Graph works (e.g. https://graph.microsoft.us/v1.0, https://dod-graph.microsoft.us/v1.0, https://microsoftgraph.chinacloudapi.cn/v1.0); grantGraphPermissions then must stay false (docs/deploy.md, "National clouds").')
param graphBaseUrl string = 'https://graph.microsoft.com/v1.0'

// Off by default: every HTTP route takes a function key (auth level FUNCTION). On: App Service
// authentication stands in front and the routes take no key (docs/deploy.md, "Calling from
// Logic Apps"); the app gets its own copy of the allow-list (USEREXPORT_ALLOWED_CALLERS) and lets
// in only requests App Service authentication attributes to an identity on it.
@description('Put App Service authentication (Microsoft Entra ID) in front of the HTTP API, for callers with a managed identity such as a Logic App: the routes become auth level anonymous (USEREXPORT_HTTP_AUTH_LEVEL=anonymous) and App Service lets through only access tokens for authClientId / authAudience of the identities in allowedCallerIdentities (401 without a valid token, 403 for another identity). Needs an Entra app registration for the API, made beforehand (docs/deploy.md).')
param enableAppServiceAuth bool = false

@description('With enableAppServiceAuth: the Application (client) ID of the Entra app registration that represents the API. Tokens for it are always accepted.')
param authClientId string = ''

@description('With enableAppServiceAuth: the Application ID URI callers ask tokens for (e.g. api://userexport-prod), accepted besides the client id. Empty: the client id only.')
param authAudience string = ''

@description('With enableAppServiceAuth: comma-separated object ids (principal ids) of the managed identities allowed to call the API (allowedPrincipals.identities; App Service allows 500 characters in all, about 13 ids).')
param allowedCallerIdentities string = ''

// Empty by default: no action group and no alert rules (infra/app/alerts.bicep, docs/deploy.md
// "Alerts").
@description('An e-mail address for alerts: an export failed, the nightly series has had no successful run for nightlyStaleHours, a stalled export was revived. Empty: no alerts are deployed.')
param alertEmail string = ''

@minValue(1)
@maxValue(48)
@description('With alertEmail: hours without a successful nightly run before the stale alert fires.')
param nightlyStaleHours int = 26

@minValue(1)
@description('Days after which exported CSV and error files are deleted by the lifecycle rule.')
param exportRetentionDays int = 30

// Off by default: the download links are SAS URLs meant to be fetched from anywhere (a Logic
// App, a browser, curl). On, the exports' account takes requests only through a private endpoint
// in a virtual network the function app is integrated with (app/network.bicep), and over its
// public endpoint only from exportsAllowedIpRanges: a SAS download from anywhere else fails with
// 403 (docs/deploy.md, "Restricting the exports' network").
@description('Restrict the exports\' storage account to a private endpoint (and exportsAllowedIpRanges): adds a virtual network, integrates the function app with it, and turns the account\'s public network access off. SAS downloads from outside those networks then fail. Default false.')
param restrictExportsNetwork bool = false

@description('With restrictExportsNetwork: comma-separated public IPv4 addresses or CIDR ranges (e.g. 203.0.113.7,198.51.100.0/24) still allowed to download over the public endpoint. Empty: public network access disabled.')
param exportsAllowedIpRanges string = ''

@description('Maximum number of instances the Flex Consumption app scales out to.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

@allowed([
  2048
  4096
])
@description('Memory per instance in MB (Flex Consumption).')
param instanceMemoryMB int = 2048

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
// The Microsoft Graph Bicep extension works only in the public cloud (Azure and Microsoft Graph),
// so a grant is refused anywhere else, and a national cloud must name its own Graph: its managed
// identity cannot get tokens for the public cloud's Graph.
var azureIsPublicCloud = environment().name == 'AzureCloud'
var graphIsPublicCloud = (toLower(graphBaseUrl) == 'https://graph.microsoft.com') || startsWith(toLower(graphBaseUrl), 'https://graph.microsoft.com/')
var checkedGraphBaseUrl = (graphIsPublicCloud && !azureIsPublicCloud) ? fail('${environment().name} cannot reach the public cloud\'s Microsoft Graph (${graphBaseUrl}): set USEREXPORT_GRAPH_BASE_URL to this cloud\'s Graph endpoint, e.g. https://graph.microsoft.us/v1.0 (docs/deploy.md, "National clouds").') : graphBaseUrl
var grantGraph = grantGraphPermissions ? ((azureIsPublicCloud && graphIsPublicCloud) ? true : fail('USEREXPORT_GRANT_GRAPH_PERMISSIONS=true works only in the public cloud with USEREXPORT_GRAPH_BASE_URL on https://graph.microsoft.com (the Microsoft Graph Bicep extension exists nowhere else); here: ${environment().name}, ${graphBaseUrl}. Run `azd env set USEREXPORT_GRANT_GRAPH_PERMISSIONS false`, provision again, and have an administrator grant the permissions by hand (docs/deploy.md, "National clouds").')) : false
var callerIdentities = empty(allowedCallerIdentities) ? [] : split(replace(allowedCallerIdentities, ' ', ''), ',')
var appServiceAuth = enableAppServiceAuth ? ((empty(authClientId) || empty(callerIdentities) || contains(callerIdentities, '')) ? fail('enableAppServiceAuth=true needs the API\'s app registration client id (USEREXPORT_AUTH_CLIENT_ID) and the object ids of the allowed caller identities, comma-separated (USEREXPORT_ALLOWED_CALLERS): without an allow-list any identity of the tenant could export every user. Set both with `azd env set`, or USEREXPORT_APP_SERVICE_AUTH false (docs/deploy.md, "Calling from Logic Apps").') : true) : false
// The permissions granted (grantGraphPermissions) or printed for an administrator, in the
// order of docs/deploy.md's table.
var graphOptionalPermissions = concat(graphAuthenticationColumns ? ['UserAuthenticationMethod.Read.All'] : [], graphSignInColumns ? ['AuditLog.Read.All'] : [], graphLicenceNames ? ['LicenseAssignment.Read.All'] : [], graphGroupScope ? ['GroupMember.Read.All'] : [], graphAdministrativeUnitScope ? ['AdministrativeUnit.Read.All'] : [])
var graphPermissionNames = concat(['User.Read.All'], graphOptionalPermissions)
var exportsAllowedIps = empty(exportsAllowedIpRanges) ? [] : (restrictExportsNetwork ? split(replace(exportsAllowedIpRanges, ' ', ''), ',') : fail('USEREXPORT_EXPORTS_ALLOWED_IPS lets addresses through the exports\' network restriction, which is off: set USEREXPORT_EXPORTS_PRIVATE_NETWORK true as well, or clear USEREXPORT_EXPORTS_ALLOWED_IPS (docs/deploy.md, "Restricting the exports\' network").'))
var functionAppName = 'func-userexport-${resourceToken}'
var deploymentContainerName = 'app-package-${take(functionAppName, 32)}-${take(resourceToken, 7)}'

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

module identity 'app/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: 'id-userexport-${resourceToken}'
    location: location
    tags: tags
  }
}

// The host's storage: host keys and leases, the deployment package, jobs table and queues.
module storage 'app/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: 'stuserexport${take(resourceToken, 12)}'
    location: location
    tags: tags
    deploymentContainerName: deploymentContainerName
  }
}

// The exports' own storage: the exports container, its lifecycle rule and its read logs.
module exportsStorage 'app/exports-storage.bicep' = {
  name: 'exports-storage'
  scope: rg
  params: {
    name: 'stexports${resourceToken}'
    location: location
    tags: tags
    exportRetentionDays: exportRetentionDays
    logAnalyticsWorkspaceId: monitoring.outputs.logAnalyticsId
    restrictNetwork: restrictExportsNetwork
    allowedIpRanges: exportsAllowedIps
  }
}

module network 'app/network.bicep' = if (restrictExportsNetwork) {
  name: 'network'
  scope: rg
  params: {
    name: 'vnet-userexport-${resourceToken}'
    location: location
    tags: tags
    exportsStorageAccountId: exportsStorage.outputs.id
  }
}

module monitoring 'app/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: 'log-userexport-${resourceToken}'
    applicationInsightsName: 'appi-userexport-${resourceToken}'
    location: location
    tags: tags
  }
}

module alerts 'app/alerts.bicep' = if (!empty(alertEmail)) {
  name: 'alerts'
  scope: rg
  params: {
    location: location
    tags: tags
    applicationInsightsId: monitoring.outputs.applicationInsightsId
    actionGroupName: 'ag-userexport-${resourceToken}'
    ruleSuffix: resourceToken
    alertEmail: alertEmail
    nightlyStaleHours: nightlyStaleHours
  }
}

module rbac 'app/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    storageAccountName: storage.outputs.name
    exportsStorageAccountName: exportsStorage.outputs.name
    exportsContainerName: exportsStorage.outputs.containerName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    identityPrincipalId: identity.outputs.principalId
    principalId: principalId
    principalType: principalType
    grantDeployerDataAccess: grantDeployerDataAccess
  }
}

module graphPermissions 'app/graph-permissions.bicep' = if (grantGraph) {
  name: 'graph-permissions'
  scope: rg
  // Last: assigning an app role to a service principal created moments earlier can fail with
  // "Not a valid reference update" while the directory replicates (microsoftgraph/msgraph-bicep-types
  // #193); the function app's deployment buys it time. If it still happens, `azd provision` again.
  dependsOn: [
    api
  ]
  params: {
    identityPrincipalId: identity.outputs.principalId
    optionalPermissions: graphOptionalPermissions
  }
}

module api 'app/api.bicep' = {
  name: 'api'
  scope: rg
  // The host must be able to reach storage when it first starts.
  dependsOn: [
    rbac
  ]
  params: {
    name: functionAppName
    planName: 'plan-userexport-${resourceToken}'
    location: location
    tags: tags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    deploymentContainerName: deploymentContainerName
    exportsBlobEndpoint: exportsStorage.outputs.blobEndpoint
    virtualNetworkSubnetId: restrictExportsNetwork ? network.outputs.appSubnetId : ''
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
    nightlySchedule: nightlySchedule
    sasLifetimeMinutes: sasLifetimeMinutes
    timeBudgetSeconds: timeBudgetSeconds
    partitions: partitions
    smallTenantUsers: smallTenantUsers
    partitionSeconds: partitionSeconds
    nightlyMode: nightlyMode
    seriesKeep: seriesKeep
    deltaFullDays: deltaFullDays
    stormSeconds: stormSeconds
    statusRetryAfterSeconds: statusRetryAfterSeconds
    leaseGraceSeconds: leaseGraceSeconds
    failureCapMinutes: failureCapMinutes
    stallMinutes: stallMinutes
    maxRunningExports: maxRunningExports
    maxQueuedExports: maxQueuedExports
    admissionSeconds: admissionSeconds
    graphBaseUrl: checkedGraphBaseUrl
    anonymousHttpRoutes: appServiceAuth
    // The app's own copy of the allow-list App Service authentication enforces (app/auth.bicep).
    allowedCallers: join(callerIdentities, ',')
  }
}

module auth 'app/auth.bicep' = if (appServiceAuth) {
  name: 'auth'
  scope: rg
  params: {
    functionAppName: api.outputs.name
    clientId: authClientId
    allowedAudiences: empty(authAudience) ? [] : [
      authAudience
    ]
    allowedIdentities: callerIdentities
  }
}

// azd reads these into .azure/<env>/.env.
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output SERVICE_API_NAME string = api.outputs.name
output SERVICE_API_URI string = api.outputs.uri
output AZURE_FUNCTION_APP_NAME string = api.outputs.name
output AZURE_FUNCTION_APP_URL string = api.outputs.uri
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AZURE_STORAGE_BLOB_ENDPOINT string = storage.outputs.blobEndpoint
output AZURE_STORAGE_QUEUE_ENDPOINT string = storage.outputs.queueEndpoint
output AZURE_STORAGE_TABLE_ENDPOINT string = storage.outputs.tableEndpoint
output AZURE_EXPORTS_STORAGE_ACCOUNT_NAME string = exportsStorage.outputs.name
output USEREXPORT_EXPORTS_BLOB_URI string = exportsStorage.outputs.blobEndpoint
output USEREXPORT_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output USEREXPORT_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId
output USEREXPORT_GRAPH_BASE_URL string = checkedGraphBaseUrl
// Read by the postprovision hook: when false it prints what an administrator still has to run.
output USEREXPORT_GRAPH_PERMISSIONS_GRANTED bool = grantGraph
// Read by the postprovision hook too: the permissions granted, or to grant, space-separated.
output USEREXPORT_GRAPH_PERMISSIONS string = join(graphPermissionNames, ' ')
// true: callers authenticate with Entra tokens (App Service authentication), not function keys.
output USEREXPORT_APP_SERVICE_AUTH bool = appServiceAuth
