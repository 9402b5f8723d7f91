// Alerts on the app's own telemetry: the `event {json}` lines userexport/telemetry.py writes,
// which the Functions host sends to Application Insights' traces (host.json keeps traces out
// of sampling, so none is lost). One action group mails `alertEmail`; main.bicep deploys this
// module only when an address is given. docs/deploy.md says what each alert means and what to do.
param location string
param tags object
param applicationInsightsId string
param actionGroupName string
param ruleSuffix string

@description('Where the alerts are mailed.')
param alertEmail string

// A log alert looks back at most two days; a day and a bit lets a nightly run be late.
@minValue(1)
@maxValue(48)
@description('Hours without a successful nightly run (succeeded or completedWithErrors) before the stale alert fires.')
param nightlyStaleHours int = 26

// Every line of telemetry.py, as a JSON object `e` (message: "event {...}").
var events = 'traces | where message startswith "event " | extend e = parse_json(substring(message, 6))'

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: actionGroupName
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'userexport'
    enabled: true
    emailReceivers: [
      {
        name: 'operator'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

resource exportFailed 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = {
  name: 'alert-userexport-failed-${ruleSuffix}'
  location: location
  tags: tags
  properties: {
    displayName: 'userexport: an export failed'
    description: 'An export ended failed: GET /api/exports/{jobId} gives its reason and what to do.'
    severity: 1
    enabled: true
    evaluationFrequency: 'PT5M'
    windowSize: 'PT5M'
    scopes: [
      applicationInsightsId
    ]
    criteria: {
      allOf: [
        {
          query: '${events} | where tostring(e.event) == "exportFinished" and tostring(e.status) == "failed" | extend jobId = tostring(e.jobId), trigger = tostring(e.trigger)'
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          dimensions: [
            {
              name: 'jobId'
              operator: 'Include'
              values: [
                '*'
              ]
            }
            {
              name: 'trigger'
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: false
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

resource nightlyStale 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = {
  name: 'alert-userexport-nightly-stale-${ruleSuffix}'
  location: location
  tags: tags
  properties: {
    displayName: 'userexport: no successful nightly export'
    description: 'The nightly series has had no succeeded or completedWithErrors run for ${nightlyStaleHours} hours: GET /api/exports/latest?series=nightly and the exportFinished events of trigger timer say why.'
    severity: 2
    enabled: true
    evaluationFrequency: 'PT1H'
    windowSize: 'P2D'
    scopes: [
      applicationInsightsId
    ]
    criteria: {
      allOf: [
        {
          query: '${events} | where timestamp > ago(${nightlyStaleHours}h) | where tostring(e.event) == "exportFinished" and tostring(e.trigger) == "timer" and tostring(e.status) in ("succeeded", "completedWithErrors")'
          timeAggregation: 'Count'
          operator: 'LessThan'
          threshold: 1
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

resource exportRevived 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = {
  name: 'alert-userexport-revived-${ruleSuffix}'
  location: location
  tags: tags
  properties: {
    displayName: 'userexport: a stalled export was revived'
    description: 'The sweep found an export with no progress and queued it again: an instance crashed or a message was lost. The export goes on; repeated revivals of one job end it failed.'
    severity: 3
    enabled: true
    evaluationFrequency: 'PT15M'
    windowSize: 'PT15M'
    scopes: [
      applicationInsightsId
    ]
    criteria: {
      allOf: [
        {
          query: '${events} | where tostring(e.event) == "exportRevived" | extend jobId = tostring(e.jobId)'
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          dimensions: [
            {
              name: 'jobId'
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: false
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

output actionGroupId string = actionGroup.id
