# azd postprovision hook (PowerShell 7, or Windows PowerShell 5.1 where azd falls back to it;
# infra/hooks/postprovision.sh is the same for Linux and macOS).
# Says what is left to do after `azd provision` / `azd up`: unless the deployment assigned the
# Microsoft Graph application permissions itself (USEREXPORT_GRANT_GRAPH_PERMISSIONS=true, public
# cloud), it prints the commands an administrator runs to grant them, filled in for this
# environment. azd passes the environment's values (main.bicep outputs included) as variables.
# It only prints: it never fails the deployment (and azure.yaml sets continueOnError besides).

$graphAppId = "00000003-0000-0000-c000-000000000000"
$graphBase = $env:USEREXPORT_GRAPH_BASE_URL
if (-not $graphBase) { $graphBase = "https://graph.microsoft.com/v1.0" }
$graphBase = $graphBase.TrimEnd("/")
$principal = $env:USEREXPORT_IDENTITY_PRINCIPAL_ID
if (-not $principal) { $principal = "<USEREXPORT_IDENTITY_PRINCIPAL_ID from azd env get-values>" }
$tenant = $env:AZURE_TENANT_ID
if (-not $tenant) { $tenant = "<tenant id>" }
$granted = "$env:USEREXPORT_GRAPH_PERMISSIONS_GRANTED".ToLowerInvariant()
# The permissions of the export features turned on (main.bicep's graph* parameters, output
# USEREXPORT_GRAPH_PERMISSIONS), in the order of docs/deploy.md's table; all six for an
# environment provisioned before that output existed.
$allPermissions = "User.Read.All UserAuthenticationMethod.Read.All AuditLog.Read.All LicenseAssignment.Read.All GroupMember.Read.All AdministrativeUnit.Read.All"
$permissionList = $env:USEREXPORT_GRAPH_PERMISSIONS
if (-not $permissionList) { $permissionList = $allPermissions }
$permissionNames = @($permissionList -split "[,\s]+" | Where-Object { $_ })
$permissions = $permissionNames -join " "
# The same list as PowerShell strings: "User.Read.All", "AuditLog.Read.All", ...
$psPermissions = ($permissionNames | ForEach-Object { "`"$_`"" }) -join ", "

# What a permission is for, on a line of its own.
function Describe-Permission($name) {
    switch ($name) {
        "User.Read.All" {
            Write-Output "  User.Read.All                      (the user listing, every profile column)"
        }
        "UserAuthenticationMethod.Read.All" {
            Write-Output "  UserAuthenticationMethod.Read.All  (the authentication columns, e.g. authenticationEmail)"
        }
        "AuditLog.Read.All" {
            Write-Output "  AuditLog.Read.All                  (the sign-in columns, e.g. lastSignInDateTime; Entra ID P1/P2)"
        }
        "LicenseAssignment.Read.All" {
            Write-Output "  LicenseAssignment.Read.All         (licence names in assignedLicenses, not SKU ids)"
        }
        "GroupMember.Read.All" {
            Write-Output "  GroupMember.Read.All               (exports with filter.group)"
        }
        "AdministrativeUnit.Read.All" {
            Write-Output "  AdministrativeUnit.Read.All        (exports with filter.administrativeUnit)"
        }
        default {
            Write-Output "  $name"
        }
    }
}

if ($granted -eq "true") {
    Write-Output ""
    Write-Output "userexport: the deployment assigned the Microsoft Graph application permissions"
    foreach ($permission in $permissionNames) {
        Describe-Permission $permission
    }
    Write-Output "to the managed identity ($principal)."
    Write-Output "Nothing is left to do; the first export can run."
    Write-Output ""
    exit 0
}

# The cloud the Graph endpoint belongs to, for `az cloud set` and `Connect-MgGraph -Environment`.
$graphHost = ""
try { $graphHost = ([Uri]$graphBase).Host.ToLowerInvariant() } catch { $graphHost = $graphBase }
switch ($graphHost) {
    "graph.microsoft.com" { $azCloud = "AzureCloud"; $mgEnvironment = "Global" }
    "graph.microsoft.us" { $azCloud = "AzureUSGovernment"; $mgEnvironment = "USGov" }
    "dod-graph.microsoft.us" { $azCloud = "AzureUSGovernment"; $mgEnvironment = "USGovDoD" }
    "microsoftgraph.chinacloudapi.cn" { $azCloud = "AzureChinaCloud"; $mgEnvironment = "China" }
    default {
        $azCloud = "<the az cloud of $graphHost>"
        $mgEnvironment = "<the Connect-MgGraph environment of $graphHost>"
    }
}

Write-Output @"

==========================================================================================
userexport: ONE STEP LEFT - grant the Microsoft Graph application permissions
==========================================================================================
The function app is deployed, but its managed identity ($principal)
cannot read users yet: it needs the Microsoft Graph application permissions
"@
foreach ($permission in $permissionNames) {
    Describe-Permission $permission
}
Write-Output @"
Until they are granted, an export says which one it missed: without User.Read.All it
fails; without one of the others it leaves those columns empty (SKU ids instead of
licence names) and says why in its errors file, or, filtered by a group or an
administrative unit, it fails naming the permission (docs/deploy.md). A permission whose
feature was turned off (USEREXPORT_GRAPH_* false) is not listed here.

A Privileged Role Administrator or Global Administrator of tenant $tenant
runs ONE of the two blocks below (docs/deploy.md, "Granting the Graph permissions by hand").
One already granted answers "Permission being assigned already exists on the object":
harmless, the others are granted all the same.

Azure CLI (bash):
  az cloud set --name $azCloud
  az login --tenant $tenant
  GRAPH_SP_ID=`$(az ad sp show --id $graphAppId --query id -o tsv)
  for PERMISSION in $permissions; do
    ROLE_ID=`$(az ad sp show --id $graphAppId --query "appRoles[?value=='`$PERMISSION'].id | [0]" -o tsv)
    az rest --method POST \
      --uri "$graphBase/servicePrincipals/$principal/appRoleAssignments" \
      --headers "Content-Type=application/json" \
      --body "{\"principalId\":\"$principal\",\"resourceId\":\"`$GRAPH_SP_ID\",\"appRoleId\":\"`$ROLE_ID\"}"
  done

PowerShell (Microsoft.Graph.Applications module):
  Connect-MgGraph -Environment $mgEnvironment -TenantId $tenant -Scopes "AppRoleAssignment.ReadWrite.All","Application.Read.All"
  `$graph = Get-MgServicePrincipal -Filter "appId eq '$graphAppId'"
  foreach (`$permission in $psPermissions) {
      `$role = `$graph.AppRoles | Where-Object { `$_.Value -eq `$permission -and `$_.AllowedMemberTypes -contains "Application" }
      New-MgServicePrincipalAppRoleAssignment -ServicePrincipalId $principal -PrincipalId $principal -ResourceId `$graph.Id -AppRoleId `$role.Id
  }
"@
if ($graphHost -eq "graph.microsoft.com") {
    Write-Output @"

Or, if you hold one of those roles yourself, let the deployment grant them:
  azd env set USEREXPORT_GRANT_GRAPH_PERMISSIONS true
  azd provision
"@
}
Write-Output "=========================================================================================="
Write-Output ""
exit 0
