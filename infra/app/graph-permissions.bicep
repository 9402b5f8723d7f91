// Microsoft Graph application permissions for the function app's managed identity, with the
// Microsoft Graph Bicep extension (infra/bicepconfig.json). Deployed only when the deployer asks
// for it (grantGraphPermissions, USEREXPORT_GRANT_GRAPH_PERMISSIONS=true; off by default) and
// only in the public cloud, the one place the extension exists (main.bicep refuses it elsewhere).
// The deployer needs a directory role that may grant Graph application permissions (Privileged
// Role Administrator or Global Administrator). Otherwise the postprovision hook prints the
// equivalent `az rest` and PowerShell commands for an administrator (docs/deploy.md).
extension microsoftGraphV1

@description('Principal (object) id of the managed identity\'s service principal.')
param identityPrincipalId string

// Microsoft Graph's well-known application id.
var graphAppId = '00000003-0000-0000-c000-000000000000'
// Application permissions (app role ids on the Microsoft Graph service principal).
var graphAppRoles = {
  // List users with the profile columns of the export.
  'User.Read.All': 'df021288-bdef-4463-88db-98f22de89214'
  // Read phoneMethods / emailMethods for authenticationAlternativePhoneNumber and
  // authenticationEmail.
  'UserAuthenticationMethod.Read.All': '38d9df27-64da-44fd-b7c5-a6fbac20248f'
}

resource graph 'Microsoft.Graph/servicePrincipals@v1.0' existing = {
  appId: graphAppId
}

resource userReadAll 'Microsoft.Graph/appRoleAssignedTo@v1.0' = {
  appRoleId: graphAppRoles['User.Read.All']
  principalId: identityPrincipalId
  resourceId: graph.id
}

resource userAuthenticationMethodReadAll 'Microsoft.Graph/appRoleAssignedTo@v1.0' = {
  appRoleId: graphAppRoles['UserAuthenticationMethod.Read.All']
  principalId: identityPrincipalId
  resourceId: graph.id
}

output grantedAppRoleIds array = [
  userReadAll.appRoleId
  userAuthenticationMethodReadAll.appRoleId
]
