#!/usr/bin/env bash
# Grants the bot's identity the Microsoft Graph application permissions it
# needs (README, "Graph permissions"), and nothing else: each is an app role
# assignment on Microsoft Graph's service principal, which is what "Grant
# admin consent" does for an app registration. Run it as a Privileged Role
# Administrator or Global Administrator, signed in with `az login`:
#
#   deploy/azure/grant-graph-permissions.sh <identity principal id>
#
# The principal id is the template's identityPrincipalId output (for an app
# registration: its service principal's object id). GRAPH_URL picks another
# cloud's Graph, e.g. https://graph.microsoft.us. It prints each permission
# as it is granted (or found granted already); run it again after a failure.
set -euo pipefail

principal=${1:?usage: grant-graph-permissions.sh <principal id of the identity or app>}
graph=${GRAPH_URL:-https://graph.microsoft.com}
graph_app_id=00000003-0000-0000-c000-000000000000 # Microsoft Graph, in every tenant

# The same list as internal/app GraphPermissions (a test compares).
permissions=(
  TeamsAppInstallation.ReadWriteAndConsentForChat.All
  TeamsAppInstallation.ReadWriteAndConsentForTeam.All
  TeamsAppInstallation.ReadWriteAndConsentForUser.All
  AppCatalog.Read.All
  ChatMember.Read.All
  TeamMember.Read.All
  GroupMember.Read.All
  Chat.ReadBasic.WhereInstalled
  Channel.ReadBasic.All
  TeamsAppInstallation.ReadForChat.All
  TeamsAppInstallation.ReadForTeam.All
  Policy.Read.All
  Policy.Read.PermissionGrant
)

graph_sp=$(az rest --method GET --url "$graph/v1.0/servicePrincipals(appId='$graph_app_id')?\$select=id" --query id -o tsv)
granted=$(az rest --method GET --url "$graph/v1.0/servicePrincipals/$principal/appRoleAssignments?\$top=999" \
  --query "value[?resourceId=='$graph_sp'].appRoleId" -o tsv)

for p in "${permissions[@]}"; do
  role=$(az rest --method GET --url "$graph/v1.0/servicePrincipals/$graph_sp?\$select=appRoles" \
    --query "appRoles[?value=='$p' && contains(allowedMemberTypes, 'Application')].id | [0]" -o tsv)
  if [ -z "$role" ]; then
    echo "FAIL $p: Microsoft Graph has no such application permission here" >&2
    exit 1
  fi
  if grep -qx "$role" <<<"$granted"; then
    echo "ok      $p (already granted)"
    continue
  fi
  az rest --method POST --url "$graph/v1.0/servicePrincipals/$principal/appRoleAssignments" \
    --headers Content-Type=application/json \
    --body "{\"principalId\":\"$principal\",\"resourceId\":\"$graph_sp\",\"appRoleId\":\"$role\"}" >/dev/null
  echo "granted $p"
done
