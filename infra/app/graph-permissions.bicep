// Microsoft Graph application permissions for the function app's managed identity, with the
// Microsoft Graph Bicep extension (infra/bicepconfig.json). Deployed only when the deployer asks
// for it (grantGraphPermissions, USEREXPORT_GRANT_GRAPH_PERMISSIONS=true; off by default) and
// only in the public cloud, the one place the extension exists (main.bicep refuses it elsewhere).
// User.Read.All always; each other permission only when the export feature that needs it is on
// (main.bicep's graph* parameters; docs/deploy.md, "Choosing the permissions").
// The deployer needs a directory role that may grant Graph application permissions (Privileged
// Role Administrator or Global Administrator). Otherwise the postprovision hook prints the
// equivalent `az rest` and PowerShell commands for an administrator (docs/deploy.md).
extension microsoftGraphV1

@description('Principal (object) id of the managed identity\'s service principal.')
param identityPrincipalId string

@description('The optional permissions to grant besides User.Read.All, by name (main.bicep: those of the export features turned on).')
param optionalPermissions array

// Microsoft Graph's well-known application id.
var graphAppId = '00000003-0000-0000-c000-000000000000'
// Application permissions: the app role ids (type Application, not the delegated scope ids) on
// the public cloud's Microsoft Graph service principal. Sources, Microsoft's own lists:
// - microsoftgraph/microsoft-graph-docs-contrib concepts/includes/permissions-ids.md (the
//   "All permissions and IDs" table of concepts/permissions-reference.md): User.Read.All,
//   UserAuthenticationMethod.Read.All, AuditLog.Read.All, GroupMember.Read.All and
//   AdministrativeUnit.Read.All;
// - microsoftgraph/microsoft-graph-devx-content permissions/new/ProvisioningInfo.json (what Graph
//   Explorer and the permissions reference are generated from): LicenseAssignment.Read.All,
//   newer than that table, and AdministrativeUnit.Read.All again.
// What each one costs the export when missing: docs/deploy.md, "The six Graph permissions".
var graphAppRoles = {
  // List users with the profile columns of the export.
  'User.Read.All': 'df021288-bdef-4463-88db-98f22de89214'
  // Read phoneMethods / emailMethods / methods for the authentication columns
  // (authenticationAlternativePhoneNumber, authenticationEmail, ...).
  'UserAuthenticationMethod.Read.All': '38d9df27-64da-44fd-b7c5-a6fbac20248f'
  // $select=signInActivity: the sign-in columns (lastSignInDateTime, ..., daysSinceLastSignIn).
  'AuditLog.Read.All': 'b0afded3-3588-46d8-8b3d-9842eff778da'
  // GET /subscribedSkus: licence names (skuPartNumber) in assignedLicenses instead of SKU ids.
  'LicenseAssignment.Read.All': 'e2f98668-2877-4f38-a2f4-8202e0717aa1'
  // GET /groups/{id}/transitiveMembers/microsoft.graph.user: exports with filter.group.
  'GroupMember.Read.All': '98830695-27a2-44f7-8c18-0c3ebc9698f6'
  // GET /directory/administrativeUnits/{id}/members/microsoft.graph.user: filter.administrativeUnit.
  'AdministrativeUnit.Read.All': '134fd756-38ce-4afd-ba33-e9623dbe66c2'
}

resource graph 'Microsoft.Graph/servicePrincipals@v1.0' existing = {
  appId: graphAppId
}

// One resource per permission (not a loop), so a refused or failed grant names its permission in
// azd's error output (docs/deploy.md, "Troubleshooting"). User.Read.All always: no export runs
// without it; the others when asked for.
resource userReadAll 'Microsoft.Graph/appRoleAssignedTo@v1.0' = {
  appRoleId: graphAppRoles['User.Read.All']
  principalId: identityPrincipalId
  resourceId: graph.id
}

resource userAuthenticationMethodReadAll 'Microsoft.Graph/appRoleAssignedTo@v1.0' = if (contains(optionalPermissions, 'UserAuthenticationMethod.Read.All')) {
  appRoleId: graphAppRoles['UserAuthenticationMethod.Read.All']
  principalId: identityPrincipalId
  resourceId: graph.id
}

resource auditLogReadAll 'Microsoft.Graph/appRoleAssignedTo@v1.0' = if (contains(optionalPermissions, 'AuditLog.Read.All')) {
  appRoleId: graphAppRoles['AuditLog.Read.All']
  principalId: identityPrincipalId
  resourceId: graph.id
}

resource licenseAssignmentReadAll 'Microsoft.Graph/appRoleAssignedTo@v1.0' = if (contains(optionalPermissions, 'LicenseAssignment.Read.All')) {
  appRoleId: graphAppRoles['LicenseAssignment.Read.All']
  principalId: identityPrincipalId
  resourceId: graph.id
}

resource groupMemberReadAll 'Microsoft.Graph/appRoleAssignedTo@v1.0' = if (contains(optionalPermissions, 'GroupMember.Read.All')) {
  appRoleId: graphAppRoles['GroupMember.Read.All']
  principalId: identityPrincipalId
  resourceId: graph.id
}

resource administrativeUnitReadAll 'Microsoft.Graph/appRoleAssignedTo@v1.0' = if (contains(optionalPermissions, 'AdministrativeUnit.Read.All')) {
  appRoleId: graphAppRoles['AdministrativeUnit.Read.All']
  principalId: identityPrincipalId
  resourceId: graph.id
}

// The permissions granted, by name (what azd shows after a deployment).
output grantedPermissions array = concat([
  'User.Read.All'
], optionalPermissions)
