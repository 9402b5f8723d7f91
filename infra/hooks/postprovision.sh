#!/bin/sh
# azd postprovision hook (POSIX sh; infra/hooks/postprovision.ps1 is the same for Windows).
# Says what is left to do after `azd provision` / `azd up`: unless the deployment assigned the
# Microsoft Graph application permissions itself (USEREXPORT_GRANT_GRAPH_PERMISSIONS=true, public
# cloud), it prints the commands an administrator runs to grant them, filled in for this
# environment. azd passes the environment's values (main.bicep outputs included) as variables.
# It only prints: it never fails the deployment (and azure.yaml sets continueOnError besides).

graph_app_id="00000003-0000-0000-c000-000000000000"
graph_base="${USEREXPORT_GRAPH_BASE_URL:-https://graph.microsoft.com/v1.0}"
graph_base="${graph_base%/}"
principal="${USEREXPORT_IDENTITY_PRINCIPAL_ID:-<USEREXPORT_IDENTITY_PRINCIPAL_ID from azd env get-values>}"
tenant="${AZURE_TENANT_ID:-<tenant id>}"
granted=$(printf '%s' "${USEREXPORT_GRAPH_PERMISSIONS_GRANTED:-false}" | tr '[:upper:]' '[:lower:]')
# The permissions of the export features turned on (main.bicep's graph* parameters, output
# USEREXPORT_GRAPH_PERMISSIONS), in the order of docs/deploy.md's table; all six for an
# environment provisioned before that output existed.
all_permissions="User.Read.All UserAuthenticationMethod.Read.All AuditLog.Read.All LicenseAssignment.Read.All GroupMember.Read.All AdministrativeUnit.Read.All"
permissions=$(printf '%s' "${USEREXPORT_GRAPH_PERMISSIONS:-$all_permissions}" | tr ',' ' ')
permissions=$(echo $permissions)
# The same list as PowerShell strings: "User.Read.All", "AuditLog.Read.All", ...
ps_permissions=""
for permission in $permissions; do
    ps_permissions="${ps_permissions:+$ps_permissions, }\"$permission\""
done

# What a permission is for, on a line of its own.
describe() {
    name="$1"
    case "$name" in
        User.Read.All)
            echo "  User.Read.All                      (the user listing, every profile column)"
            ;;
        UserAuthenticationMethod.Read.All)
            echo "  UserAuthenticationMethod.Read.All  (the authentication columns, e.g. authenticationEmail)"
            ;;
        AuditLog.Read.All)
            echo "  AuditLog.Read.All                  (the sign-in columns, e.g. lastSignInDateTime; Entra ID P1/P2)"
            ;;
        LicenseAssignment.Read.All)
            echo "  LicenseAssignment.Read.All         (licence names in assignedLicenses, not SKU ids)"
            ;;
        GroupMember.Read.All)
            echo "  GroupMember.Read.All               (exports with filter.group)"
            ;;
        AdministrativeUnit.Read.All)
            echo "  AdministrativeUnit.Read.All        (exports with filter.administrativeUnit)"
            ;;
        *)
            echo "  $name"
            ;;
    esac
}

if [ "$granted" = "true" ]; then
    echo ""
    echo "userexport: the deployment assigned the Microsoft Graph application permissions"
    for permission in $permissions; do
        describe "$permission"
    done
    echo "to the managed identity ($principal)."
    echo "Nothing is left to do; the first export can run."
    echo ""
    exit 0
fi

# The cloud the Graph endpoint belongs to, for `az cloud set` and `Connect-MgGraph -Environment`.
graph_host=$(printf '%s' "$graph_base" | sed -e 's#^[A-Za-z][A-Za-z0-9+.-]*://##' -e 's#[/:].*$##' | tr '[:upper:]' '[:lower:]')
case "$graph_host" in
    graph.microsoft.com) az_cloud="AzureCloud"; mg_environment="Global" ;;
    graph.microsoft.us) az_cloud="AzureUSGovernment"; mg_environment="USGov" ;;
    dod-graph.microsoft.us) az_cloud="AzureUSGovernment"; mg_environment="USGovDoD" ;;
    microsoftgraph.chinacloudapi.cn) az_cloud="AzureChinaCloud"; mg_environment="China" ;;
    *) az_cloud="<the az cloud of $graph_host>"; mg_environment="<the Connect-MgGraph environment of $graph_host>" ;;
esac

cat <<EOF

==========================================================================================
userexport: ONE STEP LEFT - grant the Microsoft Graph application permissions
==========================================================================================
The function app is deployed, but its managed identity ($principal)
cannot read users yet: it needs the Microsoft Graph application permissions
EOF
for permission in $permissions; do
    describe "$permission"
done
cat <<EOF
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
  az cloud set --name $az_cloud
  az login --tenant $tenant
  GRAPH_SP_ID=\$(az ad sp show --id $graph_app_id --query id -o tsv)
  for PERMISSION in $permissions; do
    ROLE_ID=\$(az ad sp show --id $graph_app_id --query "appRoles[?value=='\$PERMISSION'].id | [0]" -o tsv)
    az rest --method POST \\
      --uri "$graph_base/servicePrincipals/$principal/appRoleAssignments" \\
      --headers "Content-Type=application/json" \\
      --body "{\"principalId\":\"$principal\",\"resourceId\":\"\$GRAPH_SP_ID\",\"appRoleId\":\"\$ROLE_ID\"}"
  done

PowerShell (Microsoft.Graph.Applications module):
  Connect-MgGraph -Environment $mg_environment -TenantId $tenant -Scopes "AppRoleAssignment.ReadWrite.All","Application.Read.All"
  \$graph = Get-MgServicePrincipal -Filter "appId eq '$graph_app_id'"
  foreach (\$permission in $ps_permissions) {
      \$role = \$graph.AppRoles | Where-Object { \$_.Value -eq \$permission -and \$_.AllowedMemberTypes -contains "Application" }
      New-MgServicePrincipalAppRoleAssignment -ServicePrincipalId $principal -PrincipalId $principal -ResourceId \$graph.Id -AppRoleId \$role.Id
  }
EOF
if [ "$graph_host" = "graph.microsoft.com" ]; then
    cat <<EOF

Or, if you hold one of those roles yourself, let the deployment grant them:
  azd env set USEREXPORT_GRANT_GRAPH_PERMISSIONS true
  azd provision
EOF
fi
echo "=========================================================================================="
echo ""
exit 0
